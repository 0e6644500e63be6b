/* tb-eval as a process on a crafted model whose predictions follow from its weights:
 * every weight is 0 except LayerNorm gains (1), word embeddings +-(1,-1,1,-1), the pooler
 * (identity) and the classifier. Attention and FFN then add nothing, the [CLS]-position state is
 * LN(word[first id]) = +-(1,-1,1,-1), pooled = tanh of it, relu keeps the positive entries, and
 * the classifier rows (1,0,0,0) and (0,1,0,0) give logits (tanh 1, 0) for a positive word and
 * (0, tanh 1) for a negative one: the prediction is 1 exactly when the first id is >= 22. */
#include "proc.h"

#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/base/error.h"
#include "tb/text/dataset.h"
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EV TB_BIN_DIR "/tb-eval"

static char dir[256], model[512], data[512];

/* first ids (>= 22: predicted 1) and gold labels of the 10 examples:
 *   pred 0 0 0 1 1 1 1 0 1 0
 *   gold 0 1 0 1 1 0 1 0 0 0
 * tp = 3 (3,4,6), fp = 2 (5,8), fn = 1 (1), tn = 4 (0,2,7,9)
 * accuracy = 7/10; F1 of class 1 = 2*3 / (2*3 + 2 + 1) = 2/3;
 * MCC = (3*4 - 2*1) / sqrt((3+2)(3+1)(4+2)(4+1)) = 10 / sqrt(600) */
static const int32_t first_id[10] = {5, 6, 7, 30, 31, 32, 33, 8, 34, 9};
static const int32_t gold[10] = {0, 1, 0, 1, 1, 0, 1, 0, 0, 0};

static void set(tb_bert_model *m, const char *name, int64_t i, float v)
{
    tb_param *p = tb_params_find(&m->params, name);
    cr_assert_not_null(p, "no parameter %s", name);
    cr_assert_lt(i, tb_tensor_numel(&p->value));
    ((float *)p->value.data)[i] = v;
}

static void write_model_labels(const char *out, int labels)
{
    tb_bert_config c = {.vocab_size = 40, .hidden_size = 4, .num_hidden_layers = 1, .num_attention_heads = 2,
                        .intermediate_size = 8, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .initializer_range = 0.02f, .head = TB_HEAD_TINYBERT, .num_labels = labels};
    tb_bert_model m = {0};
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < m.params.count; i++)
        if (strstr(m.params.items[i].name, "LayerNorm.weight"))
            for (int64_t k = 0; k < tb_tensor_numel(&m.params.items[i].value); k++)
                ((float *)m.params.items[i].value.data)[k] = 1.0f;
    for (int id = 1; id < 40; id++) {
        float s = id >= 22 ? -1.0f : 1.0f, mag = 0.5f + 0.1f * (float)id;
        for (int j = 0; j < 4; j++) set(&m, "bert.embeddings.word_embeddings.weight", id * 4 + j, (j % 2 ? -s : s) * mag);
    }
    for (int j = 0; j < 4; j++) set(&m, "bert.pooler.dense.weight", j * 4 + j, 1.0f);
    set(&m, "classifier.weight", 0, 1.0f);
    if (labels > 1) set(&m, "classifier.weight", 4 + 1, 1.0f);
    cr_assert_eq(tb_checkpoint_save(out, 1, &m.config, &m.params, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    tb_bert_free(&m);
}

static void write_model(const char *out) { write_model_labels(out, 2); }

/* Regression gold values of the 10 examples (distinct, so only the predictions have ties). */
static const float target[10] = {0.9f, 0.15f, 0.8f, 0.2f, 0.3f, 0.05f, 0.1f, 0.7f, 0.4f, 0.6f};

/* Two batches (6 + 4 examples) of [first id] [SEP] [PAD]..., example ids 100.. ("regression":
 * f32 targets instead of classes) */
static void write_data(const char *path, const char *label_order)
{
    int regression = strcmp(label_order, "regression") == 0;
    tb_stream *s = NULL;
    char ep[600];
    snprintf(ep, sizeof ep, "file:%s", path);
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    int start = 0;
    for (int k = 0; k < 2; k++) {
        int B = k == 0 ? 6 : 4, T = 5;
        int64_t s2[2] = {B, T}, s1[1] = {B};
        tb_batch b = {0};
        cr_assert_eq(tb_tensor_alloc(&b.input_ids, TB_I32, 2, s2), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.token_type_ids, TB_I32, 2, s2), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.attention_mask, TB_I32, 2, s2), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.labels, regression ? TB_F32 : TB_I32, 1, s1), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.example_ids, TB_I64, 1, s1), TB_OK);
        for (int i = 0; i < B; i++) {
            int32_t *row = (int32_t *)b.input_ids.data + i * T, *mk = (int32_t *)b.attention_mask.data + i * T;
            row[0] = first_id[start + i];
            row[1] = 3;
            mk[0] = mk[1] = 1;
            if (regression)
                ((float *)b.labels.data)[i] = target[start + i];
            else
                ((int32_t *)b.labels.data)[i] = gold[start + i];
            ((int64_t *)b.example_ids.data)[i] = 100 + start + i;
        }
        tb_msg m;
        tb_msg_init(&m);
        cr_assert_eq(tb_batch_to_msg(&b, "test", label_order, &m), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(tb_stream_send(s, &m, NULL), TB_OK, "%s", tb_err_msg());
        tb_msg_free(&m);
        tb_batch_free(&b);
        start += B;
    }
    cr_assert_eq(tb_stream_finish(s), TB_OK);
    tb_stream_close(s);
}

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(data, sizeof data, "%s/dev.tbs", dir);
    write_model(model);
    write_data(data, "neg,pos");
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(eval, .init = setup, .fini = teardown, .timeout = 60);

