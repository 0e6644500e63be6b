/* Reference test of the whole BERT model (tb/model/bert.h) and the TinyBERT losses against a float64
 * PyTorch implementation written from the formulas (tests/reference/py/bert_ref.py, tbref.py).
 *
 * C writes a teacher (4 layers, hidden 32, HF head, MLM head), a student (2 layers, hidden 24,
 * TinyBERT head, fit_dense to 32) and a regression student (HF head, 1 label) with the inputs to
 * a safetensors file; the script rebuilds the models in torch float64 from it and writes every
 * output, loss and parameter gradient back. With dropout off, every tensor must agree:
 * ||C - ref|| / ||ref|| <= 1e-4 (fp32 C against float64 torch), max abs error reported. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdcheck.h"
#include "tb/model/bert.h"
#include "tb/base/error.h"
#include "tb/model/loss.h"
#include "tb/store/safetensors.h"

enum { B = 3, T = 9 };
#define TOL 1e-4

static tb_bert_config cfg_teacher(void)
{
    tb_bert_config c = {0};
    c.vocab_size = 60;
    c.hidden_size = 32;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.intermediate_size = 64;
    c.max_position_embeddings = 32;
    c.type_vocab_size = 2;
    c.layer_norm_eps = 1e-12f;
    c.hidden_dropout_prob = 0.1f;
    c.attention_probs_dropout_prob = 0.1f;
    c.initializer_range = 0.1f;
    c.pad_token_id = 0;
    c.head = TB_HEAD_HF;
    c.num_labels = 3;
    c.classifier_dropout = 0.1f;
    c.mlm_head = 1;
    return c;
}

static tb_bert_config cfg_student(void)
{
    tb_bert_config c = cfg_teacher();
    c.hidden_size = 24;
    c.num_hidden_layers = 2;
    c.intermediate_size = 48;
    c.head = TB_HEAD_TINYBERT;
    c.mlm_head = 0;
    c.fit_size = 32;
    return c;
}

static tb_bert_config cfg_sreg(void)
{
    tb_bert_config c = cfg_student();
    c.head = TB_HEAD_HF;
    c.num_labels = 1;
    c.fit_size = 0;
    return c;
}

static int cfg_json(char *buf, size_t n, const tb_bert_config *c)
{
    const char *head = c->head == TB_HEAD_TINYBERT ? "tinybert" : c->head == TB_HEAD_HF ? "hf" : "none";
    return snprintf(buf, n,
                    "{\"vocab_size\":%d,\"hidden_size\":%d,\"num_hidden_layers\":%d,"
                    "\"num_attention_heads\":%d,\"intermediate_size\":%d,\"max_position_embeddings\":%d,"
                    "\"type_vocab_size\":%d,\"layer_norm_eps\":%.9g,\"pad_token_id\":%d,\"head\":\"%s\","
                    "\"num_labels\":%d,\"mlm_head\":%d,\"fit_size\":%d}",
                    c->vocab_size, c->hidden_size, c->num_hidden_layers, c->num_attention_heads,
                    c->intermediate_size, c->max_position_embeddings, c->type_vocab_size,
                    (double)c->layer_norm_eps, c->pad_token_id, head, c->num_labels, c->mlm_head, c->fit_size);
}

/* Random weights (N(0, 0.1)) and random biases / LayerNorm parameters, so every parameter matters. */
static void model_make(tb_bert_model *m, tb_bert_config c, uint64_t seed)
{
    cr_assert_eq(tb_bert_init(m, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(m, seed);
    for (int i = 0; i < m->params.count; i++) {
        tb_param *p = &m->params.items[i];
        size_t n = (size_t)tb_tensor_numel(&p->value);
        if (strstr(p->name, "LayerNorm.weight"))
            tb_fd_fill(p->value.data, n, seed * 1000 + i, 0.7f, 1.3f);
        else if (p->value.ndim == 1)
            tb_fd_fill(p->value.data, n, seed * 1000 + i, -0.2f, 0.2f);
    }
    tb_bert_set_threads(m, 2);
    cr_assert_eq(tb_bert_arena_reserve(m, B, T, TB_BERT_TRAIN, 0, c.mlm_head), TB_OK, "%s", tb_err_msg());
}

/* ---- comparison against out.safetensors ------------------------------------------------------ */

static tb_st_file g_out;
static int g_fail;
static double g_worst;

static void compare(const char *name, const float *c, size_t n)
{
    const tb_st_entry *e = tb_st_find(&g_out, name);
    cr_assert(e, "reference output %s is missing", name);
    cr_assert_eq(e->dtype, TB_F64, "%s dtype", name);
    size_t bytes = (size_t)(e->end - e->begin);
    cr_assert_eq(bytes, n * sizeof(double), "%s: reference has %zu values, C %zu", name, bytes / 8, n);
    double *ref = malloc(bytes);
    cr_assert_eq(tb_st_read(&g_out, e, ref, bytes), TB_OK, "%s", tb_err_msg());
    double d2 = 0, r2 = 0, c2 = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)c[i] - ref[i];
        d2 += d * d;
        r2 += ref[i] * ref[i];
        c2 += (double)c[i] * c[i];
        mx = fmax(mx, fabs(d));
    }
    free(ref);
    double rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
    int ok;
    if (sqrt(r2) < 1e-12) {
        /* Exactly zero in exact arithmetic (a key bias without an attention loss: a constant
         * shift of a softmax row). C must be at fp32 rounding level. */
        ok = sqrt(c2) < 1e-6;
        fprintf(stderr, "%-72s zero ref, |C| %.2e %s\n", name, sqrt(c2), ok ? "" : "FAIL");
    } else {
        ok = rel <= TOL;
        if (rel > g_worst) g_worst = rel;
        fprintf(stderr, "%-72s rel %.2e max abs %.2e %s\n", name, rel, mx, ok ? "" : "FAIL");
    }
    if (!ok) g_fail++;
}

