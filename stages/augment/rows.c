/* stages/augment/rows.c - see rows.h. */
#include "rows.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/text/readers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void tb_rows_close(tb_rows *r)
{
    if (r->f) fclose(r->f);
    free(r->path);
    free(r->header);
    free(r->line);
    free(r->copy);
    free(r->field);
    memset(r, 0, sizeof *r);
}

/* Reads one line into r->line (no "\n", "\r", BOM on line 1); *got = 0 at the end. */
static int read_line(tb_rows *r, int *got)
{
    int rc = TB_OK;
    errno = 0;
    ssize_t n = getline(&r->line, &r->line_cap, r->f);
    if (n < 0) {
        TB_CHECK(!ferror(r->f), TB_EIO, "%s: read error after line %lld: %s", r->path, (long long)r->lineno,
                 strerror(errno));
        *got = 0;
        return TB_OK;
    }
    r->lineno++;
    size_t len = (size_t)n;
    if (len && r->line[len - 1] == '\n') len--;
    if (len && r->line[len - 1] == '\r') len--;
    r->line[len] = 0;
    if (r->lineno == 1 && len >= 3 && memcmp(r->line, "\xEF\xBB\xBF", 3) == 0) {
        memmove(r->line, r->line + 3, len - 2);
        len -= 3;
    }
    TB_CHECK(strlen(r->line) == len, TB_EFORMAT, "%s:%lld: NUL byte at byte %zu", r->path, (long long)r->lineno,
             strlen(r->line));
    size_t bad;
    TB_CHECK(tb_utf8_check(r->line, len, &bad) == TB_OK, TB_EFORMAT, "%s:%lld: invalid UTF-8 at byte %zu",
             r->path, (long long)r->lineno, bad);
    *got = 1;
error:
    return rc;
}

