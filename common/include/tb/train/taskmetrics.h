/* tb/train/taskmetrics.h - GLUE task metrics from predictions and gold labels.
 *
 * An accumulator: tb_taskmetrics_init(kind, labels), then tb_taskmetrics_add_* once per batch,
 * then tb_taskmetrics_compute, then tb_taskmetrics_free (tb_taskmetrics_reset starts over for the
 * next evaluation). Classification keeps only a labels x labels confusion matrix; regression keeps
 * every (prediction, gold) pair, since Spearman needs ranks.
 *
 * What each kind reports (names as they appear in the result, the table and the JSON):
 *   TB_TM_ACCURACY  accuracy                      SST-2, MNLI (3 classes), QNLI, RTE, WNLI, text<TAB>label
 *   TB_TM_ACC_F1    accuracy, f1, acc_and_f1      MRPC, QQP (2 classes; F1 of class 1)
 *   TB_TM_MCC       mcc, accuracy                 CoLA
 *   TB_TM_CORR      pearson, spearman, corr       STS-B (regression, 1 output)
 * The main metric (the one a trainer keeps the best checkpoint by) is the task's GLUE score:
 * accuracy for ACCURACY, acc_and_f1 (the mean of F1 and accuracy, as GLUE scores MRPC and QQP;
 * the TinyBERT reference keeps the best by accuracy alone) for ACC_F1, mcc for MCC, corr (the
 * mean of Pearson and Spearman) for CORR.
 *
 * Definitions (they match scikit-learn 1.2 and SciPy 1.10, against which the tests check):
 *   accuracy   = correct / examples.
 *   f1         = F1 of class 1 = 2 tp / (2 tp + fp + fn), as sklearn f1_score(pos_label=1) with
 *                zero_division=0: 0 when tp = 0, in particular when class 1 is neither predicted
 *                nor gold (sklearn's default "warn" also gives 0 there).
 *   acc_and_f1 = (accuracy + f1) / 2 (the reference's acc_and_f1).
 *   mcc        = Matthews correlation, the multi-class form of sklearn matthews_corrcoef:
 *                (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2)) with c
 *                correct, s examples, p_k / t_k the times class k is predicted / gold; 0 when
 *                the denominator is 0 (constant predictions or constant labels), as sklearn.
 *   pearson    = Pearson correlation in double precision, clipped to [-1, 1] (scipy pearsonr).
 *   spearman   = Pearson correlation of the ranks, tied values taking the average of their ranks
 *                (scipy spearmanr).
 *   corr       = (pearson + spearman) / 2 (the reference's pearson_and_spearman).
 * Degenerate cases: no examples -> tb_taskmetrics_compute fails with TB_EINVAL. Pearson and
 * Spearman are undefined (NaN) when the predictions or the labels are all equal, or when there is
 * only one example; compute then logs a warning naming the cause, the value is NaN, and the table
 * shows "n/a" and the JSON null (with a "nonfinite" object, as tb/base/metrics.h does). corr is NaN
 * when either is.
 *
 * Inputs are checked: a class id outside [0, labels), a non-finite logit, prediction or target
 * is TB_EINVAL naming the row (a NaN logit means the model diverged; silently taking some argmax
 * would hide it). Argmax ties go to the lowest class id (as numpy and torch argmax).
 */
#ifndef TB_TASKMETRICS_H
#define TB_TASKMETRICS_H

#include <stdint.h>

#include "tb/text/dataset.h"
#include "tb/base/metrics.h"
#include "tb/base/tensor.h"

typedef enum tb_taskmetrics_kind {
    TB_TM_ACCURACY = 0,
    TB_TM_ACC_F1,
    TB_TM_MCC,
    TB_TM_CORR,
    TB_TM_KIND_COUNT
} tb_taskmetrics_kind;

#define TB_TM_MAX_LABELS 1024 /* classes a classification accumulator accepts */
#define TB_TM_MAX_VALUES 4    /* values one result can hold */

typedef struct tb_taskmetrics {
    tb_taskmetrics_kind kind;
    int labels;           /* classes (>= 2), or 1 for TB_TM_CORR */
    int64_t count;        /* examples added */
    int64_t *confusion;   /* classification: [gold * labels + pred], labels x labels */
    double *pred, *gold;  /* regression: count pairs, capacity cap */
    int64_t cap;
} tb_taskmetrics;

