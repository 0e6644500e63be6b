/* examples_priv.h - how the readers (glue.c, corpus.c) fill a tb_dataset (examples.c); not
 * public. */
#ifndef TB_EXAMPLES_PRIV_H
#define TB_EXAMPLES_PRIV_H

#include "tb/text/examples.h"

#include <stddef.h>
#include <stdint.h>

/* Starts an empty dataset of `task` for `path`. */
int tb_ds_begin(tb_dataset *ds, tb_task task, const char *path);
/* Appends an example; copies the texts (b may be NULL). */
int tb_ds_push(tb_dataset *ds, const char *a, size_t alen, const char *b, size_t blen, int32_t label,
               float target, int64_t line, int64_t doc);
/* Records a malformed row: lenient -> count and return TB_OK, strict -> TB_EFORMAT with the
 * message "path:line: <msg> (...)". */
int tb_ds_bad_row(tb_dataset *ds, int lenient, int64_t line, const char *msg);

#endif
