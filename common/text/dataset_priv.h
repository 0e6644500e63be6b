/* dataset_priv.h - helpers shared by the readers (glue.c, corpus.c) and dataset.c; not public. */
#ifndef TB_DATASET_PRIV_H
#define TB_DATASET_PRIV_H

#include "tb/text/dataset.h"

#include <stddef.h>

/* Reads a whole file (NUL-terminated copy in *buf); skips nothing. */
int tb_ds_slurp(const char *path, char **buf, size_t *len);
/* Starts a dataset for `path`. */
int tb_ds_begin(tb_dataset *ds, tb_task task, const char *path);
/* Appends an example; copies the texts (b may be NULL). */
int tb_ds_push(tb_dataset *ds, const char *a, size_t alen, const char *b, size_t blen, int32_t label,
               float target, int64_t line, int64_t doc);
/* Records a malformed row: lenient -> count and return TB_OK, strict -> TB_EFORMAT (the message
 * "path:line: <what>" is recorded by the caller through `msg`). */
int tb_ds_bad_row(tb_dataset *ds, int lenient, int64_t line, const char *msg);

#endif
