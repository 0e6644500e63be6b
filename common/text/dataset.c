/* dataset.c - task table, dataset storage, encoding, and addressable batches. */
#include "dataset_priv.h"

#include "tb/base/error.h"
#include "tb/base/rng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const LABELS_01[] = {"0", "1"};
static const char *const LABELS_MNLI[] = {"contradiction", "entailment", "neutral"};
static const char *const LABELS_ENT[] = {"entailment", "not_entailment"};

/* Columns and label orders of the TinyBERT reference (task_distill.py processors). */
static const tb_task_info TASKS[TB_TASK_COUNT] = {
    [TB_TASK_COLA] = {"cola", 0, 3, -1, 1, 4, 0, 2, LABELS_01},
    [TB_TASK_SST2] = {"sst-2", 1, 0, -1, 1, 2, 0, 2, LABELS_01},
    [TB_TASK_MRPC] = {"mrpc", 1, 3, 4, 0, 5, 0, 2, LABELS_01},
    [TB_TASK_STSB] = {"sts-b", 1, 7, 8, -1, 10, 1, 0, NULL},
    [TB_TASK_QQP] = {"qqp", 1, 3, 4, 5, 6, 0, 2, LABELS_01},
    [TB_TASK_MNLI] = {"mnli", 1, 8, 9, -1, 11, 0, 3, LABELS_MNLI},
    [TB_TASK_MNLI_MM] = {"mnli-mm", 1, 8, 9, -1, 11, 0, 3, LABELS_MNLI},
    [TB_TASK_QNLI] = {"qnli", 1, 1, 2, -1, 4, 0, 2, LABELS_ENT},
    [TB_TASK_RTE] = {"rte", 1, 1, 2, -1, 4, 0, 2, LABELS_ENT},
    [TB_TASK_WNLI] = {"wnli", 1, 1, 2, -1, 4, 0, 2, LABELS_01},
    [TB_TASK_SIMPLE] = {"simple", 0, 0, 1, -1, 2, 0, 0, NULL},
    [TB_TASK_CORPUS] = {"corpus", 0, 0, -1, 0, 1, 0, 0, NULL},
};

const tb_task_info *tb_task_get(tb_task task)
{
    if ((int)task < 0 || task >= TB_TASK_COUNT) return NULL;
    return &TASKS[task];
}

int tb_task_parse(const char *name, tb_task *out)
{
    static const struct { const char *alias; tb_task task; } ALIASES[] = {
        {"sst2", TB_TASK_SST2}, {"stsb", TB_TASK_STSB}, {"mnli-m", TB_TASK_MNLI}, {"mnli_mm", TB_TASK_MNLI_MM},
        {"mnlimm", TB_TASK_MNLI_MM}, {"text", TB_TASK_SIMPLE},
    };
    if (!name) return TB_ERR(TB_EINVAL, "no task name given");
    for (int t = 0; t < TB_TASK_COUNT; t++) {
        if (strcasecmp(name, TASKS[t].name) == 0) {
            *out = (tb_task)t;
            return TB_OK;
        }
    }
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        if (strcasecmp(name, ALIASES[i].alias) == 0) {
            *out = ALIASES[i].task;
            return TB_OK;
        }
    }
    return TB_ERR(TB_EINVAL,
                  "unknown task '%s'; use one of cola, sst-2, mrpc, sts-b, qqp, mnli, mnli-mm, qnli, rte, "
                  "wnli, simple, corpus", name);
}

int tb_ds_slurp(const char *path, char **buf, size_t *len)
{
    int rc = TB_OK;
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    TB_CHECK(f, TB_EIO, "cannot open %s: %s", path, strerror(errno));
    TB_CHECK(fseek(f, 0, SEEK_END) == 0, TB_EIO, "cannot seek in %s: %s", path, strerror(errno));
    long n = ftell(f);
    TB_CHECK(n >= 0 && fseek(f, 0, SEEK_SET) == 0, TB_EIO, "cannot size %s: %s", path, strerror(errno));
    *buf = malloc((size_t)n + 1);
    TB_CHECK(*buf, TB_ENOMEM, "out of memory reading %s (%ld bytes)", path, n);
    TB_CHECK(fread(*buf, 1, (size_t)n, f) == (size_t)n, TB_EIO, "cannot read %s: %s", path, strerror(errno));
    (*buf)[n] = '\0';
    *len = (size_t)n;
    fclose(f);
    return TB_OK;
error:
    free(*buf);
    *buf = NULL;
    if (f) fclose(f);
    return rc;
}

