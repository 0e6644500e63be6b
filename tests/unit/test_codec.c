/* Unit tests: msgpack codec (tb/wire/codec.h).
 *
 * Expected bytes and malformed inputs are written by hand with the small msgpack writer below
 * (straight from the msgpack spec, independent of common/wire/codec.c and of msgpack-c).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb/wire/codec.h"
#include "tb/base/error.h"
#include "tb/wire/msg.h"
#include "tb/base/tensor.h"

/* ---- a hand-written msgpack writer for test inputs ------------------------------------------ */

typedef struct mp {
    uint8_t b[4096];
    size_t n;
} mp;

static void mp_byte(mp *m, uint8_t c)
{
    cr_assert_lt(m->n, sizeof m->b);
    m->b[m->n++] = c;
}
static void mp_be(mp *m, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) mp_byte(m, (uint8_t)(v >> (8 * i)));
}
static void mp_raw(mp *m, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++) mp_byte(m, ((const uint8_t *)p)[i]);
}
static void mp_map(mp *m, unsigned n) { mp_byte(m, (uint8_t)(0x80 | n)); } /* fixmap, n < 16 */
static void mp_arr(mp *m, unsigned n) { mp_byte(m, (uint8_t)(0x90 | n)); } /* fixarray, n < 16 */
static void mp_str(mp *m, const char *s)
{
    size_t n = strlen(s);
    cr_assert_lt(n, 32);
    mp_byte(m, (uint8_t)(0xa0 | n));
    mp_raw(m, s, n);
}
static void mp_binn(mp *m, const void *p, size_t n)
{
    cr_assert_lt(n, 256);
    mp_byte(m, 0xc4);
    mp_byte(m, (uint8_t)n);
    mp_raw(m, p, n);
}
static void mp_bin(mp *m, const char *s) { mp_binn(m, s, strlen(s)); }
static void mp_uint(mp *m, uint64_t v)
{
    if (v < 128) mp_byte(m, (uint8_t)v);
    else { mp_byte(m, 0xcf); mp_be(m, v, 8); }
}
static void mp_int(mp *m, int64_t v)
{
    if (v >= 0) mp_uint(m, (uint64_t)v);
    else { mp_byte(m, 0xd3); mp_be(m, (uint64_t)v, 8); }
}

/* {"t": <tensor map with the given pieces>} helpers: a well-formed f32[2] tensor by default. */
typedef struct tspec {
    const char *type;      /* NULL: omit */
    const char *kind;      /* NULL: omit */
    int ndim;              /* -1: omit shape */
    int64_t shape[10];
    size_t data_len;       /* bytes of payload */
    int nd;                /* 1 true, 0 false */
    const char *extra_key; /* appended as bin key with value nil, if non-NULL */
} tspec;

static tspec f32x2(void)
{
    tspec s = {.type = "<f4", .kind = "", .ndim = 1, .shape = {2}, .data_len = 8, .nd = 1};
    return s;
}

static void mp_tensor(mp *m, const tspec *s)
{
    unsigned n = 2 + (s->type != NULL) + (s->kind != NULL) + (s->ndim >= 0) + (s->extra_key != NULL);
    mp_map(m, n);
    mp_bin(m, "nd");
    mp_byte(m, s->nd ? 0xc3 : 0xc2);
    if (s->type) { mp_bin(m, "type"); mp_str(m, s->type); }
    if (s->kind) { mp_bin(m, "kind"); mp_bin(m, s->kind); }
    if (s->ndim >= 0) {
        mp_bin(m, "shape");
        mp_arr(m, (unsigned)s->ndim);
        for (int d = 0; d < s->ndim; d++) mp_int(m, s->shape[d]);
    }
    if (s->extra_key) { mp_bin(m, s->extra_key); mp_byte(m, 0xc0); }
    mp_bin(m, "data");
    uint8_t zeros[256] = {0};
    mp_binn(m, zeros, s->data_len);
}

/* Decodes m into a malloc'd copy of exactly its length (so ASan sees any over-read). */
static int decode_exact(const void *p, size_t n, tb_msg *out, unsigned flags, const tb_codec_limits *lim)
{
    void *copy = malloc(n ? n : 1);
    cr_assert_not_null(copy);
    if (n) memcpy(copy, p, n);
    int rc = tb_codec_decode(copy, n, out, flags | TB_DECODE_COPY, lim);
    free(copy);
    return rc;
}

static void expect_bad(const mp *m, int status, const char *needle)
{
    tb_msg out;
    int rc = decode_exact(m->b, m->n, &out, 0, NULL);
    cr_assert_eq(rc, status, "expected %s, got %s: %s", tb_status_name(status), tb_status_name(rc),
                 tb_err_msg());
    cr_assert_eq(out.count, 0, "message must be left empty on error");
    cr_assert_not_null(strstr(tb_err_msg(), needle), "error '%s' lacks '%s'", tb_err_msg(), needle);
    tb_msg_free(&out);
}

static void expect_bad_tensor(const tspec *s, int status, const char *needle)
{
    mp m = {.n = 0};
    mp_map(&m, 1);
    mp_str(&m, "t");
    mp_tensor(&m, s);
    expect_bad(&m, status, needle);
    /* the key and a byte offset are named in every tensor error */
    cr_assert_not_null(strstr(tb_err_msg(), "field 't'"), "%s", tb_err_msg());
    cr_assert_not_null(strstr(tb_err_msg(), "byte offset"), "%s", tb_err_msg());
}

/* ---- exact encoding ------------------------------------------------------------------------- */

