/* codec.c - msgpack encoding and decoding of tb_msg maps (tensors in the msgpack-numpy convention).
 *
 * Wire format of one message: a msgpack map whose keys are str; values are nil, bool, int, float
 * (written as float64), str, or a tensor map as msgpack-numpy 0.4.x writes it:
 *
 *   {b"nd": true, b"type": "<f4", b"kind": b"", b"shape": [2, 3], [b"tb_dtype": "bf16",]
 *    b"tb_pad": b"\0...", b"data": <bin>}
 *
 * Tensor-map keys are bin (msgpack-numpy only recognises bytes keys). "type" is the numpy
 * dtype.str, as str. bf16 has no numpy dtype: it travels as "<u2" with "tb_dtype": "bf16", which
 * numpy readers ignore (they see the raw uint16 bit patterns). "tb_pad" is a bin of zero bytes
 * sized so that the payload of "data" starts at an offset that is a multiple of TB_ALIGN (64)
 * from the start of the buffer; msgpack-numpy ignores it.
 *
 * The decoder is a bounds-checked reader of its own: every length is checked against the bytes
 * that remain before anything is read or allocated. It accepts str or bin keys everywhere,
 * tensors without "tb_pad" (as Python writes them), numpy scalars ("nd": false) as 0-d tensors,
 * and rejects arrays, nested non-tensor maps, bin and ext values, duplicate keys, trailing bytes.
 */
#include "tb/wire/codec.h"

#include "tb/base/error.h"

#include <msgpack.h>

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODEC_DEFAULT_MAX_FIELDS 4096
#define CODEC_DEFAULT_MAX_TENSOR_BYTES ((size_t)8 << 30)
#define CODEC_BIN_MAX ((size_t)UINT32_MAX) /* largest msgpack bin (bin32) */
#define CODEC_BOUND_MAX ((size_t)1 << 40)     /* cap of the up-front reservation */
#define CODEC_PAD_KEY "tb_pad"
#define CODEC_DTYPE_KEY "tb_dtype"

/* ---- tb_buf --------------------------------------------------------------------------------- */

void tb_buf_init(tb_buf *b) { memset(b, 0, sizeof *b); }

void tb_buf_free(tb_buf *b)
{
    if (!b) return;
    tb_aligned_free(b->data);
    memset(b, 0, sizeof *b);
}

int tb_buf_reserve(tb_buf *b, size_t cap)
{
    if (cap <= b->cap) return TB_OK;
    uint8_t *p = tb_aligned_alloc(cap);
    if (!p) return TB_ERR(TB_ENOMEM, "cannot allocate a %zu-byte message buffer", cap);
    if (b->len) memcpy(p, b->data, b->len);
    tb_aligned_free(b->data);
    b->data = p;
    b->cap = cap;
    return TB_OK;
}

/* Makes room for `n` more bytes, growing geometrically. */
static int buf_grow(tb_buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len) return TB_ERR(TB_ENOMEM, "message buffer size overflows size_t");
    size_t need = b->len + n;
    if (need <= b->cap) return TB_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    return tb_buf_reserve(b, cap);
}