typedef struct tb_taskmetric_value {
    const char *name;     /* static string: "accuracy", "f1", "acc_and_f1", "mcc", "pearson", ... */
    double value;         /* NaN when undefined */
} tb_taskmetric_value;

typedef struct tb_taskmetrics_result {
    tb_taskmetrics_kind kind;
    int64_t examples;
    int n_values;
    tb_taskmetric_value values[TB_TM_MAX_VALUES];
    int main_index;       /* values[main_index] is the task's main metric */
} tb_taskmetrics_result;

/* "accuracy", "acc_f1", "mcc", "corr"; NULL for an invalid kind. */
const char *tb_taskmetrics_kind_name(tb_taskmetrics_kind kind);
/* The metric kind of a task (CoLA -> MCC, MRPC/QQP -> ACC_F1, STS-B -> CORR, the other GLUE
 * tasks and text<TAB>label -> ACCURACY). TB_EINVAL for the unlabelled corpus. */
int tb_taskmetrics_kind_for_task(tb_task task, tb_taskmetrics_kind *out);

/* labels: number of classes (2..TB_TM_MAX_LABELS; exactly 2 for ACC_F1) or 1 for CORR. */
int tb_taskmetrics_init(tb_taskmetrics *m, tb_taskmetrics_kind kind, int labels);
void tb_taskmetrics_free(tb_taskmetrics *m);
/* Forgets every example added (keeps kind, labels and memory). */
void tb_taskmetrics_reset(tb_taskmetrics *m);

/* Classification: predicted and gold class ids of n examples. */
int tb_taskmetrics_add_classes(tb_taskmetrics *m, const int32_t *pred, const int32_t *gold, int64_t n);
/* Classification: logits [n, labels] row-major (prediction = argmax) and gold class ids [n]. */
int tb_taskmetrics_add_logits(tb_taskmetrics *m, const float *logits, const int32_t *gold, int64_t n);
/* Regression (CORR): predicted and gold values of n examples. */
int tb_taskmetrics_add_values(tb_taskmetrics *m, const float *pred, const float *gold, int64_t n);
/* A batch as tensors, as the model and tb/text/dataset.h give them: classification logits f32
 * [B, labels] with labels i32 or i64 [B]; regression outputs f32 [B, 1] or [B] with labels f32
 * [B]. Both must be contiguous. */
int tb_taskmetrics_add_batch(tb_taskmetrics *m, const tb_tensor *logits, const tb_tensor *labels);

/* Computes the metrics of everything added so far. TB_EINVAL when nothing was added. */
int tb_taskmetrics_compute(const tb_taskmetrics *m, tb_taskmetrics_result *out);

/* The value named `name` in `r`; NaN when `r` has no such value. */
double tb_taskmetrics_get(const tb_taskmetrics_result *r, const char *name);
/* The main metric's value and name (name may be NULL). */
double tb_taskmetrics_main(const tb_taskmetrics_result *r, const char **name);

/* A human-readable table (malloc'd, caller frees), values with 4 decimals, "n/a" for NaN, the
 * main metric marked with " *":
 *   <title>                (line left out when title is NULL)
 *   metric      value
 *   accuracy    0.8125 *
 *   f1          0.8571
 *   acc_and_f1  0.8348
 *   examples    16
 */
int tb_taskmetrics_format_table(const tb_taskmetrics_result *r, const char *title, char **out);
/* One JSON object (malloc'd, no newline): {"examples":16,"accuracy":0.8125,"f1":0.857142857,
 * ...,"main":"accuracy"}; values with %.9g; NaN as null plus "nonfinite":{"pearson":"nan"}. */
int tb_taskmetrics_format_json(const tb_taskmetrics_result *r, char **out);
/* Fields for tb_metrics_write (an "eval" line): "examples", every value, then "main" (the main
 * metric's name, so tb/base/plot.h and other readers know which value to follow). `fields` needs room
 * for TB_TM_MAX_FIELDS entries; *n receives the count. Keys and strings point to static storage. */
#define TB_TM_MAX_FIELDS (2 + TB_TM_MAX_VALUES)
int tb_taskmetrics_fields(const tb_taskmetrics_result *r, tb_metric *fields, int cap, int *n);

#endif
