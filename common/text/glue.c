/* glue.c - readers for GLUE task TSV files and the seed project's text<TAB>label format. */
#include "tb/text/readers.h"

#include "examples_priv.h"
#include "lines.h"
#include "tb/base/error.h"
#include "tb/base/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* Decimal integer >= 0 with optional surrounding spaces (what Python int() takes, less signs);
 * values above 1000000 come out as 1000001. */
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
        if (v <= 1000000) v = v * 10 + (s[k] - '0');
        if (v > 1000000) v = 1000001;
    }
    *out = (int32_t)v;
    return 1;
}

/* The label field of a GLUE row: a finite number (regression, into *target) or one of the task's
 * labels (into *label). Returns 0 with the reason in msg when it is neither. */
static int glue_label(const tb_task_info *ti, const field *fl, int32_t *label, float *target, char *msg, size_t msgn)
{
    if (ti->regression) {
        if (parse_float(fl->p, fl->n, target)) return 1;
        snprintf(msg, msgn, "label '%.*s' is not a finite number", (int)(fl->n > 40 ? 40 : fl->n), fl->p);
        return 0;
    }
    for (int k = 0; k < ti->n_labels; k++) {
        if (strlen(ti->labels[k]) == fl->n && memcmp(ti->labels[k], fl->p, fl->n) == 0) *label = k;
    }
    if (*label >= 0) return 1;
    int m = snprintf(msg, msgn, "unknown %s label '%.*s'; expected one of", ti->name, (int)(fl->n > 40 ? 40 : fl->n),
                     fl->p);
    for (int k = 0; k < ti->n_labels && m > 0 && (size_t)m < msgn; k++)
        m += snprintf(msg + m, msgn - (size_t)m, " '%s'", ti->labels[k]);
    return 0;
}

/* One row's example, its texts pointing into the file buffer. */
typedef struct row {
    const field *a, *b;  /* b NULL: single sentence */
    int32_t label;
    float target;
} row;

/* Makes the example of a row from its fields; 0 with the reason in msg for a malformed row. */
typedef int (*row_parser)(const tb_task_info *ti, const fields *fs, row *out, char *msg, size_t msgn);

static int glue_row(const tb_task_info *ti, const fields *fs, row *out, char *msg, size_t msgn)
{
    if (fs->count < ti->min_cols) {
        snprintf(msg, msgn, "%s row has %d tab-separated fields, expected at least %d", ti->name, fs->count,
                 ti->min_cols);
        return 0;
    }
    const field *fl = &fs->f[ti->col_label >= 0 ? ti->col_label : fs->count + ti->col_label];
    if (!glue_label(ti, fl, &out->label, &out->target, msg, msgn)) return 0;
    out->a = &fs->f[ti->col_a];
    out->b = ti->col_b >= 0 ? &fs->f[ti->col_b] : NULL;
    return 1;
}

static int simple_row(const tb_task_info *ti, const fields *fs, row *out, char *msg, size_t msgn)
{
    (void)ti;
    if (fs->count < 2) {
        snprintf(msg, msgn, "expected text<TAB>label, found no tab");
        return 0;
    }
    const field *fl = &fs->f[fs->count - 1];
    if (!parse_label_int(fl->p, fl->n, &out->label)) {
        size_t n = fl->n > 40 ? 40 : fl->n;
        while (n < fl->n && n > 0 && ((unsigned char)fl->p[n] & 0xC0) == 0x80) n--; /* whole characters */
        snprintf(msg, msgn, "label '%.*s%s' (last field) is not an integer >= 0", (int)n, fl->p,
                 n < fl->n ? "..." : "");
        return 0;
    }
    if (out->label > TB_SIMPLE_MAX_LABEL) {
        snprintf(msg, msgn, "label %s%d (last field) is above %d, the largest class id of the simple format: "
                 "number the classes 0, 1, 2, ...", out->label > 1000000 ? "> " : "",
                 out->label > 1000000 ? 1000000 : out->label, TB_SIMPLE_MAX_LABEL);
        return 0;
    }
    out->a = &fs->f[0];
    out->b = fs->count > 2 ? &fs->f[1] : NULL;
    return 1;
}

/* 1 when `f` is the column name `want` (without case; NULL: any). */
static int head_is(const field *f, const char *want)
{
    return !want || (strlen(want) == f->n && strncasecmp(f->p, want, f->n) == 0);
}

/* 1 when the header line `fs` names task t's text and label columns where t reads them. */
static int header_of(const tb_task_info *t, const fields *fs)
{
    if (!t->head_a || fs->count < t->min_cols) return 0;
    const field *lab = &fs->f[t->col_label >= 0 ? t->col_label : fs->count + t->col_label];
    return head_is(&fs->f[t->col_a], t->head_a) && (t->col_b < 0 || head_is(&fs->f[t->col_b], t->head_b)) &&
           head_is(lab, t->head_label);
}