int tb_ds_begin(tb_dataset *ds, tb_task task, const char *path)
{
    memset(ds, 0, sizeof *ds);
    ds->task = task;
    ds->regression = TASKS[task].regression;
    ds->n_labels = TASKS[task].n_labels;
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

/* ---- encoding --------------------------------------------------------------------------------- */

int tb_encoded_build(tb_encoded *e, const tb_dataset *ds, const tb_tokenizer *t, int max_seq_length)
{
    int rc = TB_OK;
    memset(e, 0, sizeof *e);
    tb_encoding enc;
    tb_encoding_init(&enc);
    TB_CHECK(max_seq_length >= 3 && max_seq_length <= 1 << 20, TB_EINVAL,
             "max_seq_length must be in [3, 1048576], got %d", max_seq_length);
    int64_t n = ds->count;
    e->count = n;
    e->max_seq_length = max_seq_length;
    e->regression = ds->regression;
    e->n_labels = ds->n_labels;
    e->pad_id = t->vocab.pad_id >= 0 ? t->vocab.pad_id : 0;
    e->vocab_hash = t->vocab.hash;
    e->off = malloc((size_t)(n + 1) * sizeof *e->off);
    e->labels = malloc((size_t)(n > 0 ? n : 1) * sizeof *e->labels);
    e->targets = malloc((size_t)(n > 0 ? n : 1) * sizeof *e->targets);
    TB_CHECK(e->off && e->labels && e->targets, TB_ENOMEM, "out of memory encoding %lld examples", (long long)n);
    size_t cap = 0, used = 0;
    e->off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const tb_example *x = &ds->ex[i];
        rc = tb_tokenizer_encode(t, x->text_a, strlen(x->text_a), x->text_b, x->text_b ? strlen(x->text_b) : 0,
                                 max_seq_length, &enc);
        if (rc != TB_OK) {
            tb_err_wrap(rc, "%s:%lld: ", ds->path ? ds->path : "(dataset)", (long long)x->line);
            goto error;
        }
        if (enc.n_a < enc.full_a || enc.n_b < enc.full_b) e->truncated++;
        if (used + (size_t)enc.len > cap) {
            size_t c = cap ? cap * 2 : 65536;
            while (c < used + (size_t)enc.len) c *= 2;
            int32_t *a = realloc(e->ids, c * sizeof *a);
            TB_CHECK(a, TB_ENOMEM, "out of memory encoding %lld examples", (long long)n);
            e->ids = a;
            int32_t *b = realloc(e->types, c * sizeof *b);
            TB_CHECK(b, TB_ENOMEM, "out of memory encoding %lld examples", (long long)n);
            e->types = b;
            cap = c;
        }
        memcpy(e->ids + used, enc.input_ids, (size_t)enc.len * sizeof(int32_t));
        memcpy(e->types + used, enc.token_type_ids, (size_t)enc.len * sizeof(int32_t));
        used += (size_t)enc.len;
        e->off[i + 1] = (int64_t)used;
        e->labels[i] = x->label;
        e->targets[i] = x->target;
    }
    tb_encoding_free(&enc);
    return TB_OK;
error:
    tb_encoding_free(&enc);
    tb_encoded_free(e);
    return rc;
}

