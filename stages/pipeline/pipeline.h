/* stages/pipeline/pipeline.h - pipeline files: parse, check, plan and run a flow of stage processes.
 *
 * A pipeline file is INI-like text (full reference and examples: pipelines/README.md):
 *
 *   # comment
 *   [vars]
 *   RUN  = /tmp/tb-demo
 *   TOK  = ipc://${RUN}/tokens.ipc
 *
 *   [tokenize]
 *   run   = tb-tokenize --input data/sst2/train.tsv --output ${TOK}
 *
 *   [finetune]
 *   run   = tb-finetune --input ${TOK} --output ${RUN}/teacher
 *
 *   [eval]
 *   after = finetune
 *   run   = tb-eval --checkpoint ${RUN}/teacher --input data/sst2/dev.tsv
 *
 * Each section other than [vars] is a stage. Stages without `after` start together (they stream
 * to each other); a stage starts once every stage named in its `after` has exited 0. `run` is
 * split into words like a shell would (quotes, backslash) but is executed directly, without a
 * shell. ${VAR} is replaced inside words, never re-split: command-line VAR=VALUE, then [vars],
 * then the built-in PIPELINE_DIR (the file's directory), then the environment; ${VAR:-text} falls back to text; $${ is a literal ${. Any other $ is
 * passed on as is ($HOME, $$ for a shell stage to expand).
 *
 * Running: every stage is its own process group with stdin from /dev/null, stdout inherited (or
 * the file named by `stdout = PATH`) and stderr read by the runner and written line by line as
 * "name | line". When a stage fails (non-zero exit or a signal) the others get SIGTERM, then
 * SIGKILL after the grace period, stages not yet started never start, and the run fails naming
 * the stage and its status. SIGINT/SIGTERM to the runner are forwarded the same way; a second
 * SIGINT kills everything at once.
 */
#ifndef TB_PIPELINE_H
#define TB_PIPELINE_H

#include <stdio.h>
#include <sys/types.h>

typedef struct tb_pipeline_stage {
    char *name;
    int line;              /* line of its [section] in the file */
    char **argv;           /* NULL-terminated, variables expanded */
    int argc;
    int run_line;          /* line of its run = ... */
    char **after;          /* names */
    int *after_idx;        /* indices into stages */
    int nafter;
    char *stdout_path;     /* NULL: inherit the runner's stdout */
    int threads;           /* `threads = N`; 0: computed from the cores and the stages beside it */
    int describe;          /* -1: when the program is called tb-*, 0: never, 1: always */
    char *program;         /* resolved executable (tb_pipeline_resolve) */
    int level;             /* length of the longest `after` chain before it */
    char **decl_outputs;   /* `outputs = PATH...`: files or folders it writes (besides those --describe names) */
    int ndecl_outputs;
    char **decl_inputs;    /* `inputs = PATH...`: files or folders it reads (besides its option values) */
    int ndecl_inputs;
    int concurrent;        /* stages that may run at the same time as this one, itself included */
} tb_pipeline_stage;

typedef struct tb_pipeline {
    char *origin;          /* file name used in messages */
    char *dir;             /* directory of the file (absolute), ${PIPELINE_DIR}; "." for text */
    tb_pipeline_stage *stages;
    int count;
    char **var_names, **var_values;
    int nvars;
} tb_pipeline;

/* Parses pipeline text. `overrides` are "VAR=VALUE" strings that win over [vars]. Errors name
 * origin:line and what to fix. The pipeline is freeable after an error. */
int tb_pipeline_parse(tb_pipeline *p, const char *text, const char *origin, char *const *overrides, int noverrides);
/* As tb_pipeline_parse, with ${PIPELINE_DIR} = dir (NULL: "."). */
int tb_pipeline_parse_in(tb_pipeline *p, const char *text, const char *origin, const char *dir,
                         char *const *overrides, int noverrides);
int tb_pipeline_load(tb_pipeline *p, const char *path, char *const *overrides, int noverrides);
void tb_pipeline_free(tb_pipeline *p);

/* Index of the stage called `name`, or -1. */
int tb_pipeline_find(const tb_pipeline *p, const char *name);

/* Finds each stage's program: a name with a '/' as is; otherwise in `bin_dir` (may be NULL),
 * then in PATH. Every stage is looked up (a missing one keeps program == NULL); the error names
 * the first program that is missing or not executable. */
