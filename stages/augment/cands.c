/* stages/augment/cands.c - see cands.h. */
#include "cands.h"

#include "tb/base/error.h"
#include "tb/base/log.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define TB_CANDS_MAX_LEN 512
#define TB_CANDS_CACHE_CAP (1 << 18) /* cached words, at most; the cache is emptied when full */
#define TB_CANDS_FULL_BATCH 1024     /* padded positions that keep the products efficient */

/* ---- sentences ------------------------------------------------------------------------------ */

void tb_aug_sentence_init(tb_aug_sentence *s)
{
    memset(s, 0, sizeof *s);
    tb_words_init(&s->words);
    tb_ids_init(&s->pieces);
}

void tb_aug_sentence_free(tb_aug_sentence *s)
{
    tb_words_free(&s->words);
    tb_ids_free(&s->pieces);
    free(s->elig);
    free(s->cand_off);
    free(s->cand);
    free(s->kind);
    free(s->piece_start);
    free(s->piece_count);
    memset(s, 0, sizeof *s);
}

static int grow_i32(int32_t **p, int32_t n)
{
    int32_t *q = realloc(*p, (size_t)(n > 0 ? n : 1) * sizeof *q);
    if (!q) return TB_ERR(TB_ENOMEM, "augment: out of memory");
    *p = q;
    return TB_OK;
}

/* Room for the eligible tokens' lists: n_elig entries, n_elig * M candidate slots. */
static int sentence_reserve(tb_aug_sentence *s, int32_t words, int32_t elig, int32_t cands)
{
    int rc = TB_OK;
    if (words > s->word_cap) {
        TB_TRY(grow_i32(&s->piece_start, words));
        TB_TRY(grow_i32(&s->piece_count, words));
        s->word_cap = words;
    }
    if (elig > s->elig_cap || !s->cand_off) { /* cand_off has elig + 1 entries: one even for no word */
        TB_TRY(grow_i32(&s->elig, elig));
        TB_TRY(grow_i32(&s->kind, elig));
        TB_TRY(grow_i32(&s->cand_off, elig + 1));
        s->elig_cap = elig;
    }
    if (cands > s->cand_cap) {
        const char **q = realloc(s->cand, (size_t)cands * sizeof *q);
        TB_CHECK(q, TB_ENOMEM, "augment: out of memory");
        s->cand = q;
        s->cand_cap = cands;
    }
error:
    return rc;
}

static const char *word_of(const tb_aug_sentence *s, int32_t k)
{
    return s->words.buf + s->words.off[k];
}

int tb_cands_prepare(const tb_cands *c, tb_aug_sentence *s, const char *text, size_t len)
{
    int rc = TB_OK;
    const tb_vocab *v = &c->tok->vocab;
    s->cjk_join = c->opts.cjk;
    TB_TRY(tb_basic_tokenize(&c->tok->opts, text, len, &s->words));
    TB_TRY(tb_tokenizer_tokenize(c->tok, text, len, &s->pieces));
    int32_t nw = s->words.count;
    TB_TRY(sentence_reserve(s, nw, 0, 0));
    /* the reference's walk: a piece without "##" starts the next word */
    for (int32_t k = 0; k < nw; k++) {
        s->piece_start[k] = -1;
        s->piece_count[k] = 0;
    }
    int32_t k = -1;
    for (int32_t i = 0; i < s->pieces.count; i++) {
        if (!strstr(tb_vocab_token(v, s->pieces.ids[i]), "##")) {
            k++;
            if (k < nw) s->piece_start[k] = i;
        }
        if (k >= 0 && k < nw) s->piece_count[k]++;
    }
    int32_t ne = 0;
    for (int32_t w = 0; w < nw; w++)
        if (s->words.len[w] > 0 && tb_augment_eligible(c->stop, word_of(s, w), (size_t)s->words.len[w], c->opts.cjk))
            ne++;
    TB_TRY(sentence_reserve(s, nw, ne, ne * (c->opts.M + 1)));
    s->n_elig = 0;
    for (int32_t w = 0; w < nw; w++)
        if (s->words.len[w] > 0 && tb_augment_eligible(c->stop, word_of(s, w), (size_t)s->words.len[w], c->opts.cjk))
            s->elig[s->n_elig++] = w;
    for (int32_t e = 0; e <= s->n_elig; e++) s->cand_off[e] = 0;
error:
    return rc;
}

