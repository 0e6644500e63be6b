/* wordpiece.c - greedy longest-match-first WordPiece (google-research/bert WordpieceTokenizer), and
 * full tokenization of a text: basic tokenization (basic.c), then WordPiece per word. */
#include "tb/base/error.h"
#include "tb/text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

void tb_ids_init(tb_ids *ids)
{
    memset(ids, 0, sizeof *ids);
}

void tb_ids_free(tb_ids *ids)
{
    free(ids->ids);
    tb_words_free(&ids->words);
    memset(ids, 0, sizeof *ids);
}

static int ids_reserve(tb_ids *out, size_t extra)
{
    size_t need = (size_t)out->count + extra;
    if (need <= (size_t)out->cap) return TB_OK;
    size_t n = out->cap ? (size_t)out->cap : 64;
    while (n < need) n *= 2;
    if (n > INT32_MAX) return TB_ERR(TB_ENOMEM, "too many tokens in one text (%zu)", need);
    int32_t *p = realloc(out->ids, n * sizeof *p);
    if (!p) return TB_ERR(TB_ENOMEM, "out of memory for %zu token ids", n);
    out->ids = p;
    out->cap = (int32_t)n;
    return TB_OK;
}

int tb_wordpiece_word(const tb_tokenizer *t, const char *word, size_t len, size_t n_chars, tb_ids *out)
{
    int rc = TB_OK;
    const tb_vocab *v = &t->vocab;
    /* At most one piece per character, or one [UNK]. */
    TB_TRY(ids_reserve(out, n_chars + 1));
    if (n_chars > (size_t)t->opts.max_input_chars_per_word) {
        out->ids[out->count++] = v->unk_id;
        return TB_OK;
    }
    int32_t first = out->count;
    size_t start = 0;
    while (start < len) {
        /* Longest candidate: the rest of the word, or what fits in the longest vocab entry. */
        size_t limit = (size_t)v->max_len - (start > 0 ? 2 : 0);
        if ((size_t)v->max_len < (start > 0 ? 2u : 0u)) limit = 0;
        size_t end = len;
        if (end - start > limit) {
            end = start + limit;
            while (end > start && ((unsigned char)word[end] & 0xC0) == 0x80) end--; /* char boundary */
        }
        int32_t id = -1;
        while (end > start) {
            id = start > 0 ? tb_vocab_find_cont(v, word + start, end - start)
                           : tb_vocab_find(v, word + start, end - start);
            if (id >= 0) break;
            do end--; while (end > start && ((unsigned char)word[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            out->count = first;
            out->ids[out->count++] = v->unk_id;
            return TB_OK;
        }
        out->ids[out->count++] = id;
        start = end;
    }
error:
    return rc;
}

int tb_tokenizer_tokenize(const tb_tokenizer *t, const char *text, size_t len, tb_ids *out)
{
    int rc = TB_OK;
    out->count = 0;
    TB_TRY(tb_basic_tokenize(&t->opts, text, len, &out->words));
    const tb_words *w = &out->words;
    for (int32_t i = 0; i < w->count; i++) {
        const char *word = w->buf + w->off[i];
        if (w->len[i] < 0) { /* the unk literal */
            TB_TRY(ids_reserve(out, 1));
            out->ids[out->count++] = t->vocab.unk_id;
            continue;
        }
        size_t blen = (size_t)w->len[i], nch = 0;
        for (size_t k = 0; k < blen; k++) nch += ((unsigned char)word[k] & 0xC0) != 0x80;
        TB_TRY(tb_wordpiece_word(t, word, blen, nch, out));
    }
error:
    return rc;
}
