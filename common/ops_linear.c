/* Linear layer on BLIS sgemm: out[N,O] = in[N,I] . W[O,I]^T + b. */
#include "tb/ops.h"

#include "tb/error.h"

#include <blis.h>
#include <omp.h>

#include "ops_math.h"

static int linear_dims(const char *fn, int N, int I, int O)
{
    if (N <= 0 || I <= 0 || O <= 0)
        return TB_ERR(TB_EINVAL, "%s: N, I, O must be > 0, got N=%d I=%d O=%d", fn, N, I, O);
    return TB_OK;
}

int tb_linear_forward(float *out, const float *in, const float *w, const float *b,
                      int N, int I, int O)
{
    int rc = linear_dims("tb_linear_forward", N, I, O);
    if (rc != TB_OK) return rc;
    if (!out || !in || !w) return TB_ERR(TB_EINVAL, "tb_linear_forward: NULL out, in or w");
    float one = 1.0f, zero = 0.0f;
    /* out[N,O] = in[N,I] (rs I, cs 1) x W^T[I,O] (W[o,i] at o*I + i: rs 1, cs I) */
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, N, O, I, &one, (float *)in, I, 1,
              (float *)w, 1, I, &zero, out, O, 1);
    if (b) {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < N; r++) {
            float *restrict o = out + (size_t)r * O;
#pragma omp simd
            for (int j = 0; j < O; j++) o[j] += b[j];
        }
    }
    return TB_OK;
}

int tb_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                       const float *w, int N, int I, int O)
{
    int rc = linear_dims("tb_linear_backward", N, I, O);
    if (rc != TB_OK) return rc;
    if (!dout) return TB_ERR(TB_EINVAL, "tb_linear_backward: NULL dout");
    if (din && !w) return TB_ERR(TB_EINVAL, "tb_linear_backward: din requested but w is NULL");
    if (dw && !in) return TB_ERR(TB_EINVAL, "tb_linear_backward: dw requested but in is NULL");
    float one = 1.0f;
    if (din) /* din[N,I] += dout[N,O] (rs O) x W[O,I] (rs I) */
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, N, I, O, &one, (float *)dout, O, 1,
                  (float *)w, I, 1, &one, din, I, 1);
    if (dw) /* dW[O,I] += dout^T[O,N] (dout[n,o] at n*O + o: rs 1, cs O) x in[N,I] */
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, O, I, N, &one, (float *)dout, 1, O,
                  (float *)in, I, 1, &one, dw, I, 1);
    if (db) {
        /* Column sums; each thread owns a block of columns, rows in order: deterministic. */
#pragma omp parallel
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            int j0 = (int)((long long)O * t / nt), j1 = (int)((long long)O * (t + 1) / nt);
            for (int r = 0; r < N; r++) {
                const float *restrict g = dout + (size_t)r * O;
#pragma omp simd
                for (int j = j0; j < j1; j++) db[j] += g[j];
            }
        }
    }
    return TB_OK;
}