/* ---- the per-word cache of vector neighbours --------------------------------------------------- */

typedef struct cache_entry {
    char *word;
    int32_t count;   /* -1: pending */
    int32_t query;   /* pending: index in the query list */
    int64_t *rows;   /* [M] */
} cache_entry;

struct tb_cands_cache {
    cache_entry *e;  /* slots */
    uint64_t mask;
    int64_t used;
};

static uint64_t hash_str(const char *w)
{
    uint64_t h = 1469598103934665603ull;
    for (; *w; w++) h = (h ^ (unsigned char)*w) * 1099511628211ull;
    return h;
}

static void cache_clear(tb_cands_cache *ca)
{
    for (uint64_t i = 0; ca->e && i <= ca->mask; i++) {
        free(ca->e[i].word);
        free(ca->e[i].rows);
    }
    free(ca->e);
    memset(ca, 0, sizeof *ca);
}

static cache_entry *cache_slot(tb_cands_cache *ca, const char *w)
{
    for (uint64_t i = hash_str(w) & ca->mask;; i = (i + 1) & ca->mask)
        if (!ca->e[i].word || strcmp(ca->e[i].word, w) == 0) return &ca->e[i];
}

static int cache_grow(tb_cands_cache *ca)
{
    uint64_t n = ca->e ? 2 * (ca->mask + 1) : 1024;
    tb_cands_cache nc = {.e = calloc(n, sizeof(cache_entry)), .mask = n - 1, .used = ca->used};
    if (!nc.e) return TB_ERR(TB_ENOMEM, "augment: out of memory for the word cache");
    for (uint64_t i = 0; ca->e && i <= ca->mask; i++)
        if (ca->e[i].word) *cache_slot(&nc, ca->e[i].word) = ca->e[i];
    free(ca->e);
    *ca = nc;
    return TB_OK;
}

/* The entry of w, created (pending) when absent (*created = 1). */
static int cache_get(tb_cands_cache *ca, const char *w, int M, cache_entry **out, int *created)
{
    int rc = TB_OK;
    *created = 0;
    if (!ca->e || (uint64_t)(ca->used + 1) * 2 > ca->mask + 1) TB_TRY(cache_grow(ca));
    cache_entry *e = cache_slot(ca, w);
    if (!e->word) {
        e->word = strdup(w);
        e->rows = malloc((size_t)M * sizeof *e->rows);
        if (!e->word || !e->rows) {
            free(e->word);
            free(e->rows);
            e->word = NULL;
            e->rows = NULL;
            return TB_ERR(TB_ENOMEM, "augment: out of memory for the word cache");
        }
        e->count = -1;
        ca->used++;
        *created = 1;
    }
    *out = e;
error:
    return rc;
}

/* ---- engine ------------------------------------------------------------------------------------ */

int tb_cands_init(tb_cands *c, const tb_tokenizer *tok, tb_bert_model *model, const tb_stopwords *stop,
                  const tb_vectors *vec, const tb_cands_opts *opts)
{
    int rc = TB_OK;
    memset(c, 0, sizeof *c);
    const tb_bert_config *cfg = &model->config;
    const tb_vocab *v = &tok->vocab;
    TB_CHECK(cfg->mlm_head && model->mlm_dec_b >= 0, TB_EINVAL,
             "the model has no MLM head: augmentation needs a masked-LM teacher (tb-finetune --mlm, or a Hugging "
             "Face BertForMaskedLM with cls.predictions.*)");
    TB_CHECK(cfg->vocab_size == v->count, TB_EINVAL, "the model's vocab_size %d differs from vocab.txt's %d tokens",
             cfg->vocab_size, (int)v->count);
    TB_CHECK(v->cls_id >= 0 && v->sep_id >= 0 && v->mask_id >= 0, TB_EINVAL,
             "the vocabulary lacks [CLS], [SEP] or [MASK], which the MLM inputs need");
    TB_CHECK(cfg->type_vocab_size >= 2, TB_EINVAL, "the model has %d token types; the MLM inputs need 2",
             cfg->type_vocab_size);
    TB_CHECK(opts->M >= 1, TB_EINVAL, "M (candidates per word) must be >= 1, got %d", opts->M);
    TB_CHECK(opts->batch >= 1 && opts->tokens >= 1, TB_EINVAL, "MLM batch %d and tokens %d must be >= 1",
             opts->batch, opts->tokens);
    c->opts = *opts;
    c->tok = tok;
    c->model = model;
    c->stop = stop;
    c->vec = vec;
    c->max_len = cfg->max_position_embeddings < TB_CANDS_MAX_LEN ? cfg->max_position_embeddings : TB_CANDS_MAX_LEN;
    c->cache = calloc(1, sizeof *c->cache);
    TB_CHECK(c->cache, TB_ENOMEM, "augment: out of memory");
error:
    return rc;
}

