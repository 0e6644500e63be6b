/* Self-attention core: scores = QK^T/sqrt(HS) + mask, softmax, dropout, context = P V.
 * One OpenMP loop over (batch, head); each iteration runs its products with tb_gemm_small
 * (single-threaded, no packing: a threaded BLIS call per small matrix is far slower, and even a
 * single-threaded one spends as long packing as multiplying) in its thread's slice of `scratch`. */
#include "tb/model/ops.h"

#include "tb/base/error.h"

#include <math.h>
#include <omp.h>

#include "ops_math.h"

#define MASK_ADD (-10000.0f) /* additive mask of padding keys, as Hugging Face BERT */
#define SCRATCH_ALIGN 16     /* floats: keeps each thread's slice 64-byte aligned */

/* One thread's scratch: three [T,T] matrices, one [T] vector and one [HS,T] matrix, each rounded
 * up to 64 bytes.
 *   forward:  [0] dropout(P)   [1] P when not saved            [3] key mask offsets  [4] K^T
 *   backward: [0] dP, then dS  [1] dropout(P)  [2] P recomputed from the scores      [4] V^T */
static size_t round_up(size_t n) { return (n + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN; }
static size_t tt_floats(int T) { return round_up((size_t)T * (size_t)T); }
static size_t per_thread_floats(int T, int HS)
{
    return 3 * tt_floats(T) + round_up((size_t)T) + round_up((size_t)HS * (size_t)T);
}

size_t tb_attention_scratch_floats(int T, int HS, int nthreads)
{
    if (T <= 0 || HS <= 0 || nthreads <= 0) return 0;
    return per_thread_floats(T, HS) * (size_t)nthreads;
}

static int attn_check(const char *fn, int ld_qkv, int B, int T, int NH, int HS,
                      const tb_dropout *drop, size_t scratch_floats, int *nthreads)
{
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0)
        return TB_ERR(TB_EINVAL, "%s: B, T, NH, HS must be > 0, got B=%d T=%d NH=%d HS=%d", fn, B, T, NH, HS);
    if ((long long)T * T > 0x7fffffffLL || (long long)NH * HS > 0x7fffffffLL)
        return TB_ERR(TB_EINVAL, "%s: T=%d or NH*HS too large", fn, T);
    if (ld_qkv < NH * HS)
        return TB_ERR(TB_EINVAL, "%s: row stride %d is smaller than NH*HS = %d", fn, ld_qkv, NH * HS);
    if (drop && !(drop->p >= 0.0f && drop->p < 1.0f))
        return TB_ERR(TB_EINVAL, "%s: attention dropout must be in [0, 1), got %g", fn, (double)drop->p);
    size_t per = per_thread_floats(T, HS);
    if (scratch_floats < per)
        return TB_ERR(TB_EINVAL, "%s: scratch has %zu floats, needs at least %zu "
                      "(tb_attention_scratch_floats(T=%d, HS=%d, 1))", fn, scratch_floats, per, T, HS);
    size_t fit = scratch_floats / per;
    int nt = omp_get_max_threads();
    *nthreads = (size_t)nt < fit ? nt : (int)fit;
    return TB_OK;
}

/* xt[HS,T] = x^T for one head's rows x[T,HS] (row stride ld): the unit-stride B operand that
 * tb_gemm_small needs for the products with K^T and V^T. */
static void transpose_head(float *restrict xt, const float *restrict x, int ld, int T, int HS)
{
    for (int t = 0; t < T; t++) {
        const float *restrict xr = x + (size_t)t * ld;
        for (int d = 0; d < HS; d++) xt[(size_t)d * T + t] = xr[d];
    }
}

/* Softmax over each of the T rows of s[T,T] (raw scores) with the key offsets moff[T]
 * (madd_j - madd_max): p = softmax(s + moff); then s becomes the saved scores raw + madd. */
OPS_CLONES static void softmax_rows(float *restrict s, float *restrict p, const float *restrict moff,
                                    float madd_max, int T)
{
    for (int t = 0; t < T; t++) {
        float *restrict sr = s + (size_t)t * T;
        float *restrict pr = p + (size_t)t * T;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < T; j++) {
            float v = sr[j] + moff[j]; /* a shift only: any value near the max works */
            mx = v > mx ? v : mx;
        }
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < T; j++) {
            float e = ops_expf((sr[j] - mx) + moff[j]);
            pr[j] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < T; j++) {
            pr[j] *= inv;
            sr[j] += moff[j] + madd_max; /* the saved scores: raw + madd */
        }
    }
}

/* p = softmax over each row of the saved scores s[T,T] (masked keys sit near -10000 and get 0). */
OPS_CLONES static void softmax_plain_rows(float *restrict p, const float *restrict s, int T)
{
    for (int t = 0; t < T; t++) {
        const float *restrict sr = s + (size_t)t * T;
        float *restrict pr = p + (size_t)t * T;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < T; j++) mx = sr[j] > mx ? sr[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < T; j++) {
            float e = ops_expf(sr[j] - mx);
            pr[j] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < T; j++) pr[j] *= inv;
    }
}

