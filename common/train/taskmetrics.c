/* taskmetrics.c - GLUE task metrics (accuracy, F1, Matthews, Pearson, Spearman). */
#include "tb/train/taskmetrics.h"

#include "tb/base/error.h"
#include "tb/base/json.h"
#include "tb/base/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const tm_kind_names[TB_TM_KIND_COUNT] = {"accuracy", "acc_f1", "mcc", "corr"};

const char *tb_taskmetrics_kind_name(tb_taskmetrics_kind kind)
{
    return (unsigned)kind < TB_TM_KIND_COUNT ? tm_kind_names[kind] : NULL;
}

int tb_taskmetrics_kind_for_task(tb_task task, tb_taskmetrics_kind *out)
{
    switch (task) {
    case TB_TASK_COLA: *out = TB_TM_MCC; return TB_OK;
    case TB_TASK_MRPC:
    case TB_TASK_QQP: *out = TB_TM_ACC_F1; return TB_OK;
    case TB_TASK_STSB: *out = TB_TM_CORR; return TB_OK;
    case TB_TASK_SST2:
    case TB_TASK_MNLI:
    case TB_TASK_MNLI_MM:
    case TB_TASK_QNLI:
    case TB_TASK_RTE:
    case TB_TASK_WNLI:
    case TB_TASK_SIMPLE: *out = TB_TM_ACCURACY; return TB_OK;
    default: break;
    }
    return TB_ERR(TB_EINVAL, "task %d has no labels to evaluate (the plain corpus is for pre-training and "
                  "general distillation; evaluate a GLUE task or a text<TAB>label file)", (int)task);
}

int tb_taskmetrics_init(tb_taskmetrics *m, tb_taskmetrics_kind kind, int labels)
{
    int rc = TB_OK;
    memset(m, 0, sizeof *m);
    TB_CHECK((unsigned)kind < TB_TM_KIND_COUNT, TB_EINVAL, "unknown task-metric kind %d", (int)kind);
    m->kind = kind;
    m->labels = labels;
    if (kind == TB_TM_CORR) {
        TB_CHECK(labels == 1, TB_EINVAL, "a regression task (Pearson/Spearman) has 1 output, got labels = %d; "
                 "check the model's num_labels", labels);
        return TB_OK;
    }
    TB_CHECK(labels >= 2 && labels <= TB_TM_MAX_LABELS, TB_EINVAL,
             "a classification task needs 2..%d labels, got %d", TB_TM_MAX_LABELS, labels);
    TB_CHECK(kind != TB_TM_ACC_F1 || labels == 2, TB_EINVAL,
             "F1 of the positive class is defined for 2 labels (MRPC, QQP), got %d; use accuracy instead", labels);
    m->confusion = calloc((size_t)labels * (size_t)labels, sizeof *m->confusion);
    TB_CHECK(m->confusion, TB_ENOMEM, "out of memory for a %d x %d confusion matrix", labels, labels);
    return TB_OK;
error:
    m->labels = 0;
    return rc;
}

void tb_taskmetrics_free(tb_taskmetrics *m)
{
    free(m->confusion);
    free(m->pred);
    free(m->gold);
    memset(m, 0, sizeof *m);
}

void tb_taskmetrics_reset(tb_taskmetrics *m)
{
    if (m->confusion) memset(m->confusion, 0, (size_t)m->labels * (size_t)m->labels * sizeof *m->confusion);
    m->count = 0;
}

static int tm_check_ready(const tb_taskmetrics *m, int regression, int64_t n, const void *a, const void *b)
{
    if ((unsigned)m->kind >= TB_TM_KIND_COUNT || m->labels < 1)
        return TB_ERR(TB_EINVAL, "task metrics used before tb_taskmetrics_init succeeded");
    if (regression && m->kind != TB_TM_CORR)
        return TB_ERR(TB_EINVAL, "regression values given to a '%s' (classification) accumulator; "
                      "use tb_taskmetrics_add_classes or _add_logits", tm_kind_names[m->kind]);
    if (!regression && m->kind == TB_TM_CORR)
        return TB_ERR(TB_EINVAL, "class ids given to a 'corr' (regression) accumulator; use tb_taskmetrics_add_values");
    if (n < 0) return TB_ERR(TB_EINVAL, "negative example count %lld", (long long)n);
    if (n > 0 && (!a || !b)) return TB_ERR(TB_EINVAL, "NULL prediction or label array for %lld examples", (long long)n);
    return TB_OK;
}

