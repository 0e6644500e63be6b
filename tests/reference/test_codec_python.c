/* Reference tests: tb_codec against Python msgpack + msgpack-numpy (tests/reference/py/codec_interop.py).
 *
 * Both sides build the same message from the formulas documented in codec_interop.py:
 *   pattern tensors "p.<numpy name>" of shape (3,5,7): payload byte k = (131 k + 7 seed + 3) mod 256
 *   (bool: & 1), seed = position in PATTERNS; value tensors "v.*" from small closed forms.
 * C encodes -> Python decodes and compares bit for bit (and checks 64-byte payload alignment);
 * Python encodes with msgpack_numpy.packb -> C decodes and compares bit for bit.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tb/wire/codec.h"
#include "tb/base/error.h"
#include "tb/wire/msg.h"
#include "tb/base/tensor.h"

#define INTEROP_PY TB_SOURCE_DIR "/tests/reference/py/codec_interop.py"

static const struct {
    tb_dtype dt;
    const char *name; /* numpy dtype name */
} PATTERNS[] = {
    {TB_F32, "float32"}, {TB_F16, "float16"}, {TB_F64, "float64"}, {TB_I8, "int8"},
    {TB_I16, "int16"},   {TB_I32, "int32"},   {TB_I64, "int64"},   {TB_U8, "uint8"},
    {TB_U16, "uint16"},  {TB_U32, "uint32"},  {TB_U64, "uint64"},  {TB_BOOL, "bool"},
};
enum { NPATTERNS = sizeof PATTERNS / sizeof PATTERNS[0] };

/* the 3x4 int32 matrix 10 i + j; "strided" is its transpose, as a view */
static int32_t strided_base[12];

static void pattern_tensor(tb_msg *m, const char *key, tb_dtype dt, int ndim, const int64_t *shape,
                           unsigned seed)
{
    tb_tensor t;
    cr_assert_eq(tb_tensor_alloc(&t, dt, ndim, shape), TB_OK);
    uint8_t *p = t.data;
    size_t n = tb_tensor_nbytes(&t);
    for (size_t k = 0; k < n; k++) {
        p[k] = (uint8_t)((131u * k + 7u * seed + 3u) % 256u);
        if (dt == TB_BOOL) p[k] &= 1;
    }
    cr_assert_eq(tb_msg_set_tensor_move(m, key, &t), TB_OK);
}

static void value_tensor(tb_msg *m, const char *key, tb_dtype dt, int ndim, const int64_t *shape,
                         const void *vals)
{
    tb_tensor t;
    cr_assert_eq(tb_tensor_alloc(&t, dt, ndim, shape), TB_OK);
    if (tb_tensor_nbytes(&t)) memcpy(t.data, vals, tb_tensor_nbytes(&t));
    cr_assert_eq(tb_msg_set_tensor_move(m, key, &t), TB_OK);
}

/* The message of codec_interop.py's expected(); "bf16" carries `bf16_dtype` (TB_BF16 when C
 * sends it, TB_U16 when Python, which has no bf16, sends the same bits). */
