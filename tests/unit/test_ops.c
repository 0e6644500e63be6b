/* Unit tests of tb/model/ops.h: hand-computed values and central finite-difference gradient checks.
 *
 * Step and tolerance (fp32 operations): inputs are O(1) (uniform in [-1, 1]), the objective is a
 * random projection L = sum r_i out_i computed in double. With h = 1e-2 the truncation error of
 * the central difference is h^2 |f'''| / 6 ~ 2e-5 relative; the rounding error of L, from fp32
 * outputs with unit roundoff 6e-8, is ~6e-8 sqrt(n_out) / (2h) ~ 1e-4 absolute per element for
 * the few hundred outputs used here, against gradients of size ~1. So a correct backward lands
 * around 1e-6 .. 1e-4 relative error per tensor (measured: <= 3e-5); FD_TOL = 1e-3 leaves margin, while any wrong
 * term (a missing factor, transpose, sign) gives errors of order 1e-1 .. 1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fdcheck.h"
#include "tb/base/error.h"
#include "tb/model/ops.h"

#define FD_H 1e-2f
#define FD_TOL 1e-3
#define FD_MAX 400

static float *fa(size_t n) /* zeroed test buffer */
{
    float *p = calloc(n ? n : 1, sizeof(float));
    cr_assert_not_null(p);
    return p;
}

static void expect_fd(const char *what, tb_fd_objective f, void *ctx, float *x, const float *g, size_t n)
{
    tb_fd_result r = tb_fdcheck(f, ctx, x, g, n, FD_H, FD_MAX);
    cr_log_info("fd %-28s rel %.3e max_abs %.3e (|g| %.3e, %zu elements)", what, r.rel_err, r.max_abs,
                r.norm_ref, r.checked);
    cr_assert_gt(r.norm_ref, 1e-6, "%s: finite-difference gradient is ~0, the check is vacuous", what);
    cr_assert_lt(r.rel_err, FD_TOL, "%s: relative gradient error %.3e >= %.1e", what, r.rel_err, FD_TOL);
}

/* ---- linear ------------------------------------------------------------------------------ */
typedef struct { int N, I, O; float *in, *w, *b, *out, *r; } lin_ctx;

static double lin_obj(void *p)
{
    lin_ctx *c = p;
    cr_assert_eq(tb_linear_forward(c->out, c->in, c->w, c->b, c->N, c->I, c->O), TB_OK, "%s", tb_err_msg());
    return tb_fd_dot(c->r, c->out, (size_t)c->N * c->O);
}

Test(ops, linear_hand_values)
{
    /* in = [[1, 2], [3, 4]], W = [[1, 0], [1, -1], [0.5, 2]], b = [10, 20, 30] */
    float in[] = {1, 2, 3, 4}, w[] = {1, 0, 1, -1, 0.5f, 2}, b[] = {10, 20, 30}, out[6];
    cr_assert_eq(tb_linear_forward(out, in, w, b, 2, 2, 3), TB_OK);
    float want[] = {11, 19, 34.5f, 13, 19, 39.5f};
    for (int i = 0; i < 6; i++) cr_assert_float_eq(out[i], want[i], 1e-6, "out[%d] = %g", i, out[i]);
    /* dout = ones: din = column sums of W = [2.5, 1]; dW = column sums of in = [4, 6]; db = 2 */
    float dout[6] = {1, 1, 1, 1, 1, 1}, din[4] = {0}, dw[6] = {0}, db[3] = {0};
    cr_assert_eq(tb_linear_backward(din, dw, db, dout, in, w, 2, 2, 3), TB_OK);
    for (int i = 0; i < 4; i++) cr_assert_float_eq(din[i], i % 2 ? 1.0f : 2.5f, 1e-6);
    for (int i = 0; i < 6; i++) cr_assert_float_eq(dw[i], i % 2 ? 6.0f : 4.0f, 1e-6);
    for (int i = 0; i < 3; i++) cr_assert_float_eq(db[i], 2.0f, 1e-6);
}

static void linear_fd(int N, int I, int O, int with_bias)
{
    lin_ctx c = {N, I, O, fa((size_t)N * I), fa((size_t)O * I), with_bias ? fa(O) : NULL,
                 fa((size_t)N * O), fa((size_t)N * O)};
    tb_fd_fill(c.in, (size_t)N * I, 1, -1, 1);
    tb_fd_fill(c.w, (size_t)O * I, 2, -1, 1);
    if (c.b) tb_fd_fill(c.b, O, 3, -1, 1);
    tb_fd_fill(c.r, (size_t)N * O, 4, -1, 1);
    float *din = fa((size_t)N * I), *dw = fa((size_t)O * I), *db = fa(O);
    lin_obj(&c);
    cr_assert_eq(tb_linear_backward(din, dw, c.b ? db : NULL, c.r, c.in, c.w, N, I, O), TB_OK);
    expect_fd("linear din", lin_obj, &c, c.in, din, (size_t)N * I);
    expect_fd("linear dW", lin_obj, &c, c.w, dw, (size_t)O * I);
    if (c.b) expect_fd("linear db", lin_obj, &c, c.b, db, O);
    free(c.in); free(c.w); free(c.b); free(c.out); free(c.r); free(din); free(dw); free(db);
}

Test(ops, linear_fd) { linear_fd(5, 7, 3, 1); linear_fd(13, 4, 9, 0); linear_fd(1, 1, 1, 1); }

/* ---- layernorm --------------------------------------------------------------------------- */
typedef struct { int N, C; float *in, *w, *b, *out, *mean, *rstd, *r; } ln_ctx;