void tb_cands_use_teacher_queries(tb_cands *c, const tb_vectors *vec)
{
    c->vec = vec;
    c->query_emb = (const float *)c->model->params.items[c->model->word_w].value.data;
}

void tb_cands_free(tb_cands *c)
{
    if (c->cache) cache_clear(c->cache);
    free(c->cache);
    memset(c, 0, sizeof *c);
}

int tb_cands_teacher_vectors(tb_vectors *v, const tb_tokenizer *tok, const tb_bert_model *model)
{
    int rc = TB_OK;
    const tb_vocab *voc = &tok->vocab;
    const char **words = NULL;
    float *mat = NULL;
    int C = model->config.hidden_size;
    const float *emb = (const float *)model->params.items[model->word_w].value.data;
    words = malloc((size_t)voc->count * sizeof *words);
    mat = malloc((size_t)voc->count * (size_t)C * sizeof *mat);
    TB_CHECK(words && mat, TB_ENOMEM, "augment: out of memory for the teacher's word vectors");
    int64_t n = 0;
    for (int32_t id = 0; id < voc->count && id < model->config.vocab_size; id++) {
        const char *t = voc->tokens[id];
        size_t len = strlen(t);
        if (len == 0 || strncmp(t, "##", 2) == 0 || (t[0] == '[' && t[len - 1] == ']')) continue;
        words[n] = t;
        memcpy(mat + n * C, emb + (size_t)id * C, (size_t)C * sizeof *mat);
        n++;
    }
    TB_TRY(tb_vectors_from_rows(v, words, n, mat, C));
error:
    free(words);
    free(mat);
    return rc;
}

/* ---- MLM candidates ------------------------------------------------------------------------------ */

typedef struct mlm_job {
    int32_t s, e;      /* sentence, eligible token */
    int32_t mask_pos;  /* position of [MASK] */
    int32_t len;       /* sequence length after the cut */
    int32_t order;     /* creation order (ties of len) */
} mlm_job;