Test(codec, encodes_exact_bytes_with_aligned_payload)
{
    tb_msg m;
    tb_msg_init(&m);
    float x[2] = {1.0f, -2.0f};
    tb_tensor t;
    int64_t shape[1] = {2};
    cr_assert_eq(tb_tensor_borrow(&t, TB_F32, 1, shape, x), TB_OK);
    cr_assert_eq(tb_msg_set_str(&m, "msg", "batch"), TB_OK);
    cr_assert_eq(tb_msg_set_int(&m, "seq", 7), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "x", &t), TB_OK);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK, "%s", tb_err_msg());

    /* Worked out by hand: the tensor map starts at byte 18; its entries before the pad take
     * 41 bytes (up to byte 59); "tb_pad" key (8) + bin8 header (2) + 59 zero bytes + "data" key
     * (6) + bin8 header (2) puts the payload at byte 128 = 2 * 64. */
    mp e = {.n = 0};
    mp_map(&e, 3);
    mp_str(&e, "msg"); mp_str(&e, "batch");
    mp_str(&e, "seq"); mp_byte(&e, 7);
    mp_str(&e, "x");
    mp_map(&e, 6);
    mp_bin(&e, "nd"); mp_byte(&e, 0xc3);
    mp_bin(&e, "type"); mp_str(&e, "<f4");
    mp_bin(&e, "kind"); mp_bin(&e, "");
    mp_bin(&e, "shape"); mp_arr(&e, 1); mp_byte(&e, 2);
    mp_bin(&e, "tb_pad");
    uint8_t zeros[59] = {0};
    mp_binn(&e, zeros, 59);
    mp_bin(&e, "data");
    mp_byte(&e, 0xc4); mp_byte(&e, 8);
    cr_assert_eq(e.n, 128);
    const uint8_t payload[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    mp_raw(&e, payload, 8);

    cr_assert_eq(b.len, e.n, "encoded %zu bytes, expected %zu", b.len, e.n);
    cr_assert_arr_eq(b.data, e.b, e.n);
    cr_assert_eq((uintptr_t)b.data % TB_ALIGN, 0);
    tb_buf_free(&b);
    tb_msg_free(&m);
}

Test(codec, encode_replaces_buffer_contents)
{
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_msg_set_int(&m, "a", 1), TB_OK);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    const uint8_t want[4] = {0x81, 0xa1, 'a', 0x01};
    cr_assert_eq(b.len, 4);
    cr_assert_arr_eq(b.data, want, 4);
    tb_msg_free(&m);
    tb_msg_init(&m);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    cr_assert_eq(b.len, 1);
    cr_assert_eq(b.data[0], 0x80);
    tb_buf_free(&b);
    tb_buf_free(&b); /* harmless twice */
}

Test(codec, scalars_exact_encoding)
{
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_msg_set_nil(&m, "n"), TB_OK);
    cr_assert_eq(tb_msg_set_bool(&m, "t", 1), TB_OK);
    cr_assert_eq(tb_msg_set_int(&m, "i", -1), TB_OK);
    cr_assert_eq(tb_msg_set_float(&m, "f", 0.5), TB_OK);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    const uint8_t want[] = {0x84, 0xa1, 'n', 0xc0, 0xa1, 't', 0xc3, 0xa1, 'i', 0xff,
                            0xa1, 'f', 0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);
    tb_buf_free(&b);
    tb_msg_free(&m);
}

/* ---- round trips ---------------------------------------------------------------------------- */

static void fill_pattern(uint8_t *p, size_t n, unsigned seed, tb_dtype dt)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 131u + seed * 7u + 3u);
    if (dt == TB_BOOL)
        for (size_t i = 0; i < n; i++) p[i] &= 1;
}

Test(codec, round_trip_every_dtype_and_scalar)
{
    tb_msg m;
    tb_msg_init(&m);
    tb_tensor src[TB_DTYPE_COUNT];
    int64_t shape[3] = {2, 3, 5};
    char key[32];
    for (int d = 0; d < TB_DTYPE_COUNT; d++) {
        cr_assert_eq(tb_tensor_alloc(&src[d], (tb_dtype)d, 3, shape), TB_OK);
        fill_pattern(src[d].data, tb_tensor_nbytes(&src[d]), (unsigned)d, (tb_dtype)d);
        snprintf(key, sizeof key, "t.%s", tb_dtype_name((tb_dtype)d));
        cr_assert_eq(tb_msg_set_tensor_ref(&m, key, &src[d]), TB_OK);
    }
    int64_t zshape[1] = {0};
    tb_tensor empty, scalar;
    cr_assert_eq(tb_tensor_alloc(&empty, TB_F32, 1, zshape), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&scalar, TB_F64, 0, NULL), TB_OK);
    *(double *)scalar.data = -0.125;
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "empty", &empty), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "scalar", &scalar), TB_OK);
    cr_assert_eq(tb_msg_set_nil(&m, "nil"), TB_OK);
    cr_assert_eq(tb_msg_set_bool(&m, "yes", 1), TB_OK);
    cr_assert_eq(tb_msg_set_bool(&m, "no", 0), TB_OK);
    const int64_t ints[] = {0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, -32768, -32769,
                            INT32_MAX, (int64_t)INT32_MAX + 1, INT32_MIN, (int64_t)INT32_MIN - 1,
                            UINT32_MAX, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        snprintf(key, sizeof key, "i%zu", i);
        cr_assert_eq(tb_msg_set_int(&m, key, ints[i]), TB_OK);
    }
    cr_assert_eq(tb_msg_set_float(&m, "pi", 3.141592653589793), TB_OK);
    cr_assert_eq(tb_msg_set_float(&m, "inf", -INFINITY), TB_OK);
    cr_assert_eq(tb_msg_set_float(&m, "tiny", 4.9e-324), TB_OK);
    cr_assert_eq(tb_msg_set_strn(&m, "s", "a\0b\xc3\xa9", 5), TB_OK);
    cr_assert_eq(tb_msg_set_str(&m, "e", ""), TB_OK);

    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK, "%s", tb_err_msg());
    tb_msg r;
    cr_assert_eq(tb_codec_decode(b.data, b.len, &r, 0, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(r.count, m.count);
    for (int i = 0; i < m.count; i++)
        cr_assert_str_eq(r.fields[i].key, m.fields[i].key, "field order is kept");
    for (int d = 0; d < TB_DTYPE_COUNT; d++) {
        snprintf(key, sizeof key, "t.%s", tb_dtype_name((tb_dtype)d));
        const tb_tensor *t;
        cr_assert_eq(tb_msg_get_tensor(&r, key, &t), TB_OK, "%s", key);
        cr_assert_eq(t->dtype, (tb_dtype)d, "%s", key);
        cr_assert_eq(t->ndim, 3);
        cr_assert_arr_eq(t->shape, shape, sizeof shape);
        cr_assert(tb_tensor_is_contiguous(t));
        cr_assert_arr_eq(t->data, src[d].data, tb_tensor_nbytes(&src[d]), "%s", key);
    }
    const tb_tensor *t;
    cr_assert_eq(tb_msg_get_tensor(&r, "empty", &t), TB_OK);
    cr_assert_eq(t->ndim, 1);
    cr_assert_eq(t->shape[0], 0);
    cr_assert_eq(tb_msg_get_tensor(&r, "scalar", &t), TB_OK);
    cr_assert_eq(t->ndim, 0);
    cr_assert_eq(t->dtype, TB_F64);
    cr_assert_eq(*(double *)t->data, -0.125);
    cr_assert_eq(tb_msg_find(&r, "nil")->kind, TB_VAL_NIL);
    int bv;
    cr_assert_eq(tb_msg_get_bool(&r, "yes", &bv), TB_OK);
    cr_assert_eq(bv, 1);
    cr_assert_eq(tb_msg_get_bool(&r, "no", &bv), TB_OK);
    cr_assert_eq(bv, 0);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        snprintf(key, sizeof key, "i%zu", i);
        int64_t v;
        cr_assert_eq(tb_msg_get_int(&r, key, &v), TB_OK);
        cr_assert_eq(v, ints[i], "%s: %lld vs %lld", key, (long long)v, (long long)ints[i]);
    }
    double f;
    cr_assert_eq(tb_msg_get_float(&r, "pi", &f), TB_OK);
    cr_assert_eq(f, 3.141592653589793);
    cr_assert_eq(tb_msg_get_float(&r, "inf", &f), TB_OK);
    cr_assert(isinf(f) && f < 0);
    cr_assert_eq(tb_msg_get_float(&r, "tiny", &f), TB_OK);
    cr_assert_eq(f, 4.9e-324);
    const tb_field *s = tb_msg_find(&r, "s");
    cr_assert_eq(s->kind, TB_VAL_STR);
    cr_assert_eq(s->v.str.len, 5);
    cr_assert_arr_eq(s->v.str.ptr, "a\0b\xc3\xa9", 5);
    const char *es;
    cr_assert_eq(tb_msg_get_str(&r, "e", &es), TB_OK);
    cr_assert_str_eq(es, "");

    tb_msg_free(&r);
    tb_buf_free(&b);
    tb_msg_free(&m);
    for (int d = 0; d < TB_DTYPE_COUNT; d++) tb_tensor_free(&src[d]);
    tb_tensor_free(&empty);
    tb_tensor_free(&scalar);
}