/* Appends one sequence [CLS] ids[0..n) [SEP] to e (capacity managed with *cap). */
static int packed_push(tb_encoded *e, size_t *cap, int64_t *cap_seq, const int32_t *ids, int64_t n, int32_t cls,
                       int32_t sep)
{
    int rc = TB_OK;
    size_t used = (size_t)e->off[e->count];
    size_t need = used + (size_t)n + 2;
    if (need > *cap) {
        size_t c = *cap ? *cap * 2 : 65536;
        while (c < need) c *= 2;
        int32_t *a = realloc(e->ids, c * sizeof *a);
        TB_CHECK(a, TB_ENOMEM, "out of memory packing a corpus");
        e->ids = a;
        int32_t *b = realloc(e->types, c * sizeof *b);
        TB_CHECK(b, TB_ENOMEM, "out of memory packing a corpus");
        e->types = b;
        *cap = c;
    }
    if (e->count + 1 >= *cap_seq) {
        int64_t c = *cap_seq * 2;
        int64_t *o = realloc(e->off, (size_t)(c + 1) * sizeof *o);
        TB_CHECK(o, TB_ENOMEM, "out of memory packing a corpus");
        e->off = o;
        int32_t *l = realloc(e->labels, (size_t)c * sizeof *l);
        TB_CHECK(l, TB_ENOMEM, "out of memory packing a corpus");
        e->labels = l;
        float *t = realloc(e->targets, (size_t)c * sizeof *t);
        TB_CHECK(t, TB_ENOMEM, "out of memory packing a corpus");
        e->targets = t;
        *cap_seq = c;
    }
    e->ids[used] = cls;
    memcpy(e->ids + used + 1, ids, (size_t)n * sizeof *ids);
    e->ids[used + 1 + (size_t)n] = sep;
    memset(e->types + used, 0, ((size_t)n + 2) * sizeof *e->types);
    e->labels[e->count] = -1;
    e->targets[e->count] = 0.0f;
    e->count++;
    e->off[e->count] = (int64_t)need;
error:
    return rc;
}

int tb_encoded_build_packed(tb_encoded *e, const tb_dataset *corpus, const tb_tokenizer *t, int max_seq_length)
{
    int rc = TB_OK;
    memset(e, 0, sizeof *e);
    tb_ids ids;
    tb_ids_init(&ids);
    int32_t *cur = NULL;
    TB_CHECK(max_seq_length >= 3 && max_seq_length <= 1 << 20, TB_EINVAL,
             "max_seq_length must be in [3, 1048576], got %d", max_seq_length);
    TB_CHECK(t->vocab.cls_id >= 0 && t->vocab.sep_id >= 0, TB_EFORMAT, "the vocabulary lacks [CLS] or [SEP]");
    int64_t room = max_seq_length - 2, cap_seq = 1024;
    size_t cap = 0;
    e->max_seq_length = max_seq_length;
    e->pad_id = t->vocab.pad_id >= 0 ? t->vocab.pad_id : 0;
    e->vocab_hash = t->vocab.hash;
    e->off = malloc((size_t)(cap_seq + 1) * sizeof *e->off);
    e->labels = malloc((size_t)cap_seq * sizeof *e->labels);
    e->targets = malloc((size_t)cap_seq * sizeof *e->targets);
    cur = malloc((size_t)room * sizeof *cur);
    TB_CHECK(e->off && e->labels && e->targets && cur, TB_ENOMEM, "out of memory packing a corpus");
    e->off[0] = 0;
    int64_t ncur = 0, doc = corpus->count > 0 ? corpus->ex[0].doc : 0;
    int32_t cls = t->vocab.cls_id, sep = t->vocab.sep_id;
    for (int64_t i = 0; i < corpus->count; i++) {
        const tb_example *x = &corpus->ex[i];
        rc = tb_tokenizer_tokenize(t, x->text_a, strlen(x->text_a), &ids);
        if (rc != TB_OK) {
            tb_err_wrap(rc, "%s:%lld: ", corpus->path ? corpus->path : "(corpus)", (long long)x->line);
            goto error;
        }
        if (x->doc != doc || (ncur > 0 && ncur + ids.count > room)) {
            if (ncur > 0) TB_TRY(packed_push(e, &cap, &cap_seq, cur, ncur, cls, sep));
            ncur = 0;
            doc = x->doc;
        }
        int64_t k = 0;
        while (ids.count - k > room) { /* a line longer than a whole sequence: chunks */
            TB_TRY(packed_push(e, &cap, &cap_seq, ids.ids + k, room, cls, sep));
            k += room;
        }
        memcpy(cur + ncur, ids.ids + k, (size_t)(ids.count - k) * sizeof *cur);
        ncur += ids.count - k;
    }
    if (ncur > 0) TB_TRY(packed_push(e, &cap, &cap_seq, cur, ncur, cls, sep));
    free(cur);
    tb_ids_free(&ids);
    return TB_OK;
error:
    free(cur);
    tb_ids_free(&ids);
    tb_encoded_free(e);
    return rc;
}

