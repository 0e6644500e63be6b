/* tb/base/outfile.h - output files that never destroy what was there: written under a temporary
 * name and renamed into place when complete, and never one of the stage's own inputs.
 *
 *   tb_outfile o;
 *   TB_TRY(tb_outfile_open(&o, "out/vocab.txt"));   // creates out/vocab.txt.tmp-<pid>
 *   fprintf(o.f, ...);
 *   TB_TRY(tb_outfile_commit(&o));                   // flush, fsync, close, rename over the old one
 * error:
 *   tb_outfile_abort(&o);                            // after a failure: temporary removed, the old
 *                                                    // out/vocab.txt untouched; no-op after commit
 *
 * The temporary lives in the same folder as the output, so the rename is atomic: a reader sees
 * the old file or the complete new one, never a part. A path that is a folder is refused at open.
 *
 * Inputs and outputs: tb_output_check refuses an output that names the same file as one of the
 * inputs (same st_dev and st_ino when both exist, otherwise the same normalised absolute path),
 * before anything is opened. Endpoints are understood: file:PATH, file://PATH and plain paths are
 * files; tcp://, ipc://, inproc:// and "-" (standard input/output) never collide.
 */
#ifndef TB_OUTFILE_H
#define TB_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

#define TB_OUTFILE_PATH_MAX 4096

typedef struct tb_outfile {
    FILE *f;                           /* open on the temporary; NULL when closed */
    char path[TB_OUTFILE_PATH_MAX];    /* the final name */
    char tmp[TB_OUTFILE_PATH_MAX + 32];/* PATH.tmp-<pid>; "" once renamed or removed */
} tb_outfile;

/* Creates PATH.tmp-<pid> for writing (binary). TB_EINVAL for an empty or too long path or a path
 * that is a folder; TB_EIO when the temporary cannot be created (the message names the folder). */
int tb_outfile_open(tb_outfile *o, const char *path);
/* Flushes, fsyncs and closes the temporary, then renames it to the final name. On failure the
 * temporary is removed and the final name is left as it was. */
int tb_outfile_commit(tb_outfile *o);
/* Closes and removes the temporary (nothing to do after a commit). Safe on a zeroed struct. */
void tb_outfile_abort(tb_outfile *o);

/* The file path an endpoint or path names, into out[0..n): "" for tcp://, ipc://, inproc://, "-"
 * and NULL/empty. Returns 0, or -1 when it does not fit. */
int tb_outfile_endpoint_path(const char *endpoint, char *out, size_t n);

/* 1 when endpoints/paths a and b name the same file (see above), else 0. */
int tb_outfile_same(const char *a, const char *b);

/* One named path of a stage: its option ("input") and value (may be NULL: not given). */
typedef struct tb_path_arg {
    const char *option;
    const char *value;
} tb_path_arg;

/* TB_OK, or TB_EINVAL when an output (outputs[0..nout)) names the same file as an input
 * (inputs[0..nin)): "--output 'X' is the same file as --input 'Y': writing it would destroy the
 * input; choose another output path". Entries whose value is NULL are skipped. */
int tb_output_check(const tb_path_arg *outputs, int nout, const tb_path_arg *inputs, int nin);

/* tb_output_check on a stage's command line: `outputs` and `inputs` are option names (NULL-
 * terminated lists), e.g. {"output", "metrics", NULL} and {"input", "vocab", NULL}. */
struct tb_cli;
int tb_cli_output_check(const struct tb_cli *cli, const char *const *outputs, const char *const *inputs);

#endif
