/* tb-vocab: learns a WordPiece vocabulary (vocab.txt) of a chosen size from a corpus or task file. */
#include "tb/base/cli.h"
#include "tb/text/dataset.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/outfile.h"
#include "tb/text/vocab.h"
#include "tb/text/vocab_build.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const tb_opt opts[] = {
    TB_OPTION("input", TB_OPT_STRING, NULL, "text to learn from", .metavar = "PATH"),
    TB_OPTION("format", TB_OPT_ENUM, "corpus", "how to read --input: a plain corpus, WikiText, text<TAB>label, or a GLUE task TSV",
              .choices = "corpus|wikitext|simple|cola|sst-2|mrpc|sts-b|qqp|mnli|mnli-mm|qnli|rte|wnli"),
    TB_OPTION("output", TB_OPT_STRING, NULL, "vocab.txt to write", .metavar = "PATH"),
    TB_OPTION("vocab-size", TB_OPT_INT, "8000", "tokens in the vocabulary, the 5 special tokens included", TB_RANGE(6, INT32_MAX)),
    TB_OPTION("min-frequency", TB_OPT_INT, "2", "a merge needs a pair seen at least this often", TB_RANGE(1, INT64_MAX)),
    TB_OPTION("cased", TB_OPT_BOOL, "false", "keep case and accents (default: lower-case and strip accents)"),
    TB_OPTION("max-chars-per-word", TB_OPT_INT, "100", "longer words are ignored (the tokenizer makes them [UNK])", TB_RANGE(1, INT32_MAX)),
    TB_OPTION("lenient", TB_OPT_BOOL, "false", "skip and count malformed rows instead of failing"),
    TB_OPTION("hash", TB_OPT_STRING, NULL, "print the vocabulary hash of an existing vocab.txt and exit", .metavar = "PATH"),
    {0},
};

static const tb_port inputs[] = {{.option = "input", .message = "text", .help = "corpus or task file"}, {0}};
static const tb_port outputs[] = {{.option = "output", .message = "vocab", .help = "vocab.txt, one token per line"}, {0}};

static const tb_stage_info info = {
    .name = "tb-vocab",
    .summary = "Learns a WordPiece vocabulary (special tokens, characters, ## continuations, frequent merges) from text.",
    .opts = opts,
    .inputs = inputs,
    .outputs = outputs,
    .details = "Words come from the BERT basic tokenizer (the same cleaning, CJK split, lower-casing and\n"
               "punctuation split as tokenization). The vocabulary holds [PAD] [UNK] [CLS] [SEP] [MASK], every\n"
               "character as a word start and as a ##continuation, then BPE-style merges of the most frequent\n"
               "adjacent pieces. The result is a standard vocab.txt.",
};

/* Outputs that must not be one of the inputs (checked before anything is read or written). */
static const char *const out_opts[] = {"output", "metrics", NULL};
static const char *const in_opts[] = {"input", NULL};

/* --hash PATH: prints the vocabulary hash of an existing vocab.txt. */
static int print_hash(const char *path)
{
    tb_vocab v = {0};
    char hash[32];
    int code = TB_EXIT_OK;
    if (tb_vocab_load(&v, path) == TB_OK) {
        printf("%s\n", tb_vocab_hash_str(&v, hash, sizeof hash));
    } else {
        fprintf(stderr, "tb-vocab: %s\n", tb_err_msg());
        code = TB_EXIT_FAILURE;
    }
    tb_vocab_free(&v);
    return code;
}

/* Reads --input, counts its words and learns and saves the vocabulary. */
static int learn(const tb_cli *cli)
{
    tb_dataset ds = {0};
    tb_word_counts wc;
    tb_word_counts_init(&wc);
    tb_vocab v = {0};
    char hash[32];
    int code;
    const char *in = tb_cli_str(cli, "input"), *out = tb_cli_str(cli, "output");
    if (!in || !out) {
        fprintf(stderr, "tb-vocab: give --input and --output (or --hash PATH); see tb-vocab --help\n");
        code = TB_EXIT_USAGE;
        goto done;
    }
    if (tb_cli_output_check(cli, out_opts, in_opts) != TB_OK) goto fail;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tb_read_opts ro = {.lenient = tb_cli_bool(cli, "lenient")};
    if (tb_dataset_read_format(&ds, tb_cli_str(cli, "format"), in, &ro) != TB_OK) goto fail;
    if (ds.skipped) TB_WARN("%s: skipped %lld malformed rows (first at line %lld)", in, (long long)ds.skipped,
                            (long long)ds.skipped_first_line);
    tb_tokenizer_opts to = tb_tokenizer_opts_default();
    to.do_lower_case = !tb_cli_bool(cli, "cased");
    if (strcmp(tb_cli_str(cli, "format"), "wikitext") == 0) to.unk_literal = "<unk>"; /* not a word to learn */
    if (tb_dataset_count_words(&ds, &to, &wc) != TB_OK) goto fail;
    tb_vocab_learn_opts lo = {.vocab_size = (int32_t)tb_cli_int(cli, "vocab-size"),
                              .min_frequency = tb_cli_int(cli, "min-frequency"),
                              .max_chars_per_word = (int)tb_cli_int(cli, "max-chars-per-word")};
    if (tb_vocab_learn(&v, &wc, &lo) != TB_OK) goto fail;
    if (tb_vocab_save(&v, out) != TB_OK) goto fail;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    TB_INFO("%s: %lld examples, %lld words (%d distinct) -> %d tokens in %s (%s), %.2f s", in, (long long)ds.count,
            (long long)wc.total, wc.count, v.count, out, tb_vocab_hash_str(&v, hash, sizeof hash),
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    code = TB_EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "tb-vocab: %s\n", tb_err_msg());
    code = TB_EXIT_FAILURE;
done:
    tb_vocab_free(&v);
    tb_word_counts_free(&wc);
    tb_dataset_free(&ds);
    return code;
}

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    code = tb_cli_str(&cli, "hash") ? print_hash(tb_cli_str(&cli, "hash")) : learn(&cli);
    tb_cli_free(&cli);
    return code;
}
