/* The training loop in-process with a scripted loss and a scripted dev metric: step and eval
 * lines, periodic checkpoints pruned to `keep`, the best one by the dev metric, SIGTERM ->
 * checkpoint -> TB_EINTR -> resume where it stopped, exact position bookkeeping, bad options;
 * and building models from a config or a checkpoint. */
#include "proc.h"
#include "../integration/test_finetune_data.h"

#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/base/error.h"
#include "tb/base/signals.h"
#include "tb/train/trainer.h"

#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char dir[256], data[512], out[512], cfgpath[512];

static void setup(void)
{
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

TestSuite(trainer, .init = setup, .fini = teardown, .timeout = 60);

/* Scripted loss: every gradient 1e-3, loss = 100 + message number; records the message numbers
 * seen; raises SIGTERM at message `term_at`. */
typedef struct script {
    uint64_t seen[64];
    int n_seen;
    int64_t term_at;
    int evals;
    const int *correct; /* per evaluation: correct answers out of 10 */
    int n_correct;
} script;

static int scripted_loss(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out)
{
    script *s = ctx;
    (void)msg;
    for (size_t i = 0; i < m->params.total; i++) m->params.grads[i] = 1e-3f;
    if (s->n_seen < 64) s->seen[s->n_seen++] = seq;
    if ((int64_t)seq == s->term_at) raise(SIGTERM);
    out->loss = 100.0 + (double)seq;
    out->samples = 4;
    out->n_parts = 1;
    out->parts[0] = TB_MF("part", 0.5);
    return TB_OK;
}

static int scripted_eval(void *ctx, tb_bert_model *m, tb_taskmetrics_result *r)
{
    script *s = ctx;
    (void)m;
    cr_assert_lt(s->evals, s->n_correct, "more evaluations than scripted");
    int k = s->correct[s->evals++];
    int32_t pred[10], gold[10];
    for (int i = 0; i < 10; i++) pred[i] = 1, gold[i] = i < k;
    tb_taskmetrics tm;
    cr_assert_eq(tb_taskmetrics_init(&tm, TB_TM_ACCURACY, 2), TB_OK);
    cr_assert_eq(tb_taskmetrics_add_classes(&tm, pred, gold, 10), TB_OK);
    cr_assert_eq(tb_taskmetrics_compute(&tm, r), TB_OK);
    tb_taskmetrics_free(&tm);
    return TB_OK;
}

static void small_model(tb_bert_model *m)
{
    tb_model_source src = {.config_path = cfgpath, .head = TB_HEAD_TINYBERT, .num_labels = 2, .mlm_head = 0, .seed = 1};
    cr_assert_eq(tb_trainer_model_open(m, &src), TB_OK, "%s", tb_err_msg());
}

static void opts_for(tb_trainer_opts *o, script *s)
{
    tb_trainer_opts_default(o);
    o->stage = "test";
    o->input = data;
    o->out_dir = out;
    o->epochs = 2;
    o->save_every = 4;
    o->keep = 2;
    o->eval_every = 4;
    o->progress = TB_PROGRESS_NONE;
    o->plot_path = "";
    o->seed = 9;
    o->loss = scripted_loss;
    o->loss_ctx = s;
    o->eval = scripted_eval;
    o->eval_ctx = s;
}

static int is_dir(const char *sub)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", out, sub);
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

Test(trainer, steps_epochs_checkpoints_and_best)
{
    static const int correct[] = {5, 8, 6, 7};
    script s = {.term_at = -1, .correct = correct, .n_correct = 4};
    tb_bert_model m = {0};
    small_model(&m);
    tb_trainer_opts o;
    opts_for(&o, &s);
    tb_trainer_result r;
    cr_assert_eq(tb_trainer_run(&o, &m, &r), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(r.steps, 16, "2 epochs of 8 messages");
    cr_expect_eq(r.messages, 16);
    cr_expect_eq(s.n_seen, 16);
    for (int i = 0; i < 16; i++) cr_expect_eq(s.seen[i], (uint64_t)i, "message numbers run across epochs");
    cr_expect_eq(s.evals, 4, "evaluations at 4, 8, 12, 16 (the end is not evaluated twice)");
    cr_expect_eq(r.best_step, 8);
    cr_expect(fabs(r.best_metric - 0.8) < 1e-12);
    cr_expect_str_eq(r.best_metric_name, "accuracy");
    cr_expect(is_dir("best/step-8"));
    cr_expect(!is_dir("best/step-4"), "an older best is removed");
    cr_expect(is_dir("step-16") && is_dir("step-12"));
    cr_expect(!is_dir("step-8") && !is_dir("step-4"), "only the newest 2 periodic checkpoints stay");
    char met[600];
    snprintf(met, sizeof met, "%s/metrics.jsonl", out);
    cr_expect_eq(count_lines(met, "\"event\":\"step\""), 16);
    cr_expect_eq(count_lines(met, "\"event\":\"eval\""), 4);
    cr_expect_eq(count_lines(met, "\"loss\":115,"), 1, "the loss of the last message");
    cr_expect_eq(count_lines(met, "\"part\":0.5"), 16, "loss parts are logged");
    cr_expect_eq(count_lines(met, "\"epoch\":1"), 8);
    /* the saved state: step, data position, seed, best so far */
    tb_train_state st = {0};
    tb_adam a;
    tb_adam_options ao;
    tb_adam_options_default(&ao);
    ao.t_total = 16;
    cr_assert_eq(tb_adam_init(&a, &m.params, &ao), TB_OK);
    cr_assert_eq(tb_checkpoint_load_state(r.last_checkpoint, &m.params, &a, &st), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(st.step, 16);
    cr_expect_eq(st.data_position, 16);
    cr_expect_eq(st.seed, 9);
    cr_expect(st.extra_json && strstr(st.extra_json, "\"best_step\":8"), "%s", st.extra_json);
    tb_train_state_free(&st);
    tb_adam_free(&a);
    tb_bert_free(&m);
}

Test(trainer, sigterm_checkpoints_and_resume_continues)
{
    static const int correct[] = {5, 9, 6, 7};
    script s = {.term_at = 5, .correct = correct, .n_correct = 4};
    cr_assert_eq(tb_signals_install(0), TB_OK);
    tb_bert_model m = {0};
    small_model(&m);
    tb_trainer_opts o;
    opts_for(&o, &s);
    tb_trainer_result r;
    cr_assert_eq(tb_trainer_run(&o, &m, &r), TB_EINTR);
    cr_expect(r.interrupted);
    cr_expect_eq(r.steps, 6, "the step under way is finished");
    cr_expect(is_dir("step-6"), "the signal wrote a checkpoint");
    cr_expect(strstr(tb_err_msg(), "resume") != NULL, "%s", tb_err_msg());
    tb_bert_free(&m);
    tb_signals_reset();

    /* a fresh model (random weights); resume loads the checkpoint and continues at message 6 */
    s.term_at = -1;
    s.n_seen = 0;
    tb_bert_model m2 = {0};
    small_model(&m2);
    o.resume = 1;
    cr_assert_eq(tb_trainer_run(&o, &m2, &r), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(r.steps, 16);
    cr_expect_eq(s.n_seen, 10);
    cr_expect_eq(s.seen[0], 6);
    cr_expect_eq(s.seen[9], 15);
    cr_expect_eq(r.best_step, 8, "best found after the restart");
    cr_expect(fabs(r.best_metric - 0.9) < 1e-12);
    tb_bert_free(&m2);

    /* resuming with another seed is refused */
    tb_bert_model m3 = {0};
    small_model(&m3);
    o.seed = 10;
    cr_expect_eq(tb_trainer_run(&o, &m3, &r), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "seed") != NULL, "%s", tb_err_msg());
    tb_bert_free(&m3);
    tb_signals_restore();
}

static int nan_loss(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out)
{
    (void)ctx, (void)m, (void)msg, (void)seq;
    out->loss = NAN;
    return TB_OK;
}

Test(trainer, bad_options_and_divergence)
{
    script s = {.term_at = -1};
    tb_bert_model m = {0};
    small_model(&m);
    tb_trainer_opts o;
    tb_trainer_result r;
    opts_for(&o, &s);
    o.eval = NULL;
    o.epochs = 0;
    cr_expect_eq(tb_trainer_run(&o, &m, &r), TB_EINVAL);
    opts_for(&o, &s);
    o.eval = NULL;
    o.input = "ipc:///tmp/tb-test-never";
    cr_expect_eq(tb_trainer_run(&o, &m, &r), TB_EINVAL, "2 epochs over a live stream");
    o.epochs = 1;
    cr_expect_eq(tb_trainer_run(&o, &m, &r), TB_EINVAL, "a live stream without a schedule length");
    cr_expect(strstr(tb_err_msg(), "total") != NULL, "%s", tb_err_msg());
    opts_for(&o, &s);
    o.eval = NULL;
    o.loss = nan_loss;
    cr_expect_eq(tb_trainer_run(&o, &m, &r), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "diverged") != NULL, "%s", tb_err_msg());
    opts_for(&o, &s);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none.tbs", dir);
    o.input = missing;
    cr_expect_neq(tb_trainer_run(&o, &m, &r), TB_OK);
    int64_t n = 0;
    cr_expect_eq(tb_trainer_count_messages(data, &n), TB_OK);
    cr_expect_eq(n, 8);
    cr_expect_eq(tb_trainer_count_messages("tcp://127.0.0.1:5", &n), TB_EINVAL);
    tb_bert_free(&m);
}

Test(trainer, model_from_config_or_checkpoint)
{
    tb_bert_model a = {0}, b = {0}, c = {0};
    tb_model_source src = {.config_path = cfgpath, .mlm_head = 1, .seed = 4};
    cr_assert_eq(tb_trainer_model_open(&a, &src), TB_OK, "%s", tb_err_msg());
    cr_expect(a.config.mlm_head);
    cr_expect_eq(a.config.head, TB_HEAD_NONE);
    char ck[600];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    cr_assert_eq(tb_checkpoint_save(ck, 3, &a.config, &a.params, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    /* a pre-trained encoder gets a new 3-label head; the encoder weights are the checkpoint's */
    tb_model_source s2 = {.init_path = ck, .head = TB_HEAD_HF, .num_labels = 3, .mlm_head = 0, .seed = 5};
    cr_assert_eq(tb_trainer_model_open(&b, &s2), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(b.config.num_labels, 3);
    cr_expect(!b.config.mlm_head);
    const tb_param *pa = tb_params_find(&a.params, "bert.encoder.layer.1.output.dense.weight"),
                   *pb = tb_params_find(&b.params, "bert.encoder.layer.1.output.dense.weight");
    cr_assert(pa && pb);
    cr_expect_arr_eq(pa->value.data, pb->value.data, tb_tensor_nbytes(&pa->value));
    const tb_param *cls = tb_params_find(&b.params, "classifier.weight");
    cr_assert_not_null(cls);
    cr_expect_neq(((float *)cls->value.data)[0], 0.0f, "the new head is randomly initialised");
    char ck2[600];
    snprintf(ck2, sizeof ck2, "%s/ck2", dir);
    cr_assert_eq(tb_checkpoint_save(ck2, 1, &b.config, &b.params, NULL, NULL, NULL, NULL, 0), TB_OK);
    /* its head kind and label count are checked, never guessed */
    tb_model_source s3 = {.init_path = ck2, .head = TB_HEAD_TINYBERT, .num_labels = 3, .mlm_head = 0};
    cr_expect_eq(tb_trainer_model_open(&c, &s3), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "head") != NULL, "%s", tb_err_msg());
    tb_bert_free(&c);
    tb_model_source s4 = {.init_path = ck2, .head = TB_HEAD_HF, .num_labels = 2, .mlm_head = 0};
    cr_expect_eq(tb_trainer_model_open(&c, &s4), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "labels") != NULL, "%s", tb_err_msg());
    tb_bert_free(&c);
    tb_model_source s5 = {.mlm_head = 0};
    cr_expect_eq(tb_trainer_model_open(&c, &s5), TB_EINVAL);
    tb_bert_free(&a);
    tb_bert_free(&b);
    tb_bert_free(&c);
}
