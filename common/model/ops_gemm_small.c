/* Small single-threaded GEMM for the per-head products of attention (T x T x HS and
 * T x HS x T with T, HS of a few dozen to a few hundred).
 *
 * BLIS packs both operands into micro-panels on every call, and at these sizes packing and edge
 * tiles cost as much as the arithmetic (64 x 64 x 32 runs at about a quarter of peak). Here B is
 * read in place, row by row (it must have unit column stride: callers transpose K and V into a
 * small buffer for the Q K^T-shaped products), and A is broadcast one element at a time, so any
 * strides of A work, A^T included. A register tile of MR rows x NV vectors accumulates over the
 * whole k range, then is scaled by alpha and stored (or added to C) once.
 *
 * Every element of C is one sum over p = 0..k-1 in increasing order (one fused multiply-add per
 * term in the vector paths), so results do not depend on m, n, the tile in which an element
 * falls or the thread that runs the call. The vector width is chosen at run time: AVX-512F,
 * AVX2 + FMA or plain C, capped by the environment variable TB_GEMM_ISA (= scalar | avx2) so
 * that tests can run every path on one machine. */
#include "tb/model/ops.h"

#include "tb/base/isa.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define GS_VECTOR 1
#include <immintrin.h>
#endif

/* The plain-C path, in the same summation order (each term rounded then added unless the
 * compiler contracts it to an fma, which only changes the last bit). */
static void gemm_scalar(int m, int n, int k, float alpha, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                        const float *b, ptrdiff_t ldb, int accumulate, float *c, ptrdiff_t ldc)
{
    for (int i = 0; i < m; i++) {
        float *ci = c + (ptrdiff_t)i * ldc;
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int p = 0; p < k; p++) s += a[(ptrdiff_t)i * rsa + (ptrdiff_t)p * csa] * b[(ptrdiff_t)p * ldb + j];
            ci[j] = accumulate ? alpha * s + ci[j] : alpha * s;
        }
    }
}

#ifdef GS_VECTOR

/* ---- AVX-512F: tiles of up to 6 rows x 4 vectors (64 columns) ------------------------------ */
#define MR512 6

/* One tile: rows [0, mr) x vectors [0, nv) of C, the last vector masked by `tail`. mr and nv are
 * constants at every call site, so the loops unroll and the accumulators stay in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile512(const int mr, const int nv, __mmask16 tail, int k, float alpha, const float *a, ptrdiff_t rsa,
        ptrdiff_t csa, const float *b, ptrdiff_t ldb, int accumulate, float *c, ptrdiff_t ldc)
{
    __m512 acc[MR512][4];
#pragma GCC unroll 6
    for (int r = 0; r < MR512; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        const float *bp = b + (ptrdiff_t)p * ldb, *ap = a + (ptrdiff_t)p * csa;
        __m512 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            if (v < nv) bv[v] = v == nv - 1 ? _mm512_maskz_loadu_ps(tail, bp + 16 * v) : _mm512_loadu_ps(bp + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < MR512; r++) {
            if (r >= mr) continue;
            const __m512 av = _mm512_set1_ps(ap[(ptrdiff_t)r * rsa]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                if (v < nv) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    const __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 6
    for (int r = 0; r < MR512; r++) {
        if (r >= mr) continue;
        float *cr = c + (ptrdiff_t)r * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            if (v >= nv) continue;
            const __mmask16 mk = v == nv - 1 ? tail : (__mmask16)0xffff;
            __m512 x = accumulate ? _mm512_fmadd_ps(acc[r][v], al, _mm512_maskz_loadu_ps(mk, cr + 16 * v))
                                  : _mm512_mul_ps(acc[r][v], al);
            _mm512_mask_storeu_ps(cr + 16 * v, mk, x);
        }
    }
}

#define GS_CASE512(MR, NV) \
    case (MR) * 8 + (NV): tile512(MR, NV, tail, k, alpha, ai, rsa, csa, bj, ldb, accumulate, cij, ldc); break;

__attribute__((target("avx512f"))) static void
gemm_avx512(int m, int n, int k, float alpha, const float *a, ptrdiff_t rsa, ptrdiff_t csa, const float *b,
            ptrdiff_t ldb, int accumulate, float *c, ptrdiff_t ldc)
{
    for (int j0 = 0; j0 < n; j0 += 64) {
        const int nn = n - j0 < 64 ? n - j0 : 64, nv = (nn + 15) / 16;
        const __mmask16 tail = (__mmask16)((1u << (nn - 16 * (nv - 1))) - 1u);
        const float *bj = b + j0;
        for (int i0 = 0; i0 < m; i0 += MR512) {
            const int mr = m - i0 < MR512 ? m - i0 : MR512;
            const float *ai = a + (ptrdiff_t)i0 * rsa;
            float *cij = c + (ptrdiff_t)i0 * ldc + j0;
            switch (mr * 8 + nv) {
                GS_CASE512(1, 1) GS_CASE512(1, 2) GS_CASE512(1, 3) GS_CASE512(1, 4)
                GS_CASE512(2, 1) GS_CASE512(2, 2) GS_CASE512(2, 3) GS_CASE512(2, 4)
                GS_CASE512(3, 1) GS_CASE512(3, 2) GS_CASE512(3, 3) GS_CASE512(3, 4)
                GS_CASE512(4, 1) GS_CASE512(4, 2) GS_CASE512(4, 3) GS_CASE512(4, 4)
                GS_CASE512(5, 1) GS_CASE512(5, 2) GS_CASE512(5, 3) GS_CASE512(5, 4)
                GS_CASE512(6, 1) GS_CASE512(6, 2) GS_CASE512(6, 3) GS_CASE512(6, 4)
            default: break;
            }
        }
    }
}

/* ---- AVX2 + FMA: tiles of up to 6 rows x 2 vectors (16 columns) ----------------------------- */
#define MR256 6

