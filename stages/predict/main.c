/* tb-predict: predictions of a checkpoint for a GLUE test.tsv or plain text lines
 * (stages/predict/predict.h), through the inference API of tb/api/tinybert.h. */
#include "predict.h"
#include "tb/base/cli.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/threads.h"

#include <stdio.h>
#include <string.h>

static const tb_opt opts[] = {
    TB_OPTION("model", TB_OPT_STRING, NULL, "checkpoint folder with a classification or regression head",
              .required = 1, .metavar = "PATH"),
    TB_OPTION("input", TB_OPT_STRING, "-", "GLUE test.tsv or text lines (\"-\": stdin)", .metavar = "PATH"),
    TB_OPTION("output", TB_OPT_STRING, "-", "predictions (\"-\": stdout, line by line; a file is renamed into place when complete)",
              .metavar = "PATH"),
    TB_OPTION("format", TB_OPT_ENUM, "lines", "input: text lines (text or text<TAB>text_b) or a GLUE test.tsv",
              .choices = "lines|glue"),
    TB_OPTION("task", TB_OPT_STRING, NULL,
              "task: label names, single or pair, test.tsv layout (cola, sst-2, mrpc, sts-b, qqp, mnli, mnli-mm, qnli, "
              "rte, wnli, simple)", .metavar = "NAME"),
    TB_OPTION("logits", TB_OPT_BOOL, "false", "lines: write the raw logits instead of the probabilities"),
    TB_OPTION("max-seq-length", TB_OPT_INT, "128", "tokens per text or pair, [CLS] and [SEP] included", TB_RANGE(3, 65536)),
    TB_OPTION("batch-size", TB_OPT_INT, "32", "texts per forward pass", TB_RANGE(1, 65536)),
    TB_OPTION("chunk", TB_OPT_INT, "512", "lines read before predicting (fewer when no more input is waiting)",
              TB_RANGE(1, 1 << 24)),
    TB_OPTION("cased", TB_OPT_BOOL, "false", "keep case and accents (cased vocabularies)"),
    {0},
};

static const tb_stage_info info = {
    .name = "tb-predict",
    .summary = "Predicts labels or scores for unlabelled text: GLUE submission TSV, or label and probabilities per line.",
    .opts = opts,
    .details = "--format glue reads a GLUE test.tsv (--task names it) and writes the submission file\n"
               "(index<TAB>prediction). --format lines reads one text (or text<TAB>text_b) per line and writes\n"
               "label<TAB>p_0<TAB>p_1... per line (the score for regression). See docs/predict.md.",
};

static void opts_from_cli(const tb_cli *cli, pr_opts *o)
{
    memset(o, 0, sizeof *o);
    o->model = tb_cli_str(cli, "model");
    o->input = tb_cli_str(cli, "input");
    o->output = tb_cli_str(cli, "output");
    o->task = tb_cli_str(cli, "task");
    o->glue = strcmp(tb_cli_str(cli, "format"), "glue") == 0;
    o->logits = tb_cli_bool(cli, "logits");
    o->max_seq_length = (int)tb_cli_int(cli, "max-seq-length");
    o->batch_size = (int)tb_cli_int(cli, "batch-size");
    o->chunk = (int)tb_cli_int(cli, "chunk");
    o->cased = tb_cli_bool(cli, "cased");
    o->threads = tb_threads_count();
}

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    pr_opts o;
    pr_stats st;
    opts_from_cli(&cli, &o);
    int rc = pr_run(&o, &st);
    if (rc != TB_OK) {
        fprintf(stderr, "tb-predict: %s\n", tb_err_msg());
        code = rc == TB_EINTR ? TB_EXIT_INTERRUPTED : TB_EXIT_FAILURE;
    } else {
        TB_INFO("%lld examples in %.3f s (%.1f examples/s, reading and writing included)", (long long)st.examples,
                st.seconds, st.seconds > 0 ? (double)st.examples / st.seconds : 0.0);
        code = TB_EXIT_OK;
    }
    tb_cli_free(&cli);
    return code;
}
