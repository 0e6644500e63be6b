/* tb/base/tensor.h - n-dimensional tensors: dtype, shape, strides, owned or borrowed memory.
 *
 * A tb_tensor is a small value type. Memory that tb_tensor_alloc makes is 64-byte aligned,
 * zeroed and owned (tb_tensor_free releases it); tb_tensor_borrow makes a view of memory that
 * somebody else keeps alive (tb_tensor_free then only resets the struct).
 * Strides are in elements. A freshly allocated or borrowed tensor is C-contiguous.
 */
#ifndef TB_TENSOR_H
#define TB_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TB_MAX_DIMS 8
#define TB_ALIGN 64

typedef enum tb_dtype {
    TB_F32 = 0, TB_F16, TB_BF16, TB_F64,
    TB_I8, TB_I16, TB_I32, TB_I64,
    TB_U8, TB_U16, TB_U32, TB_U64,
    TB_BOOL,
    TB_DTYPE_COUNT
} tb_dtype;

typedef struct tb_tensor {
    tb_dtype dtype;
    int ndim;
    int64_t shape[TB_MAX_DIMS];
    int64_t stride[TB_MAX_DIMS]; /* elements */
    void *data;
    int owned;                   /* 1: data from tb_aligned_alloc, freed by tb_tensor_free */
} tb_tensor;

/* dtype facts */
size_t tb_dtype_size(tb_dtype dt);
const char *tb_dtype_name(tb_dtype dt);        /* "f32", "i64", ... */
const char *tb_dtype_numpy(tb_dtype dt);       /* numpy dtype.str: "<f4", "|u1", "|b1"; NULL for bf16 */
const char *tb_dtype_safetensors(tb_dtype dt); /* "F32", "BF16", "BOOL", ... */
/* Parses a numpy dtype string (e.g. "<f4", "|b1"; big-endian is rejected). */
int tb_dtype_from_numpy(const char *s, size_t len, tb_dtype *out);
int tb_dtype_from_safetensors(const char *s, size_t len, tb_dtype *out);

/* 64-byte aligned allocation (size rounded up); tb_aligned_free(NULL) is a no-op. */
void *tb_aligned_alloc(size_t nbytes);
void tb_aligned_free(void *p);

/* Element count of a shape; fails (TB_EINVAL / TB_ENOMEM) on a negative dim or on overflow of
 * `max_bytes` when multiplied by the element size (pass 0 for no byte limit). */
int tb_shape_numel(int ndim, const int64_t *shape, size_t elem_size, size_t max_bytes, int64_t *out);

/* Allocates a zeroed, owned, contiguous tensor. */
int tb_tensor_alloc(tb_tensor *t, tb_dtype dt, int ndim, const int64_t *shape);
/* A contiguous view of `data` (not owned). */
int tb_tensor_borrow(tb_tensor *t, tb_dtype dt, int ndim, const int64_t *shape, void *data);
/* Frees owned data and resets the struct (safe on a zeroed or already freed tensor). */
void tb_tensor_free(tb_tensor *t);

int64_t tb_tensor_numel(const tb_tensor *t);
size_t tb_tensor_nbytes(const tb_tensor *t);   /* numel * elem size */
int tb_tensor_is_contiguous(const tb_tensor *t);
/* Deep copy into a new owned contiguous tensor (src may be strided). */
int tb_tensor_copy(tb_tensor *dst, const tb_tensor *src);
/* Converts f32 <-> f16 / bf16 (round to nearest even) into a new owned tensor. */
int tb_tensor_convert(tb_tensor *dst, const tb_tensor *src, tb_dtype to);

/* Checks dtype and shape; a dim of -1 in `shape` matches anything. On mismatch returns
 * TB_ESHAPE with a message naming `what` and both shapes. */
int tb_tensor_expect(const tb_tensor *t, const char *what, tb_dtype dt, int ndim, const int64_t *shape);
/* Writes "f32[2,3]" into buf. */
const char *tb_tensor_describe(const tb_tensor *t, char *buf, size_t n);

/* Scalar conversions (round to nearest even; NaN stays NaN). */
uint16_t tb_f32_to_f16(float f);
float tb_f16_to_f32(uint16_t h);
uint16_t tb_f32_to_bf16(float f);
float tb_bf16_to_f32(uint16_t h);

#endif
