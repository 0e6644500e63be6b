/* stream_file.c - message files: the same messages as a ZeroMQ stream, recorded for replay.
 *
 * Layout (little-endian), see docs/protocol.md:
 *   header  "TBSTRM\r\n" (8 bytes), u32 version = 1, u32 reserved = 0
 *   record  u32 marker "TBR1", u32 kind (1 message, 2 end), u64 payload length,
 *           u32 CRC-32C of the payload, u32 CRC-32C of the 20 bytes before it, payload
 *   the END record's payload is the u64 message count.
 * A writer writes PATH.tmp-<pid> and renames it to PATH after the END record (tb/base/outfile.h):
 * a failed or interrupted writer leaves an existing PATH as it was.
 */
#include "stream_internal.h"

#include "tb/base/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char file_magic[8] = {'T', 'B', 'S', 'T', 'R', 'M', '\r', '\n'};
#define FILE_VERSION 1u
#define REC_MARKER 0x31524254u /* "TBR1" */
#define REC_HDR 24
enum { REC_MSG = 1, REC_END = 2 };

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

static int write_all(tb_stream *s, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, s->f) != n)
        return TB_ERR(TB_EIO, "cannot write message file %s at byte %llu: %s (disk full?)", s->endpoint,
                      (unsigned long long)s->file_off, strerror(errno));
    s->file_off += n;
    return TB_OK;
}

static int write_record(tb_stream *s, uint32_t kind, const void *payload, uint64_t len)
{
    uint8_t h[REC_HDR];
    put32(h, REC_MARKER);
    put32(h + 4, kind);
    put64(h + 8, len);
    put32(h + 16, tb_crc32c(0, payload, len));
    put32(h + 20, tb_crc32c(0, h, 20));
    int rc = write_all(s, h, sizeof h);
    if (rc) return rc;
    return write_all(s, payload, len);
}

int tb_stream_file_open(tb_stream *s, const char *path)
{
    int rc = TB_OK;
    TB_CHECK(*path, TB_EINVAL, "message file path is empty");
    snprintf(s->endpoint, sizeof s->endpoint, "%s", path);
    if (s->mode == TB_STREAM_WRITE) {
        TB_TRY(tb_outfile_open(&s->out, path)); /* PATH itself appears only when finish renames */
        s->f = s->out.f;
        uint8_t h[16];
        memcpy(h, file_magic, 8);
        put32(h + 8, FILE_VERSION);
        put32(h + 12, 0);
        TB_TRY(write_all(s, h, sizeof h));
        return TB_OK;
    }
    s->f = fopen(path, "rb");
    TB_CHECK(s->f, TB_EIO, "cannot open message file %s: %s", path, strerror(errno));
    struct stat st;
    TB_CHECK(fstat(fileno(s->f), &st) == 0, TB_EIO, "cannot stat message file %s: %s", path, strerror(errno));
    s->file_size = (uint64_t)st.st_size;
    uint8_t h[16];
    TB_CHECK(fread(h, 1, sizeof h, s->f) == sizeof h, TB_EFORMAT,
             "%s is not a tinybert-c message file: shorter than its 16-byte header", path);
    TB_CHECK(memcmp(h, file_magic, 8) == 0, TB_EFORMAT,
             "%s is not a tinybert-c message file (bad magic; expected \"TBSTRM\\r\\n\")", path);
    TB_CHECK(get32(h + 8) == FILE_VERSION, TB_EFORMAT, "%s: message file version %u, this build reads %u",
             path, get32(h + 8), FILE_VERSION);
    s->file_off = sizeof h;
    /* Skip to the requested position by reading (and checking) the records before it. */
    uint64_t want = s->o.resume_from;
    s->next_seq = 0;
    s->o.resume_from = 0;
    while (s->next_seq < want) {
        tb_msg m;
        rc = tb_stream_file_recv(s, &m);
        tb_msg_free(&m);
        if (rc == TB_EEND)
            rc = TB_ERR(TB_EINVAL, "%s: cannot resume from message %llu: the file holds %llu", path,
                        (unsigned long long)want, (unsigned long long)s->next_seq);
        if (rc) goto error;
    }
error:
    return rc;
}

int tb_stream_file_send(tb_stream *s, tb_msg *m, uint64_t *seq)
{
    int rc = TB_OK;
    uint64_t q = s->next_seq;
    TB_TRY(tb_msg_set_str(m, "msg", "batch"));
    TB_TRY(tb_msg_set_str(m, "stream", s->stream_id));
    TB_TRY(tb_msg_set_int(m, "seq", (int64_t)q));
    TB_TRY(tb_codec_encode(m, &s->buf));
    TB_TRY(write_record(s, REC_MSG, s->buf.data, s->buf.len));
    s->next_seq++;
    s->stats.sent++;
    if (seq) *seq = q;
error:
    return rc;
}

int tb_stream_file_finish(tb_stream *s)
{
    int rc = TB_OK;
    uint8_t p[8];
    TB_CHECK(s->f, TB_EIO, "message file %s: an earlier attempt to finish it failed", s->endpoint);
    put64(p, s->next_seq);
    TB_TRY(write_record(s, REC_END, p, sizeof p));
    s->ended = 1;
    s->f = NULL;
    rc = tb_outfile_commit(&s->out); /* flush, fsync, close, rename over PATH */
    if (rc) {
        tb_err_wrap(rc, "message file %s", s->endpoint);
        goto error;
    }
    s->ended = 1;
    s->finished = 1;
error:
    return rc;
}

static void free_buf(void *hold, void *ctx)
{
    (void)ctx;
    tb_aligned_free(hold);
}

