/* Dropout with masks regenerated from the counter-based RNG (tb/base/rng.h): nothing is stored. */
#include "tb/model/ops.h"

#include "tb/base/error.h"

#include <math.h>

#include "ops_math.h"

/* Elements drawn per RNG call; chunks are fixed, so masks do not depend on the thread count. */
#define DROP_CHUNK 1024

/* out[i] = u[i] >= p ? in[i] * scale : 0 (accumulate: out[i] += ...) over one chunk. */
OPS_CLONES static void dropout_chunk(float *out, const float *in, float *restrict u, size_t m,
                                     const tb_dropout *d, int accumulate)
{
    const float p = d->p, scale = 1.0f / (1.0f - d->p);
    if (accumulate) {
#pragma omp simd
        for (size_t i = 0; i < m; i++) {
            float g = in[i];
            out[i] += u[i] >= p ? g * scale : 0.0f;
        }
    } else {
#pragma omp simd
        for (size_t i = 0; i < m; i++) {
            float x = in[i];
            out[i] = u[i] >= p ? x * scale : 0.0f;
        }
    }
}

/* Draws the uniforms of elements [i0, i0 + m) (m <= DROP_CHUNK) and applies the mask. */
OPS_CLONES static void dropout_draw_apply(float *out, const float *in, size_t i0, size_t m,
                                          const tb_dropout *d, int accumulate)
{
    float u[DROP_CHUNK];
    tb_rng_uniform(d->key, d->batch_seq, d->site, i0, u, m);
    dropout_chunk(out + i0, in + i0, u, m, d, accumulate);
}

static int dropout_check(const char *fn, const void *a, const void *b, const tb_dropout *d)
{
    if (!a || !b) return TB_ERR(TB_EINVAL, "%s: NULL tensor pointer", fn);
    if (d && !(d->p >= 0.0f && d->p < 1.0f))
        return TB_ERR(TB_EINVAL, "%s: drop probability must be in [0, 1), got %g", fn, (double)d->p);
    return TB_OK;
}

int tb_dropout_forward(float *out, const float *in, size_t n, const tb_dropout *d)
{
    int rc = dropout_check("tb_dropout_forward", out, in, d);
    if (rc != TB_OK) return rc;
    if (!d || d->p == 0.0f) {
        if (out != in) {
#pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < n; i++) out[i] = in[i];
        }
        return TB_OK;
    }
    const size_t nchunks = (n + DROP_CHUNK - 1) / DROP_CHUNK;
#pragma omp parallel for schedule(dynamic, 4)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * DROP_CHUNK, m = n - i0 < DROP_CHUNK ? n - i0 : DROP_CHUNK;
        dropout_draw_apply(out, in, i0, m, d, 0);
    }
    return TB_OK;
}

int tb_dropout_backward(float *din, const float *dout, size_t n, const tb_dropout *d)
{
    int rc = dropout_check("tb_dropout_backward", din, dout, d);
    if (rc != TB_OK) return rc;
    if (!d || d->p == 0.0f) return tb_accumulate(din, dout, n);
    const size_t nchunks = (n + DROP_CHUNK - 1) / DROP_CHUNK;
#pragma omp parallel for schedule(dynamic, 4)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * DROP_CHUNK, m = n - i0 < DROP_CHUNK ? n - i0 : DROP_CHUNK;
        dropout_draw_apply(din, dout, i0, m, d, 1);
    }
    return TB_OK;
}
