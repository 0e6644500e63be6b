/* stages/augment/rows.h - task rows read one at a time, kept as they are in the file, so that
 * tb-augment writes its output in the input's own format.
 *
 * Formats and row checks are those of the task readers (tb/text/dataset.h, docs/data.md): a GLUE
 * task name (columns, header and labels from tb_task_get) or "simple" (text<TAB>label, or
 * text<TAB>text_b<TAB>label; label = last field, a decimal integer >= 0; blank lines skipped).
 * A UTF-8 BOM at the start is skipped, a trailing "\r" removed, fields split on "\t" only. A row
 * with too few fields, an unknown label, a bad number or invalid UTF-8 is TB_EFORMAT naming
 * file:line; with `lenient` it is skipped instead, logged as a warning naming file:line and the
 * reason, and counted (`skipped`, the first at `skipped_first_line`). Unlike tb_dataset_read_*,
 * rows are streamed: memory does not grow with the file.
 */
#ifndef TB_AUG_ROWS_H
#define TB_AUG_ROWS_H

#include "tb/text/dataset.h"

#include <stdint.h>
#include <stdio.h>

typedef struct tb_rows {
    FILE *f;
    char *path;
    const tb_task_info *info;  /* NULL for "simple" */
    char *header;              /* the header line (tasks with one), else NULL */
    /* the current row */
    char *line;                /* the line without "\n" and "\r" (owned; getline buffer) */
    size_t line_cap;
    int64_t lineno;            /* 1-based */
    char *copy;                /* fields, NUL-terminated */
    size_t copy_cap;
    char **field;
    int nf, field_cap;
    int col_a, col_b;          /* text columns of this row (col_b -1: none) */
    int64_t index;             /* 0-based example index of this row */
    int lenient;               /* skip malformed rows (a warning each) instead of failing */
    int64_t skipped;           /* malformed rows skipped */
    int64_t skipped_first_line;/* line of the first (0: none) */
} tb_rows;

/* Opens `path` in `format` ("simple" or a GLUE task name); reads the header of tasks that have one.
 * Set r->lenient afterwards to skip malformed rows (a bad header is always an error). */
int tb_rows_open(tb_rows *r, const char *path, const char *format);
/* Reads the next row into r; *got = 0 at the end of the file. */
int tb_rows_next(tb_rows *r, int *got);
void tb_rows_close(tb_rows *r);

/* Writes the tab-separated `line` with field `col` replaced by `text` and field `col2` by `text2`
 * (either index < 0: none), then "\n". */
int tb_rows_write_line(FILE *out, const char *line, int col, const char *text, int col2, const char *text2);

#endif
