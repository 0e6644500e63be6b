/* predict.c - tb-predict's run: read rows, predict chunk by chunk, write (predict.h). */
#include "predict.h"

#include "linein.h"
#include "rows.h"
#include "sink.h"
#include "tb/api/tinybert.h"
#include "tb/base/clock.h"
#include "tb/base/error.h"
#include "tb/text/basic.h"
#include "tb/text/task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rows of one chunk: their texts copied (NUL-terminated) into one buffer. */
typedef struct chunk {
    char *buf;
    size_t len, cap;
    size_t *id_off, *a_off, *b_off;  /* b_off SIZE_MAX: no text_b */
    int64_t *line;
    const char **a, **b;
    int n, cap_n;
} chunk;

/* What a run knows about its task and model. */
typedef struct run {
    const pr_opts *o;
    tinybert *tb;
    int nl;                       /* model outputs */
    const char *const *names;     /* label names (task), or NULL: class ids */
    int has_task;
    tb_task task;
    int pair;                     /* plain lines: 1 pair, 0 single, -1 either */
    float *logits;                /* [chunk, nl] */
} run;

static void chunk_free(chunk *c)
{
    free(c->buf);
    free(c->id_off);
    free(c->a_off);
    free(c->b_off);
    free(c->line);
    free(c->a);
    free(c->b);
    memset(c, 0, sizeof *c);
}

static int chunk_init(chunk *c, int cap)
{
    memset(c, 0, sizeof *c);
    c->cap_n = cap;
    c->id_off = malloc((size_t)cap * sizeof *c->id_off);
    c->a_off = malloc((size_t)cap * sizeof *c->a_off);
    c->b_off = malloc((size_t)cap * sizeof *c->b_off);
    c->line = malloc((size_t)cap * sizeof *c->line);
    c->a = malloc((size_t)cap * sizeof *c->a);
    c->b = malloc((size_t)cap * sizeof *c->b);
    if (!c->id_off || !c->a_off || !c->b_off || !c->line || !c->a || !c->b)
        return TB_ERR(TB_ENOMEM, "out of memory for chunks of %d lines", cap);
    return TB_OK;
}

/* Copies s[0..n) and a NUL into the chunk's buffer; its offset into *off. */
static int chunk_put(chunk *c, const char *s, size_t n, size_t *off)
{
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 65536;
        while (cap < c->len + n + 1) cap *= 2;
        char *p = realloc(c->buf, cap);
        if (!p) return TB_ERR(TB_ENOMEM, "out of memory for %zu bytes of text", cap);
        c->buf = p;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, s, n);
    c->buf[c->len + n] = '\0';
    *off = c->len;
    c->len += n + 1;
    return TB_OK;
}

/* A text field must be valid UTF-8; the error names file:line and the byte. */
static int check_utf8(const pr_lines *in, const char *s, size_t n)
{
    size_t bad = 0;
    if (tb_utf8_check(s, n, &bad) == TB_OK) return TB_OK;
    return TB_ERR(TB_EFORMAT, "%s:%lld: invalid UTF-8 at byte %zu of a text field (the input must be UTF-8)",
                  in->name, (long long)in->lineno, bad + 1);
}

/* Adds the row of one input line to the chunk. */
static int add_row(run *r, chunk *c, const pr_lines *in, const char *s, size_t n)
{
    int rc = TB_OK;
    pr_row row;
    if (r->o->glue)
        TB_TRY(pr_test_row(in->name, in->lineno, r->task, s, n, &row));
    else
        TB_TRY(pr_plain_row(in->name, in->lineno, r->pair, s, n, &row));
    TB_TRY(check_utf8(in, row.a, row.a_n));
    if (row.b) TB_TRY(check_utf8(in, row.b, row.b_n));
    int i = c->n;
    c->id_off[i] = SIZE_MAX;
    c->b_off[i] = SIZE_MAX;
    if (row.id) TB_TRY(chunk_put(c, row.id, row.id_n, &c->id_off[i]));
    TB_TRY(chunk_put(c, row.a, row.a_n, &c->a_off[i]));
    if (row.b) TB_TRY(chunk_put(c, row.b, row.b_n, &c->b_off[i]));
    c->line[i] = in->lineno;
    c->n++;
error:
    return rc;
}

/* Reads up to cap_n rows: waits for the first, then takes only what is already there. */
static int read_chunk(run *r, chunk *c, pr_lines *in)
{
    int rc = TB_OK;
    c->n = 0;
    c->len = 0;
    while (c->n < c->cap_n) {
        const char *s;
        size_t n;
        int got;
        TB_TRY(pr_lines_next(in, c->n == 0, &s, &n, &got));
        if (!got) break;
        TB_TRY(add_row(r, c, in, s, n));
    }
    for (int i = 0; i < c->n; i++) {
        c->a[i] = c->buf + c->a_off[i];
        c->b[i] = c->b_off[i] == SIZE_MAX ? NULL : c->buf + c->b_off[i];
    }
error:
    return rc;
}

/* The predicted class of one row of logits (the first of equal maxima). */
static int argmax(const float *z, int nl)
{
    int best = 0;
    for (int k = 1; k < nl; k++)
        if (z[k] > z[best]) best = k;
    return best;
}

static void write_label(const run *r, FILE *f, int k)
{
    if (r->names)
        fputs(r->names[k], f);
    else
        fprintf(f, "%d", k);
}

