/* test_finetune_data.h - small models, batch files and metrics parsing for the tb-finetune,
 * tb-eval and trainer tests (static helpers, included by those test files only). */
#ifndef TB_TEST_FINETUNE_DATA_H
#define TB_TEST_FINETUNE_DATA_H

#include "tb/text/dataset.h"
#include "tb/base/error.h"
#include "tb/wire/stream.h"
#include "tb/base/tensor.h"
#include "tb/text/vocab.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A tiny BERT config.json: vocab 40, hidden 16, 2 layers, 2 heads, FFN 32, 16 positions. */
static inline int ft_write_config(const char *path, int dropout)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f,
            "{\"vocab_size\": 40, \"hidden_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,\n"
            " \"intermediate_size\": 32, \"max_position_embeddings\": 16, \"type_vocab_size\": 2,\n"
            " \"hidden_dropout_prob\": %s, \"attention_probs_dropout_prob\": %s, \"hidden_act\": \"gelu\"}\n",
            dropout ? "0.1" : "0.0", dropout ? "0.1" : "0.0");
    return fclose(f);
}

/* vocab.txt matching the data below: [PAD] [UNK] [CLS] [SEP] [MASK] then 35 words. */
static inline int ft_write_vocab(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", f);
    for (int i = 5; i < 40; i++) fprintf(f, "w%d\n", i);
    return fclose(f);
}

/* The vocabulary hash of ft_write_vocab's vocabulary ("fnv1a64:..."), which the batches below carry. */
static inline const char *ft_vocab_hash(char *buf, size_t n)
{
    char words[40][8];
    const char *tok[40] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 5; i < 40; i++) {
        snprintf(words[i], sizeof words[i], "w%d", i);
        tok[i] = words[i];
    }
    tb_vocab v = {0};
    buf[0] = 0;
    if (tb_vocab_from_tokens(&v, tok, 40) == TB_OK) tb_vocab_hash_str(&v, buf, n);
    tb_vocab_free(&v);
    return buf;
}

/* Deterministic pseudo-random numbers for test data (splitmix64). */
static inline uint64_t ft_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fills batch b (B x T) of a learnable task: [CLS]=2 w1..wn [SEP]=3 [PAD]=0..., words in
 * [5, 40); class label = 1 when the first word is >= 22 (regression: first word / 40). */
static inline int ft_make_batch(tb_batch *b, int B, int T, uint64_t *rng, int regression, int64_t first_id)
{
    int64_t s2[2] = {B, T}, s1[1] = {B};
    int rc = tb_tensor_alloc(&b->input_ids, TB_I32, 2, s2);
    if (!rc) rc = tb_tensor_alloc(&b->token_type_ids, TB_I32, 2, s2);
    if (!rc) rc = tb_tensor_alloc(&b->attention_mask, TB_I32, 2, s2);
    if (!rc) rc = tb_tensor_alloc(&b->labels, regression ? TB_F32 : TB_I32, 1, s1);
    if (!rc) rc = tb_tensor_alloc(&b->example_ids, TB_I64, 1, s1);
    if (rc) return rc;
    int32_t *ids = b->input_ids.data, *mask = b->attention_mask.data;
    for (int i = 0; i < B; i++) {
        int len = 3 + (int)(ft_rand(rng) % (uint64_t)(T - 2)); /* 3..T */
        for (int t = 0; t < T; t++) {
            int32_t id = 0;
            if (t == 0) id = 2;
            else if (t == len - 1) id = 3;
            else if (t < len - 1) id = 5 + (int32_t)(ft_rand(rng) % 35);
            ids[i * T + t] = id;
            mask[i * T + t] = t < len;
        }
        if (regression)
            ((float *)b->labels.data)[i] = (float)ids[i * T + 1] / 40.0f;
        else
            ((int32_t *)b->labels.data)[i] = ids[i * T + 1] >= 22;
        ((int64_t *)b->example_ids.data)[i] = first_id + i;
    }
    return TB_OK;
}

/* Rewrites the words of each row as one repeated word (5 + s), which a masked LM can learn to
 * copy from the other positions. */
static inline void ft_make_predictable(tb_batch *b, uint64_t *rng)
{
    int B = (int)b->input_ids.shape[0], T = (int)b->input_ids.shape[1];
    int32_t *ids = b->input_ids.data;
    for (int i = 0; i < B; i++) {
        int s = (int)(ft_rand(rng) % 35);
        for (int t = 1; t < T; t++)
            if (ids[i * T + t] >= 5) ids[i * T + t] = 5 + s;
    }
}

/* Writes a message file of n batches (predictable: one word per row, for MLM). */
static inline int ft_write_batches_ex(const char *path, int n, int B, int T, uint64_t seed, int regression,
                                      int predictable)
{
    tb_stream *s = NULL;
    char ep[4200];
    snprintf(ep, sizeof ep, "file:%s", path);
    int rc = tb_stream_open(&s, ep, TB_STREAM_WRITE, NULL);
    uint64_t rng = seed;
    char vhash[32];
    ft_vocab_hash(vhash, sizeof vhash);
    for (int k = 0; k < n && rc == TB_OK; k++) {
        tb_batch b = {0};
        tb_msg m;
        tb_msg_init(&m);
        rc = ft_make_batch(&b, B, T, &rng, regression, (int64_t)k * B);
        if (!rc && predictable) ft_make_predictable(&b, &rng);
        b.index = k;
        if (!rc) rc = tb_batch_to_msg(&b, vhash, regression ? "regression" : "0,1", &m);
        if (!rc) rc = tb_stream_send(s, &m, NULL);
        tb_msg_free(&m);
        tb_batch_free(&b);
    }
    if (!rc) rc = tb_stream_finish(s);
    tb_stream_close(s);
    return rc;
}

static inline int ft_write_batches(const char *path, int n, int B, int T, uint64_t seed, int regression)
{
    return ft_write_batches_ex(path, n, B, T, seed, regression, 0);
}

/* Reads the "loss" text of every step line of a metrics file into losses[step] (up to max
 * steps; later lines of the same step replace earlier ones). Returns the highest step seen. */
static inline int ft_read_losses(const char *path, char losses[][40], int max)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    int top = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, "\"event\":\"step\"")) continue;
        const char *sp = strstr(line, "\"step\":"), *lp = strstr(line, "\"loss\":");
        if (!sp || !lp) continue;
        int step = atoi(sp + 7);
        if (step < 0 || step >= max) continue;
        lp += 7;
        size_t n = strcspn(lp, ",}");
        if (n >= 40) n = 39;
        memcpy(losses[step], lp, n);
        losses[step][n] = 0;
        if (step > top) top = step;
    }
    fclose(f);
    return top;
}

#endif