/* The same on the entries the attention loss keeps (reference > -100): the masked ones carry
 * -10000, whose fp32 ulp (~1e-3) would otherwise dominate the tensor's norm. */
static void compare_unmasked(const char *name, const float *c, size_t n)
{
    const tb_st_entry *e = tb_st_find(&g_out, name);
    cr_assert(e, "reference output %s is missing", name);
    double *ref = malloc(n * sizeof(double));
    cr_assert_eq(tb_st_read(&g_out, e, ref, n * sizeof(double)), TB_OK, "%s", tb_err_msg());
    double d2 = 0, r2 = 0, mx = 0;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (ref[i] <= -100) continue;
        double d = (double)c[i] - ref[i];
        d2 += d * d;
        r2 += ref[i] * ref[i];
        mx = fmax(mx, fabs(d));
        kept++;
    }
    free(ref);
    double rel = sqrt(d2 / r2);
    int ok = kept > 0 && rel <= TOL;
    if (rel > g_worst) g_worst = rel;
    fprintf(stderr, "%-60s (unmasked) rel %.2e max abs %.2e %s\n", name, rel, mx, ok ? "" : "FAIL");
    if (!ok) g_fail++;
}

static void compare_scalar(const char *name, double v)
{
    float f = (float)v;
    const tb_st_entry *e = tb_st_find(&g_out, name);
    cr_assert(e, "reference output %s is missing", name);
    double ref;
    cr_assert_eq(tb_st_read(&g_out, e, &ref, sizeof ref), TB_OK, "%s", tb_err_msg());
    double rel = fabs(v - ref) / fabs(ref);
    int ok = rel <= TOL;
    fprintf(stderr, "%-72s C %.9g ref %.9g rel %.2e %s\n", name, v, ref, rel, ok ? "" : "FAIL");
    (void)f;
    if (!ok) g_fail++;
}

static void compare_grads(const tb_bert_model *m, const char *prefix)
{
    char name[256];
    for (int i = 0; i < m->params.count; i++) {
        const tb_param *p = &m->params.items[i];
        snprintf(name, sizeof name, "grad.%s/%s", prefix, p->name);
        compare(name, p->grad.data, (size_t)tb_tensor_numel(&p->grad));
    }
}

/* ---- the test -------------------------------------------------------------------------------- */