static int job_cmp(const void *a, const void *b)
{
    const mlm_job *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* The MLM input of job j into row ids/types/mask[0..T). */
static void fill_row(const tb_cands *c, const tb_aug_sentence *s, const mlm_job *j, int T, int32_t *ids,
                     int32_t *types, int32_t *mask)
{
    const tb_vocab *v = &c->tok->vocab;
    int32_t n = s->pieces.count, p = 0;
#define PUT(id, ty)                  \
    do {                             \
        if (p < j->len) {            \
            ids[p] = (id);           \
            types[p] = (ty);         \
            mask[p] = 1;             \
        }                            \
        p++;                         \
    } while (0)
    PUT(v->cls_id, 0);
    for (int32_t i = 0; i < n; i++) PUT(i + 1 == j->mask_pos ? v->mask_id : s->pieces.ids[i], 0);
    PUT(v->sep_id, 0);
    for (int32_t i = 0; i < n; i++) PUT(s->pieces.ids[i], 1);
    PUT(v->sep_id, 1);
#undef PUT
    for (int32_t q = j->len; q < T; q++) {
        ids[q] = v->pad_id >= 0 ? v->pad_id : 0;
        types[q] = 0;
        mask[q] = 0;
    }
}

/* Top M ids of logits[V] (highest first, equal: lower id first) without "##" pieces, as strings
 * into out; returns how many. `cjk_only`: of those, only single CJK ideographs are kept (the
 * candidates of a CJK word under --cjk). */
static int top_tokens(const tb_vocab *v, const float *logits, int V, int M, int64_t *ids, float *vals,
                      int cjk_only, const char **out)
{
    int k = 0;
    for (int i = 0; i < V; i++) {
        float x = logits[i];
        if (k == M && !(x > vals[M - 1])) continue;
        int q = k < M ? k++ : M - 1;
        while (q > 0 && x > vals[q - 1]) {
            vals[q] = vals[q - 1];
            ids[q] = ids[q - 1];
            q--;
        }
        vals[q] = x;
        ids[q] = i;
    }
    int n = 0;
    for (int q = 0; q < k; q++) {
        const char *t = tb_vocab_token(v, (int32_t)ids[q]);
        if (strncmp(t, "##", 2) == 0) continue;
        if (cjk_only && !tb_augment_is_cjk_char(t, strlen(t))) continue;
        out[n++] = t;
    }
    return n;
}

static int ensure_arena(tb_cands *c, int B, int T)
{
    if (B <= c->arena_B && T <= c->arena_T) return TB_OK;
    int nb = c->opts.tokens / T;
    if (nb > c->opts.batch) nb = c->opts.batch;
    if (nb < B) nb = B;
    tb_bert_arena_release(c->model);
    c->arena_B = c->arena_T = 0;
    int L = c->model->config.num_hidden_layers;
    tb_bert_arena_spec spec = {.max_B = nb, .max_T = T, .mode = TB_BERT_INFER, .keep_scores = 0,
                               .keep_hidden = (uint64_t)1 << L, .mlm = 1, .mlm_max_rows = nb};
    int rc = tb_bert_arena_reserve_ex(c->model, &spec);
    if (rc) return rc;
    c->arena_B = nb;
    c->arena_T = T;
    return TB_OK;
}

/* Runs the MLM jobs and writes their candidates into the sentences' slots (cnt[s][e]). */
static int run_mlm(tb_cands *c, tb_aug_sentence *const *ss, mlm_job *jobs, int64_t nj, int32_t **cnt)
{
    int rc = TB_OK;
    int32_t *ids = NULL, *types = NULL, *mask = NULL, *rows = NULL;
    const int V = c->model->config.vocab_size, M = c->opts.M;
    qsort(jobs, (size_t)nj, sizeof *jobs, job_cmp);
    int bmax = c->opts.one_at_a_time ? 1 : c->opts.batch;
    size_t cap = (size_t)(c->opts.tokens > c->max_len ? c->opts.tokens : c->max_len) + (size_t)bmax * 8;
    ids = malloc(cap * sizeof *ids);
    types = malloc(cap * sizeof *types);
    mask = malloc(cap * sizeof *mask);
    rows = malloc((size_t)bmax * sizeof *rows);
    TB_CHECK(ids && types && mask && rows, TB_ENOMEM, "augment: out of memory for MLM inputs");
    for (int64_t j0 = 0; j0 < nj;) {
        int B = 0, T = 0;
        while (j0 + B < nj && B < bmax) {
            int len = jobs[j0 + B].len;
            int t = c->opts.one_at_a_time ? len : (len + 7) / 8 * 8;
            if (t > c->max_len) t = c->max_len;
            if (B > 0 && (int64_t)(B + 1) * t > c->opts.tokens) break;
            /* enough positions for efficient products already: no longer padding for a longer one */
            if (B > 0 && t > T && (int64_t)B * T >= TB_CANDS_FULL_BATCH) break;
            T = t > T ? t : T;
            B++;
        }
        TB_TRY(ensure_arena(c, B, T));
        for (int b = 0; b < B; b++) {
            const mlm_job *j = &jobs[j0 + b];
            fill_row(c, ss[j->s], j, T, ids + (size_t)b * T, types + (size_t)b * T, mask + (size_t)b * T);
            rows[b] = b * T + j->mask_pos;
        }
        tb_bert_batch batch = {.B = B, .T = T, .input_ids = ids, .token_type_ids = types, .attention_mask = mask};
        tb_bert_run run = {.dropout = 0, .mlm = 1, .mlm_rows = rows, .mlm_count = B};
        TB_TRY(tb_bert_forward(c->model, &batch, &run));
        c->mlm_forwards++;
        c->mlm_positions += (int64_t)B * T;
        const float *logits = tb_bert_mlm_logits(c->model);
#pragma omp parallel for schedule(static) num_threads(c->opts.threads > 0 ? c->opts.threads : omp_get_max_threads())
        for (int b = 0; b < B; b++) {
            const mlm_job *j = &jobs[j0 + b];
            tb_aug_sentence *s = ss[j->s];
            int64_t top_ids[64];
            float top_vals[64];
            int64_t *ti = M <= 64 ? top_ids : malloc((size_t)M * sizeof *ti);
            float *tv = M <= 64 ? top_vals : malloc((size_t)M * sizeof *tv);
            const int32_t k = s->elig[j->e];
            const int cjk_only = c->opts.cjk && tb_augment_is_cjk_char(word_of(s, k), (size_t)s->words.len[k]);
            if (ti && tv)
                cnt[j->s][j->e] = top_tokens(&c->tok->vocab, logits + (size_t)b * V, V, M, ti, tv, cjk_only,
                                             s->cand + (size_t)j->e * (M + 1));
            else
                cnt[j->s][j->e] = -1; /* out of memory, reported below */
            if (M > 64) {
                free(ti);
                free(tv);
            }
        }
        for (int b = 0; b < B; b++)
            TB_CHECK(cnt[jobs[j0 + b].s][jobs[j0 + b].e] >= 0, TB_ENOMEM, "augment: out of memory for MLM candidates");
        j0 += B;
    }
error:
    free(ids);
    free(types);
    free(mask);
    free(rows);
    return rc;
}

/* ---- vector candidates --------------------------------------------------------------------------- */

/* The query of word k of s: its own row (GloVe; *exclude = the row) or the normalised mean of its
 * pieces' embeddings (teacher). Returns 0 when the word has no vector. */
static int make_query(const tb_cands *c, const tb_aug_sentence *s, int32_t k, float *q, int64_t *exclude)
{
    const tb_vectors *v = c->vec;
    const char *w = word_of(s, k);
    int64_t row = tb_vectors_find(v, w, strlen(w));
    *exclude = row;
    if (!c->query_emb) {
        if (row < 0 || !v->usable[row]) return 0;
        memcpy(q, v->unit + row * v->dim, (size_t)v->dim * sizeof *q);
        return 1;
    }
    int C = v->dim;
    double *acc = calloc((size_t)C, sizeof *acc);
    if (!acc) return -1;
    int32_t n = s->piece_count[k];
    for (int32_t i = 0; i < n; i++) {
        const float *e = c->query_emb + (size_t)s->pieces.ids[s->piece_start[k] + i] * C;
        for (int d = 0; d < C; d++) acc[d] += e[d];
    }
    double ss = 0;
    for (int d = 0; d < C; d++) ss += acc[d] * acc[d];
    int ok = ss > 0;
    for (int d = 0; d < C; d++) q[d] = ok ? (float)(acc[d] / sqrt(ss)) : 0.0f;
    free(acc);
    return ok;
}

typedef struct vec_job {
    int32_t s, e;
    cache_entry *entry; /* resolved after the queries ran */
} vec_job;

static int run_vectors(tb_cands *c, tb_aug_sentence *const *ss, vec_job *jobs, int64_t nj, int32_t **cnt)
{
    int rc = TB_OK;
    const int M = c->opts.M;
    float *q = NULL;
    int64_t *excl = NULL, *out = NULL;
    int *count = NULL;
    char **qword = NULL;
    if (nj == 0) return TB_OK;
    if (c->cache->used >= TB_CANDS_CACHE_CAP) cache_clear(c->cache);
    const int dim = c->vec->dim;
    q = malloc((size_t)nj * (size_t)dim * sizeof *q);
    excl = malloc((size_t)nj * sizeof *excl);
    qword = malloc((size_t)nj * sizeof *qword);
    TB_CHECK(q && excl && qword, TB_ENOMEM, "augment: out of memory for word-vector queries");
    int nq = 0;
    for (int64_t j = 0; j < nj; j++) {
        tb_aug_sentence *s = ss[jobs[j].s];
        int32_t k = s->elig[jobs[j].e];
        cache_entry *e;
        int created;
        TB_TRY(cache_get(c->cache, word_of(s, k), M, &e, &created));
        if (created) {
            int has = make_query(c, s, k, q + (size_t)nq * dim, &excl[nq]);
            TB_CHECK(has >= 0, TB_ENOMEM, "augment: out of memory");
            if (has) {
                e->query = nq;
                qword[nq++] = e->word;
            } else {
                e->count = 0;
            }
        }
    }
    out = malloc((size_t)(nq ? nq : 1) * (size_t)M * sizeof *out);
    count = malloc((size_t)(nq ? nq : 1) * sizeof *count);
    TB_CHECK(out && count, TB_ENOMEM, "augment: out of memory for word-vector queries");
    TB_TRY(tb_vectors_nearest(c->vec, q, nq, excl, M, out, count));
    for (int i = 0; i < nq; i++) {
        cache_entry *e = cache_slot(c->cache, qword[i]);
        e->count = count[i];
        memcpy(e->rows, out + (size_t)i * M, (size_t)count[i] * sizeof *e->rows);
    }
    for (int64_t j = 0; j < nj; j++) {
        tb_aug_sentence *s = ss[jobs[j].s];
        const cache_entry *e = cache_slot(c->cache, word_of(s, s->elig[jobs[j].e]));
        const char **dst = s->cand + (size_t)jobs[j].e * (M + 1);
        for (int32_t i = 0; i < e->count; i++) dst[i] = tb_vectors_word(c->vec, e->rows[i]);
        cnt[jobs[j].s][jobs[j].e] = e->count;
        if (e->count > 0) c->vec_found++;
    }
error:
    free(q);
    free(excl);
    free(out);
    free(count);
    free(qword);
    return rc;
}

/* ---- everything ------------------------------------------------------------------------------ */

int tb_cands_compute(tb_cands *c, tb_aug_sentence *const *ss, int n)
{
    int rc = TB_OK;
    mlm_job *mj = NULL;
    vec_job *vj = NULL;
    int32_t **cnt = NULL;
    const int M = c->opts.M;
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += ss[i]->n_elig;
    mj = malloc((size_t)(total ? total : 1) * sizeof *mj);
    vj = malloc((size_t)(total ? total : 1) * sizeof *vj);
    cnt = calloc((size_t)(n ? n : 1), sizeof *cnt);
    TB_CHECK(mj && vj && cnt, TB_ENOMEM, "augment: out of memory");
    int64_t nm = 0, nv = 0;
    for (int i = 0; i < n; i++) {
        tb_aug_sentence *s = ss[i];
        cnt[i] = calloc((size_t)(s->n_elig ? s->n_elig : 1), sizeof **cnt);
        TB_CHECK(cnt[i], TB_ENOMEM, "augment: out of memory");
        int32_t len = 2 * s->pieces.count + 3;
        if (len > c->max_len) len = c->max_len;
        for (int32_t e = 0; e < s->n_elig; e++) {
            int32_t k = s->elig[e];
            s->kind[e] = TB_CAND_NONE;
            if (s->piece_count[k] == 1) {
                s->kind[e] = TB_CAND_MLM;
                int32_t pos = 1 + s->piece_start[k];
                if (pos < c->max_len)
                    mj[nm++] = (mlm_job){.s = i, .e = e, .mask_pos = pos, .len = len, .order = (int32_t)nm};
            } else if (s->piece_count[k] > 1) {
                s->kind[e] = TB_CAND_VECTOR;
                if (c->vec) vj[nv++] = (vec_job){.s = i, .e = e};
            }
            c->mlm_words += s->kind[e] == TB_CAND_MLM;
            c->vec_words += s->kind[e] == TB_CAND_VECTOR;
        }
        c->eligible += s->n_elig;
    }
    c->sentences += n;
    TB_TRY(run_mlm(c, ss, mj, nm, cnt));
    TB_TRY(run_vectors(c, ss, vj, nv, cnt));
    /* compact: the slots of eligible token e start at e * (M + 1); no candidate -> the word itself */
    for (int i = 0; i < n; i++) {
        tb_aug_sentence *s = ss[i];
        int32_t o = 0;
        for (int32_t e = 0; e < s->n_elig; e++) {
            const char **src = s->cand + (size_t)e * (M + 1);
            int32_t k = cnt[i][e];
            s->cand_off[e] = o;
            if (k == 0) {
                s->cand[o++] = word_of(s, s->elig[e]);
                c->no_candidate++;
                continue;
            }
            memmove(s->cand + o, src, (size_t)k * sizeof *src);
            o += k;
        }
        s->cand_off[s->n_elig] = o;
    }
error:
    for (int i = 0; cnt && i < n; i++) free(cnt[i]);
    free(cnt);
    free(mj);
    free(vj);
    return rc;
}