/* msgpack_packer write callback: appends to a tb_buf; returns 0 or -1 (error recorded). */
static int buf_write(void *data, const char *src, size_t n)
{
    tb_buf *b = data;
    if (buf_grow(b, n) != TB_OK) return -1;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

/* ---- encoder -------------------------------------------------------------------------------- */

/* Copies a (possibly strided) tensor's elements, in C order, to `dst`. */
static void gather(uint8_t *dst, const tb_tensor *t)
{
    size_t es = tb_dtype_size(t->dtype);
    int64_t n = tb_tensor_numel(t);
    if (n == 0) return;
    if (tb_tensor_is_contiguous(t)) {
        memcpy(dst, t->data, (size_t)n * es);
        return;
    }
    int64_t idx[TB_MAX_DIMS] = {0};
    const uint8_t *base = t->data;
    for (int64_t k = 0; k < n; k++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        memcpy(dst, base + off * (int64_t)es, es);
        dst += es;
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

static size_t bin_header_size(size_t n) { return n < 256 ? 2 : n < 65536 ? 3 : 5; }

#define PACK(call)                                                                            \
    do {                                                                                      \
        if ((call) != 0) {                                                                    \
            rc = tb_err_wrap(TB_ENOMEM, "encoding field '%s'", key);                          \
            goto error;                                                                       \
        }                                                                                     \
    } while (0)

static int pack_bin_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    if (msgpack_pack_bin(pk, n) != 0) return -1;
    return msgpack_pack_bin_body(pk, k, n);
}

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    if (msgpack_pack_str(pk, n) != 0) return -1;
    return msgpack_pack_str_body(pk, s, n);
}

/* Writes one tensor map, padding so that its payload starts TB_ALIGN-aligned in `b`. */
static int encode_tensor(msgpack_packer *pk, tb_buf *b, const char *key, const tb_tensor *t)
{
    int rc = TB_OK;
    TB_CHECK((unsigned)t->dtype < TB_DTYPE_COUNT, TB_EINVAL,
             "cannot encode field '%s': invalid dtype %d", key, (int)t->dtype);
    TB_CHECK(t->ndim >= 0 && t->ndim <= TB_MAX_DIMS, TB_EINVAL,
             "cannot encode field '%s': rank %d is outside 0..%d", key, t->ndim, TB_MAX_DIMS);
    int64_t numel;
    rc = tb_shape_numel(t->ndim, t->shape, tb_dtype_size(t->dtype), CODEC_BIN_MAX, &numel);
    if (rc) {
        rc = tb_err_wrap(TB_EINVAL, "cannot encode field '%s' (a msgpack bin holds at most %zu bytes)",
                         key, CODEC_BIN_MAX);
        goto error;
    }
    size_t nbytes = (size_t)numel * tb_dtype_size(t->dtype);
    TB_CHECK(nbytes == 0 || t->data, TB_EINVAL, "cannot encode field '%s': tensor data is NULL", key);

    int bf16 = t->dtype == TB_BF16;
    const char *type = bf16 ? "<u2" : tb_dtype_numpy(t->dtype);
    PACK(msgpack_pack_map(pk, bf16 ? 7 : 6));
    PACK(pack_bin_key(pk, "nd"));
    PACK(msgpack_pack_true(pk));
    PACK(pack_bin_key(pk, "type"));
    PACK(pack_str(pk, type, strlen(type)));
    PACK(pack_bin_key(pk, "kind"));
    PACK(msgpack_pack_bin(pk, 0));
    PACK(pack_bin_key(pk, "shape"));
    PACK(msgpack_pack_array(pk, (size_t)t->ndim));
    for (int d = 0; d < t->ndim; d++) PACK(msgpack_pack_int64(pk, t->shape[d]));
    if (bf16) {
        PACK(pack_bin_key(pk, CODEC_DTYPE_KEY));
        PACK(pack_str(pk, "bf16", 4));
    }
    /* tb_pad key, bin8 header, pad bytes, "data" key, data bin header, then the payload. */
    size_t fixed = (2 + strlen(CODEC_PAD_KEY)) + 2 + (2 + 4) + bin_header_size(nbytes);
    size_t pad = (TB_ALIGN - (b->len + fixed) % TB_ALIGN) % TB_ALIGN;
    static const char zeros[TB_ALIGN] = {0};
    PACK(pack_bin_key(pk, CODEC_PAD_KEY));
    PACK(msgpack_pack_bin(pk, pad));
    PACK(msgpack_pack_bin_body(pk, zeros, pad));
    PACK(pack_bin_key(pk, "data"));
    PACK(msgpack_pack_bin(pk, nbytes));
    TB_TRY(buf_grow(b, nbytes));
    gather(b->data + b->len, t);
    b->len += nbytes;
error:
    return rc;
}

static int encode_field(msgpack_packer *pk, tb_buf *b, const tb_field *f)
{
    int rc = TB_OK;
    const char *key = f->key ? f->key : "(null)";
    TB_CHECK(f->key, TB_EINVAL, "cannot encode a field with a NULL key");
    TB_CHECK(strlen(key) <= CODEC_BIN_MAX, TB_EINVAL, "cannot encode a key of %zu bytes", strlen(key));
    PACK(pack_str(pk, key, strlen(key)));
    switch (f->kind) {
    case TB_VAL_NIL: PACK(msgpack_pack_nil(pk)); break;
    case TB_VAL_BOOL: PACK(f->v.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk)); break;
    case TB_VAL_INT: PACK(msgpack_pack_int64(pk, f->v.i)); break;
    case TB_VAL_FLOAT: PACK(msgpack_pack_double(pk, f->v.f)); break;
    case TB_VAL_STR:
        TB_CHECK(f->v.str.len <= CODEC_BIN_MAX, TB_EINVAL,
                 "cannot encode field '%s': string of %zu bytes exceeds the msgpack limit", key,
                 f->v.str.len);
        PACK(pack_str(pk, f->v.str.ptr, f->v.str.len));
        break;
    case TB_VAL_TENSOR: TB_TRY(encode_tensor(pk, b, key, &f->v.tensor)); break;
    default:
        TB_CHECK(0, TB_EINVAL, "cannot encode field '%s': unknown value kind %d", key, (int)f->kind);
    }
error:
    return rc;
}

