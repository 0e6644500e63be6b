/* tensor.c - tensors, dtypes, aligned memory and half-precision conversions. */
#include "tb/base/tensor.h"

#include "tb/base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dtype_info {
    size_t size;
    const char *name, *numpy, *safetensors;
} dtype_info;

static const dtype_info dtypes[TB_DTYPE_COUNT] = {
    [TB_F32] = {4, "f32", "<f4", "F32"},   [TB_F16] = {2, "f16", "<f2", "F16"},
    [TB_BF16] = {2, "bf16", NULL, "BF16"}, [TB_F64] = {8, "f64", "<f8", "F64"},
    [TB_I8] = {1, "i8", "|i1", "I8"},      [TB_I16] = {2, "i16", "<i2", "I16"},
    [TB_I32] = {4, "i32", "<i4", "I32"},   [TB_I64] = {8, "i64", "<i8", "I64"},
    [TB_U8] = {1, "u8", "|u1", "U8"},      [TB_U16] = {2, "u16", "<u2", "U16"},
    [TB_U32] = {4, "u32", "<u4", "U32"},   [TB_U64] = {8, "u64", "<u8", "U64"},
    [TB_BOOL] = {1, "bool", "|b1", "BOOL"},
};

static int dtype_ok(tb_dtype dt) { return (unsigned)dt < TB_DTYPE_COUNT; }

size_t tb_dtype_size(tb_dtype dt) { return dtype_ok(dt) ? dtypes[dt].size : 0; }
const char *tb_dtype_name(tb_dtype dt) { return dtype_ok(dt) ? dtypes[dt].name : "?"; }
const char *tb_dtype_numpy(tb_dtype dt) { return dtype_ok(dt) ? dtypes[dt].numpy : NULL; }
const char *tb_dtype_safetensors(tb_dtype dt) { return dtype_ok(dt) ? dtypes[dt].safetensors : NULL; }

int tb_dtype_from_numpy(const char *s, size_t len, tb_dtype *out)
{
    /* Single-byte types may be spelled with '|', '<', '>' or '=' by various writers. */
    if (len == 3 && (s[1] == 'u' || s[1] == 'i' || s[1] == 'b') && s[2] == '1' &&
        (s[0] == '|' || s[0] == '<' || s[0] == '>' || s[0] == '=')) {
        *out = s[1] == 'u' ? TB_U8 : s[1] == 'i' ? TB_I8 : TB_BOOL;
        return TB_OK;
    }
    if (len == 3 && (s[0] == '<' || s[0] == '=')) {
        for (int i = 0; i < TB_DTYPE_COUNT; i++) {
            const char *np = dtypes[i].numpy;
            if (np && np[0] == '<' && np[1] == s[1] && np[2] == s[2]) {
                *out = (tb_dtype)i;
                return TB_OK;
            }
        }
    }
    if (len >= 1 && s[0] == '>')
        return TB_ERR(TB_EUNSUPPORTED, "big-endian numpy dtype '%.*s' is not supported",
                      (int)(len > 16 ? 16 : len), s);
    return TB_ERR(TB_EFORMAT, "unknown numpy dtype '%.*s'", (int)(len > 16 ? 16 : len), s);
}

int tb_dtype_from_safetensors(const char *s, size_t len, tb_dtype *out)
{
    for (int i = 0; i < TB_DTYPE_COUNT; i++) {
        const char *st = dtypes[i].safetensors;
        if (strlen(st) == len && memcmp(st, s, len) == 0) {
            *out = (tb_dtype)i;
            return TB_OK;
        }
    }
    return TB_ERR(TB_EFORMAT, "unknown safetensors dtype '%.*s'", (int)(len > 16 ? 16 : len), s);
}

void *tb_aligned_alloc(size_t nbytes)
{
    size_t n = (nbytes + TB_ALIGN - 1) / TB_ALIGN * TB_ALIGN;
    if (n == 0) n = TB_ALIGN;
    if (n < nbytes) return NULL; /* overflow */
    return aligned_alloc(TB_ALIGN, n);
}

void tb_aligned_free(void *p) { free(p); }

int tb_shape_numel(int ndim, const int64_t *shape, size_t elem_size, size_t max_bytes, int64_t *out)
{
    if (ndim < 0 || ndim > TB_MAX_DIMS)
        return TB_ERR(TB_EINVAL, "tensor rank %d is outside 0..%d", ndim, TB_MAX_DIMS);
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return TB_ERR(TB_EINVAL, "dimension %d is negative (%lld)", i, (long long)shape[i]);
        if (shape[i] != 0 && n > (uint64_t)INT64_MAX / (uint64_t)shape[i])
            return TB_ERR(TB_EINVAL, "shape overflows 64-bit element count at dimension %d", i);
        n *= (uint64_t)shape[i];
    }
    if (elem_size && n > (uint64_t)SIZE_MAX / elem_size)
        return TB_ERR(TB_EINVAL, "tensor of %llu elements overflows the address space",
                      (unsigned long long)n);
    if (max_bytes && n * elem_size > max_bytes)
        return TB_ERR(TB_EINVAL, "tensor of %llu bytes exceeds the limit of %zu bytes",
                      (unsigned long long)(n * elem_size), max_bytes);
    *out = (int64_t)n;
    return TB_OK;
}

static void set_contiguous(tb_tensor *t, tb_dtype dt, int ndim, const int64_t *shape)
{
    t->dtype = dt;
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
    for (int i = ndim; i < TB_MAX_DIMS; i++) t->shape[i] = t->stride[i] = 0;
}

