/* batches.c - a dataset tokenized once (tb_encoded, also packed for MLM), and addressable batches
 * cut from it (tb/text/batches.h). */
#include "tb/text/batches.h"

#include "tb/base/error.h"
#include "tb/base/rng.h"

#include <stdlib.h>
#include <string.h>

/* Grows e->ids and e->types to hold `need` tokens (capacity *cap, doubled from 65536); 0 when
 * out of memory (the caller says what it was doing). */
static int tokens_reserve(tb_encoded *e, size_t *cap, size_t need)
{
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap * 2 : 65536;
    while (c < need) c *= 2;
    int32_t *a = realloc(e->ids, c * sizeof *a);
    if (!a) return 0;
    e->ids = a;
    int32_t *b = realloc(e->types, c * sizeof *b);
    if (!b) return 0;
    e->types = b;
    *cap = c;
    return 1;
}

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
        TB_CHECK(tokens_reserve(e, &cap, used + (size_t)enc.len), TB_ENOMEM, "out of memory encoding %lld examples",
                 (long long)n);
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
    TB_CHECK(tokens_reserve(e, cap, need), TB_ENOMEM, "out of memory packing a corpus");
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

/* Computes the example order of `epoch` into b->order unless it is already there. */
static int order_cache(tb_batcher *b, uint64_t epoch)
{
    int rc = TB_OK;
    if (b->order_valid && b->order_epoch == epoch) return TB_OK;
    TB_TRY(tb_batcher_order(b, epoch, b->order));
    b->order_epoch = epoch;
    b->order_valid = 1;
error:
    return rc;
}

/* Padded width of the rows order[first .. first + rows): max_seq_length, or with pad_to_longest
 * the longest of them (at least 1). */
static int64_t batch_width(const tb_batcher *b, int64_t first, int64_t rows)
{
    const tb_encoded *e = b->enc;
    if (!b->opts.pad_to_longest) return e->max_seq_length;
    int64_t width = 1;
    for (int64_t r = 0; r < rows; r++) {
        int64_t ex = b->order[first + r];
        int64_t len = e->off[ex + 1] - e->off[ex];
        if (len > width) width = len;
    }
    return width;
}

/* Fills the allocated tensors of `out` with the examples order[first ..], padded to `width`. */
static void batch_fill(const tb_batcher *b, int64_t first, int64_t rows, int64_t width, tb_batch *out)
{
    const tb_encoded *e = b->enc;
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
}

int tb_batcher_get(tb_batcher *b, uint64_t epoch, int64_t index, tb_batch *out)
{
    int rc = TB_OK;
    tb_batch_free(out);
    const tb_encoded *e = b->enc;
    int64_t nb = tb_batcher_count(b);
    TB_CHECK(index >= 0 && index < nb, TB_EINVAL, "batch index %lld out of range: epoch has %lld batches",
             (long long)index, (long long)nb);
    TB_TRY(order_cache(b, epoch));
    int64_t first = index * b->opts.batch_size;
    int64_t rows = e->count - first < b->opts.batch_size ? e->count - first : b->opts.batch_size;
    int64_t width = batch_width(b, first, rows);
    int64_t shape2[2] = {rows, width}, shape1[1] = {rows};
    TB_TRY(tb_tensor_alloc(&out->input_ids, TB_I32, 2, shape2));
    TB_TRY(tb_tensor_alloc(&out->token_type_ids, TB_I32, 2, shape2));
    TB_TRY(tb_tensor_alloc(&out->attention_mask, TB_I32, 2, shape2));
    TB_TRY(tb_tensor_alloc(&out->labels, e->regression ? TB_F32 : TB_I32, 1, shape1));
    TB_TRY(tb_tensor_alloc(&out->example_ids, TB_I64, 1, shape1));
    batch_fill(b, first, rows, width, out);
    out->epoch = epoch;
    out->index = index;
    return TB_OK;
error:
    tb_batch_free(out);
    return rc;
}