/* Payload size of a tensor that can be encoded, else 0 (encode_tensor reports the problem). */
static size_t tensor_bytes_or_zero(const tb_tensor *t)
{
    if ((unsigned)t->dtype >= TB_DTYPE_COUNT || t->ndim < 0 || t->ndim > TB_MAX_DIMS) return 0;
    size_t es = tb_dtype_size(t->dtype);
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) return 0;
        if (t->shape[d] == 0) return 0;
        if ((uint64_t)t->shape[d] > CODEC_BIN_MAX / es / n) return 0;
        n *= (uint64_t)t->shape[d];
    }
    return (size_t)n * es;
}

/* An upper bound of the encoded size, so that big messages are laid out without regrowing. */
static size_t encoded_bound(const tb_msg *m)
{
    size_t n = 16;
    for (int i = 0; i < m->count; i++) {
        const tb_field *f = &m->fields[i];
        n += 16 + (f->key ? strlen(f->key) : 0);
        if (f->kind == TB_VAL_STR) n += f->v.str.len < CODEC_BOUND_MAX ? f->v.str.len : CODEC_BOUND_MAX;
        if (f->kind == TB_VAL_TENSOR) n += 256 + tensor_bytes_or_zero(&f->v.tensor);
        if (n > CODEC_BOUND_MAX) return CODEC_BOUND_MAX; /* the buffer still grows if needed */
    }
    return n;
}

int tb_codec_encode(const tb_msg *m, tb_buf *out)
{
    int rc = TB_OK;
    const char *key = "(message header)";
    TB_CHECK(m && out, TB_EINVAL, "tb_codec_encode: message and buffer must not be NULL");
    TB_CHECK(m->count >= 0 && (m->count == 0 || m->fields), TB_EINVAL,
             "tb_codec_encode: message has a corrupt field table (count %d)", m->count);
    out->len = 0;
    TB_TRY(tb_buf_reserve(out, encoded_bound(m)));
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    PACK(msgpack_pack_map(&pk, (size_t)m->count));
    for (int i = 0; i < m->count; i++) TB_TRY(encode_field(&pk, out, &m->fields[i]));
    return TB_OK;
error:
    if (out) out->len = 0;
    return rc;
}

/* ---- decoder -------------------------------------------------------------------------------- */

typedef enum tok_kind {
    T_NIL, T_BOOL, T_UINT, T_INT, T_FLOAT, T_STR, T_BIN, T_ARRAY, T_MAP, T_EXT
} tok_kind;

static const char *tok_name(tok_kind k)
{
    static const char *names[] = {"nil", "bool", "unsigned int", "int", "float", "str",
                                  "bin", "array", "map", "ext"};
    return names[k];
}

/* One msgpack header. For str/bin/ext, `off`/`n` locate the body (already bounds-checked and
 * skipped); for array/map, `n` is the element/entry count (checked against remaining bytes). */
typedef struct tok {
    tok_kind kind;
    size_t at; /* byte offset of the header */
    int b;
    uint64_t u;
    int64_t i;
    double f;
    size_t off, n;
} tok;

