/* linein.c - lines of a file or standard input, read in chunks as they arrive (linein.h). */
#include "linein.h"

#include "tb/base/error.h"
#include "tb/base/signals.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_BYTES ((size_t)64 << 20)

int pr_lines_open(pr_lines *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    if (strcmp(path, "-") == 0) {
        r->fd = 0;
        snprintf(r->name, sizeof r->name, "stdin");
        return TB_OK;
    }
    snprintf(r->name, sizeof r->name, "%s", path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) return TB_ERR(TB_EIO, "cannot open %s: %s", path, strerror(errno));
    r->own_fd = 1;
    return TB_OK;
}

void pr_lines_close(pr_lines *r)
{
    if (r->own_fd && r->fd >= 0) close(r->fd);
    free(r->buf);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

/* 1 when a read would not block (data or the end of the input is there). */
static int readable_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Reads more bytes after the buffered ones (moving them to the front, growing the buffer). */
static int fill(pr_lines *r)
{
    int rc = TB_OK;
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len == r->cap) {
        TB_CHECK(r->cap < LINE_MAX_BYTES, TB_EFORMAT, "%s:%lld: line is longer than %zu MiB", r->name,
                 (long long)r->lineno + 1, LINE_MAX_BYTES >> 20);
        size_t cap = r->cap ? r->cap * 2 : 65536;
        char *p = realloc(r->buf, cap);
        TB_CHECK(p, TB_ENOMEM, "out of memory reading %s", r->name);
        r->buf = p;
        r->cap = cap;
    }
    for (;;) {
        ssize_t k = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (k > 0) {
            r->len += (size_t)k;
            break;
        }
        if (k == 0) {
            r->eof = 1;
            break;
        }
        TB_CHECK(errno == EINTR, TB_EIO, "cannot read %s: %s", r->name, strerror(errno));
        TB_CHECK(!tb_signals_pending(), TB_EINTR, "interrupted while reading %s", r->name);
    }
error:
    return rc;
}

/* Hands out buf[pos .. pos + n) as the next line, ending at `end` (the "\n" or the buffer end). */
static void take(pr_lines *r, size_t end, const char **s, size_t *n)
{
    char *p = r->buf + r->pos;
    size_t k = end - r->pos;
    if (r->lineno == 0 && k >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
        p += 3;
        k -= 3;
    }
    if (k > 0 && p[k - 1] == '\r') k--;
    *s = p;
    *n = k;
    r->lineno++;
    r->pos = end < r->len ? end + 1 : end;
}

int pr_lines_next(pr_lines *r, int wait, const char **s, size_t *n, int *got)
{
    int rc = TB_OK;
    *got = 0;
    for (;;) {
        char *nl = r->pos < r->len ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
        if (nl) {
            take(r, (size_t)(nl - r->buf), s, n);
            *got = 1;
            return TB_OK;
        }
        if (r->eof) {
            if (r->pos < r->len) {
                take(r, r->len, s, n);
                *got = 1;
            }
            return TB_OK;
        }
        TB_CHECK(!tb_signals_pending(), TB_EINTR, "interrupted while reading %s", r->name);
        if (!wait && !readable_now(r->fd)) return TB_OK;
        TB_TRY(fill(r));
    }
error:
    return rc;
}
