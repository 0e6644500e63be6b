/* tinybert.c - the inference API of tb/api/tinybert.h: open a checkpoint, tokenize texts, run the
 * forward pass in length-sorted batches, close. */
#include "tb/api/tinybert.h"

#include "tb/base/error.h"
#include "tb/base/threads.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/text/tokenizer.h"

#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_SEQ 128
#define DEFAULT_BATCH 32

struct tinybert {
    tb_bert_model m;
    tb_tokenizer tok;
    tinybert_options o;
    char **labels;            /* [num_labels] names */
    tb_encoding enc;          /* scratch of one text */
    /* the texts of one tinybert_logits call, encoded: text i is ids[off[i] .. off[i+1]) */
    int32_t *ids, *types;
    int64_t *off, *keys;
    int *order;
    size_t ids_cap, n_cap;
    /* one padded batch [batch_size, max_seq_length] */
    int32_t *b_ids, *b_types, *b_mask;
};

void tinybert_options_default(tinybert_options *opts)
{
    if (opts) memset(opts, 0, sizeof *opts);
}

const char *tinybert_last_error(void) { return tb_err_msg(); }

int tinybert_num_labels(const tinybert *tb) { return tb ? tb->m.config.num_labels : 0; }

const char *tinybert_label_name(const tinybert *tb, int label)
{
    if (!tb || label < 0 || label >= tb->m.config.num_labels) return NULL;
    return tb->labels[label];
}

/* Fills missing options with the defaults and checks them against the model. */
static int resolve_options(tinybert *tb, const tinybert_options *in)
{
    int rc = TB_OK;
    tinybert_options o = {0};
    if (in) o = *in;
    TB_CHECK(o.threads >= 0 && o.max_seq_length >= 0 && o.batch_size >= 0, TB_EINVAL,
             "tinybert_open: threads (%d), max_seq_length (%d) and batch_size (%d) must be >= 0 (0: default)",
             o.threads, o.max_seq_length, o.batch_size);
    if (o.threads == 0) TB_TRY(tb_threads_default(&o.threads));
    if (o.max_seq_length == 0) o.max_seq_length = DEFAULT_MAX_SEQ;
    if (o.max_seq_length > tb->m.config.max_position_embeddings) {
        TB_CHECK(!in || in->max_seq_length == 0, TB_EINVAL,
                 "tinybert_open: max_seq_length %d exceeds the model's max_position_embeddings %d", o.max_seq_length,
                 tb->m.config.max_position_embeddings);
        o.max_seq_length = tb->m.config.max_position_embeddings;
    }
    TB_CHECK(o.max_seq_length >= 3, TB_EINVAL, "tinybert_open: max_seq_length must be >= 3 (room for [CLS] a [SEP] "
                                               "b [SEP]), got %d", o.max_seq_length);
    if (o.batch_size == 0) o.batch_size = DEFAULT_BATCH;
    tb->o = o;
error:
    return rc;
}

/* The class names of config.json's "id2label" ({"0": "neg", ...}); "LABEL_<n>" for any absent. */
static int load_label_names(tinybert *tb, const char *config_path)
{
    int rc = TB_OK;
    int n = tb->m.config.num_labels;
    char *text = NULL;
    cJSON *root = NULL;
    tb->labels = calloc((size_t)n, sizeof *tb->labels);
    TB_CHECK(tb->labels, TB_ENOMEM, "out of memory for %d label names", n);
    FILE *f = fopen(config_path, "rb");
    if (f) {
        text = calloc(1, 1 << 20);
        size_t got = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
        (void)got;
        fclose(f);
        root = text ? cJSON_Parse(text) : NULL;
    }
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "id2label") : NULL;
    for (int k = 0; k < n; k++) {
        char key[16], def[32];
        snprintf(key, sizeof key, "%d", k);
        snprintf(def, sizeof def, "LABEL_%d", k);
        const cJSON *v = map ? cJSON_GetObjectItemCaseSensitive(map, key) : NULL;
        tb->labels[k] = strdup(cJSON_IsString(v) ? v->valuestring : def);
        TB_CHECK(tb->labels[k], TB_ENOMEM, "out of memory for label names");
    }