static double ln_obj(void *p)
{
    ln_ctx *c = p;
    cr_assert_eq(tb_layernorm_forward(c->out, c->mean, c->rstd, c->in, c->w, c->b, c->N, c->C, 1e-12f), TB_OK);
    return tb_fd_dot(c->r, c->out, (size_t)c->N * c->C);
}

Test(ops, layernorm_hand_values)
{
    /* x = [1, 2, 3]: mean 2, var 2/3, rstd sqrt(3/2); w = [1, 2, 1], b = [0, 0, 1] */
    float in[] = {1, 2, 3}, w[] = {1, 2, 1}, b[] = {0, 0, 1}, out[3], mean, rstd;
    cr_assert_eq(tb_layernorm_forward(out, &mean, &rstd, in, w, b, 1, 3, 1e-12f), TB_OK);
    const double s = sqrt(1.5);
    cr_assert_float_eq(mean, 2.0f, 1e-6);
    cr_assert_float_eq(rstd, (float)s, 1e-6);
    cr_assert_float_eq(out[0], (float)-s, 1e-6);
    cr_assert_float_eq(out[1], 0.0f, 1e-6);
    cr_assert_float_eq(out[2], (float)(s + 1), 1e-6);
}

Test(ops, layernorm_fd)
{
    const int N = 6, C = 11;
    ln_ctx c = {N, C, fa(N * C), fa(C), fa(C), fa(N * C), fa(N), fa(N), fa(N * C)};
    tb_fd_fill(c.in, N * C, 10, -1, 1);
    tb_fd_fill(c.w, C, 11, 0.5f, 1.5f);
    tb_fd_fill(c.b, C, 12, -1, 1);
    tb_fd_fill(c.r, N * C, 13, -1, 1);
    float *din = fa(N * C), *dw = fa(C), *db = fa(C);
    ln_obj(&c);
    cr_assert_eq(tb_layernorm_backward(din, dw, db, c.r, c.in, c.w, c.mean, c.rstd, N, C), TB_OK);
    expect_fd("layernorm din", ln_obj, &c, c.in, din, N * C);
    expect_fd("layernorm dw", ln_obj, &c, c.w, dw, C);
    expect_fd("layernorm db", ln_obj, &c, c.b, db, C);
    free(c.in); free(c.w); free(c.b); free(c.out); free(c.mean); free(c.rstd); free(c.r);
    free(din); free(dw); free(db);
}

/* ---- elementwise ------------------------------------------------------------------------- */
typedef int (*ew_fwd)(float *, const float *, size_t);
typedef struct { size_t n; ew_fwd f; float *in, *out, *r; } ew_ctx;

static double ew_obj(void *p)
{
    ew_ctx *c = p;
    cr_assert_eq(c->f(c->out, c->in, c->n), TB_OK);
    return tb_fd_dot(c->r, c->out, c->n);
}

Test(ops, gelu_tanh_relu_hand_values)
{
    /* gelu(x) = x Phi(x): Phi(1) = 0.841344746068543, Phi(-0.5) = 0.308537538725987 */
    float in[] = {1.0f, -0.5f, 0.0f, 3.0f}, out[4];
    cr_assert_eq(tb_gelu_forward(out, in, 4), TB_OK);
    cr_assert_float_eq(out[0], 0.841344746f, 1e-6);
    cr_assert_float_eq(out[1], -0.154268769f, 1e-6);
    cr_assert_float_eq(out[2], 0.0f, 1e-7);
    cr_assert_float_eq(out[3], 2.995950f, 1e-5); /* 3 Phi(3) = 3 * 0.998650102 */
    /* gelu'(1) = Phi(1) + phi(1) = 0.841344746 + 0.241970725 */
    float g[1] = {0}, one = 1.0f;
    cr_assert_eq(tb_gelu_backward(g, in, &one, 1), TB_OK);
    cr_assert_float_eq(g[0], 1.083315471f, 1e-6);
    cr_assert_eq(tb_tanh_forward(out, in, 4), TB_OK);
    cr_assert_float_eq(out[0], 0.761594156f, 1e-6);
    cr_assert_eq(tb_relu_forward(out, in, 4), TB_OK);
    cr_assert(out[0] == 1.0f && out[1] == 0.0f && out[2] == 0.0f && out[3] == 3.0f);
}

/* Dense check of the vectorised erf / exp inside GELU against double-precision libm:
 * |gelu - ref| <= 2.5e-7 (|x| + |ref|) and the same for gelu', i.e. about 2 ulp of the
 * operands, over [-12, 12] in steps of 1e-4 (the left tail is computed without cancellation). */
Test(ops, gelu_matches_libm_on_a_dense_grid)
{
    const size_t n = 240001;
    float *x = fa(n), *y = fa(n), *g = fa(n), *one = fa(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)(-12.0 + 1e-4 * (double)i);
        one[i] = 1.0f;
    }
    cr_assert_eq(tb_gelu_forward(y, x, n), TB_OK);
    cr_assert_eq(tb_gelu_backward(g, x, one, n), TB_OK);
    double worst = 0, worst_d = 0;
    for (size_t i = 0; i < n; i++) {
        double xd = x[i], cdf = 0.5 * (1.0 + erf(xd / sqrt(2.0))), pdf = exp(-0.5 * xd * xd) / sqrt(2.0 * M_PI);
        double ref = xd * cdf, dref = cdf + xd * pdf;
        double e = fabs(y[i] - ref) / (fabs(xd) + fabs(ref) + 1e-30);
        double ed = fabs(g[i] - dref) / (fabs(xd) + fabs(dref) + 1e-30);
        worst = fmax(worst, e);
        worst_d = fmax(worst_d, ed);
    }
    cr_log_info("gelu dense grid: worst scaled error %.3e (value), %.3e (derivative)", worst, worst_d);
    cr_assert_lt(worst, 2.5e-7);
    cr_assert_lt(worst_d, 2.5e-7);
    free(x); free(y); free(g); free(one);
}