/* Softmax backward through the dropout, in place on ds[T,T] (holding dPd = d dropout(P)):
 * dP_i = dPd_i keep_i scale and dS_i = p_i (dP_i - sum_j dP_j p_j). Since pd_i = p_i keep_i
 * scale, p_i dP_i = dPd_i pd_i =: y_i, so dS_i = y_i - p_i sum_j y_j (no mask needed).
 * pd == p without dropout. extra (may be NULL) is added to dS. */
OPS_CLONES static void softmax_backward_rows(float *restrict ds, const float *p, const float *pd,
                                             const float *restrict extra, int T)
{
    for (int t = 0; t < T; t++) {
        float *restrict dr = ds + (size_t)t * T;
        const float *restrict pr = p + (size_t)t * T;
        const float *restrict qr = pd + (size_t)t * T;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < T; j++) {
            float y = dr[j] * qr[j];
            dr[j] = y;
            dot += y;
        }
#pragma omp simd
        for (int j = 0; j < T; j++) dr[j] -= pr[j] * dot;
        if (extra) {
            const float *restrict ex = extra + (size_t)t * T;
#pragma omp simd
            for (int j = 0; j < T; j++) dr[j] += ex[j];
        }
    }
}

/* Writes dropout(P) of head block `off` (element index off + t*T + s) into pd. */
OPS_CLONES static void drop_probs(float *restrict pd, const float *restrict p, size_t tt, size_t off,
                       const tb_dropout *drop)
{
    const float pr = drop->p, scale = 1.0f / (1.0f - drop->p);
    tb_rng_uniform(drop->key, drop->batch_seq, drop->site, off, pd, tt);
#pragma omp simd
    for (size_t i = 0; i < tt; i++) {
        float x = p[i];
        pd[i] = pd[i] >= pr ? x * scale : 0.0f;
    }
}

int tb_attention_forward(float *ctx, float *scores, float *probs,
                         const float *q, const float *k, const float *v, int ld_qkv,
                         const int32_t *mask, int B, int T, int NH, int HS,
                         const tb_dropout *drop, float *scratch, size_t scratch_floats)
{
    int nthreads = 1;
    if (!ctx || !scores || !q || !k || !v || !scratch)
        return TB_ERR(TB_EINVAL, "tb_attention_forward: NULL ctx, scores, q, k, v or scratch");
    int rc = attn_check("tb_attention_forward", ld_qkv, B, T, NH, HS, drop, scratch_floats, &nthreads);
    if (rc != TB_OK) return rc;
    const int C = NH * HS;
    const float alpha = 1.0f / sqrtf((float)HS);
    const size_t tt = (size_t)T * T, per = per_thread_floats(T, HS), A = tt_floats(T);
    const int use_drop = drop && drop->p > 0.0f;

#pragma omp parallel num_threads(nthreads)
    {
        float *pd = scratch + per * (size_t)omp_get_thread_num();
        float *pbuf = pd + A;                /* P when the caller does not keep it */
        float *restrict moff = pd + 3 * A;   /* [T]: madd_j - madd_max */
        float *kt = moff + round_up((size_t)T); /* [HS,T]: K^T of the head */
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t off = (size_t)bh * tt;
            const float *qb = q + (size_t)b * T * ld_qkv + (size_t)h * HS;
            const float *kb = k + (size_t)b * T * ld_qkv + (size_t)h * HS;
            const float *vb = v + (size_t)b * T * ld_qkv + (size_t)h * HS;
            float *s = scores + off, *p = probs ? probs + off : pbuf;
            /* S[T,T] = alpha Q[T,HS] K^T */
            transpose_head(kt, kb, ld_qkv, T, HS);
            tb_gemm_small(T, T, HS, alpha, qb, ld_qkv, 1, kt, T, 0, s, T);
            /* Softmax of raw + madd over keys, computed as exp((raw_j - mx) + (madd_j - madd_max))
             * so that no score passes through fp32 near -10000 (where its ulp is 1e-3): a
             * fully masked sequence then gets the exact softmax of its raw scores. */
            const int32_t *mk = mask ? mask + (size_t)b * T : NULL;
            int any_kept = 0;
            for (int j = 0; j < T; j++) any_kept |= mk ? mk[j] != 0 : 1;
            const float madd_max = any_kept ? 0.0f : MASK_ADD;
            for (int j = 0; j < T; j++) moff[j] = (mk && !mk[j] ? MASK_ADD : 0.0f) - madd_max;
            softmax_rows(s, p, moff, madd_max, T);
            const float *pv = p;
            if (use_drop) {
                drop_probs(pd, p, tt, off, drop);
                pv = pd;
            }
            /* ctx[T,HS] (rows of stride C) = P[T,T] V[T,HS] */
            tb_gemm_small(T, HS, T, 1.0f, pv, T, 1, vb, ld_qkv, 0, ctx + (size_t)b * T * C + (size_t)h * HS, C);
        }
    }
    return TB_OK;
}