static int run(char *const argv[])
{
    pid_t pid = tb_proc_spawn(argv);
    cr_assert_gt(pid, 0);
    int code = -1;
    if (tb_proc_wait(pid, 30000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("tb-eval did not finish");
    }
    return code;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* The number after "key": in a JSON line. */
static double json_num(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(json, k);
    cr_assert_not_null(p, "no %s in %s", key, json);
    return atof(p + strlen(k));
}

Test(eval, metrics_and_predictions_of_a_derivable_model)
{
    char json[600], pred[600];
    snprintf(json, sizeof json, "%s/r.json", dir);
    snprintf(pred, sizeof pred, "%s/SST-2.tsv", dir);
    char *argv[] = {EV, "--model", model, "--input", data, "--task", "mrpc", "--json", json, "--predictions", pred,
                    "--threads", "1", NULL};
    cr_assert_eq(run(argv), 0);
    const char *j = slurp(json);
    cr_expect_eq(json_num(j, "examples"), 10);
    cr_expect_eq(json_num(j, "batches"), 2);
    cr_expect(fabs(json_num(j, "accuracy") - 0.7) < 1e-9, "%s", j);
    cr_expect(fabs(json_num(j, "f1") - 2.0 / 3.0) < 1e-8, "%s", j);
    cr_expect(fabs(json_num(j, "acc_and_f1") - (0.7 + 2.0 / 3.0) / 2) < 1e-8, "%s", j);
    cr_expect(strstr(j, "\"main\":\"acc_and_f1\"") != NULL, "%s", j);
    cr_expect_gt(json_num(j, "examples_per_s"), 0);
    /* parameters: word 40x4, positions 16x4, types 2x4, LN 4+4; layer: QKV 3x(16+4), out 16+4,
     * LN 8, FFN 8x4+8 + 4x8+4, LN 8; pooler 16+4; classifier 2x4+2 */
    int64_t params = 160 + 64 + 8 + 8 + (60 + 20 + 8 + 40 + 36 + 8) + 20 + 10;
    cr_expect_eq(json_num(j, "params"), params, "%s", j);
    cr_expect(fabs(json_num(j, "size_mb") - params * 4 / 1e6) < 1e-9, "%s", j);
    cr_expect_str_eq(slurp(pred), "index\tprediction\n100\tneg\n101\tneg\n102\tneg\n103\tpos\n104\tpos\n"
                                  "105\tpos\n106\tpos\n107\tneg\n108\tpos\n109\tneg\n");
}

Test(eval, mcc_for_cola_and_side_by_side_comparison)
{
    char json[600];
    snprintf(json, sizeof json, "%s/r.json", dir);
    char *argv[] = {EV, "--model", model, "--compare", model, "--input", data, "--task", "cola", "--json", json,
                    "--threads", "1", NULL};
    cr_assert_eq(run(argv), 0);
    const char *j = slurp(json);
    const char *second = strchr(j, '\n');
    cr_assert(second && second[1] == '{', "two JSON lines expected: %s", j);
    cr_expect(fabs(json_num(j, "mcc") - 10.0 / sqrt(600.0)) < 1e-8, "%s", j);
    cr_expect(fabs(json_num(second, "mcc") - 10.0 / sqrt(600.0)) < 1e-8, "%s", second);
    cr_expect(strstr(j, "\"main\":\"mcc\"") != NULL, "%s", j);
}

Test(eval, bad_inputs_are_clear_errors)
{
    char other[600], mlm[600];
    snprintf(other, sizeof other, "%s/three.tbs", dir);
    write_data(other, "a,b,c");
    char *a1[] = {EV, "--model", model, "--input", other, "--json", "", NULL};
    cr_expect_eq(run(a1), 1, "3 label names for a 2-label model");
    char *a2[] = {EV, "--model", dir, "--input", data, "--json", "", NULL};
    cr_expect_eq(run(a2), 1, "a folder without a checkpoint");
    char *a3[] = {EV, "--model", model, "--input", model, "--json", "", NULL};
    cr_expect_eq(run(a3), 1, "a folder is not a batch file");
    char *a4[] = {EV, "--model", model, "--input", data, "--task", "sts-b", "--json", "", NULL};
    cr_expect_eq(run(a4), 1, "a correlation metric for a classifier");
    /* a model without a classification head */
    tb_bert_config c = {.vocab_size = 40, .hidden_size = 4, .num_hidden_layers = 1, .num_attention_heads = 2,
                        .intermediate_size = 8, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .initializer_range = 0.02f, .mlm_head = 1};
    tb_bert_model m = {0};
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    snprintf(mlm, sizeof mlm, "%s/mlm", dir);
    cr_assert_eq(tb_checkpoint_save(mlm, 1, &m.config, &m.params, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    tb_bert_free(&m);
    char *a5[] = {EV, "--model", mlm, "--input", data, "--json", "", NULL};
    cr_expect_eq(run(a5), 1, "no classification head");
}

/* Pearson correlation in double, written out here as the reference for the regression case. */
static double pearson(const double *x, const double *y, int n)
{
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) mx += x[i] / n, my += y[i] / n;
    for (int i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    return sxy / sqrt(sxx * syy);
}

Test(eval, regression_correlations_and_predicted_values)
{
    char reg[600], rdata[600], json[600], pred[600];
    snprintf(reg, sizeof reg, "%s/reg", dir);
    snprintf(rdata, sizeof rdata, "%s/reg.tbs", dir);
    snprintf(json, sizeof json, "%s/r.json", dir);
    snprintf(pred, sizeof pred, "%s/STS-B.tsv", dir);
    write_model_labels(reg, 1);
    write_data(rdata, "regression");
    char *argv[] = {EV, "--model", reg, "--input", rdata, "--json", json, "--predictions", pred, "--threads", "1", NULL};
    cr_assert_eq(run(argv), 0);
    /* one output = W_c relu(pooled) = tanh(1) for a first id < 22, 0 otherwise */
    double a = tanh(1.0), x[10], y[10], rx[10], ry[10];
    for (int i = 0; i < 10; i++) x[i] = first_id[i] < 22 ? a : 0.0, y[i] = target[i];
    /* ranks: the five 0s share (1+2+3+4+5)/5 = 3, the five a's (6+..+10)/5 = 8; targets are distinct */
    for (int i = 0; i < 10; i++) {
        rx[i] = x[i] > 0 ? 8.0 : 3.0;
        ry[i] = 1;
        for (int j = 0; j < 10; j++) ry[i] += y[j] < y[i];
    }
    double p = pearson(x, y, 10), s = pearson(rx, ry, 10);
    const char *j = slurp(json);
    cr_expect(fabs(json_num(j, "pearson") - p) < 1e-5, "pearson %s, expected %.9f", j, p);
    cr_expect(fabs(json_num(j, "spearman") - s) < 1e-9, "spearman %s, expected %.9f", j, s);
    cr_expect(fabs(json_num(j, "corr") - (p + s) / 2) < 1e-5, "%s", j);
    cr_expect(strstr(j, "\"main\":\"corr\"") != NULL, "%s", j);
    /* the predicted values, as exact floats (%.9g): tanh(1) = 0.76159416 or 0 */
    const char *t = slurp(pred);
    cr_assert(strncmp(t, "index\tprediction\n", 17) == 0, "%s", t);
    t += 17;
    for (int i = 0; i < 10; i++) {
        long id = -1;
        double v = -1;
        int used = 0;
        cr_assert_eq(sscanf(t, "%ld\t%lf\n%n", &id, &v, &used), 2, "row %d of %s", i, slurp(pred));
        cr_expect_eq(id, 100 + i);
        cr_expect(fabs(v - x[i]) < 1e-6, "row %d: %.9g, expected %.9g", i, v, x[i]);
        t += used;
    }
    cr_expect_eq(*t, '\0', "10 rows only");
}