Test(codec, strided_tensors_are_written_contiguous)
{
    /* a 3x4 int32 matrix m[i][j] = 10 i + j; encode its transpose (4x3), a reversed row, and a
     * broadcast (stride 0) view */
    int32_t mat[12];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) mat[i * 4 + j] = 10 * i + j;
    tb_tensor tr, rev, bc;
    int64_t s43[2] = {4, 3}, s4[1] = {4}, s23[2] = {2, 3};
    cr_assert_eq(tb_tensor_borrow(&tr, TB_I32, 2, s43, mat), TB_OK);
    tr.stride[0] = 1;
    tr.stride[1] = 4;
    cr_assert_eq(tb_tensor_borrow(&rev, TB_I32, 1, s4, mat + 7), TB_OK); /* row 1 reversed */
    rev.stride[0] = -1;
    cr_assert_eq(tb_tensor_borrow(&bc, TB_I32, 2, s23, mat + 8), TB_OK); /* row 2, first 3, twice */
    bc.stride[0] = 0;
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "tr", &tr), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "rev", &rev), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "bc", &bc), TB_OK);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK, "%s", tb_err_msg());
    tb_msg r;
    cr_assert_eq(tb_codec_decode(b.data, b.len, &r, 0, NULL), TB_OK, "%s", tb_err_msg());
    const tb_tensor *t;
    const int32_t want_tr[12] = {0, 10, 20, 1, 11, 21, 2, 12, 22, 3, 13, 23};
    cr_assert_eq(tb_msg_get_tensor(&r, "tr", &t), TB_OK);
    cr_assert_arr_eq(t->data, want_tr, sizeof want_tr);
    cr_assert_eq(t->stride[0], 3);
    cr_assert_eq(t->stride[1], 1);
    const int32_t want_rev[4] = {13, 12, 11, 10};
    cr_assert_eq(tb_msg_get_tensor(&r, "rev", &t), TB_OK);
    cr_assert_arr_eq(t->data, want_rev, sizeof want_rev);
    const int32_t want_bc[6] = {20, 21, 22, 20, 21, 22};
    cr_assert_eq(tb_msg_get_tensor(&r, "bc", &t), TB_OK);
    cr_assert_arr_eq(t->data, want_bc, sizeof want_bc);
    tb_msg_free(&r);
    tb_buf_free(&b);
    tb_msg_free(&m);
}

Test(codec, bf16_travels_as_u2_with_tag)
{
    uint16_t bits[3] = {0x3f80, 0xc000, 0x7fc0}; /* 1, -2, NaN */
    tb_tensor t;
    int64_t shape[1] = {3};
    cr_assert_eq(tb_tensor_borrow(&t, TB_BF16, 1, shape, bits), TB_OK);
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "h", &t), TB_OK);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    cr_assert_not_null(memmem(b.data, b.len, "\xa3<u2", 4), "type must be the str '<u2'");
    cr_assert_not_null(memmem(b.data, b.len, "\xc4\x08tb_dtype\xa4" "bf16", 14), "bin key tb_dtype, str bf16");
    tb_msg r;
    cr_assert_eq(tb_codec_decode(b.data, b.len, &r, 0, NULL), TB_OK, "%s", tb_err_msg());
    const tb_tensor *d;
    cr_assert_eq(tb_msg_get_tensor(&r, "h", &d), TB_OK);
    cr_assert_eq(d->dtype, TB_BF16);
    cr_assert_arr_eq(d->data, bits, sizeof bits);
    tb_msg_free(&r);
    tb_buf_free(&b);
    tb_msg_free(&m);
}

/* ---- alignment, borrowing, copying ---------------------------------------------------------- */