static void write_inputs(const char *path, tb_bert_model *models[3], const char *names[3],
                         int32_t *ids, int32_t *types, int32_t *mask, int32_t *labels,
                         int32_t *mlm_labels, float *gold)
{
    int cap = 16;
    for (int k = 0; k < 3; k++) cap += models[k]->params.count;
    tb_st_item *items = calloc((size_t)cap, sizeof *items);
    char (*pn)[200] = calloc((size_t)cap, sizeof *pn);
    tb_tensor in[6];
    int n = 0;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < models[k]->params.count; i++) {
            snprintf(pn[n], sizeof pn[n], "%s/%s", names[k], models[k]->params.items[i].name);
            items[n].name = pn[n];
            items[n].tensor = &models[k]->params.items[i].value;
            n++;
        }
    int64_t bt[2] = {B, T}, b1[1] = {B};
    tb_tensor_borrow(&in[0], TB_I32, 2, bt, ids);
    tb_tensor_borrow(&in[1], TB_I32, 2, bt, types);
    tb_tensor_borrow(&in[2], TB_I32, 2, bt, mask);
    tb_tensor_borrow(&in[3], TB_I32, 1, b1, labels);
    tb_tensor_borrow(&in[4], TB_I32, 2, bt, mlm_labels);
    tb_tensor_borrow(&in[5], TB_F32, 1, b1, gold);
    const char *in_names[6] = {"input_ids", "token_type_ids", "attention_mask", "labels", "mlm_labels", "gold"};
    for (int i = 0; i < 6; i++) {
        items[n].name = in_names[i];
        items[n].tensor = &in[i];
        n++;
    }
    char c0[1024], c1[1024], c2[1024], all[3200];
    cfg_json(c0, sizeof c0, &models[0]->config);
    cfg_json(c1, sizeof c1, &models[1]->config);
    cfg_json(c2, sizeof c2, &models[2]->config);
    snprintf(all, sizeof all, "{\"%s\":%s,\"%s\":%s,\"%s\":%s}", names[0], c0, names[1], c1, names[2], c2);
    tb_st_meta meta[1] = {{"configs", all}};
    cr_assert_eq(tb_st_write(path, items, n, meta, 1), TB_OK, "%s", tb_err_msg());
    free(items);
    free(pn);
}

