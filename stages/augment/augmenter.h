/* stages/augment/augmenter.h - everything tb-augment loads: the MLM teacher, its vocabulary, the
 * stop words and the word vectors, and the candidate engine over them. */
#ifndef TB_AUG_AUGMENTER_H
#define TB_AUG_AUGMENTER_H

#include "cands.h"

typedef enum tb_vec_source { TB_VEC_GLOVE = 0, TB_VEC_TEACHER, TB_VEC_NONE } tb_vec_source;

typedef struct tb_augmenter_opts {
    const char *model;        /* checkpoint folder (or run folder with "latest") with an MLM head */
    const char *vocab;        /* NULL: the checkpoint's vocab.txt */
    const char *stopwords;    /* one word a line; NULL: the shipped list (shipped.h) */
    tb_vec_source vectors;
    const char *glove;        /* TB_VEC_GLOVE: the text file; NULL: the shipped GloVe subset */
    int64_t glove_max_words;  /* first lines read (100,000); <= 0: all */
    const char *glove_cache;  /* NULL: none */
    int cased;                /* keep case and accents (cased vocabularies) */
    tb_cands_opts cands;
} tb_augmenter_opts;

typedef struct tb_augmenter {
    tb_tokenizer tok;
    tb_bert_model model;
    tb_stopwords stop;
    tb_vectors vec;
    tb_cands cands;
} tb_augmenter;

/* Loads the teacher: TB_EINVAL naming the checkpoint when it has no MLM head. */
int tb_augment_load_teacher(tb_bert_model *m, const char *path);
int tb_augmenter_open(tb_augmenter *a, const tb_augmenter_opts *o);
void tb_augmenter_close(tb_augmenter *a);

#endif
