/* test_stream_wire.c - the stream header peek against messages packed independently with
 * msgpack-c: fields, bin or str keys, limits, every truncation, random corruption (never a crash
 * or an out-of-bounds read: run under ASan), and control messages read back by msgpack-c. */
#include "../../common/wire/stream_internal.h"
#include "tb/base/error.h"

#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

typedef struct kv {
    const char *key;
    int is_str;
    const char *s;
    int64_t i;
} kv;

static void pack(msgpack_sbuffer *sb, const kv *f, int n, int bin_keys)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        if (bin_keys) msgpack_pack_bin_with_body(&pk, f[i].key, strlen(f[i].key));
        else msgpack_pack_str_with_body(&pk, f[i].key, strlen(f[i].key));
        if (f[i].is_str) msgpack_pack_str_with_body(&pk, f[i].s, strlen(f[i].s));
        else msgpack_pack_int64(&pk, f[i].i);
    }
}

Test(stream_wire, reads_fields_with_str_or_bin_keys)
{
    for (int bin = 0; bin < 2; bin++) {
        kv f[] = {{"x", 0, NULL, -5}, {"msg", 1, "batch", 0}, {"stream", 1, "teacher", 0},
                  {"seq", 0, NULL, (int64_t)1 << 40}, {"other", 1, "zzz", 0}};
        msgpack_sbuffer sb;
        pack(&sb, f, 5, bin);
        tb_wire_hdr h;
        cr_assert_eq(tb_wire_peek(sb.data, sb.size, &h), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(h.kind, TB_WIRE_BATCH);
        cr_assert_eq(h.stream_len, 7);
        cr_assert_eq(memcmp(h.stream, "teacher", 7), 0);
        cr_assert(h.has_seq);
        cr_assert_eq(h.seq, (uint64_t)1 << 40);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void expect_bad(const kv *f, int n, const char *what)
{
    msgpack_sbuffer sb;
    pack(&sb, f, n, 0);
    tb_wire_hdr h;
    cr_assert_eq(tb_wire_peek(sb.data, sb.size, &h), TB_EFORMAT, "accepted: %s", what);
    cr_assert(strstr(tb_err_msg(), what), "'%s' not in: %s", what, tb_err_msg());
    msgpack_sbuffer_destroy(&sb);
}

Test(stream_wire, rejects_bad_fields)
{
    kv neg[] = {{"msg", 1, "ack", 0}, {"stream", 1, "s", 0}, {"seq", 0, NULL, -1}};
    expect_bad(neg, 3, "'seq'");
    kv noseq[] = {{"msg", 1, "ack", 0}, {"stream", 1, "s", 0}};
    expect_bad(noseq, 2, "no \"seq\"");
    kv nostream[] = {{"msg", 1, "heartbeat", 0}};
    expect_bad(nostream, 1, "no \"stream\"");
    kv nomsg[] = {{"stream", 1, "s", 0}};
    expect_bad(nomsg, 1, "no \"msg\"");
    kv kind[] = {{"msg", 1, "launch", 0}, {"stream", 1, "s", 0}};
    expect_bad(kind, 2, "unknown message kind");
    kv credit[] = {{"msg", 1, "credit", 0}, {"stream", 1, "s", 0}, {"credit", 0, NULL, 1 << 21}};
    expect_bad(credit, 3, "above the limit");
    kv endc[] = {{"msg", 1, "end", 0}, {"stream", 1, "s", 0}};
    expect_bad(endc, 2, "no \"count\"");
    kv msgint[] = {{"msg", 0, NULL, 3}, {"stream", 1, "s", 0}};
    expect_bad(msgint, 2, "must be a string");

    tb_wire_hdr h;
    const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(tb_wire_peek(huge_map, sizeof huge_map, &h), TB_EFORMAT);
    const uint8_t huge_str[] = {0x81, 0xdb, 0x7f, 0xff, 0xff, 0xff, 'm'};
    cr_assert_eq(tb_wire_peek(huge_str, sizeof huge_str, &h), TB_EFORMAT);
    const uint8_t array[] = {0x92, 0x01, 0x02};
    cr_assert_eq(tb_wire_peek(array, sizeof array, &h), TB_EFORMAT);
    cr_assert_eq(tb_wire_peek(array, 0, &h), TB_EFORMAT);
    /* 40 nested arrays inside a value: refused by depth, not by recursion running away. */
    uint8_t deep[64] = {0x81, 0xa1, 'z'};
    for (int i = 3; i < 63; i++) deep[i] = 0x91;
    deep[63] = 0x00;
    cr_assert_eq(tb_wire_peek(deep, sizeof deep, &h), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "deeper"), "%s", tb_err_msg());
}

Test(stream_wire, every_truncation_and_random_corruption_is_safe)
{
    /* A batch-like map with nested values of every msgpack family. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    msgpack_pack_str_with_body(&pk, "msg", 3);
    msgpack_pack_str_with_body(&pk, "batch", 5);
    msgpack_pack_str_with_body(&pk, "stream", 6);
    msgpack_pack_str_with_body(&pk, "main", 4);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, 77);
    msgpack_pack_bin_with_body(&pk, "x", 1);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_bin_with_body(&pk, "nd", 2);
    msgpack_pack_true(&pk);
    msgpack_pack_bin_with_body(&pk, "shape", 5);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 3);
    msgpack_pack_int(&pk, 300);
    msgpack_pack_bin_with_body(&pk, "data", 4);
    uint8_t payload[300];
    for (int i = 0; i < 300; i++) payload[i] = (uint8_t)i;
    msgpack_pack_bin_with_body(&pk, payload, sizeof payload);
    msgpack_pack_str_with_body(&pk, "f", 1);
    msgpack_pack_double(&pk, 2.5);
    msgpack_pack_str_with_body(&pk, "e", 1);
    msgpack_pack_ext_with_body(&pk, "abcd", 4, 7);
    tb_wire_hdr h;
    cr_assert_eq(tb_wire_peek(sb.data, sb.size, &h), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(h.seq, 77);
    /* Every strict prefix is an error (copied to a heap block of exactly that size, so ASan
     * catches any read past it). */
    for (size_t n = 0; n < sb.size; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, sb.data, n);
        cr_assert_eq(tb_wire_peek(cut, n, &h), TB_EFORMAT, "prefix of %zu bytes accepted", n);
        free(cut);
    }
    /* Random corruption: any outcome but a crash or an out-of-bounds read is fine. */
    srand(12345);
    uint8_t *buf = malloc(sb.size);
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, sb.data, sb.size);
        int flips = 1 + rand() % 4;
        for (int k = 0; k < flips; k++) buf[rand() % sb.size] = (uint8_t)rand();
        int rc = tb_wire_peek(buf, sb.size, &h);
        cr_assert(rc == TB_OK || rc == TB_EFORMAT);
        if (rc == TB_OK) {
            ok++;
            cr_assert(h.stream >= (const char *)buf && h.stream + h.stream_len <= (const char *)buf + sb.size);
        } else bad++;
    }
    cr_assert_gt(bad, 0);
    cr_assert_gt(ok, 0);
    free(buf);
    msgpack_sbuffer_destroy(&sb);
}