error:
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* Config, parameters and vocabulary of the checkpoint folder `dir` (already resolved). */
static int load_checkpoint(tinybert *tb, const char *dir)
{
    int rc = TB_OK;
    char path[PATH_MAX + 32];
    tb_bert_config cfg;
    TB_TRY(tb_checkpoint_load_config(dir, TB_CKPT_ANY_HEAD, &cfg));
    TB_CHECK(cfg.head != TB_HEAD_NONE, TB_EINVAL,
             "%s has no classification or regression head (\"tinybert_head\" is \"none\"): use a fine-tuned or "
             "task-distilled checkpoint", dir);
    TB_TRY(tb_bert_init(&tb->m, &cfg));
    TB_TRY(tb_checkpoint_load_params(dir, &tb->m.params, NULL));
    snprintf(path, sizeof path, "%s/%s", dir, TB_CKPT_CONFIG);
    TB_TRY(load_label_names(tb, path));
    snprintf(path, sizeof path, "%s/%s", dir, TB_CKPT_VOCAB);
    tb_tokenizer_opts to = tb_tokenizer_opts_default();
    to.do_lower_case = tb->o.cased ? 0 : 1;
    TB_TRY(tb_tokenizer_init(&tb->tok, path, &to));
    TB_CHECK(tb->tok.vocab.count <= cfg.vocab_size, TB_EFORMAT,
             "%s has %d tokens but the model's vocab_size is %d: the vocabulary does not belong to this model", path,
             tb->tok.vocab.count, cfg.vocab_size);
error:
    return rc;
}

/* The padded batch buffers and the activation arena for batch_size x max_seq_length. */
static int reserve_batch(tinybert *tb)
{
    int rc = TB_OK;
    size_t cells = (size_t)tb->o.batch_size * (size_t)tb->o.max_seq_length;
    tb->b_ids = malloc(cells * sizeof *tb->b_ids);
    tb->b_types = malloc(cells * sizeof *tb->b_types);
    tb->b_mask = malloc(cells * sizeof *tb->b_mask);
    TB_CHECK(tb->b_ids && tb->b_types && tb->b_mask, TB_ENOMEM, "out of memory for batches of %d x %d tokens",
             tb->o.batch_size, tb->o.max_seq_length);
    tb_bert_set_threads(&tb->m, tb->o.threads);
    TB_TRY(tb_bert_arena_reserve(&tb->m, tb->o.batch_size, tb->o.max_seq_length, TB_BERT_INFER, 0, 0));
error:
    return rc;
}

tinybert *tinybert_open(const char *path, const tinybert_options *opts)
{
    int rc = TB_OK;
    char dir[PATH_MAX];
    tinybert *tb = NULL;
    tb_err_clear();
    TB_CHECK(path && *path, TB_EINVAL, "tinybert_open: no checkpoint path given");
    tb = calloc(1, sizeof *tb);
    TB_CHECK(tb, TB_ENOMEM, "out of memory opening %s", path);
    tb_encoding_init(&tb->enc);
    TB_TRY(tb_checkpoint_resolve(path, dir, sizeof dir));
    tb->o.cased = opts ? opts->cased : 0;
    TB_TRY(load_checkpoint(tb, dir));
    TB_TRY(resolve_options(tb, opts));
    TB_TRY(reserve_batch(tb));
    return tb;
error:
    tb_err_wrap(rc, "opening checkpoint %s", path ? path : "(null)");
    tinybert_close(tb);
    return NULL;
}

void tinybert_close(tinybert *tb)
{
    if (!tb) return;
    if (tb->labels)
        for (int k = 0; k < tb->m.config.num_labels; k++) free(tb->labels[k]);
    free(tb->labels);
    tb_bert_free(&tb->m);
    tb_tokenizer_free(&tb->tok);
    tb_encoding_free(&tb->enc);
    free(tb->ids);
    free(tb->types);
    free(tb->off);
    free(tb->order);
    free(tb->keys);
    free(tb->b_ids);
    free(tb->b_types);
    free(tb->b_mask);
    free(tb);
}