/* Checks every gold id (and pred id, when pred is not NULL) lies in [0, labels). */
static int tm_check_classes(const tb_taskmetrics *m, const int32_t *pred, const int32_t *gold, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (gold[i] < 0 || gold[i] >= m->labels)
            return TB_ERR(TB_EINVAL, "gold label of example %lld is %d, outside [0, %d); check the label order "
                          "of the data and the model's num_labels", (long long)i, gold[i], m->labels);
        if (pred && (pred[i] < 0 || pred[i] >= m->labels))
            return TB_ERR(TB_EINVAL, "predicted class of example %lld is %d, outside [0, %d)", (long long)i, pred[i],
                          m->labels);
    }
    return TB_OK;
}

int tb_taskmetrics_add_classes(tb_taskmetrics *m, const int32_t *pred, const int32_t *gold, int64_t n)
{
    int rc = tm_check_ready(m, 0, n, pred, gold);
    if (rc == TB_OK) rc = tm_check_classes(m, pred, gold, n);
    if (rc != TB_OK) return rc;
    for (int64_t i = 0; i < n; i++) m->confusion[(int64_t)gold[i] * m->labels + pred[i]]++;
    m->count += n;
    return TB_OK;
}

int tb_taskmetrics_add_logits(tb_taskmetrics *m, const float *logits, const int32_t *gold, int64_t n)
{
    int rc = tm_check_ready(m, 0, n, logits, gold);
    if (rc == TB_OK) rc = tm_check_classes(m, NULL, gold, n);
    if (rc != TB_OK) return rc;
    const int c = m->labels;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < c; k++)
            if (!isfinite(logits[i * c + k]))
                return TB_ERR(TB_EINVAL, "logit [%lld, %d] is %g; the model produced a non-finite output "
                              "(diverged training or a bad checkpoint)", (long long)i, k, (double)logits[i * c + k]);
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * c;
        int best = 0;
        for (int k = 1; k < c; k++)
            if (row[k] > row[best]) best = k;
        m->confusion[(int64_t)gold[i] * c + best]++;
    }
    m->count += n;
    return TB_OK;
}

static int tm_reserve(tb_taskmetrics *m, int64_t extra)
{
    if (m->count + extra <= m->cap) return TB_OK;
    int64_t cap = m->cap ? m->cap : 1024;
    while (cap < m->count + extra) {
        if (cap > ((int64_t)1 << 40)) return TB_ERR(TB_ENOMEM, "more than 2^40 regression examples");
        cap *= 2;
    }
    double *p = realloc(m->pred, (size_t)cap * sizeof *p);
    if (!p) return TB_ERR(TB_ENOMEM, "out of memory for %lld regression predictions", (long long)cap);
    m->pred = p;
    double *g = realloc(m->gold, (size_t)cap * sizeof *g);
    if (!g) return TB_ERR(TB_ENOMEM, "out of memory for %lld regression targets", (long long)cap);
    m->gold = g;
    m->cap = cap;
    return TB_OK;
}

int tb_taskmetrics_add_values(tb_taskmetrics *m, const float *pred, const float *gold, int64_t n)
{
    int rc = tm_check_ready(m, 1, n, pred, gold);
    if (rc != TB_OK) return rc;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(pred[i]))
            return TB_ERR(TB_EINVAL, "prediction of example %lld is %g; the model produced a non-finite output "
                          "(diverged training or a bad checkpoint)", (long long)i, (double)pred[i]);
        if (!isfinite(gold[i]))
            return TB_ERR(TB_EINVAL, "gold value of example %lld is %g; check the data's label column",
                          (long long)i, (double)gold[i]);
    }
    rc = tm_reserve(m, n);
    if (rc != TB_OK) return rc;
    for (int64_t i = 0; i < n; i++) {
        m->pred[m->count + i] = pred[i];
        m->gold[m->count + i] = gold[i];
    }
    m->count += n;
    return TB_OK;
}

static int tm_add_batch_classes(tb_taskmetrics *m, const tb_tensor *logits, const tb_tensor *labels, int64_t b)
{
    int rc = tb_tensor_expect(logits, "logits", TB_F32, 2, (const int64_t[]){b, m->labels});
    if (rc != TB_OK) return rc;
    if (labels->dtype == TB_I32) return tb_taskmetrics_add_logits(m, logits->data, labels->data, b);
    if (labels->dtype != TB_I64)
        return TB_ERR(TB_ESHAPE, "labels of a classification batch must be i32 or i64, got %s",
                      tb_dtype_name(labels->dtype));
    int32_t *gold = malloc((size_t)(b ? b : 1) * sizeof *gold);
    if (!gold) return TB_ERR(TB_ENOMEM, "out of memory for %lld labels", (long long)b);
    const int64_t *src = labels->data;
    for (int64_t i = 0; i < b && rc == TB_OK; i++) {
        if (src[i] < 0 || src[i] >= m->labels)
            rc = TB_ERR(TB_EINVAL, "gold label of example %lld is %lld, outside [0, %d); check the label order "
                        "of the data and the model's num_labels", (long long)i, (long long)src[i], m->labels);
        gold[i] = (int32_t)src[i];
    }
    if (rc == TB_OK) rc = tb_taskmetrics_add_logits(m, logits->data, gold, b);
    free(gold);
    return rc;
}

