/* Unit tests: tensors, dtypes, half-precision conversion, messages. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tb/base/error.h"
#include "tb/wire/msg.h"
#include "tb/base/tensor.h"

Test(tensor, alloc_is_aligned_zeroed_contiguous)
{
    tb_tensor t;
    int64_t shape[3] = {2, 3, 5};
    cr_assert_eq(tb_tensor_alloc(&t, TB_F32, 3, shape), TB_OK);
    cr_assert_eq((uintptr_t)t.data % TB_ALIGN, 0);
    cr_assert_eq(tb_tensor_numel(&t), 30);
    cr_assert_eq(tb_tensor_nbytes(&t), 120);
    cr_assert_eq(t.stride[0], 15);
    cr_assert_eq(t.stride[1], 5);
    cr_assert_eq(t.stride[2], 1);
    for (int i = 0; i < 30; i++) cr_assert_eq(((float *)t.data)[i], 0.0f);
    cr_assert(tb_tensor_is_contiguous(&t));
    tb_tensor_free(&t);
    cr_assert_null(t.data);
    tb_tensor_free(&t); /* double free is harmless */
}

Test(tensor, rejects_negative_and_overflowing_shapes)
{
    tb_tensor t;
    int64_t neg[2] = {3, -1};
    cr_assert_eq(tb_tensor_alloc(&t, TB_F32, 2, neg), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "negative") != NULL, "%s", tb_err_msg());
    int64_t huge[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 4};
    cr_assert_eq(tb_tensor_alloc(&t, TB_F32, 3, huge), TB_EINVAL);
    int64_t big[1] = {INT64_C(1) << 61};
    cr_assert_eq(tb_tensor_alloc(&t, TB_F64, 1, big), TB_EINVAL); /* 2^64 bytes */
    cr_assert_eq(tb_tensor_alloc(&t, TB_F32, TB_MAX_DIMS + 1, neg), TB_EINVAL);
}

Test(tensor, copy_of_transposed_view_is_row_major)
{
    float src[6] = {0, 1, 2, 3, 4, 5}; /* 2x3 */
    tb_tensor v;
    int64_t shape[2] = {3, 2};
    cr_assert_eq(tb_tensor_borrow(&v, TB_F32, 2, shape, src), TB_OK);
    v.stride[0] = 1; /* transpose of the 2x3 matrix */
    v.stride[1] = 3;
    cr_assert_not(tb_tensor_is_contiguous(&v));
    tb_tensor c;
    cr_assert_eq(tb_tensor_copy(&c, &v), TB_OK);
    float want[6] = {0, 3, 1, 4, 2, 5};
    cr_assert_arr_eq(c.data, want, sizeof want);
    tb_tensor_free(&c);
    tb_tensor_free(&v);
    cr_assert_eq(src[5], 5.0f); /* borrowed memory untouched */
}

Test(tensor, numpy_dtype_strings)
{
    tb_dtype dt;
    cr_assert_eq(tb_dtype_from_numpy("<f4", 3, &dt), TB_OK);
    cr_assert_eq(dt, TB_F32);
    cr_assert_eq(tb_dtype_from_numpy("|b1", 3, &dt), TB_OK);
    cr_assert_eq(dt, TB_BOOL);
    cr_assert_eq(tb_dtype_from_numpy("|u1", 3, &dt), TB_OK);
    cr_assert_eq(dt, TB_U8);
    cr_assert_eq(tb_dtype_from_numpy("<i8", 3, &dt), TB_OK);
    cr_assert_eq(dt, TB_I64);
    cr_assert_eq(tb_dtype_from_numpy(">f4", 3, &dt), TB_EUNSUPPORTED);
    cr_assert_eq(tb_dtype_from_numpy("<c8", 3, &dt), TB_EFORMAT);
    cr_assert_str_eq(tb_dtype_numpy(TB_F16), "<f2");
}

