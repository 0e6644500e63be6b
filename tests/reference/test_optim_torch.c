/* Reference test: 20 BertAdam steps with warm-up in C against a float64 torch implementation of
 * the reference's formulas (tests/reference/py/optim_ref.py), on the same initial weights and the
 * same gradient sequence (norms above and below the clip threshold, a no_decay tensor and a frozen
 * tensor). Tolerance: per tensor ||C - ref|| / ||ref|| <= 1e-4 on the weights AND on the total
 * update w_t - w_0 (the stricter check: fp32 rounding of an update of size ~1e-2 is ~1e-7
 * relative, so 1e-4 leaves room only for formula differences, not for a wrong formula).
 * Also: saving the optimiser state in a checkpoint at step 10 and restoring it into a fresh
 * table continues bit-identically. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/base/error.h"
#include "tb/model/optim.h"
#include "tb/model/params.h"
#include "tb/store/safetensors.h"

#define STEPS 20

static const tb_param_spec SPECS[] = {
    {"bert.encoder.layer.0.attention.self.query.weight", 2, {8, 16}, 0, 1},
    {"bert.encoder.layer.0.attention.self.query.bias", 1, {8}, 1, 1},
    {"bert.encoder.layer.0.output.LayerNorm.weight", 1, {16}, 1, 1},
    {"classifier.weight", 2, {3, 16}, 0, 0},
    {"fit_dense.weight", 2, {24, 16}, 0, 1},
};
#define NSPEC ((int)(sizeof SPECS / sizeof SPECS[0]))

static char tmpdir[256];
static tb_st_file ref;

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tb-optim-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/tests/reference/py/optim_ref.py %s", TB_PYTHON, TB_SOURCE_DIR, tmpdir);
    cr_assert_eq(system(cmd), 0, "reference script failed: %s", cmd);
    char path[512];
    snprintf(path, sizeof path, "%s/optim_case.safetensors", tmpdir);
    cr_assert_eq(tb_st_open(&ref, path), TB_OK, "%s", tb_err_msg());
}

static void teardown(void)
{
    tb_st_close(&ref);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static const tb_st_entry *entry(const char *fmt, int step, const char *name)
{
    char key[256];
    if (name) snprintf(key, sizeof key, fmt, step, name);
    else snprintf(key, sizeof key, fmt, step);
    const tb_st_entry *e = tb_st_find(&ref, key);
    cr_assert_not_null(e, "reference file lacks '%s'", key);
    return e;
}

static void make_table(tb_param_table *t)
{
    cr_assert_eq(tb_params_alloc(t, SPECS, NSPEC), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < NSPEC; i++) {
        char key[200];
        snprintf(key, sizeof key, "init.%s", SPECS[i].name);
        const tb_st_entry *e = tb_st_find(&ref, key);
        cr_assert_not_null(e);
        cr_assert_eq(tb_st_read(&ref, e, t->items[i].value.data, tb_tensor_nbytes(&t->items[i].value)), TB_OK);
    }
}

static void load_grads(tb_param_table *t, int step)
{
    for (int i = 0; i < t->count; i++) {
        const tb_st_entry *e = entry("grad.%d.%s", step, t->items[i].name);
        cr_assert_eq(tb_st_read(&ref, e, t->items[i].grad.data, tb_tensor_nbytes(&t->items[i].grad)), TB_OK);
    }
}

static tb_adam_options options(void)
{
    tb_adam_options o;
    tb_adam_options_default(&o);
    o.lr = 1e-2;
    o.warmup = 0.1;
    o.t_total = STEPS;
    o.schedule = TB_SCHEDULE_WARMUP_LINEAR;
    return o;
}

Test(optim_torch, twenty_steps_match_float64_torch, .init = setup, .fini = teardown)
{
    tb_param_table t;
    make_table(&t);
    tb_adam a;
    tb_adam_options o = options();
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK, "%s", tb_err_msg());
    double worst_rel = 0, worst_abs = 0, worst_upd = 0;
    for (int step = 0; step < STEPS; step++) {
        double lr_ref;
        cr_assert_eq(tb_st_read(&ref, entry("lr.%d", step, NULL), &lr_ref, sizeof lr_ref), TB_OK);
        cr_assert_float_eq(tb_adam_lr(&a), lr_ref, 1e-15, "step %d: lr %g vs reference %g", step, tb_adam_lr(&a),
                           lr_ref);
        load_grads(&t, step);
        cr_assert_eq(tb_adam_step(&a, &t), TB_OK, "%s", tb_err_msg());
        for (int i = 0; i < t.count; i++) {
            const tb_param *p = &t.items[i];
            size_t n = (size_t)tb_tensor_numel(&p->value);
            double *r = malloc(n * sizeof(double)), *w0 = malloc(n * sizeof(double));
            float *init = malloc(n * sizeof(float));
            cr_assert(r && w0 && init);
            cr_assert_eq(tb_st_read(&ref, entry("ref.%d.%s", step, p->name), r, n * sizeof(double)), TB_OK);
            char key[200];
            snprintf(key, sizeof key, "init.%s", p->name);
            cr_assert_eq(tb_st_read(&ref, tb_st_find(&ref, key), init, n * sizeof(float)), TB_OK);
            const float *w = p->value.data;
            double d2 = 0, r2 = 0, u2 = 0, ur2 = 0, maxabs = 0;
            for (size_t k = 0; k < n; k++) {
                double d = (double)w[k] - r[k];
                d2 += d * d;
                r2 += r[k] * r[k];
                double uc = (double)w[k] - (double)init[k], ur = r[k] - (double)init[k];
                u2 += (uc - ur) * (uc - ur);
                ur2 += ur * ur;
                if (fabs(d) > maxabs) maxabs = fabs(d);
            }
            double rel = sqrt(d2 / r2);
            cr_assert(rel <= 1e-4, "step %d %s: relative error %.3g > 1e-4", step, p->name, rel);
            if (step == 0 || !p->trainable) {
                /* warm-up: lr 0 at step 0 leaves every weight unchanged; frozen ones never move */
                for (size_t k = 0; k < n; k++)
                    cr_assert_eq(w[k], init[k], "step %d %s[%zu] moved", step, p->name, k);
            } else {
                double urel = sqrt(u2 / ur2);
                cr_assert(urel <= 1e-4, "step %d %s: update relative error %.3g > 1e-4", step, p->name, urel);
                if (urel > worst_upd) worst_upd = urel;
            }
            if (rel > worst_rel) worst_rel = rel;
            if (maxabs > worst_abs) worst_abs = maxabs;
            free(r);
            free(w0);
            free(init);
        }
    }
    cr_log_info("BertAdam vs float64 torch, %d steps: max rel err (weights) %.3g, max rel err (updates) %.3g, "
                "max abs err %.3g",
                STEPS, worst_rel, worst_upd, worst_abs);
    fprintf(stderr, "optim_torch: max rel (weights) %.3g, max rel (updates) %.3g, max abs %.3g\n", worst_rel,
            worst_upd, worst_abs);
    tb_adam_free(&a);
    tb_params_free(&t);
}

