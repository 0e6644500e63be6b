/* predict.h - tb-predict: predictions of a checkpoint for unlabelled text (predict.c).
 *
 * Input: a GLUE test.tsv (glue = 1; the task's layout in rows.h, header checked) or plain lines
 * (one text per line, or text<TAB>text_b for pair tasks), from a file or standard input ("-").
 * Lines are read as they arrive and answered in chunks of at most `chunk` lines: a chunk ends
 * early when no more input is waiting, so a program writing one line at a time to our stdin gets
 * each answer at once. Each chunk goes to tinybert_logits (tb/api/tinybert.h), which sorts it by
 * length and runs batch_size texts per forward pass.
 *
 * Output ("-": stdout, else written under PATH.tmp and renamed when complete):
 *   glue:  "index<TAB>prediction" header, then one row per example: its id and the predicted
 *          label as GLUE's submission files spell it (the task's label names; the value with
 *          3 decimals for STS-B);
 *   lines: one line per input line: "label<TAB>p_0<TAB>...<TAB>p_{n-1}" (softmax probabilities,
 *          6 decimals) or, for a regression model, the score (6 decimals); with `logits` the
 *          raw logits (%.9g) instead of the probabilities / score.
 * Labels are the task's names when a task is given, else class ids 0..n-1.
 */
#ifndef TB_PREDICT_PREDICT_H
#define TB_PREDICT_PREDICT_H

#include <stdint.h>

typedef struct pr_opts {
    const char *model;    /* checkpoint folder */
    const char *input;    /* path or "-" */
    const char *output;   /* path or "-" */
    const char *task;     /* NULL: none (plain lines only) */
    int glue;             /* 1: input is a GLUE test.tsv (needs a GLUE task) */
    int logits;           /* lines: raw logits instead of probabilities */
    int max_seq_length, batch_size, chunk, threads, cased;
} pr_opts;

typedef struct pr_stats {
    int64_t examples;
    double seconds;       /* from the model being open to the output being complete */
} pr_stats;

int pr_run(const pr_opts *o, pr_stats *st);

#endif
