/* stages/distill/distill.h in process: requests per mode, compatibility errors, what each mode freezes, and
 * the loss weights (the weighted gradient is the weighted sum of the per-loss gradients). */
#include "test_distill.h"

#include "distill/distill.h"
#include "tb/train/features.h"

#include <criterion/criterion.h>
#include <math.h>

#define VOCAB 50
#define BATCH 2
#define SEQ 6

Test(distill_api, modes_parse_and_name)
{
    tb_distill_mode m;
    cr_assert_eq(tb_distill_mode_parse("general", &m), TB_OK);
    cr_assert_eq(m, TB_DISTILL_GENERAL);
    cr_assert_eq(tb_distill_mode_parse("task-stage1", &m), TB_OK);
    cr_assert_eq(m, TB_DISTILL_TASK_STAGE1);
    cr_assert_eq(tb_distill_mode_parse("task-stage2", &m), TB_OK);
    cr_assert_eq(m, TB_DISTILL_TASK_STAGE2);
    cr_assert_str_eq(tb_distill_mode_name(TB_DISTILL_TASK_STAGE2), "task-stage2");
    cr_assert_eq(tb_distill_mode_parse("stage1", &m), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "'stage1'") && strstr(tb_err_msg(), "task-stage1"), "%s", tb_err_msg());

    tb_distill_opts o;
    tb_distill_opts_default(&o);
    tb_distill_opts_for_mode(&o, TB_DISTILL_TASK_STAGE1);
    cr_assert_eq(o.adam.schedule, TB_SCHEDULE_CONSTANT, "stage 1 uses a constant learning rate");
    cr_assert_float_eq(o.adam.lr, 5e-5, 1e-12);
    tb_distill_opts_for_mode(&o, TB_DISTILL_TASK_STAGE2);
    cr_assert_eq(o.adam.schedule, TB_SCHEDULE_WARMUP_LINEAR);
    cr_assert_float_eq(o.adam.lr, 3e-5, 1e-12, "stage 2 default lr (SPEC.md)");
}

Test(distill_api, requests_say_what_each_mode_needs)
{
    tb_bert_config c = td_config(VOCAB, 16, 2, 4, 32, TB_HEAD_TINYBERT, 3, 32);
    tb_features_request r;
    cr_assert_eq(tb_distill_request(TB_DISTILL_GENERAL, &c, NULL, NULL, &r), TB_OK);
    cr_assert_eq(r.student_layers, 2);
    cr_assert_eq(r.student_heads, 4);
    cr_assert_eq(r.expect_hidden_size, 32);
    cr_assert_eq(r.logits, 0);
    cr_assert_eq(tb_distill_request(TB_DISTILL_TASK_STAGE2, &c, "fnv1a64:00000000000000aa", NULL, &r), TB_OK);
    cr_assert_eq(r.student_layers, 0);
    cr_assert_eq(r.hidden | r.attn, 0u);
    cr_assert_eq(r.logits, 1);
    cr_assert_str_eq(r.expect_config_hash, "fnv1a64:00000000000000aa");

    /* the TinyBERT mapping the emitter derives from it for a 4-layer teacher (k = 2):
     * hidden 0, 2, 4; attention of teacher layers 1 and 3 */
    tb_features_meta meta = {.layers = 4, .heads = 4, .hidden_size = 32, .num_labels = 3, .dtype = TB_F32};
    tb_features_request res;
    cr_assert_eq(tb_distill_request(TB_DISTILL_TASK_STAGE1, &c, NULL, NULL, &r), TB_OK);
    cr_assert_eq(tb_features_request_resolve(&r, &meta, "s", &res), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(res.hidden, (1u << 0) | (1u << 2) | (1u << 4));
    cr_assert_eq(res.attn, (1u << 1) | (1u << 3));
}

Test(distill_api, incompatible_students_get_clear_errors)
{
    tb_features_meta meta = {.layers = 6, .heads = 12, .hidden_size = 64, .num_labels = 2, .dtype = TB_F32};
    tb_bert_config ok = td_config(VOCAB, 24, 3, 12, 48, TB_HEAD_TINYBERT, 2, 64);
    cr_assert_eq(tb_distill_check_compat(TB_DISTILL_GENERAL, &ok, &meta), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_distill_check_compat(TB_DISTILL_TASK_STAGE2, &ok, &meta), TB_OK, "%s", tb_err_msg());

    tb_bert_config c = ok;
    c.num_hidden_layers = 4; /* 6 / 4 is not an integer */
    cr_assert_eq(tb_distill_check_compat(TB_DISTILL_TASK_STAGE1, &c, &meta), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "6 layers") && strstr(tb_err_msg(), "divisor"), "%s", tb_err_msg());

    c = ok;
    c.num_attention_heads = 6;
    cr_assert_eq(tb_distill_check_compat(TB_DISTILL_GENERAL, &c, &meta), TB_ESHAPE);
    cr_assert(strstr(tb_err_msg(), "6 attention heads") && strstr(tb_err_msg(), "12"), "%s", tb_err_msg());
    /* heads do not matter for the prediction loss */
    cr_assert_eq(tb_distill_check_compat(TB_DISTILL_TASK_STAGE2, &c, &meta), TB_OK, "%s", tb_err_msg());

    c = ok;
    c.fit_size = 32;
    cr_assert_eq(tb_distill_check_compat(TB_DISTILL_GENERAL, &c, &meta), TB_ESHAPE);
    cr_assert(strstr(tb_err_msg(), "fit_dense") && strstr(tb_err_msg(), "64"), "%s", tb_err_msg());

    c = ok;
    c.num_labels = 3;
    cr_assert_eq(tb_distill_check_compat(TB_DISTILL_TASK_STAGE2, &c, &meta), TB_ESHAPE);
    cr_assert(strstr(tb_err_msg(), "2 outputs") && strstr(tb_err_msg(), "3"), "%s", tb_err_msg());

    c = ok;
    c.head = TB_HEAD_NONE;
    c.num_labels = 0;
    cr_assert_eq(tb_distill_check_compat(TB_DISTILL_TASK_STAGE2, &c, &meta), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "classification head"), "%s", tb_err_msg());
}

