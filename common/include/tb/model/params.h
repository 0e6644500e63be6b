/* tb/model/params.h - a model's named parameters: views into one value buffer and one gradient buffer.
 *
 * Models (tb/model/bert.h) expose their parameters as a table so that generic code (BertAdam in
 * tb/model/optim.h, checkpoints in tb/store/checkpoint.h) can walk them by name without knowing the model.
 * Names are the Hugging Face ones ("bert.encoder.layer.0.attention.self.query.weight",
 * "fit_dense.weight", ...); Linear weights are [out, in] as in PyTorch.
 */
#ifndef TB_PARAMS_H
#define TB_PARAMS_H

#include "tb/base/tensor.h"

#include <stddef.h>
#include <stdint.h>

#define TB_PARAM_NAME_MAX 128

typedef struct tb_param {
    char name[TB_PARAM_NAME_MAX];
    tb_tensor value;  /* f32, borrowed view into tb_param_table.values */
    tb_tensor grad;   /* f32, same shape, borrowed view into tb_param_table.grads */
    int no_decay;     /* bias or LayerNorm parameter: BertAdam applies no weight decay */
    int trainable;    /* 0: frozen in this stage (no update, no optimizer state) */
} tb_param;

typedef struct tb_param_table {
    tb_param *items;
    int count;
    float *values;    /* all parameters, 64-byte aligned, each tensor 64-byte aligned */
    float *grads;     /* same layout as values */
    size_t total;     /* floats in each buffer, including alignment padding */
} tb_param_table;

/* Finds a parameter by exact name; NULL when absent. */
tb_param *tb_params_find(const tb_param_table *p, const char *name);

/* Zeroes every gradient (the whole gradient buffer, padding included). */
void tb_params_zero_grads(tb_param_table *p);

/* One entry of a table to build with tb_params_alloc. */
typedef struct tb_param_spec {
    const char *name;
    int ndim;
    int64_t shape[TB_MAX_DIMS];
    int no_decay;
    int trainable;
} tb_param_spec;

/* Builds a table that owns its buffers: values and grads zeroed, tensors in `specs` order, each
 * starting on a 64-byte boundary. Rejects empty/too long/duplicate names and bad shapes.
 * Release with tb_params_free (only for tables made here). */
int tb_params_alloc(tb_param_table *p, const tb_param_spec *specs, int count);
void tb_params_free(tb_param_table *p);

/* Offset (in floats) of a parameter's value inside p->values (same offset in p->grads). */
size_t tb_params_offset(const tb_param_table *p, const tb_param *item);

#endif
