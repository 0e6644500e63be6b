/* tb/codec.h - msgpack encoding of tb_msg maps, tensors in the msgpack-numpy convention.
 *
 * A tensor is the map {"nd": true, "type": "<f4", "kind": "", "shape": [..], "data": <bin>}
 * with keys written as msgpack bin (msgpack-numpy ignores a map whose keys are str); the decoder
 * accepts bin or str keys. The encoder pads so that every tensor payload starts 64-byte aligned
 * relative to the start of the buffer (the buffer itself is 64-byte aligned), so a receiver can
 * use payloads in place; the decoder borrows aligned payloads and copies unaligned ones.
 * Ints, floats, bools, nil and strings travel as plain msgpack values.
 */
#ifndef TB_CODEC_H
#define TB_CODEC_H

#include "tb/msg.h"

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
} tb_codec_limits;

enum {
    TB_DECODE_COPY = 1u << 0, /* copy every tensor payload, even aligned ones */
};

/* Encodes `m` into `out` (replacing its contents). Strided tensors are written contiguous. */
int tb_codec_encode(const tb_msg *m, tb_buf *out);

/* Decodes one message from `data[0..len)` into `out` (initialised by this call). Borrowed
 * tensors point into `data`: keep it alive while `out` lives, or hand it over with tb_msg_hold.
 * On error `out` is left empty and the error says what was wrong and at which byte offset/key.
 * `limits` may be NULL for the defaults. */
int tb_codec_decode(const void *data, size_t len, tb_msg *out, unsigned flags,
                    const tb_codec_limits *limits);

#endif
