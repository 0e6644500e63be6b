/* glue.c - readers for GLUE task TSV files and the seed project's text<TAB>label format. */
#include "dataset_priv.h"

#include "tb/base/error.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct field {
    const char *p;
    size_t n;
} field;

typedef struct fields {
    field *f;
    int count, cap;
} fields;

static int split_tabs(const char *s, size_t len, fields *out)
{
    out->count = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '\t') continue;
        if (out->count == out->cap) {
            int cap = out->cap ? out->cap * 2 : 16;
            field *p = realloc(out->f, (size_t)cap * sizeof *p);
            if (!p) return TB_ERR(TB_ENOMEM, "out of memory splitting a row");
            out->f = p;
            out->cap = cap;
        }
        out->f[out->count].p = s + start;
        out->f[out->count].n = i - start;
        out->count++;
        start = i + 1;
    }
    return TB_OK;
}

/* Iterates lines of buf: returns 0 at the end. Strips one trailing \r. */
static int next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *n)
{
    if (*pos >= len) return 0;
    const char *s = buf + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t l = nl ? (size_t)(nl - s) : len - *pos;
    *pos += l + (nl ? 1 : 0);
    if (l > 0 && s[l - 1] == '\r') l--;
    *line = s;
    *n = l;
    return 1;
}

static size_t bom_skip(const char *buf, size_t len)
{
    return len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

/* Checks the line is valid UTF-8 without NUL bytes; fills msg when not. */
static int line_ok(const char *s, size_t n, char *msg, size_t msgn)
{
    size_t bad = 0;
    if (memchr(s, '\0', n)) {
        snprintf(msg, msgn, "NUL byte in the row");
        return 0;
    }
    if (tb_utf8_check(s, n, &bad) != TB_OK) {
        snprintf(msg, msgn, "invalid UTF-8 at byte %zu of the row; convert the file to UTF-8", bad);
        return 0;
    }
    return 1;
}

static int parse_float(const char *s, size_t n, float *out)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    while (*end == ' ') end++;
    if (end == tmp || *end != '\0' || errno == ERANGE || !isfinite(v)) return 0;
    *out = (float)v;
    return 1;
}

/* Decimal integer >= 0 with optional surrounding spaces (what Python int() takes, less signs). */
static int parse_label_int(const char *s, size_t n, int32_t *out)
{
    size_t i = 0;
    while (i < n && s[i] == ' ') i++;
    size_t j = n;
    while (j > i && s[j - 1] == ' ') j--;
    if (i == j) return 0;
    int64_t v = 0;
    for (size_t k = i; k < j; k++) {
        if (s[k] < '0' || s[k] > '9') return 0;
        v = v * 10 + (s[k] - '0');
        if (v > 1000000) return 0;
    }
    *out = (int32_t)v;
    return 1;
}