/* Lane mask with the first `n` (1..8) lanes on, for maskload/maskstore. */
__attribute__((target("avx2"))) static inline __m256i lanes256(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

__attribute__((target("avx2,fma"), always_inline)) static inline void
tile256(const int mr, const int nv, __m256i tail, int k, float alpha, const float *a, ptrdiff_t rsa,
        ptrdiff_t csa, const float *b, ptrdiff_t ldb, int accumulate, float *c, ptrdiff_t ldc)
{
    __m256 acc[MR256][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR256; r++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++) acc[r][v] = _mm256_setzero_ps();
    for (int p = 0; p < k; p++) {
        const float *bp = b + (ptrdiff_t)p * ldb, *ap = a + (ptrdiff_t)p * csa;
        __m256 bv[2];
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++)
            if (v < nv) bv[v] = v == nv - 1 ? _mm256_maskload_ps(bp + 8 * v, tail) : _mm256_loadu_ps(bp + 8 * v);
#pragma GCC unroll 6
        for (int r = 0; r < MR256; r++) {
            if (r >= mr) continue;
            const __m256 av = _mm256_broadcast_ss(ap + (ptrdiff_t)r * rsa);
#pragma GCC unroll 2
            for (int v = 0; v < 2; v++)
                if (v < nv) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    const __m256 al = _mm256_set1_ps(alpha);
    const __m256i all = _mm256_set1_epi32(-1);
#pragma GCC unroll 6
    for (int r = 0; r < MR256; r++) {
        if (r >= mr) continue;
        float *cr = c + (ptrdiff_t)r * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++) {
            if (v >= nv) continue;
            const __m256i mk = v == nv - 1 ? tail : all;
            __m256 x = accumulate ? _mm256_fmadd_ps(acc[r][v], al, _mm256_maskload_ps(cr + 8 * v, mk))
                                  : _mm256_mul_ps(acc[r][v], al);
            _mm256_maskstore_ps(cr + 8 * v, mk, x);
        }
    }
}

#define GS_CASE256(MR, NV) \
    case (MR) * 4 + (NV): tile256(MR, NV, tail, k, alpha, ai, rsa, csa, bj, ldb, accumulate, cij, ldc); break;

__attribute__((target("avx2,fma"))) static void
gemm_avx2(int m, int n, int k, float alpha, const float *a, ptrdiff_t rsa, ptrdiff_t csa, const float *b,
          ptrdiff_t ldb, int accumulate, float *c, ptrdiff_t ldc)
{
    for (int j0 = 0; j0 < n; j0 += 16) {
        const int nn = n - j0 < 16 ? n - j0 : 16, nv = (nn + 7) / 8;
        const __m256i tail = lanes256(nn - 8 * (nv - 1));
        const float *bj = b + j0;
        for (int i0 = 0; i0 < m; i0 += MR256) {
            const int mr = m - i0 < MR256 ? m - i0 : MR256;
            const float *ai = a + (ptrdiff_t)i0 * rsa;
            float *cij = c + (ptrdiff_t)i0 * ldc + j0;
            switch (mr * 4 + nv) {
                GS_CASE256(1, 1) GS_CASE256(1, 2) GS_CASE256(2, 1) GS_CASE256(2, 2)
                GS_CASE256(3, 1) GS_CASE256(3, 2) GS_CASE256(4, 1) GS_CASE256(4, 2)
                GS_CASE256(5, 1) GS_CASE256(5, 2) GS_CASE256(6, 1) GS_CASE256(6, 2)
            default: break;
            }
        }
    }
}

/* 2 = AVX-512F, 1 = AVX2 + FMA, 0 = plain C, capped by TB_GEMM_ISA. Decided once; a race only
 * recomputes the same value. */
static int vector_level(void)
{
    static int level = -1;
    if (level < 0) level = tb_isa_level("TB_GEMM_ISA", 1);
    return level;
}
#endif

void tb_gemm_small(int m, int n, int k, float alpha, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                   const float *b, ptrdiff_t ldb, int accumulate, float *c, ptrdiff_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* an empty sum: C = 0 (or unchanged) */
        if (!accumulate)
            for (int i = 0; i < m; i++) memset(c + (ptrdiff_t)i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
#ifdef GS_VECTOR
    switch (vector_level()) {
    case 2: gemm_avx512(m, n, k, alpha, a, rsa, csa, b, ldb, accumulate, c, ldc); return;
    case 1: gemm_avx2(m, n, k, alpha, a, rsa, csa, b, ldb, accumulate, c, ldc); return;
    default: break;
    }
#endif
    gemm_scalar(m, n, k, alpha, a, rsa, csa, b, ldb, accumulate, c, ldc);
}
