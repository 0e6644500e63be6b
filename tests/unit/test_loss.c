/* Unit tests of tb/model/loss.h: hand-computed values and central finite-difference gradients.
 *
 * The objective is the loss itself (accumulated in double from fp32 inputs). With h = 1e-2 on
 * O(1) inputs the central-difference truncation error is ~h^2 |f'''| / 6 ~ 1e-5 relative and
 * the loss has no fp32 rounding of its own (double accumulation), so a correct gradient lands
 * near 1e-5; FD_TOL = 1e-3 leaves margin, while a wrong factor (2, 1/n, 1/T, sign) is >= 0.3. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fdcheck.h"
#include "tb/base/error.h"
#include "tb/model/loss.h"
#include "tb/model/ops.h"

#define FD_H 1e-2f
#define FD_TOL 1e-3

static void expect_fd(const char *what, tb_fd_objective f, void *ctx, float *x, const float *g, size_t n)
{
    tb_fd_result r = tb_fdcheck(f, ctx, x, g, n, FD_H, 1000);
    cr_log_info("fd %-24s rel %.3e max_abs %.3e (|g| %.3e, %zu elements)", what, r.rel_err, r.max_abs,
                r.norm_ref, r.checked);
    cr_assert_gt(r.norm_ref, 1e-8, "%s: finite-difference gradient is ~0, the check is vacuous", what);
    cr_assert_lt(r.rel_err, FD_TOL, "%s: relative gradient error %.3e >= %.1e", what, r.rel_err, FD_TOL);
}

typedef struct { int kind, N, K; size_t n; float *s, *t, temp; int32_t *labels; } loss_ctx;

static double loss_obj(void *p)
{
    loss_ctx *c = p;
    double l = NAN;
    int rc = TB_EINVAL;
    if (c->kind == 0) rc = tb_loss_mse(&l, NULL, c->s, c->t, c->n, 1.0f);
    if (c->kind == 1) rc = tb_loss_att_mse(&l, NULL, c->s, c->t, c->n, 1.0f);
    if (c->kind == 2) rc = tb_loss_soft_ce(&l, NULL, c->s, c->t, c->N, c->K, c->temp, 1.0f);
    if (c->kind == 3) rc = tb_loss_ce(&l, NULL, c->s, c->labels, c->N, c->K, TB_IGNORE_INDEX, 1.0f, NULL);
    cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
    return l;
}

static void loss_grad(loss_ctx *c, float *g, float scale, double *l)
{
    int rc = TB_EINVAL;
    if (c->kind == 0) rc = tb_loss_mse(l, g, c->s, c->t, c->n, scale);
    if (c->kind == 1) rc = tb_loss_att_mse(l, g, c->s, c->t, c->n, scale);
    if (c->kind == 2) rc = tb_loss_soft_ce(l, g, c->s, c->t, c->N, c->K, c->temp, scale);
    if (c->kind == 3) rc = tb_loss_ce(l, g, c->s, c->labels, c->N, c->K, TB_IGNORE_INDEX, scale, NULL);
    cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
}

/* FD check, plus: the gradient accumulates and scales linearly with grad_scale. */
static void check_loss(const char *name, loss_ctx *c)
{
    float *g = calloc(c->n, sizeof(float)), *g3 = calloc(c->n, sizeof(float));
    double l1, l3;
    loss_grad(c, g, 1.0f, &l1);
    expect_fd(name, loss_obj, c, c->s, g, c->n);
    for (size_t i = 0; i < c->n; i++) g3[i] = 1.0f;
    loss_grad(c, g3, 3.0f, &l3);
    cr_assert_eq(l1, l3, "%s: the value does not depend on grad_scale", name);
    for (size_t i = 0; i < c->n; i++)
        cr_assert_float_eq(g3[i] - 1.0f, 3.0f * g[i], 1e-6, "%s: element %zu must be 1 + 3 g", name, i);
    free(g);
    free(g3);
}

Test(loss, mse_hand_values)
{
    float s[] = {1, 2, 3}, t[] = {0, 2, 5}, g[3] = {0};
    double l;
    cr_assert_eq(tb_loss_mse(&l, g, s, t, 3, 1.0f), TB_OK);
    cr_assert_float_eq(l, 5.0 / 3.0, 1e-12);
    cr_assert_float_eq(g[0], 2.0f / 3.0f, 1e-7);
    cr_assert_float_eq(g[1], 0.0f, 1e-7);
    cr_assert_float_eq(g[2], -4.0f / 3.0f, 1e-7);
}