Test(stream_wire, control_messages_read_back_with_msgpack_c)
{
    uint8_t buf[TB_WIRE_CTL_MAX];
    char longtext[400];
    memset(longtext, 'e', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    tb_wire_hdr h = {.kind = TB_WIRE_END, .stream = "main", .stream_len = 4, .has_seq = 1, .seq = 1u << 31,
                     .has_count = 1, .count = 1u << 31, .error = longtext, .error_len = strlen(longtext),
                     .fatal = 1};
    size_t n = tb_wire_ctl(buf, &h);
    cr_assert_leq(n, sizeof buf);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    cr_assert_eq(msgpack_unpack_next(&u, (const char *)buf, n, &off), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, n);
    cr_assert_eq(u.data.type, MSGPACK_OBJECT_MAP);
    int seen = 0;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        msgpack_object k = u.data.via.map.ptr[i].key, v = u.data.via.map.ptr[i].val;
        cr_assert_eq(k.type, MSGPACK_OBJECT_STR);
        if (k.via.str.size == 3 && !memcmp(k.via.str.ptr, "msg", 3)) {
            cr_assert_eq(v.via.str.size, 3);
            cr_assert_eq(memcmp(v.via.str.ptr, "end", 3), 0);
            seen |= 1;
        } else if (k.via.str.size == 5 && !memcmp(k.via.str.ptr, "count", 5)) {
            cr_assert_eq(v.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
            cr_assert_eq(v.via.u64, 1u << 31);
            seen |= 2;
        } else if (k.via.str.size == 5 && !memcmp(k.via.str.ptr, "error", 5)) {
            cr_assert_eq(v.via.str.size, 255, "long error texts are cut to 255 bytes");
            seen |= 4;
        } else if (k.via.str.size == 5 && !memcmp(k.via.str.ptr, "fatal", 5)) {
            cr_assert_eq(v.via.u64, 1);
            seen |= 8;
        }
    }
    cr_assert_eq(seen, 15);
    msgpack_unpacked_destroy(&u);
    tb_wire_hdr back;
    cr_assert_eq(tb_wire_peek(buf, n, &back), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(back.kind, TB_WIRE_END);
    cr_assert_eq(back.count, 1u << 31);
    cr_assert(back.fatal);
}
