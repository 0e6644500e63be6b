/* tb/wire/msg.h - a message: an ordered map from names to values (tensors, ints, floats, strings).
 *
 * One ZeroMQ message (or one record of a message file) is one msgpack map, encoded and decoded
 * by tb/wire/codec.h. Every message carries "msg" (hello, credit, ack, batch, end, heartbeat, error),
 * a stream id and a sequence number; a batch carries its tensors by name and metadata strings.
 *
 * Tensors in a message are either owned by it (copied in, or taken over) or borrowed: they point
 * into memory that the message does not own (the caller's, or a received buffer that the
 * message holds through tb_msg_hold). Keys are unique: setting an existing key replaces it.
 */
#ifndef TB_MSG_H
#define TB_MSG_H

#include "tb/base/tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef enum tb_value_kind {
    TB_VAL_NIL = 0,
    TB_VAL_BOOL,
    TB_VAL_INT,
    TB_VAL_FLOAT,
    TB_VAL_STR,
    TB_VAL_TENSOR,
} tb_value_kind;

typedef struct tb_field {
    char *key;                /* NUL-terminated, owned */
    tb_value_kind kind;
    union {
        int b;
        int64_t i;
        double f;
        struct { char *ptr; size_t len; } str; /* owned, NUL-terminated as well */
        tb_tensor tensor;                       /* owned or borrowed, see tensor.owned */
    } v;
} tb_field;

typedef struct tb_msg {
    tb_field *fields;
    int count, cap;
    /* Memory that borrowed tensors may point into, released by tb_msg_free. */
    void *hold;
    void (*hold_free)(void *hold, void *ctx);
    void *hold_ctx;
} tb_msg;

void tb_msg_init(tb_msg *m);
void tb_msg_free(tb_msg *m);                 /* frees fields, owned tensors and the held buffer */
/* Makes `m` responsible for releasing `hold` (e.g. a received buffer) with free_fn(hold, ctx). */
void tb_msg_hold(tb_msg *m, void *hold, void (*free_fn)(void *hold, void *ctx), void *ctx);

int tb_msg_set_nil(tb_msg *m, const char *key);
int tb_msg_set_bool(tb_msg *m, const char *key, int value);
int tb_msg_set_int(tb_msg *m, const char *key, int64_t value);
int tb_msg_set_float(tb_msg *m, const char *key, double value);
int tb_msg_set_str(tb_msg *m, const char *key, const char *value);
int tb_msg_set_strn(tb_msg *m, const char *key, const char *value, size_t len);
/* Borrows `t` (the caller keeps its memory alive while `m` lives). */
int tb_msg_set_tensor_ref(tb_msg *m, const char *key, const tb_tensor *t);
/* Deep-copies `t` into the message. */
int tb_msg_set_tensor_copy(tb_msg *m, const char *key, const tb_tensor *t);
/* Moves `t` into the message (its ownership moves too); `t` is reset. */
int tb_msg_set_tensor_move(tb_msg *m, const char *key, tb_tensor *t);
int tb_msg_remove(tb_msg *m, const char *key);  /* TB_ENOTFOUND when absent */

const tb_field *tb_msg_find(const tb_msg *m, const char *key); /* NULL when absent */
/* Typed getters: TB_ENOTFOUND when absent, TB_EFORMAT when of another kind (message names the key). */
int tb_msg_get_bool(const tb_msg *m, const char *key, int *out);
int tb_msg_get_int(const tb_msg *m, const char *key, int64_t *out);
int tb_msg_get_float(const tb_msg *m, const char *key, double *out); /* accepts ints too */
int tb_msg_get_str(const tb_msg *m, const char *key, const char **out); /* NUL-terminated */
int tb_msg_get_tensor(const tb_msg *m, const char *key, const tb_tensor **out);

#endif
