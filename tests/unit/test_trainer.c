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
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
 * seen; raises SIGTERM at message `term_at`; at message 0 plants the folder `plant` (with an empty
 * config.json) when given. */
typedef struct script {
    uint64_t seen[64];
    int n_seen;
    int64_t term_at;
    int evals;
    const int *correct; /* per evaluation: correct answers out of 10 */
    int n_correct;
    const char *plant;
} script;

static int scripted_loss(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out)
{
    script *s = ctx;
    (void)msg;
    for (size_t i = 0; i < m->params.total; i++) m->params.grads[i] = 1e-3f;
    if (s->n_seen < 64) s->seen[s->n_seen++] = seq;
    if ((int64_t)seq == s->term_at) raise(SIGTERM);
    if (seq == 0 && s->plant) {
        char f[800];
        cr_assert_eq(mkdir(s->plant, 0777), 0);
        snprintf(f, sizeof f, "%s/config.json", s->plant);
        FILE *fp = fopen(f, "w");
        cr_assert_not_null(fp);
        fclose(fp);
    }
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

/* ---- the output folder, stale and pruned checkpoints ----------------------------------------- */

static int latest_is(const char *want)
{
    char link[700], target[256];
    snprintf(link, sizeof link, "%s/latest", out);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) return 0;
    target[n] = 0;
    return strcmp(target, want) == 0;
}

