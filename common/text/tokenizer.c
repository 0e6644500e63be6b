/* tokenizer.c - BERT's FullTokenizer: set-up from a vocabulary, and sentence / pair encoding
 * ([CLS] a [SEP] b [SEP], truncation, padding). Basic tokenization is in basic.c, WordPiece in
 * wordpiece.c. */
#include "tb/text/tokenizer.h"

#include "tb/base/error.h"

#include <stdlib.h>
#include <string.h>

void tb_encoding_init(tb_encoding *e)
{
    memset(e, 0, sizeof *e);
}

void tb_encoding_free(tb_encoding *e)
{
    free(e->input_ids);
    free(e->token_type_ids);
    tb_ids_free(&e->a);
    tb_ids_free(&e->b);
    memset(e, 0, sizeof *e);
}

static int tokenizer_check(tb_tokenizer *t, const tb_tokenizer_opts *opts)
{
    int rc = TB_OK;
    t->opts = opts ? *opts : tb_tokenizer_opts_default();
    TB_CHECK(t->opts.max_input_chars_per_word >= 1, TB_EINVAL,
             "max_input_chars_per_word must be >= 1, got %d", t->opts.max_input_chars_per_word);
    TB_CHECK(t->vocab.unk_id >= 0, TB_EFORMAT, "the vocabulary has no [UNK] token; add it (usually id 100 or 1)");
    if (t->opts.unk_literal) {
        size_t bad = 0;
        size_t ll = strlen(t->opts.unk_literal);
        TB_CHECK(ll > 0 && tb_utf8_check(t->opts.unk_literal, ll, &bad) == TB_OK, TB_EINVAL,
                 "unk literal must be non-empty valid UTF-8");
        t->unk_literal = strdup(t->opts.unk_literal);
        TB_CHECK(t->unk_literal, TB_ENOMEM, "out of memory");
        t->opts.unk_literal = t->unk_literal;
    }
error:
    return rc;
}

int tb_tokenizer_init(tb_tokenizer *t, const char *vocab_path, const tb_tokenizer_opts *opts)
{
    int rc = TB_OK;
    memset(t, 0, sizeof *t);
    TB_TRY(tb_vocab_load(&t->vocab, vocab_path));
    rc = tokenizer_check(t, opts);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "%s: ", vocab_path);
        goto error;
    }
    return TB_OK;
error:
    tb_tokenizer_free(t);
    return rc;
}

int tb_tokenizer_init_vocab(tb_tokenizer *t, tb_vocab *v, const tb_tokenizer_opts *opts)
{
    int rc = TB_OK;
    memset(t, 0, sizeof *t);
    t->vocab = *v;
    memset(v, 0, sizeof *v);
    TB_TRY(tokenizer_check(t, opts));
    return TB_OK;
error:
    *v = t->vocab; /* give it back untouched */
    memset(&t->vocab, 0, sizeof t->vocab);
    tb_tokenizer_free(t);
    return rc;
}

void tb_tokenizer_free(tb_tokenizer *t)
{
    tb_vocab_free(&t->vocab);
    free(t->unk_literal);
    memset(t, 0, sizeof *t);
}

static int encoding_reserve(tb_encoding *e, size_t n)
{
    if ((size_t)e->cap >= n) return TB_OK;
    int32_t *a = realloc(e->input_ids, n * sizeof *a);
    if (!a) return TB_ERR(TB_ENOMEM, "out of memory encoding %zu tokens", n);
    e->input_ids = a;
    int32_t *b = realloc(e->token_type_ids, n * sizeof *b);
    if (!b) return TB_ERR(TB_ENOMEM, "out of memory encoding %zu tokens", n);
    e->token_type_ids = b;
    e->cap = (int32_t)n;
    return TB_OK;
}

int tb_tokenizer_encode(const tb_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                        int max_seq_length, tb_encoding *out)
{
    int rc = TB_OK;
    int pair = b != NULL && blen > 0;
    TB_CHECK(max_seq_length >= (pair ? 3 : 2), TB_EINVAL,
             "max_seq_length must be >= %d for a %s, got %d", pair ? 3 : 2, pair ? "pair" : "sentence",
             max_seq_length);
    TB_CHECK(t->vocab.cls_id >= 0 && t->vocab.sep_id >= 0, TB_EFORMAT,
             "the vocabulary lacks [CLS] or [SEP]; encoding needs both");
    TB_TRY(tb_tokenizer_tokenize(t, a, alen, &out->a));
    int32_t na = out->a.count, nb = 0;
    out->full_a = na;
    out->full_b = 0;
    if (pair) {
        TB_TRY(tb_tokenizer_tokenize(t, b, blen, &out->b));
        nb = out->b.count;
        out->full_b = nb;
        int32_t limit = max_seq_length - 3;
        while (na + nb > limit) {
            if (na > nb) na--;
            else nb--;
        }
    } else if (na > max_seq_length - 2) {
        na = max_seq_length - 2;
    }
    TB_TRY(encoding_reserve(out, (size_t)max_seq_length));
    int32_t k = 0;
    out->input_ids[k] = t->vocab.cls_id;
    out->token_type_ids[k++] = 0;
    for (int32_t i = 0; i < na; i++) {
        out->input_ids[k] = out->a.ids[i];
        out->token_type_ids[k++] = 0;
    }
    out->input_ids[k] = t->vocab.sep_id;
    out->token_type_ids[k++] = 0;
    if (pair && nb > 0) {
        for (int32_t i = 0; i < nb; i++) {
            out->input_ids[k] = out->b.ids[i];
            out->token_type_ids[k++] = 1;
        }
        out->input_ids[k] = t->vocab.sep_id;
        out->token_type_ids[k++] = 1;
    }
    out->len = k;
    out->n_a = na;
    out->n_b = nb;
error:
    return rc;
}

int tb_encoding_pad(const tb_encoding *e, int32_t pad_id, int width, int32_t *input_ids,
                    int32_t *token_type_ids, int32_t *attention_mask)
{
    if (width < e->len)
        return TB_ERR(TB_EINVAL, "cannot pad an encoding of %d tokens to width %d", e->len, width);
    for (int i = 0; i < width; i++) {
        int real = i < e->len;
        if (input_ids) input_ids[i] = real ? e->input_ids[i] : pad_id;
        if (token_type_ids) token_type_ids[i] = real ? e->token_type_ids[i] : 0;
        if (attention_mask) attention_mask[i] = real;
    }
    return TB_OK;
}
