/* vocab_build.c - word counts and WordPiece vocabulary learning (BPE-style merges), see
 * tb/text/vocab_build.h. */
#include "tb/text/vocab_build.h"

#include "tb/base/error.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* ---- a string -> index map (also used for pieces) -------------------------------------------- */

typedef struct strmap {
    char **keys;
    int32_t count, cap;
    int32_t *slots;
    uint32_t mask;
} strmap;

static void strmap_free(strmap *m)
{
    for (int32_t i = 0; i < m->count; i++) free(m->keys[i]);
    free(m->keys);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int strmap_rehash(strmap *m, uint32_t size)
{
    int32_t *slots = calloc(size, sizeof *slots);
    if (!slots) return TB_ERR(TB_ENOMEM, "out of memory for a table of %u entries", size);
    for (int32_t i = 0; i < m->count; i++) {
        uint32_t h = hash_bytes(m->keys[i], strlen(m->keys[i])) & (size - 1);
        while (slots[h]) h = (h + 1) & (size - 1);
        slots[h] = i + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->mask = size - 1;
    return TB_OK;
}

/* Index of s[0..n); inserts it when absent (then *added = 1). */
static int strmap_get(strmap *m, const char *s, size_t n, int32_t *idx, int *added)
{
    int rc = TB_OK;
    if (added) *added = 0;
    if (!m->slots || (uint32_t)(m->count + 1) * 2 > m->mask + 1) TB_TRY(strmap_rehash(m, m->slots ? (m->mask + 1) * 2 : 1024));
    uint32_t h = hash_bytes(s, n) & m->mask;
    while (m->slots[h]) {
        int32_t i = m->slots[h] - 1;
        if (strlen(m->keys[i]) == n && memcmp(m->keys[i], s, n) == 0) {
            *idx = i;
            return TB_OK;
        }
        h = (h + 1) & m->mask;
    }
    if (m->count == m->cap) {
        int32_t cap = m->cap ? m->cap * 2 : 1024;
        char **k = realloc(m->keys, (size_t)cap * sizeof *k);
        TB_CHECK(k, TB_ENOMEM, "out of memory for %d strings", cap);
        m->keys = k;
        m->cap = cap;
    }
    char *copy = malloc(n + 1);
    TB_CHECK(copy, TB_ENOMEM, "out of memory");
    memcpy(copy, s, n);
    copy[n] = '\0';
    m->keys[m->count] = copy;
    m->slots[h] = m->count + 1;
    *idx = m->count++;
    if (added) *added = 1;
error:
    return rc;
}

/* ---- word counts ------------------------------------------------------------------------------ */

void tb_word_counts_init(tb_word_counts *wc)
{
    memset(wc, 0, sizeof *wc);
}

void tb_word_counts_free(tb_word_counts *wc)
{
    strmap m = {wc->words, wc->count, wc->cap, wc->slots, wc->mask};
    strmap_free(&m);
    free(wc->counts);
    memset(wc, 0, sizeof *wc);
}

int tb_word_counts_add(tb_word_counts *wc, const char *w, size_t len, int64_t count)
{
    int rc = TB_OK;
    strmap m = {wc->words, wc->count, wc->cap, wc->slots, wc->mask};
    int32_t idx;
    int added;
    rc = strmap_get(&m, w, len, &idx, &added);
    wc->words = m.keys;
    wc->count = m.count;
    wc->slots = m.slots;
    wc->mask = m.mask;
    if (rc != TB_OK) return rc;
    if (m.cap != wc->cap) {
        int64_t *c = realloc(wc->counts, (size_t)m.cap * sizeof *c);
        TB_CHECK(c, TB_ENOMEM, "out of memory counting words");
        wc->counts = c;
    }
    wc->cap = m.cap;
    if (added) wc->counts[idx] = 0;
    wc->counts[idx] += count;
    wc->total += count;
error:
    return rc;
}

int tb_word_counts_add_text(tb_word_counts *wc, const tb_tokenizer_opts *opts, const char *text, size_t len,
                            tb_words *scratch)
{
    int rc = TB_OK;
    TB_TRY(tb_basic_tokenize(opts, text, len, scratch));
    for (int32_t i = 0; i < scratch->count; i++) {
        if (scratch->len[i] < 0) continue; /* the unk literal is not a word to learn */
        TB_TRY(tb_word_counts_add(wc, scratch->buf + scratch->off[i], (size_t)scratch->len[i], 1));
    }
error:
    return rc;
}

/* ---- pair counts: uint64 key (a << 32 | b) -> count, plus a lazy max-heap --------------------- */

typedef struct pairmap {
    uint64_t *keys;   /* UINT64_MAX: empty */
    int64_t *counts;
    uint32_t mask;
    uint32_t used;
} pairmap;

typedef struct heap_item {
    int64_t count;
    uint64_t key;
} heap_item;

typedef struct heap {
    heap_item *v;
    size_t n, cap;
} heap;

static int pairmap_init(pairmap *p, uint32_t size)
{
    p->keys = malloc((size_t)size * sizeof *p->keys);
    p->counts = calloc(size, sizeof *p->counts);
    if (!p->keys || !p->counts) return TB_ERR(TB_ENOMEM, "out of memory for %u pair counts", size);
    memset(p->keys, 0xFF, (size_t)size * sizeof *p->keys);
    p->mask = size - 1;
    p->used = 0;
    return TB_OK;
}

static void pairmap_free(pairmap *p)
{
    free(p->keys);
    free(p->counts);
    memset(p, 0, sizeof *p);
}

static uint32_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static int64_t *pairmap_slot(pairmap *p, uint64_t key, int insert);

static int pairmap_grow(pairmap *p)
{
    pairmap q;
    int rc = pairmap_init(&q, (p->mask + 1) * 2);
    if (rc != TB_OK) {
        pairmap_free(&q);
        return rc;
    }
    for (uint32_t i = 0; i <= p->mask; i++)
        if (p->keys[i] != UINT64_MAX) *pairmap_slot(&q, p->keys[i], 1) = p->counts[i];
    pairmap_free(p);
    *p = q;
    return TB_OK;
}

/* The count slot of `key`; with insert, a new key starts at 0 (the table must have room). */
static int64_t *pairmap_slot(pairmap *p, uint64_t key, int insert)
{
    uint32_t h = pair_hash(key) & p->mask;
    while (p->keys[h] != UINT64_MAX) {
        if (p->keys[h] == key) return &p->counts[h];
        h = (h + 1) & p->mask;
    }
    if (!insert) return NULL;
    p->keys[h] = key;
    p->counts[h] = 0;
    p->used++;
    return &p->counts[h];
}

static int heap_better(heap_item a, heap_item b)
{
    return a.count > b.count || (a.count == b.count && a.key < b.key);
}

static int heap_push(heap *h, int64_t count, uint64_t key)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 4096;
        heap_item *v = realloc(h->v, cap * sizeof *v);
        if (!v) return TB_ERR(TB_ENOMEM, "out of memory for %zu heap entries", cap);
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    h->v[i] = (heap_item){count, key};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_better(h->v[i], h->v[parent])) break;
        heap_item t = h->v[i];
        h->v[i] = h->v[parent];
        h->v[parent] = t;
        i = parent;
    }
    return TB_OK;
}

