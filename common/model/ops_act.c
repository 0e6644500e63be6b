/* Elementwise operations: GELU (erf form), tanh, relu, residual add, gradient accumulation. */
#include "tb/model/ops.h"

#include "tb/base/error.h"

#include <math.h>

#include "ops_math.h"

#define SQRT1_2 0.70710678118654752440f   /* 1 / sqrt(2) */
#define INV_SQRT_2PI 0.39894228040143267794f /* 1 / sqrt(2 pi) */

static int ew_check(const char *fn, const void *a, const void *b, const void *c)
{
    if (!a || !b || !c) return TB_ERR(TB_EINVAL, "%s: NULL tensor pointer", fn);
    return TB_OK;
}

OPS_CLONES static void gelu_fwd_kernel(float *out, const float *in, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * ops_one_plus_erf(x * SQRT1_2);
    }
}

OPS_CLONES static void gelu_bwd_kernel(float *restrict din, const float *restrict in,
                                       const float *restrict dout, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float cdf = 0.5f * ops_one_plus_erf(x * SQRT1_2);
        float pdf = INV_SQRT_2PI * ops_expf(-0.5f * x * x);
        din[i] += dout[i] * (cdf + x * pdf);
    }
}

/* p[j] += b[j]; o[j] = gelu(p[j]) for one row of O elements */
OPS_CLONES static void bias_gelu_kernel(float *restrict o, float *restrict p, const float *restrict b, int O)
{
#pragma omp simd
    for (int j = 0; j < O; j++) {
        float x = p[j] + b[j];
        p[j] = x;
        o[j] = 0.5f * x * ops_one_plus_erf(x * SQRT1_2);
    }
}

int tb_gelu_forward(float *out, const float *in, size_t n)
{
    int rc = ew_check("tb_gelu_forward", out, in, in);
    if (rc != TB_OK) return rc;
    const size_t nchunks = (n + OPS_CHUNK - 1) / OPS_CHUNK;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * OPS_CHUNK, m = n - i0 < OPS_CHUNK ? n - i0 : OPS_CHUNK;
        gelu_fwd_kernel(out + i0, in + i0, m);
    }
    return TB_OK;
}

int tb_gelu_backward(float *din, const float *in, const float *dout, size_t n)
{
    int rc = ew_check("tb_gelu_backward", din, in, dout);
    if (rc != TB_OK) return rc;
    const size_t nchunks = (n + OPS_CHUNK - 1) / OPS_CHUNK;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * OPS_CHUNK, m = n - i0 < OPS_CHUNK ? n - i0 : OPS_CHUNK;
        gelu_bwd_kernel(din + i0, in + i0, dout + i0, m);
    }
    return TB_OK;
}

int tb_bias_gelu_forward(float *out, float *pre, const float *b, int N, int O)
{
    int rc = ew_check("tb_bias_gelu_forward", out, pre, b);
    if (rc != TB_OK) return rc;
    if (N <= 0 || O <= 0)
        return TB_ERR(TB_EINVAL, "tb_bias_gelu_forward: N and O must be > 0, got N=%d O=%d", N, O);
#pragma omp parallel for schedule(dynamic, 8)
    for (int r = 0; r < N; r++) bias_gelu_kernel(out + (size_t)r * O, pre + (size_t)r * O, b, O);
    return TB_OK;
}

int tb_tanh_forward(float *out, const float *in, size_t n)
{
    int rc = ew_check("tb_tanh_forward", out, in, in);
    if (rc != TB_OK) return rc;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = tanhf(in[i]);
    return TB_OK;
}

int tb_tanh_backward(float *din, const float *out, const float *dout, size_t n)
{
    int rc = ew_check("tb_tanh_backward", din, out, dout);
    if (rc != TB_OK) return rc;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) din[i] += dout[i] * (1.0f - out[i] * out[i]);
    return TB_OK;
}

int tb_relu_forward(float *out, const float *in, size_t n)
{
    int rc = ew_check("tb_relu_forward", out, in, in);
    if (rc != TB_OK) return rc;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = x > 0.0f || x != x ? x : 0.0f; /* NaN stays NaN, as torch.relu keeps it */
    }
    return TB_OK;
}

int tb_relu_backward(float *din, const float *out, const float *dout, size_t n)
{
    int rc = ew_check("tb_relu_backward", din, out, dout);
    if (rc != TB_OK) return rc;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = dout[i];
        din[i] += out[i] > 0.0f ? g : 0.0f;
    }
    return TB_OK;
}

int tb_add_forward(float *out, const float *a, const float *b, size_t n)
{
    int rc = ew_check("tb_add_forward", out, a, b);
    if (rc != TB_OK) return rc;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return TB_OK;
}

int tb_accumulate(float *dst, const float *src, size_t n)
{
    int rc = ew_check("tb_accumulate", dst, src, src);
    if (rc != TB_OK) return rc;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
    return TB_OK;
}
