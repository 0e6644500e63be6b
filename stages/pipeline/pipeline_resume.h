/* stages/pipeline/pipeline_resume.h - what each step of a pipeline reads and writes, the state
 * file of a run, the decision to skip, resume or run each step, and the summary table.
 *
 * A step's ports come from its program's --describe (the option of each input and output port,
 * and every other path-valued option) and from the `inputs =`, `outputs =` and `stdout =` keys
 * of its section (pipelines/README.md, "Resuming a run"). The state file records, per step, the
 * command it ran, its program's identity, and the identity (size and modification time; for a
 * folder, of every file in it) of its inputs and outputs when it finished. A rerun skips a step
 * whose record still holds, resumes an interrupted training step with its own --resume, and runs
 * everything else, everything after it and every step streaming with it.
 */
#ifndef TB_PIPELINE_RESUME_H
#define TB_PIPELINE_RESUME_H

#include "pipeline.h"

#include <cJSON.h>
#include <stdio.h>

typedef struct tb_pipeline_ports {
    char **outputs;        /* absolute paths of the files and folders it writes */
    int noutputs;
    char **inputs;         /* absolute paths named by its other options and `inputs =` (may not exist) */
    int ninputs;
    char **streams_out;    /* ipc:// and tcp:// endpoints it serves ("ipc:///abs", "tcp:PORT") */
    int nstreams_out;
    char **streams_in;     /* endpoints it reads */
    int nstreams_in;
    char *checkpoint_dir;  /* its output of message kind `checkpoint`, or NULL */
    int resumable;         /* its program has a boolean --resume */
    char *metrics_path;    /* its --metrics PATH (not "-"), or NULL */
    char *plot_path;       /* its --plot PATH, or NULL (then CHECKPOINT_DIR/loss.png when there) */
    char *report_path;     /* its output of message kind `metrics` (tb-eval --json), or NULL */
} tb_pipeline_ports;

/* Asks every stage that describes itself for --describe; desc[i] is NULL for the others. Fails on
 * the first stage whose description cannot be had (the message names it). */
int tb_pipeline_describe_stages(const tb_pipeline *p, cJSON **desc);

/* Fills ports[0..p->count-1] from the descriptions (desc may be NULL: keys only). */
int tb_pipeline_ports_init(tb_pipeline_ports *ports, const tb_pipeline *p, cJSON *const *desc);
void tb_pipeline_ports_free(tb_pipeline_ports *ports, int count);

/* Writes one "FAIL [a] ..." line to `report` per output (file, folder or endpoint) that two steps
 * write, or path inside another step's checkpoint folder; returns how many there were. */
int tb_pipeline_check_outputs(const tb_pipeline *p, const tb_pipeline_ports *ports, FILE *report);

/* Steps that stream to each other (one serves an endpoint another reads) share a group number. */
void tb_pipeline_stream_groups(const tb_pipeline *p, const tb_pipeline_ports *ports, int *group);

/* "file SIZE MTIME", "dir FILES BYTES fnv1a64:HEX" (names starting with '.' or ending in .tmp left
 * out; symbolic links by their target), "other MODE"; *out = NULL when the path does not exist. */
int tb_pipeline_identity(const char *path, char **out);

typedef struct tb_pipeline_state {
    char *path;
    cJSON *root;           /* {"version":1,"pipeline":..., "steps":{name:{...}}} */
    int lock_fd;
} tb_pipeline_state;

/* Opens (creating nothing yet) the state file at `path`, holding PATH.lock with flock so that two
 * runners never share a run. A missing file is an empty state; an unreadable one an error. */
int tb_pipeline_state_open(tb_pipeline_state *st, const char *path);
void tb_pipeline_state_close(tb_pipeline_state *st);
/* Writes the state under a temporary name, fsyncs it and renames it into place. */
int tb_pipeline_state_save(const tb_pipeline_state *st);

/* The command of stage i as recorded: its words, stdout file and thread count. */
int tb_pipeline_command_key(const tb_pipeline *p, int i, char **out);
/* Records that stage i starts ("started", with the identity of its inputs now) or finished with
 * exit 0 ("done", with the identity of its inputs and outputs now), and saves the state. */
int tb_pipeline_record(tb_pipeline_state *st, const tb_pipeline *p, const tb_pipeline_ports *ports, int i,
                       int done, double seconds);

enum { TB_PLAN_RUN = 0, TB_PLAN_SKIP, TB_PLAN_RESUME };

typedef struct tb_pipeline_plan {
    int *action;           /* per stage: TB_PLAN_* */
    char **why;            /* per stage: the reason, for the log ("input X changed", ...) */
    char ***argv;          /* per stage: the command to run when it differs from the run line */
    int count;
} tb_pipeline_plan;

/* Decides for every stage: skipped when its record holds (same command and program, inputs and
 * outputs as recorded); resumed (its run line + --resume) when it is a training step that was
 * started with the same command and inputs and left a checkpoint; run otherwise, and then
 * everything after it and every stage streaming with it runs too. force: run every stage;
 * from >= 0: run that stage and everything after it. */
int tb_pipeline_plan_make(tb_pipeline_plan *plan, const tb_pipeline *p, const tb_pipeline_ports *ports,
                          const tb_pipeline_state *st, int force, int from);
/* Logs the decisions and moves aside (to PATH.replaced-YYYYmmdd-HHMMSS) the checkpoint folder of
 * every training step that runs from scratch over checkpoints of an earlier run of that step. */
int tb_pipeline_plan_apply(const tb_pipeline_plan *plan, const tb_pipeline *p, const tb_pipeline_ports *ports,
                           const tb_pipeline_state *st);
void tb_pipeline_plan_free(tb_pipeline_plan *plan);

/* The summary table on `out`: per step its state, run time, throughput and final metric where
 * the step reports them (its checkpoint folder's metrics.jsonl, --metrics file, tb-eval JSON),
 * then the plots it drew. ports and plan may be NULL. */
int tb_pipeline_write_table(const tb_pipeline *p, const tb_pipeline_result *res, const tb_pipeline_ports *ports,
                            const tb_pipeline_plan *plan, FILE *out);

/* Everything a resumable run needs, set up in one call by tb_pipeline_session_open. */
typedef struct tb_pipeline_session {
    const tb_pipeline *p;
    cJSON **desc;               /* per stage, its --describe (NULL for programs that do not describe) */
    tb_pipeline_ports *ports;
    tb_pipeline_state state;
    int have_state;             /* 0: no state file (every step runs, nothing is recorded) */
    tb_pipeline_plan plan;
    int *skip;
} tb_pipeline_session;

/* The state file of a run: `given` (--state) if not NULL; else the variable PIPELINE_STATE; else
 * ${RUN}/pipeline-state.json when the variable RUN is defined; else NULL (the run is not
 * recorded). Variables as the pipeline sees them: VAR=VALUE overrides, [vars], the environment. */
char *tb_pipeline_state_path(const tb_pipeline *p, char *const *overrides, int noverrides, const char *given);

/* Describes the stages, finds their ports, refuses two steps writing one output, opens the state
 * file (state_path may be NULL), decides what to skip or resume (force, from: a stage name or
 * NULL) and moves the old checkpoints of fresh training steps aside. */
int tb_pipeline_session_open(tb_pipeline_session *s, const tb_pipeline *p, const char *state_path, int force,
                             const char *from);
/* Points the run options at the session: steps to skip, commands with --resume, records. */
void tb_pipeline_session_run_opts(tb_pipeline_session *s, tb_pipeline_run_opts *ro);
void tb_pipeline_session_close(tb_pipeline_session *s);

#endif
