/* Unit tests: tb_gemm_small against a double-precision triple loop, on every vector path
 * (TB_GEMM_ISA caps the path; it is read once per process and Criterion runs each test in its
 * own), over shapes that hit every tile remainder, strided and transposed A, padded B and C,
 * overwrite and accumulate. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tb/model/ops.h"
#include "tb/base/rng.h"

static float *filled(size_t n, uint32_t stream)
{
    float *x = malloc(n * sizeof(float));
    cr_assert_not_null(x);
    tb_rng_uniform(tb_rng_key_make(11, TB_RNG_INIT), 5, stream, 0, x, n);
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * x[i] - 1.0f;
    return x;
}

/* One product checked against the float64 sum: |c - ref| <= 2 k eps sum_p |alpha a b| (the
 * standard bound for a k-term float sum, doubled for the scaling by alpha and the final add)
 * + eps |c_old| for the accumulated C. Cells of C outside [m, n) must be untouched, and with
 * accumulate = 0 the old C (NaN here) must never be read. */
static void check_case(int m, int n, int k, int trans_a, int accumulate, float alpha)
{
    const int pad_a = 3, pad_b = 5, pad_c = 7;
    const int lda = trans_a ? m + pad_a : k + pad_a; /* row length of A's storage */
    const ptrdiff_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    const int ldb = n + pad_b, ldc = n + pad_c;
    const size_t na = (size_t)(trans_a ? k : m) * lda, nb = (size_t)k * ldb, nc = (size_t)m * ldc;
    float *a = filled(na + 1, 1), *b = filled(nb + 1, 2), *c0 = filled(nc + 1, 3);
    float *c = malloc((nc + 1) * sizeof(float));
    cr_assert_not_null(c);
    for (size_t i = 0; i < nc; i++) {
        const int in = (int)(i % (size_t)ldc) < n;
        if (!accumulate && in) c0[i] = NAN;
        c[i] = c0[i];
    }
    tb_gemm_small(m, n, k, alpha, a, rsa, csa, b, ldb, accumulate, c, ldc);
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < ldc; j++) {
            const size_t ic = (size_t)i * ldc + j;
            if (j >= n) {
                cr_assert(memcmp(&c[ic], &c0[ic], sizeof(float)) == 0,
                          "m%d n%d k%d: C(%d,%d) outside the product was written", m, n, k, i, j);
                continue;
            }
            double ref = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                const double t = (double)a[i * rsa + p * csa] * (double)b[(size_t)p * ldb + j];
                ref += t;
                mag += fabs(t);
            }
            ref *= alpha;
            mag *= fabs(alpha);
            if (accumulate) ref += c0[ic];
            const double tol = 2.0 * k * FLT_EPSILON * mag + (accumulate ? FLT_EPSILON * fabs(c0[ic]) : 0) + 1e-30;
            cr_assert(fabs(c[ic] - ref) <= tol, "m%d n%d k%d transA%d acc%d: C(%d,%d) = %.9g, float64 %.9g (tol %.3g)",
                      m, n, k, trans_a, accumulate, i, j, (double)c[ic], ref, tol);
        }
    }
    free(a);
    free(b);
    free(c0);
    free(c);
}

static void check_all_shapes(void)
{
    /* m: every remainder of the 6-row tiles; n: every vector count and tail of the 64- and
     * 16-column tiles; k: 1, odd, the head sizes of BERT-base / TinyBERT4 / the demo, 64 */
    const int ms[] = {1, 2, 3, 4, 5, 6, 7, 11, 13, 64};
    const int ns[] = {1, 5, 8, 9, 15, 16, 17, 26, 31, 32, 33, 47, 48, 49, 63, 64, 65, 100, 128, 130};
    const int ks[] = {1, 3, 26, 32, 64};
    for (size_t im = 0; im < sizeof ms / sizeof ms[0]; im++)
        for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++)
            for (size_t ik = 0; ik < sizeof ks / sizeof ks[0]; ik++) {
                const int m = ms[im], n = ns[in], k = ks[ik], v = (int)(im + in + ik);
                check_case(m, n, k, v % 2, (v / 2) % 2, v % 3 == 0 ? 1.0f : 0.1767767f);
            }
    check_case(128, 128, 26, 0, 0, 0.19611613f); /* TinyBERT4 Q K^T */
    check_case(128, 26, 128, 1, 1, 1.0f);        /* its dK = dS^T Q */
}

Test(gemm_small, matches_float64_best_isa) { check_all_shapes(); }

Test(gemm_small, matches_float64_avx2)
{
    setenv("TB_GEMM_ISA", "avx2", 1);
    check_all_shapes();
}

Test(gemm_small, matches_float64_scalar)
{
    setenv("TB_GEMM_ISA", "scalar", 1);
    check_all_shapes();
}

/* A row (or a column block) computed in a smaller call equals the same cells of the full product
 * bit for bit: each cell is one sum in p order, whatever tile it falls in. */
Test(gemm_small, cells_do_not_depend_on_the_tiling)
{
    enum { M = 23, N = 77, K = 29 };
    float *a = filled((size_t)M * K, 4), *b = filled((size_t)K * N, 5);
    float *full = calloc((size_t)M * N, sizeof(float)), *part = calloc((size_t)N, sizeof(float));
    cr_assert(full && part);
    tb_gemm_small(M, N, K, 0.5f, a, K, 1, b, N, 0, full, N);
    for (int i = 0; i < M; i++) {
        for (int j0 = 0; j0 < N; j0 += 19) {
            const int nn = N - j0 < 19 ? N - j0 : 19;
            tb_gemm_small(1, nn, K, 0.5f, a + (size_t)i * K, K, 1, b + j0, N, 0, part, nn);
            cr_assert(memcmp(part, full + (size_t)i * N + j0, (size_t)nn * sizeof(float)) == 0,
                      "row %d columns %d..%d differ from the full product", i, j0, j0 + nn - 1);
        }
    }
    free(a);
    free(b);
    free(full);
    free(part);
}

Test(gemm_small, empty_sum_and_empty_output)
{
    float c[6] = {1, 2, 3, 4, 5, 6}, x = 1.0f;
    tb_gemm_small(2, 2, 0, 1.0f, &x, 1, 1, &x, 1, 1, c, 3); /* accumulate an empty sum: unchanged */
    cr_assert(c[0] == 1 && c[1] == 2 && c[3] == 4 && c[4] == 5);
    tb_gemm_small(2, 2, 0, 1.0f, &x, 1, 1, &x, 1, 0, c, 3); /* overwrite with an empty sum: zeros */
    cr_assert(c[0] == 0 && c[1] == 0 && c[2] == 3 && c[3] == 0 && c[4] == 0 && c[5] == 6);
    tb_gemm_small(0, 2, 3, 1.0f, &x, 1, 1, &x, 1, 0, c, 3); /* no rows: nothing written */
    cr_assert(c[2] == 3 && c[5] == 6);
}
