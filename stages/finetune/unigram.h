/* unigram.h - tb-finetune: the initial MLM output bias from the token frequencies of the input. */
#ifndef TB_FINETUNE_UNIGRAM_H
#define TB_FINETUNE_UNIGRAM_H

#include "tb/model/bert.h"
#include "tb/train/mlm.h"

/* Reads the first epoch of the message file `path` (the batches whose epoch equals the first
 * one's), counts the tokens masked LM can choose (tb_mlm_count_candidates) and sets the model's
 * cls.predictions.bias to their smoothed log frequencies (tb_mlm_unigram_bias). *tokens receives
 * the number of tokens counted. The model is untouched on error. */
int ft_unigram_bias(tb_bert_model *m, const tb_mlm_opts *o, const char *path, int64_t *tokens);

#endif