Test(optim_torch, state_saved_midway_continues_bit_identically, .init = setup, .fini = teardown)
{
    tb_param_table t1, t2;
    make_table(&t1);
    tb_adam a1, a2;
    tb_adam_options o = options();
    cr_assert_eq(tb_adam_init(&a1, &t1, &o), TB_OK);
    for (int step = 0; step < 10; step++) {
        load_grads(&t1, step);
        cr_assert_eq(tb_adam_step(&a1, &t1), TB_OK);
    }
    tb_bert_config cfg = {.vocab_size = 10, .hidden_size = 16, .num_hidden_layers = 1, .num_attention_heads = 2,
                          .intermediate_size = 32, .max_position_embeddings = 8, .type_vocab_size = 2,
                          .layer_norm_eps = 1e-12f, .fit_size = 24};
    tb_train_state st = {.step = a1.step, .seed = UINT64_C(18446744073709551557), .rng_position = 10,
                         .data_position = 320};
    char ckdir[300];
    snprintf(ckdir, sizeof ckdir, "%s/ckpt", tmpdir);
    cr_assert_eq(tb_checkpoint_save(ckdir, a1.step, &cfg, &t1, &a1, &st, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());

    /* a fresh table with the initial weights, then everything restored from the checkpoint */
    make_table(&t2);
    cr_assert_eq(tb_adam_init(&a2, &t2, &o), TB_OK);
    cr_assert_eq(tb_checkpoint_load_params(ckdir, &t2, NULL), TB_OK, "%s", tb_err_msg());
    tb_train_state st2 = {0};
    cr_assert_eq(tb_checkpoint_load_state(ckdir, &t2, &a2, &st2), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(a2.step, 10);
    cr_assert_eq(st2.seed, st.seed);
    cr_assert_eq(st2.rng_position, 10);
    cr_assert_eq(st2.data_position, 320);
    for (int step = 10; step < STEPS; step++) {
        load_grads(&t1, step);
        load_grads(&t2, step);
        cr_assert_eq(tb_adam_step(&a1, &t1), TB_OK);
        cr_assert_eq(tb_adam_step(&a2, &t2), TB_OK);
        cr_assert_eq(memcmp(t1.values, t2.values, t1.total * sizeof(float)), 0, "weights differ after step %d", step);
        cr_assert_eq(memcmp(a1.m, a2.m, a1.total * sizeof(float)), 0, "first moments differ after step %d", step);
        cr_assert_eq(memcmp(a1.v, a2.v, a1.total * sizeof(float)), 0, "second moments differ after step %d", step);
    }
    tb_train_state_free(&st2);
    tb_adam_free(&a1);
    tb_adam_free(&a2);
    tb_params_free(&t1);
    tb_params_free(&t2);
}
