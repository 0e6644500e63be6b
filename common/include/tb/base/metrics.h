/* tb/base/metrics.h - machine-readable metrics as JSON lines.
 *
 * One JSON object per line, written with a single write and flushed, so a reader (a plot
 * script, `tail -f`, the pipeline runner) always sees whole lines:
 *
 *   {"stage":"tb-distill","event":"step","step":120,"time":1764081234.125,"loss":0.523100018,"lr":5e-05}
 *
 * "stage", "event" and "time" (Unix seconds, 3 decimals) are always present; "step" when >= 0.
 * Floats are printed with %.9g, which round-trips every float exactly. JSON has no NaN or
 * Infinity: a non-finite value is written as null and named in a "nonfinite" object at the end
 * of the line ({"loss":null,...,"nonfinite":{"loss":"nan"}}), so it is never silently lost.
 *
 * A writer opened with a NULL or empty path is disabled: every write is a no-op returning TB_OK,
 * so stages call tb_metrics_write unconditionally. "-" writes to stdout. Not thread-safe: write
 * from one thread.
 */
#ifndef TB_METRICS_H
#define TB_METRICS_H

#include <stdint.h>
#include <stdio.h>

typedef enum tb_metric_type { TB_METRIC_FLOAT = 0, TB_METRIC_INT, TB_METRIC_STR, TB_METRIC_BOOL } tb_metric_type;

typedef struct tb_metric {
    const char *key;
    tb_metric_type type;
    double f;
    int64_t i;      /* TB_METRIC_INT, and TB_METRIC_BOOL (0/1) */
    const char *s;  /* TB_METRIC_STR (NULL is written as null) */
} tb_metric;

/* Compound literals for the field list: TB_MF("loss", loss), TB_MI("epoch", e), ... */
#define TB_MF(k, v) ((tb_metric){.key = (k), .type = TB_METRIC_FLOAT, .f = (double)(v)})
#define TB_MI(k, v) ((tb_metric){.key = (k), .type = TB_METRIC_INT, .i = (int64_t)(v)})
#define TB_MS(k, v) ((tb_metric){.key = (k), .type = TB_METRIC_STR, .s = (v)})
#define TB_MB(k, v) ((tb_metric){.key = (k), .type = TB_METRIC_BOOL, .i = (v) ? 1 : 0})

typedef struct tb_metrics {
    FILE *f;        /* NULL: disabled */
    int owns;       /* 1 when f was opened here (closed by tb_metrics_close) */
    char stage[64];
} tb_metrics;

/* Opens `path` for appending ("-": stdout; NULL or "": disabled). */
int tb_metrics_open(tb_metrics *m, const char *stage, const char *path);
/* Writes to an already open stream (not closed by tb_metrics_close). */
int tb_metrics_open_stream(tb_metrics *m, const char *stage, FILE *f);
void tb_metrics_close(tb_metrics *m);

int tb_metrics_enabled(const tb_metrics *m);

/* Writes one line: stage, event, step (omitted when < 0), time, then `fields` in order.
 * Keys must be unique and must not be one of stage/event/step/time/nonfinite. */
int tb_metrics_write(tb_metrics *m, const char *event, int64_t step, const tb_metric *fields, int n);

/* The same line, formatted at Unix time `t` into a malloc'd string without the newline
 * (for tests and for callers that send metrics elsewhere). Free with free(). */
int tb_metrics_format(const char *stage, const char *event, int64_t step, double t,
                      const tb_metric *fields, int n, char **out);

#endif
