/* Linear layer on BLIS sgemm: out[N,O] = in[N,I] . W[O,I]^T + b.
 *
 * Each GEMM is cut into fixed blocks of output rows (the split depends on the shape only, never
 * on the thread count) and every block is one single-threaded BLIS call; OpenMP threads take
 * blocks dynamically. Every output element is then computed by one call in BLIS's fixed k order,
 * so results are bit-identical for any thread count. Dynamic blocks also keep the GEMMs fast when
 * the cores are shared with other processes (pipeline stages run side by side): a thread that is
 * descheduled simply takes fewer blocks, where threads inside one BLIS call would spin at its
 * barriers waiting for it. */
#include "tb/model/ops.h"

#include "tb/base/error.h"

#include <blis.h>
#include <omp.h>

#include "ops_math.h"

/* Rows of out (forward) and din (backward) per block: ~8 blocks of 32-row multiples, but at
 * least 512 rows (smaller BLIS calls lose speed: packing and edge tiles). */
static int row_block(int N)
{
    int r = (N + 7) / 8;
    r = (r + 31) / 32 * 32;
    return r < 512 ? 512 : r;
}

/* Rows of dW per block: 2 blocks of 16-row multiples (each block packs the whole input once), at
 * least 128 rows; the backward shares them dynamically with the din blocks. */
static int dw_block(int O)
{
    int r = (O + 1) / 2;
    r = (r + 15) / 16 * 16;
    return r < 128 ? 128 : r;
}

static void gemm1_init(rntm_t *rntm)
{
    bli_rntm_init(rntm);
    bli_rntm_set_num_threads(1, rntm);
}

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
    const int rb = row_block(N), nblk = (N + rb - 1) / rb;
#pragma omp parallel if (nblk > 1)
    {
        rntm_t rntm;
        gemm1_init(&rntm);
        float one = 1.0f, zero = 0.0f;
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < nblk; k++) {
            const int r0 = k * rb, m = N - r0 < rb ? N - r0 : rb;
            float *o = out + (size_t)r0 * O;
            /* out[m,O] = in[m,I] (rs I, cs 1) x W^T[I,O] (W[o,i] at o*I + i: rs 1, cs I) */
            bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, O, I, &one, (float *)in + (size_t)r0 * I, I, 1,
                         (float *)w, 1, I, &zero, o, O, 1, NULL, &rntm);
            if (b) /* the block is still in cache */
                for (int r = 0; r < m; r++) {
                    float *restrict orow = o + (size_t)r * O;
#pragma omp simd
                    for (int j = 0; j < O; j++) orow[j] += b[j];
                }
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
    const int rb = row_block(N), nin = din ? (N + rb - 1) / rb : 0;
    const int wb = dw_block(O), nw = dw ? (O + wb - 1) / wb : 0;
    if (nin + nw > 0) {
#pragma omp parallel if (nin + nw > 1)
        {
            rntm_t rntm;
            gemm1_init(&rntm);
            float one = 1.0f;
            /* one loop over the blocks of both products, so neither waits for the other */
#pragma omp for schedule(dynamic, 1)
            for (int k = 0; k < nin + nw; k++) {
                if (k < nw) { /* dW[o0:o0+m, I] += dout^T[m,N] (dout[n,o] at n*O + o: rs 1, cs O) x in[N,I] */
                    const int o0 = k * wb, m = O - o0 < wb ? O - o0 : wb;
                    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, I, N, &one, (float *)dout + o0, 1, O,
                                 (float *)in, I, 1, &one, dw + (size_t)o0 * I, I, 1, NULL, &rntm);
                } else { /* din[r0:r0+m, I] += dout[m,O] (rs O) x W[O,I] (rs I) */
                    const int r0 = (k - nw) * rb, m = N - r0 < rb ? N - r0 : rb;
                    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, I, O, &one, (float *)dout + (size_t)r0 * O, O, 1,
                                 (float *)w, I, 1, &one, din + (size_t)r0 * I, I, 1, NULL, &rntm);
                }
            }
        }
    }
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