/* The first line of a file of a header task: refused (0, the reason in msg) when it is the GLUE
 * header of another task, has fewer fields than the task's rows, or is itself a row of the task
 * (a headerless file such as CoLA or the simple format); any other header is passed over. */
static int glue_header(const tb_task_info *ti, const fields *fs, char *msg, size_t msgn)
{
    if (header_of(ti, fs)) return 1;
    if (fs->count < ti->min_cols) {
        snprintf(msg, msgn, "the header line has %d tab-separated field%s, %s rows have at least %d; is the file of "
                 "another task or format?", fs->count, fs->count == 1 ? "" : "s", ti->name, ti->min_cols);
        return 0;
    }
    for (int t = 0; t < TB_TASK_COUNT; t++) {
        const tb_task_info *o = tb_task_get((tb_task)t);
        if (o != ti && header_of(o, fs)) {
            snprintf(msg, msgn, "this is the header of GLUE's %s (columns '%s'%s%s%s and '%s'), not of %s: give the "
                     "%s file, or read it as %s", o->name, o->head_a, o->head_b ? ", '" : "", o->head_b ? o->head_b : "",
                     o->head_b ? "'" : "", o->head_label, ti->name, ti->name, o->name);
            return 0;
        }
    }
    const field *lab = &fs->f[ti->col_label >= 0 ? ti->col_label : fs->count + ti->col_label];
    int32_t label = -1;
    float target;
    char why[160];
    if (glue_label(ti, lab, &label, &target, why, sizeof why)) {
        snprintf(msg, msgn, "the first line is a %s row (label '%.*s'), not the header %s files start with; is the "
                 "file headerless (CoLA, the simple format)?", ti->name, (int)(lab->n > 40 ? 40 : lab->n), lab->p, ti->name);
        return 0;
    }
    return 1;
}

/* Reads the tab-separated rows of `path` into `ds` (started for `task`): the task's header line
 * and, with skip_blank, empty lines are passed over; an invalid line or a row `parse` refuses is
 * a bad row (tb_ds_bad_row). */
static int read_rows(tb_dataset *ds, tb_task task, const char *path, const tb_read_opts *opts, int skip_blank,
                     row_parser parse)
{
    int rc = TB_OK;
    char *buf = NULL;
    fields fs = {0};
    tb_read_opts def = {0};
    if (!opts) opts = &def;
    const tb_task_info *ti = tb_task_get(task);
    TB_TRY(tb_ds_begin(ds, task, path));
    size_t len;
    TB_TRY(tb_lines_slurp(path, &buf, &len));
    size_t pos = tb_lines_bom(buf, len);
    const char *s;
    size_t n;
    int64_t lineno = 0;
    char msg[256];
    while (tb_lines_next(buf, len, &pos, &s, &n)) {
        lineno++;
        if (lineno == 1 && ti->header) {
            TB_TRY(split_tabs(s, n, &fs));
            if (!glue_header(ti, &fs, msg, sizeof msg)) {
                TB_CHECK(opts->lenient, TB_EFORMAT, "%s:1: %s", path, msg);
                TB_WARN("%s:1: %s (read leniently: passed over as the header)", path, msg);
            }
            continue;
        }
        if (skip_blank && n == 0) continue;
        if (!tb_lines_valid(s, n, msg, sizeof msg)) {
            TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
            continue;
        }
        TB_TRY(split_tabs(s, n, &fs));
        row r = {.label = -1, .target = 0.0f};
        if (!parse(ti, &fs, &r, msg, sizeof msg)) {
            TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
            continue;
        }
        TB_TRY(tb_ds_push(ds, r.a->p, r.a->n, r.b ? r.b->p : NULL, r.b ? r.b->n : 0, r.label, r.target, lineno, -1));
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

int tb_dataset_read_glue(tb_dataset *ds, tb_task task, const char *path, const tb_read_opts *opts)
{
    if (task < TB_TASK_COLA || task > TB_TASK_WNLI) {
        memset(ds, 0, sizeof *ds);
        return TB_ERR(TB_EINVAL,
                      "tb_dataset_read_glue: task %d is not a GLUE task; use tb_dataset_read_simple / _corpus",
                      (int)task);
    }
    return read_rows(ds, task, path, opts, 0, glue_row);
}

int tb_dataset_read_simple(tb_dataset *ds, const char *path, const tb_read_opts *opts)
{
    int rc = read_rows(ds, TB_TASK_SIMPLE, path, opts, 1, simple_row);
    if (rc != TB_OK) return rc;
    int32_t max_label = -1;
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->ex[i].label > max_label) max_label = ds->ex[i].label;
    ds->n_labels = max_label + 1;
    return TB_OK;
}