static heap_item heap_pop(heap *h)
{
    heap_item top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < h->n && heap_better(h->v[l], h->v[best])) best = l;
        if (r < h->n && heap_better(h->v[r], h->v[best])) best = r;
        if (best == i) break;
        heap_item t = h->v[i];
        h->v[i] = h->v[best];
        h->v[best] = t;
        i = best;
    }
    return top;
}

/* ---- learning --------------------------------------------------------------------------------- */

typedef struct word_seq {
    int32_t *sym;
    int32_t len;
    int64_t count;
} word_seq;

typedef struct learner {
    strmap pieces;          /* piece string -> symbol id */
    int64_t *piece_freq;    /* alphabet symbols: frequency */
    size_t piece_cap;       /* entries of piece_freq */
    word_seq *words;
    int32_t nwords;
    pairmap pairs;
    heap heap;
    int32_t **index;        /* symbol -> words that contain(ed) it */
    int32_t *index_n, *index_cap;
    int32_t index_size;
} learner;

static int index_reserve(learner *L, int32_t nsym)
{
    if (nsym <= L->index_size) return TB_OK;
    int32_t n = L->index_size ? L->index_size : 1024;
    while (n < nsym) n *= 2;
    int32_t **ix = realloc(L->index, (size_t)n * sizeof *ix);
    if (!ix) return TB_ERR(TB_ENOMEM, "out of memory");
    L->index = ix;
    int32_t *a = realloc(L->index_n, (size_t)n * sizeof *a);
    if (!a) return TB_ERR(TB_ENOMEM, "out of memory");
    L->index_n = a;
    int32_t *b = realloc(L->index_cap, (size_t)n * sizeof *b);
    if (!b) return TB_ERR(TB_ENOMEM, "out of memory");
    L->index_cap = b;
    for (int32_t i = L->index_size; i < n; i++) {
        L->index[i] = NULL;
        L->index_n[i] = L->index_cap[i] = 0;
    }
    L->index_size = n;
    return TB_OK;
}