int tb_rows_open(tb_rows *r, const char *path, const char *format)
{
    int rc = TB_OK;
    memset(r, 0, sizeof *r);
    if (strcmp(format, "simple") != 0) {
        tb_task task;
        TB_CHECK(tb_task_parse(format, &task) == TB_OK && task != TB_TASK_SIMPLE && task != TB_TASK_CORPUS, TB_EINVAL,
                 "augment: format '%s' is not 'simple' or a GLUE task name", format);
        r->info = tb_task_get(task);
    }
    r->path = strdup(path);
    TB_CHECK(r->path, TB_ENOMEM, "augment: out of memory");
    r->f = fopen(path, "rb");
    TB_CHECK(r->f, TB_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (r->info && r->info->header) {
        int got;
        TB_TRY(read_line(r, &got));
        TB_CHECK(got, TB_EFORMAT, "%s: empty file (expected a header line and examples)", path);
        r->header = strdup(r->line);
        TB_CHECK(r->header, TB_ENOMEM, "augment: out of memory");
    }
    r->index = -1;
error:
    if (rc) tb_rows_close(r);
    return rc;
}

static int split_fields(tb_rows *r)
{
    size_t len = strlen(r->line) + 1;
    if (len > r->copy_cap) {
        char *c = realloc(r->copy, len);
        if (!c) return TB_ERR(TB_ENOMEM, "augment: out of memory");
        r->copy = c;
        r->copy_cap = len;
    }
    memcpy(r->copy, r->line, len);
    r->nf = 0;
    for (char *p = r->copy;;) {
        if (r->nf == r->field_cap) {
            int nc = r->field_cap ? 2 * r->field_cap : 16;
            char **f = realloc(r->field, (size_t)nc * sizeof *f);
            if (!f) return TB_ERR(TB_ENOMEM, "augment: out of memory");
            r->field = f;
            r->field_cap = nc;
        }
        r->field[r->nf++] = p;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = 0;
        p = tab + 1;
    }
    return TB_OK;
}

static int is_uint(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* Checks the label of a GLUE row. */
static int check_label(const tb_rows *r)
{
    const tb_task_info *in = r->info;
    int col = in->col_label >= 0 ? in->col_label : r->nf + in->col_label;
    const char *lab = r->field[col];
    if (in->regression) {
        char *end;
        errno = 0;
        (void)strtod(lab, &end);
        if (!*lab || *end || errno)
            return TB_ERR(TB_EFORMAT, "%s:%lld: field %d: '%s' is not a number", r->path, (long long)r->lineno,
                          col + 1, lab);
        return TB_OK;
    }
    for (int i = 0; i < in->n_labels; i++)
        if (strcmp(lab, in->labels[i]) == 0) return TB_OK;
    return TB_ERR(TB_EFORMAT, "%s:%lld: field %d: unknown label '%s' for %s", r->path, (long long)r->lineno, col + 1,
                  lab, in->name);
}

/* The first bytes of s for a message: at most 40, cut at a UTF-8 character boundary, "..." when cut. */
static const char *excerpt(const char *s, char *buf, size_t cap)
{
    size_t n = strlen(s);
    if (n <= 40 || cap < 48) return s;
    n = 40;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    memcpy(buf, s, n);
    memcpy(buf + n, "...", 4);
    return buf;
}

/* Splits and checks the current line: TB_EFORMAT naming file:line when it is malformed. */
static int parse_row(tb_rows *r)
{
    int rc = TB_OK;
    char ex[64];
    TB_TRY(split_fields(r));
    if (r->info) {
        TB_CHECK(r->nf >= r->info->min_cols, TB_EFORMAT, "%s:%lld: %d fields, %s needs at least %d", r->path,
                 (long long)r->lineno, r->nf, r->info->name, r->info->min_cols);
        TB_TRY(check_label(r));
        r->col_a = r->info->col_a;
        r->col_b = r->info->col_b;
    } else {
        TB_CHECK(r->nf >= 2, TB_EFORMAT, "%s:%lld: one field, expected text<TAB>label", r->path, (long long)r->lineno);
        const char *lab = r->field[r->nf - 1];
        TB_CHECK(is_uint(lab), TB_EFORMAT,
                 "%s:%lld: label '%s' (the last field) is not an integer >= 0 (expected text<TAB>label)", r->path,
                 (long long)r->lineno, excerpt(lab, ex, sizeof ex));
        TB_CHECK(strlen(lab) <= 9 && strtol(lab, NULL, 10) <= TB_SIMPLE_MAX_LABEL, TB_EFORMAT,
                 "%s:%lld: label %.20s (last field) is above %d, the largest class id of the simple format: number "
                 "the classes 0, 1, 2, ...", r->path, (long long)r->lineno, lab, TB_SIMPLE_MAX_LABEL);
        r->col_a = 0;
        r->col_b = r->nf > 2 ? 1 : -1;
    }
error:
    return rc;
}

/* Lenient mode: counts and logs the malformed current line (the reason is the last error). */
static void skip_row(tb_rows *r)
{
    if (r->skipped == 0) r->skipped_first_line = r->lineno;
    r->skipped++;
    TB_WARN("skipped (--lenient): %s", tb_err_msg());
    tb_err_clear();
}

int tb_rows_next(tb_rows *r, int *got)
{
    int rc = TB_OK;
    for (;;) {
        rc = read_line(r, got);
        if (rc == TB_EFORMAT && r->lenient) {
            skip_row(r);
            continue;
        }
        TB_TRY(rc);
        if (!*got) return TB_OK;
        if (!r->info && r->line[0] == 0) continue; /* simple: blank lines are skipped */
        rc = parse_row(r);
        if (rc == TB_EFORMAT && r->lenient) {
            skip_row(r);
            continue;
        }
        TB_TRY(rc);
        break;
    }
    r->index++;
error:
    return rc;
}

int tb_rows_write_line(FILE *out, const char *line, int col, const char *text, int col2, const char *text2)
{
    if (col < 0 && col2 < 0) {
        fputs(line, out);
    } else {
        int i = 0;
        for (const char *p = line;; i++) {
            const char *tab = strchr(p, '\t');
            size_t len = tab ? (size_t)(tab - p) : strlen(p);
            if (i) fputc('\t', out);
            if (i == col) fputs(text, out);
            else if (i == col2) fputs(text2, out);
            else fwrite(p, 1, len, out);
            if (!tab) break;
            p = tab + 1;
        }
    }
    if (fputc('\n', out) == EOF) return TB_ERR(TB_EIO, "augment: write error");
    return TB_OK;
}