static void build_expected(tb_msg *m, tb_dtype bf16_dtype)
{
    tb_msg_init(m);
    cr_assert_eq(tb_msg_set_str(m, "msg", "batch"), TB_OK);
    cr_assert_eq(tb_msg_set_int(m, "seq", 42), TB_OK);
    cr_assert_eq(tb_msg_set_int(m, "big", INT64_MAX), TB_OK);
    cr_assert_eq(tb_msg_set_int(m, "small", INT64_MIN), TB_OK);
    cr_assert_eq(tb_msg_set_int(m, "neg", -7), TB_OK);
    cr_assert_eq(tb_msg_set_bool(m, "flag", 1), TB_OK);
    cr_assert_eq(tb_msg_set_bool(m, "off", 0), TB_OK);
    cr_assert_eq(tb_msg_set_nil(m, "none"), TB_OK);
    cr_assert_eq(tb_msg_set_float(m, "lr", 0.001), TB_OK);
    cr_assert_eq(tb_msg_set_str(m, "name", "h\xc3\xa9llo w\xc3\xb6rld"), TB_OK);
    char key[32];
    const int64_t pshape[3] = {3, 5, 7};
    for (int s = 0; s < NPATTERNS; s++) {
        snprintf(key, sizeof key, "p.%s", PATTERNS[s].name);
        pattern_tensor(m, key, PATTERNS[s].dt, 3, pshape, (unsigned)s);
    }
    const int64_t big[2] = {100, 200};
    pattern_tensor(m, "p.big", TB_F32, 2, big, 30);

    float f32[12];
    for (int i = 0; i < 12; i++) f32[i] = (float)i * 0.5f - 3.0f;
    value_tensor(m, "v.f32", TB_F32, 2, (int64_t[]){3, 4}, f32);
    /* binary16 bits of 0, 0.25, 0.5, ..., 1.75 */
    const uint16_t f16[8] = {0x0000, 0x3400, 0x3800, 0x3a00, 0x3c00, 0x3d00, 0x3e00, 0x3f00};
    value_tensor(m, "v.f16", TB_F16, 1, (int64_t[]){8}, f16);
    int64_t i64[10];
    for (int i = 0; i < 10; i++) i64[i] = (int64_t)i * 1000000000000LL - 5000000000000LL;
    value_tensor(m, "v.i64", TB_I64, 1, (int64_t[]){10}, i64);
    uint8_t bools[10];
    for (int i = 0; i < 10; i++) bools[i] = i % 3 == 0;
    value_tensor(m, "v.bool", TB_BOOL, 2, (int64_t[]){2, 5}, bools);
    uint8_t u8[16];
    for (int i = 0; i < 16; i++) u8[i] = (uint8_t)((i * 37) % 256);
    value_tensor(m, "v.u8", TB_U8, 1, (int64_t[]){16}, u8);
    const double scalar = -0.125;
    value_tensor(m, "scalar", TB_F64, 0, NULL, &scalar);
    value_tensor(m, "empty", TB_F32, 1, (int64_t[]){0}, NULL);
    value_tensor(m, "empty3", TB_I32, 3, (int64_t[]){2, 0, 3}, NULL);

    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) strided_base[i * 4 + j] = 10 * i + j;
    tb_tensor view;
    cr_assert_eq(tb_tensor_borrow(&view, TB_I32, 2, (int64_t[]){4, 3}, strided_base), TB_OK);
    view.stride[0] = 1;
    view.stride[1] = 4;
    cr_assert_eq(tb_msg_set_tensor_ref(m, "strided", &view), TB_OK);

    pattern_tensor(m, "bf16", bf16_dtype, 2, (int64_t[]){4, 6}, 20);
}

/* Bit-for-bit comparison of one field (tensors compared in C order). */
static void expect_same_field(const tb_field *got, const tb_field *want)
{
    const char *k = want->key;
    cr_assert_not_null(got, "field '%s' is missing", k);
    cr_assert_eq(got->kind, want->kind, "field '%s': kind %d, expected %d", k, got->kind, want->kind);
    switch (want->kind) {
    case TB_VAL_NIL: break;
    case TB_VAL_BOOL: cr_assert_eq(got->v.b, want->v.b, "%s", k); break;
    case TB_VAL_INT: cr_assert_eq(got->v.i, want->v.i, "%s", k); break;
    case TB_VAL_FLOAT: cr_assert_arr_eq(&got->v.f, &want->v.f, sizeof(double), "%s", k); break;
    case TB_VAL_STR:
        cr_assert_eq(got->v.str.len, want->v.str.len, "%s", k);
        cr_assert_arr_eq(got->v.str.ptr, want->v.str.ptr, want->v.str.len, "%s", k);
        break;
    case TB_VAL_TENSOR: {
        const tb_tensor *g = &got->v.tensor, *w = &want->v.tensor;
        cr_assert_eq(g->dtype, w->dtype, "%s: dtype %s, expected %s", k, tb_dtype_name(g->dtype),
                     tb_dtype_name(w->dtype));
        cr_assert_eq(g->ndim, w->ndim, "%s", k);
        cr_assert_arr_eq(g->shape, w->shape, sizeof(int64_t) * (size_t)w->ndim, "%s", k);
        cr_assert(tb_tensor_is_contiguous(g), "%s: decoded tensors are contiguous", k);
        tb_tensor wc;
        cr_assert_eq(tb_tensor_copy(&wc, w), TB_OK);
        cr_assert_arr_eq(g->data, wc.data, tb_tensor_nbytes(&wc), "%s: payload differs", k);
        tb_tensor_free(&wc);
        break;
    }
    }
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/tb-test-codec-XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d);
    return strdup(d);
}

