/* json.c - growable string buffer and JSON string/number writers. */
#include "tb/base/json.h"

#include "tb/base/error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int strbuf_reserve(tb_strbuf *b, size_t extra)
{
    if (extra > ((size_t)1 << 40) - b->len)
        return TB_ERR(TB_ENOMEM, "string buffer would exceed 1 TiB (%zu + %zu bytes)", b->len, extra);
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return TB_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return TB_ERR(TB_ENOMEM, "out of memory growing a string buffer to %zu bytes", cap);
    b->p = p;
    b->cap = cap;
    return TB_OK;
}

int tb_strbuf_append(tb_strbuf *b, const char *s, size_t n)
{
    int rc = strbuf_reserve(b, n);
    if (rc != TB_OK) return rc;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return TB_OK;
}

int tb_strbuf_puts(tb_strbuf *b, const char *s) { return tb_strbuf_append(b, s, strlen(s)); }

int tb_strbuf_printf(tb_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return TB_ERR(TB_EINVAL, "bad format string '%s'", fmt);
    int rc = strbuf_reserve(b, (size_t)n);
    if (rc != TB_OK) return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return TB_OK;
}

int tb_strbuf_take(tb_strbuf *b, char **out)
{
    int rc = strbuf_reserve(b, 0);
    if (rc != TB_OK) return rc;
    b->p[b->len] = '\0'; /* an empty buffer was never written to */
    *out = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return TB_OK;
}

void tb_strbuf_free(tb_strbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int tb_json_append_string(tb_strbuf *b, const char *s)
{
    if (!s) return tb_strbuf_puts(b, "null");
    int rc = tb_strbuf_append(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; rc == TB_OK && *c; c++) {
        switch (*c) {
        case '"': rc = tb_strbuf_append(b, "\\\"", 2); break;
        case '\\': rc = tb_strbuf_append(b, "\\\\", 2); break;
        case '\n': rc = tb_strbuf_append(b, "\\n", 2); break;
        case '\r': rc = tb_strbuf_append(b, "\\r", 2); break;
        case '\t': rc = tb_strbuf_append(b, "\\t", 2); break;
        case '\b': rc = tb_strbuf_append(b, "\\b", 2); break;
        case '\f': rc = tb_strbuf_append(b, "\\f", 2); break;
        default:
            if (*c < 0x20) rc = tb_strbuf_printf(b, "\\u%04x", *c);
            else rc = tb_strbuf_append(b, (const char *)c, 1);
        }
    }
    if (rc == TB_OK) rc = tb_strbuf_append(b, "\"", 1);
    return rc;
}

int tb_json_append_float(tb_strbuf *b, double v)
{
    if (!isfinite(v)) return tb_strbuf_puts(b, "null");
    return tb_strbuf_printf(b, "%.9g", v);
}
