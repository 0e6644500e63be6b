/* examples.c - dataset storage: starting a dataset, appending examples, counting skipped rows,
 * freeing; and counting the words of every example (tb/text/examples.h). */
#include "examples_priv.h"

#include "tb/base/error.h"
#include "tb/base/log.h"

#include <stdlib.h>
#include <string.h>

int tb_ds_begin(tb_dataset *ds, tb_task task, const char *path)
{
    memset(ds, 0, sizeof *ds);
    const tb_task_info *ti = tb_task_get(task);
    if (!ti) return TB_ERR(TB_EINVAL, "tb_ds_begin: invalid task %d", (int)task);
    ds->task = task;
    ds->regression = ti->regression;
    ds->n_labels = ti->n_labels;
    ds->skipped_first_line = -1;
    ds->path = strdup(path);
    if (!ds->path) return TB_ERR(TB_ENOMEM, "out of memory");
    return TB_OK;
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int tb_ds_push(tb_dataset *ds, const char *a, size_t alen, const char *b, size_t blen, int32_t label,
               float target, int64_t line, int64_t doc)
{
    int rc = TB_OK;
    if (ds->count == ds->cap) {
        int64_t cap = ds->cap ? ds->cap * 2 : 1024;
        tb_example *p = realloc(ds->ex, (size_t)cap * sizeof *p);
        TB_CHECK(p, TB_ENOMEM, "out of memory for %lld examples", (long long)cap);
        ds->ex = p;
        ds->cap = cap;
    }
    tb_example *e = &ds->ex[ds->count];
    memset(e, 0, sizeof *e);
    e->text_a = dup_n(a, alen);
    e->text_b = b ? dup_n(b, blen) : NULL;
    if (!e->text_a || (b && !e->text_b)) {
        free(e->text_a);
        free(e->text_b);
        TB_CHECK(0, TB_ENOMEM, "out of memory reading %s", ds->path);
    }
    e->label = label;
    e->target = target;
    e->line = line;
    e->doc = doc;
    ds->count++;
error:
    return rc;
}

int tb_ds_bad_row(tb_dataset *ds, int lenient, int64_t line, const char *msg)
{
    if (!lenient)
        return TB_ERR(TB_EFORMAT, "%s:%lld: %s (fix the row, or read leniently to skip and count such rows)",
                      ds->path, (long long)line, msg);
    if (ds->skipped == 0) ds->skipped_first_line = line;
    ds->skipped++;
    if (ds->skipped <= 20)
        TB_WARN("skipped (lenient): %s:%lld: %s%s", ds->path, (long long)line, msg,
                ds->skipped == 20 ? " (further skipped rows are only counted)" : "");
    return TB_OK;
}

void tb_dataset_free(tb_dataset *ds)
{
    for (int64_t i = 0; i < ds->count; i++) {
        free(ds->ex[i].text_a);
        free(ds->ex[i].text_b);
    }
    free(ds->ex);
    free(ds->path);
    memset(ds, 0, sizeof *ds);
}

int tb_dataset_count_words(const tb_dataset *ds, const tb_tokenizer_opts *opts, tb_word_counts *wc)
{
    int rc = TB_OK;
    tb_words w;
    tb_words_init(&w);
    for (int64_t i = 0; i < ds->count; i++) {
        const tb_example *x = &ds->ex[i];
        rc = tb_word_counts_add_text(wc, opts, x->text_a, strlen(x->text_a), &w);
        if (rc == TB_OK && x->text_b) rc = tb_word_counts_add_text(wc, opts, x->text_b, strlen(x->text_b), &w);
        if (rc != TB_OK) {
            tb_err_wrap(rc, "%s:%lld: ", ds->path ? ds->path : "(dataset)", (long long)x->line);
            goto error;
        }
    }
error:
    tb_words_free(&w);
    return rc;
}

