/* tb-eval: evaluates one or two checkpoints on a token stream: task metrics, speed, size. */
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/base/cli.h"
#include "tb/text/dataset.h"
#include "tb/base/error.h"
#include "tb/train/evaluate.h"
#include "tb/base/log.h"
#include "tb/base/outfile.h"
#include "tb/base/threads.h"
#include "tb/text/vocab.h"
#include "tb/train/trainer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tb_opt opts[] = {
    TB_OPTION("model", TB_OPT_STRING, NULL, "checkpoint folder to evaluate (teacher or student)", .required = 1,
              .metavar = "PATH"),
    TB_OPTION("compare", TB_OPT_STRING, NULL, "second checkpoint, evaluated on the same data and shown side by side",
              .metavar = "PATH"),
    TB_OPTION("input", TB_OPT_ENDPOINT, NULL, "token batches to evaluate on (a message file for --compare)", .required = 1),
    TB_OPTION("metric", TB_OPT_ENUM, "auto", "metric kind (auto: corr for 1 output, else accuracy)",
              .choices = "auto|accuracy|acc_f1|mcc|corr"),
    TB_OPTION("task", TB_OPT_STRING, NULL, "GLUE task name; sets the metric (cola: mcc, mrpc/qqp: acc_f1, sts-b: corr)",
              .metavar = "NAME"),
    TB_OPTION("predictions", TB_OPT_STRING, NULL, "GLUE submission TSV of the (first) model's predictions", .metavar = "PATH"),
    TB_OPTION("json", TB_OPT_STRING, "-", "results as JSON (one object per model per line; \"-\": stdout)", .metavar = "PATH"),
    TB_OPTION("max-batches", TB_OPT_INT, "0", "evaluate only this many batches (0: all)", TB_RANGE(0, INT64_MAX)),
    {0},
};

static const tb_port inputs[] = {{.option = "input", .message = "batch", .fields = tb_batch_port_fields, .help = "batches"}, {0}};
static const tb_port outputs[] = {{.option = "json", .message = "metrics", .help = "metrics JSON"}, {0}};

static const tb_stage_info info = {
    .name = "tb-eval",
    .summary = "Evaluates checkpoints on token batches: GLUE metrics, predictions TSV, examples/s, parameters, size.",
    .opts = opts,
    .inputs = inputs,
    .outputs = outputs,
    .details = "The table goes to stderr, JSON to --json. With --compare the two models run on the same batches\n"
               "one after the other and the table shows the speed-up and size ratio of the second.",
};

/* Outputs that must not be one of the inputs (checked before anything is read or written). */
static const char *const out_opts[] = {"json", "predictions", "metrics", NULL};
static const char *const in_opts[] = {"input", "model", "compare", NULL};

typedef struct eval_one {
    tb_eval_result r;
    int64_t params;
    double mb;
} eval_one;

static int kind_of(const tb_cli *cli, tb_taskmetrics_kind *kind)
{
    int rc = TB_OK;
    const char *task = tb_cli_str(cli, "task");
    static const tb_taskmetrics_kind kinds[] = {TB_TM_KIND_COUNT, TB_TM_ACCURACY, TB_TM_ACC_F1, TB_TM_MCC, TB_TM_CORR};
    *kind = kinds[tb_cli_enum_index(cli, "metric")];
    if (task) {
        tb_task t;
        TB_TRY(tb_task_parse(task, &t));
        TB_TRY(tb_taskmetrics_kind_for_task(t, kind));
    }
error:
    return rc;
}

/* The vocabulary hash of checkpoint `path` (its vocab.txt) into hash, and where it comes from
 * into from; hash = "" (with a warning) when the checkpoint has none. */
static int model_vocab(const char *path, char *hash, size_t hn, char *from, size_t fn)
{
    int rc = TB_OK;
    char dir[4096];
    TB_TRY(tb_checkpoint_resolve(path, dir, sizeof dir));
    TB_TRY(tb_vocab_hash_in(dir, hash, hn));
    snprintf(from, fn, "checkpoint %s's vocab.txt", dir);
    if (!hash[0])
        TB_WARN("checkpoint %s has no vocab.txt: cannot check that the batches were made with its vocabulary", dir);
error:
    return rc;
}

