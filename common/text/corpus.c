/* corpus.c - plain corpus reader (one sentence per line, blank line between documents), with
 * WikiText conventions on request. See tb_dataset_read_corpus in tb/text/readers.h. */
#include "tb/text/readers.h"

#include "examples_priv.h"
#include "lines.h"
#include "tb/base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 0: not a heading, 1: top-level " = Title = ", 2: deeper " = = Section = = ". */
static int wikitext_heading(const char *s, size_t n)
{
    if (n < 3 || s[0] != '=' || s[n - 1] != '=') return 0;
    if (n >= 5 && s[1] == ' ' && s[2] == '=') return 2;
    return 1;
}

/* Copies s[0..n) into out, turning " @-@ " / " @,@ " / " @.@ " into "-" / "," / "."; next to
 * "<unk>" the separator becomes " - " (spaces kept) so that "<unk>" stays a word of its own. */
static size_t wikitext_detok(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' && i + 4 < n && s[i + 1] == '@' && s[i + 3] == '@' && s[i + 4] == ' ' &&
            (s[i + 2] == '-' || s[i + 2] == ',' || s[i + 2] == '.')) {
            int unk_before = o >= 5 && memcmp(out + o - 5, "<unk>", 5) == 0;
            int unk_after = i + 10 <= n && memcmp(s + i + 5, "<unk>", 5) == 0;
            if (unk_before || unk_after) {
                out[o++] = ' ';
                out[o++] = s[i + 2];
                out[o++] = ' ';
            } else {
                out[o++] = s[i + 2];
            }
            i += 4;
            continue;
        }
        out[o++] = s[i];
    }
    return o;
}

/* The text of a corpus line: before the first tab when `first_field`, without leading and
 * trailing spaces, tabs and carriage returns. */
static void corpus_trim(int first_field, const char **line, size_t *len)
{
    const char *s = *line;
    size_t n = *len;
    if (first_field) {
        const char *tab = memchr(s, '\t', n);
        if (tab) n = (size_t)(tab - s);
    }
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    while (n > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        n--;
    }
    *line = s;
    *len = n;
}

int tb_dataset_read_corpus(tb_dataset *ds, const char *path, const tb_read_opts *opts)
{
    int rc = TB_OK;
    char *buf = NULL, *tmp = NULL;
    tb_read_opts def = {0};
    if (!opts) opts = &def;
    TB_TRY(tb_ds_begin(ds, TB_TASK_CORPUS, path));
    size_t len;
    TB_TRY(tb_lines_slurp(path, &buf, &len));
    tmp = malloc(len + 1);
    TB_CHECK(tmp, TB_ENOMEM, "out of memory reading %s", path);
    size_t pos = tb_lines_bom(buf, len), n;
    const char *s;
    int64_t lineno = 0, doc = 0, in_doc = 0;
    char msg[160];
    while (tb_lines_next(buf, len, &pos, &s, &n)) {
        lineno++;
        corpus_trim(opts->first_field, &s, &n);
        size_t bad;
        if (memchr(s, '\0', n) || tb_utf8_check(s, n, &bad) != TB_OK) {
            snprintf(msg, sizeof msg, "invalid UTF-8 or NUL byte in the line; convert the file to UTF-8");
            TB_TRY(tb_ds_bad_row(ds, opts->lenient, lineno, msg));
            continue;
        }
        if (n == 0) {
            if (!opts->wikitext && in_doc) {
                doc++;
                in_doc = 0;
            }
            continue;
        }
        if (opts->wikitext) {
            int h = wikitext_heading(s, n);
            if (h == 1 && in_doc) {
                doc++;
                in_doc = 0;
            }
            if (h) continue;
            n = wikitext_detok(s, n, tmp);
            s = tmp;
        }
        TB_TRY(tb_ds_push(ds, s, n, NULL, 0, -1, 0.0f, lineno, doc));
        in_doc = 1;
    }
    ds->documents = in_doc ? doc + 1 : doc;
    free(tmp);
    free(buf);
    return TB_OK;
error:
    free(tmp);
    free(buf);
    tb_dataset_free(ds);
    return rc;
}
