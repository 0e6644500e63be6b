/* tb-augment: the TinyBERT data augmentation (BERT-MLM + GloVe candidates), writing the original
 * examples plus up to N new ones each in the input's own format (stages/augment/augment.h). */
#include "augment.h"
#include "augmenter.h"
#include <stdint.h>

#include "tb/base/cli.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/metrics.h"
#include "tb/base/outfile.h"

#include <stdio.h>
#include <string.h>

static const tb_opt opts[] = {
    TB_OPTION("input", TB_OPT_STRING, NULL, "task file to augment", .required = 1, .metavar = "PATH"),
    TB_OPTION("format", TB_OPT_ENUM, "simple", "how to read --input (and write --output)",
              .choices = "simple|cola|sst-2|mrpc|sts-b|qqp|mnli|mnli-mm|qnli|rte|wnli"),
    TB_OPTION("output", TB_OPT_STRING, NULL,
              "augmented task file, same format (written when complete); or tcp://, ipc://, file:PATH: a stream "
              "of text messages",
              .required = 1, .metavar = "PATH|ENDPOINT"),
    TB_OPTION("model", TB_OPT_STRING, NULL, "MLM teacher checkpoint (tb-finetune --mlm, or HF BertForMaskedLM)",
              .required = 1, .metavar = "DIR"),
    TB_OPTION("vocab", TB_OPT_STRING, NULL, "vocab.txt (default: the checkpoint's)", .metavar = "PATH"),
    TB_OPTION("cased", TB_OPT_BOOL, "false", "keep case and accents (cased vocabularies)"),
    TB_OPTION("stopwords", TB_OPT_STRING, NULL,
              "stop words, one a line (default: the shipped NLTK English + 's 're, "
              "share/tinybert-c/augment/stopwords-en.txt beside the executable's folder)",
              .metavar = "PATH"),
    TB_OPTION("vectors", TB_OPT_ENUM, "glove", "word vectors for multi-piece words", .choices = "glove|teacher|none"),
    TB_OPTION("glove", TB_OPT_STRING, NULL,
              "GloVe / .vec text file (default: the shipped 2,604-word GloVe subset, "
              "share/tinybert-c/glove/glove.6B.100d.first2604.txt beside the executable's folder)",
              .metavar = "PATH"),
    TB_OPTION("glove-max-words", TB_OPT_INT, "100000", "first lines of --glove read (0: all)", TB_RANGE(0, INT32_MAX)),
    TB_OPTION("glove-cache", TB_OPT_STRING, NULL, "binary cache of --glove, made when missing or stale",
              .metavar = "PATH"),
    TB_OPTION("m", TB_OPT_INT, "15", "candidates per word (M)", TB_RANGE(1, 1024)),
    TB_OPTION("n", TB_OPT_INT, "-1", "new sentences drawn per text (N; -1: the reference's per task)", TB_RANGE(-1, 100000)),
    TB_OPTION("p", TB_OPT_FLOAT, "0.4", "probability of replacing an eligible word"),
    TB_OPTION("columns", TB_OPT_ENUM, "both", "pair tasks: which texts to augment", .choices = "both|a|b"),
    TB_OPTION("pair-quirk", TB_OPT_BOOL, "false",
              "pair tasks: the reference's rows (b's variants beside a's last variant)"),
    TB_OPTION("cjk", TB_OPT_BOOL, "false", "every CJK ideograph is an eligible word too (not in the reference)"),
    TB_OPTION("mlm-batch", TB_OPT_INT, "64", "masked sequences per MLM forward pass, at most", TB_RANGE(1, 65536)),
    TB_OPTION("mlm-tokens", TB_OPT_INT, "8192", "padded positions per MLM forward pass, at most", TB_RANGE(1, 16777216)),
    TB_OPTION("one-at-a-time", TB_OPT_BOOL, "false", "one masked sequence per forward pass (the reference's way)"),
    TB_OPTION("lenient", TB_OPT_BOOL, "false", "skip malformed rows (each named on stderr, counted) instead of failing"),
    TB_OPTION("chunk", TB_OPT_INT, "1024", "rows read and augmented together (bounds memory)", TB_RANGE(1, 16777216)),
    {0},
};

static const tb_port inputs[] = {{.option = "input", .message = "text", .help = "GLUE TSV or text<TAB>label"}, {0}};
static const tb_port_field text_fields[] = {
    {"format", "str", "", "the task format of the rows (--format)"},
    {"header", "str", "", "the format's header line (tasks with one), in every message"},
    {"rows", "str", "", "the chunk's rows, each ended by a newline"},
    {0},
};
static const tb_port outputs[] = {{.option = "output", .message = "text", .fields = text_fields,
                                   .help = "the original rows plus the new ones, same columns: a task file, or one "
                                           "text message per chunk (docs/protocol.md)"},
                                  {0}};

static const tb_stage_info info = {
    .name = "tb-augment",
    .summary = "TinyBERT data augmentation: new examples from MLM and word-vector candidates.",
    .opts = opts,
    .inputs = inputs,
    .outputs = outputs,
    .details = "Deterministic for a --seed at any --threads. See docs/augment.md.",
};