static int eval_model(const tb_cli *cli, const char *path, const char *predictions, eval_one *out)
{
    int rc = TB_OK;
    tb_bert_model m = {0};
    char vhash[64], vfrom[4200];
    tb_model_source src = {.init_path = path, .mlm_head = 0};
    TB_TRY(tb_trainer_model_open(&m, &src));
    tb_bert_set_threads(&m, tb_threads_count());
    tb_eval_opts eo;
    tb_eval_opts_default(&eo);
    eo.input = tb_cli_str(cli, "input");
    eo.predictions_path = predictions;
    eo.max_batches = tb_cli_int(cli, "max-batches");
    TB_TRY(model_vocab(path, vhash, sizeof vhash, vfrom, sizeof vfrom));
    eo.expect_vocab_hash = vhash;
    eo.vocab_from = vfrom;
    TB_TRY(kind_of(cli, &eo.kind));
    TB_TRY(tb_evaluate(&m, &eo, &out->r));
    tb_eval_model_size(&m, &out->params, &out->mb);
error:
    if (rc != TB_OK) tb_err_wrap(rc, "evaluating %s", path);
    tb_bert_free(&m);
    return rc;
}

/* One JSON line per model to --json: standard output, or a file replaced only when complete. */
static int write_json(const tb_cli *cli, const eval_one *e, const char *const *names, int n)
{
    int rc = TB_OK;
    const char *path = tb_cli_str(cli, "json");
    tb_outfile o = {0};
    FILE *f = stdout;
    char *line = NULL;
    if (!path || !*path) return TB_OK;
    if (strcmp(path, "-") != 0) {
        TB_TRY(tb_outfile_open(&o, path));
        f = o.f;
    }
    for (int i = 0; i < n; i++) {
        TB_TRY(tb_eval_format_json(&e[i].r, names[i], e[i].params, e[i].mb, &line));
        TB_CHECK(fprintf(f, "%s\n", line) > 0, TB_EIO, "cannot write %s: %s", path, strerror(errno));
        free(line);
        line = NULL;
    }
    if (f == stdout)
        TB_CHECK(fflush(f) == 0, TB_EIO, "cannot write %s: %s", path, strerror(errno));
    else
        TB_TRY(tb_outfile_commit(&o));
error:
    free(line);
    tb_outfile_abort(&o);
    return rc;
}

static int run(const tb_cli *cli)
{
    int rc = TB_OK;
    eval_one e[2];
    const char *names[2] = {tb_cli_str(cli, "model"), tb_cli_str(cli, "compare")};
    int n = names[1] ? 2 : 1;
    char *table = NULL;
    TB_TRY(tb_cli_output_check(cli, out_opts, in_opts));
    for (int i = 0; i < n; i++) TB_TRY(eval_model(cli, names[i], i == 0 ? tb_cli_str(cli, "predictions") : NULL, &e[i]));
    const tb_eval_result *rs[2] = {&e[0].r, &e[1].r};
    int64_t params[2] = {e[0].params, n > 1 ? e[1].params : 0};
    double mb[2] = {e[0].mb, n > 1 ? e[1].mb : 0};
    static const char *const columns[2] = {"model", "compare"};
    TB_TRY(tb_eval_format_table(rs, columns, params, mb, n, &table));
    for (int i = 0; i < n; i++) fprintf(stderr, "%s: %s\n", columns[i], names[i]);
    fprintf(stderr, "%s", table);
    TB_TRY(write_json(cli, e, names, n));
error:
    free(table);
    return rc;
}

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    int rc = run(&cli);
    if (rc != TB_OK) {
        fprintf(stderr, "tb-eval: %s\n", tb_err_msg());
        code = rc == TB_EINTR ? TB_EXIT_INTERRUPTED : TB_EXIT_FAILURE;
    } else {
        code = TB_EXIT_OK;
    }
    tb_cli_free(&cli);
    return code;
}
