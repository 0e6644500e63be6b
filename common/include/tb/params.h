/* tb/params.h - a model's named parameters: views into one value buffer and one gradient buffer.
 *
 * Models (tb/bert.h) expose their parameters as a table so that generic code (BertAdam in
 * tb/optim.h, checkpoints in tb/checkpoint.h) can walk them by name without knowing the model.
 * Names are the Hugging Face ones ("bert.encoder.layer.0.attention.self.query.weight",
 * "fit_dense.weight", ...); Linear weights are [out, in] as in PyTorch.
 */
#ifndef TB_PARAMS_H
#define TB_PARAMS_H

#include "tb/tensor.h"

#include <stddef.h>

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

#endif