Test(loss, att_mse_hand_values)
{
    /* student [1, -10000, 2, -50], teacher [0, 3, -20000, -50]: after replacing entries <= -100
     * by 0: s' = [1, 0, 2, -50], t' = [0, 3, 0, -50], squared diffs 1, 9, 4, 0 -> 14/4. The student
     * entry 1 was replaced, so its gradient is 0 although s' - t' = -3. */
    float s[] = {1, -10000, 2, -50}, t[] = {0, 3, -20000, -50}, g[4] = {0};
    double l;
    cr_assert_eq(tb_loss_att_mse(&l, g, s, t, 4, 1.0f), TB_OK);
    cr_assert_float_eq(l, 3.5, 1e-12);
    cr_assert_float_eq(g[0], 0.5f, 1e-7);
    cr_assert_eq(g[1], 0.0f);
    cr_assert_float_eq(g[2], 1.0f, 1e-7);
    cr_assert_eq(g[3], 0.0f);
    /* the threshold is inclusive: -100 itself is masked */
    float s2[] = {-100.0f}, t2[] = {1.0f}, g2[1] = {0};
    cr_assert_eq(tb_loss_att_mse(&l, g2, s2, t2, 1, 1.0f), TB_OK);
    cr_assert_float_eq(l, 1.0, 1e-12);
    cr_assert_eq(g2[0], 0.0f);
}

Test(loss, soft_ce_hand_values)
{
    /* s = [0, 0], t = [0, ln 3]: p = [1/4, 3/4], log q = [-ln 2, -ln 2]:
     * loss = (1/K) sum -p log q = ln 2 / 2, grad = (q - p) / (T N K) = [1/8, -1/8] */
    float s[] = {0, 0}, t[] = {0, logf(3.0f)}, g[2] = {0};
    double l;
    cr_assert_eq(tb_loss_soft_ce(&l, g, s, t, 1, 2, 1.0f, 1.0f), TB_OK);
    cr_assert_float_eq(l, log(2.0) / 2, 1e-7);
    cr_assert_float_eq(g[0], 0.125f, 1e-7);
    cr_assert_float_eq(g[1], -0.125f, 1e-7);
    /* temperature 2 on s = [0, 2 ln 3], t = [0, 0]: q = [1/4, 3/4], p = [1/2, 1/2]:
     * loss = -(1/2)(ln(1/4) + ln(3/4)) / 2, grad = (q - p) / (2 * 1 * 2) = [-1/16, 1/16] */
    float s2[] = {0, 2 * logf(3.0f)}, t2[] = {0, 0}, g2[2] = {0};
    cr_assert_eq(tb_loss_soft_ce(&l, g2, s2, t2, 1, 2, 2.0f, 1.0f), TB_OK);
    cr_assert_float_eq(l, -0.25 * (log(0.25) + log(0.75)), 1e-7);
    cr_assert_float_eq(g2[0], -1.0f / 16, 1e-7);
    cr_assert_float_eq(g2[1], 1.0f / 16, 1e-7);
}