static void ew_fd(const char *name, ew_fwd f, int which)
{
    const size_t n = 97;
    ew_ctx c = {n, f, fa(n), fa(n), fa(n)};
    tb_fd_fill(c.in, n, 20, -3, 3);
    /* keep relu inputs away from the kink at 0 (|x| > 2h), so the difference is one-sided-free */
    for (size_t i = 0; i < n; i++)
        if (fabsf(c.in[i]) < 0.05f) c.in[i] = c.in[i] < 0 ? -0.05f : 0.05f;
    tb_fd_fill(c.r, n, 21, -1, 1);
    float *din = fa(n);
    ew_obj(&c);
    if (which == 0) cr_assert_eq(tb_gelu_backward(din, c.in, c.r, n), TB_OK);
    if (which == 1) cr_assert_eq(tb_tanh_backward(din, c.out, c.r, n), TB_OK);
    if (which == 2) cr_assert_eq(tb_relu_backward(din, c.out, c.r, n), TB_OK);
    expect_fd(name, ew_obj, &c, c.in, din, n);
    free(c.in); free(c.out); free(c.r); free(din);
}

Test(ops, elementwise_fd)
{
    ew_fd("gelu", tb_gelu_forward, 0);
    ew_fd("tanh", tb_tanh_forward, 1);
    ew_fd("relu", tb_relu_forward, 2);
}

Test(ops, bias_gelu_matches_bias_then_gelu)
{
    const int N = 5, O = 9;
    float *pre = fa(N * O), *pre2 = fa(N * O), *b = fa(O), *out = fa(N * O), *ref = fa(N * O);
    tb_fd_fill(pre, N * O, 30, -2, 2);
    tb_fd_fill(b, O, 31, -1, 1);
    for (int i = 0; i < N * O; i++) pre2[i] = pre[i] + b[i % O];
    cr_assert_eq(tb_gelu_forward(ref, pre2, N * O), TB_OK);
    cr_assert_eq(tb_bias_gelu_forward(out, pre, b, N, O), TB_OK);
    for (int i = 0; i < N * O; i++) {
        cr_assert_eq(pre[i], pre2[i], "pre[%d] must hold the GELU input", i);
        cr_assert_eq(out[i], ref[i], "out[%d]", i);
    }
    free(pre); free(pre2); free(b); free(out); free(ref);
}

Test(ops, add_and_accumulate)
{
    float a[] = {1, 2, 3}, b[] = {0.5f, -2, 4}, out[3];
    cr_assert_eq(tb_add_forward(out, a, b, 3), TB_OK);
    cr_assert(out[0] == 1.5f && out[1] == 0.0f && out[2] == 7.0f);
    cr_assert_eq(tb_accumulate(a, b, 3), TB_OK);
    cr_assert(a[0] == 1.5f && a[1] == 0.0f && a[2] == 7.0f);
}

/* Backward functions accumulate: running one twice from zero gives exactly twice the result. */
Test(ops, backward_accumulates)
{
    const int N = 4, I = 5, O = 3;
    float *in = fa(N * I), *w = fa(O * I), *dout = fa(N * O);
    tb_fd_fill(in, N * I, 40, -1, 1);
    tb_fd_fill(w, O * I, 41, -1, 1);
    tb_fd_fill(dout, N * O, 42, -1, 1);
    float *d1 = fa(N * I), *d2 = fa(N * I), *w1 = fa(O * I), *w2 = fa(O * I), *b1 = fa(O), *b2 = fa(O);
    cr_assert_eq(tb_linear_backward(d1, w1, b1, dout, in, w, N, I, O), TB_OK);
    for (int k = 0; k < 2; k++) cr_assert_eq(tb_linear_backward(d2, w2, b2, dout, in, w, N, I, O), TB_OK);
    double e;
    cr_assert_lt(fabs(tb_rel_err(d2, d1, N * I, &e) - 1.0), 1e-6, "din must accumulate");
    cr_assert_lt(fabs(tb_rel_err(w2, w1, O * I, &e) - 1.0), 1e-6, "dW must accumulate");
    cr_assert_lt(fabs(tb_rel_err(b2, b1, O, &e) - 1.0), 1e-6, "db must accumulate");
    /* layernorm, gelu: 2 * g1 exactly */
    float *mean = fa(N), *rstd = fa(N), *lw = fa(I), *lb = fa(I), *lo = fa(N * I), *g = fa(N * I);
    tb_fd_fill(lw, I, 43, 0.5f, 1.5f);
    tb_fd_fill(g, N * I, 44, -1, 1);
    cr_assert_eq(tb_layernorm_forward(lo, mean, rstd, in, lw, lb, N, I, 1e-12f), TB_OK);
    memset(d1, 0, sizeof(float) * N * I);
    memset(d2, 0, sizeof(float) * N * I);
    cr_assert_eq(tb_layernorm_backward(d1, NULL, NULL, g, in, lw, mean, rstd, N, I), TB_OK);
    cr_assert_eq(tb_layernorm_backward(d2, NULL, NULL, g, in, lw, mean, rstd, N, I), TB_OK);
    cr_assert_eq(tb_layernorm_backward(d2, NULL, NULL, g, in, lw, mean, rstd, N, I), TB_OK);
    for (int i = 0; i < N * I; i++) cr_assert_eq(d2[i], 2 * d1[i]);
    free(in); free(w); free(dout); free(d1); free(d2); free(w1); free(w2); free(b1); free(b2);
    free(mean); free(rstd); free(lw); free(lb); free(lo); free(g);
}

