/* tb/text/task.h - the task table: GLUE tasks, the seed project's text<TAB>label format and a
 * plain corpus, with their columns and label sets (task.c).
 *
 * Columns and label orders follow the TinyBERT reference's processors (task_distill.py);
 * docs/data.md has the table.
 */
#ifndef TB_TASK_H
#define TB_TASK_H

typedef enum tb_task {
    TB_TASK_COLA = 0,
    TB_TASK_SST2,
    TB_TASK_MRPC,
    TB_TASK_STSB,
    TB_TASK_QQP,
    TB_TASK_MNLI,     /* train.tsv / dev_matched.tsv */
    TB_TASK_MNLI_MM,  /* dev_mismatched.tsv */
    TB_TASK_QNLI,
    TB_TASK_RTE,
    TB_TASK_WNLI,
    TB_TASK_SIMPLE,   /* text<TAB>label (and text<TAB>text_b<TAB>label), integer labels */
    TB_TASK_CORPUS,   /* plain text, no labels */
    TB_TASK_COUNT
} tb_task;

typedef struct tb_task_info {
    const char *name;        /* "cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", ... */
    int header;              /* the first row is a header */
    int col_a, col_b;        /* text columns (col_b -1: single sentence) */
    int col_label;           /* >= 0 from the start, < 0 from the end (-1 = last field) */
    int min_cols;            /* rows with fewer fields are malformed */
    int regression;          /* float labels */
    int n_labels;            /* classification: number of labels, in the order of `labels` */
    const char *const *labels;
    /* header tasks: the names GLUE's header line gives the text and label columns (compared
     * without case), so that a file of another task is recognised at its first line */
    const char *head_a, *head_b, *head_label;
} tb_task_info;

/* Facts of a task; NULL for an invalid value. */
const tb_task_info *tb_task_get(tb_task task);
/* Parses a task name (case-insensitive; "sst2" and "sst-2", "stsb" and "sts-b" both work). */
int tb_task_parse(const char *name, tb_task *out);

#endif