/* A teacher forward turned into a feature message for `req`, and a student ready to learn. */
typedef struct setup {
    tb_bert_model teacher, student;
    tb_batch batch;
    tb_msg msg;
    tb_features_view view;
} setup;

static void make_setup(setup *s, tb_distill_mode mode)
{
    memset(s, 0, sizeof *s);
    tb_bert_config tc = td_config(VOCAB, 32, 4, 4, 64, TB_HEAD_TINYBERT, 3, 0);
    tb_bert_config sc = td_config(VOCAB, 16, 2, 4, 32, TB_HEAD_TINYBERT, 3, 32);
    cr_assert_eq(tb_bert_init(&s->teacher, &tc), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_bert_init(&s->student, &sc), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&s->teacher, 1);
    tb_bert_init_random(&s->student, 2);
    tb_bert_set_threads(&s->teacher, 1);
    tb_bert_set_threads(&s->student, 1);

    int64_t bt[2] = {BATCH, SEQ}, bb[1] = {BATCH};
    tb_batch *b = &s->batch;
    cr_assert_eq(tb_tensor_alloc(&b->input_ids, TB_I32, 2, bt), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b->token_type_ids, TB_I32, 2, bt), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b->attention_mask, TB_I32, 2, bt), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b->labels, TB_I32, 1, bb), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b->example_ids, TB_I64, 1, bb), TB_OK);
    int32_t *ids = b->input_ids.data, *am = b->attention_mask.data;
    for (int i = 0; i < BATCH * SEQ; i++) {
        ids[i] = 1 + (i * 7) % (VOCAB - 1);
        am[i] = !(i / SEQ == 1 && i % SEQ >= 4); /* second row padded after 4 tokens */
        if (!am[i]) ids[i] = 0;
    }
    ((int32_t *)b->labels.data)[1] = 2;

    tb_features_request req, res;
    tb_features_meta meta;
    tb_features_meta_from_model(&meta, &s->teacher);
    cr_assert_eq(tb_distill_request(mode, &s->student.config, NULL, NULL, &req), TB_OK);
    cr_assert_eq(tb_features_request_resolve(&req, &meta, "s", &res), TB_OK, "%s", tb_err_msg());
    tb_bert_run run;
    memset(&run, 0, sizeof run);
    tb_features_run_flags(&res, &run);
    cr_assert_eq(tb_bert_arena_reserve(&s->teacher, BATCH, SEQ, TB_BERT_TRAIN, 0, 0), TB_OK, "%s", tb_err_msg());
    tb_bert_batch in = {.B = BATCH, .T = SEQ, .input_ids = ids, .token_type_ids = b->token_type_ids.data,
                        .attention_mask = am};
    cr_assert_eq(tb_bert_forward(&s->teacher, &in, &run), TB_OK, "%s", tb_err_msg());
    tb_msg_init(&s->msg);
    cr_assert_eq(tb_batch_to_msg(b, NULL, NULL, &s->msg), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_features_add(&s->msg, &s->teacher, &res, &meta, BATCH, SEQ, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_features_view_init(&s->view, &s->msg, &req), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_distill_prepare(&s->student, mode, BATCH, SEQ), TB_OK, "%s", tb_err_msg());
}

