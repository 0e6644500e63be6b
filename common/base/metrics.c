/* metrics.c - JSON-lines metrics writer. */
#include "tb/base/metrics.h"

#include "tb/base/error.h"
#include "tb/base/json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const metrics_reserved[] = {"stage", "event", "step", "time", "nonfinite"};

int tb_metrics_open_stream(tb_metrics *m, const char *stage, FILE *f)
{
    memset(m, 0, sizeof *m);
    snprintf(m->stage, sizeof m->stage, "%s", stage ? stage : "");
    m->f = f;
    return TB_OK;
}

int tb_metrics_open(tb_metrics *m, const char *stage, const char *path)
{
    tb_metrics_open_stream(m, stage, NULL);
    if (!path || !*path) return TB_OK;
    if (strcmp(path, "-") == 0) {
        m->f = stdout;
        return TB_OK;
    }
    m->f = fopen(path, "a");
    if (!m->f)
        return TB_ERR(TB_EIO, "--metrics: cannot open '%s' for appending: %s (check the directory exists "
                      "and is writable, or use '-' for stdout)", path, strerror(errno));
    m->owns = 1;
    return TB_OK;
}

void tb_metrics_close(tb_metrics *m)
{
    if (m->f && m->owns) fclose(m->f);
    m->f = NULL;
    m->owns = 0;
}

int tb_metrics_enabled(const tb_metrics *m) { return m->f != NULL; }

static int metrics_check_key(const tb_metric *fields, int i)
{
    const char *k = fields[i].key;
    if (!k || !*k) return TB_ERR(TB_EINVAL, "metrics field %d has no key", i);
    for (size_t r = 0; r < sizeof metrics_reserved / sizeof metrics_reserved[0]; r++)
        if (strcmp(k, metrics_reserved[r]) == 0)
            return TB_ERR(TB_EINVAL, "metrics field '%s' uses a reserved key (stage, event, step, time, nonfinite)", k);
    for (int j = 0; j < i; j++)
        if (strcmp(fields[j].key, k) == 0) return TB_ERR(TB_EINVAL, "metrics field '%s' given twice", k);
    if ((unsigned)fields[i].type > TB_METRIC_BOOL)
        return TB_ERR(TB_EINVAL, "metrics field '%s' has unknown type %d", k, (int)fields[i].type);
    return TB_OK;
}

static const char *metrics_nonfinite_name(double v)
{
    if (isnan(v)) return "nan";
    return v > 0 ? "inf" : "-inf";
}

int tb_metrics_format(const char *stage, const char *event, int64_t step, double t,
                      const tb_metric *fields, int n, char **out)
{
    int rc = TB_OK;
    tb_strbuf b = {0};
    *out = NULL;
    TB_CHECK(event && *event, TB_EINVAL, "metrics line needs an event name");
    TB_CHECK(n >= 0 && (n == 0 || fields), TB_EINVAL, "metrics line: %d fields but no field array", n);
    int nonfinite = 0;
    for (int i = 0; i < n; i++) {
        TB_TRY(metrics_check_key(fields, i));
        nonfinite += fields[i].type == TB_METRIC_FLOAT && !isfinite(fields[i].f);
    }
    TB_TRY(tb_strbuf_puts(&b, "{\"stage\":"));
    TB_TRY(tb_json_append_string(&b, stage ? stage : ""));
    TB_TRY(tb_strbuf_puts(&b, ",\"event\":"));
    TB_TRY(tb_json_append_string(&b, event));
    if (step >= 0) TB_TRY(tb_strbuf_printf(&b, ",\"step\":%lld", (long long)step));
    TB_TRY(tb_strbuf_printf(&b, ",\"time\":%.3f", t));
    for (int i = 0; i < n; i++) {
        TB_TRY(tb_strbuf_puts(&b, ","));
        TB_TRY(tb_json_append_string(&b, fields[i].key));
        TB_TRY(tb_strbuf_puts(&b, ":"));
        switch (fields[i].type) {
        case TB_METRIC_FLOAT: rc = tb_json_append_float(&b, fields[i].f); break;
        case TB_METRIC_INT: rc = tb_strbuf_printf(&b, "%lld", (long long)fields[i].i); break;
        case TB_METRIC_STR: rc = tb_json_append_string(&b, fields[i].s); break;
        case TB_METRIC_BOOL: rc = tb_strbuf_puts(&b, fields[i].i ? "true" : "false"); break;
        }
        if (rc != TB_OK) goto error;
    }
    if (nonfinite) {
        TB_TRY(tb_strbuf_puts(&b, ",\"nonfinite\":{"));
        int first = 1;
        for (int i = 0; i < n; i++) {
            if (fields[i].type != TB_METRIC_FLOAT || isfinite(fields[i].f)) continue;
            if (!first) TB_TRY(tb_strbuf_puts(&b, ","));
            first = 0;
            TB_TRY(tb_json_append_string(&b, fields[i].key));
            TB_TRY(tb_strbuf_puts(&b, ":"));
            TB_TRY(tb_json_append_string(&b, metrics_nonfinite_name(fields[i].f)));
        }
        TB_TRY(tb_strbuf_puts(&b, "}"));
    }
    TB_TRY(tb_strbuf_puts(&b, "}"));
    TB_TRY(tb_strbuf_take(&b, out));
error:
    tb_strbuf_free(&b);
    return rc;
}

int tb_metrics_write(tb_metrics *m, const char *event, int64_t step, const tb_metric *fields, int n)
{
    if (!m->f) return TB_OK;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char *line = NULL;
    int rc = tb_metrics_format(m->stage, event, step, (double)ts.tv_sec + ts.tv_nsec * 1e-9, fields, n, &line);
    if (rc != TB_OK) return rc;
    size_t len = strlen(line);
    line[len] = '\n'; /* replaces the NUL: write len + 1 bytes in one call */
    size_t w = fwrite(line, 1, len + 1, m->f);
    free(line);
    if (w != len + 1 || fflush(m->f) != 0)
        return TB_ERR(TB_EIO, "cannot write a metrics line for '%s' (event '%s'): %s", m->stage, event,
                      strerror(errno));
    return TB_OK;
}
