/* stream_wire.c - protocol fields of stream messages: peek without decoding tensors, encode
 * control messages, CRC-32C for message files. */
#include "stream_internal.h"

#include "tb/base/error.h"

#include <string.h>

static const char *const kind_names[] = {
    [TB_WIRE_NONE] = "?",          [TB_WIRE_HELLO] = "hello", [TB_WIRE_CREDIT] = "credit",
    [TB_WIRE_ACK] = "ack",         [TB_WIRE_BATCH] = "batch", [TB_WIRE_END] = "end",
    [TB_WIRE_HEARTBEAT] = "heartbeat", [TB_WIRE_ERROR] = "error",
};

const char *tb_wire_kind_name(tb_wire_kind k)
{
    if ((int)k < 0 || k > TB_WIRE_ERROR) return "?";
    return kind_names[k];
}

/* ---- a bounded msgpack reader ---------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    size_t len, off;
} rd;

#define PEEK_DEPTH_MAX 32

static int need(rd *r, size_t n, const char *what)
{
    if (n > r->len - r->off)
        return TB_ERR(TB_EFORMAT, "message truncated at byte %zu: %s needs %zu bytes, %zu left",
                      r->off, what, n, r->len - r->off);
    return TB_OK;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Reads a length-prefixed header of width n bytes (after the type byte). */
static int rd_len(rd *r, int n, uint64_t *out)
{
    int rc = need(r, (size_t)n, "a length");
    if (rc) return rc;
    *out = be(r->p + r->off, n);
    r->off += (size_t)n;
    return TB_OK;
}

static int skip(rd *r, int depth);

static int skip_n(rd *r, uint64_t n, int depth)
{
    for (uint64_t i = 0; i < n; i++) {
        int rc = skip(r, depth);
        if (rc) return rc;
    }
    return TB_OK;
}

static int skip_bytes(rd *r, uint64_t n)
{
    if (n > r->len - r->off)
        return TB_ERR(TB_EFORMAT, "message truncated at byte %zu: a value declares %llu bytes, %zu left",
                      r->off, (unsigned long long)n, r->len - r->off);
    r->off += (size_t)n;
    return TB_OK;
}

/* Skips one msgpack object. Arrays and maps may nest PEEK_DEPTH_MAX deep; element counts are
 * checked against the bytes left (each element takes at least one byte). */
static int skip(rd *r, int depth)
{
    if (depth > PEEK_DEPTH_MAX)
        return TB_ERR(TB_EFORMAT, "message nests deeper than %d levels at byte %zu", PEEK_DEPTH_MAX, r->off);
    int rc = need(r, 1, "a value");
    if (rc) return rc;
    uint8_t t = r->p[r->off++];
    uint64_t n = 0;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) return TB_OK;
    if ((t & 0xe0) == 0xa0) return skip_bytes(r, t & 0x1f);
    if ((t & 0xf0) == 0x90) return skip_n(r, t & 0x0f, depth + 1);
    if ((t & 0xf0) == 0x80) return skip_n(r, 2u * (t & 0x0f), depth + 1);
    switch (t) {
    case 0xcc: case 0xd0: return skip_bytes(r, 1);
    case 0xcd: case 0xd1: return skip_bytes(r, 2);
    case 0xce: case 0xd2: case 0xca: return skip_bytes(r, 4);
    case 0xcf: case 0xd3: case 0xcb: return skip_bytes(r, 8);
    case 0xd4: return skip_bytes(r, 2);
    case 0xd5: return skip_bytes(r, 3);
    case 0xd6: return skip_bytes(r, 5);
    case 0xd7: return skip_bytes(r, 9);
    case 0xd8: return skip_bytes(r, 17);
    case 0xc4: case 0xd9: if ((rc = rd_len(r, 1, &n))) return rc; return skip_bytes(r, n);
    case 0xc5: case 0xda: if ((rc = rd_len(r, 2, &n))) return rc; return skip_bytes(r, n);
    case 0xc6: case 0xdb: if ((rc = rd_len(r, 4, &n))) return rc; return skip_bytes(r, n);
    case 0xc7: if ((rc = rd_len(r, 1, &n))) return rc; return skip_bytes(r, n + 1);
    case 0xc8: if ((rc = rd_len(r, 2, &n))) return rc; return skip_bytes(r, n + 1);
    case 0xc9: if ((rc = rd_len(r, 4, &n))) return rc; return skip_bytes(r, n + 1);
    case 0xdc: case 0xdd:
        if ((rc = rd_len(r, t == 0xdc ? 2 : 4, &n))) return rc;
        if (n > r->len - r->off)
            return TB_ERR(TB_EFORMAT, "array at byte %zu declares %llu items, more than the %zu bytes left",
                          r->off, (unsigned long long)n, r->len - r->off);
        return skip_n(r, n, depth + 1);
    case 0xde: case 0xdf:
        if ((rc = rd_len(r, t == 0xde ? 2 : 4, &n))) return rc;
        if (n > (r->len - r->off) / 2)
            return TB_ERR(TB_EFORMAT, "map at byte %zu declares %llu entries, more than the %zu bytes left",
                          r->off, (unsigned long long)n, r->len - r->off);
        return skip_n(r, 2 * n, depth + 1);
    default:
        return TB_ERR(TB_EFORMAT, "byte %zu: 0x%02x is not a msgpack type", r->off - 1, t);
    }
}