/* Runs codec_interop.py with `verb file`; returns its exit status, its output in `out`. */
static int run_interop(const char *verb, const char *file, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s %s %s 2>&1", TB_PYTHON, INTEROP_PY, verb, file);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long sz = ftell(f);
    cr_assert_gt(sz, 0);
    rewind(f);
    uint8_t *p = malloc((size_t)sz);
    cr_assert_eq(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

Test(codec_python, c_encodes_python_decodes)
{
    tb_msg m;
    build_expected(&m, TB_BF16);
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK, "%s", tb_err_msg());
    char *dir = make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/c.msgpack", dir);
    write_file(path, b.data, b.len);
    char out[8192];
    int st = run_interop("check", path, out, sizeof out);
    cr_assert_eq(st, 0, "Python check failed (%d):\n%s", st, out);
    cr_assert_not_null(strstr(out, "tensor payloads aligned"), "%s", out);
    unlink(path);
    rmdir(dir);
    free(dir);
    tb_buf_free(&b);
    tb_msg_free(&m);
}

/* The Python checker must be able to fail: a one-bit change of one payload is caught. */
Test(codec_python, python_check_catches_a_flipped_bit)
{
    tb_msg m;
    build_expected(&m, TB_BF16);
    const tb_tensor *t;
    cr_assert_eq(tb_msg_get_tensor(&m, "v.i64", &t), TB_OK);
    ((uint8_t *)t->data)[17] ^= 0x10;
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    char *dir = make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/c.msgpack", dir);
    write_file(path, b.data, b.len);
    char out[8192];
    cr_assert_eq(run_interop("check", path, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "v.i64"), "%s", out);
    unlink(path);
    rmdir(dir);
    free(dir);
    tb_buf_free(&b);
    tb_msg_free(&m);
}

static void decode_python_file(uint8_t **data, size_t *n)
{
    char *dir = make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/py.msgpack", dir);
    char out[8192];
    int st = run_interop("make", path, out, sizeof out);
    cr_assert_eq(st, 0, "Python make failed (%d):\n%s", st, out);
    *data = read_file(path, n);
    unlink(path);
    rmdir(dir);
    free(dir);
}

static void expect_python_message(const tb_msg *got)
{
    tb_msg want;
    build_expected(&want, TB_U16);
    for (int i = 0; i < want.count; i++)
        expect_same_field(tb_msg_find(got, want.fields[i].key), &want.fields[i]);
    /* Python-only extras */
    const tb_tensor *t, *v;
    cr_assert_eq(tb_msg_get_tensor(got, "fortran", &t), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_msg_get_tensor(&want, "v.f32", &v), TB_OK);
    expect_same_field(tb_msg_find(got, "fortran"), tb_msg_find(&want, "v.f32"));
    cr_assert_eq(tb_msg_get_tensor(got, "npscalar", &t), TB_OK, "%s", tb_err_msg());
    cr_assert(t->dtype == TB_I64 && t->ndim == 0 && *(int64_t *)t->data == -5);
    cr_assert_eq(tb_msg_get_tensor(got, "npf16", &t), TB_OK, "%s", tb_err_msg());
    cr_assert(t->dtype == TB_F16 && t->ndim == 0 && *(uint16_t *)t->data == 0x3e00);
    cr_assert_eq(got->count, want.count + 3, "no unexpected fields");
    tb_msg_free(&want);
}

Test(codec_python, python_encodes_c_decodes)
{
    uint8_t *data;
    size_t n;
    decode_python_file(&data, &n);
    for (unsigned flags = 0; flags <= TB_DECODE_COPY; flags += TB_DECODE_COPY) {
        tb_msg got;
        cr_assert_eq(tb_codec_decode(data, n, &got, flags, NULL), TB_OK, "%s", tb_err_msg());
        expect_python_message(&got);
        for (int i = 0; i < got.count; i++) {
            const tb_field *f = &got.fields[i];
            if (f->kind != TB_VAL_TENSOR) continue;
            const tb_tensor *t = &f->v.tensor;
            /* borrowed only when aligned in place; always owned with TB_DECODE_COPY */
            if (flags & TB_DECODE_COPY) cr_assert_eq(t->owned, 1, "%s", f->key);
            if (!t->owned)
                cr_assert((uintptr_t)t->data % TB_ALIGN == 0 && (uint8_t *)t->data >= data &&
                              (uint8_t *)t->data < data + n, "%s", f->key);
            else
                cr_assert_eq((uintptr_t)t->data % TB_ALIGN, 0, "%s", f->key);
        }
        tb_msg_free(&got);
    }
    free(data);
}

/* Python's bytes truncated at every length: a clean TB_EFORMAT each time (run under ASan). */
Test(codec_python, python_message_truncated_everywhere)
{
    uint8_t *data;
    size_t n;
    decode_python_file(&data, &n);
    for (size_t len = 0; len < n; len++) {
        uint8_t *cut = malloc(len ? len : 1); /* exact size, so an over-read is caught */
        memcpy(cut, data, len);
        tb_msg got;
        int rc = tb_codec_decode(cut, len, &got, 0, NULL);
        cr_assert_eq(rc, TB_EFORMAT, "length %zu: %s", len, tb_err_msg());
        cr_assert_eq(got.count, 0);
        free(cut);
    }
    free(data);
}
