/* evaluate.c - a model over a stream of token batches: task metrics, predictions TSV, speed. */
#include "tb/train/evaluate.h"

#include "tb/text/dataset.h"
#include "tb/base/clock.h"
#include "tb/base/error.h"
#include "tb/base/json.h"
#include "tb/base/log.h"
#include "tb/wire/stream.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tb_eval_opts_default(tb_eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = TB_TM_KIND_COUNT;
    o->arena_mode = TB_BERT_INFER;
}

tb_taskmetrics_kind tb_eval_kind_for_model(const tb_bert_model *m, tb_taskmetrics_kind want)
{
    if (want != TB_TM_KIND_COUNT) return want;
    return m->config.num_labels == 1 ? TB_TM_CORR : TB_TM_ACCURACY;
}

void tb_eval_model_size(const tb_bert_model *m, int64_t *params, double *megabytes)
{
    int64_t n = 0;
    for (int i = 0; i < m->params.count; i++) n += tb_tensor_numel(&m->params.items[i].value);
    if (params) *params = n;
    if (megabytes) *megabytes = (double)n * 4.0 / 1e6;
}

/* Label names of a "label_order" string ("0,1", "contradiction,entailment,neutral"): pointers
 * into `buf` (a copy), at most `cap`. Returns the count. */
static int split_labels(const char *order, char *buf, size_t bufn, const char **names, int cap)
{
    snprintf(buf, bufn, "%s", order);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && n < cap; tok = strtok_r(NULL, ",", &save)) names[n++] = tok;
    return n;
}

typedef struct eval_run {
    tb_bert_model *m;
    const tb_eval_opts *o;
    tb_eval_result *r;
    tb_taskmetrics tm;
    FILE *pred;
    char label_buf[512];
    const char *names[TB_TM_MAX_LABELS];
    int n_names;
    int regression;
    int tm_ready;          /* the accumulator is set up (at the first batch) */
} eval_run;

/* The metric kind: the one asked for, else the task's the first batch names ("task", written
 * by tb-tokenize: MCC for CoLA, accuracy and F1 for MRPC and QQP, ...), else by the model's
 * outputs. Sets up the accumulator. */
static int start_metrics(eval_run *e, const tb_msg *msg)
{
    int rc = TB_OK;
    tb_taskmetrics_kind kind = e->o->kind;
    const char *name = NULL;
    if (kind == TB_TM_KIND_COUNT && tb_msg_get_str(msg, "task", &name) == TB_OK) {
        tb_task task;
        rc = tb_task_parse(name, &task);
        if (rc == TB_OK) rc = tb_taskmetrics_kind_for_task(task, &kind);
        if (rc != TB_OK) {
            tb_err_wrap(rc, "%s: the batches' task", e->o->input);
            goto error;
        }
    }
    tb_err_clear();
    kind = tb_eval_kind_for_model(e->m, kind);
    TB_CHECK((kind == TB_TM_CORR) == (e->regression != 0), TB_EINVAL,
             "metric %s does not fit a model with %d output(s)%s%s", tb_taskmetrics_kind_name(kind),
             e->m->config.num_labels, name ? " (the batches are of task " : "", name ? name : "");
    TB_TRY(tb_taskmetrics_init(&e->tm, kind, e->m->config.num_labels));
    e->tm_ready = 1;
error:
    return rc;
}

/* Checks the batch's label order against the model, once (first batch) and for every batch. */
static int check_label_order(eval_run *e, const tb_msg *msg)
{
    int rc = TB_OK;
    const char *order = NULL;
    if (tb_msg_get_str(msg, "label_order", &order) != TB_OK) {
        tb_err_clear();
        return TB_OK;
    }
    int nl = e->m->config.num_labels;
    if (e->r->batches == 0) {
        snprintf(e->r->label_order, sizeof e->r->label_order, "%s", order);
        if (strcmp(order, "regression") == 0) {
            TB_CHECK(nl == 1, TB_ESHAPE, "%s: the batches are regression (label_order \"regression\") but the model has %d labels",
                     e->o->input, nl);
        } else if (strcmp(order, "none") != 0) {
            e->n_names = split_labels(order, e->label_buf, sizeof e->label_buf, e->names, TB_TM_MAX_LABELS);
            TB_CHECK(e->n_names == nl, TB_ESHAPE,
                     "%s: the batches have %d labels (label_order \"%s\") but the model has %d; use a checkpoint fine-tuned on this task",
                     e->o->input, e->n_names, order, nl);
        }
    } else {
        TB_CHECK(strcmp(order, e->r->label_order) == 0, TB_EFORMAT,
                 "%s: batch %lld has label_order \"%s\", the first batch had \"%s\"", e->o->input,
                 (long long)e->r->batches, order, e->r->label_order);
    }
error:
    return rc;
}

