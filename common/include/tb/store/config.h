/* tb/store/config.h - config.json (Hugging Face BertConfig keys) <-> tb_bert_config.
 *
 * Keys read (HF names): vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
 * intermediate_size (required); max_position_embeddings (512), type_vocab_size (2),
 * layer_norm_eps (1e-12), hidden_dropout_prob (0.1), attention_probs_dropout_prob (0.1),
 * initializer_range (0.02), pad_token_id (0), hidden_act (must be "gelu"), classifier_dropout
 * (null: hidden_dropout_prob), num_labels / id2label, problem_type ("regression" needs 1 label)
 * — defaults in brackets are HF's BertConfig defaults, used when a key is absent.
 * tinybert-c's own keys:
 *   "tinybert_head": "none" | "relu" (TB_HEAD_TINYBERT) | "hf" (TB_HEAD_HF). The head kind is never
 *                    guessed: without this key the model has no classification head.
 *   "tinybert_mlm_head": true/false; when absent, true iff "architectures" names
 *                    BertForMaskedLM or BertForPreTraining.
 *   "fit_size":      d_teacher of fit_dense (0 or absent: none).
 *   "tinybert_pooler": true/false: bert.pooler.* without a classification head (a head always has
 *                    one). Absent: false here; a checkpoint without the key whose model.safetensors
 *                    holds bert.pooler.dense.weight and no head gets true (tb_checkpoint_load_config).
 * Written files also carry "architectures", "model_type": "bert", id2label / label2id and
 * num_labels so Hugging Face tools load them.
 */
#ifndef TB_CONFIG_H
#define TB_CONFIG_H

#include "tb/model/bert_config.h"

/* Checks sizes and ranges (hidden_size divisible by heads, probabilities in [0, 1), ...).
 * `what` names the source in messages (a path, or "config"). */
int tb_config_validate(const tb_bert_config *c, const char *what);

/* Parses config.json text; `what` names the source in messages. */
int tb_config_parse(const char *json, const char *what, tb_bert_config *out);
/* Reads and parses a config.json file. */
int tb_config_load(const char *path, tb_bert_config *out);

/* Formats `c` as pretty JSON; *out is malloc'd (free() it). */
int tb_config_format(const tb_bert_config *c, char **out);
/* Writes `c` to `path` and fsyncs it. */
int tb_config_save(const char *path, const tb_bert_config *c);

/* "none" / "relu" / "hf" <-> tb_head_kind. */
const char *tb_head_kind_name(tb_head_kind h);
int tb_head_kind_parse(const char *s, tb_head_kind *out);

#endif