int tb_taskmetrics_add_batch(tb_taskmetrics *m, const tb_tensor *logits, const tb_tensor *labels)
{
    if (!logits || !labels) return TB_ERR(TB_EINVAL, "NULL logits or labels tensor");
    if (labels->ndim != 1)
        return TB_ERR(TB_ESHAPE, "labels must be 1-D [batch], got %d dimensions", labels->ndim);
    if (!tb_tensor_is_contiguous(logits) || !tb_tensor_is_contiguous(labels))
        return TB_ERR(TB_ESHAPE, "logits and labels must be contiguous (copy a strided view with tb_tensor_copy)");
    const int64_t b = labels->shape[0];
    if (m->kind != TB_TM_CORR) return tm_add_batch_classes(m, logits, labels, b);
    int rc = tb_tensor_expect(labels, "regression labels", TB_F32, 1, (const int64_t[]){b});
    if (rc != TB_OK) return rc;
    if (logits->ndim == 2) rc = tb_tensor_expect(logits, "regression outputs", TB_F32, 2, (const int64_t[]){b, 1});
    else rc = tb_tensor_expect(logits, "regression outputs", TB_F32, 1, (const int64_t[]){b});
    if (rc != TB_OK) return rc;
    return tb_taskmetrics_add_values(m, logits->data, labels->data, b);
}

/* ---- the metrics ---------------------------------------------------------------------------- */

static void tm_push(tb_taskmetrics_result *r, const char *name, double v)
{
    r->values[r->n_values].name = name;
    r->values[r->n_values].value = v;
    r->n_values++;
}

static double tm_accuracy(const tb_taskmetrics *m)
{
    int64_t correct = 0;
    for (int k = 0; k < m->labels; k++) correct += m->confusion[(int64_t)k * m->labels + k];
    return (double)correct / (double)m->count;
}

/* F1 of class 1 with zero_division = 0: 2 tp / (2 tp + fp + fn), 0 when tp = 0. */
static double tm_f1_pos(const tb_taskmetrics *m)
{
    const int64_t tp = m->confusion[1 * 2 + 1], fp = m->confusion[0 * 2 + 1], fn = m->confusion[1 * 2 + 0];
    if (tp == 0) return 0.0;
    return 2.0 * (double)tp / (double)(2 * tp + fp + fn);
}

/* Multi-class Matthews correlation (Gorodkin's R_K, as sklearn); 0 when the denominator is 0. */
static double tm_mcc(const tb_taskmetrics *m)
{
    const int c = m->labels;
    double correct = 0, sum_pt = 0, sum_pp = 0, sum_tt = 0;
    const double s = (double)m->count;
    for (int k = 0; k < c; k++) {
        double p = 0, t = 0;
        for (int j = 0; j < c; j++) {
            p += (double)m->confusion[(int64_t)j * c + k]; /* predicted k */
            t += (double)m->confusion[(int64_t)k * c + j]; /* gold k */
        }
        correct += (double)m->confusion[(int64_t)k * c + k];
        sum_pt += p * t;
        sum_pp += p * p;
        sum_tt += t * t;
    }
    const double cov_pt = correct * s - sum_pt, cov_pp = s * s - sum_pp, cov_tt = s * s - sum_tt;
    if (cov_pp * cov_tt == 0.0) return 0.0;
    return cov_pt / sqrt(cov_pp * cov_tt);
}

static int tm_all_equal(const double *x, int64_t n)
{
    for (int64_t i = 1; i < n; i++)
        if (x[i] != x[0]) return 0;
    return 1;
}