static void free_setup(setup *s)
{
    tb_features_view_free(&s->view);
    tb_msg_free(&s->msg);
    tb_batch_free(&s->batch);
    tb_bert_free(&s->teacher);
    tb_bert_free(&s->student);
}

/* Gradient buffer after one step with the given weights (malloc'd copy). */
static float *grads_with(setup *s, tb_distill_mode mode, double wa, double wh, tb_distill_step_result *r)
{
    tb_distill_loss_opts lo = {.mode = mode, .w_att = wa, .w_hidden = wh, .w_pred = 1, .temperature = 1};
    cr_assert_eq(tb_distill_step(&s->student, &lo, &s->msg, &s->view, 0, r), TB_OK, "%s", tb_err_msg());
    float *g = malloc(s->student.params.total * sizeof(float));
    memcpy(g, s->student.params.grads, s->student.params.total * sizeof(float));
    return g;
}

Test(distill_api, weighted_gradient_is_the_weighted_sum)
{
    setup s;
    make_setup(&s, TB_DISTILL_TASK_STAGE1);
    tb_distill_step_result ra, rh, rw;
    float *ga = grads_with(&s, TB_DISTILL_TASK_STAGE1, 1, 0, &ra);
    float *gh = grads_with(&s, TB_DISTILL_TASK_STAGE1, 0, 1, &rh);
    float *gw = grads_with(&s, TB_DISTILL_TASK_STAGE1, 2, 0.5, &rw);
    cr_assert(ra.parts.att > 0 && ra.parts.hidden > 0, "both losses are positive");
    cr_assert_float_eq(ra.loss, ra.parts.att, 1e-12);
    cr_assert_float_eq(rh.loss, rh.parts.hidden, 1e-12);
    cr_assert_float_eq(rw.loss, 2 * rw.parts.att + 0.5 * rw.parts.hidden, 1e-9);
    double maxg = 0, maxd = 0;
    for (size_t i = 0; i < s.student.params.total; i++) {
        double want = 2.0 * ga[i] + 0.5 * gh[i];
        maxg = fmax(maxg, fabs(want));
        maxd = fmax(maxd, fabs(gw[i] - want));
    }
    cr_assert(maxg > 0);
    cr_assert(maxd <= 1e-5 * maxg, "weighted gradient differs from 2 g_att + 0.5 g_hidden by %.3g (max %.3g)", maxd,
              maxg);
    /* the attention loss reaches fit_dense not at all, the hidden loss does */
    tb_param *fw = tb_params_find(&s.student.params, "fit_dense.weight");
    size_t off = tb_params_offset(&s.student.params, fw);
    double fa = 0, fh = 0;
    for (int64_t i = 0; i < tb_tensor_numel(&fw->value); i++) {
        fa = fmax(fa, fabs(ga[off + i]));
        fh = fmax(fh, fabs(gh[off + i]));
    }
    cr_assert_eq(fa, 0.0, "fit_dense gets no gradient from the attention loss");
    cr_assert_gt(fh, 0.0);
    free(ga);
    free(gh);
    free(gw);
    free_setup(&s);
}