/* The backward of both public variants: P from `probs` (saved) or recomputed from `scores`. */
static int attention_backward(const char *fn, float *dq, float *dk, float *dv, int ld_dqkv,
                              const float *dctx, const float *dscores_extra, const float *probs,
                              const float *scores, const float *q, const float *k, const float *v,
                              int ld_qkv, int B, int T, int NH, int HS, const tb_dropout *drop,
                              float *scratch, size_t scratch_floats)
{
    int nthreads = 1;
    if (!dq || !dk || !dv || !dctx || !(probs || scores) || !q || !k || !v || !scratch)
        return TB_ERR(TB_EINVAL, "%s: NULL dq, dk, dv, dctx, %s, q, k, v or scratch", fn, probs ? "probs" : "scores");
    int rc = attn_check(fn, ld_qkv, B, T, NH, HS, drop, scratch_floats, &nthreads);
    if (rc != TB_OK) return rc;
    if (ld_dqkv < NH * HS)
        return TB_ERR(TB_EINVAL, "%s: gradient row stride %d is smaller than NH*HS = %d", fn, ld_dqkv, NH * HS);
    const int C = NH * HS;
    const float alpha = 1.0f / sqrtf((float)HS);
    const size_t tt = (size_t)T * T, per = per_thread_floats(T, HS), A = tt_floats(T);
    const int use_drop = drop && drop->p > 0.0f;

#pragma omp parallel num_threads(nthreads)
    {
        float *ds = scratch + per * (size_t)omp_get_thread_num(); /* dP, then dS */
        float *pd = ds + A;                                       /* dropout(P) */
        float *pbuf = ds + 2 * A;                                 /* P recomputed */
        float *vt = ds + 3 * A + round_up((size_t)T);             /* [HS,T]: V^T of the head */
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t off = (size_t)bh * tt;
            const size_t qo = (size_t)b * T * ld_qkv + (size_t)h * HS;
            const size_t go = (size_t)b * T * ld_dqkv + (size_t)h * HS;
            const float *dc = dctx + (size_t)b * T * C + (size_t)h * HS;
            const float *p = probs ? probs + off : NULL;
            if (!probs) {
                softmax_plain_rows(pbuf, scores + off, T);
                p = pbuf;
            }
            /* dPd[T,T] = dctx[T,HS] V^T */
            transpose_head(vt, v + qo, ld_qkv, T, HS);
            tb_gemm_small(T, T, HS, 1.0f, dc, C, 1, vt, T, 0, ds, T);
            /* dV[T,HS] += Pd^T[T,T] dctx */
            const float *pv = p;
            if (use_drop) {
                drop_probs(pd, p, tt, off, drop);
                pv = pd;
            }
            tb_gemm_small(T, HS, T, 1.0f, pv, 1, T, dc, C, 1, dv + go, ld_dqkv);
            /* dS[T,T] from dPd, in place */
            softmax_backward_rows(ds, p, pv, dscores_extra ? dscores_extra + off : NULL, T);
            /* dQ[T,HS] += alpha dS[T,T] K[T,HS];  dK[T,HS] += alpha dS^T Q */
            tb_gemm_small(T, HS, T, alpha, ds, T, 1, k + qo, ld_qkv, 1, dq + go, ld_dqkv);
            tb_gemm_small(T, HS, T, alpha, ds, 1, T, q + qo, ld_qkv, 1, dk + go, ld_dqkv);
        }
    }
    return TB_OK;
}

int tb_attention_backward(float *dq, float *dk, float *dv, int ld_dqkv,
                          const float *dctx, const float *dscores_extra, const float *probs,
                          const float *q, const float *k, const float *v, int ld_qkv,
                          int B, int T, int NH, int HS,
                          const tb_dropout *drop, float *scratch, size_t scratch_floats)
{
    if (!probs) return TB_ERR(TB_EINVAL, "tb_attention_backward: NULL probs (use tb_attention_backward_scores "
                              "to recompute them from the saved scores)");
    return attention_backward("tb_attention_backward", dq, dk, dv, ld_dqkv, dctx, dscores_extra, probs, NULL,
                              q, k, v, ld_qkv, B, T, NH, HS, drop, scratch, scratch_floats);
}

int tb_attention_backward_scores(float *dq, float *dk, float *dv, int ld_dqkv,
                                 const float *dctx, const float *dscores_extra, const float *scores,
                                 const float *q, const float *k, const float *v, int ld_qkv,
                                 int B, int T, int NH, int HS,
                                 const tb_dropout *drop, float *scratch, size_t scratch_floats)
{
    if (!scores) return TB_ERR(TB_EINVAL, "tb_attention_backward_scores: NULL scores");
    return attention_backward("tb_attention_backward_scores", dq, dk, dv, ld_dqkv, dctx, dscores_extra, NULL,
                              scores, q, k, v, ld_qkv, B, T, NH, HS, drop, scratch, scratch_floats);
}