/* Hand-computed IEEE 754 binary16 encodings. */
Test(tensor, f16_known_values)
{
    cr_assert_eq(tb_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(tb_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(tb_f32_to_f16(65504.0f), 0x7bff);            /* largest finite */
    cr_assert_eq(tb_f32_to_f16(65520.0f), 0x7c00);            /* rounds to +inf */
    cr_assert_eq(tb_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);   /* smallest subnormal */
    cr_assert_eq(tb_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);   /* tie -> even (0) */
    cr_assert_eq(tb_f32_to_f16(ldexpf(3.0f, -25)), 0x0002);   /* 1.5 ulp tie -> even (2) */
    cr_assert_eq(tb_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie -> even */
    cr_assert_eq(tb_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02); /* tie -> even (up) */
    cr_assert_eq(tb_f32_to_f16(INFINITY), 0x7c00);
    cr_assert((tb_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (tb_f32_to_f16(NAN) & 0x3ff));
    cr_assert_eq(tb_f16_to_f32(0x3555), 0x1.554p-2f);
    cr_assert_eq(tb_f16_to_f32(0x0001), ldexpf(1.0f, -24));
    cr_assert_eq(tb_f16_to_f32(0xfbff), -65504.0f);
}

Test(tensor, f16_roundtrip_all_finite_halves)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue; /* inf / nan */
        cr_assert_eq(tb_f32_to_f16(tb_f16_to_f32((uint16_t)h)), h, "half 0x%04x", h);
    }
}

Test(tensor, bf16_rounding)
{
    cr_assert_eq(tb_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(tb_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);      /* tie -> even */
    cr_assert_eq(tb_f32_to_bf16(1.0f + ldexpf(3.0f, -8)), 0x3f82);      /* tie -> even (up) */
    cr_assert_eq(tb_bf16_to_f32(0xc040), -3.0f);
}

Test(tensor, expect_reports_both_shapes)
{
    tb_tensor t;
    int64_t shape[2] = {4, 7};
    cr_assert_eq(tb_tensor_alloc(&t, TB_I64, 2, shape), TB_OK);
    int64_t ok[2] = {-1, 7}, bad[2] = {4, 8};
    cr_assert_eq(tb_tensor_expect(&t, "input_ids", TB_I64, 2, ok), TB_OK);
    cr_assert_eq(tb_tensor_expect(&t, "input_ids", TB_I64, 2, bad), TB_ESHAPE);
    cr_assert(strstr(tb_err_msg(), "'input_ids' is i64[4,7], expected i64[4,8]"), "%s", tb_err_msg());
    tb_tensor_free(&t);
}

Test(msg, set_get_replace_remove)
{
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_msg_set_str(&m, "msg", "batch"), TB_OK);
    cr_assert_eq(tb_msg_set_int(&m, "seq", 7), TB_OK);
    cr_assert_eq(tb_msg_set_int(&m, "seq", 8), TB_OK); /* replaces, no duplicate */
    cr_assert_eq(m.count, 2);
    int64_t seq;
    cr_assert_eq(tb_msg_get_int(&m, "seq", &seq), TB_OK);
    cr_assert_eq(seq, 8);
    const char *s;
    cr_assert_eq(tb_msg_get_int(&m, "msg", &seq), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "'msg' is a string, expected a int"), "%s", tb_err_msg());
    cr_assert_eq(tb_msg_get_str(&m, "nope", &s), TB_ENOTFOUND);
    tb_tensor t;
    int64_t shape[1] = {3};
    cr_assert_eq(tb_tensor_alloc(&t, TB_F32, 1, shape), TB_OK);
    ((float *)t.data)[2] = 2.5f;
    cr_assert_eq(tb_msg_set_tensor_move(&m, "x", &t), TB_OK);
    cr_assert_null(t.data);
    const tb_tensor *x;
    cr_assert_eq(tb_msg_get_tensor(&m, "x", &x), TB_OK);
    cr_assert_eq(((float *)x->data)[2], 2.5f);
    cr_assert_eq(tb_msg_remove(&m, "msg"), TB_OK);
    cr_assert_eq(m.count, 2);
    cr_assert_str_eq(m.fields[0].key, "seq");
    tb_msg_free(&m);
}