/* Pearson correlation of x and y (n >= 2, neither constant), clipped to [-1, 1]. */
static double tm_pearson(const double *x, const double *y, int64_t n)
{
    double mx = 0, my = 0;
    for (int64_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (int64_t i = 0; i < n; i++) {
        const double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    double r = sxy / sqrt(sxx * syy);
    return r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r;
}

typedef struct tm_keyed {
    double v;
    int64_t i;
} tm_keyed;

static int tm_cmp_keyed(const void *a, const void *b)
{
    const double x = ((const tm_keyed *)a)->v, y = ((const tm_keyed *)b)->v;
    return (x > y) - (x < y);
}

/* Ranks 1..n of x into rank, tied values sharing the average of their ranks (scipy rankdata
 * "average"). `k` is scratch room for n entries. */
static void tm_rank(const double *x, int64_t n, tm_keyed *k, double *rank)
{
    for (int64_t i = 0; i < n; i++) k[i] = (tm_keyed){x[i], i};
    qsort(k, (size_t)n, sizeof *k, tm_cmp_keyed);
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && k[j].v == k[i].v) j++;
        const double avg = 0.5 * (double)(i + 1 + j); /* mean of the ranks i+1 .. j */
        for (int64_t t = i; t < j; t++) rank[k[t].i] = avg;
        i = j;
    }
}

static int tm_spearman(const tb_taskmetrics *m, double *out)
{
    const int64_t n = m->count;
    tm_keyed *k = malloc((size_t)n * sizeof *k);
    double *rp = malloc((size_t)n * sizeof *rp), *rg = malloc((size_t)n * sizeof *rg);
    int rc = TB_OK;
    if (!k || !rp || !rg) {
        rc = TB_ERR(TB_ENOMEM, "out of memory ranking %lld regression examples", (long long)n);
    } else {
        tm_rank(m->pred, n, k, rp);
        tm_rank(m->gold, n, k, rg);
        *out = tm_pearson(rp, rg, n);
    }
    free(k);
    free(rp);
    free(rg);
    return rc;
}

static int tm_compute_corr(const tb_taskmetrics *m, tb_taskmetrics_result *r)
{
    double pearson = NAN, spearman = NAN;
    const int64_t n = m->count;
    const int const_pred = n >= 2 && tm_all_equal(m->pred, n), const_gold = n >= 2 && tm_all_equal(m->gold, n);
    if (n < 2) {
        TB_WARN("Pearson and Spearman are undefined for a single example; reported as null");
    } else if (const_pred || const_gold) {
        TB_WARN("Pearson and Spearman are undefined: the %s are all equal (%g) over %lld examples; reported as null",
                const_pred ? "predictions" : "gold values", const_pred ? m->pred[0] : m->gold[0], (long long)n);
    } else {
        pearson = tm_pearson(m->pred, m->gold, n);
        int rc = tm_spearman(m, &spearman);
        if (rc != TB_OK) return rc;
    }
    tm_push(r, "pearson", pearson);
    tm_push(r, "spearman", spearman);
    tm_push(r, "corr", 0.5 * (pearson + spearman));
    r->main_index = 2;
    return TB_OK;
}

int tb_taskmetrics_compute(const tb_taskmetrics *m, tb_taskmetrics_result *out)
{
    memset(out, 0, sizeof *out);
    if ((unsigned)m->kind >= TB_TM_KIND_COUNT || m->labels < 1)
        return TB_ERR(TB_EINVAL, "task metrics computed before tb_taskmetrics_init succeeded");
    if (m->count == 0)
        return TB_ERR(TB_EINVAL, "no examples to compute '%s' metrics on; the evaluation stream was empty "
                      "(check the dev file and the stream endpoint)", tm_kind_names[m->kind]);
    out->kind = m->kind;
    out->examples = m->count;
    switch (m->kind) {
    case TB_TM_ACCURACY:
        tm_push(out, "accuracy", tm_accuracy(m));
        out->main_index = 0;
        break;
    case TB_TM_ACC_F1: {
        const double acc = tm_accuracy(m), f1 = tm_f1_pos(m);
        tm_push(out, "accuracy", acc);
        tm_push(out, "f1", f1);
        tm_push(out, "acc_and_f1", 0.5 * (acc + f1));
        out->main_index = 2; /* GLUE scores MRPC and QQP by the mean of F1 and accuracy */
        break;
    }
    case TB_TM_MCC:
        tm_push(out, "mcc", tm_mcc(m));
        tm_push(out, "accuracy", tm_accuracy(m));
        out->main_index = 0;
        break;
    case TB_TM_CORR: return tm_compute_corr(m, out);
    default: break;
    }
    return TB_OK;
}

double tb_taskmetrics_get(const tb_taskmetrics_result *r, const char *name)
{
    for (int i = 0; i < r->n_values && name; i++)
        if (strcmp(r->values[i].name, name) == 0) return r->values[i].value;
    return NAN;
}