Test(bert_torch, forward_losses_and_every_gradient_match_float64_torch, .timeout = 300)
{
    static tb_bert_model teacher, student, sreg;
    model_make(&teacher, cfg_teacher(), 1);
    model_make(&student, cfg_student(), 2);
    model_make(&sreg, cfg_sreg(), 3);

    int32_t ids[B * T], types[B * T], mask[B * T], labels[B] = {2, 0, 1}, mlm_labels[B * T];
    float gold[B] = {0.5f, -1.25f, 2.0f};
    const int len[B] = {9, 6, 8}; /* valid tokens per sequence; the rest is [PAD] (id 0) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t, valid = t < len[b];
            ids[i] = valid ? (t == 0 ? 2 : 3 + (b * 31 + t * 7) % 57) : 0;
            types[i] = valid && t >= len[b] / 2;
            mask[i] = valid;
            mlm_labels[i] = valid && (t % 3 == 1) ? (b * 13 + t * 5) % 60 : TB_IGNORE_INDEX;
        }

    char dir[] = "/tmp/tb-bert-torch-XXXXXX", path[256], cmd[1024];
    cr_assert(mkdtemp(dir));
    tb_bert_model *models[3] = {&teacher, &student, &sreg};
    const char *names[3] = {"teacher", "student", "sreg"};
    snprintf(path, sizeof path, "%s/in.safetensors", dir);
    write_inputs(path, models, names, ids, types, mask, labels, mlm_labels, gold);
    snprintf(cmd, sizeof cmd, "%s %s/tests/reference/py/bert_ref.py %s", TB_PYTHON, TB_SOURCE_DIR, dir);
    cr_assert_eq(system(cmd), 0, "the PyTorch reference script failed: %s", cmd);
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    cr_assert_eq(tb_st_open(&g_out, path), TB_OK, "%s", tb_err_msg());

    tb_bert_batch batch = {B, T, ids, types, mask};
    char name[128];
    const size_t S = (size_t)B * 4 * T * T;

    /* Teacher: features, fine-tuning CE + MLM CE, gradients. */
    tb_bert_run run = {.dropout = 0, .logits = 1, .mlm = 1};
    cr_assert_eq(tb_bert_forward(&teacher, &batch, &run), TB_OK, "%s", tb_err_msg());
    for (int j = 0; j <= 4; j++) {
        snprintf(name, sizeof name, "teacher.hidden.%d", j);
        compare(name, tb_bert_hidden(&teacher, j), (size_t)B * T * 32);
    }
    for (int l = 0; l < 4; l++) {
        snprintf(name, sizeof name, "teacher.scores.%d", l);
        compare(name, tb_bert_scores(&teacher, l), S);
        compare_unmasked(name, tb_bert_scores(&teacher, l), S);
    }
    compare("teacher.pooled", tb_bert_pooled(&teacher), (size_t)B * 32);
    compare("teacher.logits", tb_bert_logits(&teacher), (size_t)B * 3);
    compare("teacher.mlm_logits", tb_bert_mlm_logits(&teacher), (size_t)B * T * 60);
    static float dlogits[B * 3], dmlm[B * T * 60];
    double l_ce = 0, l_mlm = 0;
    tb_bert_zero_grad(&teacher);
    cr_assert_eq(tb_loss_ce(&l_ce, dlogits, tb_bert_logits(&teacher), labels, B, 3, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK);
    cr_assert_eq(tb_loss_ce(&l_mlm, dmlm, tb_bert_mlm_logits(&teacher), mlm_labels, B * T, 60, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK);
    compare_scalar("loss.teacher.ce", l_ce);
    compare_scalar("loss.teacher.mlm", l_mlm);
    tb_bert_grads tg = {.dlogits = dlogits, .dmlm_logits = dmlm};
    cr_assert_eq(tb_bert_backward(&teacher, &tg), TB_OK, "%s", tb_err_msg());
    compare_grads(&teacher, "teacher_ft");

    /* Student: stage 1 against the teacher's (C) features, then stage 2. */
    const float *th[5], *ts[4];
    for (int j = 0; j <= 4; j++) th[j] = tb_bert_hidden(&teacher, j);
    for (int l = 0; l < 4; l++) ts[l] = tb_bert_scores(&teacher, l);
    tb_bert_teacher tf = {4, 32, th, ts, tb_bert_logits(&teacher)};
    tb_bert_run srun = {.dropout = 0, .logits = 1};
    cr_assert_eq(tb_bert_forward(&student, &batch, &srun), TB_OK, "%s", tb_err_msg());
    for (int j = 0; j <= 2; j++) {
        snprintf(name, sizeof name, "student.hidden.%d", j);
        compare(name, tb_bert_hidden(&student, j), (size_t)B * T * 24);
    }
    for (int l = 0; l < 2; l++) {
        snprintf(name, sizeof name, "student.scores.%d", l);
        compare(name, tb_bert_scores(&student, l), S);
        compare_unmasked(name, tb_bert_scores(&student, l), S);
    }
    compare("student.logits", tb_bert_logits(&student), (size_t)B * 3);
    tb_bert_distill_losses dl;
    tb_bert_grads g;
    tb_bert_zero_grad(&student);
    cr_assert_eq(tb_bert_distill_loss(&student, &tf, TB_DISTILL_INTERMEDIATE, 1.0f, NULL, &dl, &g), TB_OK, "%s", tb_err_msg());
    compare_scalar("loss.s1.att", dl.att);
    compare_scalar("loss.s1.hidden", dl.hidden);
    compare_scalar("loss.s1.emb", dl.emb);
    cr_assert_eq(tb_bert_backward(&student, &g), TB_OK, "%s", tb_err_msg());
    compare_grads(&student, "s1");
    tb_bert_zero_grad(&student);
    cr_assert_eq(tb_bert_distill_loss(&student, &tf, TB_DISTILL_PREDICTION, 1.0f, NULL, &dl, &g), TB_OK, "%s", tb_err_msg());
    compare_scalar("loss.s2.soft", dl.pred);
    cr_assert_eq(tb_bert_backward(&student, &g), TB_OK, "%s", tb_err_msg());
    compare_grads(&student, "s2");

    /* Regression student: MSE to the gold values, with the last layer on the [CLS] rows only. */
    tb_bert_run crun = {.dropout = 0, .logits = 1, .cls_only = 1};
    cr_assert_eq(tb_bert_forward(&sreg, &batch, &crun), TB_OK, "%s", tb_err_msg());
    compare("sreg.logits", tb_bert_logits(&sreg), B);
    tb_bert_zero_grad(&sreg);
    cr_assert_eq(tb_bert_distill_loss(&sreg, &tf, TB_DISTILL_PREDICTION, 1.0f, gold, &dl, &g), TB_OK, "%s", tb_err_msg());
    compare_scalar("loss.reg", dl.pred);
    cr_assert_eq(tb_bert_backward(&sreg, &g), TB_OK, "%s", tb_err_msg());
    compare_grads(&sreg, "reg");

    fprintf(stderr, "worst relative error %.3g (tolerance %g)\n", g_worst, TOL);
    tb_st_close(&g_out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    tb_bert_free(&teacher);
    tb_bert_free(&student);
    tb_bert_free(&sreg);
    cr_assert_eq(g_fail, 0, "%d tensors differ from the float64 torch reference (see the table above)", g_fail);
}
