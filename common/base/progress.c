/* progress.c - live bar on a terminal, plain lines otherwise. */
#include "tb/base/progress.h"

#include "tb/base/error.h"
#include "tb/base/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_BAR_INTERVAL 0.1 /* at most 10 redraws a second */
#define PROGRESS_BAR_WIDTH 24

static double progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int tb_progress_parse_mode(const char *s, tb_progress_mode *out)
{
    static const char *names[] = {"auto", "bar", "plain", "none"};
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (tb_progress_mode)i;
            return TB_OK;
        }
    return TB_ERR(TB_EINVAL, "--progress: unknown mode '%s' (use auto, bar, plain or none)", s ? s : "(null)");
}

static tb_progress_mode progress_resolve(tb_progress_mode mode, FILE *out)
{
    if (mode != TB_PROGRESS_AUTO) return mode;
    if (!out) return TB_PROGRESS_NONE;
    const char *term = getenv("TERM");
    int fd = fileno(out);
    if (fd >= 0 && isatty(fd) && !(term && strcmp(term, "dumb") == 0)) return TB_PROGRESS_BAR;
    return TB_PROGRESS_PLAIN;
}

int tb_progress_init_at(tb_progress *p, FILE *out, tb_progress_mode mode, const char *label, int64_t total,
                        double interval, double now)
{
    memset(p, 0, sizeof *p);
    if ((unsigned)mode > TB_PROGRESS_NONE)
        return TB_ERR(TB_EINVAL, "progress mode %d is not one of auto, bar, plain, none", (int)mode);
    p->out = out;
    p->mode = out ? progress_resolve(mode, out) : TB_PROGRESS_NONE;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total > 0 ? total : 0;
    p->interval = p->mode == TB_PROGRESS_BAR ? PROGRESS_BAR_INTERVAL : (interval > 0 ? interval : 10.0);
    p->t0 = now;
    p->last_draw = now;
    p->samples = -1;
    p->loss = NAN;
    p->lr = NAN;
    return TB_OK;
}

int tb_progress_init(tb_progress *p, FILE *out, tb_progress_mode mode, const char *label, int64_t total,
                     double interval)
{
    return tb_progress_init_at(p, out, mode, label, total, interval, progress_now());
}

/* "h:mm:ss" */
static int progress_hms(char *buf, size_t cap, double s)
{
    if (!(s >= 0)) s = 0;
    if (s > 359999999.0) s = 359999999.0;
    long t = (long)(s + 0.5);
    return snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

#define PUT(...)                                                                 \
    do {                                                                         \
        if (n < cap) {                                                           \
            int k_ = snprintf(buf + n, cap - n, __VA_ARGS__);                    \
            if (k_ > 0) n += (size_t)k_;                                         \
        }                                                                        \
    } while (0)

int tb_progress_format(const tb_progress *p, double now, char *buf, size_t cap)
{
    size_t n = 0;
    if (cap == 0) return 0;
    buf[0] = '\0';
    double elapsed = now - p->t0;
    if (p->mode == TB_PROGRESS_BAR && p->total > 0) {
        int fill = (int)((double)PROGRESS_BAR_WIDTH * (double)p->step / (double)p->total);
        if (fill > PROGRESS_BAR_WIDTH) fill = PROGRESS_BAR_WIDTH;
        if (fill < 0) fill = 0;
        char bar[PROGRESS_BAR_WIDTH + 1];
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(PROGRESS_BAR_WIDTH - fill));
        bar[PROGRESS_BAR_WIDTH] = '\0';
        PUT("[%s] ", bar);
    }
    if (p->total > 0)
        PUT("step %lld/%lld (%.1f%%)", (long long)p->step, (long long)p->total,
            100.0 * (double)p->step / (double)p->total);
    else
        PUT("step %lld", (long long)p->step);
    if (!isnan(p->loss)) PUT(" loss %.4f", p->loss);
    if (!isnan(p->lr)) PUT(" lr %.3g", p->lr);
    if (p->samples >= 0 && elapsed > 0) PUT(" %.1f samples/s", (double)p->samples / elapsed);
    if (p->total > 0 && p->step > 0 && elapsed > 0) {
        char hms[32];
        double remaining = (double)(p->total - p->step) * elapsed / (double)p->step;
        progress_hms(hms, sizeof hms, remaining);
        PUT(" eta %s", hms);
    } else {
        char hms[32];
        progress_hms(hms, sizeof hms, elapsed);
        PUT(" elapsed %s", hms);
    }
    if (n >= cap) n = cap - 1;
    return (int)n;
}
#undef PUT

static tb_progress *progress_hooked; /* the bar the log hook clears, if any */

static void progress_unhook(tb_progress *p)
{
    if (progress_hooked != p) return;
    tb_log_set_before_write(NULL, NULL);
    progress_hooked = NULL;
}

/* Log hook: clears a bar on screen before a log line; the next update draws it again below. */
static void progress_clear_bar(void *ctx)
{
    tb_progress *p = ctx;
    if (p->mode != TB_PROGRESS_BAR || !p->drawn) return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->drawn = 0;
    p->last_draw = -1e300; /* redraw at the next update */
}

static void progress_draw(tb_progress *p, double now, int final)
{
    char text[512];
    tb_progress_format(p, now, text, sizeof text);
    if (p->mode == TB_PROGRESS_BAR) {
        fprintf(p->out, "\r[%s] %s\033[K%s", p->label, text, final ? "\n" : "");
        p->drawn = !final;
        if (final) {
            progress_unhook(p);
        } else if (progress_hooked != p) {
            tb_log_set_before_write(progress_clear_bar, p);
            progress_hooked = p;
        }
    } else {
        fprintf(p->out, "[%s] %s\n", p->label, text);
    }
    fflush(p->out);
    p->last_draw = now;
}

void tb_progress_update_at(tb_progress *p, int64_t step, int64_t samples, double loss, double lr, double now)
{
    p->step = step;
    p->samples = samples;
    p->loss = loss;
    p->lr = lr;
    if (p->mode == TB_PROGRESS_NONE) return;
    if (now - p->last_draw >= p->interval) progress_draw(p, now, 0);
}

void tb_progress_update(tb_progress *p, int64_t step, int64_t samples, double loss, double lr)
{
    tb_progress_update_at(p, step, samples, loss, lr, progress_now());
}

void tb_progress_finish_at(tb_progress *p, double now)
{
    if (p->mode == TB_PROGRESS_NONE) return;
    progress_draw(p, now, 1);
}

void tb_progress_finish(tb_progress *p) { tb_progress_finish_at(p, progress_now()); }

void tb_progress_free(tb_progress *p)
{
    progress_unhook(p);
    if (p->mode == TB_PROGRESS_BAR && p->drawn && p->out) {
        fputc('\n', p->out); /* leave the last bar visible, end its line */
        fflush(p->out);
    }
    p->drawn = 0;
    p->mode = TB_PROGRESS_NONE;
}