/* Room for n texts' offsets and order. */
static int reserve_texts(tinybert *tb, int n)
{
    if ((size_t)n + 1 <= tb->n_cap) return TB_OK;
    size_t cap = (size_t)n + 1;
    int64_t *off = realloc(tb->off, cap * sizeof *off);
    if (off) tb->off = off;
    int *order = realloc(tb->order, cap * sizeof *order);
    if (order) tb->order = order;
    int64_t *keys = realloc(tb->keys, cap * sizeof *keys);
    if (keys) tb->keys = keys;
    if (!off || !order || !keys) return TB_ERR(TB_ENOMEM, "out of memory for %d texts", n);
    tb->n_cap = cap;
    return TB_OK;
}

/* Appends the encoding in tb->enc to the flat token arrays. */
static int append_encoding(tinybert *tb, int64_t at)
{
    size_t need = (size_t)at + (size_t)tb->enc.len;
    if (need > tb->ids_cap) {
        size_t cap = tb->ids_cap ? tb->ids_cap : 4096;
        while (cap < need) cap *= 2;
        int32_t *ids = realloc(tb->ids, cap * sizeof *ids);
        if (ids) tb->ids = ids;
        int32_t *types = realloc(tb->types, cap * sizeof *types);
        if (types) tb->types = types;
        if (!ids || !types) return TB_ERR(TB_ENOMEM, "out of memory for %zu tokens", cap);
        tb->ids_cap = cap;
    }
    memcpy(tb->ids + at, tb->enc.input_ids, (size_t)tb->enc.len * sizeof *tb->ids);
    memcpy(tb->types + at, tb->enc.token_type_ids, (size_t)tb->enc.len * sizeof *tb->types);
    return TB_OK;
}

/* Tokenizes and encodes the n texts into ids/types/off. */
static int encode_texts(tinybert *tb, int n, const char *const *a, const char *const *b)
{
    int rc = TB_OK;
    TB_TRY(reserve_texts(tb, n));
    tb->off[0] = 0;
    for (int i = 0; i < n; i++) {
        TB_CHECK(a[i], TB_EINVAL, "text %d is NULL", i);
        const char *bi = b ? b[i] : NULL;
        rc = tb_tokenizer_encode(&tb->tok, a[i], strlen(a[i]), bi, bi ? strlen(bi) : 0, tb->o.max_seq_length, &tb->enc);
        if (rc != TB_OK) {
            tb_err_wrap(rc, "text %d", i);
            goto error;
        }
        TB_TRY(append_encoding(tb, tb->off[i]));
        tb->off[i + 1] = tb->off[i] + tb->enc.len;
        tb->order[i] = i;
    }
error:
    return rc;
}