/* Payload sizes that exercise bin8, bin16 and bin32 headers and pads of every length. */
Test(codec, every_payload_starts_64_byte_aligned_and_is_borrowed)
{
    static const int64_t sizes[] = {0, 1, 2, 3, 63, 64, 65, 127, 255, 256, 300, 65535, 65536, 70001};
    enum { N = sizeof sizes / sizeof sizes[0] };
    tb_tensor src[N];
    tb_msg m;
    tb_msg_init(&m);
    char key[32];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(tb_tensor_alloc(&src[i], TB_U8, 1, &sizes[i]), TB_OK);
        fill_pattern(src[i].data, (size_t)sizes[i], (unsigned)i, TB_U8);
        /* keys of varying length shift the following offsets */
        snprintf(key, sizeof key, "%.*s%d", i, "abcdefghijklmnopqrstuvwxyz", i);
        cr_assert_eq(tb_msg_set_tensor_ref(&m, key, &src[i]), TB_OK);
        if (i % 3 == 0) cr_assert_eq(tb_msg_set_str(&m, key + 1 + i / 2, "odd length"), TB_OK);
    }
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK, "%s", tb_err_msg());
    tb_msg r;
    cr_assert_eq(tb_codec_decode(b.data, b.len, &r, 0, NULL), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "%.*s%d", i, "abcdefghijklmnopqrstuvwxyz", i);
        const tb_tensor *t;
        cr_assert_eq(tb_msg_get_tensor(&r, key, &t), TB_OK);
        const uint8_t *p = t->data;
        cr_assert(p >= b.data && p <= b.data + b.len, "tensor %d must point into the buffer", i);
        cr_assert_eq((size_t)(p - b.data) % TB_ALIGN, 0, "payload %d at offset %zu", i,
                     (size_t)(p - b.data));
        cr_assert_eq(t->owned, 0);
        /* the bytes just before the payload are its bin header: big-endian length */
        size_t n = (size_t)sizes[i];
        if (n < 256) cr_assert(p[-2] == 0xc4 && p[-1] == n);
        else if (n < 65536) cr_assert(p[-3] == 0xc5 && (size_t)(p[-2] << 8 | p[-1]) == n);
        else cr_assert(p[-5] == 0xc6 && (size_t)((uint32_t)p[-4] << 24 | p[-3] << 16 | p[-2] << 8 | p[-1]) == n);
        cr_assert_arr_eq(p, src[i].data, n);
    }
    tb_msg_free(&r);
    tb_buf_free(&b);
    tb_msg_free(&m);
    for (int i = 0; i < N; i++) tb_tensor_free(&src[i]);
}

static void encode_one_f32(tb_buf *b, float *vals, int64_t n)
{
    tb_tensor t;
    cr_assert_eq(tb_tensor_borrow(&t, TB_F32, 1, &n, vals), TB_OK);
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "v", &t), TB_OK);
    tb_buf_init(b);
    cr_assert_eq(tb_codec_encode(&m, b), TB_OK);
    tb_msg_free(&m);
}

