/* Unit tests: non-finite values stop training and evaluation clearly. The training loop refuses a
 * step whose gradient has a non-finite norm in any trainable tensor (clipping on or off): the error
 * names the step, the message and the parameter, no update is applied and no checkpoint is
 * written after it. Evaluation refuses NaN logits, naming the batch and the row. */
#include "proc.h"
#include "../integration/test_finetune_data.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/text/dataset.h"
#include "tb/train/evaluate.h"
#include "tb/train/trainer.h"
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], data[512], out[512], cfgpath[512];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(data, sizeof data, "%s/train.tbs", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dir);
    cr_assert_eq(ft_write_batches(data, 8, 4, 6, 1, 0), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(ft_write_config(cfgpath, 0), 0);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(nonfinite, .init = setup, .fini = teardown, .timeout = 60);

static void small_model(tb_bert_model *m)
{
    tb_model_source src = {.config_path = cfgpath, .head = TB_HEAD_TINYBERT, .num_labels = 2, .mlm_head = 0, .seed = 1};
    cr_assert_eq(tb_trainer_model_open(m, &src), TB_OK, "%s", tb_err_msg());
}

static int exists(const char *sub)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", out, sub);
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- training: a non-finite gradient ------------------------------------------------------ */

/* Every gradient 1e-3 and a finite loss; at message `bad_at` one element of parameter `name`
 * gets `bad` instead, and the parameter values before that step are copied to `before`. */
typedef struct poison {
    int64_t bad_at;
    const char *name;
    float bad;
    float *before;
} poison;

static int poisoned_loss(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out)
{
    poison *p = ctx;
    (void)msg;
    for (size_t i = 0; i < m->params.total; i++) m->params.grads[i] = 1e-3f;
    if ((int64_t)seq == p->bad_at) {
        tb_param *it = tb_params_find(&m->params, p->name);
        cr_assert_not_null(it);
        ((float *)it->grad.data)[tb_tensor_numel(&it->grad) - 1] = p->bad;
        memcpy(p->before, m->params.values, m->params.total * sizeof(float));
    }
    out->loss = 1.0;
    out->samples = 4;
    return TB_OK;
}

/* Runs 8 messages with the gradient of `name` poisoned at message 5 (step 6); checks the error,
 * that the weights are those from before step 6 and that no checkpoint after step 4 exists. */
static void run_poisoned(const char *name, float bad, double max_grad_norm)
{
    tb_bert_model m = {0};
    small_model(&m);
    poison p = {.bad_at = 5, .name = name, .bad = bad, .before = malloc(m.params.total * sizeof(float))};
    cr_assert_not_null(p.before);
    tb_trainer_opts o;
    tb_trainer_opts_default(&o);
    o.stage = "test";
    o.input = data;
    o.out_dir = out;
    o.epochs = 1;
    o.save_every = 4;
    o.keep = 10;
    o.progress = TB_PROGRESS_NONE;
    o.plot_path = "";
    o.seed = 9;
    o.loss = poisoned_loss;
    o.loss_ctx = &p;
    o.adam.max_grad_norm = max_grad_norm;
    tb_trainer_result r;
    int rc = tb_trainer_run(&o, &m, &r);
    cr_assert_eq(rc, TB_EINVAL, "got %d: %s", rc, tb_err_msg());
    char want[256];
    snprintf(want, sizeof want, "step 6 (message 5): the gradient of '%s' is not finite (norm %s)", name,
             isnan(bad) ? "nan" : "inf");
    cr_assert(strstr(tb_err_msg(), want), "message: %s\nwanted: %s", tb_err_msg(), want);
    cr_assert(strstr(tb_err_msg(), "no update applied"), "%s", tb_err_msg());
    cr_assert_eq(memcmp(p.before, m.params.values, m.params.total * sizeof(float)), 0,
                 "an update was applied in the step with the non-finite gradient");
    cr_assert_eq(r.steps, 5, "steps done: %lld", (long long)r.steps);
    cr_assert(exists("step-4"), "the checkpoint before the failure is kept");
    for (int s = 5; s <= 8; s++) {
        char sub[32];
        snprintf(sub, sizeof sub, "step-%d", s);
        cr_assert(!exists(sub), "a checkpoint %s was written after the non-finite gradient", sub);
    }
    char latest[700], resolved[PATH_MAX];
    snprintf(latest, sizeof latest, "%s/latest", out);
    cr_assert_eq(tb_checkpoint_resolve(latest, resolved, sizeof resolved), TB_OK, "%s", tb_err_msg());
    cr_assert(strstr(resolved, "step-4"), "latest is %s", resolved);
    free(p.before);
    tb_bert_free(&m);
}

Test(nonfinite, infinite_gradient_with_clipping_stops_before_the_update)
{
    run_poisoned("bert.encoder.layer.1.output.dense.weight", INFINITY, 1.0);
}

Test(nonfinite, nan_gradient_without_clipping_stops_before_the_update)
{
    run_poisoned("classifier.bias", NAN, 0.0);
}

Test(nonfinite, frozen_parameters_are_not_checked)
{
    /* A frozen tensor's gradient is never used: a NaN there does not stop training. */
    tb_bert_model m = {0};
    small_model(&m);
    cr_assert_gt(tb_bert_set_trainable(&m, "bert.pooler.", 0), 0);
    poison p = {.bad_at = 2, .name = "bert.pooler.dense.weight", .bad = NAN,
                .before = malloc(m.params.total * sizeof(float))};
    tb_trainer_opts o;
    tb_trainer_opts_default(&o);
    o.stage = "test";
    o.input = data;
    o.out_dir = out;
    o.progress = TB_PROGRESS_NONE;
    o.plot_path = "";
    o.seed = 9;
    o.loss = poisoned_loss;
    o.loss_ctx = &p;
    tb_trainer_result r;
    cr_assert_eq(tb_trainer_run(&o, &m, &r), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(r.steps, 8);
    free(p.before);
    tb_bert_free(&m);
}

/* ---- evaluation: NaN logits --------------------------------------------------------------- */

/* Three batches of 2 rows, [CLS] w w [SEP] [PAD] [PAD]; word 20 appears only in row 1 of batch 2. */
static void write_eval_batches(const char *path)
{
    tb_stream *s = NULL;
    cr_assert_eq(tb_stream_open(&s, path, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    for (int k = 0; k < 3; k++) {
        tb_batch b;
        memset(&b, 0, sizeof b);
        int64_t bt[2] = {2, 6}, bb[1] = {2};
        cr_assert_eq(tb_tensor_alloc(&b.input_ids, TB_I32, 2, bt), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.token_type_ids, TB_I32, 2, bt), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.attention_mask, TB_I32, 2, bt), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.labels, TB_I32, 1, bb), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.example_ids, TB_I64, 1, bb), TB_OK);
        int32_t *ids = b.input_ids.data, *am = b.attention_mask.data, *tt = b.token_type_ids.data;
        for (int i = 0; i < 2; i++) {
            int w = k == 2 && i == 1 ? 20 : 5 + k + i;
            int32_t row[6] = {2, w, w + 1, 3, 0, 0};
            for (int t = 0; t < 6; t++) ids[i * 6 + t] = row[t], am[i * 6 + t] = t < 4, tt[i * 6 + t] = 0;
            ((int32_t *)b.labels.data)[i] = i;
            ((int64_t *)b.example_ids.data)[i] = k * 2 + i;
        }
        b.index = k;
        tb_msg msg;
        tb_msg_init(&msg);
        cr_assert_eq(tb_batch_to_msg(&b, NULL, NULL, &msg), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(tb_stream_send(s, &msg, NULL), TB_OK, "%s", tb_err_msg());
        tb_msg_free(&msg);
        tb_batch_free(&b);
    }
    cr_assert_eq(tb_stream_finish(s), TB_OK, "%s", tb_err_msg());
    tb_stream_close(s);
}

Test(nonfinite, evaluation_refuses_nan_logits_naming_the_batch)
{
    char path[600];
    snprintf(path, sizeof path, "%s/dev.tbs", dir);
    write_eval_batches(path);
    tb_bert_model m = {0};
    small_model(&m);
    tb_eval_opts o;
    tb_eval_opts_default(&o);
    o.input = path;
    tb_eval_result r;
    cr_assert_eq(tb_evaluate(&m, &o, &r), TB_OK, "finite model: %s", tb_err_msg());
    cr_assert_eq(r.batches, 3);

    /* Word 20's embedding row NaN: only row 1 of batch 2 reads it. */
    float *word = m.params.items[m.word_w].value.data;
    for (int c = 0; c < m.config.hidden_size; c++) word[20 * m.config.hidden_size + c] = NAN;
    int rc = tb_evaluate(&m, &o, &r);
    cr_assert_eq(rc, TB_EINVAL, "got %d: %s", rc, tb_err_msg());
    cr_assert(strstr(tb_err_msg(), "batch 2 of"), "message: %s", tb_err_msg());
    cr_assert(strstr(tb_err_msg(), "logit 0 of row 1 is NaN"), "message: %s", tb_err_msg());
    tb_bert_free(&m);
}
