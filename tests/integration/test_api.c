/* The inference API (tb/api/tinybert.h) in process: batched logits equal the one-text calls
 * whatever the batch size and order, classify/score agree with the logits, label names come from
 * config.json, two handles in two threads give the serial results, and every misuse or bad input
 * fails with a message naming what and where. (Logits against PyTorch: test_predict_torch, whose
 * tb-predict runs through this API.) */
#include "ckpt.h"
#include "proc.h"

#include "tb/api/tinybert.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[256], m2[512], m1[512];

static const char *texts[] = {
    "a gripping , heartfelt film",
    "it is dull",
    "the plot goes nowhere and the actors seem to know it , which is the saddest part of the whole affair",
    "",
    "Un film très ennuyeux !",
    "fine",
    "nothing new here , but nothing bad either",
};
static const char *pairs[] = {NULL, "and far too long", NULL, "an empty first text", "deux", NULL, "really"};
#define N ((int)(sizeof texts / sizeof texts[0]))

static void setup(void)
{
    char sub[600];
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(sub, sizeof sub, "%s/m2", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 2, .seed = 21}, m2, sizeof m2);
    snprintf(sub, sizeof sub, "%s/m1", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_TINYBERT, .num_labels = 1, .seed = 22}, m1, sizeof m1);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 120);

static tinybert *open_model(const char *path, int batch_size)
{
    tinybert_options o;
    tinybert_options_default(&o);
    o.threads = 1;
    o.batch_size = batch_size;
    tinybert *tb = tinybert_open(path, &o);
    cr_assert_not_null(tb, "%s", tinybert_last_error());
    return tb;
}

Test(api, batched_logits_equal_one_text_calls_at_any_batch_size)
{
    float all[N * 2], small[N * 2], one[2];
    tinybert *tb = open_model(m2, 0);
    tinybert *tb3 = open_model(m2, 3);
    cr_assert_eq(tinybert_num_labels(tb), 2);
    cr_assert_eq(tinybert_logits(tb, N, texts, pairs, all), 0, "%s", tinybert_last_error());
    cr_assert_eq(tinybert_logits(tb3, N, texts, pairs, small), 0, "%s", tinybert_last_error());
    int differ = 0;
    for (int i = 0; i < N; i++) {
        const char *b = pairs[i];
        cr_assert_eq(tinybert_logits(tb, 1, &texts[i], &b, one), 0, "%s", tinybert_last_error());
        for (int k = 0; k < 2; k++) {
            cr_expect(fabsf(all[i * 2 + k] - one[k]) <= 1e-5f, "text %d logit %d: %g batched, %g alone", i, k,
                      (double)all[i * 2 + k], (double)one[k]);
            cr_expect(fabsf(small[i * 2 + k] - one[k]) <= 1e-5f, "text %d: batch size 3 gives %g", i,
                      (double)small[i * 2 + k]);
        }
        int label;
        float p[2];
        cr_assert_eq(tinybert_classify(tb, texts[i], pairs[i], &label, p), 0, "%s", tinybert_last_error());
        cr_expect_eq(label, one[1] > one[0] ? 1 : 0);
        double want1 = 1.0 / (1.0 + exp((double)one[0] - (double)one[1]));
        cr_expect(fabs(p[1] - want1) < 1e-6 && fabs(p[0] + p[1] - 1.0) < 1e-6, "probabilities %g %g", (double)p[0],
                  (double)p[1]);
        if (i > 0 && fabsf(all[i * 2] - all[0]) > 1e-3f) differ++;
    }
    cr_expect_gt(differ, 3, "the texts should not all give the same logits");
    tinybert_close(tb);
    tinybert_close(tb3);
}

Test(api, score_of_a_regression_model_and_misuse_of_each_kind)
{
    tinybert *r = open_model(m1, 0), *c = open_model(m2, 0);
    float s, z;
    int label;
    cr_assert_eq(tinybert_num_labels(r), 1);
    cr_assert_eq(tinybert_score(r, texts[0], NULL, &s), 0, "%s", tinybert_last_error());
    cr_assert_eq(tinybert_logits(r, 1, texts, NULL, &z), 0);
    cr_expect_eq(s, z);
    cr_expect_neq(tinybert_classify(r, texts[0], NULL, &label, NULL), 0);
    cr_expect(strstr(tinybert_last_error(), "regression model"), "%s", tinybert_last_error());
    cr_expect_neq(tinybert_score(c, texts[0], NULL, &s), 0);
    cr_expect(strstr(tinybert_last_error(), "use tinybert_classify"), "%s", tinybert_last_error());
    const char *bad[2] = {"fine", "broken \xC3\x28 text"};
    float out[4];
    cr_expect_neq(tinybert_logits(c, 2, bad, NULL, out), 0);
    cr_expect(strstr(tinybert_last_error(), "text 1") && strstr(tinybert_last_error(), "UTF-8"), "%s",
              tinybert_last_error());
    /* a failed call leaves the handle usable */
    cr_expect_eq(tinybert_classify(c, "fine", NULL, &label, NULL), 0, "%s", tinybert_last_error());
    cr_expect_str_eq(tinybert_last_error(), "");
    cr_expect_null(tinybert_label_name(c, 2));
    cr_expect_null(tinybert_label_name(c, -1));
    tinybert_close(r);
    tinybert_close(c);
    tinybert_close(NULL);
}