Test(codec, borrow_aligned_copy_unaligned_or_on_request)
{
    float vals[16];
    for (int i = 0; i < 16; i++) vals[i] = (float)i * 0.25f - 1.0f;
    tb_buf b;
    encode_one_f32(&b, vals, 16);
    const tb_tensor *t;

    /* aligned: borrowed, sees later changes of the buffer */
    tb_msg r;
    cr_assert_eq(tb_codec_decode(b.data, b.len, &r, 0, NULL), TB_OK);
    cr_assert_eq(tb_msg_get_tensor(&r, "v", &t), TB_OK);
    cr_assert_eq(t->owned, 0);
    cr_assert_arr_eq(t->data, vals, sizeof vals);
    float *alias = t->data;
    tb_msg_free(&r);

    /* TB_DECODE_COPY: owned, aligned, independent of the buffer */
    cr_assert_eq(tb_codec_decode(b.data, b.len, &r, TB_DECODE_COPY, NULL), TB_OK);
    cr_assert_eq(tb_msg_get_tensor(&r, "v", &t), TB_OK);
    cr_assert_eq(t->owned, 1);
    cr_assert_eq((uintptr_t)t->data % TB_ALIGN, 0);
    alias[0] = 99.0f;
    cr_assert_eq(((float *)t->data)[0], -1.0f);
    alias[0] = -1.0f;
    cr_assert_arr_eq(t->data, vals, sizeof vals);
    tb_msg_free(&r);

    /* unaligned copy of the same bytes (e.g. a received frame at an odd address): copied */
    uint8_t *raw = tb_aligned_alloc(b.len + 8);
    for (size_t shift = 1; shift < 8; shift++) {
        memcpy(raw + shift, b.data, b.len);
        cr_assert_eq(tb_codec_decode(raw + shift, b.len, &r, 0, NULL), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(tb_msg_get_tensor(&r, "v", &t), TB_OK);
        cr_assert_eq(t->owned, 1);
        cr_assert_eq((uintptr_t)t->data % TB_ALIGN, 0);
        cr_assert_arr_eq(t->data, vals, sizeof vals);
        tb_msg_free(&r);
    }
    tb_aligned_free(raw);
    tb_buf_free(&b);
}

static void free_with_flag(void *hold, void *ctx)
{
    tb_aligned_free(hold);
    *(int *)ctx = 1;
}

Test(codec, held_buffer_keeps_borrowed_tensors_alive)
{
    float vals[4] = {1, 2, 3, 4};
    tb_buf b;
    encode_one_f32(&b, vals, 4);
    tb_msg r;
    cr_assert_eq(tb_codec_decode(b.data, b.len, &r, 0, NULL), TB_OK);
    int freed = 0;
    tb_msg_hold(&r, b.data, free_with_flag, &freed);
    b.data = NULL; /* ownership moved to the message */
    tb_buf_free(&b);
    const tb_tensor *t;
    cr_assert_eq(tb_msg_get_tensor(&r, "v", &t), TB_OK);
    cr_assert_arr_eq(t->data, vals, sizeof vals);
    tb_msg_free(&r);
    cr_assert_eq(freed, 1);
}

/* ---- hostile input -------------------------------------------------------------------------- */

static void build_rich(tb_msg *m, tb_tensor *t)
{
    tb_msg_init(m);
    int64_t shape[2] = {3, 5};
    cr_assert_eq(tb_tensor_alloc(t, TB_F16, 2, shape), TB_OK);
    fill_pattern(t->data, tb_tensor_nbytes(t), 1, TB_F16);
    cr_assert_eq(tb_msg_set_str(m, "msg", "batch"), TB_OK);
    cr_assert_eq(tb_msg_set_int(m, "seq", 123456789012LL), TB_OK);
    cr_assert_eq(tb_msg_set_int(m, "neg", -300), TB_OK);
    cr_assert_eq(tb_msg_set_float(m, "lr", 1e-4), TB_OK);
    cr_assert_eq(tb_msg_set_bool(m, "last", 1), TB_OK);
    cr_assert_eq(tb_msg_set_nil(m, "none"), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(m, "teacher.hidden.3", t), TB_OK);
    int64_t zero = 0;
    tb_tensor e;
    cr_assert_eq(tb_tensor_borrow(&e, TB_BF16, 1, &zero, t->data), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(m, "empty", &e), TB_OK);
}

Test(codec, every_truncation_fails_cleanly)
{
    tb_msg m;
    tb_tensor t;
    build_rich(&m, &t);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    for (size_t len = 0; len < b.len; len++) {
        tb_msg r;
        int rc = decode_exact(b.data, len, &r, 0, NULL);
        cr_assert_eq(rc, TB_EFORMAT, "prefix of %zu/%zu bytes: %s", len, b.len, tb_err_msg());
        cr_assert_eq(r.count, 0);
        cr_assert_not_null(strstr(tb_err_msg(), "byte offset"), "%s", tb_err_msg());
        tb_msg_free(&r);
    }
    tb_msg r;
    cr_assert_eq(decode_exact(b.data, b.len, &r, 0, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(r.count, m.count);
    tb_msg_free(&r);
    tb_buf_free(&b);
    tb_msg_free(&m);
    tb_tensor_free(&t);
}

Test(codec, rejects_top_level_that_is_not_a_map)
{
    mp m = {.n = 0};
    mp_arr(&m, 0);
    expect_bad(&m, TB_EFORMAT, "top level is a array");
    m.n = 0;
    mp_int(&m, 5);
    expect_bad(&m, TB_EFORMAT, "expected a map");
    m.n = 0;
    expect_bad(&m, TB_EFORMAT, "buffer ends"); /* empty input */
}

Test(codec, rejects_trailing_bytes)
{
    mp m = {.n = 0};
    mp_map(&m, 1);
    mp_str(&m, "a");
    mp_int(&m, 1);
    mp_byte(&m, 0xc0);
    expect_bad(&m, TB_EFORMAT, "1 trailing bytes");
    cr_assert_not_null(strstr(tb_err_msg(), "byte offset 4"), "%s", tb_err_msg());
}

Test(codec, rejects_duplicate_keys)
{
    mp m = {.n = 0};
    mp_map(&m, 2);
    mp_str(&m, "seq");
    mp_int(&m, 1);
    mp_bin(&m, "seq"); /* same key as bin */
    mp_int(&m, 2);
    expect_bad(&m, TB_EFORMAT, "duplicate key");
    cr_assert_not_null(strstr(tb_err_msg(), "field 'seq'"), "%s", tb_err_msg());

    tspec s = f32x2();
    s.extra_key = "shape";
    expect_bad_tensor(&s, TB_EFORMAT, "duplicate key 'shape'");
}

Test(codec, rejects_wrong_value_types)
{
    mp m = {.n = 0};
    mp_map(&m, 1);
    mp_int(&m, 3); /* int key */
    mp_int(&m, 1);
    expect_bad(&m, TB_EFORMAT, "key #0 is a unsigned int");

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "ids");
    mp_arr(&m, 2);
    mp_int(&m, 1);
    mp_int(&m, 2);
    expect_bad(&m, TB_EFORMAT, "arrays are not supported");
    cr_assert_not_null(strstr(tb_err_msg(), "field 'ids'"), "%s", tb_err_msg());

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "blob");
    mp_bin(&m, "xyz");
    expect_bad(&m, TB_EFORMAT, "bin values are not supported");

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "x");
    mp_byte(&m, 0xd4); /* fixext1 */
    mp_byte(&m, 1);
    mp_byte(&m, 0);
    expect_bad(&m, TB_EFORMAT, "ext values are not supported");

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "cfg");
    mp_map(&m, 1);
    mp_str(&m, "a");
    mp_int(&m, 1);
    expect_bad(&m, TB_EFORMAT, "unknown key 'a' in a nested map");

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "cfg");
    mp_map(&m, 0);
    expect_bad(&m, TB_EFORMAT, "no 'nd' key");

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "x");
    mp_byte(&m, 0xc1); /* never used */
    expect_bad(&m, TB_EFORMAT, "invalid msgpack type byte 0xc1");

    m.n = 0;
    mp_map(&m, 1);
    mp_byte(&m, 0xa2);
    mp_raw(&m, "a\0", 2);
    mp_int(&m, 1);
    expect_bad(&m, TB_EFORMAT, "NUL");

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "big");
    mp_uint(&m, (uint64_t)INT64_MAX + 1);
    expect_bad(&m, TB_EFORMAT, "out of the int64 range");
}

