/* libFuzzer target for tb_codec_decode (built and run by scripts/fuzz).
 *
 * Every input is decoded twice: in place (aligned payloads borrowed) and with TB_DECODE_COPY.
 * Both must agree. A message that decodes must survive encode -> decode unchanged (same keys,
 * kinds and values, tensors bit for bit), and its re-encoding must be a fixed point. Any
 * disagreement aborts, so the fuzzer reports it like a crash.
 */
#include "tb/wire/codec.h"
#include "tb/base/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void require(int cond)
{
    if (!cond) abort();
}

static void same_msg(const tb_msg *a, const tb_msg *b)
{
    require(a->count == b->count);
    for (int i = 0; i < a->count; i++) {
        const tb_field *x = &a->fields[i], *y = &b->fields[i];
        require(strcmp(x->key, y->key) == 0 && x->kind == y->kind);
        switch (x->kind) {
        case TB_VAL_NIL: break;
        case TB_VAL_BOOL: require(x->v.b == y->v.b); break;
        case TB_VAL_INT: require(x->v.i == y->v.i); break;
        case TB_VAL_FLOAT: require(memcmp(&x->v.f, &y->v.f, sizeof(double)) == 0); break;
        case TB_VAL_STR:
            require(x->v.str.len == y->v.str.len &&
                    memcmp(x->v.str.ptr, y->v.str.ptr, x->v.str.len) == 0);
            break;
        case TB_VAL_TENSOR: {
            const tb_tensor *s = &x->v.tensor, *t = &y->v.tensor;
            require(s->dtype == t->dtype && s->ndim == t->ndim);
            require(memcmp(s->shape, t->shape, sizeof(int64_t) * (size_t)s->ndim) == 0);
            size_t n = tb_tensor_nbytes(s);
            require(n == tb_tensor_nbytes(t) && (n == 0 || memcmp(s->data, t->data, n) == 0));
            break;
        }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const tb_codec_limits limits = {.max_fields = 256, .max_tensor_bytes = 1 << 20};
    tb_msg a, c;
    tb_err_clear();
    int rc = tb_codec_decode(data, size, &a, 0, &limits);
    int rc_copy = tb_codec_decode(data, size, &c, TB_DECODE_COPY, &limits);
    require(rc == rc_copy);
    require(tb_err_msg()[0] != '\0' || rc == TB_OK);
    if (rc != TB_OK) {
        require(a.count == 0 && c.count == 0);
        return 0;
    }
    same_msg(&a, &c);

    tb_buf b1, b2;
    tb_buf_init(&b1);
    tb_buf_init(&b2);
    require(tb_codec_encode(&a, &b1) == TB_OK);
    tb_msg r;
    require(tb_codec_decode(b1.data, b1.len, &r, 0, NULL) == TB_OK);
    same_msg(&a, &r);
    require(tb_codec_encode(&r, &b2) == TB_OK);
    require(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);

    tb_msg_free(&r);
    tb_buf_free(&b2);
    tb_buf_free(&b1);
    tb_msg_free(&c);
    tb_msg_free(&a);
    return 0;
}