Test(trainer, a_pooler_without_head_is_frozen_and_a_head_trains_it)
{
    /* A general student's layout: a pooler and no head. */
    tb_bert_model a = {0}, b = {0}, c = {0};
    tb_model_source src = {.config_path = cfgpath, .mlm_head = 0, .seed = 4};
    cr_assert_eq(tb_trainer_model_open(&a, &src), TB_OK, "%s", tb_err_msg());
    tb_bert_config cfg = a.config;
    cfg.pooler = 1;
    cr_assert_eq(tb_bert_init(&c, &cfg), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&c, 6);
    char ck[600];
    snprintf(ck, sizeof ck, "%s/pooler", dir);
    cr_assert_eq(tb_checkpoint_save(ck, 1, &c.config, &c.params, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    tb_model_source s1 = {.init_path = ck, .mlm_head = 1, .seed = 5};
    cr_assert_eq(tb_trainer_model_open(&b, &s1), TB_OK, "%s", tb_err_msg());
    const tb_param *pw = tb_params_find(&b.params, "bert.pooler.dense.weight"),
                   *cw = tb_params_find(&c.params, "bert.pooler.dense.weight");
    cr_assert(pw && cw, "the pooler is loaded");
    cr_expect_arr_eq(pw->value.data, cw->value.data, tb_tensor_nbytes(&pw->value));
    cr_expect(!pw->trainable, "a pooler without a head gets no gradient: it must be frozen");
    cr_expect(tb_params_find(&b.params, "bert.encoder.layer.0.output.dense.weight")->trainable);
    tb_bert_free(&b);
    tb_model_source s2 = {.init_path = ck, .head = TB_HEAD_HF, .num_labels = 2, .mlm_head = 0, .seed = 5};
    cr_assert_eq(tb_trainer_model_open(&b, &s2), TB_OK, "%s", tb_err_msg());
    pw = tb_params_find(&b.params, "bert.pooler.dense.weight");
    cr_assert_not_null(pw);
    cr_expect_arr_eq(pw->value.data, cw->value.data, tb_tensor_nbytes(&pw->value));
    cr_expect(pw->trainable, "with a head the pooler trains");
    tb_bert_free(&a);
    tb_bert_free(&b);
    tb_bert_free(&c);
}

Test(trainer, refuses_a_folder_holding_another_run)
{
    script s = {.term_at = -1};
    tb_bert_model m = {0};
    small_model(&m);
    tb_trainer_opts o;
    opts_for(&o, &s);
    o.eval = NULL;
    tb_trainer_result r;
    cr_assert_eq(tb_trainer_run(&o, &m, &r), TB_OK, "%s", tb_err_msg());
    char met[600];
    snprintf(met, sizeof met, "%s/metrics.jsonl", out);
    int lines = count_lines(met, "\"event\"");
    s.n_seen = 0;
    cr_expect_eq(tb_trainer_run(&o, &m, &r), TB_EINVAL, "a second run into the same folder without resume");
    cr_expect(strstr(tb_err_msg(), "already holds checkpoints") && strstr(tb_err_msg(), "resume"), "%s", tb_err_msg());
    cr_expect_eq(s.n_seen, 0, "nothing was trained");
    cr_expect_eq(count_lines(met, "\"event\""), lines, "nothing was logged");
    cr_expect(latest_is("step-16"));
    tb_bert_free(&m);
}

/* A run that died after writing step-N but before moving OUT/latest leaves step-N behind: the
 * resumed run replaces it when it gets there. */
Test(trainer, resume_replaces_a_checkpoint_newer_than_latest)
{
    script s = {.term_at = -1};
    tb_bert_model m = {0};
    small_model(&m);
    tb_trainer_opts o;
    opts_for(&o, &s);
    o.eval = NULL;
    tb_trainer_result r;
    cr_assert_eq(tb_trainer_run(&o, &m, &r), TB_OK, "%s", tb_err_msg());
    cr_assert(is_dir("step-12") && is_dir("step-16"));
    char link[700], tmp[720];
    snprintf(link, sizeof link, "%s/latest", out);
    snprintf(tmp, sizeof tmp, "%s/latest.new", out);
    cr_assert_eq(symlink("step-12", tmp), 0);
    cr_assert_eq(rename(tmp, link), 0);
    tb_bert_free(&m);

    s.n_seen = 0;
    tb_bert_model m2 = {0};
    small_model(&m2);
    o.resume = 1;
    cr_assert_eq(tb_trainer_run(&o, &m2, &r), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(s.n_seen, 4);
    cr_expect_eq(s.seen[0], 12, "resumed at the checkpoint OUT/latest names");
    cr_expect(latest_is("step-16"));
    cr_expect_str_eq(r.last_checkpoint + strlen(r.last_checkpoint) - 7, "step-16");
    tb_bert_free(&m2);
}

/* Pruning never removes the checkpoint just written (nor step-0), even when a stale folder with a
 * higher step number sorts after it (planted while the run goes on: a folder holding one at the
 * start is refused as another run's); keep_all removes nothing. */
Test(trainer, pruning_keeps_the_new_checkpoint_and_keep_all_keeps_every_one)
{
    script s = {.term_at = -1};
    tb_bert_model m = {0};
    small_model(&m);
    tb_trainer_opts o;
    opts_for(&o, &s);
    o.eval = NULL;
    o.keep = 1;
    o.save_initial = 1;
    char stale[700];
    snprintf(stale, sizeof stale, "%s/step-99", out);
    s.plant = stale;
    tb_trainer_result r;
    cr_assert_eq(tb_trainer_run(&o, &m, &r), TB_OK, "%s", tb_err_msg());
    cr_expect(is_dir("step-16"), "the newest checkpoint stays");
    cr_expect(latest_is("step-16"));
    cr_expect(is_dir("step-0"), "the initial point stays");
    cr_expect(!is_dir("step-12") && !is_dir("step-4"), "keep 1: older periodic checkpoints go");
    tb_bert_free(&m);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    cr_assert_eq(system(cmd), 0);
    tb_bert_model m2 = {0};
    small_model(&m2);
    o.keep_all = 1;
    o.save_initial = 0;
    s.n_seen = 0;
    s.plant = NULL;
    cr_assert_eq(tb_trainer_run(&o, &m2, &r), TB_OK, "%s", tb_err_msg());
    cr_expect(is_dir("step-4") && is_dir("step-8") && is_dir("step-12") && is_dir("step-16"));
    tb_bert_free(&m2);
}

/* ---- hooks ------------------------------------------------------------------------------------ */

typedef struct hooked {
    script s;
    int opens;
    uint64_t from[8];
    int firsts;
    char first_resume[700];
    int resumes;
    char resumed_extra[1024];
    int failures;
    tb_trainer_input_failure failure;
    int peer_timeout_ms;
} hooked;

static int hk_open(void *ctx, uint64_t from, tb_stream_opts *so)
{
    hooked *h = ctx;
    if (h->opens < 8) h->from[h->opens] = from;
    h->opens++;
    if (h->peer_timeout_ms) so->peer_timeout_ms = h->peer_timeout_ms;
    return TB_OK;
}

static int hk_first(void *ctx, const tb_msg *msg, const char *resume_path, tb_bert_model *m)
{
    hooked *h = ctx;
    cr_assert_not_null(msg);
    cr_assert_eq(m->params.count, 0, "the model is built here, once");
    h->firsts++;
    snprintf(h->first_resume, sizeof h->first_resume, "%s", resume_path);
    small_model(m);
    return TB_OK;
}

static int hk_extra(void *ctx, char **json)
{
    (void)ctx;
    *json = strdup("{\"stage_field\":\"x\"}");
    return *json ? TB_OK : TB_ENOMEM;
}

static int hk_resumed(void *ctx, const char *path, const char *extra)
{
    hooked *h = ctx;
    (void)path;
    h->resumes++;
    snprintf(h->resumed_extra, sizeof h->resumed_extra, "%s", extra ? extra : "");
    return TB_OK;
}

static int hk_failed(void *ctx, const tb_trainer_input_failure *f, uint64_t *reopen_at)
{
    hooked *h = ctx;
    (void)reopen_at;
    h->failures++;
    h->failure = *f;
    return f->why;
}

static void hooked_opts(tb_trainer_opts *o, hooked *h)
{
    opts_for(o, &h->s);
    o->eval = NULL;
    o->hooks = (tb_trainer_hooks){.ctx = h, .open_input = hk_open, .first_message = hk_first,
                                  .state_extra = hk_extra, .resumed = hk_resumed, .input_failed = hk_failed};
}

/* The model is built from the first message; the stage's checkpoint fields go out and come back
 * on resume; the input is re-opened at the saved position; the vocabulary given to the first run
 * stays in the checkpoints of a resumed run that is not given it again. */
Test(trainer, hooks_build_the_model_at_the_first_message_and_round_trip_the_stage_state)
{
    hooked h = {.s = {.term_at = 5}};
    char vocab[600];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    cr_assert_eq(ft_write_vocab(vocab), 0);
    cr_assert_eq(tb_signals_install(0), TB_OK);
    tb_trainer_opts o;
    hooked_opts(&o, &h);
    o.vocab_path = vocab;
    tb_bert_model m = {0};
    tb_trainer_result r;
    cr_assert_eq(tb_trainer_run(&o, &m, &r), TB_EINTR, "%s", tb_err_msg());
    tb_signals_reset();
    cr_expect_eq(h.firsts, 1);
    cr_expect_str_eq(h.first_resume, "");
    cr_expect_eq(h.opens, 1);
    cr_expect_eq(h.from[0], 0);
    cr_expect_eq(h.s.seen[0], 0, "the first message is trained on too");
    cr_expect_eq(r.steps, 6);
    tb_bert_free(&m);

    tb_bert_model m2 = {0};
    h.s.term_at = -1;
    h.s.n_seen = 0;
    h.opens = 0;
    o.resume = 1;
    o.vocab_path = NULL;
    cr_assert_eq(tb_trainer_run(&o, &m2, &r), TB_OK, "%s", tb_err_msg());
    tb_signals_restore();
    cr_expect_eq(h.firsts, 2);
    cr_expect(strstr(h.first_resume, "step-6") != NULL, "%s", h.first_resume);
    cr_expect_eq(h.resumes, 1);
    cr_expect(strstr(h.resumed_extra, "\"stage_field\":\"x\"") && strstr(h.resumed_extra, "\"best_step\":-1"), "%s",
              h.resumed_extra);
    cr_expect_eq(h.opens, 2, "once at message 6, once for the second epoch");
    cr_expect_eq(h.from[0], 6);
    cr_expect_eq(h.from[1], 0);
    cr_expect_eq(h.s.seen[0], 6);
    cr_expect_eq(r.steps, 16);
    cr_expect_eq(h.failures, 0);
    char v[4200];
    snprintf(v, sizeof v, "%s/vocab.txt", r.last_checkpoint);
    struct stat st;
    cr_expect_eq(stat(v, &st), 0, "the resumed run's checkpoint has the vocabulary");
    tb_bert_free(&m2);
}

/* A live producer that dies mid-stream: input_failed is asked (and declines), the loop writes an
 * "error" checkpoint holding what was learnt, and fails saying what it was reading. */
static char live_ep[128];

static int dying_producer(void *arg)
{
    (void)arg;
    tb_stream *w = NULL;
    tb_stream_opts so;
    tb_stream_opts_default(&so);
    so.heartbeat_ms = 100;
    if (tb_stream_open(&w, live_ep, TB_STREAM_WRITE, &so) != TB_OK) return 1;
    for (int i = 0; i < 3; i++) {
        tb_msg m;
        tb_msg_init(&m);
        tb_msg_set_int(&m, "x", i);
        if (tb_stream_send(w, &m, NULL) != TB_OK) return 2;
        tb_msg_free(&m);
    }
    sleep(2); /* the consumer takes the three, then the producer vanishes without a word */
    _exit(0);
}

Test(trainer, a_dead_producer_gets_an_error_checkpoint)
{
    hooked h = {.s = {.term_at = -1}, .peer_timeout_ms = 700};
    snprintf(live_ep, sizeof live_ep, "ipc:///tmp/tb-test-%d-trainer", (int)getpid());
    pid_t p = tb_proc_fork(dying_producer, NULL);
    cr_assert_gt(p, 0);
    tb_trainer_opts o;
    hooked_opts(&o, &h);
    o.input = live_ep;
    o.epochs = 1;
    o.total_steps = 10;
    tb_bert_model m = {0};
    tb_trainer_result r;
    int rc = tb_trainer_run(&o, &m, &r);
    tb_proc_reap(p);
    cr_assert_eq(rc, TB_EPEER, "%s", tb_err_msg());
    cr_expect(strstr(tb_err_msg(), "reading training batches from") != NULL, "%s", tb_err_msg());
    cr_expect_eq(h.failures, 1);
    cr_expect_eq(h.failure.why, TB_EPEER);
    cr_expect_eq(h.failure.position, 3);
    cr_expect_eq(h.failure.received, 3);
    cr_expect_eq(r.steps, 3);
    cr_expect(is_dir("step-3"), "what was learnt is kept");
    cr_expect(latest_is("step-3"));
    char met[600];
    snprintf(met, sizeof met, "%s/metrics.jsonl", out);
    cr_expect_eq(count_lines(met, "\"reason\":\"error\""), 1);
    tb_bert_free(&m);
}

/* A live producer of 6 messages that announces its count (announce = 1) or does not. */
static int announcing_producer(void *arg)
{
    int announce = *(const int *)arg;
    tb_stream *w = NULL;
    tb_stream_opts so;
    tb_stream_opts_default(&so);
    so.heartbeat_ms = 100;
    so.announce_count = announce ? 6 : 0;
    so.peer_timeout_ms = 3000;
    so.finish_timeout_ms = 3000;
    if (tb_stream_open(&w, live_ep, TB_STREAM_WRITE, &so) != TB_OK) return 1;
    for (int i = 0; i < 6; i++) {
        tb_msg m;
        tb_msg_init(&m);
        tb_msg_set_int(&m, "x", i);
        if (tb_stream_send(w, &m, NULL) != TB_OK) break; /* the consumer may leave early */
        tb_msg_free(&m);
    }
    tb_stream_finish(w);
    tb_stream_close(w);
    _exit(0);
}

/* The learning rates a run logged, in step order. */
static int logged_lrs(const char *path, double *lr, int cap)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        const char *p = strstr(line, "\"event\":\"step\"") ? strstr(line, "\"lr\":") : NULL;
        if (p) lr[n++] = strtod(p + 5, NULL);
    }
    fclose(f);
    return n;
}

/* The schedule of a live input without a given length is the producer's announced count:
 * warm-up 0.5 over 6 steps gives the multipliers 0, 1/3, 2/3, 1, 2/3, 1/3 (BertAdam's
 * warmup_linear: x / w below w, else (x - 1) / (w - 1), x = step / 6), and a producer that
 * announces nothing leaves a warm-up schedule without a length: an error naming the way out. */
Test(trainer, a_live_stream_is_sized_by_its_announced_count)
{
    static const double want[6] = {0.0, 1.0 / 3, 2.0 / 3, 1.0, 2.0 / 3, 1.0 / 3};
    for (int announce = 1; announce >= 0; announce--) {
        script s = {.term_at = -1};
        tb_bert_model m = {0};
        small_model(&m);
        snprintf(live_ep, sizeof live_ep, "ipc:///tmp/tb-test-%d-announce%d", (int)getpid(), announce);
        pid_t p = tb_proc_fork(announcing_producer, &announce);
        cr_assert_gt(p, 0);
        tb_trainer_opts o;
        opts_for(&o, &s);
        o.eval = NULL;
        o.input = live_ep;
        o.epochs = 1;
        o.save_every = 0;
        o.adam.lr = 1e-3;
        o.adam.warmup = 0.5;
        o.adam.schedule = TB_SCHEDULE_WARMUP_LINEAR;
        char sub[600];
        snprintf(sub, sizeof sub, "%s/run%d", dir, announce);
        o.out_dir = sub;
        tb_trainer_result r;
        int rc = tb_trainer_run(&o, &m, &r);
        tb_proc_reap(p);
        if (announce) {
            cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
            cr_expect_eq(r.steps, 6);
            char met[700];
            snprintf(met, sizeof met, "%s/metrics.jsonl", sub);
            double lr[8];
            cr_assert_eq(logged_lrs(met, lr, 8), 6);
            for (int i = 0; i < 6; i++) cr_expect(fabs(lr[i] - 1e-3 * want[i]) < 1e-12, "step %d: lr %g, want %g", i + 1, lr[i], 1e-3 * want[i]);
            cr_expect_eq(count_lines(met, "\"event\":\"schedule\""), 1);
            cr_expect_eq(count_lines(met, "\"t_total\":6,\"announced\":6"), 1);
        } else {
            cr_expect_eq(rc, TB_EINVAL, "no length for warmup_linear: %s", tb_err_msg());
            cr_expect(strstr(tb_err_msg(), "announced no message count") != NULL, "%s", tb_err_msg());
            cr_expect(strstr(tb_err_msg(), "total") != NULL, "%s", tb_err_msg());
        }
        tb_bert_free(&m);
    }
}

/* Constant predictions: the correlation is undefined (NaN) at every evaluation. */
static int undefined_eval(void *ctx, tb_bert_model *m, tb_taskmetrics_result *r)
{
    (void)ctx;
    (void)m;
    tb_taskmetrics tm;
    cr_assert_eq(tb_taskmetrics_init(&tm, TB_TM_CORR, 1), TB_OK);
    const float pred[4] = {1, 1, 1, 1}, gold[4] = {0, 1, 2, 3};
    cr_assert_eq(tb_taskmetrics_add_values(&tm, pred, gold, 4), TB_OK);
    cr_assert_eq(tb_taskmetrics_compute(&tm, r), TB_OK);
    tb_taskmetrics_free(&tm);
    return TB_OK;
}

/* A run whose dev metric is never defined still ends with a best/ (the first evaluation's), so
 * what reads best/ next (tb-eval in a pipeline) finds a model. */
Test(trainer, an_undefined_dev_metric_still_gives_a_best_checkpoint)
{
    script s = {.term_at = -1};
    tb_bert_model m = {0};
    small_model(&m);
    tb_trainer_opts o;
    opts_for(&o, &s);
    o.eval = undefined_eval;
    tb_trainer_result r;
    cr_assert_eq(tb_trainer_run(&o, &m, &r), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(r.best_step, 4, "the first evaluation");
    cr_expect(isnan(r.best_metric));
    cr_expect(is_dir("best/step-4"));
    cr_expect(!is_dir("best/step-8"), "an undefined value does not replace another");
    tb_bert_free(&m);
}