Test(codec, rejects_bad_tensor_maps)
{
    tspec s;
    s = f32x2(); s.data_len = 7;
    expect_bad_tensor(&s, TB_EFORMAT, "need 8 payload bytes, 'data' has 7");
    s = f32x2(); s.shape[0] = 3;
    expect_bad_tensor(&s, TB_EFORMAT, "need 12 payload bytes, 'data' has 8");
    s = f32x2(); s.type = "<c8";
    expect_bad_tensor(&s, TB_EFORMAT, "unknown numpy dtype '<c8'");
    s = f32x2(); s.type = "";
    expect_bad_tensor(&s, TB_EFORMAT, "unknown numpy dtype");
    s = f32x2(); s.type = ">f4";
    expect_bad_tensor(&s, TB_EUNSUPPORTED, "big-endian");
    s = f32x2(); s.shape[0] = -2;
    expect_bad_tensor(&s, TB_EFORMAT, "negative");
    s = f32x2(); s.ndim = 9;
    for (int d = 0; d < 9; d++) s.shape[d] = 1;
    s.data_len = 4;
    expect_bad_tensor(&s, TB_EFORMAT, "9 dimensions");
    s = f32x2(); s.ndim = 3; s.shape[0] = INT64_C(1) << 40; s.shape[1] = INT64_C(1) << 40; s.shape[2] = 1 << 20;
    expect_bad_tensor(&s, TB_EFORMAT, "bad tensor shape");
    s = f32x2(); s.ndim = 2; s.shape[0] = INT64_C(1) << 30; s.shape[1] = 4; /* 16 GiB > 8 GiB */
    expect_bad_tensor(&s, TB_EFORMAT, "exceeds the limit");
    s = f32x2(); s.type = NULL;
    expect_bad_tensor(&s, TB_EFORMAT, "no 'type' key");
    s = f32x2(); s.ndim = -1;
    expect_bad_tensor(&s, TB_EFORMAT, "no 'shape' key");
    s = f32x2(); s.kind = "V";
    expect_bad_tensor(&s, TB_EUNSUPPORTED, "kind 'V'");
    s = f32x2(); s.extra_key = "strides";
    expect_bad_tensor(&s, TB_EFORMAT, "unknown key 'strides'");
    s = f32x2(); s.extra_key = "tb_dtype"; /* nil instead of a str */
    expect_bad_tensor(&s, TB_EFORMAT, "holds a nil");
    s = f32x2(); s.nd = 0;
    expect_bad_tensor(&s, TB_EFORMAT, "must not have a 'shape'");

    /* shape element of the wrong type, data as str, nd as int */
    mp m = {.n = 0};
    mp_map(&m, 1); mp_str(&m, "t"); mp_map(&m, 4);
    mp_bin(&m, "nd"); mp_byte(&m, 0xc3);
    mp_bin(&m, "type"); mp_str(&m, "|u1");
    mp_bin(&m, "shape"); mp_arr(&m, 1); mp_str(&m, "2");
    expect_bad(&m, TB_EFORMAT, "dimension 0 of 'shape' is a str");
    m.n = 0;
    mp_map(&m, 1); mp_str(&m, "t"); mp_map(&m, 4);
    mp_bin(&m, "nd"); mp_byte(&m, 0xc3);
    mp_bin(&m, "type"); mp_str(&m, "|u1");
    mp_bin(&m, "shape"); mp_arr(&m, 1); mp_int(&m, 2);
    mp_bin(&m, "data"); mp_str(&m, "ab");
    expect_bad(&m, TB_EFORMAT, "'data' holds a str, expected bin");
    m.n = 0;
    mp_map(&m, 1); mp_str(&m, "t"); mp_map(&m, 1);
    mp_bin(&m, "nd"); mp_int(&m, 1);
    expect_bad(&m, TB_EFORMAT, "'nd' holds a unsigned int, expected a bool");
}

Test(codec, rejects_bool_payload_other_than_0_1)
{
    mp m = {.n = 0};
    mp_map(&m, 1); mp_str(&m, "mask"); mp_map(&m, 4);
    mp_bin(&m, "nd"); mp_byte(&m, 0xc3);
    mp_bin(&m, "type"); mp_str(&m, "|b1");
    mp_bin(&m, "shape"); mp_arr(&m, 1); mp_int(&m, 3);
    mp_bin(&m, "data"); mp_binn(&m, "\x01\x00\x02", 3);
    expect_bad(&m, TB_EFORMAT, "bool element 2 is 0x02");
}

Test(codec, bf16_tag_must_match_u2)
{
    mp m = {.n = 0};
    mp_map(&m, 1); mp_str(&m, "h"); mp_map(&m, 5);
    mp_bin(&m, "nd"); mp_byte(&m, 0xc3);
    mp_bin(&m, "type"); mp_str(&m, "<f2");
    mp_bin(&m, "tb_dtype"); mp_str(&m, "bf16");
    mp_bin(&m, "shape"); mp_arr(&m, 1); mp_int(&m, 1);
    mp_bin(&m, "data"); mp_binn(&m, "\x80\x3f", 2);
    expect_bad(&m, TB_EFORMAT, "needs type '<u2'");
    m.n = 0;
    mp_map(&m, 1); mp_str(&m, "h"); mp_map(&m, 5);
    mp_bin(&m, "nd"); mp_byte(&m, 0xc3);
    mp_bin(&m, "type"); mp_str(&m, "<u2");
    mp_bin(&m, "tb_dtype"); mp_str(&m, "fp8");
    mp_bin(&m, "shape"); mp_arr(&m, 1); mp_int(&m, 1);
    mp_bin(&m, "data"); mp_binn(&m, "\x80\x3f", 2);
    expect_bad(&m, TB_EFORMAT, "unknown 'tb_dtype' tag 'fp8'");
}

Test(codec, huge_declared_lengths_are_caught_before_reading)
{
    mp m = {.n = 0};
    mp_byte(&m, 0xdf); /* map32 with 2^32-1 entries */
    mp_be(&m, 0xffffffffu, 4);
    expect_bad(&m, TB_EFORMAT, "truncated: map of 4294967295 entries");

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "s");
    mp_byte(&m, 0xdb); /* str32 of 2^32-1 bytes */
    mp_be(&m, 0xffffffffu, 4);
    mp_raw(&m, "abc", 3);
    expect_bad(&m, TB_EFORMAT, "truncated: str of 4294967295 bytes, only 3 left");

    m.n = 0;
    mp_map(&m, 1); mp_str(&m, "t"); mp_map(&m, 4);
    mp_bin(&m, "nd"); mp_byte(&m, 0xc3);
    mp_bin(&m, "type"); mp_str(&m, "<f4");
    mp_bin(&m, "shape"); mp_arr(&m, 1); mp_int(&m, 1 << 28);
    mp_bin(&m, "data"); mp_byte(&m, 0xc6); mp_be(&m, 1u << 30, 4);
    expect_bad(&m, TB_EFORMAT, "truncated: bin of 1073741824 bytes");

    m.n = 0;
    mp_map(&m, 1); mp_str(&m, "x");
    mp_byte(&m, 0xdd); /* array32 */
    mp_be(&m, 0x7fffffffu, 4);
    expect_bad(&m, TB_EFORMAT, "truncated: array of 2147483647 entries");
}