/* Outputs that must not be one of the inputs (checked before anything is read or written). */
static const char *const out_opts[] = {"output", "metrics", "glove-cache", NULL};
static const char *const in_opts[] = {"input", "model", "vocab", "stopwords", "glove", NULL};

static void opts_from_cli(const tb_cli *cli, tb_augmenter_opts *ao, tb_augment_opts *o)
{
    static const tb_vec_source sources[] = {TB_VEC_GLOVE, TB_VEC_TEACHER, TB_VEC_NONE};
    static const int columns[] = {3, 1, 2};
    memset(ao, 0, sizeof *ao);
    memset(o, 0, sizeof *o);
    ao->model = tb_cli_str(cli, "model");
    ao->vocab = tb_cli_str(cli, "vocab");
    ao->cased = tb_cli_bool(cli, "cased");
    ao->stopwords = tb_cli_str(cli, "stopwords");
    ao->vectors = sources[tb_cli_enum_index(cli, "vectors")];
    ao->glove = tb_cli_str(cli, "glove");
    ao->glove_max_words = tb_cli_int(cli, "glove-max-words");
    ao->glove_cache = tb_cli_str(cli, "glove-cache");
    ao->cands.M = (int)tb_cli_int(cli, "m");
    ao->cands.batch = (int)tb_cli_int(cli, "mlm-batch");
    ao->cands.tokens = (int)tb_cli_int(cli, "mlm-tokens");
    ao->cands.one_at_a_time = tb_cli_bool(cli, "one-at-a-time");
    ao->cands.cjk = tb_cli_bool(cli, "cjk");
    ao->cands.threads = (int)tb_cli_int(cli, "threads");
    o->input = tb_cli_str(cli, "input");
    o->format = tb_cli_str(cli, "format");
    o->output = tb_cli_str(cli, "output");
    o->N = (int)tb_cli_int(cli, "n");
    o->p = tb_cli_float(cli, "p");
    o->seed = (uint64_t)tb_cli_int(cli, "seed");
    o->columns = columns[tb_cli_enum_index(cli, "columns")];
    o->pair_quirk = tb_cli_bool(cli, "pair-quirk");
    o->chunk = (int)tb_cli_int(cli, "chunk");
    o->lenient = tb_cli_bool(cli, "lenient");
}

static void report(const tb_cands *c, const tb_augment_stats *st, const char *input, tb_metrics *metrics)
{
    if (st->skipped)
        TB_WARN("%s: skipped %lld malformed rows (first at line %lld)", input, (long long)st->skipped,
                (long long)st->skipped_first_line);
    TB_INFO("%lld rows (%lld texts) -> %lld rows; %lld eligible words: %lld one piece (MLM), %lld several pieces "
            "(%lld with a vector), %lld kept as they are; %lld MLM passes",
            (long long)st->rows, (long long)st->texts, (long long)st->rows_out, (long long)c->eligible,
            (long long)c->mlm_words, (long long)c->vec_words, (long long)c->vec_found, (long long)c->no_candidate,
            (long long)c->mlm_forwards);
    tb_metric f[] = {TB_MI("rows", st->rows),           TB_MI("rows_out", st->rows_out),
                     TB_MI("eligible", c->eligible),        TB_MI("mlm_words", c->mlm_words),
                     TB_MI("vector_words", c->vec_words),   TB_MI("vector_found", c->vec_found),
                     TB_MI("no_candidate", c->no_candidate), TB_MI("mlm_passes", c->mlm_forwards),
                     TB_MI("skipped", st->skipped)};
    if (tb_metrics_enabled(metrics)) tb_metrics_write(metrics, "augment", -1, f, (int)(sizeof f / sizeof *f));
}

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    tb_augmenter aug;
    tb_augmenter_opts ao;
    tb_augment_opts o;
    tb_augment_stats st;
    tb_progress progress = {0};
    tb_metrics metrics = {0};
    tb_progress_mode pm;
    opts_from_cli(&cli, &ao, &o);
    int rc = tb_cli_output_check(&cli, out_opts, in_opts);
    if (!rc) rc = tb_progress_parse_mode(tb_cli_str(&cli, "progress"), &pm);
    if (!rc) rc = tb_metrics_open(&metrics, info.name, tb_cli_str(&cli, "metrics"));
    if (!rc) rc = tb_progress_init(&progress, stderr, pm, info.name, 0, 0);
    if (!rc) rc = tb_augmenter_open(&aug, &ao);
    if (!rc) {
        rc = tb_augment_file(&aug.cands, &o, &progress, &st);
        if (!rc) report(&aug.cands, &st, o.input, &metrics);
        tb_augmenter_close(&aug);
    }
    if (rc) fprintf(stderr, "tb-augment: %s\n", tb_err_msg());
    tb_progress_free(&progress);
    tb_metrics_close(&metrics);
    tb_cli_free(&cli);
    return rc == TB_OK ? TB_EXIT_OK : rc == TB_EINTR ? TB_EXIT_INTERRUPTED : TB_EXIT_FAILURE;
}