/* ---- embeddings -------------------------------------------------------------------------- */
typedef struct { int B, T, C, V, P, NT; int32_t *ids, *types; float *wte, *wpe, *wtt, *out, *r; } emb_ctx;

static double emb_obj(void *p)
{
    emb_ctx *c = p;
    cr_assert_eq(tb_embedding_forward(c->out, c->ids, c->types, c->wte, c->wpe, c->wtt, c->B, c->T, c->C,
                                      c->V, c->P, c->NT), TB_OK, "%s", tb_err_msg());
    return tb_fd_dot(c->r, c->out, (size_t)c->B * c->T * c->C);
}

Test(ops, embedding_values_fd_and_padding_idx)
{
    enum { B = 2, T = 5, C = 4, V = 7, P = 8, NT = 2 };
    int32_t ids[B * T] = {3, 1, 0, 3, 6, 2, 2, 5, 0, 0}, types[B * T] = {0, 0, 1, 1, 1, 0, 1, 1, 0, 0};
    emb_ctx c = {B, T, C, V, P, NT, ids, types, fa(V * C), fa(P * C), fa(NT * C), fa(B * T * C), fa(B * T * C)};
    tb_fd_fill(c.wte, V * C, 50, -1, 1);
    tb_fd_fill(c.wpe, P * C, 51, -1, 1);
    tb_fd_fill(c.wtt, NT * C, 52, -1, 1);
    tb_fd_fill(c.r, B * T * C, 53, -1, 1);
    emb_obj(&c);
    for (int i = 0; i < B * T; i++)
        for (int j = 0; j < C; j++)
            cr_assert_eq(c.out[i * C + j], c.wte[ids[i] * C + j] + c.wpe[(i % T) * C + j] + c.wtt[types[i] * C + j]);
    float *dwte = fa(V * C), *dwpe = fa(P * C), *dwtt = fa(NT * C);
    cr_assert_eq(tb_embedding_backward(dwte, dwpe, dwtt, c.r, ids, types, B, T, C, V, P, NT, 0), TB_OK);
    for (int j = 0; j < C; j++) cr_assert_eq(dwte[j], 0.0f, "the pad row (id 0) gets no lookup gradient");
    /* hand check: token 2 appears at (1,0) and (1,1) */
    for (int j = 0; j < C; j++)
        cr_assert_float_eq(dwte[2 * C + j], c.r[(5) * C + j] + c.r[(6) * C + j], 1e-6);
    /* FD on the non-pad rows: zero the pad row's gradient reference by comparing without padding */
    float *dwte_all = fa(V * C);
    cr_assert_eq(tb_embedding_backward(dwte_all, NULL, NULL, c.r, ids, types, B, T, C, V, P, NT, -1), TB_OK);
    expect_fd("embedding dwte (no padding_idx)", emb_obj, &c, c.wte, dwte_all, V * C);
    expect_fd("embedding dwpe", emb_obj, &c, c.wpe, dwpe, P * C);
    expect_fd("embedding dwtt", emb_obj, &c, c.wtt, dwtt, NT * C);
    for (int i = C; i < V * C; i++) cr_assert_eq(dwte[i], dwte_all[i]);
    /* bad input: id outside the vocabulary, type outside range, T > max positions */
    ids[7] = V;
    cr_assert_eq(tb_embedding_forward(c.out, ids, types, c.wte, c.wpe, c.wtt, B, T, C, V, P, NT), TB_EINVAL);
    cr_assert_neq(strstr(tb_err_msg(), "outside the vocabulary"), NULL, "%s", tb_err_msg());
    ids[7] = -1;
    cr_assert_eq(tb_embedding_backward(dwte, dwpe, dwtt, c.r, ids, types, B, T, C, V, P, NT, 0), TB_EINVAL);
    ids[7] = 5;
    types[3] = 2;
    cr_assert_eq(tb_embedding_forward(c.out, ids, types, c.wte, c.wpe, c.wtt, B, T, C, V, P, NT), TB_EINVAL);
    types[3] = 1;
    cr_assert_eq(tb_embedding_forward(c.out, ids, types, c.wte, c.wpe, c.wtt, B, T, C, V, 4, NT), TB_EINVAL);
    /* types NULL = all type 0 */
    cr_assert_eq(tb_embedding_forward(c.out, ids, NULL, c.wte, c.wpe, c.wtt, B, T, C, V, P, NT), TB_OK);
    cr_assert_eq(c.out[3 * C], c.wte[3 * C] + c.wpe[3 * C] + c.wtt[0]);
    free(c.wte); free(c.wpe); free(c.wtt); free(c.out); free(c.r); free(dwte); free(dwpe); free(dwtt); free(dwte_all);
}