static int write_predictions(eval_run *e, const tb_batch *b, const float *logits)
{
    int rc = TB_OK;
    int B = (int)b->input_ids.shape[0], nl = e->m->config.num_labels;
    const int64_t *ids = b->example_ids.data;
    for (int i = 0; i < B; i++) {
        int w;
        if (e->regression) {
            w = fprintf(e->pred, "%lld\t%.9g\n", (long long)ids[i], (double)logits[i]); /* the exact float */
        } else {
            int best = 0;
            for (int k = 1; k < nl; k++)
                if (logits[(size_t)i * nl + k] > logits[(size_t)i * nl + best]) best = k;
            if (e->n_names > 0)
                w = fprintf(e->pred, "%lld\t%s\n", (long long)ids[i], e->names[best]);
            else
                w = fprintf(e->pred, "%lld\t%d\n", (long long)ids[i], best);
        }
        TB_CHECK(w > 0, TB_EIO, "cannot write predictions %s: %s", e->o->predictions_path, strerror(errno));
    }
error:
    return rc;
}

/* No logit of the batch may be NaN (a model with NaN weights, or one that overflowed): the metrics
 * and predictions would be meaningless. */
static int check_logits(const float *logits, int B, int nl)
{
    int rc = TB_OK;
    for (int i = 0; i < B; i++)
        for (int k = 0; k < nl; k++)
            TB_CHECK(!isnan(logits[(size_t)i * nl + k]), TB_EINVAL,
                     "logit %d of row %d is NaN: the model is broken (NaN or overflowing weights)", k, i);
error:
    return rc;
}

static int eval_batch(eval_run *e, const tb_msg *msg)
{
    int rc = TB_OK;
    tb_batch b = {0};
    TB_TRY(tb_batch_from_msg(&b, msg));
    TB_TRY(check_label_order(e, msg));
    if (!e->tm_ready) TB_TRY(start_metrics(e, msg));
    int B = (int)b.input_ids.shape[0], T = (int)b.input_ids.shape[1], nl = e->m->config.num_labels;
    TB_TRY(tb_bert_arena_reserve(e->m, B, T, e->o->arena_mode, 0, 0));
    tb_bert_batch bb = {.B = B, .T = T, .input_ids = b.input_ids.data, .token_type_ids = b.token_type_ids.data,
                        .attention_mask = b.attention_mask.data};
    tb_bert_run run = {.dropout = 0, .logits = 1};
    double t0 = tb_now_s();
    TB_TRY(tb_bert_forward(e->m, &bb, &run));
    e->r->forward_seconds += tb_now_s() - t0;
    const float *logits = tb_bert_logits(e->m);
    TB_TRY(check_logits(logits, B, nl));
    tb_tensor lt;
    int64_t shape[2] = {B, nl};
    TB_TRY(tb_tensor_borrow(&lt, TB_F32, 2, shape, (void *)logits));
    TB_TRY(tb_taskmetrics_add_batch(&e->tm, &lt, &b.labels));
    if (e->pred) TB_TRY(write_predictions(e, &b, logits));
    e->r->examples += B;
    e->r->batches++;
error:
    if (rc != TB_OK) tb_err_wrap(rc, "batch %lld of %s", (long long)(e->r ? e->r->batches : 0), e->o->input);
    tb_batch_free(&b);
    return rc;
}

