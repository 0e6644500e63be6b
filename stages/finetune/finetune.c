/* finetune.c - tb-finetune's run: options to model, loss and training loop (see finetune.h). */
#include "finetune.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/outfile.h"
#include "tb/base/threads.h"
#include "tb/model/bert.h"
#include "tb/model/optim.h"
#include "tb/store/config.h"
#include "tb/store/checkpoint.h"
#include "tb/text/dataset.h"
#include "tb/text/vocab.h"
#include "tb/train/evaluate.h"
#include "unigram.h"

#include <stdio.h>
#include <string.h>

static int setup_model(const tb_cli *cli, tb_bert_model *m, int mlm, int regress)
{
    int rc = TB_OK;
    tb_model_source src = {.init_path = tb_cli_str(cli, "init"), .config_path = tb_cli_str(cli, "config"),
                           .seed = (uint64_t)tb_cli_int(cli, "seed"), .mlm_head = mlm ? 1 : 0};
    if (!mlm) {
        int nl = (int)tb_cli_int(cli, "num-labels");
        if (regress) {
            nl = 1;
        } else if (nl <= 0) {
            char order[1024];
            TB_TRY(tb_trainer_peek_label_order(tb_cli_str(cli, "input"), order, sizeof order));
            TB_CHECK(strcmp(order, "regression") != 0, TB_EINVAL,
                     "%s: the batches hold regression targets, --task classification was given", tb_cli_str(cli, "input"));
            TB_CHECK(order[0] && strcmp(order, "none"), TB_EINVAL,
                     "%s: the batches carry no class label order (\"%s\"); give --num-labels", tb_cli_str(cli, "input"), order);
            nl = 1;
            for (const char *c = order; *c; c++) nl += *c == ',';
        }
        src.num_labels = nl;
        TB_TRY(tb_head_kind_parse(strcmp(tb_cli_str(cli, "head"), "hf") == 0 ? "hf" : "relu", &src.head));
    }
    TB_TRY(tb_trainer_model_open(m, &src));
error:
    return rc;
}

/* The run's vocabulary: the file copied into every checkpoint, its hash, and where it comes from. */
typedef struct ft_vocab {
    char path[4200];      /* copied into the checkpoints ("" : none, or OUT/vocab.txt kept on resume) */
    char file[4200];      /* the vocab.txt read ("" : none) */
    char hash[64];        /* "" : none (nothing is checked) */
    char from[4300];      /* "--vocab X", "checkpoint D's vocab.txt", ... */
} ft_vocab;

/* --vocab, else the --init checkpoint's vocab.txt, else (resuming) OUT/vocab.txt. --vocab and a
 * vocab.txt of --init must agree. No vocabulary at all is allowed with a warning: the
 * checkpoints then carry no vocab.txt and nothing can check the batches against them. */
static int vocab_setup(const tb_cli *cli, ft_vocab *v)
{
    int rc = TB_OK;
    char dir[4096], ihash[64] = "";
    const char *given = tb_cli_str(cli, "vocab"), *init = tb_cli_str(cli, "init"), *out = tb_cli_str(cli, "output");
    memset(v, 0, sizeof *v);
    if (init) {
        TB_TRY(tb_checkpoint_resolve(init, dir, sizeof dir));
        TB_TRY(tb_vocab_hash_in(dir, ihash, sizeof ihash));
    }
    if (given) {
        tb_vocab voc = {0};
        TB_TRY(tb_vocab_load(&voc, given));
        tb_vocab_hash_str(&voc, v->hash, sizeof v->hash);
        tb_vocab_free(&voc);
        snprintf(v->path, sizeof v->path, "%s", given);
        snprintf(v->from, sizeof v->from, "--vocab %s", given);
        TB_CHECK(!ihash[0] || !strcmp(ihash, v->hash), TB_EINVAL,
                 "--vocab %s (%s) is not the vocabulary of --init %s (%s/vocab.txt, %s): give the checkpoint's own "
                 "vocab.txt, or leave --vocab out to use it", given, v->hash, init, dir, ihash);
    } else if (ihash[0]) {
        snprintf(v->path, sizeof v->path, "%s/vocab.txt", dir);
        snprintf(v->hash, sizeof v->hash, "%s", ihash);
        snprintf(v->from, sizeof v->from, "checkpoint %s's vocab.txt", dir);
    } else if (tb_cli_bool(cli, "resume") && out) {
        TB_TRY(tb_vocab_hash_in(out, v->hash, sizeof v->hash)); /* the trainer keeps OUT/vocab.txt */
        snprintf(v->from, sizeof v->from, "%s/vocab.txt", out);
        if (v->hash[0]) snprintf(v->file, sizeof v->file, "%s/vocab.txt", out);
    }
    if (v->path[0]) snprintf(v->file, sizeof v->file, "%s", v->path);
    if (!v->hash[0])
        TB_WARN("no vocabulary: give --vocab (or --init a checkpoint with a vocab.txt); without it the checkpoints "
                "carry no vocab.txt and tb-emit, tb-eval and --dev cannot check that batches use the model's "
                "vocabulary");
error:
    return rc;
}

