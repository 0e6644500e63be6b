/* pipeline_summary.c - the table tb-pipeline ends with: state, time, throughput and final metric
 * of every step, from what the steps write (metrics.jsonl, --metrics, tb-eval's JSON). */
#include "pipeline_resume.h"

#include "tb/base/error.h"
#include "tb/base/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SUM_LINE_MAX (1u << 20)

typedef struct sum_step {
    double samples, seconds;   /* training steps: samples and compute time */
    double examples_per_s;     /* tb-eval: of the first model; < 0 when not reported */
    char metric[160];          /* "accuracy 0.7248" (tb-eval --compare: "0.7248 / 0.7133") */
} sum_step;

static double sum_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1.0;
}

/* The value named by "main" of a metrics object, as "name 0.1234". */
static void sum_main(const cJSON *o, char *buf, size_t cap)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "main");
    if (!cJSON_IsString(m)) return;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, m->valuestring);
    if (cJSON_IsNumber(v)) snprintf(buf, cap, "%s %.4f", m->valuestring, v->valuedouble);
}

static void sum_line(sum_step *s, const cJSON *o, int *reports)
{
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
    const char *event = cJSON_IsString(ev) ? ev->valuestring : "";
    if (strcmp(event, "step") == 0) {
        double n = sum_num(o, "samples"), rate = sum_num(o, "samples_per_s");
        if (n > 0 && rate > 0) {
            s->samples += n;
            s->seconds += n / rate;
        }
    } else if (strcmp(event, "eval") == 0) {
        sum_main(o, s->metric, sizeof s->metric);
    } else if (!ev && sum_num(o, "examples_per_s") >= 0) { /* a tb-eval result, one per model */
        char one[80] = "";
        sum_main(o, one, sizeof one);
        if (*reports == 0) {
            s->examples_per_s = sum_num(o, "examples_per_s");
            snprintf(s->metric, sizeof s->metric, "%s", one);
        } else if (*one) {
            const char *value = strrchr(one, ' ');
            size_t len = strlen(s->metric);
            snprintf(s->metric + len, sizeof s->metric - len, " /%s", value ? value : one);
        }
        (*reports)++;
    }
}

/* Reads the JSON lines of `path` (missing: nothing) into s. */
static void sum_read(sum_step *s, const char *path)
{
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *line = malloc(SUM_LINE_MAX);
    int reports = 0;
    while (line && fgets(line, SUM_LINE_MAX, f)) {
        cJSON *o = cJSON_Parse(line);
        if (cJSON_IsObject(o)) sum_line(s, o, &reports);
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
}

static void sum_collect(sum_step *s, const tb_pipeline_ports *pt)
{
    memset(s, 0, sizeof *s);
    s->examples_per_s = -1;
    if (!pt) return;
    if (pt->checkpoint_dir) {
        tb_strbuf b = {0};
        tb_strbuf_printf(&b, "%s/metrics.jsonl", pt->checkpoint_dir);
        sum_read(s, b.p);
        tb_strbuf_free(&b);
    } else {
        sum_read(s, pt->metrics_path); /* a checkpoint folder's file has the same lines */
    }
    sum_read(s, pt->report_path);
}

static void sum_row(tb_strbuf *b, int wname, int wstate, const char *name, const char *state, const char *time,
                    const char *rate, const char *metric)
{
    size_t start = b->len;
    tb_strbuf_printf(b, "  %-*s  %-*s  %9s  %-20s  %s", wname, name, wstate, state, time, rate, metric);
    while (b->len > start && b->p[b->len - 1] == ' ') b->p[--b->len] = '\0';
    tb_strbuf_puts(b, "\n");
}

/* The loss plot stage i drew, if it is there: its --plot, else CHECKPOINT_DIR/loss.png. */
static int sum_plot(const tb_pipeline_ports *pt, tb_strbuf *out)
{
    struct stat st;
    out->len = 0;
    if (pt->plot_path) tb_strbuf_puts(out, pt->plot_path);
    else if (pt->checkpoint_dir) tb_strbuf_printf(out, "%s/loss.png", pt->checkpoint_dir);
    return out->p && out->len && stat(out->p, &st) == 0;
}

int tb_pipeline_write_table(const tb_pipeline *p, const tb_pipeline_result *res, const tb_pipeline_ports *ports,
                            const tb_pipeline_plan *plan, FILE *out)
{
    int rc = TB_OK;
    tb_strbuf b = {0}, plot = {0};
    char (*state)[160] = calloc((size_t)p->count + 1, sizeof *state);
    TB_CHECK(state, TB_ENOMEM, "out of memory for the summary");
    int wname = 4, wstate = 5;
    for (int i = 0; i < p->count; i++) {
        tb_pipeline_state_text(res, i, state[i], sizeof state[i]);
        if (plan && plan->action[i] == TB_PLAN_RESUME && res->state[i] == TB_STAGE_DONE) {
            size_t len = strlen(state[i]);
            snprintf(state[i] + len, sizeof state[i] - len, " (resumed)");
        }
        if ((int)strlen(p->stages[i].name) > wname) wname = (int)strlen(p->stages[i].name);
        if ((int)strlen(state[i]) > wstate) wstate = (int)strlen(state[i]);
    }
    sum_row(&b, wname, wstate, "step", "state", "time", "throughput", "final metric");
    for (int i = 0; i < p->count; i++) {
        sum_step s;
        sum_collect(&s, ports ? &ports[i] : NULL);
        char time[32] = "", rate[48] = "";
        if (res->state[i] == TB_STAGE_DONE) snprintf(time, sizeof time, "%.1f s", res->seconds[i]);
        if (s.seconds > 0) snprintf(rate, sizeof rate, "%.1f samples/s", s.samples / s.seconds);
        else if (s.examples_per_s >= 0) snprintf(rate, sizeof rate, "%.1f examples/s", s.examples_per_s);
        sum_row(&b, wname, wstate, p->stages[i].name, state[i], time, rate, s.metric);
    }
    for (int i = 0; ports && i < p->count; i++)
        if (sum_plot(&ports[i], &plot)) tb_strbuf_printf(&b, "  plot of %s: %s\n", p->stages[i].name, plot.p);
    TB_CHECK(b.p && fwrite(b.p, 1, b.len, out) == b.len && fflush(out) == 0, TB_EIO, "cannot write the run summary: %s",
             strerror(errno));
error:
    free(state);
    tb_strbuf_free(&b);
    tb_strbuf_free(&plot);
    return rc;
}