void tb_encoded_free(tb_encoded *e)
{
    free(e->ids);
    free(e->types);
    free(e->off);
    free(e->labels);
    free(e->targets);
    memset(e, 0, sizeof *e);
}

/* ---- batches ---------------------------------------------------------------------------------- */

int tb_batcher_init(tb_batcher *b, const tb_encoded *enc, const tb_batch_opts *opts)
{
    int rc = TB_OK;
    memset(b, 0, sizeof *b);
    TB_CHECK(enc && opts, TB_EINVAL, "tb_batcher_init: encoded data and options are required");
    TB_CHECK(opts->batch_size >= 1, TB_EINVAL, "batch size must be >= 1, got %d", opts->batch_size);
    b->enc = enc;
    b->opts = *opts;
    b->order = malloc((size_t)(enc->count > 0 ? enc->count : 1) * sizeof *b->order);
    TB_CHECK(b->order, TB_ENOMEM, "out of memory for the order of %lld examples", (long long)enc->count);
    return TB_OK;
error:
    tb_batcher_free(b);
    return rc;
}

void tb_batcher_free(tb_batcher *b)
{
    free(b->order);
    memset(b, 0, sizeof *b);
}

int64_t tb_batcher_count(const tb_batcher *b)
{
    int64_t n = b->enc->count, bs = b->opts.batch_size;
    return b->opts.drop_last ? n / bs : (n + bs - 1) / bs;
}

int tb_batcher_order(const tb_batcher *b, uint64_t epoch, int64_t *order)
{
    int64_t n = b->enc->count;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!b->opts.shuffle) return TB_OK;
    tb_rng_key key = tb_rng_key_make(b->opts.seed, TB_RNG_SHUFFLE);
    uint32_t hi = (uint32_t)(epoch >> 32), lo = (uint32_t)epoch;
    for (int64_t i = n - 1; i >= 1; i--) {
        uint64_t k = (uint64_t)(n - 1 - i);
        uint64_t r = ((uint64_t)tb_rng_u32(key, hi, lo, 2 * k) << 32) | tb_rng_u32(key, hi, lo, 2 * k + 1);
        int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        int64_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    return TB_OK;
}

void tb_batch_free(tb_batch *batch)
{
    tb_tensor_free(&batch->input_ids);
    tb_tensor_free(&batch->token_type_ids);
    tb_tensor_free(&batch->attention_mask);
    tb_tensor_free(&batch->labels);
    tb_tensor_free(&batch->example_ids);
    memset(batch, 0, sizeof *batch);
}

