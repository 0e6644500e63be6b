/* msg.c - ordered name -> value maps carried by one message. */
#include "tb/wire/msg.h"

#include "tb/base/error.h"

#include <stdlib.h>
#include <string.h>

void tb_msg_init(tb_msg *m) { memset(m, 0, sizeof *m); }

static void field_clear(tb_field *f)
{
    if (f->kind == TB_VAL_STR) free(f->v.str.ptr);
    if (f->kind == TB_VAL_TENSOR) tb_tensor_free(&f->v.tensor);
    f->kind = TB_VAL_NIL;
}

void tb_msg_free(tb_msg *m)
{
    if (!m) return;
    for (int i = 0; i < m->count; i++) {
        field_clear(&m->fields[i]);
        free(m->fields[i].key);
    }
    free(m->fields);
    if (m->hold_free) m->hold_free(m->hold, m->hold_ctx);
    memset(m, 0, sizeof *m);
}

void tb_msg_hold(tb_msg *m, void *hold, void (*free_fn)(void *hold, void *ctx), void *ctx)
{
    if (m->hold_free) m->hold_free(m->hold, m->hold_ctx);
    m->hold = hold;
    m->hold_free = free_fn;
    m->hold_ctx = ctx;
}

static tb_field *find_mut(tb_msg *m, const char *key)
{
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->fields[i].key, key) == 0) return &m->fields[i];
    return NULL;
}

const tb_field *tb_msg_find(const tb_msg *m, const char *key) { return find_mut((tb_msg *)m, key); }

/* Returns the (cleared) field for `key`, appending it when new; NULL on allocation failure. */
static tb_field *slot(tb_msg *m, const char *key)
{
    tb_field *f = find_mut(m, key);
    if (f) {
        field_clear(f);
        return f;
    }
    if (m->count == m->cap) {
        int cap = m->cap ? m->cap * 2 : 8;
        tb_field *nf = realloc(m->fields, (size_t)cap * sizeof *nf);
        if (!nf) return NULL;
        m->fields = nf;
        m->cap = cap;
    }
    char *k = strdup(key);
    if (!k) return NULL;
    f = &m->fields[m->count++];
    memset(f, 0, sizeof *f);
    f->key = k;
    return f;
}

#define SLOT_OR_FAIL(f, m, key)                                                        \
    tb_field *f = slot((m), (key));                                                    \
    if (!f) return TB_ERR(TB_ENOMEM, "out of memory adding field '%s'", (key))

int tb_msg_set_nil(tb_msg *m, const char *key)
{
    SLOT_OR_FAIL(f, m, key);
    f->kind = TB_VAL_NIL;
    return TB_OK;
}

int tb_msg_set_bool(tb_msg *m, const char *key, int value)
{
    SLOT_OR_FAIL(f, m, key);
    f->kind = TB_VAL_BOOL;
    f->v.b = value != 0;
    return TB_OK;
}

int tb_msg_set_int(tb_msg *m, const char *key, int64_t value)
{
    SLOT_OR_FAIL(f, m, key);
    f->kind = TB_VAL_INT;
    f->v.i = value;
    return TB_OK;
}

int tb_msg_set_float(tb_msg *m, const char *key, double value)
{
    SLOT_OR_FAIL(f, m, key);
    f->kind = TB_VAL_FLOAT;
    f->v.f = value;
    return TB_OK;
}

int tb_msg_set_strn(tb_msg *m, const char *key, const char *value, size_t len)
{
    char *s = malloc(len + 1);
    if (!s) return TB_ERR(TB_ENOMEM, "out of memory for string field '%s'", key);
    memcpy(s, value, len);
    s[len] = '\0';
    tb_field *f = slot(m, key);
    if (!f) {
        free(s);
        return TB_ERR(TB_ENOMEM, "out of memory adding field '%s'", key);
    }
    f->kind = TB_VAL_STR;
    f->v.str.ptr = s;
    f->v.str.len = len;
    return TB_OK;
}

