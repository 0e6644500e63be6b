/* tb/text/dataset.h - task readers (GLUE TSV, text<TAB>label, plain corpus), encoding, and
 * addressable batches.
 *
 * Readers. Files are UTF-8, split on "\n" (a trailing "\r" is removed), fields split on "\t"
 * only (no quoting: GLUE has bare '"'). A UTF-8 BOM at the start of a file is skipped. Columns
 * and label orders follow the TinyBERT reference's processors (task_distill.py); docs/data.md
 * has the table. A malformed row (too few columns, unknown label, bad number, invalid UTF-8)
 * is an error naming file:line (TB_EFORMAT) unless `lenient` is set, in which case it is
 * skipped and counted in tb_dataset.skipped (the first one is kept in skipped_first_line).
 *
 * Batches. A dataset is tokenized once (tb_encoded); a tb_batcher then cuts it into batches that
 * are addressable: (seed, epoch, index) alone fixes a batch's content. Order within an epoch:
 * identity when shuffle is off; otherwise a Fisher-Yates shuffle of 0..n-1 where, for
 * i = n-1 down to 1, j = r mod (i + 1) with r the 64-bit number (hi << 32 | lo), hi and lo being
 * elements 2k and 2k+1 (k = n-1-i) of the Philox4x32-10 stream tb_rng_u32(tb_rng_key_make(seed,
 * TB_RNG_SHUFFLE), epoch >> 32, epoch & 0xffffffff, .) (bias below 2^-32 for n < 2^32).
 * Batch `index` holds positions [index * batch_size, ...) of that order; with drop_last a final
 * partial batch is left out (the reference drops it in training), otherwise it is shorter.
 * Padding is to max_seq_length by default (the reference's losses average over padded
 * positions, so the padded length is part of the loss scale); pad_to_longest pads to the
 * longest sequence of the batch instead (a documented deviation, for evaluation speed).
 * Tensors: input_ids, token_type_ids, attention_mask int32 [B, L]; labels int32 [B] (class) or
 * f32 [B] (regression); example_ids int64 [B] (index of the example in the dataset).
 */
#ifndef TB_DATASET_H
#define TB_DATASET_H

#include "tb/base/cli.h"
#include "tb/wire/msg.h"
#include "tb/base/tensor.h"
#include "tb/text/tokenizer.h"

#include <stdint.h>

typedef enum tb_task {
    TB_TASK_COLA = 0,
    TB_TASK_SST2,
    TB_TASK_MRPC,
    TB_TASK_STSB,
    TB_TASK_QQP,
    TB_TASK_MNLI,     /* train.tsv / dev_matched.tsv */
    TB_TASK_MNLI_MM,  /* dev_mismatched.tsv */
    TB_TASK_QNLI,
    TB_TASK_RTE,
    TB_TASK_WNLI,
    TB_TASK_SIMPLE,   /* text<TAB>label (and text<TAB>text_b<TAB>label), integer labels */
    TB_TASK_CORPUS,   /* plain text, no labels */
    TB_TASK_COUNT
} tb_task;

typedef struct tb_task_info {
    const char *name;        /* "cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", ... */
    int header;              /* the first row is a header */
    int col_a, col_b;        /* text columns (col_b -1: single sentence) */
    int col_label;           /* >= 0 from the start, < 0 from the end (-1 = last field) */
    int min_cols;            /* rows with fewer fields are malformed */
    int regression;          /* float labels */
    int n_labels;            /* classification: number of labels, in the order of `labels` */
    const char *const *labels;
} tb_task_info;

/* Facts of a task; NULL for an invalid value. */
const tb_task_info *tb_task_get(tb_task task);
/* Parses a task name (case-insensitive; "sst2" and "sst-2", "stsb" and "sts-b" both work). */
int tb_task_parse(const char *name, tb_task *out);

typedef struct tb_example {
    char *text_a;
    char *text_b;    /* NULL for single-sentence tasks */
    int32_t label;   /* class id; -1 for regression and corpus */
    float target;    /* regression value (STS-B); 0 otherwise */
    int64_t line;    /* 1-based line in the file */
    int64_t doc;     /* corpus: document number (0-based); -1 otherwise */
} tb_example;

typedef struct tb_dataset {
    tb_task task;
    tb_example *ex;
    int64_t count, cap;
    int regression;
    int32_t n_labels;         /* classes (simple format: 1 + the largest label seen) */
    int64_t skipped;          /* lenient mode: malformed rows skipped */
    int64_t skipped_first_line;
    int64_t documents;        /* corpus: number of documents */
    char *path;
} tb_dataset;

typedef struct tb_read_opts {
    int lenient;              /* skip and count malformed rows instead of failing */
    int wikitext;             /* corpus: WikiText conventions, see tb_dataset_read_corpus */
    int first_field;          /* corpus: keep only the text before the first tab of a line, as the
                                 seed project's general_distill.py does (text<TAB>label files) */
} tb_read_opts;

/* Reads a GLUE task file (train.tsv, dev.tsv, dev_matched.tsv, ...). `opts` may be NULL. */
int tb_dataset_read_glue(tb_dataset *ds, tb_task task, const char *path, const tb_read_opts *opts);

/* Reads the simple format of the seed project: one example per line, fields split on "\t",
 * label = last field (a decimal integer >= 0), text_a = first field, text_b = second field when
 * there are more than 2 fields. A line whose label is not an integer (e.g. a continuation
 * fragment) is an error in strict mode; in lenient mode it is skipped and counted, which is what
 * the seed project does silently. Lines with one field are malformed. Blank lines are skipped. */
int tb_dataset_read_simple(tb_dataset *ds, const char *path, const tb_read_opts *opts);