/* ---- dropout ----------------------------------------------------------------------------- */
Test(ops, dropout_mask_statistics_and_backward)
{
    const size_t n = 100003;
    float *in = fa(n), *out = fa(n), *out2 = fa(n), *din = fa(n), *dout = fa(n);
    tb_fd_fill(in, n, 60, 0.5f, 1.5f); /* nonzero, so a dropped element is recognisable */
    tb_fd_fill(dout, n, 61, -1, 1);
    tb_dropout d = {0.1f, tb_rng_key_make(42, TB_RNG_DROPOUT), 7, 3 * 16 + 2};
    cr_assert_eq(tb_dropout_forward(out, in, n, &d), TB_OK);
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i] == 0.0f) dropped++;
        else cr_assert_float_eq(out[i], in[i] / 0.9f, 1e-6, "kept values are scaled by 1/(1-p)");
    }
    /* Binomial(n, 0.1): sd = sqrt(n * 0.09) ~ 95; allow 5 sd */
    cr_assert(fabs((double)dropped - 0.1 * n) < 5 * 95, "dropped %zu of %zu", dropped, n);
    /* the mask follows the documented RNG convention element by element */
    float u[64];
    tb_rng_uniform(d.key, d.batch_seq, d.site, 5000, u, 64);
    for (int i = 0; i < 64; i++) cr_assert_eq(out[5000 + i] == 0.0f, u[i] < 0.1f, "element %d", 5000 + i);
    /* deterministic, in place gives the same, another batch number gives another mask */
    memcpy(out2, in, n * sizeof(float));
    cr_assert_eq(tb_dropout_forward(out2, out2, n, &d), TB_OK);
    cr_assert_eq(memcmp(out, out2, n * sizeof(float)), 0);
    tb_dropout d2 = d;
    d2.batch_seq = 8;
    cr_assert_eq(tb_dropout_forward(out2, in, n, &d2), TB_OK);
    cr_assert_neq(memcmp(out, out2, n * sizeof(float)), 0);
    /* backward regenerates the same mask: din = dout * out / in */
    cr_assert_eq(tb_dropout_backward(din, dout, n, &d), TB_OK);
    for (size_t i = 0; i < n; i++) cr_assert_float_eq(din[i], dout[i] * (out[i] / in[i]), 1e-5, "din[%zu]", i);
    /* off: identity, and the backward accumulates dout */
    tb_dropout off = d;
    off.p = 0.0f;
    cr_assert_eq(tb_dropout_forward(out2, in, n, &off), TB_OK);
    cr_assert_eq(memcmp(out2, in, n * sizeof(float)), 0);
    cr_assert_eq(tb_dropout_forward(out2, in, n, NULL), TB_OK);
    off.p = 1.0f;
    cr_assert_eq(tb_dropout_forward(out2, in, n, &off), TB_EINVAL);
    free(in); free(out); free(out2); free(din); free(dout);
}

/* dropout with a fixed mask is linear in its input; its backward must be that linear map's
 * transpose (checked by finite differences, p = 0.3), and add's backward is the identity twice */
typedef struct { size_t n; tb_dropout d; float *in, *b, *out, *r; } drop_ctx;

static double drop_obj(void *p)
{
    drop_ctx *c = p;
    cr_assert_eq(tb_dropout_forward(c->out, c->in, c->n, &c->d), TB_OK);
    cr_assert_eq(tb_add_forward(c->out, c->out, c->b, c->n), TB_OK);
    return tb_fd_dot(c->r, c->out, c->n);
}

Test(ops, dropout_and_add_fd)
{
    const size_t n = 301;
    drop_ctx c = {n, {0.3f, tb_rng_key_make(5, TB_RNG_DROPOUT), 2, 9}, fa(n), fa(n), fa(n), fa(n)};
    tb_fd_fill(c.in, n, 90, -1, 1);
    tb_fd_fill(c.b, n, 91, -1, 1);
    tb_fd_fill(c.r, n, 92, -1, 1);
    float *din = fa(n), *db = fa(n);
    drop_obj(&c);
    cr_assert_eq(tb_dropout_backward(din, c.r, n, &c.d), TB_OK);
    cr_assert_eq(tb_accumulate(db, c.r, n), TB_OK);
    expect_fd("dropout din", drop_obj, &c, c.in, din, n);
    expect_fd("add db", drop_obj, &c, c.b, db, n);
    free(c.in); free(c.b); free(c.out); free(c.r); free(din); free(db);
}

/* ---- attention --------------------------------------------------------------------------- */
typedef struct {
    int B, T, NH, HS;
    float *qkv, *ctx, *scores, *probs, *r_ctx, *r_s, *scratch;
    size_t nscratch;
    int32_t *mask;
    tb_dropout *drop;
} att_ctx;

static double att_obj(void *p)
{
    att_ctx *c = p;
    const int C = c->NH * c->HS;
    cr_assert_eq(tb_attention_forward(c->ctx, c->scores, c->probs, c->qkv, c->qkv + C, c->qkv + 2 * C, 3 * C,
                                      c->mask, c->B, c->T, c->NH, c->HS, c->drop, c->scratch, c->nscratch),
                 TB_OK, "%s", tb_err_msg());
    /* r_s is 0 on masked keys: their fp32 scores sit near -1e4, where a 1e-2 step is lost to rounding */
    return tb_fd_dot(c->r_ctx, c->ctx, (size_t)c->B * c->T * C) +
           tb_fd_dot(c->r_s, c->scores, (size_t)c->B * c->NH * c->T * c->T);
}