double tb_taskmetrics_main(const tb_taskmetrics_result *r, const char **name)
{
    if (r->n_values <= 0 || r->main_index < 0 || r->main_index >= r->n_values) {
        if (name) *name = NULL;
        return NAN;
    }
    if (name) *name = r->values[r->main_index].name;
    return r->values[r->main_index].value;
}

/* ---- output ---------------------------------------------------------------------------------- */

static int tm_check_result(const tb_taskmetrics_result *r)
{
    if (!r || r->n_values < 1 || r->n_values > TB_TM_MAX_VALUES || r->main_index < 0 || r->main_index >= r->n_values)
        return TB_ERR(TB_EINVAL, "task-metrics result is empty or corrupt (format it after tb_taskmetrics_compute "
                      "succeeded)");
    for (int i = 0; i < r->n_values; i++)
        if (!r->values[i].name) return TB_ERR(TB_EINVAL, "task-metrics result value %d has no name", i);
    return TB_OK;
}

int tb_taskmetrics_format_table(const tb_taskmetrics_result *r, const char *title, char **out)
{
    tb_strbuf b = {0};
    int rc = TB_OK;
    TB_TRY(tm_check_result(r));
    if (title) TB_TRY(tb_strbuf_printf(&b, "%s\n", title));
    TB_TRY(tb_strbuf_printf(&b, "%-12s%s\n", "metric", "value"));
    for (int i = 0; i < r->n_values; i++) {
        const double v = r->values[i].value;
        const char *mark = i == r->main_index ? " *" : "";
        if (isfinite(v)) TB_TRY(tb_strbuf_printf(&b, "%-12s%.4f%s\n", r->values[i].name, v, mark));
        else TB_TRY(tb_strbuf_printf(&b, "%-12s%s%s\n", r->values[i].name, "n/a", mark));
    }
    TB_TRY(tb_strbuf_printf(&b, "%-12s%lld\n", "examples", (long long)r->examples));
    return tb_strbuf_take(&b, out);
error:
    tb_strbuf_free(&b);
    return rc;
}

int tb_taskmetrics_format_json(const tb_taskmetrics_result *r, char **out)
{
    tb_strbuf b = {0};
    int rc = TB_OK, nonfinite = 0;
    TB_TRY(tm_check_result(r));
    TB_TRY(tb_strbuf_printf(&b, "{\"examples\":%lld", (long long)r->examples));
    for (int i = 0; i < r->n_values; i++) {
        TB_TRY(tb_strbuf_puts(&b, ","));
        TB_TRY(tb_json_append_string(&b, r->values[i].name));
        TB_TRY(tb_strbuf_puts(&b, ":"));
        TB_TRY(tb_json_append_float(&b, r->values[i].value));
        nonfinite += !isfinite(r->values[i].value);
    }
    TB_TRY(tb_strbuf_puts(&b, ",\"main\":"));
    TB_TRY(tb_json_append_string(&b, r->values[r->main_index].name));
    if (nonfinite) {
        TB_TRY(tb_strbuf_puts(&b, ",\"nonfinite\":{"));
        for (int i = 0, first = 1; i < r->n_values; i++) {
            const double v = r->values[i].value;
            if (isfinite(v)) continue;
            TB_TRY(tb_strbuf_puts(&b, first ? "" : ","));
            TB_TRY(tb_json_append_string(&b, r->values[i].name));
            TB_TRY(tb_strbuf_puts(&b, isnan(v) ? ":\"nan\"" : v > 0 ? ":\"inf\"" : ":\"-inf\""));
            first = 0;
        }
        TB_TRY(tb_strbuf_puts(&b, "}"));
    }
    TB_TRY(tb_strbuf_puts(&b, "}"));
    return tb_strbuf_take(&b, out);
error:
    tb_strbuf_free(&b);
    return rc;
}

int tb_taskmetrics_fields(const tb_taskmetrics_result *r, tb_metric *fields, int cap, int *n)
{
    int rc = tm_check_result(r);
    if (rc != TB_OK) return rc;
    if (cap < 2 + r->n_values)
        return TB_ERR(TB_EINVAL, "room for %d metric fields, need %d (TB_TM_MAX_FIELDS is always enough)", cap,
                      2 + r->n_values);
    fields[0] = TB_MI("examples", r->examples);
    for (int i = 0; i < r->n_values; i++) fields[1 + i] = TB_MF(r->values[i].name, r->values[i].value);
    fields[1 + r->n_values] = TB_MS("main", r->values[r->main_index].name);
    *n = 2 + r->n_values;
    return TB_OK;
}