int tb_pipeline_resolve(tb_pipeline *p, const char *bin_dir);

/* The thread count the runner gives the stage in TB_THREADS: its `threads = N`, else the
 * runner's own TB_THREADS, else the available cores divided by the stages that may run beside it
 * (at least 1). */
int tb_pipeline_stage_threads(const tb_pipeline *p, int i);

/* Writes the plan (stages in start order, their dependencies and commands) to `out`. */
int tb_pipeline_write_plan(const tb_pipeline *p, FILE *out);

/* Checks a resolved pipeline before running it: asks every describing stage for --describe
 * (valid JSON naming parameters), checks the options of its run line against them (unknown
 * options, values of the wrong type, missing required ones), and checks that a stage reading an
 * endpoint another stage writes expects the message kind and fields that one produces. Writes
 * one line per stage (and per problem) to `report`; fails when any problem was found. */
int tb_pipeline_check(const tb_pipeline *p, FILE *report);

/* Whether the runner asks stage i's program for --describe (its `describe` key; auto: tb-*). */
int tb_pipeline_wants_describe(const tb_pipeline_stage *s);
/* Runs `program --describe` (10 s limit); its stdout (malloc'd) when it exits 0 in time. */
int tb_pipeline_run_describe(const char *program, const char *name, char **out);

/* Events reported to tb_pipeline_run_opts.on_stage. */
enum { TB_PIPELINE_EV_START = 0, TB_PIPELINE_EV_OK };

typedef struct tb_pipeline_run_opts {
    double grace;          /* seconds between SIGTERM and SIGKILL (<= 0: 5) */
    FILE *log;             /* stage stderr lines, prefixed (NULL: stderr) */
    const char *bin_dir;   /* put first in the stages' PATH (may be NULL) */
    const int *skip;       /* per stage, 1: do not run it, count it as done (NULL: run every stage) */
    char **const *argv;    /* per stage, a command to run instead of its run line (NULL entries: the run line) */
    /* Called just before a stage starts (EV_START) and when it exited 0 (EV_OK; seconds = its run
     * time). A failure is logged as a warning; the run goes on. */
    int (*on_stage)(void *ctx, int stage, int event, double seconds);
    void *ctx;
} tb_pipeline_run_opts;

enum { TB_STAGE_PENDING = 0, TB_STAGE_RUNNING, TB_STAGE_DONE, TB_STAGE_NOT_RUN, TB_STAGE_SKIPPED };

typedef struct tb_pipeline_result {
    int failed;            /* index of the first stage that failed, -1 if none */
    int interrupted;       /* the signal that stopped the run (SIGINT/SIGTERM), 0 if none */
    int *state;            /* per stage: TB_STAGE_* (malloc'd; tb_pipeline_result_free) */
    int *wait_status;      /* per stage: the status from waitpid when DONE */
    pid_t *pid;            /* per stage: its pid once started, else 0 */
    double *seconds;       /* per stage: run time (start to exit) when DONE */
} tb_pipeline_result;

/* Runs a resolved pipeline to the end. TB_OK only when every stage ran and exited 0; TB_EPEER
 * when a stage failed (the message names it and its exit status or signal); TB_EINTR when
 * interrupted. `res` may be NULL. Uses tb/base/signals.h (installs with TB_SIGNALS_NO_HARD_KILL if
 * not yet installed). */
int tb_pipeline_run(const tb_pipeline *p, const tb_pipeline_run_opts *opts, tb_pipeline_result *res);
void tb_pipeline_result_free(tb_pipeline_result *res);

/* The state of stage i after a run, as the summary shows it: "ok", "skipped: up to date",
 * "FAILED: exit status 3", "stopped: killed by signal 15 (Terminated)", "not started". */
void tb_pipeline_state_text(const tb_pipeline_result *res, int i, char *buf, size_t cap);

/* "exit status 3", "killed by signal 9 (Killed)" */
void tb_pipeline_describe_status(int wait_status, char *buf, size_t cap);

/* Keeps only the stages named in `names` (comma or blank separated), in file order. An `after`
 * naming a stage left out is dropped: the caller has run that stage already (tb-pipeline --only,
 * used by the containers of docker-compose.yml, each running its own steps of one pipeline file).
 * An unknown name is an error naming it and the file. */
int tb_pipeline_select(tb_pipeline *p, const char *names);

#endif