int tb_tensor_alloc(tb_tensor *t, tb_dtype dt, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    if (!dtype_ok(dt)) return TB_ERR(TB_EINVAL, "invalid dtype %d", (int)dt);
    int64_t n;
    int rc = tb_shape_numel(ndim, shape, tb_dtype_size(dt), 0, &n);
    if (rc) return rc;
    size_t bytes = (size_t)n * tb_dtype_size(dt);
    void *p = tb_aligned_alloc(bytes);
    if (!p) return TB_ERR(TB_ENOMEM, "cannot allocate %zu bytes for a %s tensor", bytes, tb_dtype_name(dt));
    memset(p, 0, bytes);
    set_contiguous(t, dt, ndim, shape);
    t->data = p;
    t->owned = 1;
    return TB_OK;
}

int tb_tensor_borrow(tb_tensor *t, tb_dtype dt, int ndim, const int64_t *shape, void *data)
{
    memset(t, 0, sizeof *t);
    if (!dtype_ok(dt)) return TB_ERR(TB_EINVAL, "invalid dtype %d", (int)dt);
    int64_t n;
    int rc = tb_shape_numel(ndim, shape, tb_dtype_size(dt), 0, &n);
    if (rc) return rc;
    set_contiguous(t, dt, ndim, shape);
    t->data = data;
    t->owned = 0;
    return TB_OK;
}

void tb_tensor_free(tb_tensor *t)
{
    if (!t) return;
    if (t->owned) tb_aligned_free(t->data);
    memset(t, 0, sizeof *t);
}

int64_t tb_tensor_numel(const tb_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tb_tensor_nbytes(const tb_tensor *t) { return (size_t)tb_tensor_numel(t) * tb_dtype_size(t->dtype); }

int tb_tensor_is_contiguous(const tb_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

/* Copies a strided tensor element by element (row-major order) into contiguous `dst`. */
static void copy_strided(char *dst, const tb_tensor *src)
{
    size_t es = tb_dtype_size(src->dtype);
    int64_t n = tb_tensor_numel(src);
    int64_t idx[TB_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k++) {
        int64_t off = 0;
        for (int d = 0; d < src->ndim; d++) off += idx[d] * src->stride[d];
        memcpy(dst + (size_t)k * es, (const char *)src->data + (size_t)off * es, es);
        for (int d = src->ndim - 1; d >= 0; d--) {
            if (++idx[d] < src->shape[d]) break;
            idx[d] = 0;
        }
    }
}

int tb_tensor_copy(tb_tensor *dst, const tb_tensor *src)
{
    int rc = tb_tensor_alloc(dst, src->dtype, src->ndim, src->shape);
    if (rc) return rc;
    if (tb_tensor_is_contiguous(src))
        memcpy(dst->data, src->data, tb_tensor_nbytes(src));
    else
        copy_strided(dst->data, src);
    return TB_OK;
}

int tb_tensor_convert(tb_tensor *dst, const tb_tensor *src, tb_dtype to)
{
    int rc = TB_OK;
    tb_tensor tmp = {0};
    const tb_tensor *s = src;
    if (!tb_tensor_is_contiguous(src)) {
        TB_TRY(tb_tensor_copy(&tmp, src));
        s = &tmp;
    }
    if (s->dtype == to) {
        TB_TRY(tb_tensor_copy(dst, s));
        goto done;
    }
    int64_t n = tb_tensor_numel(s);
    TB_TRY(tb_tensor_alloc(dst, to, s->ndim, s->shape));
    if (s->dtype == TB_F32 && to == TB_F16) {
        const float *a = s->data; uint16_t *b = dst->data;
        for (int64_t i = 0; i < n; i++) b[i] = tb_f32_to_f16(a[i]);
    } else if (s->dtype == TB_F32 && to == TB_BF16) {
        const float *a = s->data; uint16_t *b = dst->data;
        for (int64_t i = 0; i < n; i++) b[i] = tb_f32_to_bf16(a[i]);
    } else if (s->dtype == TB_F16 && to == TB_F32) {
        const uint16_t *a = s->data; float *b = dst->data;
        for (int64_t i = 0; i < n; i++) b[i] = tb_f16_to_f32(a[i]);
    } else if (s->dtype == TB_BF16 && to == TB_F32) {
        const uint16_t *a = s->data; float *b = dst->data;
        for (int64_t i = 0; i < n; i++) b[i] = tb_bf16_to_f32(a[i]);
    } else {
        tb_tensor_free(dst);
        TB_CHECK(0, TB_EUNSUPPORTED, "no conversion from %s to %s", tb_dtype_name(s->dtype),
                 tb_dtype_name(to));
    }
done:
error:
    tb_tensor_free(&tmp);
    return rc;
}

const char *tb_tensor_describe(const tb_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "%s[", tb_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

int tb_tensor_expect(const tb_tensor *t, const char *what, tb_dtype dt, int ndim, const int64_t *shape)
{
    int ok = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (ok) return TB_OK;
    char have[160], want[160];
    tb_tensor want_t = {.dtype = dt, .ndim = ndim};
    for (int i = 0; i < ndim && i < TB_MAX_DIMS; i++) want_t.shape[i] = shape[i];
    tb_tensor_describe(t, have, sizeof have);
    tb_tensor_describe(&want_t, want, sizeof want);
    return TB_ERR(TB_ESHAPE, "tensor '%s' is %s, expected %s (-1 = any)", what, have, want);
}

/* ---- half precision ---------------------------------------------------------------------- */

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t tb_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent: correct */
    return (uint16_t)h;
}

float tb_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        float v = (float)man * (1.0f / 16777216.0f); /* man * 2^-24 */
        return sign ? -v : v;
    }
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp - 15 + 127) << 23) | (man << 13));
}

uint16_t tb_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float tb_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }
