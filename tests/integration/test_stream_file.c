/* test_stream_file.c - message files: CRC-32C known answers, record/replay round trip (checked
 * in C and by an independent Python reader with msgpack-numpy), truncation and corruption. */
#include "proc.h"
#include "tb/base/error.h"
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Test payload of message `seq`: x = f32[n] with n = 1 + (7 seq) % 64, values hashed from
 * (seq, i); "tag" = "m<seq>"; "n" = n. Recomputed independently by the readers. */
static int64_t len_of(uint64_t seq) { return 1 + (int64_t)((seq * 7) % 64); }
static float val_of(uint64_t seq, int64_t i)
{
    return (float)((seq * 2654435761u + (uint64_t)i * 40503u) % 10007u) / 7.0f - 700.0f;
}

static void make_msg(tb_msg *m, uint64_t seq)
{
    tb_msg_init(m);
    int64_t n = len_of(seq);
    tb_tensor t;
    cr_assert_eq(tb_tensor_alloc(&t, TB_F32, 1, &n), TB_OK);
    for (int64_t i = 0; i < n; i++) ((float *)t.data)[i] = val_of(seq, i);
    char tag[32];
    snprintf(tag, sizeof tag, "m%llu", (unsigned long long)seq);
    cr_assert_eq(tb_msg_set_tensor_move(m, "x", &t), TB_OK);
    cr_assert_eq(tb_msg_set_str(m, "tag", tag), TB_OK);
    cr_assert_eq(tb_msg_set_int(m, "n", n), TB_OK);
}

static void check_msg(const tb_msg *m, uint64_t seq)
{
    int64_t s = -1, n = -1;
    const tb_tensor *x;
    const char *tag;
    char want[32];
    cr_assert_eq(tb_msg_get_int(m, "seq", &s), TB_OK);
    cr_assert_eq((uint64_t)s, seq, "seq %lld, expected %llu", (long long)s, (unsigned long long)seq);
    cr_assert_eq(tb_msg_get_int(m, "n", &n), TB_OK);
    cr_assert_eq(n, len_of(seq));
    cr_assert_eq(tb_msg_get_str(m, "tag", &tag), TB_OK);
    snprintf(want, sizeof want, "m%llu", (unsigned long long)seq);
    cr_assert_str_eq(tag, want);
    cr_assert_eq(tb_msg_get_tensor(m, "x", &x), TB_OK);
    cr_assert_eq(x->dtype, TB_F32);
    cr_assert_eq(x->ndim, 1);
    cr_assert_eq(x->shape[0], n);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(((const float *)x->data)[i], val_of(seq, i), "seq %llu element %lld", (unsigned long long)seq,
                     (long long)i);
}

