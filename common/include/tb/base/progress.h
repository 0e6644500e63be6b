/* tb/base/progress.h - progress display on stderr.
 *
 * Two renderings of the same state (step/total, loss, lr, samples/s, ETA):
 *   bar   - one live line redrawn in place ("\r...\033[K"), at most 10 times a second; for a
 *           person watching a terminal.
 *   plain - one full line every `interval` seconds (default 10); for logs, pipes and the
 *           pipeline runner, which prefixes each line with the stage name:
 *           "[tb-distill] step 120/1000 (12.0%) loss 0.5231 lr 5e-05 312.4 samples/s eta 0:02:41"
 * `auto` picks bar when the stream is a terminal (and TERM is not "dumb"), plain otherwise.
 *
 * While a bar is on screen, log lines (tb/base/log.h) first clear it; the next update redraws it. The
 * tb_progress must stay at the same address until tb_progress_finish or tb_progress_free.
 *
 * Values that are unknown are left out: total <= 0 (no percentage, bar or ETA), a NaN loss or
 * lr, samples < 0. Rates and the ETA use the averages since tb_progress_init (or the last
 * tb_progress_restart). Everything takes the time from the monotonic clock; the *_at variants
 * take it as an argument (seconds) so the output can be checked exactly.
 */
#ifndef TB_PROGRESS_H
#define TB_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef enum tb_progress_mode {
    TB_PROGRESS_AUTO = 0,
    TB_PROGRESS_BAR,
    TB_PROGRESS_PLAIN,
    TB_PROGRESS_NONE,
} tb_progress_mode;

typedef struct tb_progress {
    FILE *out;
    tb_progress_mode mode;   /* resolved: BAR, PLAIN or NONE */
    char label[64];
    int64_t total;
    double interval;         /* seconds between plain lines (bar: 0.1) */
    double t0, last_draw;
    int drawn;               /* a bar line is on screen */
    int64_t step, samples;
    double loss, lr;
} tb_progress;

/* Parses "auto|bar|plain|none". */
int tb_progress_parse_mode(const char *s, tb_progress_mode *out);

/* `out` is usually stderr; `label` is shown in brackets (the stage name); `total` steps (<= 0:
 * unknown); `interval` seconds between plain lines (<= 0: 10). */
int tb_progress_init(tb_progress *p, FILE *out, tb_progress_mode mode, const char *label, int64_t total,
                     double interval);
int tb_progress_init_at(tb_progress *p, FILE *out, tb_progress_mode mode, const char *label, int64_t total,
                        double interval, double now);

/* Records the state after `step` steps and `samples` samples in total (< 0: not shown), with
 * the latest loss and lr (NaN: not shown); draws when due. */
void tb_progress_update(tb_progress *p, int64_t step, int64_t samples, double loss, double lr);
void tb_progress_update_at(tb_progress *p, int64_t step, int64_t samples, double loss, double lr, double now);

/* Draws the final state (always, whatever the interval) and ends the bar's line. */
void tb_progress_finish(tb_progress *p);
void tb_progress_finish_at(tb_progress *p, double now);

/* Ends the display without a final draw (ends a bar's line) and detaches it from the log. Pairs
 * with tb_progress_init; safe after tb_progress_finish. */
void tb_progress_free(tb_progress *p);

/* Formats the status text (no label, no newline) into buf; returns its length. */
int tb_progress_format(const tb_progress *p, double now, char *buf, size_t cap);

#endif
