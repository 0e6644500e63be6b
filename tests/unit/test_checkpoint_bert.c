/* Unit tests: checkpoints of real tb_bert_model parameter tables (tb/model/bert.h) - a trained student
 * with its BertAdam state saved and resumed bit-identically, a general student loaded into a
 * stage-1 student whose head is not in the file, and the head-kind check. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/model/optim.h"

static char dir[128];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    snprintf(dir, sizeof dir, "/tmp/tb-ckbert-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* demo-student.json with a small vocabulary (the table's layout does not depend on it). */
static tb_bert_config student(tb_head_kind head)
{
    tb_bert_config c;
    char path[512];
    snprintf(path, sizeof path, "%s/configs/demo-student.json", TB_SOURCE_DIR);
    cr_assert_eq(tb_config_load(path, &c), TB_OK, "%s", tb_err_msg());
    c.vocab_size = 100;
    c.head = head;
    c.num_labels = head == TB_HEAD_NONE ? 0 : 2;
    return c;
}

static void fake_grads(tb_bert_model *m, int step)
{
    for (size_t i = 0; i < m->params.total; i++)
        m->params.grads[i] = (float)((int)((i * 2654435761u + (unsigned)step * 40503u) % 2001u) - 1000) * 1e-4f;
}

Test(checkpoint_bert, trained_student_resumes_bit_identically, .init = setup, .fini = teardown)
{
    tb_bert_config c = student(TB_HEAD_TINYBERT);
    tb_bert_model a, b;
    cr_assert_eq(tb_bert_init(&a, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&a, 42);
    /* stage 1: pooler and classifier are not trained */
    cr_assert(tb_bert_set_trainable(&a, "bert.pooler.", 0) > 0);
    cr_assert(tb_bert_set_trainable(&a, "classifier.", 0) > 0);
    tb_adam oa, ob;
    tb_adam_options o;
    tb_adam_options_default(&o);
    o.lr = 1e-3;
    o.schedule = TB_SCHEDULE_CONSTANT;
    cr_assert_eq(tb_adam_init(&oa, &a.params, &o), TB_OK);
    for (int s = 0; s < 3; s++) {
        fake_grads(&a, s);
        cr_assert_eq(tb_adam_step(&oa, &a.params), TB_OK);
    }
    tb_train_state st = {.step = 3, .seed = 42, .rng_position = 3, .data_position = 96};
    char ck[300];
    snprintf(ck, sizeof ck, "%s/student", dir);
    cr_assert_eq(tb_checkpoint_save(ck, 3, &c, &a.params, &oa, &st, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());

    tb_bert_config d;
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_HEAD_TINYBERT, &d), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
    cr_assert_eq(tb_bert_init(&b, &d), TB_OK);
    tb_bert_init_random(&b, 7);
    cr_assert(tb_bert_set_trainable(&b, "bert.pooler.", 0) > 0);
    cr_assert(tb_bert_set_trainable(&b, "classifier.", 0) > 0);
    cr_assert_eq(tb_adam_init(&ob, &b.params, &o), TB_OK);
    cr_assert_eq(tb_checkpoint_load_params(ck, &b.params, NULL), TB_OK, "%s", tb_err_msg());
    tb_train_state rs = {0};
    cr_assert_eq(tb_checkpoint_load_state(ck, &b.params, &ob, &rs), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(a.params.total, b.params.total);
    cr_assert_eq(memcmp(a.params.values, b.params.values, a.params.total * sizeof(float)), 0);
    for (int s = 3; s < 5; s++) {
        fake_grads(&a, s);
        fake_grads(&b, s);
        cr_assert_eq(tb_adam_step(&oa, &a.params), TB_OK);
        cr_assert_eq(tb_adam_step(&ob, &b.params), TB_OK);
    }
    cr_assert_eq(memcmp(a.params.values, b.params.values, a.params.total * sizeof(float)), 0,
                 "resumed training diverged");
    /* the stage-1 head was never trained */
    const tb_param *cw = &a.params.items[a.cls_w];
    for (int64_t k = 0; k < tb_tensor_numel(&cw->value); k++) cr_assert_eq(oa.m[tb_params_offset(&a.params, cw) + k], 0.0f);
    tb_train_state_free(&rs);
    tb_adam_free(&oa);
    tb_adam_free(&ob);
    tb_bert_free(&a);
    tb_bert_free(&b);
}

Test(checkpoint_bert, general_student_initialises_a_task_student, .init = setup, .fini = teardown)
{
    tb_bert_config g = student(TB_HEAD_NONE);
    tb_bert_model gm, tm;
    cr_assert_eq(tb_bert_init(&gm, &g), TB_OK);
    tb_bert_init_random(&gm, 1);
    char ck[300];
    snprintf(ck, sizeof ck, "%s/general", dir);
    cr_assert_eq(tb_checkpoint_save(ck, 100, &g, &gm.params, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());

    /* the task student has a head the general checkpoint lacks */
    tb_bert_config loaded;
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_HEAD_TINYBERT, &loaded), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "\"none\""), "%s", tb_err_msg());
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_CKPT_ANY_HEAD, &loaded), TB_OK);
    loaded.head = TB_HEAD_TINYBERT;
    loaded.num_labels = 2;
    cr_assert_eq(tb_bert_init(&tm, &loaded), TB_OK);
    tb_bert_init_random(&tm, 2);
    cr_assert_eq(tb_checkpoint_load_params(ck, &tm.params, NULL), TB_ENOTFOUND);
    cr_assert(strstr(tb_err_msg(), "classifier.weight") && strstr(tb_err_msg(), "bert.pooler.dense.weight"), "%s",
              tb_err_msg());
    const char *head[] = {"bert.pooler.", "classifier.", NULL};
    float before = ((float *)tm.params.items[tm.cls_w].value.data)[0];
    cr_assert_eq(tb_checkpoint_load_params(ck, &tm.params, head), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(((float *)tm.params.items[tm.cls_w].value.data)[0], before); /* kept its init */
    for (int i = 0; i < gm.params.count; i++) {
        const tb_param *p = &gm.params.items[i];
        const tb_param *q = tb_params_find(&tm.params, p->name);
        cr_assert_not_null(q, "%s", p->name);
        cr_assert_eq(memcmp(p->value.data, q->value.data, tb_tensor_nbytes(&p->value)), 0, "%s", p->name);
    }
    tb_bert_free(&gm);
    tb_bert_free(&tm);
}
