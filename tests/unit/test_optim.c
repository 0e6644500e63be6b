/* Unit tests: BertAdam and its schedules against hand-computed values; parameter tables. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "tb/base/error.h"
#include "tb/model/optim.h"
#include "tb/model/params.h"

/* warmup_linear of the reference, warm-up 0.1 of t_total = 100 (worked by hand):
 * x = step/100; x < 0.1: x / 0.1; else max((x - 1) / (0.1 - 1), 0). */
Test(optim, warmup_linear_schedule_by_hand)
{
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, 0.1, 100, 0), 0.0, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, 0.1, 100, 5), 0.5, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, 0.1, 100, 10), 1.0, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, 0.1, 100, 55), 0.5, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, 0.1, 100, 91), 0.1, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, 0.1, 100, 100), 0.0, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, 0.1, 100, 130), 0.0, 1e-15);
    /* no warm-up (-1 means 0): plain linear decay from 1 */
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, -1, 10, 0), 1.0, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, -1, 10, 4), 0.6, 1e-15);
    /* t_total < 0: the reference applies no schedule */
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_LINEAR, 0.1, -1, 0), 1.0, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_CONSTANT, 0.1, 100, 0), 1.0, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_CONSTANT, 0.1, 100, 5), 0.5, 1e-15);
    cr_assert_float_eq(tb_lr_multiplier(TB_SCHEDULE_WARMUP_CONSTANT, 0.1, 100, 70), 1.0, 1e-15);
}

Test(optim, schedule_names)
{
    tb_lr_schedule s;
    cr_assert_eq(tb_lr_schedule_parse("none", &s), TB_OK);
    cr_assert_eq(s, TB_SCHEDULE_CONSTANT);
    cr_assert_eq(tb_lr_schedule_parse("warmup_linear", &s), TB_OK);
    cr_assert_eq(s, TB_SCHEDULE_WARMUP_LINEAR);
    cr_assert_eq(tb_lr_schedule_parse("cosine", &s), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "warmup_linear") != NULL, "%s", tb_err_msg());
}

static tb_param_table table2(float w0, float w1, int no_decay, int trainable)
{
    tb_param_spec spec = {"w", 1, {2}, no_decay, trainable};
    tb_param_table t;
    cr_assert_eq(tb_params_alloc(&t, &spec, 1), TB_OK, "%s", tb_err_msg());
    float *w = t.items[0].value.data;
    w[0] = w0;
    w[1] = w1;
    return t;
}

static tb_adam_options constant_opts(double lr)
{
    tb_adam_options o;
    tb_adam_options_default(&o);
    o.lr = lr;
    o.schedule = TB_SCHEDULE_CONSTANT;
    return o;
}

/* One step, g = (0.3, 0.4), ||g|| = 0.5 < 1 (no clipping), lr 0.1, wd 0.01:
 *   m = 0.1 g = (0.03, 0.04), v = 0.001 g^2 = (9e-5, 1.6e-4), sqrt v = (0.00948683, 0.01264911)
 *   u = m / (sqrt v + 1e-6) + 0.01 w, w = (1, -2): u = (3.161945 + 0.01, 3.162028 - 0.02)
 *   w' = w - 0.1 u = (0.6828056, -2.3142028)  (worked with a calculator) */
Test(optim, one_step_by_hand)
{
    tb_param_table t = table2(1.0f, -2.0f, 0, 1);
    float *g = t.items[0].grad.data;
    g[0] = 0.3f;
    g[1] = 0.4f;
    tb_adam a;
    tb_adam_options o = constant_opts(0.1);
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK);
    cr_assert_eq(tb_adam_step(&a, &t), TB_OK);
    const float *w = t.items[0].value.data;
    cr_assert_float_eq(a.m[0], 0.03f, 1e-8);
    cr_assert_float_eq(a.v[1], 1.6e-4f, 1e-10);
    cr_assert_float_eq(w[0], 0.6828056f, 2e-6, "w0 = %.7f", w[0]);
    cr_assert_float_eq(w[1], -2.3142028f, 2e-6, "w1 = %.7f", w[1]);
    cr_assert_eq(a.step, 1);
    /* the gradient buffer is read, not modified */
    cr_assert_eq(g[0], 0.3f);
    tb_adam_free(&a);
    tb_params_free(&t);
}