/* The loop's loss function: checks the batch's vocabulary, then the fine-tuning loss. */
typedef struct ft_step_ctx {
    tb_ft_loss *loss;
    const ft_vocab *vocab;
    const char *input;
} ft_step_ctx;

static int ft_step(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out)
{
    ft_step_ctx *c = ctx;
    int rc = tb_batch_check_vocab(msg, c->vocab->hash, c->vocab->from, c->input, seq);
    if (rc) return rc;
    return tb_ft_loss_step(c->loss, m, msg, seq, out);
}

static int mlm_setup(const tb_cli *cli, const char *vp, const tb_bert_model *m, tb_ft_loss *loss)
{
    int rc = TB_OK;
    tb_vocab v = {0};
    TB_CHECK(vp && *vp, TB_EINVAL, "--mlm needs --vocab (the [MASK], [CLS], [SEP], [PAD], [UNK] ids)");
    TB_TRY(tb_vocab_load(&v, vp));
    TB_CHECK(v.mask_id >= 0, TB_EINVAL, "%s has no [MASK] token", vp);
    TB_CHECK((int)v.count == m->config.vocab_size, TB_EINVAL, "%s has %d tokens, the model's vocab_size is %d", vp,
             (int)v.count, m->config.vocab_size);
    loss->mlm = tb_mlm_opts_default(v.mask_id, m->config.vocab_size);
    loss->mlm.prob = tb_cli_float(cli, "mlm-prob");
    int32_t special[] = {v.pad_id, v.unk_id, v.cls_id, v.sep_id, v.mask_id};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        if (special[i] >= 0) TB_TRY(tb_mlm_add_special(&loss->mlm, special[i]));
    TB_TRY(tb_mlm_opts_check(&loss->mlm));
error:
    tb_vocab_free(&v);
    return rc;
}

/* --mlm-bias: a new model's decoder bias starts at the log token frequencies (see tb/train/mlm.h), so
 * the encoder does not collapse into predicting them. */
static int mlm_bias_setup(const tb_cli *cli, tb_bert_model *m, const tb_mlm_opts *o)
{
    int rc = TB_OK;
    const char *mode = tb_cli_str(cli, "mlm-bias"), *input = tb_cli_str(cli, "input");
    int is_auto = strcmp(mode, "auto") == 0;
    TB_CHECK(is_auto || strcmp(mode, "unigram") == 0 || strcmp(mode, "zero") == 0, TB_EINVAL,
             "--mlm-bias must be auto, unigram or zero, got '%s'", mode);
    if (strcmp(mode, "zero") == 0) return TB_OK; /* as initialised: 0 for a new model, else the checkpoint's */
    if (is_auto && (tb_cli_str(cli, "init") || tb_cli_bool(cli, "resume") || tb_trainer_is_live(input))) return TB_OK;
    TB_CHECK(!tb_trainer_is_live(input), TB_EINVAL,
             "--mlm-bias unigram counts the tokens of --input before training, so --input must be a message file, "
             "not the live stream %s", input);
    int64_t tokens = 0;
    TB_TRY(ft_unigram_bias(m, o, input, &tokens));
    TB_INFO("MLM output bias: log frequencies of %lld tokens (the first epoch of %s)", (long long)tokens, input);
error:
    return rc;
}

static int adam_opts(const tb_cli *cli, tb_adam_options *a)
{
    tb_adam_options_default(a);
    a->lr = tb_cli_float(cli, "lr");
    a->warmup = tb_cli_float(cli, "warmup");
    a->weight_decay = tb_cli_float(cli, "weight-decay");
    a->max_grad_norm = tb_cli_float(cli, "max-grad-norm");
    return tb_lr_schedule_parse(tb_cli_str(cli, "schedule"), &a->schedule);
}

/* Regression when --task says so, or, without --task, when the batches of a message-file input
 * say so (label order "regression", as tb-tokenize writes for STS-B). */
