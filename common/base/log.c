/* log.c - leveled logging to stderr. One line per call, written with a single fputs. */
#include "tb/base/log.h"

#include "tb/base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char log_name[64] = "tb";
static tb_log_level log_level = TB_LOG_INFO;

static void (*log_before)(void *ctx);
static void *log_before_ctx;

void tb_log_set_before_write(void (*fn)(void *ctx), void *ctx)
{
    log_before = fn;
    log_before_ctx = ctx;
}

void tb_log_set_name(const char *name) { snprintf(log_name, sizeof log_name, "%s", name); }
void tb_log_set_level(tb_log_level level) { log_level = level; }
tb_log_level tb_log_get_level(void) { return log_level; }

int tb_log_parse_level(const char *s, tb_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error", "quiet"};
    for (int i = 0; i <= TB_LOG_QUIET; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (tb_log_level)i;
            return TB_OK;
        }
    return TB_ERR(TB_EINVAL, "unknown log level '%s' (use debug, info, warn, error or quiet)", s);
}

void tb_log(tb_log_level level, const char *fmt, ...)
{
    static const char *tags[] = {"debug", "info", "warn", "error"};
    if (level < log_level || level >= TB_LOG_QUIET) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char line[4096];
    int n = snprintf(line, sizeof line, "[%s] %02d:%02d:%02d.%03ld %s: ", log_name, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, tags[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1) n = (int)sizeof line - 2;
    line[n] = '\n';
    line[n + 1] = '\0';
    if (log_before) log_before(log_before_ctx);
    fputs(line, stderr);
}
