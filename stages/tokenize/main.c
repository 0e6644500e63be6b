/* tb-tokenize: reads a task file or corpus, tokenizes it once and streams addressable token
 * batches to a ZeroMQ endpoint or a message file (stages/tokenize/feed.h). */
#include "tb/base/cli.h"
#include "tb/base/error.h"
#include "feed.h"
#include "textin.h"
#include "tb/base/log.h"
#include "tb/base/outfile.h"

#include <stdio.h>
#include <string.h>

static const tb_opt opts[] = {
    TB_OPTION("input", TB_OPT_STRING, NULL,
              "task file or corpus to read; or tcp://, ipc://, file:PATH: a stream of text messages (tb-augment)",
              .required = 1, .metavar = "PATH|ENDPOINT"),
    TB_OPTION("format", TB_OPT_ENUM, "corpus", "how to read --input",
              .choices = "corpus|wikitext|simple|cola|sst-2|mrpc|sts-b|qqp|mnli|mnli-mm|qnli|rte|wnli"),
    TB_OPTION("vocab", TB_OPT_STRING, NULL, "WordPiece vocab.txt", .required = 1, .metavar = "PATH"),
    TB_OPTION("output", TB_OPT_ENDPOINT, NULL, "where batches go: tcp://, ipc:// (consumers connect) or a file",
              .required = 1),
    TB_OPTION("cased", TB_OPT_BOOL, "false", "keep case and accents (cased vocabularies)"),
    TB_OPTION("lenient", TB_OPT_BOOL, "false", "skip and count malformed rows instead of failing"),
    TB_OPTION("first-field", TB_OPT_BOOL, "false", "corpus: only the text before the first tab of a line"),
    TB_OPTION("max-seq-length", TB_OPT_INT, "128", "tokens per sequence, [CLS] and [SEP] included", TB_RANGE(2, 65536)),
    TB_OPTION("pack", TB_OPT_BOOL, "false", "corpus: pack sentences into full sequences (MLM pre-training)"),
    TB_OPTION("batch-size", TB_OPT_INT, "32", "examples per batch", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("shuffle", TB_OPT_BOOL, "true", "shuffle every epoch (by --seed and the epoch number)"),
    TB_OPTION("drop-last", TB_OPT_BOOL, "true", "leave out a final partial batch (as training does)"),
    TB_OPTION("pad-to-longest", TB_OPT_BOOL, "false",
              "pad to the longest sequence of each batch instead of --max-seq-length (changes the loss scale)"),
    TB_OPTION("epochs", TB_OPT_INT, "1", "passes over the data", TB_RANGE(1, INT64_MAX)),
    TB_OPTION("max-batches", TB_OPT_INT, "0", "stop after this many batches in all (0: all epochs)", TB_RANGE(0, INT64_MAX)),
    TB_OPTION("consumers", TB_OPT_INT, "1", "consumers to wait for before the first batch (ZeroMQ)", TB_RANGE(0, 4096)),
    TB_OPTION("stream-id", TB_OPT_STRING, "main", "stream name carried by every message"),
    TB_OPTION("on-consumer-death", TB_OPT_ENUM, "fail", "a consumer that stops answering: fail, drop it, or wait for it",
              .choices = "fail|drop|wait"),
    TB_OPTION("peer-timeout-ms", TB_OPT_INT, "10000", "silence after which a consumer counts as dead", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("hello-timeout-ms", TB_OPT_INT, "60000", "how long to wait for --consumers to connect", TB_RANGE(1, INT32_MAX)),
    {0},
};

static const tb_port_field batch_fields[] = {
    {"input_ids", "<i4", "B,T", "WordPiece ids, [CLS] a [SEP] (b [SEP]), padded with [PAD]"},
    {"token_type_ids", "<i4", "B,T", "0 for a, 1 for b"},
    {"attention_mask", "<i4", "B,T", "1 for tokens, 0 for padding"},
    {"labels", "<i4|<f4", "B", "class ids in label_order, f32 targets for regression, -1 for a corpus"},
    {"example_ids", "<i8", "B", "example index in the input file"},
    {"epoch", "int", "", "epoch of the batch"},
    {"index", "int", "", "batch index within the epoch"},
    {"vocab_hash", "str", "", "hash of the vocabulary"},
    {"label_order", "str", "", "labels in id order, e.g. \"0,1\""},
    {"task", "str", "", "the task (--format) of a labelled set, e.g. \"mrpc\": picks the metric"},
    {0},
};
static const tb_port outputs[] = {{.option = "output", .message = "batch", .fields = batch_fields,
                                   .help = "token batches; batch g = (epoch g / per_epoch, index g % per_epoch)"},
                                  {0}};
static const tb_port_field text_fields[] = {
    {"format", "str", "", "the task format of the rows, equal to --format"},
    {"rows", "str", "", "rows, each ended by a newline"},
    {0},
};
static const tb_port inputs[] = {{.option = "input", .message = "text", .fields = text_fields,
                                  .help = "GLUE TSV, text<TAB>label or corpus: a file, or a stream of text messages "
                                          "(docs/protocol.md)"},
                                 {0}};

static const tb_stage_info info = {
    .name = "tb-tokenize",
    .summary = "Tokenizes a task file or corpus with BERT WordPiece and streams addressable token batches.",
    .opts = opts,
    .inputs = inputs,
    .outputs = outputs,
    .details = "Batch g of the stream is a pure function of (--seed, g): a consumer restarting from its\n"
               "checkpoint at batch K gets K, K+1, ... recomputed exactly. See docs/data.md for formats.",
};

/* Outputs that must not be one of the inputs (checked before anything is read or written). */
static const char *const out_opts[] = {"output", "metrics", NULL};
static const char *const in_opts[] = {"input", "vocab", NULL};

static void feed_opts_from_cli(const tb_cli *cli, tb_feed_opts *o)
{
    memset(o, 0, sizeof *o);
    o->input = tb_cli_str(cli, "input");
    o->format = tb_cli_str(cli, "format");
    o->vocab = tb_cli_str(cli, "vocab");
    o->cased = tb_cli_bool(cli, "cased");
    o->lenient = tb_cli_bool(cli, "lenient");
    o->first_field = tb_cli_bool(cli, "first-field");
    o->max_seq_length = (int)tb_cli_int(cli, "max-seq-length");
    o->pack = tb_cli_bool(cli, "pack");
    o->batch.batch_size = (int)tb_cli_int(cli, "batch-size");
    o->batch.seed = (uint64_t)tb_cli_int(cli, "seed");
    o->batch.shuffle = tb_cli_bool(cli, "shuffle");
    o->batch.drop_last = tb_cli_bool(cli, "drop-last");
    o->batch.pad_to_longest = tb_cli_bool(cli, "pad-to-longest");
    o->epochs = tb_cli_int(cli, "epochs");
    o->max_batches = tb_cli_int(cli, "max-batches");
}

static void stream_opts_from_cli(const tb_cli *cli, tb_stream_opts *so)
{
    static const tb_peer_policy policies[] = {TB_PEER_FAIL, TB_PEER_DROP, TB_PEER_WAIT};
    tb_stream_opts_default(so);
    so->stream_id = tb_cli_str(cli, "stream-id");
    so->consumers = (int)tb_cli_int(cli, "consumers");
    so->policy = policies[tb_cli_enum_index(cli, "on-consumer-death")];
    so->peer_timeout_ms = (int)tb_cli_int(cli, "peer-timeout-ms");
    so->hello_timeout_ms = (int)tb_cli_int(cli, "hello-timeout-ms");
}

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    tb_feed feed;
    tb_feed_opts fo;
    tb_stream_opts so;
    tb_progress progress = {0};
    tb_metrics metrics = {0};
    feed_opts_from_cli(&cli, &fo);
    stream_opts_from_cli(&cli, &so);
    tb_progress_mode pm;
    char rows_path[4096] = "";
    const char *input = fo.input;
    int rc = tb_cli_output_check(&cli, out_opts, in_opts);
    if (!rc) rc = tb_progress_parse_mode(tb_cli_str(&cli, "progress"), &pm);
    if (!rc) rc = tb_metrics_open(&metrics, info.name, tb_cli_str(&cli, "metrics"));
    if (!rc && tb_textin_is_stream(input)) {
        rc = tb_textin_fetch(input, fo.format, NULL, rows_path, sizeof rows_path);
        fo.input = rows_path;
    }
    if (!rc) rc = tb_feed_open(&feed, &fo);
    tb_textin_remove(rows_path); /* read and tokenized: the feed holds everything */
    if (!rc) {
        TB_INFO("%s: %lld examples, %lld batches per epoch, %lld batches to %s", input, (long long)feed.enc.count,
                (long long)feed.per_epoch, (long long)feed.total, tb_cli_str(&cli, "output"));
        rc = tb_progress_init(&progress, stderr, pm, info.name, feed.total, 0);
        if (!rc) rc = tb_feed_run(&feed, tb_cli_str(&cli, "output"), &so, &progress, &metrics);
        tb_feed_close(&feed);
    }
    if (rc) fprintf(stderr, "tb-tokenize: %s\n", tb_err_msg());
    tb_progress_free(&progress);
    tb_metrics_close(&metrics);
    tb_cli_free(&cli);
    return rc == TB_OK ? TB_EXIT_OK : rc == TB_EINTR ? TB_EXIT_INTERRUPTED : TB_EXIT_FAILURE;
}
