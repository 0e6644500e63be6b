/* textin.c - see textin.h. */
#include "textin.h"

#include "tb/base/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tb_textin_is_stream(const char *input)
{
    return strncmp(input, "tcp://", 6) == 0 || strncmp(input, "ipc://", 6) == 0 || strncmp(input, "file:", 5) == 0;
}

/* Field `key` of text message `seq` as a str: TB_EFORMAT naming the message when absent or not a
 * str (unless `optional` and absent: *out = NULL). */
static int text_field(const tb_msg *m, const char *endpoint, uint64_t seq, const char *key, int optional,
                      const char **out, size_t *len)
{
    const tb_field *f = tb_msg_find(m, key);
    *out = NULL;
    if (!f && optional) return TB_OK;
    if (!f)
        return TB_ERR(TB_EFORMAT, "%s: text message %llu: field '%s' is missing", endpoint, (unsigned long long)seq,
                      key);
    if (f->kind != TB_VAL_STR)
        return TB_ERR(TB_EFORMAT, "%s: text message %llu: field '%s' must be a str", endpoint, (unsigned long long)seq,
                      key);
    *out = f->v.str.ptr;
    if (len) *len = f->v.str.len;
    return TB_OK;
}

/* Checks text message `seq` against the stream's format and first header and appends its rows to
 * `out`; the first message (seq 0) writes the header line and sets *header. */
static int write_message(FILE *out, const tb_msg *m, const char *endpoint, uint64_t seq, const char *format,
                         char **header)
{
    int rc = TB_OK;
    const char *fmt, *hdr, *rows;
    size_t hlen = 0, rlen = 0;
    TB_TRY(text_field(m, endpoint, seq, "format", 0, &fmt, NULL));
    TB_TRY(text_field(m, endpoint, seq, "header", 1, &hdr, &hlen));
    TB_TRY(text_field(m, endpoint, seq, "rows", 0, &rows, &rlen));
    if (strcmp(fmt, format) != 0)
        return TB_ERR(TB_EFORMAT, "%s: text message %llu: format '%s', but --format is %s", endpoint,
                      (unsigned long long)seq, fmt, format);
    if (hdr && (memchr(hdr, '\n', hlen) || memchr(hdr, 0, hlen)))
        return TB_ERR(TB_EFORMAT, "%s: text message %llu: 'header' must be one line", endpoint,
                      (unsigned long long)seq);
    if (rlen && rows[rlen - 1] != '\n')
        return TB_ERR(TB_EFORMAT, "%s: text message %llu: 'rows' must end with a newline", endpoint,
                      (unsigned long long)seq);
    if (memchr(rows, 0, rlen))
        return TB_ERR(TB_EFORMAT, "%s: text message %llu: 'rows' holds a NUL byte", endpoint, (unsigned long long)seq);
    if (seq == 0) {
        if (hdr) {
            *header = strdup(hdr);
            if (!*header) return TB_ERR(TB_ENOMEM, "%s: out of memory", endpoint);
            if (fprintf(out, "%s\n", hdr) < 0) return TB_ERR(TB_EIO, "%s: cannot write the rows: %s", endpoint, strerror(errno));
        }
    } else if ((hdr == NULL) != (*header == NULL) || (hdr && strcmp(hdr, *header) != 0)) {
        return TB_ERR(TB_EFORMAT, "%s: text message %llu: 'header' differs from message 0's", endpoint,
                      (unsigned long long)seq);
    }
    if (rlen && fwrite(rows, 1, rlen, out) != rlen)
        return TB_ERR(TB_EIO, "%s: cannot write the rows: %s", endpoint, strerror(errno));
error:
    return rc;
}

int tb_textin_fetch(const char *endpoint, const char *format, const tb_stream_opts *so, char *path, size_t n)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    FILE *out = NULL;
    char *header = NULL;
    tb_msg m;
    tb_msg_init(&m);
    path[0] = 0;
    const char *tmpdir = getenv("TMPDIR");
    if (!tmpdir || !*tmpdir) tmpdir = "/tmp";
    TB_CHECK((size_t)snprintf(path, n, "%s/tb-tokenize-XXXXXX", tmpdir) < n, TB_EINVAL, "%s: temporary path too long",
             tmpdir);
    if (!mkdtemp(path)) {
        rc = TB_ERR(TB_EIO, "cannot make a temporary folder '%s': %s", path, strerror(errno));
        path[0] = 0;
        goto error;
    }
    size_t dl = strlen(path);
    TB_CHECK(dl + sizeof "/rows.txt" <= n, TB_EINVAL, "%s: temporary path too long", path);
    memcpy(path + dl, "/rows.txt", sizeof "/rows.txt");
    out = fopen(path, "wb");
    TB_CHECK(out, TB_EIO, "cannot create '%s': %s", path, strerror(errno));
    TB_TRY(tb_stream_open(&s, endpoint, TB_STREAM_READ, so));
    for (;;) {
        rc = tb_stream_recv(s, &m, -1);
        if (rc == TB_EEND) break;
        if (rc) goto error;
        int64_t seq;
        TB_TRY(tb_msg_get_int(&m, "seq", &seq));
        TB_TRY(write_message(out, &m, endpoint, (uint64_t)seq, format, &header));
        tb_msg_free(&m);
    }
    rc = TB_OK;
    int cl = fclose(out);
    out = NULL;
    TB_CHECK(cl == 0, TB_EIO, "cannot write '%s': %s", path, strerror(errno));
error:
    tb_msg_free(&m);
    tb_stream_close(s);
    if (out) fclose(out);
    free(header);
    if (rc) {
        tb_textin_remove(path);
        path[0] = 0;
    }
    return rc;
}

void tb_textin_remove(const char *path)
{
    if (!path || !*path) return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && strcmp(slash, "/rows.txt") == 0) {
        unlink(path);
        *slash = 0;
    }
    rmdir(dir);
}