int tb_batcher_get(tb_batcher *b, uint64_t epoch, int64_t index, tb_batch *out)
{
    int rc = TB_OK;
    tb_batch_free(out);
    const tb_encoded *e = b->enc;
    int64_t nb = tb_batcher_count(b);
    TB_CHECK(index >= 0 && index < nb, TB_EINVAL, "batch index %lld out of range: epoch has %lld batches",
             (long long)index, (long long)nb);
    if (!b->order_valid || b->order_epoch != epoch) {
        TB_TRY(tb_batcher_order(b, epoch, b->order));
        b->order_epoch = epoch;
        b->order_valid = 1;
    }
    int64_t first = index * b->opts.batch_size;
    int64_t rows = e->count - first < b->opts.batch_size ? e->count - first : b->opts.batch_size;
    int64_t width = e->max_seq_length;
    if (b->opts.pad_to_longest) {
        width = 1;
        for (int64_t r = 0; r < rows; r++) {
            int64_t ex = b->order[first + r];
            int64_t len = e->off[ex + 1] - e->off[ex];
            if (len > width) width = len;
        }
    }
    int64_t shape2[2] = {rows, width}, shape1[1] = {rows};
    TB_TRY(tb_tensor_alloc(&out->input_ids, TB_I32, 2, shape2));
    TB_TRY(tb_tensor_alloc(&out->token_type_ids, TB_I32, 2, shape2));
    TB_TRY(tb_tensor_alloc(&out->attention_mask, TB_I32, 2, shape2));
    TB_TRY(tb_tensor_alloc(&out->labels, e->regression ? TB_F32 : TB_I32, 1, shape1));
    TB_TRY(tb_tensor_alloc(&out->example_ids, TB_I64, 1, shape1));
    int32_t *ids = out->input_ids.data, *types = out->token_type_ids.data, *mask = out->attention_mask.data;
    int64_t *exids = out->example_ids.data;
    for (int64_t r = 0; r < rows; r++) {
        int64_t ex = b->order[first + r];
        int64_t o = e->off[ex], len = e->off[ex + 1] - o;
        int32_t *ri = ids + r * width, *rt = types + r * width, *rm = mask + r * width;
        for (int64_t c = 0; c < width; c++) {
            int real = c < len;
            ri[c] = real ? e->ids[o + c] : e->pad_id;
            rt[c] = real ? e->types[o + c] : 0;
            rm[c] = real;
        }
        exids[r] = ex;
        if (e->regression) ((float *)out->labels.data)[r] = e->targets[ex];
        else ((int32_t *)out->labels.data)[r] = e->labels[ex];
    }
    out->epoch = epoch;
    out->index = index;
    return TB_OK;
error:
    tb_batch_free(out);
    return rc;
}

/* ---- batches as messages ---------------------------------------------------------------------- */

int tb_dataset_label_order(const tb_dataset *ds, char *buf, size_t n)
{
    int rc = TB_OK;
    const tb_task_info *ti = tb_task_get(ds->task);
    TB_CHECK(ti && n > 0, TB_EINVAL, "tb_dataset_label_order: bad dataset or buffer");
    size_t used = 0;
    buf[0] = '\0';
    if (ds->task == TB_TASK_CORPUS) {
        used = (size_t)snprintf(buf, n, "none");
    } else if (ds->regression) {
        used = (size_t)snprintf(buf, n, "regression");
    } else if (ti->labels) {
        for (int k = 0; k < ti->n_labels && used < n; k++)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", k ? "," : "", ti->labels[k]);
    } else {
        for (int32_t k = 0; k < ds->n_labels && used < n; k++)
            used += (size_t)snprintf(buf + used, n - used, "%s%d", k ? "," : "", k);
    }
    TB_CHECK(used < n, TB_EINVAL, "label order does not fit in %zu bytes", n);
error:
    return rc;
}

int tb_batch_to_msg(const tb_batch *b, const char *vocab_hash, const char *label_order, tb_msg *m)
{
    int rc = TB_OK;
    TB_TRY(tb_msg_set_tensor_ref(m, "input_ids", &b->input_ids));
    TB_TRY(tb_msg_set_tensor_ref(m, "token_type_ids", &b->token_type_ids));
    TB_TRY(tb_msg_set_tensor_ref(m, "attention_mask", &b->attention_mask));
    TB_TRY(tb_msg_set_tensor_ref(m, "labels", &b->labels));
    TB_TRY(tb_msg_set_tensor_ref(m, "example_ids", &b->example_ids));
    TB_TRY(tb_msg_set_int(m, "epoch", (int64_t)b->epoch));
    TB_TRY(tb_msg_set_int(m, "index", b->index));
    if (vocab_hash) TB_TRY(tb_msg_set_str(m, "vocab_hash", vocab_hash));
    if (label_order) TB_TRY(tb_msg_set_str(m, "label_order", label_order));
error:
    return rc;
}

static int batch_field(const tb_msg *m, const char *key, tb_dtype dt, int ndim, const int64_t *shape, tb_tensor *out)
{
    int rc = TB_OK;
    const tb_tensor *t;
    rc = tb_msg_get_tensor(m, key, &t);
    if (rc != TB_OK) return tb_err_wrap(rc, "batch message: ");
    TB_TRY(tb_tensor_expect(t, key, dt, ndim, shape));
    TB_TRY(tb_tensor_copy(out, t));
error:
    return rc;
}

