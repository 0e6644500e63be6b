/* tb/train/evaluate.h - runs a model over a stream of token batches: task metrics, predictions, speed.
 *
 * Input: messages in the batch format of tb/text/dataset.h (tb_batch_to_msg), from any endpoint
 * tb/wire/stream.h opens (a message file, ipc://, tcp://). Every batch is run forward with dropout off
 * (pooler + classifier); the logits go into a tb_taskmetrics accumulator with the gold labels.
 *
 * Metric kind: given, or TB_TM_KIND_COUNT for automatic: the GLUE metric of the task the first
 * batch names in its "task" field (tb-tokenize writes it: CoLA MCC, MRPC/QQP accuracy and F1,
 * STS-B correlation, ...; tb_taskmetrics_kind_for_task), else CORR when the model has one output
 * (regression), otherwise ACCURACY. Batches whose "label_order" metadata is "regression" need a
 * 1-output model; a label order of n names needs an n-label model (else TB_ESHAPE naming both).
 *
 * Predictions (optional): a GLUE submission TSV, "index<TAB>prediction" header, then one row per
 * example in stream order: the example id and the predicted label's name from the batch's
 * "label_order" (class ids when the batches carry none), or the predicted value (%.9g: the float exactly, so metrics can be recomputed from the file)
 * for regression. Written under a temporary name and renamed when complete.
 *
 * Vocabulary: with expect_vocab_hash set, a batch made with another vocabulary (its vocab_hash)
 * stops the evaluation with an error naming both hashes, the input and the batch.
 *
 * Speed: examples per second of the forward passes alone (examples_per_s) and of the whole run
 * including reading and decoding (wall_examples_per_s).
 */
#ifndef TB_EVALUATE_H
#define TB_EVALUATE_H

#include "tb/model/bert.h"
#include "tb/train/taskmetrics.h"

#include <stdint.h>

typedef struct tb_eval_opts {
    const char *input;             /* endpoint of token batches */
    tb_taskmetrics_kind kind;      /* TB_TM_KIND_COUNT: automatic (see above) */
    const char *predictions_path;  /* NULL: none */
    tb_bert_mode arena_mode;       /* TB_BERT_INFER (default); a trainer passes TB_BERT_TRAIN so its
                                      arena is reused instead of rebuilt */
    int64_t max_batches;           /* > 0: stop after this many batches */
    int recv_timeout_ms;           /* per message; <= 0: wait (the dead-producer check applies) */
    const char *expect_vocab_hash; /* the model's vocabulary hash: every batch's vocab_hash must equal
                                      it (tb_batch_check_vocab); NULL or "": unchecked */
    const char *vocab_from;        /* where that hash comes from, for the error ("checkpoint X's
                                      vocab.txt"); NULL: "the model's vocabulary" */
} tb_eval_opts;

typedef struct tb_eval_result {
    tb_taskmetrics_result metrics;
    int64_t examples, batches;
    double forward_seconds, wall_seconds;
    double examples_per_s;         /* examples / forward_seconds */
    double wall_examples_per_s;    /* examples / wall_seconds */
    char label_order[512];         /* of the first batch ("" when absent) */
} tb_eval_result;

/* Defaults: automatic kind, no predictions, TB_BERT_INFER, all batches, wait. */
void tb_eval_opts_default(tb_eval_opts *o);

/* The metric kind used for `m` when `want` is TB_TM_KIND_COUNT (else `want`). */
tb_taskmetrics_kind tb_eval_kind_for_model(const tb_bert_model *m, tb_taskmetrics_kind want);

/* Evaluates `m` (it needs a classification/regression head) over o->input until END. */
int tb_evaluate(tb_bert_model *m, const tb_eval_opts *o, tb_eval_result *out);

/* Model size: parameter count (the tied MLM decoder counted once) and fp32 bytes. */
void tb_eval_model_size(const tb_bert_model *m, int64_t *params, double *megabytes);

/* One JSON object (malloc'd, no newline) with the metrics and speed of `r`, the model size, and
 * the checkpoint path `name` (may be NULL):
 * {"checkpoint":..,"examples":..,"accuracy":..,...,"main":..,"examples_per_s":..,
 *  "wall_examples_per_s":..,"params":..,"size_mb":..}. */
int tb_eval_format_json(const tb_eval_result *r, const char *name, int64_t params, double megabytes, char **out);

/* A side-by-side table (malloc'd) of n results (n >= 1; names label the columns): every metric,
 * examples/s, parameters, size; with n = 2 also the ratios first / second ("x smaller", "x faster"). */
int tb_eval_format_table(const tb_eval_result *const *r, const char *const *names, const int64_t *params,
                         const double *megabytes, int n, char **out);

#endif