typedef struct reader {
    const uint8_t *p;
    size_t len, pos;
    char key[72]; /* printable copy of the current top-level key, for messages */
} reader;

/* Records a TB_EFORMAT-style error that names the byte offset and the current key. */
static int bad(const reader *r, int status, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(const reader *r, int status, size_t at, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (r->key[0])
        return TB_ERR(status, "malformed message at byte offset %zu (of %zu), field '%s': %s", at,
                      r->len, r->key, what);
    return TB_ERR(status, "malformed message at byte offset %zu (of %zu): %s", at, r->len, what);
}

/* Writes a printable, truncated rendering of `s[0..n)` into `dst` (for error messages). */
static void printable(char *dst, size_t cap, const uint8_t *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) dst[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    if (k + 4 >= cap && n > k) {
        dst[k++] = '.';
        dst[k++] = '.';
        dst[k++] = '.';
    }
    dst[k] = '\0';
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Checks that `n` more bytes remain (for the argument of the header at `at`). */
static int need(reader *r, size_t at, size_t n, const char *what)
{
    if (r->len - r->pos < n)
        return bad(r, TB_EFORMAT, at, "truncated: %s needs %zu more bytes, only %zu left", what, n,
                   r->len - r->pos);
    return TB_OK;
}

/* Reads the fixed-size number (float32/64, uint8..64, int8..64) whose type byte `c` was read. */
static int read_number(reader *r, tok *t, uint8_t c)
{
    int n = c <= 0xcb ? (c == 0xca ? 4 : 8) : c <= 0xcf ? 1 << (c - 0xcc) : 1 << (c - 0xd0);
    int rc = need(r, t->at, (size_t)n, "a number");
    if (rc) return rc;
    uint64_t v = be(r->p + r->pos, n);
    r->pos += (size_t)n;
    if (c == 0xca) {
        uint32_t w = (uint32_t)v;
        float f;
        memcpy(&f, &w, 4);
        t->kind = T_FLOAT;
        t->f = f;
    } else if (c == 0xcb) {
        t->kind = T_FLOAT;
        memcpy(&t->f, &v, 8);
    } else if (c <= 0xcf) {
        t->kind = T_UINT;
        t->u = v;
    } else {
        if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        t->kind = T_INT;
        memcpy(&t->i, &v, 8);
    }
    return TB_OK;
}

/* Skips the `t->n`-byte body of a str/bin (ext: plus its type byte), checking it is there. */
static int skip_body(reader *r, tok *t, size_t extra)
{
    if (r->len - r->pos < extra || r->len - r->pos - extra < t->n)
        return bad(r, TB_EFORMAT, t->at, "truncated: %s of %zu bytes, only %zu left", tok_name(t->kind),
                   t->n, r->len - r->pos);
    t->off = r->pos + extra;
    r->pos += extra + t->n;
    return TB_OK;
}

/* Checks an array/map count: every element takes at least one byte, so a count beyond the
 * remaining bytes is a lie (caught before anything is allocated for it). */
static int check_count(reader *r, const tok *t)
{
    if (t->n > (r->len - r->pos) / (t->kind == T_MAP ? 2 : 1))
        return bad(r, TB_EFORMAT, t->at, "truncated: %s of %zu entries, only %zu bytes left",
                   tok_name(t->kind), t->n, r->len - r->pos);
    return TB_OK;
}

/* Reads one msgpack header from `r` (and skips a str/bin/ext body, whose place is in t->off). */
static int read_tok(reader *r, tok *t)
{
    memset(t, 0, sizeof *t);
    t->at = r->pos;
    if (r->pos >= r->len) return bad(r, TB_EFORMAT, r->pos, "truncated: expected a value, buffer ends");
    uint8_t c = r->p[r->pos++];
    if (c <= 0x7f) { t->kind = T_UINT; t->u = c; return TB_OK; }
    if (c >= 0xe0) { t->kind = T_INT; t->i = (int8_t)c; return TB_OK; }
    if (c <= 0x8f) { t->kind = T_MAP; t->n = c & 0x0f; return check_count(r, t); }
    if (c <= 0x9f) { t->kind = T_ARRAY; t->n = c & 0x0f; return check_count(r, t); }
    if (c <= 0xbf) { t->kind = T_STR; t->n = c & 0x1f; return skip_body(r, t, 0); }
    if (c == 0xc0) { t->kind = T_NIL; return TB_OK; }
    if (c == 0xc2 || c == 0xc3) { t->kind = T_BOOL; t->b = c == 0xc3; return TB_OK; }
    if (c >= 0xca && c <= 0xd3) return read_number(r, t, c);
    if (c >= 0xd4 && c <= 0xd8) { t->kind = T_EXT; t->n = (size_t)1 << (c - 0xd4); return skip_body(r, t, 1); }
    int arg; /* bytes of the big-endian length that follows */
    switch (c) {
    case 0xc4: case 0xc5: case 0xc6: t->kind = T_BIN; arg = 1 << (c - 0xc4); break;
    case 0xc7: case 0xc8: case 0xc9: t->kind = T_EXT; arg = 1 << (c - 0xc7); break;
    case 0xd9: case 0xda: case 0xdb: t->kind = T_STR; arg = 1 << (c - 0xd9); break;
    case 0xdc: case 0xdd: t->kind = T_ARRAY; arg = c == 0xdc ? 2 : 4; break;
    case 0xde: case 0xdf: t->kind = T_MAP; arg = c == 0xde ? 2 : 4; break;
    default: return bad(r, TB_EFORMAT, t->at, "invalid msgpack type byte 0x%02x", c);
    }
    int rc = need(r, t->at, (size_t)arg, "a length");
    if (rc) return rc;
    t->n = (size_t)be(r->p + r->pos, arg);
    r->pos += (size_t)arg;
    if (t->kind == T_ARRAY || t->kind == T_MAP) return check_count(r, t);
    return skip_body(r, t, t->kind == T_EXT ? 1 : 0);
}

static int tok_is(const reader *r, const tok *t, const char *s)
{
    size_t n = strlen(s);
    return (t->kind == T_STR || t->kind == T_BIN) && t->n == n && memcmp(r->p + t->off, s, n) == 0;
}

/* Tensor-map keys. */
enum { K_ND, K_TYPE, K_KIND, K_SHAPE, K_DATA, K_DTYPE, K_PAD, K_COUNT };
static const char *const tensor_keys[K_COUNT] = {"nd", "type", "kind", "shape", "data",
                                                 CODEC_DTYPE_KEY, CODEC_PAD_KEY};

typedef struct tensor_parts {
    unsigned seen;
    int nd;
    tok type, kind, data, dtag;
    int ndim;
    int64_t shape[TB_MAX_DIMS];
} tensor_parts;

static int read_shape(reader *r, const tok *arr, tensor_parts *tp)
{
    if (arr->n > TB_MAX_DIMS)
        return bad(r, TB_EFORMAT, arr->at, "tensor has %zu dimensions, at most %d are supported",
                   arr->n, TB_MAX_DIMS);
    tp->ndim = (int)arr->n;
    for (int d = 0; d < tp->ndim; d++) {
        tok e;
        int rc = read_tok(r, &e);
        if (rc) return rc;
        if (e.kind == T_INT && e.i < 0)
            return bad(r, TB_EFORMAT, e.at, "dimension %d of 'shape' is negative (%lld)", d,
                       (long long)e.i);
        if (e.kind == T_UINT && e.u > (uint64_t)INT64_MAX)
            return bad(r, TB_EFORMAT, e.at, "dimension %d of 'shape' is too large (%llu)", d,
                       (unsigned long long)e.u);
        if (e.kind != T_INT && e.kind != T_UINT)
            return bad(r, TB_EFORMAT, e.at, "dimension %d of 'shape' is a %s, expected an int", d,
                       tok_name(e.kind));
        tp->shape[d] = e.kind == T_INT ? e.i : (int64_t)e.u;
    }
    return TB_OK;
}

/* Reads the entries of a tensor map (its header already read) into `tp`. */
static int read_tensor_parts(reader *r, const tok *map, tensor_parts *tp)
{
    memset(tp, 0, sizeof *tp);
    for (size_t j = 0; j < map->n; j++) {
        tok k, v;
        int rc = read_tok(r, &k);
        if (rc) return rc;
        if (k.kind != T_STR && k.kind != T_BIN)
            return bad(r, TB_EFORMAT, k.at, "tensor map key #%zu is a %s, expected bin or str", j,
                       tok_name(k.kind));
        int id = 0;
        while (id < K_COUNT && !tok_is(r, &k, tensor_keys[id])) id++;
        if (id == K_COUNT) {
            char name[40];
            printable(name, sizeof name, r->p + k.off, k.n);
            return bad(r, TB_EFORMAT, k.at,
                       "unknown key '%s' in a nested map: the only nested maps allowed are "
                       "msgpack-numpy arrays (keys nd, type, kind, shape, data, " CODEC_DTYPE_KEY
                       ", " CODEC_PAD_KEY ")", name);
        }
        if (tp->seen & (1u << id))
            return bad(r, TB_EFORMAT, k.at, "duplicate key '%s' in a tensor map", tensor_keys[id]);
        tp->seen |= 1u << id;
        if ((rc = read_tok(r, &v))) return rc;
        int ok = 1;
        switch (id) {
        case K_ND: ok = v.kind == T_BOOL; tp->nd = v.b; break;
        case K_TYPE: ok = v.kind == T_STR || v.kind == T_BIN; tp->type = v; break;
        case K_KIND: ok = v.kind == T_STR || v.kind == T_BIN; tp->kind = v; break;
        case K_SHAPE:
            ok = v.kind == T_ARRAY;
            if (ok && (rc = read_shape(r, &v, tp))) return rc;
            break;
        case K_DATA: ok = v.kind == T_BIN; tp->data = v; break;
        case K_DTYPE: ok = v.kind == T_STR || v.kind == T_BIN; tp->dtag = v; break;
        case K_PAD: ok = v.kind == T_BIN; break;
        }
        if (!ok)
            return bad(r, TB_EFORMAT, v.at, "tensor key '%s' holds a %s, expected %s",
                       tensor_keys[id], tok_name(v.kind),
                       id == K_ND ? "a bool" : id == K_SHAPE ? "an array of ints"
                       : id == K_DATA || id == K_PAD ? "bin" : "str or bin");
    }
    return TB_OK;
}

/* Checks the parts of a tensor map and resolves its dtype. */
static int check_tensor_parts(reader *r, const tok *map, tensor_parts *tp, tb_dtype *dt)
{
    if (!(tp->seen & (1u << K_ND)))
        return bad(r, TB_EFORMAT, map->at,
                   "nested map is not a msgpack-numpy array (no 'nd' key); only tensors may be nested");
    const char *missing = !(tp->seen & (1u << K_TYPE)) ? "type"
                          : !(tp->seen & (1u << K_DATA)) ? "data"
                          : tp->nd && !(tp->seen & (1u << K_SHAPE)) ? "shape" : NULL;
    if (missing) return bad(r, TB_EFORMAT, map->at, "tensor map has no '%s' key", missing);
    if (!tp->nd && (tp->seen & (1u << K_SHAPE)))
        return bad(r, TB_EFORMAT, map->at, "numpy scalar (nd: false) must not have a 'shape'");
    if (!tp->nd) tp->ndim = 0;
    if ((tp->seen & (1u << K_KIND)) && tp->kind.n != 0) {
        char kind[16];
        printable(kind, sizeof kind, r->p + tp->kind.off, tp->kind.n);
        return bad(r, TB_EUNSUPPORTED, tp->kind.at,
                   "tensor kind '%s' (structured or object array) is not supported", kind);
    }
    const char *ts = (const char *)r->p + tp->type.off;
    if (tb_dtype_from_numpy(ts, tp->type.n, dt) != TB_OK) {
        char type[24];
        printable(type, sizeof type, r->p + tp->type.off, tp->type.n);
        if (tp->type.n > 0 && ts[0] == '>')
            return bad(r, TB_EUNSUPPORTED, tp->type.at,
                       "big-endian dtype '%s' is not supported (send little-endian, e.g. "
                       "arr.astype('<f4'))", type);
        return bad(r, TB_EFORMAT, tp->type.at,
                   "unknown numpy dtype '%s' (supported: <f4 <f2 <f8 |i1 <i2 <i4 <i8 |u1 <u2 <u4 "
                   "<u8 |b1, and <u2 tagged " CODEC_DTYPE_KEY " bf16)", type);
    }
    if (tp->seen & (1u << K_DTYPE)) {
        if (!tok_is(r, &tp->dtag, "bf16")) {
            char tag[24];
            printable(tag, sizeof tag, r->p + tp->dtag.off, tp->dtag.n);
            return bad(r, TB_EFORMAT, tp->dtag.at, "unknown '" CODEC_DTYPE_KEY "' tag '%s' (only 'bf16')", tag);
        }
        if (*dt != TB_U16)
            return bad(r, TB_EFORMAT, tp->dtag.at,
                       "'" CODEC_DTYPE_KEY "' bf16 needs type '<u2', got '%s'", tb_dtype_numpy(*dt));
        *dt = TB_BF16;
    }
    return TB_OK;
}

/* `msg` without its leading "file.c:123: " location. */
static const char *strip_location(const char *msg)
{
    const char *c = strstr(msg, ".c:");
    if (!c) return msg;
    c += 3;
    while (*c >= '0' && *c <= '9') c++;
    return c[0] == ':' && c[1] == ' ' ? c + 2 : msg;
}

/* Checks the payload size and makes the tensor: borrowed when aligned, else copied. */
static int make_tensor(reader *r, const tensor_parts *tp, tb_dtype dt, size_t max_bytes,
                       unsigned flags, tb_tensor *t)
{
    int64_t numel;
    size_t es = tb_dtype_size(dt);
    int rc = tb_shape_numel(tp->ndim, tp->shape, es, max_bytes, &numel);
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "%s", strip_location(tb_err_msg()));
        return bad(r, TB_EFORMAT, tp->data.at, "bad tensor shape: %s", why);
    }
    size_t nbytes = (size_t)numel * es;
    if (nbytes != tp->data.n)
        return bad(r, TB_EFORMAT, tp->data.at,
                   "shape and dtype %s need %zu payload bytes, 'data' has %zu", tb_dtype_name(dt),
                   nbytes, tp->data.n);
    const uint8_t *src = r->p + tp->data.off;
    if (dt == TB_BOOL)
        for (size_t i = 0; i < nbytes; i++)
            if (src[i] > 1)
                return bad(r, TB_EFORMAT, tp->data.off + i, "bool element %zu is 0x%02x, expected 0 or 1",
                           i, src[i]);
    if (!(flags & TB_DECODE_COPY) && (uintptr_t)src % TB_ALIGN == 0)
        return tb_tensor_borrow(t, dt, tp->ndim, tp->shape, (void *)src);
    /* an owned copy, without tb_tensor_alloc's zeroing: every byte is overwritten */
    void *copy = tb_aligned_alloc(nbytes);
    if (!copy)
        return TB_ERR(TB_ENOMEM, "out of memory copying the %zu-byte tensor '%s'", nbytes, r->key);
    if (nbytes) memcpy(copy, src, nbytes);
    rc = tb_tensor_borrow(t, dt, tp->ndim, tp->shape, copy);
    if (rc) {
        tb_aligned_free(copy);
        return tb_err_wrap(rc, "decoding field '%s'", r->key);
    }
    t->owned = 1;
    return TB_OK;
}

