/* Unit tests: non-finite weights never pass silently. A checkpoint holding a NaN or an infinity is
 * refused on load and never written on save (the error names the tensor, the element and the file),
 * and the ReLU of the classification head keeps NaN as torch.relu does (torch.relu(nan) = nan) while
 * giving the same bits as before for every finite input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/model/ops.h"
#include "tb/model/optim.h"
#include "tb/store/checkpoint.h"
#include "tb/store/safetensors.h"

static char dir[128];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    snprintf(dir, sizeof dir, "/tmp/tb-finite-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(finite, .init = setup, .fini = teardown);

static const tb_param_spec SPECS[] = {
    {"bert.embeddings.word_embeddings.weight", 2, {10, 4}, 0, 1},
    {"bert.pooler.dense.weight", 2, {4, 4}, 0, 1},
    {"classifier.weight", 2, {2, 4}, 0, 1},
};
#define NSPEC ((int)(sizeof SPECS / sizeof SPECS[0]))

static tb_bert_config config(void)
{
    tb_bert_config c = {.vocab_size = 10, .hidden_size = 4, .num_hidden_layers = 1, .num_attention_heads = 2,
                        .intermediate_size = 8, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .initializer_range = 0.02f, .head = TB_HEAD_TINYBERT,
                        .num_labels = 2};
    return c;
}

static void make_table(tb_param_table *t)
{
    cr_assert_eq(tb_params_alloc(t, SPECS, NSPEC), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < t->count; i++) {
        float *v = t->items[i].value.data;
        for (int64_t k = 0; k < tb_tensor_numel(&t->items[i].value); k++) v[k] = 0.25f * (float)(i + 1) - (float)k / 64;
    }
}

static float *values(tb_param_table *t, const char *name)
{
    tb_param *p = tb_params_find(t, name);
    cr_assert_not_null(p, "no parameter %s", name);
    return p->value.data;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

Test(finite, save_refuses_a_nan_parameter_and_writes_nothing)
{
    tb_param_table t = {0};
    make_table(&t);
    tb_bert_config c = config();
    values(&t, "bert.pooler.dense.weight")[5] = NAN;
    char ck[256];
    snprintf(ck, sizeof ck, "%s/run", dir);
    int rc = tb_checkpoint_save(ck, 3, &c, &t, NULL, NULL, NULL, NULL, 0);
    cr_expect_eq(rc, TB_EFORMAT, "got %d: %s", rc, tb_err_msg());
    const char *m = tb_err_msg();
    cr_expect(strstr(m, "'bert.pooler.dense.weight'") && strstr(m, "NaN at element 5 (of 16)") &&
                  strstr(m, "run/step-3"), "message: %s", m);
    char p[300];
    snprintf(p, sizeof p, "%s/run/step-3", dir);
    cr_expect(!exists(p), "a checkpoint with a NaN was written");
    snprintf(p, sizeof p, "%s/run/latest", dir);
    cr_expect(!exists(p));
    tb_params_free(&t);
}

Test(finite, save_refuses_an_infinite_optimiser_moment)
{
    tb_param_table t = {0};
    make_table(&t);
    tb_bert_config c = config();
    tb_adam a = {0};
    tb_adam_options o;
    tb_adam_options_default(&o);
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK, "%s", tb_err_msg());
    tb_param *cls = tb_params_find(&t, "classifier.weight");
    a.v[tb_params_offset(&t, cls) + 7] = INFINITY;
    tb_train_state st = {.step = a.step};
    char ck[256];
    snprintf(ck, sizeof ck, "%s/run", dir);
    int rc = tb_checkpoint_save(ck, 1, &c, &t, &a, &st, NULL, NULL, 0);
    cr_expect_eq(rc, TB_EFORMAT, "got %d: %s", rc, tb_err_msg());
    cr_expect(strstr(tb_err_msg(), "next_v of 'classifier.weight' holds an infinity at element 7"), "message: %s",
              tb_err_msg());
    tb_adam_free(&a);
    tb_params_free(&t);
}

/* Saves a finite table, then overwrites one float of tensor `name` in model.safetensors on disk. */
static void save_then_poison(const char *ck, const char *name, int64_t element, float bad)
{
    tb_param_table t = {0};
    make_table(&t);
    tb_bert_config c = config();
    cr_assert_eq(tb_checkpoint_save(ck, 1, &c, &t, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    tb_params_free(&t);
    char path[400];
    snprintf(path, sizeof path, "%s/step-1/%s", ck, TB_CKPT_MODEL);
    tb_st_file f = {0};
    cr_assert_eq(tb_st_open(&f, path), TB_OK, "%s", tb_err_msg());
    const tb_st_entry *e = tb_st_find(&f, name);
    cr_assert_not_null(e);
    long off = (long)((f.data - (const uint8_t *)f.map) + (long)e->begin) + (long)element * 4;
    tb_st_close(&f);
    FILE *fp = fopen(path, "r+b");
    cr_assert_not_null(fp);
    cr_assert_eq(fseek(fp, off, SEEK_SET), 0);
    cr_assert_eq(fwrite(&bad, 4, 1, fp), 1u);
    cr_assert_eq(fclose(fp), 0);
}

Test(finite, load_refuses_a_nan_word_embedding_naming_tensor_element_and_file)
{
    char ck[256];
    snprintf(ck, sizeof ck, "%s/run", dir);
    save_then_poison(ck, "bert.embeddings.word_embeddings.weight", 13, NAN);
    tb_param_table t = {0};
    cr_assert_eq(tb_params_alloc(&t, SPECS, NSPEC), TB_OK);
    int rc = tb_checkpoint_load_params(ck, &t, NULL);
    cr_expect_eq(rc, TB_EFORMAT, "got %d: %s", rc, tb_err_msg());
    const char *m = tb_err_msg();
    cr_expect(strstr(m, "run/step-1/model.safetensors: tensor 'bert.embeddings.word_embeddings.weight' holds NaN "
                        "at element 13 (of 40)"), "message: %s", m);
    tb_params_free(&t);
}

Test(finite, load_refuses_an_infinite_classifier_weight)
{
    char ck[256];
    snprintf(ck, sizeof ck, "%s/run", dir);
    save_then_poison(ck, "classifier.weight", 0, -INFINITY);
    tb_param_table t = {0};
    cr_assert_eq(tb_params_alloc(&t, SPECS, NSPEC), TB_OK);
    cr_expect_eq(tb_checkpoint_load_params(ck, &t, NULL), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "'classifier.weight' holds an infinity at element 0 (of 8)"), "message: %s",
              tb_err_msg());
    tb_params_free(&t);
}

Test(finite, a_finite_checkpoint_still_loads)
{
    char ck[256];
    snprintf(ck, sizeof ck, "%s/run", dir);
    save_then_poison(ck, "classifier.weight", 1, 3.5f); /* finite: a plain edit */
    tb_param_table t = {0};
    cr_assert_eq(tb_params_alloc(&t, SPECS, NSPEC), TB_OK);
    cr_expect_eq(tb_checkpoint_load_params(ck, &t, NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(values(&t, "classifier.weight")[1], 3.5f);
    tb_params_free(&t);
}

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

Test(finite, relu_keeps_nan_like_torch_and_finite_results_are_unchanged)
{
    /* torch.relu(torch.tensor([nan, -nan, inf, -inf, 2.5, -2.5, 0., -0., 1e-45, -1e-45]))
     *   = [nan, nan, inf, 0., 2.5, 0., 0., 0., 1e-45, 0.] */
    float in[10] = {NAN, -NAN, INFINITY, -INFINITY, 2.5f, -2.5f, 0.0f, -0.0f, 1e-45f, -1e-45f};
    float out[10];
    cr_assert_eq(tb_relu_forward(out, in, 10), TB_OK);
    cr_expect(isnan(out[0]) && isnan(out[1]), "relu(NaN) gave %g, %g", out[0], out[1]);
    cr_expect(isinf(out[2]) && out[2] > 0);
    cr_expect_eq(bits(out[3]), bits(0.0f));
    cr_expect_eq(out[4], 2.5f);
    cr_expect_eq(bits(out[5]), bits(0.0f));
    cr_expect_eq(bits(out[6]), bits(0.0f));
    cr_expect_eq(bits(out[7]), bits(0.0f), "relu(-0) must stay +0 as before the change");
    cr_expect_eq(out[8], 1e-45f);
    cr_expect_eq(bits(out[9]), bits(0.0f));
    /* in place, as the head may call it */
    cr_assert_eq(tb_relu_forward(in, in, 10), TB_OK);
    cr_expect(isnan(in[0]));
}