/* Reads a str or bin (keys may be either); 0 when the object is not one (nothing consumed). */
static int rd_bytes(rd *r, const char **s, size_t *n, int *is)
{
    *is = 0;
    int rc = need(r, 1, "a key");
    if (rc) return rc;
    uint8_t t = r->p[r->off];
    uint64_t len;
    int w;
    if ((t & 0xe0) == 0xa0) {
        len = t & 0x1f;
        w = 0;
    } else if (t == 0xd9 || t == 0xc4) w = 1;
    else if (t == 0xda || t == 0xc5) w = 2;
    else if (t == 0xdb || t == 0xc6) w = 4;
    else return TB_OK;
    r->off++;
    if (w && (rc = rd_len(r, w, &len))) return rc;
    if (len > r->len - r->off)
        return TB_ERR(TB_EFORMAT, "string at byte %zu declares %llu bytes, %zu left", r->off,
                      (unsigned long long)len, r->len - r->off);
    *s = (const char *)r->p + r->off;
    *n = (size_t)len;
    r->off += (size_t)len;
    *is = 1;
    return TB_OK;
}

/* Reads an integer value; *is = 0 (nothing consumed) when it is not one. */
static int rd_int(rd *r, int64_t *v, int *is)
{
    *is = 0;
    int rc = need(r, 1, "a value");
    if (rc) return rc;
    uint8_t t = r->p[r->off];
    if (t <= 0x7f) { *v = t; r->off++; *is = 1; return TB_OK; }
    if (t >= 0xe0) { *v = (int8_t)t; r->off++; *is = 1; return TB_OK; }
    int w = 0, sgn = 0;
    switch (t) {
    case 0xcc: w = 1; break; case 0xcd: w = 2; break; case 0xce: w = 4; break; case 0xcf: w = 8; break;
    case 0xd0: w = 1; sgn = 1; break; case 0xd1: w = 2; sgn = 1; break;
    case 0xd2: w = 4; sgn = 1; break; case 0xd3: w = 8; sgn = 1; break;
    default: return TB_OK;
    }
    r->off++;
    rc = need(r, (size_t)w, "an integer");
    if (rc) return rc;
    uint64_t u = be(r->p + r->off, w);
    r->off += (size_t)w;
    if (sgn) {
        int shift = 64 - 8 * w;
        *v = (int64_t)(u << shift) >> shift;
    } else {
        if (u > INT64_MAX)
            return TB_ERR(TB_EFORMAT, "integer at byte %zu does not fit in int64", r->off - (size_t)w);
        *v = (int64_t)u;
    }
    *is = 1;
    return TB_OK;
}

static int key_is(const char *k, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(k, name, n) == 0;
}

static tb_wire_kind kind_of(const char *s, size_t n)
{
    for (int k = TB_WIRE_HELLO; k <= TB_WIRE_ERROR; k++)
        if (key_is(s, n, kind_names[k])) return (tb_wire_kind)k;
    return TB_WIRE_NONE;
}

