/* tb-distill: trains a TinyBERT student on a stream of teacher features (stages/distill/distill.h). */
#include "tb/base/cli.h"
#include "tb/store/config.h"
#include "tb/text/dataset.h"
#include "distill.h"
#include "tb/base/error.h"
#include "tb/base/log.h"

#include <stdio.h>

static const tb_opt opts[] = {
    TB_OPTION("input", TB_OPT_ENDPOINT, NULL, "teacher-feature messages (tb-emit's output, or a file of them)",
              .required = 1),
    TB_OPTION("output", TB_OPT_STRING, NULL, "output folder: step-N checkpoints, best/, metrics.jsonl, loss.png",
              .metavar = "DIR"),
    TB_OPTION("mode", TB_OPT_ENUM, "general", "distillation step", .choices = "general|task-stage1|task-stage2"),
    TB_OPTION("init", TB_OPT_STRING, NULL, "student checkpoint to start from (general student for stage 1, stage 1 "
                                            "student for stage 2)", .metavar = "PATH"),
    TB_OPTION("config", TB_OPT_STRING, NULL, "config.json of a randomly initialised student (weights from --seed)",
              .metavar = "PATH"),
    TB_OPTION("head", TB_OPT_ENUM, "relu", "head added to a task student that has none", .choices = "relu|hf"),
    TB_OPTION("temperature", TB_OPT_FLOAT, "1", "soft cross-entropy temperature (task-stage2)"),
    TB_OPTION("att-weight", TB_OPT_FLOAT, "1", "weight of the attention loss"),
    TB_OPTION("hidden-weight", TB_OPT_FLOAT, "1", "weight of the hidden-state loss (embedding term included)"),
    TB_OPTION("pred-weight", TB_OPT_FLOAT, "1", "weight of the prediction loss"),
    TB_OPTION("dropout", TB_OPT_BOOL, "true", "student dropout (masks keyed by --seed and the message number)"),
    TB_OPTION("lr", TB_OPT_FLOAT, NULL, "learning rate (default 5e-5; task-stage2 3e-5)"),
    TB_OPTION("schedule", TB_OPT_ENUM, NULL, "learning-rate schedule (default constant for task-stage1, "
                                             "warmup_linear otherwise)",
              .choices = "none|constant|warmup_linear|warmup_constant"),
    TB_OPTION("warmup", TB_OPT_FLOAT, "0.1", "warm-up fraction of the schedule"),
    TB_OPTION("total-steps", TB_OPT_INT, "0", "schedule length in updates (0: the messages of the input, as its "
                                              "file or emitter tells, capped by --max-steps)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("max-steps", TB_OPT_INT, "0", "stop after this many updates (0: at the end of the stream)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("save-every", TB_OPT_INT, "0", "checkpoint every N updates (0: only at the end or on a signal)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("keep", TB_OPT_INT, "2", "task-stage2: periodic checkpoints kept (general and stage 1 keep all)", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("dev", TB_OPT_ENDPOINT, NULL, "task-stage2: dev token batches, evaluated to keep the best model"),
    TB_OPTION("dev-task", TB_OPT_STRING, NULL, "task-stage2: the dev set's task, for its metric (cola: MCC, mrpc/qqp: "
                                               "accuracy + F1, sts-b: correlation; default: the task the dev batches "
                                               "name, else accuracy, or correlation for one output)"),
    TB_OPTION("eval-every", TB_OPT_INT, "0", "task-stage2: evaluate every N updates (0: at the end)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("resume", TB_OPT_BOOL, "false", "continue from the newest checkpoint in --output (none yet: start)"),
    TB_OPTION("overwrite", TB_OPT_BOOL, "false", "replace the run in --output: the new one is written beside it and "
              "takes its place when it ends (with --resume: continue such a replacement)"),
    TB_OPTION("skip-nonfinite", TB_OPT_INT, "0", "skip up to N messages whose loss or gradient is not finite (no "
              "update; counted in the log and metrics), then fail", TB_RANGE(0, INT64_MAX), .metavar = "N"),
    TB_OPTION("consumer-id", TB_OPT_STRING, NULL, "this student's id on the stream (default student-<pid>; give a "
                                                  "fixed one to resume after a crash)"),
    TB_OPTION("credit", TB_OPT_INT, "4", "messages the emitter may send ahead", TB_RANGE(1, 1 << 20)),
    TB_OPTION("recv-timeout-ms", TB_OPT_INT, "0", "fail when no message arrives for this long (0: wait)", TB_RANGE(0, INT32_MAX)),
    TB_OPTION("peer-timeout-ms", TB_OPT_INT, "0", "an emitter silent this long counts as dead (0: stream default "
                                                  "10000)", TB_RANGE(0, INT32_MAX)),
    TB_OPTION("emitter-wait-ms", TB_OPT_INT, "0", "when the emitter dies: 0 fail; N > 0 wait up to N ms for a "
                                                   "restarted one and continue from the next message", TB_RANGE(0, INT32_MAX)),
    TB_OPTION("expect-config-hash", TB_OPT_STRING, NULL, "teacher config hash required (default: pinned from the "
                                                         "first message)"),
    TB_OPTION("expect-vocab-hash", TB_OPT_STRING, NULL, "vocabulary hash required (default: pinned from the first "
                                                        "message)"),
    TB_OPTION("vocab", TB_OPT_STRING, NULL, "vocab.txt copied into checkpoints (default: the --init checkpoint's)"),
    TB_OPTION("plot", TB_OPT_STRING, NULL, "loss plot (default OUT/loss.png; \"\": none)"),
    TB_OPTION("check", TB_OPT_STRING, NULL, "check mode: losses and gradients of the first message, no update, "
                                            "into DIR/losses.json and DIR/grads.safetensors", .metavar = "DIR"),
    {0}};

static const tb_port_field in_fields[] = {
    {"input_ids", "<i4", "B,T", "token ids"},
    {"attention_mask", "<i4", "B,T", "1 attend, 0 padding"},
    {"token_type_ids", "<i4", "B,T", "segment ids"},
    {"labels", "<i4", "B", "gold labels (f32 for regression)"},
    {"teacher.hidden.*", "<f4", "B,T,Ct", "teacher hidden states j*k (general, task-stage1)"},
    {"teacher.attn.*", "<f4", "B,NH,T,T", "teacher pre-softmax scores of layers i*k+k-1 (general, task-stage1)"},
    {"teacher.logits", "<f4", "B,NL", "teacher logits (task-stage2)"},
    {0}};

static const tb_port inputs[] = {
    {"input", "features", in_fields, "teacher features; the hello asks for what the mode needs"},
    {"dev", "batch", NULL, "dev token batches (task-stage2)"},
    {0}};

static const tb_port outputs[] = {{"output", "checkpoint", NULL, "Hugging Face checkpoints with fit_dense"}, {0}};

static const tb_stage_info info = {
    .name = "tb-distill",
    .summary = "trains a TinyBERT student on teacher features streamed by tb-emit",
    .opts = opts,
    .inputs = inputs,
    .outputs = outputs,
    .details = "Modes: general (attention + hidden loss, general teacher), task-stage1 (embedding + hidden +\n"
               "attention, from a general student), task-stage2 (soft cross-entropy on the teacher's logits, or\n"
               "MSE to the gold value for regression, from a stage 1 student). The student acknowledges a\n"
               "message only once a checkpoint holds it: restart it with --resume and the same --consumer-id and\n"
               "it continues exactly where its checkpoint stands. docs/distill.md has the details.",
};

static int opts_from_cli(const tb_cli *cli, tb_distill_opts *o)
{
    int rc = TB_OK;
    tb_distill_mode mode;
    tb_distill_opts_default(o);
    TB_TRY(tb_distill_mode_parse(tb_cli_str(cli, "mode"), &mode));
    tb_distill_opts_for_mode(o, mode);
    o->input = tb_cli_str(cli, "input");
    o->out_dir = tb_cli_str(cli, "output");
    o->init_path = tb_cli_str(cli, "init");
    o->config_path = tb_cli_str(cli, "config");
    TB_TRY(tb_head_kind_parse(tb_cli_str(cli, "head"), &o->head));
    o->loss.temperature = tb_cli_float(cli, "temperature");
    o->loss.w_att = tb_cli_float(cli, "att-weight");
    o->loss.w_hidden = tb_cli_float(cli, "hidden-weight");
    o->loss.w_pred = tb_cli_float(cli, "pred-weight");
    o->loss.dropout = tb_cli_bool(cli, "dropout");
    o->loss.seed = (uint64_t)tb_cli_int(cli, "seed");
    if (tb_cli_given(cli, "lr")) o->adam.lr = tb_cli_float(cli, "lr");
    if (tb_cli_given(cli, "schedule")) TB_TRY(tb_lr_schedule_parse(tb_cli_str(cli, "schedule"), &o->adam.schedule));
    o->adam.warmup = tb_cli_float(cli, "warmup");
    o->total_steps = tb_cli_int(cli, "total-steps");
    o->max_steps = tb_cli_int(cli, "max-steps");
    o->save_every = tb_cli_int(cli, "save-every");
    o->keep = (int)tb_cli_int(cli, "keep");
    o->dev_input = tb_cli_str(cli, "dev");
    o->eval_every = tb_cli_int(cli, "eval-every");
    if (tb_cli_str(cli, "dev-task")) {
        tb_task task;
        TB_TRY(tb_task_parse(tb_cli_str(cli, "dev-task"), &task));
        TB_TRY(tb_taskmetrics_kind_for_task(task, &o->dev_kind));
    }
    o->resume = tb_cli_bool(cli, "resume");
    o->overwrite = tb_cli_bool(cli, "overwrite");
    o->skip_nonfinite = tb_cli_int(cli, "skip-nonfinite");
    o->consumer_id = tb_cli_str(cli, "consumer-id");
    o->credit = (int)tb_cli_int(cli, "credit");
    o->recv_timeout_ms = (int)tb_cli_int(cli, "recv-timeout-ms");
    o->peer_timeout_ms = (int)tb_cli_int(cli, "peer-timeout-ms");
    o->emitter_wait_ms = (int)tb_cli_int(cli, "emitter-wait-ms");
    o->expect_config_hash = tb_cli_str(cli, "expect-config-hash");
    o->expect_vocab_hash = tb_cli_str(cli, "expect-vocab-hash");
    o->vocab_path = tb_cli_str(cli, "vocab");
    o->plot_path = tb_cli_str(cli, "plot");
    o->check_dir = tb_cli_str(cli, "check");
    o->metrics_path = tb_cli_str(cli, "metrics");
    o->threads = (int)tb_cli_int(cli, "threads");
    TB_TRY(tb_progress_parse_mode(tb_cli_str(cli, "progress"), &o->progress));
error:
    return rc;
}

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    tb_distill_opts o;
    tb_distill_result res;
    int rc = opts_from_cli(&cli, &o);
    if (!rc) rc = tb_distill_run(&o, &res);
    if (rc == TB_OK && !o.check_dir)
        TB_INFO("done: %lld steps, last loss %.6g, checkpoint %s; %lld non-finite message(s) skipped",
                (long long)res.steps, res.last_loss, res.last_checkpoint, (long long)res.skipped);
    if (rc) fprintf(stderr, "tb-distill: %s\n", tb_err_msg());
    tb_cli_free(&cli);
    return rc == TB_OK ? TB_EXIT_OK : rc == TB_EINTR ? TB_EXIT_INTERRUPTED : TB_EXIT_FAILURE;
}