/* g = (3, 4): ||g|| = 5 > 1, clipped by 1 / (5 + 1e-6) to (0.6, 0.8) (clip_grad_norm_):
 *   m = (0.06, 0.08) (up to 1.2e-8), v = 0.001 (0.36, 0.64); no_decay, so
 *   w' = 0 - 0.1 * 0.06 / (0.018973666 + 1e-6) = -0.3162111 */
Test(optim, clipping_per_tensor_and_no_decay)
{
    tb_param_table t = table2(0.0f, 0.0f, 1, 1);
    float *g = t.items[0].grad.data;
    g[0] = 3.0f;
    g[1] = 4.0f;
    tb_adam a;
    tb_adam_options o = constant_opts(0.1);
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK);
    cr_assert_eq(tb_adam_step(&a, &t), TB_OK);
    cr_assert_float_eq(a.m[0], 0.06f, 1e-7);
    cr_assert_float_eq(a.m[1], 0.08f, 1e-7);
    cr_assert_float_eq(a.v[0], 3.6e-4f, 1e-9);
    const float *w = t.items[0].value.data;
    cr_assert_float_eq(w[0], -0.3162111f, 2e-6, "w0 = %.7f", w[0]);
    tb_adam_free(&a);
    tb_params_free(&t);
}

Test(optim, frozen_parameter_is_skipped_entirely)
{
    tb_param_table t = table2(1.0f, 2.0f, 0, 0);
    float *g = t.items[0].grad.data;
    g[0] = 5.0f;
    g[1] = -1.0f;
    tb_adam a;
    tb_adam_options o = constant_opts(0.1);
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK);
    cr_assert_eq(tb_adam_step(&a, &t), TB_OK);
    const float *w = t.items[0].value.data;
    cr_assert_eq(w[0], 1.0f); /* no decay either */
    cr_assert_eq(w[1], 2.0f);
    cr_assert_eq(a.m[0], 0.0f);
    cr_assert_eq(a.v[1], 0.0f);
    tb_adam_free(&a);
    tb_params_free(&t);
}

Test(optim, warmup_first_update_leaves_weights_unchanged)
{
    tb_param_table t = table2(1.0f, -1.0f, 0, 1);
    float *g = t.items[0].grad.data;
    g[0] = 0.5f;
    g[1] = 0.5f;
    tb_adam a;
    tb_adam_options o;
    tb_adam_options_default(&o);
    o.lr = 0.1;
    o.t_total = 10;
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK);
    cr_assert_float_eq(tb_adam_lr(&a), 0.0, 1e-15);
    cr_assert_eq(tb_adam_step(&a, &t), TB_OK);
    const float *w = t.items[0].value.data;
    cr_assert_eq(w[0], 1.0f);
    cr_assert_eq(w[1], -1.0f);
    cr_assert_float_eq(a.m[0], 0.05f, 1e-8); /* the moments still advance */
    /* step 1 of 10 with warm-up 0.1: x = 0.1 is not < 0.1, so (0.1 - 1) / (0.1 - 1) = 1 */
    cr_assert_float_eq(tb_adam_lr(&a), 0.1, 1e-15);
    tb_adam_free(&a);
    tb_params_free(&t);
}

Test(optim, bit_identical_for_any_thread_count)
{
    tb_param_spec spec = {"big", 2, {700, 300}, 0, 1};
    tb_param_table t1, t2;
    cr_assert_eq(tb_params_alloc(&t1, &spec, 1), TB_OK);
    cr_assert_eq(tb_params_alloc(&t2, &spec, 1), TB_OK);
    for (size_t i = 0; i < 210000; i++) {
        t1.values[i] = t2.values[i] = (float)sin((double)i);
        t1.grads[i] = t2.grads[i] = (float)cos((double)i * 0.7) * 0.01f;
    }
    tb_adam a1, a2;
    tb_adam_options o = constant_opts(1e-3);
    cr_assert_eq(tb_adam_init(&a1, &t1, &o), TB_OK);
    cr_assert_eq(tb_adam_init(&a2, &t2, &o), TB_OK);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    cr_assert_eq(tb_adam_step(&a1, &t1), TB_OK);
    omp_set_num_threads(2);
    cr_assert_eq(tb_adam_step(&a2, &t2), TB_OK);
    omp_set_num_threads(saved);
    cr_assert_eq(memcmp(t1.values, t2.values, 210000 * sizeof(float)), 0);
    tb_adam_free(&a1);
    tb_adam_free(&a2);
    tb_params_free(&t1);
    tb_params_free(&t2);
}

