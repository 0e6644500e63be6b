/* LayerNorm over the last dimension (as torch.nn.LayerNorm, biased variance). */
#include "tb/model/ops.h"

#include "tb/base/error.h"

#include <math.h>
#include <omp.h>

#include "ops_math.h"

/* One row: y = (x - mean) * rstd * w + b; returns mean and rstd. */
OPS_CLONES static void ln_fwd_row(float *restrict y, float *restrict mean, float *restrict rstd,
                                  const float *restrict x, const float *restrict w,
                                  const float *restrict b, int C, float eps)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < C; j++) s += x[j];
    const float m = s / (float)C;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int j = 0; j < C; j++) {
        float d = x[j] - m;
        v += d * d;
    }
    const float rs = 1.0f / sqrtf(v / (float)C + eps);
#pragma omp simd
    for (int j = 0; j < C; j++) y[j] = (x[j] - m) * rs * w[j] + b[j];
    *mean = m;
    *rstd = rs;
}

/* One row of the input gradient: dx += (g w - mean(g w) - norm * mean(g w norm)) * rstd. */
OPS_CLONES static void ln_bwd_row(float *restrict dx, const float *restrict g, const float *restrict x,
                                  const float *restrict w, float m, float rs, int C)
{
    float sum_g = 0.0f, sum_gn = 0.0f; /* sums of dnorm and dnorm * norm */
#pragma omp simd reduction(+ : sum_g, sum_gn)
    for (int j = 0; j < C; j++) {
        float gn = g[j] * w[j];
        sum_g += gn;
        sum_gn += gn * (x[j] - m) * rs;
    }
    const float mg = sum_g / (float)C, mgn = sum_gn / (float)C;
#pragma omp simd
    for (int j = 0; j < C; j++) {
        float norm = (x[j] - m) * rs;
        dx[j] += (g[j] * w[j] - mg - norm * mgn) * rs;
    }
}

int tb_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                         const float *b, int N, int C, float eps)
{
    if (!out || !mean || !rstd || !in || !w || !b)
        return TB_ERR(TB_EINVAL, "tb_layernorm_forward: NULL out, mean, rstd, in, w or b");
    if (N <= 0 || C <= 0)
        return TB_ERR(TB_EINVAL, "tb_layernorm_forward: N and C must be > 0, got N=%d C=%d", N, C);
    if (!(eps > 0.0f)) return TB_ERR(TB_EINVAL, "tb_layernorm_forward: eps must be > 0, got %g", (double)eps);
#pragma omp parallel for schedule(dynamic, 16)
    for (int r = 0; r < N; r++)
        ln_fwd_row(out + (size_t)r * C, mean + r, rstd + r, in + (size_t)r * C, w, b, C, eps);
    return TB_OK;
}

int tb_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, const float *mean, const float *rstd, int N, int C)
{
    if (!dout || !in || !w || !mean || !rstd)
        return TB_ERR(TB_EINVAL, "tb_layernorm_backward: NULL dout, in, w, mean or rstd");
    if (N <= 0 || C <= 0)
        return TB_ERR(TB_EINVAL, "tb_layernorm_backward: N and C must be > 0, got N=%d C=%d", N, C);
    if (din) {
#pragma omp parallel for schedule(dynamic, 16)
        for (int r = 0; r < N; r++)
            ln_bwd_row(din + (size_t)r * C, dout + (size_t)r * C, in + (size_t)r * C, w, mean[r], rstd[r], C);
    }
    if (dw || db) {
        /* Column reductions: each thread owns a block of columns and walks the rows in order. */
#pragma omp parallel
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            int j0 = (int)((long long)C * t / nt), j1 = (int)((long long)C * (t + 1) / nt);
            for (int r = 0; r < N; r++) {
                const float *restrict x = in + (size_t)r * C;
                const float *restrict g = dout + (size_t)r * C;
                const float m = mean[r], rs = rstd[r];
                if (dw) {
#pragma omp simd
                    for (int j = j0; j < j1; j++) dw[j] += g[j] * (x[j] - m) * rs;
                }
                if (db) {
#pragma omp simd
                    for (int j = j0; j < j1; j++) db[j] += g[j];
                }
            }
        }
    }
    return TB_OK;
}