static int open_predictions(eval_run *e, char *tmp, size_t n)
{
    int rc = TB_OK;
    snprintf(tmp, n, "%s.tmp", e->o->predictions_path);
    e->pred = fopen(tmp, "w");
    TB_CHECK(e->pred, TB_EIO, "cannot create predictions file %s: %s", tmp, strerror(errno));
    TB_CHECK(fputs("index\tprediction\n", e->pred) >= 0, TB_EIO, "cannot write %s: %s", tmp, strerror(errno));
error:
    return rc;
}

static int close_predictions(eval_run *e, const char *tmp)
{
    int rc = TB_OK;
    int bad = ferror(e->pred);
    bad |= fclose(e->pred) != 0;
    e->pred = NULL;
    TB_CHECK(!bad, TB_EIO, "cannot write predictions %s: %s", tmp, strerror(errno));
    TB_CHECK(rename(tmp, e->o->predictions_path) == 0, TB_EIO, "cannot rename %s to %s: %s", tmp,
             e->o->predictions_path, strerror(errno));
error:
    return rc;
}

int tb_evaluate(tb_bert_model *m, const tb_eval_opts *o, tb_eval_result *out)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    eval_run e;
    memset(&e, 0, sizeof e);
    char tmp[4096] = "";
    TB_CHECK(m && o && out && o->input, TB_EINVAL, "tb_evaluate: model, options, input and result are required");
    TB_CHECK(m->config.head != TB_HEAD_NONE, TB_EINVAL,
             "cannot evaluate: the model has no classification or regression head (fine-tune it first)");
    memset(out, 0, sizeof *out);
    e.m = m;
    e.o = o;
    e.r = out;
    e.regression = m->config.num_labels == 1;
    if (o->kind != TB_TM_KIND_COUNT) /* an impossible choice fails before any batch is read */
        TB_CHECK((o->kind == TB_TM_CORR) == (e.regression != 0), TB_EINVAL, "metric %s does not fit a model with %d output(s)",
                 tb_taskmetrics_kind_name(o->kind), m->config.num_labels);
    if (o->predictions_path) TB_TRY(open_predictions(&e, tmp, sizeof tmp));
    double t0 = tb_now_s();
    TB_TRY(tb_stream_open(&s, o->input, TB_STREAM_READ, NULL));
    for (;;) {
        if (o->max_batches > 0 && out->batches >= o->max_batches) break;
        tb_msg msg;
        rc = tb_stream_recv(s, &msg, o->recv_timeout_ms > 0 ? o->recv_timeout_ms : -1);
        if (rc == TB_EEND) {
            rc = TB_OK;
            break;
        }
        if (rc != TB_OK) goto error;
        rc = tb_batch_check_vocab(&msg, o->expect_vocab_hash, o->vocab_from, o->input, (uint64_t)out->batches);
        if (rc == TB_OK) rc = eval_batch(&e, &msg);
        tb_msg_free(&msg);
        if (rc != TB_OK) goto error;
    }
    out->wall_seconds = tb_now_s() - t0;
    TB_CHECK(out->examples > 0, TB_EINVAL, "%s holds no batches to evaluate", o->input);
    TB_TRY(tb_taskmetrics_compute(&e.tm, &out->metrics));
    out->examples_per_s = out->forward_seconds > 0 ? (double)out->examples / out->forward_seconds : 0;
    out->wall_examples_per_s = out->wall_seconds > 0 ? (double)out->examples / out->wall_seconds : 0;
    if (e.pred) TB_TRY(close_predictions(&e, tmp));
error:
    tb_stream_close(s);
    if (e.pred) {
        fclose(e.pred);
        remove(tmp);
    }
    tb_taskmetrics_free(&e.tm);
    return rc;
}

static int append_metrics(tb_strbuf *b, const tb_taskmetrics_result *r)
{
    int rc = TB_OK;
    for (int i = 0; i < r->n_values; i++) {
        TB_TRY(tb_strbuf_printf(b, ",\"%s\":", r->values[i].name));
        TB_TRY(tb_json_append_float(b, r->values[i].value));
    }
    TB_TRY(tb_strbuf_printf(b, ",\"main\":\"%s\"", r->values[r->main_index].name));
error:
    return rc;
}

