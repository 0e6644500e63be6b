/* cat.h - what tb-cat prints about a message: its fields, dtypes, shapes and tensor
 * statistics, as text lines or as one JSON object (docs/stages.md, tb-cat). */
#ifndef TB_CAT_H
#define TB_CAT_H

#include "tb/base/json.h"
#include "tb/base/tensor.h"
#include "tb/wire/msg.h"

#include <stdint.h>

/* Statistics of a tensor's values (as doubles). NaN and +-Inf are counted, not folded in. */
typedef struct tb_cat_stats {
    int64_t n;       /* elements */
    int64_t finite;  /* of which finite */
    int64_t nan, inf;
    double min, max, mean, std; /* over the finite values; 0 when there are none */
} tb_cat_stats;

/* Computes the statistics of t (any dtype, any strides). */
int tb_cat_tensor_stats(const tb_tensor *t, tb_cat_stats *out);

/* Appends a human-readable description of message m (one field a line, indented) to b. With
 * stats = 0 tensors show dtype and shape only. */
int tb_cat_format_text(const tb_msg *m, int stats, tb_strbuf *b);

/* Appends m as one JSON object (no newline): {"seq":..,"msg":..,"fields":[{"name","kind",
 * "value" | "dtype","shape","bytes", "stats":{...}}]}. */
int tb_cat_format_json(const tb_msg *m, int stats, tb_strbuf *b);

#endif