static void attention_fd(int B, int T, int NH, int HS, int pad, float p, int nthreads)
{
    const int C = NH * HS;
    const size_t nqkv = (size_t)B * T * 3 * C, nctx = (size_t)B * T * C, ns = (size_t)B * NH * T * T;
    tb_dropout d = {p, tb_rng_key_make(7, TB_RNG_DROPOUT), 3, 1 * 16 + 1};
    att_ctx c = {B, T, NH, HS, fa(nqkv), fa(nctx), fa(ns), fa(ns), fa(nctx), fa(ns), NULL, 0, NULL,
                 p > 0 ? &d : NULL};
    c.nscratch = tb_attention_scratch_floats(T, HS, nthreads);
    c.scratch = fa(c.nscratch);
    c.mask = calloc((size_t)B * T, sizeof(int32_t));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) c.mask[b * T + t] = t < T - pad * (b + 1) ? 1 : 0; /* b-th row pads more */
    tb_fd_fill(c.qkv, nqkv, 70, -1, 1);
    tb_fd_fill(c.r_ctx, nctx, 71, -1, 1);
    tb_fd_fill(c.r_s, ns, 72, -1, 1);
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < (size_t)NH * T * T; i++)
            if (!c.mask[b * T + (int)(i % T)]) c.r_s[(size_t)b * NH * T * T + i] = 0.0f;
    att_obj(&c);
    /* forward sanity: probability rows sum to 1, masked keys get probability ~0 */
    for (size_t row = 0; row < (size_t)B * NH * T; row++) {
        double s = 0;
        int b = (int)(row / ((size_t)NH * T));
        for (int j = 0; j < T; j++) {
            s += c.probs[row * T + j];
            if (!c.mask[b * T + j]) cr_assert_lt(c.probs[row * T + j], 1e-30f);
        }
        cr_assert_float_eq(s, 1.0, 1e-5, "row %zu sums to %g", row, s);
    }
    float *dqkv = fa(nqkv);
    cr_assert_eq(tb_attention_backward(dqkv, dqkv + C, dqkv + 2 * C, 3 * C, c.r_ctx, c.r_s, c.probs, c.qkv,
                                       c.qkv + C, c.qkv + 2 * C, 3 * C, B, T, NH, HS, c.drop, c.scratch,
                                       c.nscratch), TB_OK, "%s", tb_err_msg());
    char name[96];
    snprintf(name, sizeof name, "attn B%d T%d NH%d HS%d pad%d p%.1f", B, T, NH, HS, pad, (double)p);
    expect_fd(name, att_obj, &c, c.qkv, dqkv, nqkv);
    free(c.qkv); free(c.ctx); free(c.scores); free(c.probs); free(c.r_ctx); free(c.r_s); free(c.scratch);
    free(c.mask); free(dqkv);
}

Test(ops, attention_fd)
{
    attention_fd(2, 7, 3, 4, 2, 0.0f, 2);   /* T not a multiple of anything, padded rows */
    attention_fd(1, 5, 1, 6, 0, 0.0f, 1);   /* NH = 1, mask all ones */
    attention_fd(2, 6, 2, 3, 1, 0.3f, 2);   /* attention-probs dropout */
    attention_fd(3, 4, 2, 2, 1, 0.0f, 1);   /* scratch for one thread only */
}

Test(ops, attention_mask_null_equals_all_ones_and_split_qkv_equals_fused)
{
    enum { B = 2, T = 9, NH = 3, HS = 5, C = NH * HS };
    const size_t nqkv = (size_t)B * T * 3 * C, ns = (size_t)B * NH * T * T;
    float *qkv = fa(nqkv), *q = fa(B * T * C), *k = fa(B * T * C), *v = fa(B * T * C);
    float *c1 = fa(B * T * C), *c2 = fa(B * T * C), *s1 = fa(ns), *s2 = fa(ns), *p1 = fa(ns), *p2 = fa(ns);
    size_t nsc = tb_attention_scratch_floats(T, HS, tb_ops_threads());
    float *scr = fa(nsc);
    int32_t ones[B * T];
    for (int i = 0; i < B * T; i++) ones[i] = 1;
    tb_fd_fill(qkv, nqkv, 80, -2, 2);
    for (int i = 0; i < B * T; i++)
        for (int j = 0; j < C; j++) {
            q[i * C + j] = qkv[i * 3 * C + j];
            k[i * C + j] = qkv[i * 3 * C + C + j];
            v[i * C + j] = qkv[i * 3 * C + 2 * C + j];
        }
    cr_assert_eq(tb_attention_forward(c1, s1, p1, qkv, qkv + C, qkv + 2 * C, 3 * C, NULL, B, T, NH, HS, NULL, scr, nsc), TB_OK);
    cr_assert_eq(tb_attention_forward(c2, s2, p2, q, k, v, C, ones, B, T, NH, HS, NULL, scr, nsc), TB_OK);
    cr_assert_eq(memcmp(c1, c2, sizeof(float) * B * T * C), 0);
    cr_assert_eq(memcmp(s1, s2, sizeof(float) * ns), 0);
    /* scores by hand for (b=1, h=2, t=4, s=7) */
    double ref = 0;
    for (int d = 0; d < HS; d++) ref += (double)q[(1 * T + 4) * C + 2 * HS + d] * k[(1 * T + 7) * C + 2 * HS + d];
    ref /= sqrt((double)HS);
    cr_assert_float_eq(s1[((1 * NH + 2) * T + 4) * T + 7], (float)ref, 1e-5);
    /* a padded key gets -10000 added */
    ones[1 * T + 7] = 0;
    cr_assert_eq(tb_attention_forward(c2, s2, p2, q, k, v, C, ones, B, T, NH, HS, NULL, scr, nsc), TB_OK);
    cr_assert_float_eq(s2[((1 * NH + 2) * T + 4) * T + 7], (float)(ref - 10000.0), 2e-3);
    free(qkv); free(q); free(k); free(v); free(c1); free(c2); free(s1); free(s2); free(p1); free(p2); free(scr);
}

/* probs == NULL in the forward + tb_attention_backward_scores give the same bits as saving probs
 * (every sequence has an unmasked key), with and without dropout */
