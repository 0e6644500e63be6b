/* tb/store/checkpoint.h - checkpoint folders a Hugging Face user can load, written atomically.
 *
 * Layout of DIR/step-N/:
 *   config.json                Hugging Face BertConfig keys + tinybert-c's head kind (tb/store/config.h)
 *   model.safetensors          every parameter of the table under its HF name, F32, "format": "pt";
 *                              the tied MLM decoder is not a table entry, so it is stored once
 *                              (as bert.embeddings.word_embeddings.weight), as HF does
 *   vocab.txt                  copied byte for byte from the given path (when one is given)
 *   training_state.safetensors (optional) BertAdam moments "next_m.<name>", "next_v.<name>" of
 *                              every trainable parameter
 *   training_state.json        (optional) step, optimiser options, RNG seed and position, data
 *                              stream position, and a caller-defined "extra" JSON object
 * Writing: DIR/step-N.tmp/ is filled, each file fsynced, the folder fsynced and renamed to
 * DIR/step-N/, DIR fsynced, then DIR/latest (a symlink to "step-N") is replaced atomically (new
 * link under a temporary name + rename) and DIR fsynced again. Left-over *.tmp folders from a crash
 * are never read and are removed by the next save.
 *
 * Loading maps names: "LayerNorm.gamma"/"LayerNorm.beta" -> "LayerNorm.weight"/"LayerNorm.bias",
 * a missing "bert." prefix is added (embeddings., encoder., pooler.), "cls.predictions.decoder.bias"
 * -> "cls.predictions.bias"; "cls.predictions.decoder.weight" (the tied decoder) and tensors the
 * table does not have (cls.seq_relationship.*, ...) are ignored with an info-level note. Missing
 * parameters, wrong shapes and non-F32 dtypes are all reported in one error naming each.
 */
#ifndef TB_CHECKPOINT_H
#define TB_CHECKPOINT_H

#include "tb/model/bert_config.h"
#include "tb/model/optim.h"
#include "tb/model/params.h"

#include <stddef.h>
#include <stdint.h>

#define TB_CKPT_CONFIG "config.json"
#define TB_CKPT_MODEL "model.safetensors"
#define TB_CKPT_VOCAB "vocab.txt"
#define TB_CKPT_STATE "training_state.safetensors"
#define TB_CKPT_STATE_JSON "training_state.json"
#define TB_CKPT_LATEST "latest"

/* Where training stands, saved with the optimiser moments. */
typedef struct tb_train_state {
    int64_t step;            /* optimiser updates done (== tb_adam.step) */
    uint64_t seed;           /* the run's seed (dropout, init, shuffle keys derive from it) */
    uint64_t rng_position;   /* next batch sequence number of the dropout streams */
    uint64_t data_position;  /* position in the input stream (examples or batch sequence number) */
    char *extra_json;        /* a JSON object of the caller's own, or NULL; owned when loaded */
} tb_train_state;

/* Frees extra_json and zeroes the struct. */
void tb_train_state_free(tb_train_state *s);

/* Saves DIR/step-<step>/ as described above. `adam` and `state` may be NULL (no training state;
 * with `state` alone only training_state.json is written); when both are given state->step must
 * equal adam->step. `vocab_path` may be NULL (no vocab.txt). Creates DIR (one level) if needed;
 * fails if step-<step> exists. One writer per DIR at a time. Writes the final folder's path into
 * `out_path` when it is not NULL. */
int tb_checkpoint_save(const char *dir, int64_t step, const tb_bert_config *config, const tb_param_table *params,
                       const tb_adam *adam, const tb_train_state *state, const char *vocab_path, char *out_path,
                       size_t out_n);

/* Resolves a checkpoint path: a folder holding config.json is itself; otherwise DIR/latest (its
 * link target) is used. The result is written into `out`. */
int tb_checkpoint_resolve(const char *path, char *out, size_t out_n);

/* Any head kind: pass as `expect_head` to tb_checkpoint_load_config. */
#define TB_CKPT_ANY_HEAD (-1)

/* Reads config.json of checkpoint `path` (resolved as above). Unless `expect_head` is
 * TB_CKPT_ANY_HEAD, the recorded head kind must equal it (else TB_EFORMAT naming both). A foreign
 * config.json without "tinybert_head" / "fit_size" gets them from model.safetensors:
 * classifier.weight [NL, C] -> head "hf" with NL labels (a warning says so), fit_dense.weight
 * [F, C] -> fit_size F. */
int tb_checkpoint_load_config(const char *path, int expect_head, tb_bert_config *out);

/* Loads model.safetensors of checkpoint `path` into `params` (values only), with the name mapping
 * above. Parameters whose names start with one of `optional_prefixes` (NULL-terminated list, may
 * be NULL) may be absent from the file: they keep their values and a note is logged. */
int tb_checkpoint_load_params(const char *path, tb_param_table *params, const char *const *optional_prefixes);

/* Loads the training state of checkpoint `path`: moments into `adam` (made by tb_adam_init for
 * `params`) and adam->step, and `state`; either may be NULL (not both; `params` is only needed
 * with `adam`). Fails with TB_ENOTFOUND when the checkpoint has no training state, and with
 * TB_ESHAPE naming each trainable parameter whose moments are missing or mis-shaped. */
int tb_checkpoint_load_state(const char *path, const tb_param_table *params, tb_adam *adam, tb_train_state *state);

/* Removes every "*.tmp" entry directly inside DIR (left over from an interrupted save). */
int tb_checkpoint_clean_tmp(const char *dir);

#endif
