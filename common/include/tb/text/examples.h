/* tb/text/examples.h - a dataset in memory: the examples a reader made (tb/text/readers.h), in
 * file order, with the facts of their task (examples.c).
 */
#ifndef TB_EXAMPLES_H
#define TB_EXAMPLES_H

#include "tb/text/basic.h"
#include "tb/text/task.h"
#include "tb/text/vocab_build.h"

#include <stdint.h>

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

void tb_dataset_free(tb_dataset *ds);

/* Basic-tokenizes text_a and text_b of every example and counts the words (for tb_vocab_learn). */
int tb_dataset_count_words(const tb_dataset *ds, const tb_tokenizer_opts *opts, tb_word_counts *wc);

#endif
