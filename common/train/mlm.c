/* mlm.c - masked-language-model masking keyed by (seed, batch sequence number, row); see tb/train/mlm.h. */
#include "tb/train/mlm.h"

#include "tb/base/error.h"
#include "tb/model/loss.h"
#include "tb/base/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Positions chosen in a row with n >= 1 candidates: max(1, floor(prob n + 0.5)), at most n. */
static int chosen_of(const tb_mlm_opts *o, int n)
{
    int k = (int)(o->prob * n + 0.5);
    if (k < 1) k = 1;
    return k > n ? n : k;
}

int64_t tb_mlm_max_chosen(const tb_mlm_opts *o, int B, int T)
{
    if (!o || B <= 0 || T <= 0) return 0;
    return (int64_t)B * chosen_of(o, T);
}

tb_mlm_opts tb_mlm_opts_default(int32_t mask_id, int32_t vocab_size)
{
    tb_mlm_opts o;
    memset(&o, 0, sizeof o);
    o.prob = 0.15;
    o.mask_frac = 0.8;
    o.random_frac = 0.1;
    o.mask_id = mask_id;
    o.vocab_size = vocab_size;
    return o;
}

int tb_mlm_add_special(tb_mlm_opts *o, int32_t id)
{
    int rc = TB_OK;
    TB_CHECK(o, TB_EINVAL, "tb_mlm_add_special: options are NULL");
    TB_CHECK(o->n_special < TB_MLM_MAX_SPECIAL, TB_EINVAL, "MLM: at most %d special ids", TB_MLM_MAX_SPECIAL);
    TB_CHECK(id >= 0 && id < o->vocab_size, TB_EINVAL, "MLM: special id %d is outside the vocabulary [0, %d)",
             (int)id, (int)o->vocab_size);
    o->special[o->n_special++] = id;
error:
    return rc;
}

int tb_mlm_opts_check(const tb_mlm_opts *o)
{
    int rc = TB_OK;
    TB_CHECK(o, TB_EINVAL, "MLM options are NULL");
    TB_CHECK(o->prob > 0 && o->prob <= 1, TB_EINVAL, "MLM: the masking probability must be in (0, 1], got %g", o->prob);
    TB_CHECK(o->mask_frac >= 0 && o->random_frac >= 0 && o->mask_frac + o->random_frac <= 1.0 + 1e-12, TB_EINVAL,
             "MLM: [MASK] fraction %g and random fraction %g must be >= 0 and sum to at most 1", o->mask_frac,
             o->random_frac);
    TB_CHECK(o->vocab_size > 0, TB_EINVAL, "MLM: vocabulary size must be > 0, got %d", (int)o->vocab_size);
    TB_CHECK(o->mask_id >= 0 && o->mask_id < o->vocab_size, TB_EINVAL,
             "MLM: [MASK] id %d is outside the vocabulary [0, %d)", (int)o->mask_id, (int)o->vocab_size);
    TB_CHECK(o->n_special >= 0 && o->n_special <= TB_MLM_MAX_SPECIAL, TB_EINVAL, "MLM: bad special id count %d",
             o->n_special);
error:
    return rc;
}

static int is_special(const tb_mlm_opts *o, int32_t id)
{
    for (int i = 0; i < o->n_special; i++)
        if (o->special[i] == id) return 1;
    return 0;
}

static int check_inputs(const tb_mlm_opts *o, int B, int T, const int32_t *ids, const int32_t *mask)
{
    int rc = TB_OK;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t id = ids[(size_t)b * T + t];
            TB_CHECK(id >= 0 && id < o->vocab_size, TB_EINVAL,
                     "MLM: input id %d at (row %d, position %d) is outside the vocabulary [0, %d)", (int)id, b, t,
                     (int)o->vocab_size);
            TB_CHECK(!mask || mask[(size_t)b * T + t] == 0 || mask[(size_t)b * T + t] == 1, TB_EINVAL,
                     "MLM: attention mask value %d at (row %d, position %d) is not 0 or 1",
                     (int)mask[(size_t)b * T + t], b, t);
        }
error:
    return rc;
}

