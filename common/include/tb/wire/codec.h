/* tb/wire/codec.h - msgpack encoding of tb_msg maps, tensors in the msgpack-numpy convention.
 *
 * A tensor is the map {"nd": true, "type": "<f4", "kind": "", "shape": [..], "data": <bin>}
 * with keys written as msgpack bin (msgpack-numpy ignores a map whose keys are str); the decoder
 * accepts bin or str keys. The encoder pads so that every tensor payload starts 64-byte aligned
 * relative to the start of the buffer (the buffer itself is 64-byte aligned), so a receiver can
 * use payloads in place; the decoder borrows aligned payloads and copies unaligned ones.
 * Ints, floats, bools, nil and strings travel as plain msgpack values.
 *
 * Wire details (common/wire/codec.c has the byte layout):
 * - The message is a map with str keys; a key may not contain a NUL byte. Values: nil, bool,
 *   int (int64 range; a larger uint64 is rejected), float (written as float64, float32 accepted),
 *   str (bytes kept as is), or a tensor map. Arrays, bin and ext values and maps that are not
 *   tensors are rejected: send a list of numbers as a tensor (e.g. an i64 vector) and a list of
 *   names as one str.
 * - A tensor map as written: {nd, type, kind, shape, [tb_dtype,] tb_pad, data}, all keys bin,
 *   "type" a str (numpy dtype.str: "<f4", "<f2", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2",
 *   "<u4", "<u8", "|b1"), "kind" an empty bin. "tb_pad" is a bin of zeros that puts the "data"
 *   payload at a multiple of 64 bytes from the start of the buffer; msgpack-numpy ignores it.
 * - bf16 has no numpy dtype: it is sent as type "<u2" plus "tb_dtype": "bf16" (a str); numpy
 *   readers see the raw uint16 bit patterns, tinybert-c readers get TB_BF16 back.
 * - The decoder also accepts msgpack-numpy's own layout (no tb_pad, any payload offset, no
 *   "kind" from old writers) and numpy scalars ({nd: false, type, data}) as 0-d tensors. It
 *   rejects unknown tensor-map keys, duplicate keys, structured/object dtypes, big-endian
 *   dtypes, more than TB_MAX_DIMS dims, negative dims, payloads whose size does not match
 *   shape x dtype, bool payload bytes other than 0/1, and trailing bytes after the map.
 * - Borrowing: a payload whose address (data + offset) is a multiple of TB_ALIGN is borrowed
 *   (tensor.owned == 0); any other payload is copied into a fresh 64-byte aligned tensor. So a
 *   buffer that itself starts 64-byte aligned (a tb_buf, a tb_aligned_alloc copy) decodes with
 *   no copies; a receive buffer at another address gets copies.
 * - Errors are TB_EFORMAT (TB_EUNSUPPORTED for valid but unsupported dtypes, TB_ENOMEM) and
 *   the message names the byte offset, the top-level key and what was wrong.
 */
#ifndef TB_CODEC_H
#define TB_CODEC_H

#include "tb/wire/msg.h"

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer whose data is 64-byte aligned. */
typedef struct tb_buf {
    uint8_t *data;
    size_t len, cap;
} tb_buf;

void tb_buf_init(tb_buf *b);
void tb_buf_free(tb_buf *b);
int tb_buf_reserve(tb_buf *b, size_t cap);

/* Limits the decoder enforces against hostile input. */
typedef struct tb_codec_limits {
    size_t max_fields;        /* fields in the top-level map (default 4096) */
    size_t max_tensor_bytes;  /* one tensor's payload (default 8 GiB) */
} tb_codec_limits;            /* a field left 0 takes its default */

enum {
    TB_DECODE_COPY = 1u << 0, /* copy every tensor payload, even aligned ones */
};

/* Encodes `m` into `out` (replacing its contents). Strided tensors are written contiguous.
 * A tensor payload is at most 4 GiB - 1 (the msgpack bin32 limit). To hand the bytes to someone
 * else (e.g. zmq_msg_init_data), take out->data, tb_buf_init(out), and release the bytes later with tb_aligned_free. */
int tb_codec_encode(const tb_msg *m, tb_buf *out);

/* Decodes one message from `data[0..len)` into `out` (initialised by this call). Borrowed
 * tensors point into `data`: keep it alive while `out` lives, or hand it over with tb_msg_hold.
 * On error `out` is left empty and the error says what was wrong and at which byte offset/key.
 * `limits` may be NULL for the defaults. */
int tb_codec_decode(const void *data, size_t len, tb_msg *out, unsigned flags,
                    const tb_codec_limits *limits);

#endif