Test(codec, limits_are_enforced)
{
    mp m = {.n = 0};
    mp_map(&m, 3);
    mp_str(&m, "a"); mp_int(&m, 1);
    mp_str(&m, "b"); mp_int(&m, 2);
    mp_str(&m, "c"); mp_int(&m, 3);
    tb_codec_limits lim = {.max_fields = 2, .max_tensor_bytes = 0};
    tb_msg r;
    cr_assert_eq(decode_exact(m.b, m.n, &r, 0, &lim), TB_EFORMAT);
    cr_assert_not_null(strstr(tb_err_msg(), "3 fields, the limit is 2"), "%s", tb_err_msg());
    lim.max_fields = 3;
    cr_assert_eq(decode_exact(m.b, m.n, &r, 0, &lim), TB_OK, "%s", tb_err_msg());
    tb_msg_free(&r);

    m.n = 0;
    mp_map(&m, 1);
    mp_str(&m, "t");
    tspec s = f32x2();
    mp_tensor(&m, &s);
    lim = (tb_codec_limits){.max_fields = 0, .max_tensor_bytes = 7};
    cr_assert_eq(decode_exact(m.b, m.n, &r, 0, &lim), TB_EFORMAT);
    cr_assert_not_null(strstr(tb_err_msg(), "exceeds the limit of 7 bytes"), "%s", tb_err_msg());
    lim.max_tensor_bytes = 8;
    cr_assert_eq(decode_exact(m.b, m.n, &r, 0, &lim), TB_OK, "%s", tb_err_msg());
    tb_msg_free(&r);
}

Test(codec, accepts_python_layout_and_numpy_scalars)
{
    /* msgpack-numpy's own layout: no tb_pad, bin keys, and a numpy scalar {nd: false} */
    mp m = {.n = 0};
    mp_map(&m, 2);
    mp_str(&m, "t");
    tspec s = f32x2();
    s.kind = NULL; /* written by msgpack-numpy < 0.4 */
    mp_tensor(&m, &s);
    mp_str(&m, "step");
    mp_map(&m, 3);
    mp_bin(&m, "nd"); mp_byte(&m, 0xc2);
    mp_bin(&m, "type"); mp_str(&m, "<i8");
    mp_bin(&m, "data"); mp_binn(&m, "\x2a\0\0\0\0\0\0\0", 8);
    tb_msg r;
    cr_assert_eq(decode_exact(m.b, m.n, &r, 0, NULL), TB_OK, "%s", tb_err_msg());
    const tb_tensor *t;
    cr_assert_eq(tb_msg_get_tensor(&r, "t", &t), TB_OK);
    cr_assert_eq(t->ndim, 1);
    cr_assert_eq(tb_msg_get_tensor(&r, "step", &t), TB_OK);
    cr_assert_eq(t->ndim, 0);
    cr_assert_eq(t->dtype, TB_I64);
    cr_assert_eq(*(int64_t *)t->data, 42);
    tb_msg_free(&r);
}

Test(codec, encoder_rejects_bad_tensors)
{
    tb_msg m;
    tb_msg_init(&m);
    tb_tensor t = {.dtype = TB_F32, .ndim = 1, .shape = {4}, .stride = {1}, .data = NULL};
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "x", &t), TB_OK);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_EINVAL);
    cr_assert_not_null(strstr(tb_err_msg(), "'x'"), "%s", tb_err_msg());
    cr_assert_eq(b.len, 0);
    float v[4] = {0};
    t.data = v;
    t.dtype = TB_DTYPE_COUNT;
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "x", &t), TB_OK);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_EINVAL);
    cr_assert_not_null(strstr(tb_err_msg(), "invalid dtype"), "%s", tb_err_msg());
    t.dtype = TB_F32;
    t.ndim = TB_MAX_DIMS + 1;
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "x", &t), TB_OK);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_EINVAL);
    t.ndim = 2;
    t.shape[0] = INT64_C(1) << 31; /* 2^31 x 4 x 4 bytes does not fit a msgpack bin */
    t.shape[1] = 4;
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "x", &t), TB_OK);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_EINVAL);
    cr_assert_not_null(strstr(tb_err_msg(), "msgpack bin"), "%s", tb_err_msg());
    tb_buf_free(&b);
    tb_msg_free(&m);
}

/* ---- every msgpack header form -------------------------------------------------------------- */