Test(distill_api, each_mode_freezes_what_gets_no_gradient)
{
    setup s;
    make_setup(&s, TB_DISTILL_TASK_STAGE1);
    const tb_param_table *p = &s.student.params;
    for (int i = 0; i < p->count; i++) {
        const char *n = p->items[i].name;
        int head = !strncmp(n, "bert.pooler.", 12) || !strncmp(n, "classifier.", 11);
        cr_assert_eq(p->items[i].trainable, !head, "stage 1: %s trainable = %d", n, p->items[i].trainable);
    }
    free_setup(&s);
    make_setup(&s, TB_DISTILL_TASK_STAGE2);
    p = &s.student.params;
    for (int i = 0; i < p->count; i++) {
        const char *n = p->items[i].name;
        cr_assert_eq(p->items[i].trainable, strncmp(n, "fit_dense.", 10) != 0, "stage 2: %s trainable = %d", n,
                     p->items[i].trainable);
    }
    /* the stage 2 loss at temperature 2 is the soft cross-entropy of z / 2 (SPEC.md), written out here */
    tb_distill_loss_opts lo = {.mode = TB_DISTILL_TASK_STAGE2, .w_att = 1, .w_hidden = 1, .w_pred = 1,
                               .temperature = 2};
    tb_distill_step_result r;
    cr_assert_eq(tb_distill_step(&s.student, &lo, &s.msg, &s.view, 0, &r), TB_OK, "%s", tb_err_msg());
    const float *zs = tb_bert_logits(&s.student), *zt = s.view.logits;
    double want = 0;
    for (int i = 0; i < BATCH; i++) {
        double ms = -INFINITY, mt = -INFINITY, ss = 0, st = 0;
        for (int c = 0; c < 3; c++) {
            ms = fmax(ms, zs[i * 3 + c] / 2.0);
            mt = fmax(mt, zt[i * 3 + c] / 2.0);
        }
        for (int c = 0; c < 3; c++) {
            ss += exp(zs[i * 3 + c] / 2.0 - ms);
            st += exp(zt[i * 3 + c] / 2.0 - mt);
        }
        for (int c = 0; c < 3; c++) {
            double pt = exp(zt[i * 3 + c] / 2.0 - mt) / st;
            double lps = zs[i * 3 + c] / 2.0 - ms - log(ss);
            want += -pt * lps;
        }
    }
    want /= BATCH * 3;
    cr_assert_float_eq(r.parts.pred, want, 1e-6 * fabs(want), "soft CE at temperature 2: %.9g vs %.9g", r.parts.pred, want);
    free_setup(&s);
}

/* One step on a teacher feature holding a NaN (poked into the feature message in memory): it fails
 * naming the loss term and the message number. */
static void expect_nan_term(tb_distill_mode mode, int which, const char *want)
{
    setup s;
    make_setup(&s, mode);
    float *target = NULL;
    for (int j = 1; !target && which == 0 && j <= TB_FEATURES_MAX_LAYERS; j++) target = (float *)s.view.hidden[j];
    for (int l = 0; !target && which == 1 && l < TB_FEATURES_MAX_LAYERS; l++) target = (float *)s.view.scores[l];
    if (which == 2) target = (float *)s.view.logits;
    cr_assert_not_null(target, "the feature message carries no tensor of kind %d", which);
    target[1] = NAN;
    tb_distill_loss_opts lo = {.mode = mode, .w_att = 1, .w_hidden = 1, .w_pred = 1, .temperature = 1};
    tb_distill_step_result r;
    int rc = tb_distill_step(&s.student, &lo, &s.msg, &s.view, 7, &r);
    cr_assert_eq(rc, TB_EINVAL, "got %d: %s", rc, tb_err_msg());
    cr_assert(strstr(tb_err_msg(), want), "message: %s\nwanted: %s", tb_err_msg(), want);
    free_setup(&s);
}

Test(distill_api, a_nan_teacher_feature_names_the_loss_term)
{
    expect_nan_term(TB_DISTILL_GENERAL, 0, "message 7: the hidden loss is nan");
    expect_nan_term(TB_DISTILL_TASK_STAGE1, 1, "message 7: the attention loss is nan");
    expect_nan_term(TB_DISTILL_TASK_STAGE2, 2, "message 7: the prediction loss is nan");
}
