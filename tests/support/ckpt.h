/* ckpt.h - small random checkpoints with the bert-base-uncased vocabulary, for the tests of
 * tb-predict, the inference API and the Hugging Face export (ckpt.c).
 */
#ifndef TB_TEST_CKPT_H
#define TB_TEST_CKPT_H

#include "tb/model/bert_config.h"

#include <stddef.h>

typedef struct tb_test_ckpt {
    tb_head_kind head;    /* TB_HEAD_NONE, TB_HEAD_TINYBERT (relu) or TB_HEAD_HF */
    int num_labels;       /* 1: regression */
    int mlm_head;         /* also an MLM head */
    int fit_size;         /* > 0: a student's fit_dense */
    unsigned long long seed;
} tb_test_ckpt;

/* Writes DIR/step-1/ (and DIR/latest) holding a 2-layer, 32-wide BERT (4 heads, FFN 64, 128
 * positions) with weights N(0, 0.5^2) - large enough that logits differ clearly between texts -
 * LayerNorm gains 1, and data/vocab/bert-base-uncased-vocab.txt as vocab.txt. The folder path
 * DIR/step-1 goes into out (n bytes). Fails the calling test on error. */
void tb_test_write_ckpt(const char *dir, const tb_test_ckpt *spec, char *out, size_t n);

#endif