int tb_dataset_read_glue(tb_dataset *ds, tb_task task, const char *path, const tb_read_opts *opts)
{
    int rc = TB_OK;
    char *buf = NULL;
    fields fs = {0};
    tb_read_opts def = {0};
    if (!opts) opts = &def;
    memset(ds, 0, sizeof *ds);
    TB_CHECK(task >= TB_TASK_COLA && task <= TB_TASK_WNLI, TB_EINVAL,
             "tb_dataset_read_glue: task %d is not a GLUE task; use tb_dataset_read_simple / _corpus", (int)task);
    const tb_task_info *ti = tb_task_get(task);
    TB_TRY(tb_ds_begin(ds, task, path));
    size_t len;
    TB_TRY(tb_ds_slurp(path, &buf, &len));
    size_t pos = bom_skip(buf, len);
    const char *s;
    size_t n;
    int64_t lineno = 0;
    char msg[256];
    while (next_line(buf, len, &pos, &s, &n)) {
        lineno++;
        if (lineno == 1 && ti->header) continue;
        if (!line_ok(s, n, msg, sizeof msg)) {
            TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
            continue;
        }
        TB_TRY(split_tabs(s, n, &fs));
        if (fs.count < ti->min_cols) {
            snprintf(msg, sizeof msg, "%s row has %d tab-separated fields, expected at least %d", ti->name, fs.count,
                     ti->min_cols);
            TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
            continue;
        }
        const field *fl = &fs.f[ti->col_label >= 0 ? ti->col_label : fs.count + ti->col_label];
        int32_t label = -1;
        float target = 0.0f;
        if (ti->regression) {
            if (!parse_float(fl->p, fl->n, &target)) {
                snprintf(msg, sizeof msg, "label '%.*s' is not a finite number", (int)(fl->n > 40 ? 40 : fl->n), fl->p);
                TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
                continue;
            }
        } else {
            for (int k = 0; k < ti->n_labels; k++) {
                if (strlen(ti->labels[k]) == fl->n && memcmp(ti->labels[k], fl->p, fl->n) == 0) label = k;
            }
            if (label < 0) {
                int m = snprintf(msg, sizeof msg, "unknown %s label '%.*s'; expected one of", ti->name,
                                 (int)(fl->n > 40 ? 40 : fl->n), fl->p);
                for (int k = 0; k < ti->n_labels && m > 0 && (size_t)m < sizeof msg; k++)
                    m += snprintf(msg + m, sizeof msg - (size_t)m, " '%s'", ti->labels[k]);
                TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
                continue;
            }
        }
        const field *fa = &fs.f[ti->col_a];
        const field *fb = ti->col_b >= 0 ? &fs.f[ti->col_b] : NULL;
        TB_TRY(tb_ds_push(ds, fa->p, fa->n, fb ? fb->p : NULL, fb ? fb->n : 0, label, target, lineno, -1));
    }
    free(fs.f);
    free(buf);
    return TB_OK;
error:
    free(fs.f);
    free(buf);
    tb_dataset_free(ds);
    return rc;
}

int tb_dataset_read_simple(tb_dataset *ds, const char *path, const tb_read_opts *opts)
{
    int rc = TB_OK;
    char *buf = NULL;
    fields fs = {0};
    tb_read_opts def = {0};
    if (!opts) opts = &def;
    TB_TRY(tb_ds_begin(ds, TB_TASK_SIMPLE, path));
    size_t len;
    TB_TRY(tb_ds_slurp(path, &buf, &len));
    size_t pos = bom_skip(buf, len);
    const char *s;
    size_t n;
    int64_t lineno = 0;
    int32_t max_label = -1;
    char msg[256];
    while (next_line(buf, len, &pos, &s, &n)) {
        lineno++;
        if (n == 0) continue;
        if (!line_ok(s, n, msg, sizeof msg)) {
            TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
            continue;
        }
        TB_TRY(split_tabs(s, n, &fs));
        if (fs.count < 2) {
            snprintf(msg, sizeof msg, "expected text<TAB>label, found no tab");
            TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
            continue;
        }
        const field *fl = &fs.f[fs.count - 1];
        int32_t label;
        if (!parse_label_int(fl->p, fl->n, &label)) {
            snprintf(msg, sizeof msg, "label '%.*s' (last field) is not an integer >= 0",
                     (int)(fl->n > 40 ? 40 : fl->n), fl->p);
            TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
            continue;
        }
        if (label > max_label) max_label = label;
        const field *fb = fs.count > 2 ? &fs.f[1] : NULL;
        TB_TRY(tb_ds_push(ds, fs.f[0].p, fs.f[0].n, fb ? fb->p : NULL, fb ? fb->n : 0, label, 0.0f, lineno, -1));
    }
    ds->n_labels = max_label + 1;
    free(fs.f);
    free(buf);
    return TB_OK;
error:
    free(fs.f);
    free(buf);
    tb_dataset_free(ds);
    return rc;
}