static int index_add(learner *L, int32_t sym, int32_t word)
{
    int rc = TB_OK;
    TB_TRY(index_reserve(L, sym + 1));
    if (L->index_n[sym] > 0 && L->index[sym][L->index_n[sym] - 1] == word) return TB_OK;
    if (L->index_n[sym] == L->index_cap[sym]) {
        int32_t cap = L->index_cap[sym] ? L->index_cap[sym] * 2 : 4;
        int32_t *p = realloc(L->index[sym], (size_t)cap * sizeof *p);
        TB_CHECK(p, TB_ENOMEM, "out of memory");
        L->index[sym] = p;
        L->index_cap[sym] = cap;
    }
    L->index[sym][L->index_n[sym]++] = word;
error:
    return rc;
}

static int pair_add(learner *L, int32_t a, int32_t b, int64_t delta)
{
    if ((L->pairs.used + 1) * 2 > L->pairs.mask + 1) {
        int rc = pairmap_grow(&L->pairs);
        if (rc != TB_OK) return rc;
    }
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    int64_t *c = pairmap_slot(&L->pairs, key, 1);
    *c += delta;
    if (delta > 0) return heap_push(&L->heap, *c, key);
    return TB_OK;
}

static int word_pairs(learner *L, const word_seq *w, int64_t sign)
{
    int rc = TB_OK;
    for (int32_t i = 0; i + 1 < w->len; i++) TB_TRY(pair_add(L, w->sym[i], w->sym[i + 1], sign * w->count));
error:
    return rc;
}

static void learner_free(learner *L)
{
    strmap_free(&L->pieces);
    free(L->piece_freq);
    for (int32_t i = 0; i < L->nwords; i++) free(L->words[i].sym);
    free(L->words);
    pairmap_free(&L->pairs);
    free(L->heap.v);
    for (int32_t i = 0; i < L->index_size; i++) free(L->index[i]);
    free(L->index);
    free(L->index_n);
    free(L->index_cap);
    memset(L, 0, sizeof *L);
}

static size_t utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static uint32_t decode_one(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 1) return u[0];
    if (n == 2) return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    if (n == 3) return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
           (u[3] & 0x3F);
}

typedef struct alpha {
    int32_t sym;
    int64_t freq;
} alpha;

static int alpha_cmp(const void *x, const void *y)
{
    const alpha *a = x, *b = y;
    if (a->freq != b->freq) return a->freq > b->freq ? -1 : 1;
    return a->sym < b->sym ? -1 : a->sym > b->sym;
}

/* Makes room in piece_freq for every piece (new entries 0). */
static int piece_freq_reserve(learner *L)
{
    if ((size_t)L->pieces.count <= L->piece_cap) return TB_OK;
    size_t cap = L->piece_cap ? L->piece_cap * 2 : 1024;
    while (cap < (size_t)L->pieces.count) cap *= 2;
    int64_t *f = realloc(L->piece_freq, cap * sizeof *f);
    if (!f) return TB_ERR(TB_ENOMEM, "out of memory");
    memset(f + L->piece_cap, 0, (cap - L->piece_cap) * sizeof *f);
    L->piece_freq = f;
    L->piece_cap = cap;
    return TB_OK;
}