int tb_eval_format_json(const tb_eval_result *r, const char *name, int64_t params, double megabytes, char **out)
{
    int rc = TB_OK;
    tb_strbuf b = {0};
    TB_TRY(tb_strbuf_puts(&b, "{\"checkpoint\":"));
    TB_TRY(tb_json_append_string(&b, name));
    TB_TRY(tb_strbuf_printf(&b, ",\"examples\":%lld,\"batches\":%lld", (long long)r->examples, (long long)r->batches));
    TB_TRY(append_metrics(&b, &r->metrics));
    TB_TRY(tb_strbuf_puts(&b, ",\"examples_per_s\":"));
    TB_TRY(tb_json_append_float(&b, r->examples_per_s));
    TB_TRY(tb_strbuf_puts(&b, ",\"wall_examples_per_s\":"));
    TB_TRY(tb_json_append_float(&b, r->wall_examples_per_s));
    TB_TRY(tb_strbuf_printf(&b, ",\"params\":%lld,\"size_mb\":", (long long)params));
    TB_TRY(tb_json_append_float(&b, megabytes));
    TB_TRY(tb_strbuf_puts(&b, "}"));
    TB_TRY(tb_strbuf_take(&b, out));
error:
    tb_strbuf_free(&b);
    return rc;
}

static int table_row_value(tb_strbuf *b, double v, const char *fmt)
{
    if (!isfinite(v)) return tb_strbuf_printf(b, " %14s", "n/a");
    return tb_strbuf_printf(b, fmt, v);
}

int tb_eval_format_table(const tb_eval_result *const *r, const char *const *names, const int64_t *params,
                         const double *megabytes, int n, char **out)
{
    int rc = TB_OK;
    tb_strbuf b = {0};
    TB_CHECK(r && names && params && megabytes && n >= 1 && out, TB_EINVAL, "tb_eval_format_table: bad arguments");
    TB_TRY(tb_strbuf_printf(&b, "%-20s", "metric"));
    for (int j = 0; j < n; j++) TB_TRY(tb_strbuf_printf(&b, " %14.14s", names[j] ? names[j] : "model"));
    if (n == 2) TB_TRY(tb_strbuf_printf(&b, " %15s", "2nd vs 1st"));
    TB_TRY(tb_strbuf_puts(&b, "\n"));
    const tb_taskmetrics_result *m0 = &r[0]->metrics;
    for (int i = 0; i < m0->n_values; i++) {
        const char *vn = m0->values[i].name;
        TB_TRY(tb_strbuf_printf(&b, "%-20s", vn));
        for (int j = 0; j < n; j++) TB_TRY(table_row_value(&b, tb_taskmetrics_get(&r[j]->metrics, vn), " %14.4f"));
        TB_TRY(tb_strbuf_puts(&b, i == m0->main_index ? " *\n" : "\n"));
    }
    TB_TRY(tb_strbuf_printf(&b, "%-20s", "examples"));
    for (int j = 0; j < n; j++) TB_TRY(tb_strbuf_printf(&b, " %14lld", (long long)r[j]->examples));
    TB_TRY(tb_strbuf_printf(&b, "\n%-20s", "examples/s"));
    for (int j = 0; j < n; j++) TB_TRY(table_row_value(&b, r[j]->examples_per_s, " %14.1f"));
    if (n == 2 && r[0]->examples_per_s > 0)
        TB_TRY(tb_strbuf_printf(&b, " %7.2fx faster", r[1]->examples_per_s / r[0]->examples_per_s));
    TB_TRY(tb_strbuf_printf(&b, "\n%-20s", "parameters"));
    for (int j = 0; j < n; j++) TB_TRY(tb_strbuf_printf(&b, " %14lld", (long long)params[j]));
    if (n == 2 && params[1] > 0) TB_TRY(tb_strbuf_printf(&b, " %6.2fx smaller", (double)params[0] / (double)params[1]));
    TB_TRY(tb_strbuf_printf(&b, "\n%-20s", "size (MB, fp32)"));
    for (int j = 0; j < n; j++) TB_TRY(tb_strbuf_printf(&b, " %14.3f", megabytes[j]));
    TB_TRY(tb_strbuf_puts(&b, "\n"));
    TB_TRY(tb_strbuf_take(&b, out));
error:
    tb_strbuf_free(&b);
    return rc;
}
