/* rows.h - what one input line of tb-predict holds (rows.c): a GLUE test.tsv row (id column, text
 * columns, no label) or a plain line (a text, or a TAB-separated pair).
 *
 * GLUE test.tsv layouts (the files of the GLUE benchmark's download; the first line is a header):
 *   cola, sst-2   index, sentence                                              a = 1
 *   mrpc          index, #1 ID, #2 ID, #1 String, #2 String                    a = 3, b = 4
 *   sts-b         index, genre, filename, year, old_index, source1, source2,
 *                 sentence1, sentence2                                         a = 7, b = 8
 *   qqp           id, question1, question2                                     a = 1, b = 2
 *   mnli, mnli-mm index, promptID, pairID, genre, sentence1_binary_parse,
 *                 sentence2_binary_parse, sentence1_parse, sentence2_parse,
 *                 sentence1, sentence2                                         a = 8, b = 9
 *   qnli          index, question, sentence                                    a = 1, b = 2
 *   rte, wnli     index, sentence1, sentence2                                  a = 1, b = 2
 * The id is always column 0.
 */
#ifndef TB_PREDICT_ROWS_H
#define TB_PREDICT_ROWS_H

#include "tb/text/task.h"

#include <stddef.h>

typedef struct pr_test_layout {
    int n_cols;            /* fields of the header and of every row */
    int col_a, col_b;      /* col_b -1: single sentence */
    const char *header;    /* the header's fields, ", "-separated, for messages */
} pr_test_layout;

/* The test.tsv layout of a GLUE task; NULL for simple / corpus. */
const pr_test_layout *pr_test_layout_of(tb_task task);

/* A row's pieces, pointing into the line. */
typedef struct pr_row {
    const char *id, *a, *b;   /* b NULL: single text; id NULL for plain lines */
    size_t id_n, a_n, b_n;
} pr_row;

/* Checks a test.tsv header line (fields count and first field "index" or "id"). The error
 * names where:1 and the header the task's test.tsv has. */
int pr_test_header(const char *where, tb_task task, const char *s, size_t n);

/* Splits a test.tsv row. Errors name where:line and the missing column. */
int pr_test_row(const char *where, long long line, tb_task task, const char *s, size_t n, pr_row *out);

/* Splits a plain line: `pair` 1: text<TAB>text_b (exactly one tab), 0: the whole line is one text
 * (no tab allowed), -1 (task unknown): a pair when the line has one tab. */
int pr_plain_row(const char *where, long long line, int pair, const char *s, size_t n, pr_row *out);

#endif
