/* tb/text/readers.h - task readers: GLUE TSV, text<TAB>label, plain corpus (glue.c, corpus.c,
 * read_format.c).
 *
 * Files are UTF-8, split on "\n" (a trailing "\r" is removed), fields split on "\t" only (no
 * quoting: GLUE has bare '"'). A UTF-8 BOM at the start of a file is skipped. Columns and label
 * orders follow the TinyBERT reference's processors (task_distill.py, tb/text/task.h); docs/data.md
 * has the table. A malformed row (too few columns, unknown label, bad number, invalid UTF-8) is an
 * error naming file:line (TB_EFORMAT) unless `lenient` is set, in which case it is skipped and
 * counted in tb_dataset.skipped (the first one is kept in skipped_first_line).
 */
#ifndef TB_READERS_H
#define TB_READERS_H

#include "tb/text/examples.h"
#include "tb/text/task.h"

typedef struct tb_read_opts {
    int lenient;              /* skip and count malformed rows instead of failing */
    int wikitext;             /* corpus: WikiText conventions, see tb_dataset_read_corpus */
    int first_field;          /* corpus: keep only the text before the first tab of a line, as the
                                 seed project's general_distill.py does (text<TAB>label files) */
} tb_read_opts;

/* Reads a GLUE task file (train.tsv, dev.tsv, dev_matched.tsv, ...). `opts` may be NULL. */
int tb_dataset_read_glue(tb_dataset *ds, tb_task task, const char *path, const tb_read_opts *opts);

/* Reads the simple format of the seed project: one example per line, fields split on "\t",
 * label = last field (a decimal integer 0 .. TB_SIMPLE_MAX_LABEL; a larger one is a bad row naming
 * file:line), text_a = first field, text_b = second field when
 * there are more than 2 fields. A line whose label is not an integer (e.g. a continuation
 * fragment) is an error in strict mode; in lenient mode it is skipped and counted, which is what
 * the seed project does silently. Lines with one field are malformed. Blank lines are skipped. */
#define TB_SIMPLE_MAX_LABEL 255 /* class ids 0..255: a label order "0,1,...,255" fits every batch */
int tb_dataset_read_simple(tb_dataset *ds, const char *path, const tb_read_opts *opts);

/* Reads a plain corpus: one sentence per line, a blank line between documents; each non-blank
 * line is one example (text_a), in document order. With `wikitext`: blank lines are only
 * paragraph breaks; heading lines (" = Title = ", " = = Section = = ") are dropped, and a
 * top-level heading (" = Title = ") starts a new document; the tokenized separators " @-@ ",
 * " @,@ ", " @.@ " become "-", ",", "." (" - " etc. next to "<unk>"); "<unk>" stays in the text
 * (tokenize it with tb_tokenizer_opts.unk_literal = "<unk>" to get [UNK]). Leading and trailing
 * spaces of a line are removed. */
int tb_dataset_read_corpus(tb_dataset *ds, const char *path, const tb_read_opts *opts);

/* Reads `path` in the named format: "corpus", "wikitext" (tb_dataset_read_corpus with
 * opts->wikitext set), "simple", or a GLUE task name (tb_task_parse). The format names are the
 * ones the stages' --format options take. `opts` may be NULL. */
int tb_dataset_read_format(tb_dataset *ds, const char *format, const char *path, const tb_read_opts *opts);

#endif