/* Reads a plain corpus: one sentence per line, a blank line between documents; each non-blank
 * line is one example (text_a), in document order. With `wikitext`: blank lines are only
 * paragraph breaks; heading lines (" = Title = ", " = = Section = = ") are dropped, and a
 * top-level heading (" = Title = ") starts a new document; the tokenized separators " @-@ ",
 * " @,@ ", " @.@ " become "-", ",", "." (" - " etc. next to "<unk>"); "<unk>" stays in the text (tokenize it with
 * tb_tokenizer_opts.unk_literal = "<unk>" to get [UNK]). Leading and trailing spaces of a line
 * are removed. */
int tb_dataset_read_corpus(tb_dataset *ds, const char *path, const tb_read_opts *opts);

/* Reads `path` in the named format: "corpus", "wikitext" (tb_dataset_read_corpus with
 * opts->wikitext set), "simple", or a GLUE task name (tb_task_parse). The format names are the
 * ones the stages' --format options take. `opts` may be NULL. */
int tb_dataset_read_format(tb_dataset *ds, const char *format, const char *path, const tb_read_opts *opts);

void tb_dataset_free(tb_dataset *ds);

/* Basic-tokenizes text_a and text_b of every example and counts the words (for tb_vocab_learn). */
int tb_dataset_count_words(const tb_dataset *ds, const tb_tokenizer_opts *opts, tb_word_counts *wc);

/* A dataset tokenized once: example i is ids[off[i] .. off[i+1]) (with [CLS]/[SEP]). */
typedef struct tb_encoded {
    int32_t *ids, *types;
    int64_t *off;
    int32_t *labels;    /* class ids (classification) */
    float *targets;     /* regression targets */
    int64_t count;
    int max_seq_length;
    int regression;
    int32_t n_labels;
    int32_t pad_id;
    int64_t truncated;  /* examples that lost tokens to max_seq_length */
    uint64_t vocab_hash;
} tb_encoded;

/* Tokenizes every example (single or pair, see tb_tokenizer_encode). */
int tb_encoded_build(tb_encoded *e, const tb_dataset *ds, const tb_tokenizer *t, int max_seq_length);
/* Packs a corpus for MLM pre-training: within each document, consecutive lines' WordPiece tokens
 * are concatenated into sequences of at most max_seq_length - 2 tokens, each sequence
 * [CLS] tokens [SEP] (types 0, label -1). A line that does not fit in the current sequence starts
 * the next one; a line longer than max_seq_length - 2 tokens on its own is cut into consecutive
 * chunks of max_seq_length - 2 tokens (nothing is dropped). Sequences never cross documents.
 * e->count is the number of sequences; example ids then number sequences. */
int tb_encoded_build_packed(tb_encoded *e, const tb_dataset *corpus, const tb_tokenizer *t, int max_seq_length);
void tb_encoded_free(tb_encoded *e);

typedef struct tb_batch_opts {
    int batch_size;      /* >= 1 */
    uint64_t seed;       /* data seed */
    int shuffle;         /* 1: shuffle every epoch (training); 0: file order */
    int drop_last;       /* 1: leave out a final partial batch */
    int pad_to_longest;  /* 0 (default): pad to max_seq_length */
} tb_batch_opts;

typedef struct tb_batch {
    tb_tensor input_ids, token_type_ids, attention_mask; /* i32 [B, L] */
    tb_tensor labels;                                    /* i32 [B] or f32 [B] */
    tb_tensor example_ids;                               /* i64 [B] */
    uint64_t epoch;
    int64_t index;
} tb_batch;

typedef struct tb_batcher {
    const tb_encoded *enc;
    tb_batch_opts opts;
    int64_t *order;       /* order of the cached epoch */
    uint64_t order_epoch;
    int order_valid;
} tb_batcher;

/* `enc` must outlive the batcher. */
int tb_batcher_init(tb_batcher *b, const tb_encoded *enc, const tb_batch_opts *opts);
void tb_batcher_free(tb_batcher *b);
/* Batches per epoch. */
int64_t tb_batcher_count(const tb_batcher *b);
/* Example order of an epoch (n entries) written to `order`. */
int tb_batcher_order(const tb_batcher *b, uint64_t epoch, int64_t *order);
/* Makes batch `index` of `epoch` into `out` (freed first; out must be zeroed or a batch). */
int tb_batcher_get(tb_batcher *b, uint64_t epoch, int64_t index, tb_batch *out);
void tb_batch_free(tb_batch *batch);

/* The label order of a dataset as text, for batch metadata: the labels in id order joined by
 * ",", e.g. "0,1" or "contradiction,entailment,neutral"; "regression" for STS-B; "0,...,n-1"
 * for the simple format (n = n_labels); "none" for a corpus. */
int tb_dataset_label_order(const tb_dataset *ds, char *buf, size_t n);

/* Puts a batch into a message: tensors input_ids, token_type_ids, attention_mask, labels,
 * example_ids (borrowed: keep `b` alive while `m` is used), ints epoch and index, strings
 * vocab_hash and label_order (either may be NULL to leave it out). The stream layer adds
 * "msg", the stream id and the sequence number. */
int tb_batch_to_msg(const tb_batch *b, const char *vocab_hash, const char *label_order, tb_msg *m);
/* Reads a batch back (tensors copied), checking names, dtypes and shapes: TB_ENOTFOUND for a
 * missing field, TB_ESHAPE for a wrong dtype or shape, TB_EFORMAT for an attention mask that is
 * not 0/1 or negative ids; each message names the field. */
int tb_batch_from_msg(tb_batch *b, const tb_msg *m);

/* The tensor fields of a token batch message, as a port description for --describe
 * (tb/base/cli.h): every stage that reads or writes token batches declares these. */
extern const tb_port_field tb_batch_port_fields[];

#endif
