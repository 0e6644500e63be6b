/* tb-emit: runs a teacher once per token batch and streams the batch with the teacher features
 * its students asked for (stages/emit/emit.h, tb/train/features.h; docs/emit.md). */
#include "tb/base/cli.h"
#include "tb/text/dataset.h"
#include "check.h"
#include "emit.h"
#include "tb/base/error.h"
#include "tb/train/features.h"
#include "tb/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tb_opt opts[] = {
    TB_OPTION("teacher", TB_OPT_STRING, NULL, "teacher checkpoint folder (or a folder with `latest`)", .metavar = "PATH"),
    TB_OPTION("input", TB_OPT_ENDPOINT, NULL, "token batches: a message file or tcp:// / ipc:// of tb-tokenize"),
    TB_OPTION("output", TB_OPT_ENDPOINT, NULL,
              "feature batches: tcp:// or ipc:// (students connect) or a message file (file:PATH)"),
    TB_OPTION("students", TB_OPT_INT, "1", "students whose hellos are awaited before the first batch", TB_RANGE(1, 4096)),
    TB_OPTION("feature-dtype", TB_OPT_ENUM, "f32", "features on the wire: f32 (<f4) or f16 (<f2, half the bytes)",
              .choices = "f32|f16"),
    TB_OPTION("teacher-dropout", TB_OPT_BOOL, "false",
              "run the teacher with dropout, as the reference code does (masks keyed by --seed and batch number)"),
    TB_OPTION("student-layers", TB_OPT_INT, "0",
              "features for a student of this depth (file output; added to the hellos' union; 0: none)", TB_RANGE(0, 63)),
    TB_OPTION("hidden", TB_OPT_STRING, "", "teacher hidden states to send, e.g. \"0,3,6,9,12\"", .metavar = "LIST"),
    TB_OPTION("attn", TB_OPT_STRING, "", "teacher layers (0-based) whose attention scores to send", .metavar = "LIST"),
    TB_OPTION("logits", TB_OPT_BOOL, "false", "send the teacher's logits"),
    TB_OPTION("max-seq", TB_OPT_INT, "0", "cut batches to this many positions (padding only; 0: as they come)", TB_RANGE(0, 1 << 20)),
    TB_OPTION("max-output-bytes", TB_OPT_INT, "0", "file output: refuse when the estimate exceeds this (0: disk only)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("max-batches", TB_OPT_INT, "0", "stop after this many batches (0: the whole input)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("on-student-death", TB_OPT_ENUM, "fail",
              "a student that stops answering: fail the stream, drop it, or wait for it to resume",
              .choices = "fail|drop|wait"),
    TB_OPTION("peer-timeout-ms", TB_OPT_INT, "10000", "silence after which a peer counts as dead", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("hello-timeout-ms", TB_OPT_INT, "60000", "how long to wait for --students hellos", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("dead-wait-ms", TB_OPT_INT, "60000", "--on-student-death wait: how long a student may stay away", TB_RANGE(0, INT32_MAX)),
    TB_OPTION("finish-timeout-ms", TB_OPT_INT, "60000", "how long to wait for the students' final acknowledgements", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("retain-max", TB_OPT_INT, "64", "batches kept for lagging or resuming students", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("recv-timeout-ms", TB_OPT_INT, "-1", "per input batch (-1: wait; a dead producer is still detected)", TB_RANGE(-1, INT32_MAX)),
    TB_OPTION("stream-id", TB_OPT_STRING, "main", "stream id of the output"),
    TB_OPTION("input-stream-id", TB_OPT_STRING, "main", "stream id of the input"),
    TB_OPTION("check", TB_OPT_BOOL, "false",
              "check mode: losses and student gradients of one batch, written as JSON + safetensors"),
    TB_OPTION("student", TB_OPT_STRING, NULL, "check mode: student checkpoint", .metavar = "PATH"),
    TB_OPTION("check-out", TB_OPT_STRING, NULL, "check mode: output folder (losses.json, gradients.safetensors)",
              .metavar = "DIR"),
    TB_OPTION("check-index", TB_OPT_INT, "0", "check mode: which batch of the --input file", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("check-kind", TB_OPT_ENUM, "intermediate",
              "check mode: intermediate (attention + hidden, stage 1 / general) or prediction (stage 2)",
              .choices = "intermediate|prediction"),
    TB_OPTION("temperature", TB_OPT_FLOAT, "1", "check mode: temperature of the prediction loss"),
    TB_OPTION("student-dropout", TB_OPT_BOOL, "false", "check mode: run the student with dropout"),
    {0},
};

static const tb_port_field out_fields[] = {
    {"input_ids", "<i4", "B,T", "token ids, passed through from the input batch"},
    {"token_type_ids", "<i4", "B,T", "segment ids, passed through"},
    {"attention_mask", "<i4", "B,T", "1 for tokens, 0 for padding, passed through"},
    {"labels", "<i4|<f4", "B", "gold labels, passed through"},
    {"example_ids", "<i8", "B", "example indices, passed through"},
    {"teacher.hidden.*", "<f4|<f2", "B,T,H", "teacher hidden state j (0: embeddings)"},
    {"teacher.attn.*", "<f4|<f2", "B,NH,T,T", "pre-softmax attention scores of teacher layer l (0-based)"},
    {"teacher.logits", "<f4|<f2", "B,NL", "teacher logits"},
    {"features.dtype", "str", "", "f32 or f16"},
    {"teacher.config_hash", "str", "", "hash of the teacher's config"},
    {"teacher.layers", "int", "", "teacher depth"},
    {0},
};
static const tb_port inputs[] = {{.option = "input", .message = "batch", .fields = tb_batch_port_fields,
                                  .help = "token batches (tb-tokenize)"},
                                 {0}};
static const tb_port outputs[] = {{.option = "output", .message = "features", .fields = out_fields,
                                   .help = "token batches with teacher features, one stream to all students"},
                                  {0}};

static const tb_stage_info info = {
    .name = "tb-emit",
    .summary = "Runs a teacher once per token batch and streams the features its students ask for.",
    .opts = opts,
    .inputs = inputs,
    .outputs = outputs,
    .details =
        "Students (tb-distill) connect to --output, say in their hello which teacher features they need\n"
        "(their depth, or explicit lists) and get every batch exactly once, in order. The union of all\n"
        "requests is computed once per batch and sent to every student. The teacher runs without dropout\n"
        "unless --teacher-dropout (the reference code leaves it on; off makes features deterministic and\n"
        "independent of the seed). With a file --output the size is estimated first and the run refused\n"
        "when the disk cannot hold it (a small-data option: see docs/emit.md).\n"
        "--check writes the losses and student gradients of one batch for comparison with other code.",
};

static tb_peer_policy policy_of(const char *s)
{
    if (!strcmp(s, "drop")) return TB_PEER_DROP;
    if (!strcmp(s, "wait")) return TB_PEER_WAIT;
    return TB_PEER_FAIL;
}

static int run_check(const tb_cli *cli)
{
    tb_emit_check_opts o;
    tb_emit_check_opts_default(&o);
    o.teacher = tb_cli_str(cli, "teacher");
    o.student = tb_cli_str(cli, "student");
    o.input = tb_cli_str(cli, "input");
    o.out_dir = tb_cli_str(cli, "check-out");
    o.index = tb_cli_int(cli, "check-index");
    o.kind = strcmp(tb_cli_str(cli, "check-kind"), "prediction") ? TB_DISTILL_INTERMEDIATE : TB_DISTILL_PREDICTION;
    o.temperature = (float)tb_cli_float(cli, "temperature");
    o.dtype = strcmp(tb_cli_str(cli, "feature-dtype"), "f16") ? TB_F32 : TB_F16;
    o.teacher_dropout = tb_cli_bool(cli, "teacher-dropout");
    o.student_dropout = tb_cli_bool(cli, "student-dropout");
    o.seed = (uint64_t)tb_cli_int(cli, "seed");
    o.threads = (int)tb_cli_int(cli, "threads");
    if (!o.teacher || !o.student || !o.input || !o.out_dir) {
        fprintf(stderr, "tb-emit: --check needs --teacher, --student, --input and --check-out (see tb-emit --help)\n");
        return TB_EXIT_USAGE;
    }
    tb_bert_distill_losses l;
    if (tb_emit_check(&o, &l) != TB_OK) {
        fprintf(stderr, "tb-emit: %s\n", tb_err_msg());
        return TB_EXIT_FAILURE;
    }
    TB_INFO("check: att %.9g hidden %.9g (emb %.9g) pred %.9g total %.9g -> %s", l.att, l.hidden, l.emb, l.pred,
            l.total, o.out_dir);
    return TB_EXIT_OK;
}

/* The emitter's options from the command line; TB_EXIT_USAGE (after saying why) for bad values,
 * else -1. */
static int emit_opts_from_cli(const tb_cli *cli, tb_emit_opts *o)
{
    tb_emit_opts_default(o);
    o->teacher = tb_cli_str(cli, "teacher");
    o->input = tb_cli_str(cli, "input");
    o->output = tb_cli_str(cli, "output");
    if (!o->teacher || !o->input || !o->output) {
        fprintf(stderr, "tb-emit: give --teacher, --input and --output (or --check); see tb-emit --help\n");
        return TB_EXIT_USAGE;
    }
    int64_t students = tb_cli_int(cli, "students");
    if (students < 1 || students > 4096) {
        fprintf(stderr, "tb-emit: --students must be in [1, 4096], got %lld\n", (long long)students);
        return TB_EXIT_USAGE;
    }
    o->students = (int)students;
    int64_t sl = tb_cli_int(cli, "student-layers");
    if (sl < 0 || sl > TB_FEATURES_MAX_LAYERS) {
        fprintf(stderr, "tb-emit: --student-layers must be in [0, %d]\n", TB_FEATURES_MAX_LAYERS);
        return TB_EXIT_USAGE;
    }
    o->extra.student_layers = (int)sl;
    if (tb_features_mask_parse(tb_cli_str(cli, "hidden"), "--hidden", &o->extra.hidden) != TB_OK ||
        tb_features_mask_parse(tb_cli_str(cli, "attn"), "--attn", &o->extra.attn) != TB_OK) {
        fprintf(stderr, "tb-emit: %s\n", tb_err_msg());
        return TB_EXIT_USAGE;
    }
    o->extra.logits = tb_cli_bool(cli, "logits");
    o->dtype = strcmp(tb_cli_str(cli, "feature-dtype"), "f16") ? TB_F32 : TB_F16;
    o->teacher_dropout = tb_cli_bool(cli, "teacher-dropout");
    o->seed = (uint64_t)tb_cli_int(cli, "seed");
    int64_t ms = tb_cli_int(cli, "max-seq"), mob = tb_cli_int(cli, "max-output-bytes");
    if (ms < 0 || ms > 1 << 20 || mob < 0 || tb_cli_int(cli, "max-batches") < 0) {
        fprintf(stderr, "tb-emit: --max-seq, --max-output-bytes and --max-batches must be >= 0\n");
        return TB_EXIT_USAGE;
    }
    o->max_seq = (int)ms;
    o->max_output_bytes = (uint64_t)mob;
    o->max_batches = tb_cli_int(cli, "max-batches");
    o->policy = policy_of(tb_cli_str(cli, "on-student-death"));
    o->peer_timeout_ms = (int)tb_cli_int(cli, "peer-timeout-ms");
    o->hello_timeout_ms = (int)tb_cli_int(cli, "hello-timeout-ms");
    o->dead_wait_ms = (int)tb_cli_int(cli, "dead-wait-ms");
    o->finish_timeout_ms = (int)tb_cli_int(cli, "finish-timeout-ms");
    o->retain_max = (int)tb_cli_int(cli, "retain-max");
    o->recv_timeout_ms = (int)tb_cli_int(cli, "recv-timeout-ms");
    o->stream_id = tb_cli_str(cli, "stream-id");
    o->input_stream_id = tb_cli_str(cli, "input-stream-id");
    o->threads = (int)tb_cli_int(cli, "threads");
    o->metrics_path = tb_cli_str(cli, "metrics");
    if (tb_progress_parse_mode(tb_cli_str(cli, "progress"), &o->progress) != TB_OK) o->progress = TB_PROGRESS_NONE;
    return -1;
}

static int run_emit(const tb_cli *cli)
{
    tb_emit_opts o;
    int code = emit_opts_from_cli(cli, &o);
    if (code >= 0) return code;
    tb_emit_result res;
    int rc = tb_emit_run(&o, &res);
    if (rc == TB_EINTR) {
        fprintf(stderr, "tb-emit: %s\n", tb_err_msg());
        return TB_EXIT_INTERRUPTED;
    }
    if (rc != TB_OK) {
        fprintf(stderr, "tb-emit: %s\n", tb_err_msg());
        return TB_EXIT_FAILURE;
    }
    TB_INFO("sent %lld batches (%.3f MB of features each way), %llu regenerated, %d student(s) dropped",
            (long long)res.batches, (double)res.feature_bytes / 1e6, (unsigned long long)res.regenerated, res.dropped);
    return TB_EXIT_OK;
}

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    code = tb_cli_bool(&cli, "check") ? run_check(&cli) : run_emit(&cli);
    tb_cli_free(&cli);
    return code;
}