Test(loss, ce_hand_values_and_ignore_index)
{
    /* logits [0, 0, 0] with label 1: loss ln 3, grad [1/3, -2/3, 1/3]; the second row is ignored */
    float z[] = {0, 0, 0, 5, -1, 2}, g[6] = {0};
    int32_t labels[] = {1, TB_IGNORE_INDEX};
    double l;
    int count = -1;
    cr_assert_eq(tb_loss_ce(&l, g, z, labels, 2, 3, TB_IGNORE_INDEX, 1.0f, &count), TB_OK);
    cr_assert_eq(count, 1);
    cr_assert_float_eq(l, log(3.0), 1e-7);
    cr_assert_float_eq(g[0], 1.0f / 3, 1e-7);
    cr_assert_float_eq(g[1], -2.0f / 3, 1e-7);
    cr_assert_float_eq(g[2], 1.0f / 3, 1e-7);
    for (int i = 3; i < 6; i++) cr_assert_eq(g[i], 0.0f, "ignored rows get no gradient");
    /* every row ignored: loss 0, no gradient */
    int32_t none[] = {TB_IGNORE_INDEX, TB_IGNORE_INDEX};
    memset(g, 0, sizeof g);
    cr_assert_eq(tb_loss_ce(&l, g, z, none, 2, 3, TB_IGNORE_INDEX, 1.0f, &count), TB_OK);
    cr_assert_eq(count, 0);
    cr_assert_eq(l, 0.0);
    for (int i = 0; i < 6; i++) cr_assert_eq(g[i], 0.0f);
    /* large logits stay finite (log-sum-exp with the max subtracted) */
    float big[] = {1000, 0, -1000};
    int32_t lab0[] = {2};
    cr_assert_eq(tb_loss_ce(&l, NULL, big, lab0, 1, 3, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK);
    cr_assert_float_eq(l, 2000.0, 1e-9);
}

Test(loss, fd_all_losses)
{
    enum { N = 6, K = 5 };
    const size_t n = N * K;
    float s[N * K], t[N * K];
    int32_t labels[N] = {0, 4, TB_IGNORE_INDEX, 2, 1, 3};
    tb_fd_fill(s, n, 90, -2, 2);
    tb_fd_fill(t, n, 91, -2, 2);
    loss_ctx c = {0, N, K, n, s, t, 1.0f, labels};
    check_loss("mse", &c);
    /* attention: some masked (about -1e4) entries in either tensor */
    float sa[N * K], ta[N * K];
    memcpy(sa, s, sizeof sa);
    memcpy(ta, t, sizeof ta);
    for (size_t i = 0; i < n; i += 4) sa[i] -= 10000.0f;
    for (size_t i = 1; i < n; i += 3) ta[i] -= 10000.0f;
    loss_ctx ca = {1, N, K, n, sa, ta, 1.0f, NULL};
    check_loss("att_mse", &ca);
    loss_ctx cs = {2, N, K, n, s, t, 1.0f, NULL};
    check_loss("soft_ce T=1", &cs);
    cs.temp = 2.5f;
    check_loss("soft_ce T=2.5", &cs);
    loss_ctx cc = {3, N, K, n, s, NULL, 1.0f, labels};
    check_loss("ce", &cc);
}

Test(loss, bad_arguments_are_rejected)
{
    float s[4] = {0}, t[4] = {0};
    double l = 123.0;
    int32_t lab[2] = {0, 3};
    cr_assert_eq(tb_loss_mse(NULL, NULL, s, t, 4, 1.0f), TB_EINVAL);
    cr_assert_eq(tb_loss_mse(&l, NULL, s, t, 0, 1.0f), TB_EINVAL);
    cr_assert_eq(tb_loss_att_mse(&l, NULL, s, NULL, 4, 1.0f), TB_EINVAL);
    cr_assert_eq(tb_loss_soft_ce(&l, NULL, s, t, 2, 2, 0.0f, 1.0f), TB_EINVAL);
    cr_assert_eq(tb_loss_soft_ce(&l, NULL, s, t, 2, 0, 1.0f, 1.0f), TB_EINVAL);
    cr_assert_eq(tb_loss_ce(&l, NULL, s, lab, 2, 2, TB_IGNORE_INDEX, 1.0f, NULL), TB_EINVAL);
    cr_assert_neq(strstr(tb_err_msg(), "label 3 of row 1"), NULL, "%s", tb_err_msg());
    cr_assert_eq(l, 123.0, "a failed call leaves *loss untouched");
}

/* Values and gradients are bit-identical whatever the thread count (fixed blocks, ordered sum). */
Test(loss, deterministic_across_thread_counts)
{
    const size_t n = 100003;
    float *s = malloc(n * sizeof(float)), *t = malloc(n * sizeof(float));
    float *g[3];
    double l[3], lc[3];
    int32_t labels[1000];
    tb_fd_fill(s, n, 700, -200, 5);
    tb_fd_fill(t, n, 701, -200, 5);
    for (int i = 0; i < 1000; i++) labels[i] = i % 7 == 0 ? TB_IGNORE_INDEX : i % 100;
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(tb_ops_set_threads(k + 1), TB_OK);
        g[k] = calloc(n, sizeof(float));
        cr_assert_eq(tb_loss_att_mse(&l[k], g[k], s, t, n, 1.0f), TB_OK);
        cr_assert_eq(tb_loss_ce(&lc[k], g[k], s, labels, 1000, 100, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK);
    }
    for (int k = 1; k < 3; k++) {
        cr_assert_eq(l[k], l[0], "att_mse with %d threads differs", k + 1);
        cr_assert_eq(lc[k], lc[0], "ce with %d threads differs", k + 1);
        cr_assert_eq(memcmp(g[k], g[0], n * sizeof(float)), 0);
    }
    for (int k = 0; k < 3; k++) free(g[k]);
    free(s);
    free(t);
}