/* Symbol of the piece s[0..n), made when new. */
static int piece_add(learner *L, const char *s, size_t n, int32_t *sym)
{
    int added;
    int rc = strmap_get(&L->pieces, s, n, sym, &added);
    if (rc == TB_OK) rc = piece_freq_reserve(L);
    return rc;
}

/* Adds word w[0..n) (nch characters, seen `count` times) as a sequence of character pieces, "c"
 * at the start and "##c" after it, counting their frequencies; the other form of each character
 * becomes a piece too, so any arrangement of known characters is covered (not for characters that
 * always stand alone: CJK, punctuation). */
static int add_word(learner *L, const char *w, size_t n, size_t nch, int64_t count)
{
    int rc = TB_OK;
    word_seq *ws = &L->words[L->nwords];
    ws->sym = malloc(nch * sizeof *ws->sym);
    TB_CHECK(ws->sym, TB_ENOMEM, "out of memory");
    ws->count = count;
    L->nwords++;
    for (size_t k = 0; k < n;) {
        size_t cl = utf8_len((unsigned char)w[k]);
        if (k + cl > n) cl = n - k;
        char piece[8] = {'#', '#'}, other[8] = {'#', '#'};
        size_t pb = k > 0 ? 2 : 0, ob = k > 0 ? 0 : 2;
        memcpy(piece + pb, w + k, cl);
        int32_t sym;
        TB_TRY(piece_add(L, piece, pb + cl, &sym));
        L->piece_freq[sym] += ws->count;
        ws->sym[ws->len++] = sym;
        if (!tb_char_stands_alone(decode_one(w + k, cl))) {
            memcpy(other + ob, w + k, cl);
            TB_TRY(piece_add(L, other, ob + cl, &sym));
        }
        k += cl;
    }
error:
    return rc;
}

/* Step 1: every word of at most max_chars characters as character pieces (add_word). */
static int learn_alphabet(learner *L, const tb_word_counts *wc, int max_chars)
{
    int rc = TB_OK;
    L->words = calloc((size_t)wc->count, sizeof *L->words);
    TB_CHECK(L->words, TB_ENOMEM, "out of memory for %d words", wc->count);
    for (int32_t wi = 0; wi < wc->count; wi++) {
        const char *w = wc->words[wi];
        size_t n = strlen(w), nch = 0;
        for (size_t k = 0; k < n; k += utf8_len((unsigned char)w[k])) nch++;
        if (nch == 0 || nch > (size_t)max_chars) continue;
        TB_TRY(add_word(L, w, n, nch, wc->counts[wi]));
    }
    TB_CHECK(L->pieces.count > 0, TB_EINVAL, "no usable words to learn a vocabulary from");
error:
    return rc;
}

/* Rewrites every word that holds the pair (a, b) with the merged piece c, updating the pair counts
 * and the symbol index. */
static int merge_in_words(learner *L, int32_t a, int32_t b, int32_t c)
{
    int rc = TB_OK;
    int32_t nix = L->index_n[a];
    for (int32_t x = 0; x < nix; x++) {
        int32_t wi = L->index[a][x];
        word_seq *ws = &L->words[wi];
        int has = 0;
        for (int32_t k = 0; k + 1 < ws->len; k++) has |= ws->sym[k] == a && ws->sym[k + 1] == b;
        if (!has) continue;
        TB_TRY(word_pairs(L, ws, -1));
        int32_t o = 0;
        for (int32_t k = 0; k < ws->len; k++) {
            if (k + 1 < ws->len && ws->sym[k] == a && ws->sym[k + 1] == b) {
                ws->sym[o++] = c;
                k++;
            } else {
                ws->sym[o++] = ws->sym[k];
            }
        }
        ws->len = o;
        TB_TRY(word_pairs(L, ws, 1));
        TB_TRY(index_add(L, c, wi));
    }
error:
    return rc;
}

/* Step 3: merges of the most frequent pairs, each new piece appended to toks[*nt ..], until
 * cap_tokens tokens or no pair occurs min_freq times. */