Test(ops, attention_backward_from_scores_equals_saved_probs)
{
    enum { B = 3, T = 11, NH = 2, HS = 6, C = NH * HS };
    const size_t nqkv = (size_t)B * T * 3 * C, nctx = (size_t)B * T * C, ns = (size_t)B * NH * T * T;
    float *qkv = fa(nqkv), *dctx = fa(nctx), *dsc = fa(ns);
    int32_t mask[B * T];
    for (int i = 0; i < B * T; i++) mask[i] = i % T < T - 3 * (i / T);
    tb_fd_fill(qkv, nqkv, 900, -2, 2);
    tb_fd_fill(dctx, nctx, 901, -1, 1);
    tb_fd_fill(dsc, ns, 902, -1, 1);
    size_t nsc = tb_attention_scratch_floats(T, HS, tb_ops_threads());
    float *scr = fa(nsc);
    for (int pass = 0; pass < 2; pass++) {
        tb_dropout d = {0.25f, tb_rng_key_make(8, TB_RNG_DROPOUT), 4, 33};
        const tb_dropout *dp = pass ? &d : NULL;
        float *c1 = fa(nctx), *c2 = fa(nctx), *s1 = fa(ns), *s2 = fa(ns), *p1 = fa(ns), *g1 = fa(nqkv), *g2 = fa(nqkv);
        cr_assert_eq(tb_attention_forward(c1, s1, p1, qkv, qkv + C, qkv + 2 * C, 3 * C, mask, B, T, NH, HS, dp, scr, nsc), TB_OK);
        cr_assert_eq(tb_attention_forward(c2, s2, NULL, qkv, qkv + C, qkv + 2 * C, 3 * C, mask, B, T, NH, HS, dp, scr, nsc), TB_OK);
        cr_assert_eq(memcmp(c1, c2, nctx * sizeof(float)), 0);
        cr_assert_eq(memcmp(s1, s2, ns * sizeof(float)), 0);
        cr_assert_eq(tb_attention_backward(g1, g1 + C, g1 + 2 * C, 3 * C, dctx, dsc, p1, qkv, qkv + C, qkv + 2 * C, 3 * C,
                                           B, T, NH, HS, dp, scr, nsc), TB_OK);
        cr_assert_eq(tb_attention_backward_scores(g2, g2 + C, g2 + 2 * C, 3 * C, dctx, dsc, s2, qkv, qkv + C, qkv + 2 * C,
                                                  3 * C, B, T, NH, HS, dp, scr, nsc), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(memcmp(g1, g2, nqkv * sizeof(float)), 0, "dropout pass %d", pass);
        free(c1); free(c2); free(s1); free(s2); free(p1); free(g1); free(g2);
    }
    cr_assert_eq(tb_attention_backward(qkv, qkv, qkv, 3 * C, dctx, NULL, NULL, qkv, qkv, qkv, 3 * C, B, T, NH, HS,
                                       NULL, scr, nsc), TB_EINVAL);
    cr_assert_neq(strstr(tb_err_msg(), "tb_attention_backward_scores"), NULL, "%s", tb_err_msg());
    free(qkv); free(dctx); free(dsc); free(scr);
}

Test(ops, bad_arguments_are_rejected)
{
    float x[16] = {0}, y[16] = {0}, m[2], r[2];
    cr_assert_eq(tb_linear_forward(NULL, x, x, NULL, 1, 1, 1), TB_EINVAL);
    cr_assert_eq(tb_linear_forward(y, x, x, NULL, 0, 1, 1), TB_EINVAL);
    cr_assert_neq(strstr(tb_err_msg(), "N=0"), NULL, "%s", tb_err_msg());
    cr_assert_eq(tb_linear_backward(x, NULL, NULL, y, x, NULL, 1, 1, 1), TB_EINVAL);
    cr_assert_eq(tb_layernorm_forward(y, m, r, x, x, x, 2, -3, 1e-12f), TB_EINVAL);
    cr_assert_eq(tb_layernorm_forward(y, m, r, x, x, x, 2, 3, 0.0f), TB_EINVAL);
    cr_assert_eq(tb_gelu_forward(NULL, x, 3), TB_EINVAL);
    cr_assert_eq(tb_ops_set_threads(0), TB_EINVAL);
    float s[64];
    cr_assert_eq(tb_attention_forward(y, s, s, x, x, x, 2, NULL, 1, 2, 1, 2, NULL, s, 3), TB_EINVAL);
    cr_assert_neq(strstr(tb_err_msg(), "scratch"), NULL, "%s", tb_err_msg());
    cr_assert_eq(tb_attention_forward(y, s, s, x, x, x, 1, NULL, 1, 2, 1, 2, NULL, s, 64), TB_EINVAL);
    cr_assert_eq(tb_attention_forward(y, s, s, x, x, x, 2, NULL, 1, 0, 1, 2, NULL, s, 64), TB_EINVAL);
    cr_assert_eq(tb_attention_backward(y, y, y, 2, x, NULL, s, x, x, x, 2, 1, 2, 1, 2, NULL, s, 1), TB_EINVAL);
    cr_assert_eq(tb_attention_scratch_floats(0, 1, 1), 0);
    cr_assert_eq(tb_attention_scratch_floats(4, 0, 1), 0);
}

/* Linear (forward, din, dW, db), attention, LayerNorm, embeddings and dropout give bit-identical
 * results for 1, 2 and 3 threads: each output element is computed by one thread (one
 * single-threaded BLIS call for the GEMMs) in a fixed order. */
Test(ops, deterministic_across_thread_counts)
{
    enum { B = 3, T = 13, NH = 2, HS = 5, C = NH * HS, V = 20 };
    const size_t nqkv = (size_t)B * T * 3 * C, nctx = (size_t)B * T * C, ns = (size_t)B * NH * T * T;
    float *qkv = fa(nqkv), *dctx = fa(nctx), *w = fa(C), *bb = fa(C);
    tb_fd_fill(qkv, nqkv, 800, -2, 2);
    tb_fd_fill(dctx, nctx, 801, -1, 1);
    tb_fd_fill(w, C, 802, 0.5f, 1.5f);
    int32_t mask[B * T], ids[B * T];
    for (int i = 0; i < B * T; i++) {
        mask[i] = i % T < T - 2 * (i / T);
        ids[i] = (i * 5) % V;
    }
    tb_dropout d = {0.2f, tb_rng_key_make(3, TB_RNG_DROPOUT), 11, 17};
    float *out[3][8];
    const size_t sizes[8] = {nctx, ns, ns, nqkv, nctx, C, V * C, nctx};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(tb_ops_set_threads(k + 1), TB_OK);
        for (int j = 0; j < 8; j++) out[k][j] = fa(sizes[j]);
        size_t nsc = tb_attention_scratch_floats(T, HS, k + 1);
        float *scr = fa(nsc), *mean = fa(B * T), *rstd = fa(B * T);
        cr_assert_eq(tb_attention_forward(out[k][0], out[k][1], out[k][2], qkv, qkv + C, qkv + 2 * C, 3 * C, mask,
                                          B, T, NH, HS, &d, scr, nsc), TB_OK);
        cr_assert_eq(tb_attention_backward(out[k][3], out[k][3] + C, out[k][3] + 2 * C, 3 * C, dctx, out[k][1],
                                           out[k][2], qkv, qkv + C, qkv + 2 * C, 3 * C, B, T, NH, HS, &d, scr, nsc), TB_OK);
        cr_assert_eq(tb_layernorm_forward(out[k][4], mean, rstd, out[k][0], w, bb, B * T, C, 1e-12f), TB_OK);
        cr_assert_eq(tb_layernorm_backward(out[k][7], out[k][5], NULL, dctx, out[k][0], w, mean, rstd, B * T, C), TB_OK);
        cr_assert_eq(tb_embedding_backward(out[k][6], NULL, NULL, dctx, ids, NULL, B, T, C, V, T, 2, 0), TB_OK);
        cr_assert_eq(tb_dropout_forward(out[k][7], out[k][7], nctx, &d), TB_OK);
        free(scr); free(mean); free(rstd);
    }
    for (int k = 1; k < 3; k++)
        for (int j = 0; j < 8; j++)
            cr_assert_eq(memcmp(out[k][j], out[0][j], sizes[j] * sizeof(float)), 0, "output %d differs with %d threads", j, k + 1);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 8; j++) free(out[k][j]);
    free(qkv); free(dctx); free(w); free(bb);

    /* linear layers with several row blocks (N = 1000 rows, dW 300 rows) */
    enum { LN_ = 1000, LI = 70, LO = 300 };
    float *x = fa((size_t)LN_ * LI), *lw = fa((size_t)LO * LI), *lb = fa(LO), *g = fa((size_t)LN_ * LO);
    tb_fd_fill(x, (size_t)LN_ * LI, 810, -1, 1);
    tb_fd_fill(lw, (size_t)LO * LI, 811, -1, 1);
    tb_fd_fill(lb, LO, 812, -1, 1);
    tb_fd_fill(g, (size_t)LN_ * LO, 813, -1, 1);
    float *lo[3][4];
    const size_t lsz[4] = {(size_t)LN_ * LO, (size_t)LN_ * LI, (size_t)LO * LI, LO};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(tb_ops_set_threads(k + 1), TB_OK);
        for (int j = 0; j < 4; j++) {
            lo[k][j] = fa(lsz[j]);
            for (size_t i = 0; i < lsz[j]; i++) lo[k][j][i] = 0.25f; /* backward accumulates */
        }
        cr_assert_eq(tb_linear_forward(lo[k][0], x, lw, lb, LN_, LI, LO), TB_OK);
        cr_assert_eq(tb_linear_backward(lo[k][1], lo[k][2], lo[k][3], g, x, lw, LN_, LI, LO), TB_OK);
    }
    for (int k = 1; k < 3; k++)
        for (int j = 0; j < 4; j++)
            cr_assert_eq(memcmp(lo[k][j], lo[0][j], lsz[j] * sizeof(float)), 0, "linear output %d differs with %d threads", j, k + 1);
    /* and they are the products: one element of each against a double-precision sum */
    double f = lb[7], di = 0.25, dw = 0.25;
    for (int i = 0; i < LI; i++) f += (double)x[(size_t)999 * LI + i] * lw[(size_t)7 * LI + i];
    for (int o = 0; o < LO; o++) di += (double)g[(size_t)998 * LO + o] * lw[(size_t)o * LI + 5];
    for (int n = 0; n < LN_; n++) dw += (double)g[(size_t)n * LO + 299] * x[(size_t)n * LI + 69];
    cr_assert_float_eq(lo[0][0][(size_t)999 * LO + 7], f, 1e-4 * (1 + fabs(f)));
    cr_assert_float_eq(lo[0][1][(size_t)998 * LI + 5], di, 1e-4 * (1 + fabs(di)));
    cr_assert_float_eq(lo[0][2][(size_t)299 * LI + 69], dw, 1e-4 * (1 + fabs(dw)));
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 4; j++) free(lo[k][j]);
    free(x); free(lw); free(lb); free(g);
}