Test(codec, decodes_every_int_float_and_length_form)
{
    /* hand-assembled: ints of every width (sign extension), float32/64, str8/16/32 and
     * map16 headers, a bin-valued "type" and str keys inside the tensor map */
    mp m = {.n = 0};
    mp_byte(&m, 0xde); mp_be(&m, 13, 2); /* map16 */
    mp_str(&m, "u8");  mp_byte(&m, 0xcc); mp_byte(&m, 0xff);
    mp_str(&m, "u16"); mp_byte(&m, 0xcd); mp_be(&m, 0xfffe, 2);
    mp_str(&m, "u32"); mp_byte(&m, 0xce); mp_be(&m, 0xfffffffdu, 4);
    mp_str(&m, "u64"); mp_byte(&m, 0xcf); mp_be(&m, (uint64_t)INT64_MAX, 8);
    mp_str(&m, "i8");  mp_byte(&m, 0xd0); mp_byte(&m, 0x80);
    mp_str(&m, "i16"); mp_byte(&m, 0xd1); mp_be(&m, 0xff00, 2);
    mp_str(&m, "i32"); mp_byte(&m, 0xd2); mp_be(&m, 0x80000000u, 4);
    mp_str(&m, "nfix"); mp_byte(&m, 0xe0);
    mp_str(&m, "f32"); mp_byte(&m, 0xca); mp_be(&m, 0x3fc00000u, 4); /* 1.5f */
    mp_str(&m, "f64"); mp_byte(&m, 0xcb); mp_be(&m, 0xc004000000000000ull, 8); /* -2.5 */
    mp_str(&m, "s8");  mp_byte(&m, 0xd9); mp_byte(&m, 3); mp_raw(&m, "abc", 3);
    mp_str(&m, "s16"); mp_byte(&m, 0xda); mp_be(&m, 2, 2); mp_raw(&m, "de", 2);
    mp_byte(&m, 0xdb); mp_be(&m, 1, 4); mp_raw(&m, "t", 1); /* str32 key */
    mp_map(&m, 4);
    mp_str(&m, "nd"); mp_byte(&m, 0xc3);
    mp_str(&m, "type"); mp_bin(&m, "<i2");
    mp_str(&m, "shape"); mp_byte(&m, 0xdc); mp_be(&m, 2, 2); mp_int(&m, 1); mp_byte(&m, 0xcd); mp_be(&m, 2, 2);
    mp_str(&m, "data"); mp_byte(&m, 0xc5); mp_be(&m, 4, 2); mp_raw(&m, "\x01\x00\xff\xff", 4);

    tb_msg r;
    cr_assert_eq(decode_exact(m.b, m.n, &r, 0, NULL), TB_OK, "%s", tb_err_msg());
    const struct { const char *k; int64_t v; } ints[] = {
        {"u8", 255}, {"u16", 65534}, {"u32", 4294967293LL}, {"u64", INT64_MAX},
        {"i8", -128}, {"i16", -256}, {"i32", INT32_MIN}, {"nfix", -32},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v;
        cr_assert_eq(tb_msg_get_int(&r, ints[i].k, &v), TB_OK, "%s", ints[i].k);
        cr_assert_eq(v, ints[i].v, "%s: %lld", ints[i].k, (long long)v);
    }
    double f;
    cr_assert_eq(tb_msg_get_float(&r, "f32", &f), TB_OK);
    cr_assert_eq(f, 1.5);
    cr_assert_eq(tb_msg_get_float(&r, "f64", &f), TB_OK);
    cr_assert_eq(f, -2.5);
    const char *s;
    cr_assert_eq(tb_msg_get_str(&r, "s8", &s), TB_OK);
    cr_assert_str_eq(s, "abc");
    cr_assert_eq(tb_msg_get_str(&r, "s16", &s), TB_OK);
    cr_assert_str_eq(s, "de");
    const tb_tensor *t;
    cr_assert_eq(tb_msg_get_tensor(&r, "t", &t), TB_OK);
    cr_assert_eq(t->dtype, TB_I16);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[1], 2);
    cr_assert_eq(((int16_t *)t->data)[0], 1);
    cr_assert_eq(((int16_t *)t->data)[1], -1);
    tb_msg_free(&r);
}

Test(codec, default_field_limit_is_4096)
{
    static uint8_t buf[4097 * 8 + 8]; /* too big for mp: built by hand */
    for (int total = 4096; total <= 4097; total++) {
        size_t n = 0;
        buf[n++] = 0xde;
        buf[n++] = (uint8_t)(total >> 8);
        buf[n++] = (uint8_t)total;
        for (int i = 0; i < total; i++) {
            buf[n++] = 0xa4; /* fixstr 4: 4 hex digits */
            n += (size_t)sprintf((char *)buf + n, "%04x", i);
            buf[n++] = 0xc0;
        }
        tb_msg r;
        int rc = tb_codec_decode(buf, n, &r, 0, NULL);
        if (total == 4096) {
            cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
            cr_assert_eq(r.count, 4096);
        } else {
            cr_assert_eq(rc, TB_EFORMAT);
            cr_assert_not_null(strstr(tb_err_msg(), "4097 fields, the limit is 4096"), "%s", tb_err_msg());
        }
        tb_msg_free(&r);
    }
}

Test(codec, ext_forms_are_rejected_not_misread)
{
    static const uint8_t forms[][8] = {
        {0xd4, 1, 0}, {0xd5, 1, 0, 0}, {0xd6, 1, 0, 0, 0, 0}, {0xc7, 1, 5, 0}, {0xc8, 0, 1, 5, 0},
        {0xc9, 0, 0, 0, 1, 5, 0},
    };
    static const size_t lens[] = {3, 4, 6, 4, 5, 7};
    for (size_t f = 0; f < sizeof lens / sizeof lens[0]; f++) {
        mp m = {.n = 0};
        mp_map(&m, 1);
        mp_str(&m, "x");
        mp_raw(&m, forms[f], lens[f]);
        expect_bad(&m, TB_EFORMAT, "ext values are not supported");
        m.n -= 1; /* and truncated by one byte */
        expect_bad(&m, TB_EFORMAT, "truncated");
    }
}

/* Every single-byte corruption of a valid message decodes or fails cleanly (never crashes,
 * never leaves a half-filled message); run under ASan/UBSan this proves no over-read. */
Test(codec, single_byte_corruptions_fail_cleanly)
{
    tb_msg m;
    tb_tensor t;
    build_rich(&m, &t);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    uint8_t *work = malloc(b.len);
    int ok = 0, failed = 0;
    for (size_t i = 0; i < b.len; i++) {
        const uint8_t c = b.data[i];
        const uint8_t variants[] = {(uint8_t)(c - 1), (uint8_t)(c + 1), c ^ 0x80, 0x00, 0xff, 0xc1};
        for (size_t d = 0; d < sizeof variants; d++) {
            memcpy(work, b.data, b.len);
            work[i] = variants[d];
            tb_msg r;
            int rc = tb_codec_decode(work, b.len, &r, d & 1 ? TB_DECODE_COPY : 0, NULL);
            cr_assert(rc == TB_OK || rc == TB_EFORMAT || rc == TB_EUNSUPPORTED,
                      "byte %zu: status %s: %s", i, tb_status_name(rc), tb_err_msg());
            if (rc) {
                cr_assert_eq(r.count, 0);
                failed++;
            } else {
                ok++;
            }
            tb_msg_free(&r);
        }
    }
    cr_assert_gt(failed, 0);
    cr_assert_gt(ok, 0); /* e.g. payload bytes may change freely */
    free(work);
    tb_buf_free(&b);
    tb_msg_free(&m);
    tb_tensor_free(&t);
}