int tb_msg_set_str(tb_msg *m, const char *key, const char *value)
{
    return tb_msg_set_strn(m, key, value, strlen(value));
}

int tb_msg_set_tensor_ref(tb_msg *m, const char *key, const tb_tensor *t)
{
    SLOT_OR_FAIL(f, m, key);
    f->kind = TB_VAL_TENSOR;
    f->v.tensor = *t;
    f->v.tensor.owned = 0;
    return TB_OK;
}

int tb_msg_set_tensor_copy(tb_msg *m, const char *key, const tb_tensor *t)
{
    tb_tensor c;
    int rc = tb_tensor_copy(&c, t);
    if (rc) return tb_err_wrap(rc, "copying tensor '%s'", key);
    rc = tb_msg_set_tensor_move(m, key, &c);
    if (rc) tb_tensor_free(&c);
    return rc;
}

int tb_msg_set_tensor_move(tb_msg *m, const char *key, tb_tensor *t)
{
    SLOT_OR_FAIL(f, m, key);
    f->kind = TB_VAL_TENSOR;
    f->v.tensor = *t;
    memset(t, 0, sizeof *t);
    return TB_OK;
}

int tb_msg_remove(tb_msg *m, const char *key)
{
    tb_field *f = find_mut(m, key);
    if (!f) return TB_ERR(TB_ENOTFOUND, "message has no field '%s'", key);
    field_clear(f);
    free(f->key);
    int i = (int)(f - m->fields);
    memmove(&m->fields[i], &m->fields[i + 1], (size_t)(m->count - i - 1) * sizeof *f);
    m->count--;
    return TB_OK;
}

static const char *kind_name(tb_value_kind k)
{
    static const char *names[] = {"nil", "bool", "int", "float", "string", "tensor"};
    return (unsigned)k <= TB_VAL_TENSOR ? names[k] : "?";
}

static int get_kind(const tb_msg *m, const char *key, tb_value_kind want, const tb_field **out)
{
    const tb_field *f = tb_msg_find(m, key);
    if (!f) return TB_ERR(TB_ENOTFOUND, "message has no field '%s'", key);
    if (f->kind != want)
        return TB_ERR(TB_EFORMAT, "field '%s' is a %s, expected a %s", key, kind_name(f->kind),
                      kind_name(want));
    *out = f;
    return TB_OK;
}

int tb_msg_get_bool(const tb_msg *m, const char *key, int *out)
{
    const tb_field *f = NULL;
    int rc = get_kind(m, key, TB_VAL_BOOL, &f);
    if (!rc) *out = f->v.b;
    return rc;
}

int tb_msg_get_int(const tb_msg *m, const char *key, int64_t *out)
{
    const tb_field *f = NULL;
    int rc = get_kind(m, key, TB_VAL_INT, &f);
    if (!rc) *out = f->v.i;
    return rc;
}

int tb_msg_get_float(const tb_msg *m, const char *key, double *out)
{
    const tb_field *f = tb_msg_find(m, key);
    if (f && f->kind == TB_VAL_INT) {
        *out = (double)f->v.i;
        return TB_OK;
    }
    int rc = get_kind(m, key, TB_VAL_FLOAT, &f);
    if (!rc) *out = f->v.f;
    return rc;
}

int tb_msg_get_str(const tb_msg *m, const char *key, const char **out)
{
    const tb_field *f = NULL;
    int rc = get_kind(m, key, TB_VAL_STR, &f);
    if (!rc) *out = f->v.str.ptr;
    return rc;
}

int tb_msg_get_tensor(const tb_msg *m, const char *key, const tb_tensor **out)
{
    const tb_field *f = NULL;
    int rc = get_kind(m, key, TB_VAL_TENSOR, &f);
    if (!rc) *out = &f->v.tensor;
    return rc;
}