int tb_stream_file_recv(tb_stream *s, tb_msg *out)
{
    int rc = TB_OK;
    tb_buf b;
    tb_buf_init(&b);
    tb_msg_init(out);
    uint64_t at = s->file_off, n = s->next_seq;
    uint8_t h[REC_HDR];
    size_t got = fread(h, 1, sizeof h, s->f);
    TB_CHECK(got != 0, TB_EFORMAT,
             "%s ends after %llu messages at byte %llu without an END record: the file is truncated "
             "or its writer did not finish", s->endpoint, (unsigned long long)n, (unsigned long long)at);
    TB_CHECK(got == sizeof h, TB_EFORMAT, "%s: record %llu at byte %llu is truncated (header has %zu of %d bytes)",
             s->endpoint, (unsigned long long)n, (unsigned long long)at, got, REC_HDR);
    TB_CHECK(get32(h) == REC_MARKER && get32(h + 20) == tb_crc32c(0, h, 20), TB_EFORMAT,
             "%s: record %llu at byte %llu has a corrupted header (bad marker or checksum)", s->endpoint,
             (unsigned long long)n, (unsigned long long)at);
    uint32_t kind = get32(h + 4);
    uint64_t len = get64(h + 8);
    uint64_t left = s->file_size - at - REC_HDR;
    TB_CHECK(len <= left, TB_EFORMAT,
             "%s: record %llu at byte %llu is truncated: it declares %llu bytes, the file has %llu left",
             s->endpoint, (unsigned long long)n, (unsigned long long)at, (unsigned long long)len,
             (unsigned long long)left);
    TB_CHECK(kind == REC_MSG || kind == REC_END, TB_EFORMAT, "%s: record %llu at byte %llu has unknown kind %u",
             s->endpoint, (unsigned long long)n, (unsigned long long)at, kind);
    TB_TRY(tb_buf_reserve(&b, len ? len : 1));
    TB_CHECK(fread(b.data, 1, len, s->f) == len, TB_EIO, "%s: cannot read record %llu at byte %llu: %s",
             s->endpoint, (unsigned long long)n, (unsigned long long)at, strerror(errno));
    b.len = len;
    s->file_off += REC_HDR + len;
    uint32_t crc = tb_crc32c(0, b.data, len);
    TB_CHECK(crc == get32(h + 16), TB_EFORMAT,
             "%s: record %llu at byte %llu is corrupted (CRC-32C %08x, stored %08x)", s->endpoint,
             (unsigned long long)n, (unsigned long long)at, crc, get32(h + 16));
    if (kind == REC_END) {
        TB_CHECK(len == 8, TB_EFORMAT, "%s: END record at byte %llu has %llu bytes, expected 8", s->endpoint,
                 (unsigned long long)at, (unsigned long long)len);
        uint64_t count = get64(b.data);
        TB_CHECK(count == n, TB_EFORMAT, "%s: END record says %llu messages, but the file holds %llu",
                 s->endpoint, (unsigned long long)count, (unsigned long long)n);
        TB_CHECK(s->file_off == s->file_size, TB_EFORMAT,
                 "%s: %llu unexpected bytes after the END record, from byte %llu (the file was appended to or "
                 "corrupted; a message file ends with its END record)", s->endpoint,
                 (unsigned long long)(s->file_size - s->file_off), (unsigned long long)s->file_off);
        s->ended = 1;
        rc = TB_ERR(TB_EEND, "stream %s: end reached after %llu messages", s->endpoint, (unsigned long long)n);
        goto error;
    }
    TB_TRY(tb_codec_decode(b.data, b.len, out, 0, NULL));
    tb_msg_hold(out, b.data, free_buf, NULL);
    tb_buf_init(&b);
    int64_t seq = -1;
    rc = tb_msg_get_int(out, "seq", &seq);
    TB_CHECK(rc == TB_OK && seq == (int64_t)n, TB_EFORMAT, "%s: record %llu at byte %llu carries seq %lld, expected %llu",
             s->endpoint, (unsigned long long)n, (unsigned long long)at, (long long)seq, (unsigned long long)n);
    s->next_seq++;
    s->stats.received++;
    return TB_OK;
error:
    tb_msg_free(out);
    tb_buf_free(&b);
    return rc;
}

int tb_stream_file_count(tb_stream *s, uint64_t *out)
{
    int rc = TB_OK;
    uint8_t r[REC_HDR + 8];
    uint64_t at = s->file_size - sizeof r;
    TB_CHECK(s->file_size >= 16 + sizeof r, TB_EFORMAT,
             "%s ends at byte %llu without an END record: the file is truncated or its writer did not finish",
             s->endpoint, (unsigned long long)s->file_size);
    TB_CHECK(pread(fileno(s->f), r, sizeof r, (off_t)at) == (ssize_t)sizeof r, TB_EIO,
             "%s: cannot read its END record at byte %llu: %s", s->endpoint, (unsigned long long)at, strerror(errno));
    TB_CHECK(get32(r) == REC_MARKER && get32(r + 20) == tb_crc32c(0, r, 20) && get32(r + 4) == REC_END &&
                 get64(r + 8) == 8 && get32(r + 16) == tb_crc32c(0, r + REC_HDR, 8),
             TB_EFORMAT,
             "%s does not end with an END record (byte %llu): the file is truncated or its writer did not finish",
             s->endpoint, (unsigned long long)at);
    *out = get64(r + REC_HDR);
error:
    return rc;
}

void tb_stream_file_close(tb_stream *s)
{
    if (s->mode == TB_STREAM_WRITE) { /* not finished: the temporary goes, an existing PATH stays */
        s->f = NULL;
        tb_outfile_abort(&s->out);
        return;
    }
    if (s->f) fclose(s->f);
    s->f = NULL;
}