/* One output line for row i of the chunk (logits z). */
static void write_row(const run *r, FILE *f, const chunk *c, int i, const float *z)
{
    int nl = r->nl;
    if (r->o->glue) {
        fprintf(f, "%s\t", c->buf + c->id_off[i]);
        if (nl == 1)
            fprintf(f, "%.3f", (double)z[0]);
        else
            write_label(r, f, argmax(z, nl));
    } else if (nl == 1) {
        fprintf(f, r->o->logits ? "%.9g" : "%.6f", (double)z[0]);
    } else {
        int best = argmax(z, nl);
        write_label(r, f, best);
        double sum = 0;
        for (int k = 0; k < nl; k++) sum += exp((double)z[k] - (double)z[best]);
        for (int k = 0; k < nl; k++) {
            if (r->o->logits)
                fprintf(f, "\t%.9g", (double)z[k]);
            else
                fprintf(f, "\t%.6f", exp((double)z[k] - (double)z[best]) / sum);
        }
    }
    fputc('\n', f);
}

/* The task's facts and their agreement with the model. */
static int setup_task(run *r)
{
    int rc = TB_OK;
    r->pair = -1;
    if (!r->o->task) {
        TB_CHECK(!r->o->glue, TB_EINVAL, "--format glue needs --task (the GLUE task whose test.tsv this is)");
        return TB_OK;
    }
    TB_TRY(tb_task_parse(r->o->task, &r->task));
    r->has_task = 1;
    const tb_task_info *ti = tb_task_get(r->task);
    TB_CHECK(r->task != TB_TASK_CORPUS, TB_EINVAL, "--task corpus has no labels to predict");
    TB_CHECK(!r->o->glue || pr_test_layout_of(r->task), TB_EINVAL,
             "--format glue needs a GLUE task, not '%s' (use --format lines for plain text)", ti->name);
    if (r->task != TB_TASK_SIMPLE) r->pair = ti->col_b >= 0;
    if (ti->regression) {
        TB_CHECK(r->nl == 1, TB_EINVAL, "%s is a regression task but the model %s has %d outputs: use a checkpoint "
                 "fine-tuned on %s", ti->name, r->o->model, r->nl, ti->name);
    } else if (ti->n_labels > 0) {
        TB_CHECK(r->nl == ti->n_labels, TB_EINVAL,
                 "%s has %d labels but the model %s has %d outputs: use a checkpoint fine-tuned on %s", ti->name,
                 ti->n_labels, r->o->model, r->nl, ti->name);
        r->names = ti->labels;
    }
error:
    return rc;
}

/* Predicts one chunk and writes its lines. */
static int predict_chunk(run *r, const chunk *c, pr_sink *out)
{
    int rc = TB_OK;
    rc = tinybert_logits(r->tb, c->n, c->a, (const char *const *)c->b, r->logits);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "lines %lld-%lld", (long long)c->line[0], (long long)c->line[c->n - 1]);
        goto error;
    }
    for (int i = 0; i < c->n; i++) write_row(r, out->f, c, i, r->logits + (size_t)i * r->nl);
    TB_TRY(pr_sink_flush(out));
error:
    return rc;
}

/* Reads the header of a test.tsv (an empty input has none: that is an error too). */
static int read_header(run *r, pr_lines *in)
{
    int rc = TB_OK;
    const char *s;
    size_t n;
    int got;
    TB_TRY(pr_lines_next(in, 1, &s, &n, &got));
    TB_CHECK(got, TB_EFORMAT, "%s is empty: a %s test.tsv starts with the header %s", in->name,
             tb_task_get(r->task)->name, pr_test_layout_of(r->task)->header);
    TB_TRY(pr_test_header(in->name, r->task, s, n));
error:
    return rc;
}

static int open_model(run *r)
{
    tinybert_options to;
    tinybert_options_default(&to);
    to.threads = r->o->threads;
    to.max_seq_length = r->o->max_seq_length;
    to.batch_size = r->o->batch_size;
    to.cased = r->o->cased;
    r->tb = tinybert_open(r->o->model, &to);
    if (!r->tb) return TB_EINVAL; /* the message is recorded (tinybert_last_error) */
    r->nl = tinybert_num_labels(r->tb);
    r->logits = malloc((size_t)r->o->chunk * (size_t)r->nl * sizeof *r->logits);
    if (!r->logits) return TB_ERR(TB_ENOMEM, "out of memory for %d x %d logits", r->o->chunk, r->nl);
    return TB_OK;
}

int pr_run(const pr_opts *o, pr_stats *st)
{
    int rc = TB_OK;
    run r = {.o = o};
    chunk c = {0};
    pr_lines in;
    pr_sink out = {0};
    memset(&in, 0, sizeof in);
    in.fd = -1;
    memset(st, 0, sizeof *st);
    TB_CHECK(o->chunk >= 1, TB_EINVAL, "--chunk must be >= 1");
    TB_TRY(open_model(&r));
    double t0 = tb_now_s();
    TB_TRY(setup_task(&r));
    TB_TRY(chunk_init(&c, o->chunk));
    TB_TRY(pr_lines_open(&in, o->input));
    if (o->glue) TB_TRY(read_header(&r, &in));
    TB_TRY(pr_sink_open(&out, o->output));
    if (o->glue) fputs("index\tprediction\n", out.f);
    for (;;) {
        TB_TRY(read_chunk(&r, &c, &in));
        if (c.n == 0) break;
        TB_TRY(predict_chunk(&r, &c, &out));
        st->examples += c.n;
    }
    TB_TRY(pr_sink_commit(&out));
    st->seconds = tb_now_s() - t0;
error:
    pr_sink_abort(&out);
    pr_lines_close(&in);
    chunk_free(&c);
    free(r.logits);
    tinybert_close(r.tb);
    return rc;
}
