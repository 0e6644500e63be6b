/* tb-finetune: fine-tunes a BERT checkpoint on token batches (classification, regression) or
 * pre-trains it with masked-LM; the loop, checkpoints and evaluation are libtb's (tb/train/trainer.h). */
#include "finetune.h"
#include "tb/base/cli.h"
#include "tb/base/error.h"
#include "tb/text/dataset.h"

#include <stdio.h>

static const tb_opt opts[] = {
    TB_OPTION("input", TB_OPT_ENDPOINT, NULL, "training token batches (a message file is read once per epoch)", .required = 1),
    TB_OPTION("dev", TB_OPT_ENDPOINT, NULL, "dev token batches (a message file) to evaluate on; keeps the best checkpoint"),
    TB_OPTION("output", TB_OPT_STRING, NULL, "checkpoint folder: step-N/, latest, best/, metrics.jsonl, loss.png",
              .required = 1, .metavar = "DIR"),
    TB_OPTION("init", TB_OPT_STRING, NULL, "checkpoint folder to start from (Hugging Face layout)", .metavar = "PATH"),
    TB_OPTION("config", TB_OPT_STRING, NULL, "config.json of a randomly initialised model (with --seed)", .metavar = "PATH"),
    TB_OPTION("task", TB_OPT_ENUM, "classification", "objective on the gold labels (default: regression when the "
              "batches' label order is \"regression\", e.g. STS-B)", .choices = "classification|regression"),
    TB_OPTION("mlm", TB_OPT_BOOL, "false", "masked-LM pre-training instead (needs --vocab; adds the MLM head)"),
    TB_OPTION("head", TB_OPT_ENUM, "relu", "classification head: relu (TinyBERT reference) or hf (BertForSequenceClassification)",
              .choices = "relu|hf"),
    TB_OPTION("num-labels", TB_OPT_INT, "0", "classes (0: from the batches' label order; needed for ipc:// or tcp:// input)", TB_RANGE(0, 1024)),
    TB_OPTION("vocab", TB_OPT_STRING, NULL, "vocab.txt: copied into checkpoints; gives the special ids for --mlm", .metavar = "PATH"),
    TB_OPTION("epochs", TB_OPT_INT, "3", "passes over a message-file input (a live ipc:// or tcp:// stream is read once)", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("max-steps", TB_OPT_INT, "0", "stop after this many updates (0: no limit)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("total-steps", TB_OPT_INT, "0", "schedule length (0: batches x epochs, or the count a live producer "
                                              "announces, capped by --max-steps)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("lr", TB_OPT_FLOAT, "5e-5", "peak learning rate"),
    TB_OPTION("warmup", TB_OPT_FLOAT, "0.1", "warm-up fraction of the schedule"),
    TB_OPTION("schedule", TB_OPT_ENUM, "warmup_linear", "learning-rate schedule", .choices = "warmup_linear|warmup_constant|none"),
    TB_OPTION("weight-decay", TB_OPT_FLOAT, "0.01", "decoupled weight decay (not on biases and LayerNorm)"),
    TB_OPTION("max-grad-norm", TB_OPT_FLOAT, "1.0", "per-tensor gradient clipping (<= 0: off)"),
    TB_OPTION("dropout", TB_OPT_BOOL, "true", "dropout during training (--no-dropout for exact comparisons)"),
    TB_OPTION("mlm-prob", TB_OPT_FLOAT, "0.15", "fraction of tokens chosen for masked LM"),
    TB_OPTION("mlm-bias", TB_OPT_STRING, "auto",
              "initial MLM output bias: unigram (log token frequencies of the first epoch of --input), zero "
              "(as initialised, Hugging Face), auto (unigram for a new model from --config, else the checkpoint's)",
              .metavar = "auto|unigram|zero"),
    TB_OPTION("save-every", TB_OPT_INT, "0", "checkpoint every N steps (0: at the end and on SIGTERM only)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("keep", TB_OPT_INT, "2", "periodic checkpoints kept", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("eval-every", TB_OPT_INT, "0", "evaluate on --dev every N steps (0: at the end only)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("resume", TB_OPT_BOOL, "false", "continue exactly from the newest checkpoint in --output (none yet: start)"),
    TB_OPTION("overwrite", TB_OPT_BOOL, "false", "replace the run in --output: the new one is written beside it and "
              "takes its place when it ends (with --resume: continue such a replacement)"),
    TB_OPTION("skip-nonfinite", TB_OPT_INT, "0", "skip up to N batches whose loss or gradient is not finite (no "
              "update; counted in the log and metrics), then fail", TB_RANGE(0, INT64_MAX), .metavar = "N"),
    TB_OPTION("consumer-id", TB_OPT_STRING, NULL, "ipc:// or tcp:// input: this trainer's stream id; batches are then "
              "acknowledged at checkpoints, so --resume with the same id continues from the producer (needs --save-every)",
              .metavar = "ID"),
    TB_OPTION("save-init", TB_OPT_BOOL, "false", "also save the starting point as OUTPUT/step-0 (for comparisons)"),
    TB_OPTION("plot", TB_OPT_STRING, NULL, "loss-curve image (.png or .svg; default OUTPUT/loss.png; \"\" none)", .metavar = "PATH"),
    {0},
};

static const tb_port inputs[] = {
    {.option = "input", .message = "batch", .fields = tb_batch_port_fields, .help = "training batches"},
    {.option = "dev", .message = "batch", .fields = tb_batch_port_fields, .help = "dev batches"},
    {0},
};
static const tb_port outputs[] = {{.option = "output", .message = "checkpoint", .help = "checkpoint folders"}, {0}};

static const tb_stage_info info = {
    .name = "tb-finetune",
    .summary = "Fine-tunes BERT on token batches (classification, regression) or pre-trains it with masked LM.",
    .opts = opts,
    .inputs = inputs,
    .outputs = outputs,
    .details = "BertAdam with the TinyBERT reference's defaults (lr 5e-5, warmup_linear 0.1, weight decay 0.01,\n"
               "per-tensor clipping 1.0). One batch per update. Checkpoints hold the optimiser state, so\n"
               "--resume continues bit-identically (same seed and --threads). SIGTERM writes a checkpoint and\n"
               "exits 130. docs/finetune.md has the details.",
};

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    tb_trainer_result res;
    int rc = ft_run(&cli, &res);
    if (rc == TB_OK) {
        fprintf(stderr, "tb-finetune: %lld steps, last loss %.6f; checkpoint %s", (long long)res.steps, res.last_loss,
                res.last_checkpoint);
        if (res.skipped > 0) fprintf(stderr, "; %lld non-finite batch(es) skipped", (long long)res.skipped);
        if (res.best_step >= 0)
            fprintf(stderr, "; best %s %.4f at step %lld (%s)", res.best_metric_name, res.best_metric,
                    (long long)res.best_step, res.best_checkpoint);
        fputc('\n', stderr);
        code = TB_EXIT_OK;
    } else {
        fprintf(stderr, "tb-finetune: %s\n", tb_err_msg());
        code = rc == TB_EINTR ? TB_EXIT_INTERRUPTED : TB_EXIT_FAILURE;
    }
    tb_cli_free(&cli);
    return code;
}