Test(optim, rejects_bad_options_and_foreign_tables)
{
    tb_param_table t = table2(0, 0, 0, 1), u;
    tb_param_spec spec[2] = {{"a", 1, {3}, 0, 1}, {"b", 1, {2}, 0, 1}};
    cr_assert_eq(tb_params_alloc(&u, spec, 2), TB_OK);
    tb_adam a;
    tb_adam_options o = constant_opts(-1.0);
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "learning rate") != NULL, "%s", tb_err_msg());
    o = constant_opts(0.1);
    o.b2 = 1.0;
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_EINVAL);
    o = constant_opts(0.1);
    o.schedule = TB_SCHEDULE_WARMUP_LINEAR;
    o.t_total = 0;
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "t_total") != NULL, "%s", tb_err_msg());
    o = constant_opts(0.1);
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK);
    cr_assert_eq(tb_adam_step(&a, &u), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "not the one") != NULL, "%s", tb_err_msg());
    tb_adam_free(&a);
    tb_params_free(&t);
    tb_params_free(&u);
}

Test(params, alloc_find_zero_and_reject_duplicates)
{
    tb_param_spec spec[3] = {{"x.weight", 2, {3, 5}, 0, 1}, {"x.bias", 1, {3}, 1, 1}, {"y", 0, {0}, 0, 0}};
    tb_param_table t;
    cr_assert_eq(tb_params_alloc(&t, spec, 3), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(t.count, 3);
    tb_param *b = tb_params_find(&t, "x.bias");
    cr_assert_not_null(b);
    cr_assert_eq(b->no_decay, 1);
    cr_assert_eq((uintptr_t)b->value.data % TB_ALIGN, 0);
    cr_assert_eq(tb_params_offset(&t, b), 16); /* 15 floats padded to 16 */
    cr_assert_null(tb_params_find(&t, "x"));
    cr_assert_eq(tb_tensor_numel(&tb_params_find(&t, "y")->value), 1); /* a scalar */
    t.grads[3] = 7.0f;
    tb_params_zero_grads(&t);
    cr_assert_eq(t.grads[3], 0.0f);
    tb_params_free(&t);

    tb_param_spec dup[2] = {{"a", 1, {2}, 0, 1}, {"a", 1, {2}, 0, 1}};
    cr_assert_eq(tb_params_alloc(&t, dup, 2), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "twice") != NULL, "%s", tb_err_msg());
    tb_param_spec neg = {"n", 1, {-2}, 0, 1};
    cr_assert_eq(tb_params_alloc(&t, &neg, 1), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "'n'") != NULL, "%s", tb_err_msg());
}

/* The vectorised and the scalar tail of the update must give the same bits as a plain float
 * evaluation of the formula in the reference's operation order (11 elements: 8 vector + 3 tail). */
Test(optim, vector_and_tail_elements_match_plain_float_formula)
{
    tb_param_spec spec = {"w", 1, {11}, 0, 1};
    tb_param_table t;
    cr_assert_eq(tb_params_alloc(&t, &spec, 1), TB_OK);
    float w0[11], g0[11];
    for (int i = 0; i < 11; i++) {
        w0[i] = t.values[i] = 0.3f * (float)(i - 5);
        g0[i] = t.grads[i] = 0.011f * (float)(i * i) - 0.2f;
    }
    tb_adam a;
    tb_adam_options o = constant_opts(0.01);
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK);
    cr_assert_eq(tb_adam_step(&a, &t), TB_OK);
    double nrm = 0;
    for (int i = 0; i < 11; i++) nrm += (double)g0[i] * g0[i];
    double coef = 1.0 / (sqrt(nrm) + 1e-6);
    float scale = coef < 1.0 ? (float)coef : 1.0f;
    cr_assert(scale < 1.0f, "the case is meant to clip (norm %g)", sqrt(nrm));
    for (int i = 0; i < 11; i++) {
        float gi = g0[i] * scale;
        float mi = 0.9f * 0.0f + (float)(1.0 - 0.9) * gi;
        float vi = 0.999f * 0.0f + (float)(1.0 - 0.999) * gi * gi;
        float u = mi / (sqrtf(vi) + 1e-6f) + 0.01f * w0[i];
        float want = w0[i] - 0.01f * u;
        cr_assert_eq(t.values[i], want, "element %d: %.9g vs %.9g", i, t.values[i], want);
        cr_assert_eq(a.m[i], mi);
        cr_assert_eq(a.v[i], vi);
    }
    tb_adam_free(&a);
    tb_params_free(&t);
}
