/* params.c - lookup and construction of parameter tables (tb/model/params.h). */
#include "tb/model/params.h"

#include "tb/base/error.h"

#include <stdlib.h>
#include <string.h>

tb_param *tb_params_find(const tb_param_table *p, const char *name)
{
    if (!p || !name) return NULL;
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->items[i].name, name) == 0) return &p->items[i];
    return NULL;
}

void tb_params_zero_grads(tb_param_table *p)
{
    if (p && p->grads) memset(p->grads, 0, p->total * sizeof(float));
}

size_t tb_params_offset(const tb_param_table *p, const tb_param *item)
{
    return (size_t)((const float *)item->value.data - p->values);
}

/* Floats per 64-byte block. */
#define FLOATS_PER_ALIGN (TB_ALIGN / sizeof(float))

int tb_params_alloc(tb_param_table *p, const tb_param_spec *specs, int count)
{
    int rc = TB_OK;
    size_t *offsets = NULL;
    memset(p, 0, sizeof *p);
    TB_CHECK(count > 0 && specs, TB_EINVAL, "a parameter table needs at least one parameter (got %d)", count);
    p->items = calloc((size_t)count, sizeof *p->items);
    offsets = calloc((size_t)count, sizeof *offsets);
    TB_CHECK(p->items && offsets, TB_ENOMEM, "cannot allocate a table of %d parameters", count);
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        const tb_param_spec *s = &specs[i];
        TB_CHECK(s->name && s->name[0], TB_EINVAL, "parameter %d has an empty name", i);
        TB_CHECK(strlen(s->name) < TB_PARAM_NAME_MAX, TB_EINVAL,
                 "parameter name '%.40s...' is longer than %d bytes", s->name, TB_PARAM_NAME_MAX - 1);
        for (int j = 0; j < i; j++)
            TB_CHECK(strcmp(specs[j].name, s->name) != 0, TB_EINVAL,
                     "parameter '%s' appears twice (entries %d and %d)", s->name, j, i);
        int64_t n = 0;
        rc = tb_shape_numel(s->ndim, s->shape, sizeof(float), 0, &n);
        if (rc) {
            tb_err_wrap(rc, "parameter '%s'", s->name);
            goto error;
        }
        offsets[i] = total;
        size_t padded = ((size_t)n + FLOATS_PER_ALIGN - 1) / FLOATS_PER_ALIGN * FLOATS_PER_ALIGN;
        TB_CHECK(total + padded >= total, TB_ENOMEM, "parameter table size overflows");
        total += padded;
    }
    p->total = total;
    p->values = tb_aligned_alloc(total * sizeof(float));
    p->grads = tb_aligned_alloc(total * sizeof(float));
    TB_CHECK(p->values && p->grads, TB_ENOMEM, "cannot allocate 2 x %zu floats for %d parameters", total, count);
    memset(p->values, 0, total * sizeof(float));
    memset(p->grads, 0, total * sizeof(float));
    p->count = count;
    for (int i = 0; i < count; i++) {
        tb_param *it = &p->items[i];
        const tb_param_spec *s = &specs[i];
        strcpy(it->name, s->name);
        TB_TRY(tb_tensor_borrow(&it->value, TB_F32, s->ndim, s->shape, p->values + offsets[i]));
        TB_TRY(tb_tensor_borrow(&it->grad, TB_F32, s->ndim, s->shape, p->grads + offsets[i]));
        it->no_decay = s->no_decay;
        it->trainable = s->trainable;
    }
    free(offsets);
    return TB_OK;
error:
    free(offsets);
    tb_params_free(p);
    return rc;
}

void tb_params_free(tb_param_table *p)
{
    if (!p) return;
    free(p->items);
    tb_aligned_free(p->values);
    tb_aligned_free(p->grads);
    memset(p, 0, sizeof *p);
}
