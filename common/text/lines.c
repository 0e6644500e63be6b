/* lines.c - a text file as lines: whole-file read, byte order mark, line iteration, validity of
 * a line (lines.h). */
#include "lines.h"

#include "tb/base/error.h"
#include "tb/text/basic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tb_lines_slurp(const char *path, char **buf, size_t *len)
{
    int rc = TB_OK;
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    TB_CHECK(f, TB_EIO, "cannot open %s: %s", path, strerror(errno));
    TB_CHECK(fseek(f, 0, SEEK_END) == 0, TB_EIO, "cannot seek in %s: %s", path, strerror(errno));
    long n = ftell(f);
    TB_CHECK(n >= 0 && fseek(f, 0, SEEK_SET) == 0, TB_EIO, "cannot size %s: %s", path, strerror(errno));
    *buf = malloc((size_t)n + 1);
    TB_CHECK(*buf, TB_ENOMEM, "out of memory reading %s (%ld bytes)", path, n);
    TB_CHECK(fread(*buf, 1, (size_t)n, f) == (size_t)n, TB_EIO, "cannot read %s: %s", path, strerror(errno));
    (*buf)[n] = '\0';
    *len = (size_t)n;
    fclose(f);
    return TB_OK;
error:
    free(*buf);
    *buf = NULL;
    if (f) fclose(f);
    return rc;
}

int tb_lines_next(const char *buf, size_t len, size_t *pos, const char **line, size_t *n)
{
    if (*pos >= len) return 0;
    const char *s = buf + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t l = nl ? (size_t)(nl - s) : len - *pos;
    *pos += l + (nl ? 1 : 0);
    if (l > 0 && s[l - 1] == '\r') l--;
    *line = s;
    *n = l;
    return 1;
}

size_t tb_lines_bom(const char *buf, size_t len)
{
    return len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

int tb_lines_valid(const char *s, size_t n, char *msg, size_t msgn)
{
    size_t bad = 0;
    if (memchr(s, '\0', n)) {
        snprintf(msg, msgn, "NUL byte in the row");
        return 0;
    }
    if (tb_utf8_check(s, n, &bad) != TB_OK) {
        snprintf(msg, msgn, "invalid UTF-8 at byte %zu of the row; convert the file to UTF-8", bad);
        return 0;
    }
    return 1;
}