/* Masks one row; cand has room for T positions. Returns the number chosen. */
static int64_t mask_row(const tb_mlm_opts *o, tb_rng_key key, uint64_t seq, int b, int T, const int32_t *ids,
                        const int32_t *mask, int32_t *out, int32_t *labels, int *cand)
{
    int n = 0;
    for (int t = 0; t < T; t++) {
        labels[t] = TB_IGNORE_INDEX;
        out[t] = ids[t];
        if ((!mask || mask[t]) && !is_special(o, ids[t])) cand[n++] = t;
    }
    if (n == 0) return 0;
    const int k = chosen_of(o, n);
    uint32_t hi = (uint32_t)seq, lo = (uint32_t)b;
    for (int i = 0; i < k; i++) {
        uint32_t u = tb_rng_u32(key, hi, lo, (uint64_t)i);
        int j = i + (int)(u % (uint32_t)(n - i));
        int tmp = cand[i];
        cand[i] = cand[j];
        cand[j] = tmp;
        int t = cand[i];
        labels[t] = ids[t];
        double f = (double)(tb_rng_u32(key, hi, lo, ((uint64_t)1 << 32) + (uint64_t)i) >> 8) * (1.0 / 16777216.0);
        if (f < o->mask_frac)
            out[t] = o->mask_id;
        else if (f < o->mask_frac + o->random_frac)
            out[t] = (int32_t)(tb_rng_u32(key, hi, lo, ((uint64_t)2 << 32) + (uint64_t)i) % (uint32_t)o->vocab_size);
    }
    return k;
}

int tb_mlm_mask(const tb_mlm_opts *o, uint64_t seed, uint64_t seq, int B, int T, const int32_t *ids,
                const int32_t *attention_mask, int32_t *out_ids, int32_t *labels, int64_t *chosen)
{
    int rc = TB_OK;
    int *cand = NULL;
    TB_TRY(tb_mlm_opts_check(o));
    TB_CHECK(B > 0 && T > 0, TB_EINVAL, "MLM: batch %d x sequence %d must be positive", B, T);
    TB_CHECK(ids && out_ids && labels, TB_EINVAL, "MLM: ids, out_ids and labels must not be NULL");
    TB_TRY(check_inputs(o, B, T, ids, attention_mask));
    cand = malloc((size_t)T * sizeof *cand);
    TB_CHECK(cand, TB_ENOMEM, "out of memory for MLM candidates (%d)", T);
    tb_rng_key key = tb_rng_key_make(seed, TB_RNG_MLM);
    int64_t total = 0;
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)b * T;
        total += mask_row(o, key, seq, b, T, ids + off, attention_mask ? attention_mask + off : NULL, out_ids + off,
                          labels + off, cand);
    }
    if (chosen) *chosen = total;
error:
    free(cand);
    return rc;
}

int tb_mlm_count_candidates(const tb_mlm_opts *o, int B, int T, const int32_t *ids, const int32_t *attention_mask,
                            int64_t *counts)
{
    int rc = TB_OK;
    TB_TRY(tb_mlm_opts_check(o));
    TB_CHECK(B >= 0 && T >= 0 && (ids || B * T == 0) && counts, TB_EINVAL,
             "tb_mlm_count_candidates: bad arguments (B %d, T %d)", B, T);
    TB_TRY(check_inputs(o, B, T, ids, attention_mask));
    for (size_t i = 0; i < (size_t)B * T; i++)
        if ((!attention_mask || attention_mask[i]) && !is_special(o, ids[i])) counts[ids[i]]++;
error:
    return rc;
}

int tb_mlm_unigram_bias(const tb_mlm_opts *o, const int64_t *counts, float *bias)
{
    int rc = TB_OK;
    TB_TRY(tb_mlm_opts_check(o));
    TB_CHECK(counts && bias, TB_EINVAL, "tb_mlm_unigram_bias: counts or bias is NULL");
    double total = 0;
    for (int v = 0; v < o->vocab_size; v++) {
        TB_CHECK(counts[v] >= 0, TB_EINVAL, "MLM unigram counts: id %d has a negative count %lld", v,
                 (long long)counts[v]);
        total += (double)counts[v];
    }
    double denom = total + o->vocab_size;
    for (int v = 0; v < o->vocab_size; v++) bias[v] = (float)log(((double)counts[v] + 1.0) / denom);
error:
    return rc;
}