Test(api, open_errors_name_the_checkpoint)
{
    char path[600];
    snprintf(path, sizeof path, "%s/nothing-here", dir);
    cr_expect_null(tinybert_open(path, NULL));
    cr_expect(strstr(tinybert_last_error(), path), "%s", tinybert_last_error());
    char sub[600], enc[600];
    snprintf(sub, sizeof sub, "%s/encoder", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_NONE, .seed = 23}, enc, sizeof enc);
    cr_expect_null(tinybert_open(enc, NULL));
    cr_expect(strstr(tinybert_last_error(), "no classification or regression head"), "%s", tinybert_last_error());
    tinybert_options o = {.max_seq_length = 4096};
    cr_expect_null(tinybert_open(m2, &o));
    cr_expect(strstr(tinybert_last_error(), "max_position_embeddings 128"), "%s", tinybert_last_error());
    o = (tinybert_options){.batch_size = -1};
    cr_expect_null(tinybert_open(m2, &o));
    cr_expect(strstr(tinybert_last_error(), "must be >= 0"), "%s", tinybert_last_error());
}

Test(api, label_names_come_from_config_id2label)
{
    tinybert *tb = open_model(m2, 0);
    cr_expect_str_eq(tinybert_label_name(tb, 0), "LABEL_0");
    cr_expect_str_eq(tinybert_label_name(tb, 1), "LABEL_1");
    tinybert_close(tb);
    char cfg[700], cmd[1600];
    snprintf(cfg, sizeof cfg, "%s/config.json", m2);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"LABEL_1\"/\"positive\"/' %s", cfg);
    cr_assert_eq(system(cmd), 0);
    tb = open_model(m2, 0);
    cr_expect_str_eq(tinybert_label_name(tb, 0), "LABEL_0");
    cr_expect_str_eq(tinybert_label_name(tb, 1), "positive");
    tinybert_close(tb);
}

typedef struct job {
    const char *model;
    float logits[N * 2];
    int rc;
    char err[512];
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    tinybert_options o = {.threads = 1};
    tinybert *tb = tinybert_open(j->model, &o);
    if (!tb) {
        j->rc = -1;
        snprintf(j->err, sizeof j->err, "%s", tinybert_last_error());
        return NULL;
    }
    for (int rep = 0; rep < 5 && j->rc == 0; rep++) j->rc = tinybert_logits(tb, N, texts, pairs, j->logits);
    if (j->rc) snprintf(j->err, sizeof j->err, "%s", tinybert_last_error());
    tinybert_close(tb);
    return NULL;
}

Test(api, two_handles_in_two_threads_give_the_serial_results)
{
    job serial = {.model = m2}, a = {.model = m2}, b = {.model = m2};
    run_job(&serial);
    cr_assert_eq(serial.rc, 0, "%s", serial.err);
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, run_job, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, run_job, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert_eq(a.rc, 0, "%s", a.err);
    cr_assert_eq(b.rc, 0, "%s", b.err);
    cr_expect_arr_eq(a.logits, serial.logits, sizeof serial.logits);
    cr_expect_arr_eq(b.logits, serial.logits, sizeof serial.logits);
}

Test(api, a_model_with_nan_weights_is_refused_at_open)
{
    char sub[600], model[600], cmd[2048];
    snprintf(sub, sizeof sub, "%s/nan", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 2, .seed = 24}, model, sizeof model);
    snprintf(cmd, sizeof cmd,
             "%s -c \"import sys, numpy as np; sys.path.insert(0, '%s/tests/reference/py'); import tbref; "
             "p = '%s/model.safetensors'; t, m = tbref.read_safetensors(p); t['classifier.weight'][1, 3] = np.nan; "
             "tbref.write_safetensors(p, t)\"",
             TB_PYTHON, TB_SOURCE_DIR, model);
    cr_assert_eq(system(cmd), 0);
    /* refused when opened, naming the tensor and the element */
    cr_expect_null(tinybert_open(model, NULL));
    cr_expect(strstr(tinybert_last_error(), "'classifier.weight' holds NaN at element 35"), "%s", tinybert_last_error());
}