static int decode_tensor(reader *r, const tok *map, tb_msg *out, const char *key, unsigned flags,
                         size_t max_bytes)
{
    tensor_parts tp;
    tb_dtype dt;
    tb_tensor t;
    int rc = read_tensor_parts(r, map, &tp);
    if (!rc) rc = check_tensor_parts(r, map, &tp, &dt);
    if (!rc) rc = make_tensor(r, &tp, dt, max_bytes, flags, &t);
    if (rc) return rc;
    rc = tb_msg_set_tensor_move(out, key, &t);
    if (rc) tb_tensor_free(&t);
    return rc;
}

static int decode_value(reader *r, tb_msg *out, const char *key, unsigned flags, size_t max_bytes)
{
    tok v;
    int rc = read_tok(r, &v);
    if (rc) return rc;
    switch (v.kind) {
    case T_NIL: return tb_msg_set_nil(out, key);
    case T_BOOL: return tb_msg_set_bool(out, key, v.b);
    case T_INT: return tb_msg_set_int(out, key, v.i);
    case T_UINT:
        if (v.u > (uint64_t)INT64_MAX)
            return bad(r, TB_EFORMAT, v.at, "integer %llu is out of the int64 range",
                       (unsigned long long)v.u);
        return tb_msg_set_int(out, key, (int64_t)v.u);
    case T_FLOAT: return tb_msg_set_float(out, key, v.f);
    case T_STR: return tb_msg_set_strn(out, key, (const char *)r->p + v.off, v.n);
    case T_MAP: return decode_tensor(r, &v, out, key, flags, max_bytes);
    case T_BIN:
        return bad(r, TB_EFORMAT, v.at, "bin values are not supported (send bytes as a |u1 array)");
    case T_ARRAY:
        return bad(r, TB_EFORMAT, v.at,
                   "arrays are not supported (send numbers as a numpy array, names as one str)");
    case T_EXT: return bad(r, TB_EFORMAT, v.at, "msgpack ext values are not supported");
    }
    return bad(r, TB_EFORMAT, v.at, "unexpected value");
}