static int cmp_key(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Sorts tb->order[0..n) by token count, then by index (keys len << 32 | index in tb->keys), so
 * batches need little padding. */
static void sort_by_length(tinybert *tb, int n)
{
    for (int i = 0; i < n; i++) tb->keys[i] = (tb->off[i + 1] - tb->off[i]) << 32 | (int64_t)i;
    qsort(tb->keys, (size_t)n, sizeof *tb->keys, cmp_key);
    for (int i = 0; i < n; i++) tb->order[i] = (int)(tb->keys[i] & 0xffffffff);
}

/* Runs texts order[first .. first + B) through the model; their logits go to their own rows. */
static int run_batch(tinybert *tb, int first, int B, float *logits)
{
    int rc = TB_OK;
    int T = 0, nl = tb->m.config.num_labels;
    int32_t pad = tb->tok.vocab.pad_id >= 0 ? tb->tok.vocab.pad_id : 0;
    for (int r = 0; r < B; r++) {
        int i = tb->order[first + r];
        int len = (int)(tb->off[i + 1] - tb->off[i]);
        if (len > T) T = len;
    }
    for (int r = 0; r < B; r++) {
        int i = tb->order[first + r];
        int len = (int)(tb->off[i + 1] - tb->off[i]);
        int32_t *ri = tb->b_ids + (size_t)r * T, *rt = tb->b_types + (size_t)r * T, *rm = tb->b_mask + (size_t)r * T;
        for (int c = 0; c < T; c++) {
            int real = c < len;
            ri[c] = real ? tb->ids[tb->off[i] + c] : pad;
            rt[c] = real ? tb->types[tb->off[i] + c] : 0;
            rm[c] = real;
        }
    }
    tb_bert_batch bb = {.B = B, .T = T, .input_ids = tb->b_ids, .token_type_ids = tb->b_types, .attention_mask = tb->b_mask};
    tb_bert_run run = {.dropout = 0, .logits = 1, .cls_only = 1};
    TB_TRY(tb_bert_forward(&tb->m, &bb, &run));
    const float *out = tb_bert_logits(&tb->m);
    for (int r = 0; r < B; r++) {
        int i = tb->order[first + r];
        for (int k = 0; k < nl; k++) {
            float v = out[(size_t)r * nl + k];
            TB_CHECK(isfinite(v), TB_EINVAL, "text %d: logit %d is %g: the model is broken (NaN or overflowing weights)",
                     i, k, (double)v);
            logits[(size_t)i * nl + k] = v;
        }
    }
error:
    return rc;
}

int tinybert_logits(tinybert *tb, int n, const char *const *text_a, const char *const *text_b, float *logits)
{
    int rc = TB_OK;
    tb_err_clear();
    TB_CHECK(tb && n >= 0 && (n == 0 || (text_a && logits)), TB_EINVAL,
             "tinybert_logits: a handle, n >= 0, texts and an output array are required");
    TB_TRY(encode_texts(tb, n, text_a, text_b));
    sort_by_length(tb, n);
    for (int first = 0; first < n; first += tb->o.batch_size) {
        int B = n - first < tb->o.batch_size ? n - first : tb->o.batch_size;
        TB_TRY(run_batch(tb, first, B, logits));
    }
error:
    return rc;
}

int tinybert_classify(tinybert *tb, const char *text_a, const char *text_b, int *label, float *probs)
{
    int rc = TB_OK;
    float z[256];
    tb_err_clear();
    TB_CHECK(tb && label, TB_EINVAL, "tinybert_classify: a handle and a label pointer are required");
    int nl = tb->m.config.num_labels;
    TB_CHECK(nl >= 2, TB_EINVAL, "tinybert_classify: the model is a regression model (1 output): use tinybert_score");
    TB_CHECK(nl <= 256, TB_EUNSUPPORTED, "tinybert_classify: %d classes, at most 256 supported (use tinybert_logits)", nl);
    TB_TRY(tinybert_logits(tb, 1, &text_a, text_b ? &text_b : NULL, z));
    int best = 0;
    for (int k = 1; k < nl; k++)
        if (z[k] > z[best]) best = k;
    *label = best;
    if (probs) {
        double sum = 0;
        for (int k = 0; k < nl; k++) sum += exp((double)z[k] - (double)z[best]);
        for (int k = 0; k < nl; k++) probs[k] = (float)(exp((double)z[k] - (double)z[best]) / sum);
    }
error:
    return rc;
}

int tinybert_score(tinybert *tb, const char *text_a, const char *text_b, float *score)
{
    int rc = TB_OK;
    tb_err_clear();
    TB_CHECK(tb && score, TB_EINVAL, "tinybert_score: a handle and a score pointer are required");
    TB_CHECK(tb->m.config.num_labels == 1, TB_EINVAL,
             "tinybert_score: the model classifies into %d classes: use tinybert_classify", tb->m.config.num_labels);
    TB_TRY(tinybert_logits(tb, 1, &text_a, text_b ? &text_b : NULL, score));
error:
    return rc;
}