static int learn_merges(learner *L, const char **toks, int32_t *nt, int32_t cap_tokens, int64_t min_freq)
{
    int rc = TB_OK;
    char *merged = NULL;
    TB_TRY(pairmap_init(&L->pairs, 1u << 16));
    for (int32_t wi = 0; wi < L->nwords; wi++) {
        TB_TRY(word_pairs(L, &L->words[wi], 1));
        for (int32_t k = 0; k < L->words[wi].len; k++) TB_TRY(index_add(L, L->words[wi].sym[k], wi));
    }
    while (*nt < cap_tokens && L->heap.n > 0) {
        heap_item top = heap_pop(&L->heap);
        int64_t *cur = pairmap_slot(&L->pairs, top.key, 0);
        if (!cur || *cur != top.count) {
            if (cur && *cur > 0 && *cur < top.count) TB_TRY(heap_push(&L->heap, *cur, top.key));
            continue;
        }
        if (top.count < min_freq) break;
        int32_t a = (int32_t)(top.key >> 32), b = (int32_t)(uint32_t)top.key;
        /* new piece: a + b without its "##" */
        const char *sa = L->pieces.keys[a], *sb = L->pieces.keys[b] + 2;
        size_t la = strlen(sa), lb = strlen(sb);
        merged = malloc(la + lb + 1);
        TB_CHECK(merged, TB_ENOMEM, "out of memory");
        memcpy(merged, sa, la);
        memcpy(merged + la, sb, lb);
        int32_t c;
        int added;
        TB_TRY(strmap_get(&L->pieces, merged, la + lb, &c, &added));
        free(merged);
        merged = NULL;
        if (added) toks[(*nt)++] = L->pieces.keys[c];
        TB_TRY(merge_in_words(L, a, b, c));
    }
error:
    free(merged);
    return rc;
}

int tb_vocab_learn(tb_vocab *out, const tb_word_counts *wc, const tb_vocab_learn_opts *opts)
{
    int rc = TB_OK;
    learner L;
    memset(&L, 0, sizeof L);
    memset(out, 0, sizeof *out);
    const char **toks = NULL;
    alpha *al = NULL;
    static const char *SPECIAL[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    const int32_t nspecial = 5;
    TB_CHECK(opts && opts->vocab_size > nspecial, TB_EINVAL, "vocabulary size must be > %d (the special tokens), got %d",
             nspecial, opts ? opts->vocab_size : 0);
    int64_t min_freq = opts->min_frequency > 0 ? opts->min_frequency : 2;
    int max_chars = opts->max_chars_per_word > 0 ? opts->max_chars_per_word : 100;
    TB_CHECK(wc->count > 0, TB_EINVAL, "no words to learn a vocabulary from: is the corpus empty?");

    /* 1. words -> sequences of character pieces; the alphabet with frequencies */
    TB_TRY(learn_alphabet(&L, wc, max_chars));
    int32_t nalpha = L.pieces.count;
    al = malloc((size_t)nalpha * sizeof *al);
    TB_CHECK(al, TB_ENOMEM, "out of memory");
    for (int32_t i = 0; i < nalpha; i++) al[i] = (alpha){i, L.piece_freq[i]};
    qsort(al, (size_t)nalpha, sizeof *al, alpha_cmp);
    int32_t budget = opts->vocab_size - nspecial;
    int32_t nkeep = nalpha < budget ? nalpha : budget;

    /* 2. special tokens and the alphabet, most frequent first; 3. merges (only when the whole
     * alphabet fits) */
    int32_t cap_tokens = opts->vocab_size;
    toks = malloc((size_t)cap_tokens * sizeof *toks);
    TB_CHECK(toks, TB_ENOMEM, "out of memory");
    int32_t nt = 0;
    for (int32_t i = 0; i < nspecial; i++) toks[nt++] = SPECIAL[i];
    for (int32_t i = 0; i < nkeep; i++) toks[nt++] = L.pieces.keys[al[i].sym];
    if (nkeep == nalpha && nt < cap_tokens) TB_TRY(learn_merges(&L, toks, &nt, cap_tokens, min_freq));
    TB_TRY(tb_vocab_from_tokens(out, toks, nt));
error:
    free(toks);
    free(al);
    learner_free(&L);
    return rc;
}