int tb_batch_from_msg(tb_batch *b, const tb_msg *m)
{
    int rc = TB_OK;
    memset(b, 0, sizeof *b);
    const tb_tensor *ids;
    rc = tb_msg_get_tensor(m, "input_ids", &ids);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "batch message: ");
        goto error;
    }
    int64_t any2[2] = {-1, -1};
    TB_TRY(tb_tensor_expect(ids, "input_ids", TB_I32, 2, any2));
    int64_t shape2[2] = {ids->shape[0], ids->shape[1]}, shape1[1] = {ids->shape[0]};
    TB_TRY(batch_field(m, "input_ids", TB_I32, 2, shape2, &b->input_ids));
    TB_TRY(batch_field(m, "token_type_ids", TB_I32, 2, shape2, &b->token_type_ids));
    TB_TRY(batch_field(m, "attention_mask", TB_I32, 2, shape2, &b->attention_mask));
    TB_TRY(batch_field(m, "example_ids", TB_I64, 1, shape1, &b->example_ids));
    const tb_tensor *lab;
    rc = tb_msg_get_tensor(m, "labels", &lab);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "batch message: ");
        goto error;
    }
    TB_TRY(batch_field(m, "labels", lab->dtype == TB_F32 ? TB_F32 : TB_I32, 1, shape1, &b->labels));
    int64_t v;
    TB_TRY(tb_msg_get_int(m, "epoch", &v));
    TB_CHECK(v >= 0, TB_EFORMAT, "batch message: epoch %lld is negative", (long long)v);
    b->epoch = (uint64_t)v;
    TB_TRY(tb_msg_get_int(m, "index", &b->index));
    TB_CHECK(b->index >= 0, TB_EFORMAT, "batch message: index %lld is negative", (long long)b->index);
    int64_t n = shape2[0] * shape2[1];
    const int32_t *pi = b->input_ids.data, *pm = b->attention_mask.data, *pt = b->token_type_ids.data;
    for (int64_t i = 0; i < n; i++) {
        TB_CHECK(pi[i] >= 0, TB_EFORMAT, "batch message: input_ids[%lld] = %d is negative", (long long)i, pi[i]);
        TB_CHECK(pm[i] == 0 || pm[i] == 1, TB_EFORMAT, "batch message: attention_mask[%lld] = %d is not 0 or 1",
                 (long long)i, pm[i]);
        TB_CHECK(pt[i] >= 0, TB_EFORMAT, "batch message: token_type_ids[%lld] = %d is negative", (long long)i, pt[i]);
    }
    return TB_OK;
error:
    tb_batch_free(b);
    return rc;
}

const tb_port_field tb_batch_port_fields[] = {
    {"input_ids", "<i4", "B,T", "WordPiece ids, [CLS] a [SEP] (b [SEP]), padded with [PAD]"},
    {"token_type_ids", "<i4", "B,T", "0 for a, 1 for b"},
    {"attention_mask", "<i4", "B,T", "1 for tokens, 0 for padding"},
    {"labels", "<i4|<f4", "B", "class ids in label_order, f32 targets for regression, -1 for a corpus"},
    {"example_ids", "<i8", "B", "example index in the input file"},
    {0},
};

int tb_dataset_read_format(tb_dataset *ds, const char *format, const char *path, const tb_read_opts *opts)
{
    tb_read_opts ro = opts ? *opts : (tb_read_opts){0};
    if (strcmp(format, "corpus") == 0) return tb_dataset_read_corpus(ds, path, &ro);
    if (strcmp(format, "wikitext") == 0) {
        ro.wikitext = 1;
        return tb_dataset_read_corpus(ds, path, &ro);
    }
    if (strcmp(format, "simple") == 0) return tb_dataset_read_simple(ds, path, &ro);
    tb_task task;
    int rc = tb_task_parse(format, &task);
    if (rc) return tb_err_wrap(rc, "--format");
    return tb_dataset_read_glue(ds, task, path, &ro);
}
