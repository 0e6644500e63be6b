/* error.c - thread-local last-error message. */
#include "tb/base/error.h"

#include <stdio.h>
#include <string.h>

#define TB_ERR_CAP 2048

static _Thread_local char tb_err_buf[TB_ERR_CAP];

static const char *const tb_status_names[TB_STATUS_COUNT] = {
    [TB_OK] = "OK",           [TB_EINVAL] = "EINVAL",     [TB_ENOMEM] = "ENOMEM",
    [TB_EIO] = "EIO",         [TB_EFORMAT] = "EFORMAT",   [TB_ESHAPE] = "ESHAPE",
    [TB_ETIMEOUT] = "ETIMEOUT", [TB_EPEER] = "EPEER",     [TB_EINTR] = "EINTR",
    [TB_ENOTFOUND] = "ENOTFOUND", [TB_EEND] = "EEND",     [TB_EUNSUPPORTED] = "EUNSUPPORTED",
};

const char *tb_status_name(int status)
{
    if (status < 0 || status >= TB_STATUS_COUNT) return "E?";
    return tb_status_names[status];
}

int tb_err_vset(int status, const char *file, int line, const char *fmt, va_list ap)
{
    const char *base = file ? strrchr(file, '/') : NULL;
    base = base ? base + 1 : (file ? file : "?");
    int n = snprintf(tb_err_buf, TB_ERR_CAP, "%s:%d: ", base, line);
    if (n < 0 || n >= TB_ERR_CAP) n = 0;
    vsnprintf(tb_err_buf + n, TB_ERR_CAP - (size_t)n, fmt, ap);
    return status;
}

int tb_err_set(int status, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tb_err_vset(status, file, line, fmt, ap);
    va_end(ap);
    return status;
}

int tb_err_wrap(int status, const char *fmt, ...)
{
    char prefix[TB_ERR_CAP];
    char old[TB_ERR_CAP];
    memcpy(old, tb_err_buf, TB_ERR_CAP);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t n = strnlen(prefix, sizeof prefix - 1);
    while (n > 0 && (prefix[n - 1] == ' ' || prefix[n - 1] == ':')) n--; /* the ": " is added here */
    memcpy(tb_err_buf, prefix, n);
    size_t k = n;
    if (k + 2 < TB_ERR_CAP) {
        tb_err_buf[k++] = ':';
        tb_err_buf[k++] = ' ';
    }
    size_t rest = strnlen(old, TB_ERR_CAP - 1);
    if (rest > TB_ERR_CAP - 1 - k) rest = TB_ERR_CAP - 1 - k;
    memcpy(tb_err_buf + k, old, rest);
    tb_err_buf[k + rest] = '\0';
    return status;
}

const char *tb_err_msg(void) { return tb_err_buf; }

void tb_err_clear(void) { tb_err_buf[0] = '\0'; }