static int objective_is_regression(const tb_cli *cli, int *regress)
{
    int rc = TB_OK;
    const char *input = tb_cli_str(cli, "input");
    char order[1024] = "";
    *regress = strcmp(tb_cli_str(cli, "task"), "regression") == 0;
    if (tb_cli_given(cli, "task") || tb_cli_bool(cli, "mlm") || tb_trainer_is_live(input)) return TB_OK;
    TB_TRY(tb_trainer_peek_label_order(input, order, sizeof order));
    *regress = strcmp(order, "regression") == 0;
error:
    return rc;
}

int ft_run(const tb_cli *cli, tb_trainer_result *res)
{
    int rc = TB_OK;
    tb_bert_model m = {0};
    tb_ft_loss loss;
    int mlm = tb_cli_bool(cli, "mlm"), regress = 0;
    uint64_t seed = (uint64_t)tb_cli_int(cli, "seed");
    static const char *const outs[] = {"metrics", "plot", NULL}, *const ins[] = {"input", "dev", "vocab", "config", NULL};
    int rc0 = objective_is_regression(cli, &regress);
    if (rc0 != TB_OK) return rc0;
    tb_ft_loss_init(&loss, mlm ? TB_FT_MLM : regress ? TB_FT_REGRESS : TB_FT_CLASSIFY, tb_cli_bool(cli, "dropout"), seed);
    ft_vocab voc;
    TB_TRY(tb_cli_output_check(cli, outs, ins)); /* a metrics or plot file over an input */
    TB_TRY(vocab_setup(cli, &voc));
    TB_TRY(setup_model(cli, &m, mlm, regress));
    tb_bert_set_threads(&m, tb_threads_count());
    if (mlm) TB_TRY(mlm_setup(cli, voc.file, &m, &loss));
    if (mlm) TB_TRY(mlm_bias_setup(cli, &m, &loss.mlm));
    tb_trainer_opts o;
    tb_trainer_opts_default(&o);
    o.stage = "tb-finetune";
    o.input = tb_cli_str(cli, "input");
    o.out_dir = tb_cli_str(cli, "output");
    /* a live stream is read once (its producer sends every epoch): the default 3 applies to files */
    o.epochs = tb_trainer_is_live(o.input) && !tb_cli_given(cli, "epochs") ? 1 : (int)tb_cli_int(cli, "epochs");
    o.max_steps = tb_cli_int(cli, "max-steps");
    o.total_steps = tb_cli_int(cli, "total-steps") > 0 ? tb_cli_int(cli, "total-steps") : 0; /* <= 0: counted */
    TB_TRY(adam_opts(cli, &o.adam));
    o.save_every = tb_cli_int(cli, "save-every");
    o.keep = (int)tb_cli_int(cli, "keep");
    o.eval_every = tb_cli_int(cli, "eval-every");
    o.metrics_path = tb_cli_str(cli, "metrics");
    TB_TRY(tb_progress_parse_mode(tb_cli_str(cli, "progress"), &o.progress));
    o.plot_path = tb_cli_str(cli, "plot");
    o.vocab_path = voc.path[0] ? voc.path : NULL; /* resuming without one: the trainer keeps OUT/vocab.txt */
    o.seed = seed;
    o.resume = tb_cli_bool(cli, "resume");
    o.overwrite = tb_cli_bool(cli, "overwrite");
    o.skip_nonfinite = tb_cli_int(cli, "skip-nonfinite");
    o.save_initial = tb_cli_bool(cli, "save-init");
    o.consumer_id = tb_cli_str(cli, "consumer-id");
    ft_step_ctx step = {.loss = &loss, .vocab = &voc, .input = o.input};
    o.loss = ft_step;
    o.loss_ctx = &step;
    tb_eval_opts eo;
    tb_eval_opts_default(&eo);
    eo.input = tb_cli_str(cli, "dev");
    eo.arena_mode = TB_BERT_TRAIN;
    eo.expect_vocab_hash = voc.hash;
    eo.vocab_from = voc.from;
    TB_CHECK(!eo.input || !tb_trainer_is_live(eo.input), TB_EINVAL,
             "--dev %s: the dev set is read at every evaluation, so it must be a message file (tb-tokenize --output FILE)",
             eo.input);
    if (eo.input && !mlm) TB_TRY(tb_batch_file_check_vocab(eo.input, voc.hash, voc.from)); /* before training */
    if (eo.input && !mlm) {
        o.eval = tb_trainer_eval_stream;
        o.eval_ctx = &eo;
    } else if (eo.input) {
        TB_WARN("--dev is ignored with --mlm (no task metric to evaluate)");
    }
    TB_TRY(tb_trainer_run(&o, &m, res));
error:
    tb_ft_loss_free(&loss);
    tb_bert_free(&m);
    return rc;
}