/* Reads one top-level key into a fresh NUL-terminated string. */
static int decode_key(reader *r, size_t idx, char **key)
{
    tok k;
    *key = NULL;
    int rc = read_tok(r, &k);
    if (rc) return rc;
    if (k.kind != T_STR && k.kind != T_BIN)
        return bad(r, TB_EFORMAT, k.at, "key #%zu is a %s, expected a str", idx, tok_name(k.kind));
    const uint8_t *s = r->p + k.off;
    printable(r->key, sizeof r->key, s, k.n);
    if (memchr(s, 0, k.n)) return bad(r, TB_EFORMAT, k.at, "key #%zu contains a NUL byte", idx);
    char *c = malloc(k.n + 1);
    if (!c) return TB_ERR(TB_ENOMEM, "out of memory decoding key #%zu", idx);
    memcpy(c, s, k.n);
    c[k.n] = '\0';
    *key = c;
    return TB_OK;
}

int tb_codec_decode(const void *data, size_t len, tb_msg *out, unsigned flags,
                    const tb_codec_limits *limits)
{
    if (!out) return TB_ERR(TB_EINVAL, "tb_codec_decode: output message must not be NULL");
    tb_msg_init(out);
    if (!data && len) return TB_ERR(TB_EINVAL, "tb_codec_decode: data is NULL but len is %zu", len);
    size_t max_fields = limits && limits->max_fields ? limits->max_fields : CODEC_DEFAULT_MAX_FIELDS;
    size_t max_bytes = limits && limits->max_tensor_bytes ? limits->max_tensor_bytes
                                                          : CODEC_DEFAULT_MAX_TENSOR_BYTES;
    reader r = {.p = data, .len = len, .pos = 0, .key = ""};
    char *key = NULL;
    tok top;
    int rc = read_tok(&r, &top);
    if (rc) goto error;
    if (top.kind != T_MAP) {
        rc = bad(&r, TB_EFORMAT, 0, "top level is a %s, expected a map", tok_name(top.kind));
        goto error;
    }
    if (top.n > max_fields || top.n > INT_MAX) {
        rc = bad(&r, TB_EFORMAT, 0, "message has %zu fields, the limit is %zu", top.n, max_fields);
        goto error;
    }
    for (size_t i = 0; i < top.n; i++) {
        size_t at = r.pos;
        TB_TRY(decode_key(&r, i, &key));
        if (tb_msg_find(out, key)) {
            rc = bad(&r, TB_EFORMAT, at, "duplicate key");
            goto error;
        }
        TB_TRY(decode_value(&r, out, key, flags, max_bytes));
        free(key);
        key = NULL;
        r.key[0] = '\0';
    }
    if (r.pos != len) {
        rc = bad(&r, TB_EFORMAT, r.pos, "%zu trailing bytes after the message map", len - r.pos);
        goto error;
    }
    return TB_OK;
error:
    free(key);
    tb_msg_free(out);
    return rc;
}