/* An unsigned protocol number: must be an integer >= 0. */
static int peek_u64(rd *r, const char *key, uint64_t *out, int *has)
{
    int64_t v;
    int is;
    size_t at = r->off;
    int rc = rd_int(r, &v, &is);
    if (rc) return rc;
    if (!is || v < 0)
        return TB_ERR(TB_EFORMAT, "field '%s' at byte %zu must be an integer >= 0", key, at);
    *out = (uint64_t)v;
    *has = 1;
    return TB_OK;
}

static int peek_str(rd *r, const char *key, const char **s, size_t *n)
{
    int is;
    size_t at = r->off;
    int rc = rd_bytes(r, s, n, &is);
    if (rc) return rc;
    if (!is) return TB_ERR(TB_EFORMAT, "field '%s' at byte %zu must be a string", key, at);
    return TB_OK;
}

int tb_wire_peek(const void *data, size_t len, tb_wire_hdr *h)
{
    memset(h, 0, sizeof *h);
    rd r = {.p = data, .len = len, .off = 0};
    int rc = TB_OK;
    if (!data || len == 0) return TB_ERR(TB_EFORMAT, "empty message: expected a msgpack map");
    uint8_t t = r.p[0];
    uint64_t n;
    if ((t & 0xf0) == 0x80) {
        n = t & 0x0f;
        r.off = 1;
    } else if (t == 0xde || t == 0xdf) {
        r.off = 1;
        if ((rc = rd_len(&r, t == 0xde ? 2 : 4, &n))) return rc;
    } else {
        return TB_ERR(TB_EFORMAT, "message is not a msgpack map (first byte 0x%02x)", t);
    }
    if (n > (len - r.off) / 2)
        return TB_ERR(TB_EFORMAT, "message map declares %llu entries, more than its %zu bytes allow",
                      (unsigned long long)n, len);
    const char *msg = NULL;
    size_t msg_len = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        int is;
        size_t at = r.off;
        if ((rc = rd_bytes(&r, &k, &kn, &is))) return rc;
        if (!is) return TB_ERR(TB_EFORMAT, "key %llu at byte %zu is not a string", (unsigned long long)i, at);
        if (key_is(k, kn, "msg")) rc = peek_str(&r, "msg", &msg, &msg_len);
        else if (key_is(k, kn, "stream")) rc = peek_str(&r, "stream", &h->stream, &h->stream_len);
        else if (key_is(k, kn, "consumer")) rc = peek_str(&r, "consumer", &h->consumer, &h->consumer_len);
        else if (key_is(k, kn, "error")) rc = peek_str(&r, "error", &h->error, &h->error_len);
        else if (key_is(k, kn, "seq")) rc = peek_u64(&r, "seq", &h->seq, &h->has_seq);
        else if (key_is(k, kn, "count")) rc = peek_u64(&r, "count", &h->count, &h->has_count);
        else if (key_is(k, kn, "resume")) rc = peek_u64(&r, "resume", &h->resume, &h->has_resume);
        else if (key_is(k, kn, "protocol")) rc = peek_u64(&r, "protocol", &h->protocol, &h->has_protocol);
        else if (key_is(k, kn, "total")) rc = peek_u64(&r, "total", &h->total, &h->has_total);
        else if (key_is(k, kn, "credit")) {
            uint64_t c = 0;
            rc = peek_u64(&r, "credit", &c, &h->has_credit);
            if (!rc && c > (1u << 20))
                rc = TB_ERR(TB_EFORMAT, "field 'credit' = %llu is above the limit 2^20", (unsigned long long)c);
            h->credit = (int64_t)c;
        } else if (key_is(k, kn, "fatal")) {
            uint64_t f = 0;
            int has = 0;
            rc = peek_u64(&r, "fatal", &f, &has);
            h->fatal = f != 0;
        } else rc = skip(&r, 1);
        if (rc) return rc;
    }
    if (r.off != len)
        return TB_ERR(TB_EFORMAT, "%zu stray bytes after the message map (at byte %zu)", len - r.off, r.off);
    if (!msg) return TB_ERR(TB_EFORMAT, "message has no \"msg\" field (hello, credit, ack, batch, end, heartbeat, error)");
    h->kind = kind_of(msg, msg_len);
    if (h->kind == TB_WIRE_NONE)
        return TB_ERR(TB_EFORMAT, "unknown message kind \"%.*s\"", (int)(msg_len > 32 ? 32 : msg_len), msg);
    if (!h->stream) return TB_ERR(TB_EFORMAT, "%s message has no \"stream\" field", kind_names[h->kind]);
    if ((h->kind == TB_WIRE_BATCH || h->kind == TB_WIRE_ACK) && !h->has_seq)
        return TB_ERR(TB_EFORMAT, "%s message has no \"seq\" field", kind_names[h->kind]);
    if (h->kind == TB_WIRE_END && !h->has_count)
        return TB_ERR(TB_EFORMAT, "end message has no \"count\" field");
    if (h->kind == TB_WIRE_CREDIT && !h->has_credit)
        return TB_ERR(TB_EFORMAT, "credit message has no \"credit\" field");
    return TB_OK;
}