static void write_file(const char *path, uint64_t count, int finish)
{
    tb_stream *s;
    cr_assert_eq(tb_stream_open(&s, path, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    for (uint64_t q = 0; q < count; q++) {
        tb_msg m;
        make_msg(&m, q);
        uint64_t got;
        cr_assert_eq(tb_stream_send(s, &m, &got), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(got, q);
        tb_msg_free(&m);
    }
    if (finish) cr_assert_eq(tb_stream_finish(s), TB_OK, "%s", tb_err_msg());
    tb_stream_close(s);
}

/* Reads the whole file; returns the status that stopped it and the count read. */
static int read_file(const char *path, uint64_t *count)
{
    tb_stream *s;
    int rc = tb_stream_open(&s, path, TB_STREAM_READ, NULL);
    *count = 0;
    if (rc) return rc;
    for (;;) {
        tb_msg m;
        rc = tb_stream_recv(s, &m, -1);
        if (rc) break;
        check_msg(&m, *count);
        tb_msg_free(&m);
        (*count)++;
    }
    tb_stream_close(s);
    return rc;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

Test(stream_file, crc32c_known_answers)
{
    /* RFC 3720 (iSCSI) B.4 and the common check value of CRC-32C. */
    cr_assert_eq(tb_crc32c(0, "123456789", 9), 0xe3069283u);
    uint8_t zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++) inc[i] = (uint8_t)i;
    cr_assert_eq(tb_crc32c(0, zeros, 32), 0x8a9136aau);
    cr_assert_eq(tb_crc32c(0, ones, 32), 0x62a8ab43u);
    cr_assert_eq(tb_crc32c(0, inc, 32), 0x46dd794eu);
    /* Continuing a CRC over two pieces equals one pass. */
    cr_assert_eq(tb_crc32c(tb_crc32c(0, "12345", 5), "6789", 4), 0xe3069283u);
}

Test(stream_file, round_trip_and_python_reader)
{
    char dir[64], path[128], ep[160];
    cr_assert(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/rec.tbm", dir);
    snprintf(ep, sizeof ep, "file:%s", path);
    write_file(ep, 500, 1);
    uint64_t n;
    int rc = read_file(path, &n); /* a plain path works too */
    cr_assert_eq(rc, TB_EEND, "%s", tb_err_msg());
    cr_assert_eq(n, 500);

    /* Resume in the middle of a file. */
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.resume_from = 321;
    tb_stream *s;
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_READ, &o), TB_OK, "%s", tb_err_msg());
    tb_msg m;
    cr_assert_eq(tb_stream_recv(s, &m, -1), TB_OK, "%s", tb_err_msg());
    check_msg(&m, 321);
    tb_msg_free(&m);
    tb_stream_close(s);

    /* An independent reader: the format from docs/protocol.md, CRC-32C bit by bit, msgpack-numpy. */
    char script[128];
    snprintf(script, sizeof script, "%s/read.py", dir);
    FILE *f = fopen(script, "w");
    cr_assert(f);
    fputs("import struct, sys, msgpack, msgpack_numpy, numpy as np\n"
          "def crc32c(b):\n"
          "    c = 0xffffffff\n"
          "    for x in b:\n"
          "        c ^= x\n"
          "        for _ in range(8): c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)\n"
          "    return c ^ 0xffffffff\n"
          "d = open(sys.argv[1], 'rb').read()\n"
          "assert d[:8] == b'TBSTRM\\r\\n' and struct.unpack('<II', d[8:16]) == (1, 0)\n"
          "off, n = 16, 0\n"
          "while True:\n"
          "    mark, kind, ln, pc, hc = struct.unpack('<IIQII', d[off:off+24])\n"
          "    assert mark == 0x31524254 and hc == crc32c(d[off:off+20])\n"
          "    p = d[off+24:off+24+ln]; assert len(p) == ln and pc == crc32c(p)\n"
          "    off += 24 + ln\n"
          "    if kind == 2:\n"
          "        assert struct.unpack('<Q', p)[0] == n and off == len(d); break\n"
          "    m = msgpack.unpackb(p, object_hook=msgpack_numpy.decode, raw=False)\n"
          "    ln = 1 + (7 * n) % 64\n"
          "    want = ((n * 2654435761 + np.arange(ln, dtype=np.uint64) * 40503) % 10007).astype(np.float32) / np.float32(7) - np.float32(700)\n"
          "    assert m['msg'] == 'batch' and m['stream'] == 'main' and m['seq'] == n, m\n"
          "    assert m['tag'] == 'm%d' % n and m['n'] == ln\n"
          "    assert m['x'].dtype == np.float32 and np.array_equal(m['x'], want), (n, m['x'], want)\n"
          "    n += 1\n"
          "print('OK', n)\n",
          f);
    fclose(f);
    char cmd[512], out[64] = "";
    snprintf(cmd, sizeof cmd, "%s %s %s", TB_PYTHON, script, path);
    FILE *pp = popen(cmd, "r");
    cr_assert(pp);
    if (!fgets(out, sizeof out, pp)) out[0] = '\0';
    int st = pclose(pp);
    cr_assert_eq(st, 0, "python reader failed (%d): %s", st, out);
    cr_assert_str_eq(out, "OK 500\n");
    tb_proc_rmdir(dir);
}

Test(stream_file, truncation_and_corruption_are_detected)
{
    char dir[64], path[128], cut[160];
    cr_assert(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/rec.tbm", dir);
    snprintf(cut, sizeof cut, "%s/cut.tbm", dir);
    write_file(path, 40, 1);
    long size = file_size(path);
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    uint8_t *all = malloc((size_t)size);
    cr_assert_eq(fread(all, 1, (size_t)size, f), (size_t)size);
    fclose(f);

    /* Every cut point: never a crash, always a format error before the end, and only messages
     * that were complete come out. */
    for (long at = 0; at < size; at += (at < 64 ? 1 : 37)) {
        f = fopen(cut, "wb");
        cr_assert(f);
        cr_assert_eq(fwrite(all, 1, (size_t)at, f), (size_t)at);
        fclose(f);
        uint64_t n;
        int rc = read_file(cut, &n);
        cr_assert_eq(rc, TB_EFORMAT, "cut at %ld: %s (%s)", at, tb_status_name(rc), tb_err_msg());
        if (at < size - 32) cr_assert_lt(n, 40, "cut at %ld inside the messages, yet all 40 came out", at);
        else cr_assert_eq(n, 40); /* the cut is inside the 32-byte END record */
    }
    /* No END record: the message says so. */
    f = fopen(cut, "wb");
    cr_assert_eq(fwrite(all, 1, (size_t)size - 32, f), (size_t)size - 32);
    fclose(f);
    uint64_t n;
    cr_assert_eq(read_file(cut, &n), TB_EFORMAT);
    cr_assert_eq(n, 40);
    cr_assert(strstr(tb_err_msg(), "without an END record"), "%s", tb_err_msg());

    /* One flipped bit in a payload: a checksum error naming the record. */
    all[size / 2] ^= 0x10;
    f = fopen(cut, "wb");
    cr_assert_eq(fwrite(all, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    cr_assert_eq(read_file(cut, &n), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "corrupted"), "%s", tb_err_msg());
    cr_assert_lt(n, 40);

    /* Not a message file at all. */
    f = fopen(cut, "wb");
    fputs("hello, world\nthis is text\n", f);
    fclose(f);
    cr_assert_eq(read_file(cut, &n), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "not a tinybert-c message file"), "%s", tb_err_msg());

    /* A writer that never finished leaves the file it would have replaced as it was (it wrote
     * under a temporary name), and no partial file anywhere. */
    write_file(path, 10, 0);
    cr_assert_eq(read_file(path, &n), TB_EEND, "%s", tb_err_msg());
    cr_assert_eq(n, 40);
    cr_assert_eq(file_size(path), size);
    write_file(cut, 10, 0);
    cr_assert_eq(read_file(cut, &n), TB_EFORMAT); /* the text file written above, untouched */
    cr_assert(strstr(tb_err_msg(), "not a tinybert-c message file"), "%s", tb_err_msg());
    free(all);
    tb_proc_rmdir(dir);
}

Test(stream_file, bad_endpoints)
{
    tb_stream *s;
    cr_assert_eq(tb_stream_open(&s, "udp://1.2.3.4:5", TB_STREAM_READ, NULL), TB_EUNSUPPORTED);
    cr_assert(strstr(tb_err_msg(), "unknown transport"), "%s", tb_err_msg());
    cr_assert_eq(tb_stream_open(&s, "", TB_STREAM_READ, NULL), TB_EINVAL);
    cr_assert_eq(tb_stream_open(&s, "/nonexistent/dir/x.tbm", TB_STREAM_READ, NULL), TB_EIO);
    cr_assert_null(s);
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.heartbeat_ms = 0;
    cr_assert_eq(tb_stream_open(&s, "ipc:///tmp/x", TB_STREAM_READ, &o), TB_EINVAL);
}