/* ---- control messages ------------------------------------------------------------------------ */

typedef struct wr {
    uint8_t *p;
    size_t off;
} wr;

static void w_str(wr *w, const char *s, size_t n)
{
    if (n > 255) n = 255; /* control strings are short; longer error texts are cut */
    if (n < 32) {
        w->p[w->off++] = (uint8_t)(0xa0 | n);
    } else {
        w->p[w->off++] = 0xd9;
        w->p[w->off++] = (uint8_t)n;
    }
    memcpy(w->p + w->off, s, n);
    w->off += n;
}

static void w_cstr(wr *w, const char *s) { w_str(w, s, strlen(s)); }

static void w_uint(wr *w, uint64_t v)
{
    if (v <= 0x7f) {
        w->p[w->off++] = (uint8_t)v;
        return;
    }
    w->p[w->off++] = 0xcf;
    for (int i = 7; i >= 0; i--) w->p[w->off++] = (uint8_t)(v >> (8 * i));
}

size_t tb_wire_ctl(uint8_t *out, const tb_wire_hdr *h)
{
    /* Worst case: 10 keys of < 10 bytes, a kind, two ids of < 64 bytes, an error of <= 255 bytes, 8 uints
     * of 9 bytes: under 600 bytes. */
    wr w = {.p = out, .off = 1};
    int n = 0;
    w_cstr(&w, "msg"), w_cstr(&w, tb_wire_kind_name(h->kind)), n++;
    if (h->stream) w_cstr(&w, "stream"), w_str(&w, h->stream, h->stream_len), n++;
    if (h->consumer) w_cstr(&w, "consumer"), w_str(&w, h->consumer, h->consumer_len), n++;
    if (h->has_seq) w_cstr(&w, "seq"), w_uint(&w, h->seq), n++;
    if (h->has_count) w_cstr(&w, "count"), w_uint(&w, h->count), n++;
    if (h->has_credit) w_cstr(&w, "credit"), w_uint(&w, (uint64_t)h->credit), n++;
    if (h->has_resume) w_cstr(&w, "resume"), w_uint(&w, h->resume), n++;
    if (h->has_protocol) w_cstr(&w, "protocol"), w_uint(&w, h->protocol), n++;
    if (h->has_total) w_cstr(&w, "total"), w_uint(&w, h->total), n++;
    if (h->error) w_cstr(&w, "error"), w_str(&w, h->error, h->error_len), n++;
    if (h->fatal) w_cstr(&w, "fatal"), w_uint(&w, 1), n++;
    out[0] = (uint8_t)(0x80 | n);
    return w.off;
}

/* ---- CRC-32C --------------------------------------------------------------------------------- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= c;
        c = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^ crc_table[5][(v >> 16) & 0xff] ^
            crc_table[4][(v >> 24) & 0xff] ^ crc_table[3][(v >> 32) & 0xff] ^
            crc_table[2][(v >> 40) & 0xff] ^ crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

uint32_t tb_crc32c(uint32_t crc, const void *p, size_t n)
{
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc_hw(c, p, n);
#endif
    pthread_once(&crc_once, crc_init);
    return ~crc_soft(c, p, n);
}
