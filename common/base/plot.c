/* plot.c - loss / dev-metric curves from a JSON-lines metrics file, drawn by gnuplot. */
#include "tb/base/plot.h"

#include "tb/base/error.h"
#include "tb/base/log.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PLOT_MAX_LINE ((ssize_t)1 << 20)   /* a metrics line longer than 1 MiB is malformed */
#define PLOT_MAX_KEYS 16
#define PLOT_MAX_SIDE 10000

/* Curve colours (fixed, so a picture means the same with any gnuplot version): train curves
 * cycle through the first list, the dev curve takes the second. */
static const char *const plot_loss_colors[] = {"#9400d3", "#009e73", "#0072b2", "#e51e10", "#56b4e9", "#000000"};
static const char *const plot_metric_color = "#e69f00";

static const char *const plot_metric_preference[] = {"mcc", "corr", "accuracy", "f1", "spearman", "pearson"};

/* ---- curves ---------------------------------------------------------------------------------- */

static tb_plot_series *plot_find(const tb_plot_data *d, const char *name, int axis)
{
    for (int i = 0; i < d->n_series; i++)
        if (d->series[i].axis == axis && strcmp(d->series[i].name, name) == 0) return &d->series[i];
    return NULL;
}

const tb_plot_series *tb_plot_data_find(const tb_plot_data *d, const char *name)
{
    for (int i = 0; i < d->n_series && name; i++)
        if (strcmp(d->series[i].name, name) == 0) return &d->series[i];
    return NULL;
}

static int plot_new_series(tb_plot_data *d, const char *name, int axis, tb_plot_series **out)
{
    if (d->n_series >= 64) return TB_ERR(TB_EINVAL, "more than 64 curves in one plot (at '%s')", name);
    tb_plot_series *s = realloc(d->series, (size_t)(d->n_series + 1) * sizeof *s);
    if (!s) return TB_ERR(TB_ENOMEM, "out of memory for plot curve '%s'", name);
    d->series = s;
    s = &d->series[d->n_series];
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    if (!s->name) return TB_ERR(TB_ENOMEM, "out of memory for plot curve '%s'", name);
    s->axis = axis;
    d->n_series++;
    *out = s;
    return TB_OK;
}

int tb_plot_data_add(tb_plot_data *d, const char *name, int axis, int64_t step, double value)
{
    if (!name || !*name) return TB_ERR(TB_EINVAL, "plot curve without a name");
    if (axis != 1 && axis != 2) return TB_ERR(TB_EINVAL, "plot axis must be 1 (left) or 2 (right), got %d", axis);
    if (!isfinite(value)) return TB_ERR(TB_EINVAL, "non-finite value %g for curve '%s' at step %lld", value, name,
                                        (long long)step);
    tb_plot_series *s = plot_find(d, name, axis);
    if (!s) {
        int rc = plot_new_series(d, name, axis, &s);
        if (rc != TB_OK) return rc;
    }
    while (s->n > 0 && s->step[s->n - 1] >= step) s->n--; /* a resumed run replaces what follows its start */
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 256;
        int64_t *st = realloc(s->step, (size_t)cap * sizeof *st);
        if (!st) return TB_ERR(TB_ENOMEM, "out of memory for %lld points of curve '%s'", (long long)cap, name);
        s->step = st;
        double *v = realloc(s->value, (size_t)cap * sizeof *v);
        if (!v) return TB_ERR(TB_ENOMEM, "out of memory for %lld points of curve '%s'", (long long)cap, name);
        s->value = v;
        s->cap = cap;
    }
    s->step[s->n] = step;
    s->value[s->n] = value;
    s->n++;
    return TB_OK;
}

void tb_plot_data_free(tb_plot_data *d)
{
    for (int i = 0; i < d->n_series; i++) {
        free(d->series[i].name);
        free(d->series[i].step);
        free(d->series[i].value);
    }
    free(d->series);
    memset(d, 0, sizeof *d);
}

/* ---- reading a metrics file -------------------------------------------------------------------- */

typedef struct plot_reader {
    const tb_plot_opts *opts;
    const char *path;
    int64_t lineno;
    char *keys_buf;                 /* loss_keys, split in place */
    const char *keys[PLOT_MAX_KEYS];
    int n_keys;
    char metric[128];               /* the chosen dev metric ("" while undecided) */
    int metric_fixed;               /* metric chosen (or none wanted) */
} plot_reader;

static int plot_split_keys(plot_reader *r, const char *list)
{
    r->keys_buf = strdup(list);
    if (!r->keys_buf) return TB_ERR(TB_ENOMEM, "out of memory for the plot keys");
    char *save = NULL;
    for (char *k = strtok_r(r->keys_buf, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
        while (*k == ' ') k++;
        size_t n = strlen(k);
        while (n > 0 && k[n - 1] == ' ') k[--n] = '\0';
        if (!*k) continue;
        if (r->n_keys == PLOT_MAX_KEYS)
            return TB_ERR(TB_EINVAL, "more than %d loss keys in '%s'", PLOT_MAX_KEYS, list);
        r->keys[r->n_keys++] = k;
    }
    if (r->n_keys == 0) return TB_ERR(TB_EINVAL, "no key in the loss-key list '%s' (give e.g. \"loss\")", list);
    return TB_OK;
}

static int plot_event_matches(const plot_reader *r, const char *ev, int *train, int *eval)
{
    const tb_plot_opts *o = r->opts;
    *train = o->train_event ? strcmp(ev, o->train_event) == 0 : strcmp(ev, "step") == 0 || strcmp(ev, "train") == 0;
    *eval = strcmp(ev, o->eval_event ? o->eval_event : "eval") == 0;
    return *train || *eval;
}

/* Adds the value of `key` in line object `o` as a point; nothing for a missing or null value. */
static int plot_take_value(tb_plot_data *d, const plot_reader *r, const cJSON *o, const char *key, int axis,
                           int64_t step, int *used)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return TB_OK;
    if (!cJSON_IsNumber(v))
        return TB_ERR(TB_EFORMAT, "%s:%lld: \"%s\" is not a number (metrics values to plot must be numbers or null)",
                      r->path, (long long)r->lineno, key);
    if (!isfinite(v->valuedouble)) return TB_OK;
    *used = 1;
    return tb_plot_data_add(d, key, axis, step, v->valuedouble);
}

static int plot_is_numeric(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && (cJSON_IsNumber(v) || cJSON_IsNull(v));
}

/* Picks the dev metric from the first eval line that offers one (see tb/base/plot.h). */
static void plot_choose_metric(plot_reader *r, const cJSON *o)
{
    const cJSON *main = cJSON_GetObjectItemCaseSensitive(o, "main");
    const char *pick = NULL;
    if (cJSON_IsString(main) && main->valuestring && plot_is_numeric(o, main->valuestring)) pick = main->valuestring;
    for (size_t i = 0; !pick && i < sizeof plot_metric_preference / sizeof plot_metric_preference[0]; i++)
        if (plot_is_numeric(o, plot_metric_preference[i])) pick = plot_metric_preference[i];
    if (!pick || strlen(pick) >= sizeof r->metric) return;
    snprintf(r->metric, sizeof r->metric, "%s", pick);
    r->metric_fixed = 1;
}

static int plot_take_line(tb_plot_data *d, plot_reader *r, const cJSON *o)
{
    const tb_plot_opts *opts = r->opts;
    const cJSON *stage = cJSON_GetObjectItemCaseSensitive(o, "stage");
    if (opts->stage && (!cJSON_IsString(stage) || strcmp(stage->valuestring, opts->stage) != 0)) return TB_OK;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
    int train = 0, eval = 0;
    if (!cJSON_IsString(ev) || !plot_event_matches(r, ev->valuestring, &train, &eval)) return TB_OK;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
    if (!st) return TB_OK;
    if (!cJSON_IsNumber(st) || st->valuedouble < 0 || st->valuedouble > 9007199254740992.0 ||
        st->valuedouble != floor(st->valuedouble))
        return TB_ERR(TB_EFORMAT, "%s:%lld: \"step\" must be a non-negative integer", r->path, (long long)r->lineno);
    const int64_t step = (int64_t)st->valuedouble;
    int used = 0, rc = TB_OK;
    for (int k = 0; train && k < r->n_keys && rc == TB_OK; k++)
        rc = plot_take_value(d, r, o, r->keys[k], 1, step, &used);
    if (rc == TB_OK && eval && !r->metric_fixed) plot_choose_metric(r, o);
    if (rc == TB_OK && eval && r->metric[0]) rc = plot_take_value(d, r, o, r->metric, 2, step, &used);
    d->used += used;
    return rc;
}

static int plot_read_lines(tb_plot_data *d, plot_reader *r, FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = TB_OK;
    while (rc == TB_OK && (len = getline(&line, &cap, f)) >= 0) {
        r->lineno++;
        const int terminated = len > 0 && line[len - 1] == '\n';
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        size_t lead = strspn(line, " \t");
        if ((ssize_t)lead == len) continue;
        TB_CHECK(len <= PLOT_MAX_LINE, TB_EFORMAT, "%s:%lld: line of %zd bytes (more than 1 MiB) is not a metrics line",
                 r->path, (long long)r->lineno, len);
        d->lines++;
        cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            if (!terminated) {
                TB_WARN("%s:%lld: unterminated last line is not JSON (a writer may be mid-line); skipped", r->path,
                        (long long)r->lineno);
                break;
            }
            TB_CHECK(0, TB_EFORMAT, "%s:%lld: not a JSON object (a metrics file has one JSON object per line): %.60s",
                     r->path, (long long)r->lineno, line + lead);
        }
        rc = plot_take_line(d, r, o);
        cJSON_Delete(o);
    }
    if (rc == TB_OK && ferror(f)) rc = TB_ERR(TB_EIO, "reading '%s' failed after line %lld: %s", r->path,
                                             (long long)r->lineno, strerror(errno));
error:
    free(line);
    return rc;
}

/* Explicitly requested keys that never gave a point are an error (most likely a typo). */
static int plot_check_requested(const tb_plot_data *d, const plot_reader *r)
{
    const tb_plot_opts *o = r->opts;
    for (int k = 0; o->loss_keys && k < r->n_keys; k++)
        if (!plot_find(d, r->keys[k], 1))
            return TB_ERR(TB_ENOTFOUND, "%s: no %s line has a numeric \"%s\" (check --plot keys and the event name)",
                          r->path, o->train_event ? o->train_event : "step/train", r->keys[k]);
    if (o->metric_key && *o->metric_key && !plot_find(d, o->metric_key, 2))
        return TB_ERR(TB_ENOTFOUND, "%s: no %s line has a numeric \"%s\"", r->path,
                      o->eval_event ? o->eval_event : "eval", o->metric_key);
    return TB_OK;
}

int tb_plot_data_load(tb_plot_data *d, const char *metrics_path, const tb_plot_opts *opts)
{
    static const tb_plot_opts defaults = {0};
    plot_reader r = {.opts = opts ? opts : &defaults, .path = metrics_path};
    FILE *f = NULL;
    int rc = TB_OK;
    memset(d, 0, sizeof *d);
    TB_CHECK(metrics_path && *metrics_path, TB_EINVAL, "no metrics file given to plot");
    TB_TRY(plot_split_keys(&r, r.opts->loss_keys ? r.opts->loss_keys : "loss"));
    if (r.opts->metric_key) {
        TB_CHECK(strlen(r.opts->metric_key) < sizeof r.metric, TB_EINVAL, "metric key '%.40s...' is too long",
                 r.opts->metric_key);
        snprintf(r.metric, sizeof r.metric, "%s", r.opts->metric_key);
        r.metric_fixed = 1;
    }
    f = fopen(metrics_path, "r");
    TB_CHECK(f, errno == ENOENT ? TB_ENOTFOUND : TB_EIO, "cannot open metrics file '%s': %s", metrics_path,
             strerror(errno));
    TB_TRY(plot_read_lines(d, &r, f));
    TB_TRY(plot_check_requested(d, &r));
    fclose(f);
    free(r.keys_buf);
    return TB_OK;
error:
    if (f) fclose(f);
    free(r.keys_buf);
    tb_plot_data_free(d);
    return rc;
}

/* ---- the gnuplot script ------------------------------------------------------------------------ */

/* Appends `s` as a gnuplot single-quoted string (the only escape there is '' for '). */
static int plot_put_quoted(FILE *f, const char *what, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return TB_ERR(TB_EINVAL, "%s '%s' contains a control character (byte 0x%02x); it cannot be a plot label",
                          what, s, *c);
    fputc('\'', f);
    for (const char *c = s; *c; c++) {
        if (*c == '\'') fputc('\'', f);
        fputc(*c, f);
    }
    fputc('\'', f);
    return TB_OK;
}

static int plot_write_data(const tb_plot_data *d, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return TB_ERR(TB_EIO, "cannot write plot data '%s': %s", path, strerror(errno));
    for (int i = 0; i < d->n_series; i++) {
        const tb_plot_series *s = &d->series[i];
        for (int64_t k = 0; k < s->n; k++) fprintf(f, "%lld %.9g\n", (long long)s->step[k], s->value[k]);
        fputs("\n\n", f); /* gnuplot: two blank lines end a data set (`index`) */
    }
    if (fclose(f) != 0) return TB_ERR(TB_EIO, "writing plot data '%s' failed: %s", path, strerror(errno));
    return TB_OK;
}

static void plot_put_terminal(FILE *f, tb_plot_format fmt, int w, int h)
{
    if (fmt == TB_PLOT_SVG) {
        fprintf(f, "set terminal svg size %d,%d font 'sans,12' background rgb 'white' noenhanced\n", w, h);
        return;
    }
    fprintf(f, "if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {\n"
               "  set terminal pngcairo size %d,%d font 'sans,10' background rgb 'white' noenhanced\n"
               "} else {\n"
               "  set terminal png size %d,%d background rgb 'white' noenhanced\n"
               "}\n", w, h, w, h);
}

static int plot_write_script(const tb_plot_data *d, const char *path, const char *image, tb_plot_format fmt,
                             const tb_plot_opts *o)
{
    int rc = TB_OK, left = 0, right = 0;
    for (int i = 0; i < d->n_series; i++) *(d->series[i].axis == 1 ? &left : &right) += 1;
    const int metric_axis = left ? 2 : 1; /* a dev curve alone goes on the left axis */
    FILE *f = fopen(path, "w");
    TB_CHECK(f, TB_EIO, "cannot write gnuplot script '%s': %s", path, strerror(errno));
    plot_put_terminal(f, fmt, o->width > 0 ? o->width : 1000, o->height > 0 ? o->height : 600);
    fprintf(f, "set encoding utf8\nset output '%s'\nset xlabel 'step'\nset grid\nset key below\n", image);
    if (o->title) {
        fputs("set title ", f);
        TB_TRY(plot_put_quoted(f, "plot title", o->title));
        fputc('\n', f);
    }
    if (left) fprintf(f, "set ylabel 'loss'\n%s", o->log_y ? "set logscale y\n" : "");
    if (right) {
        const tb_plot_series *m = NULL;
        for (int i = 0; i < d->n_series && !m; i++)
            if (d->series[i].axis == 2) m = &d->series[i];
        fputs(metric_axis == 2 ? "set ytics nomirror\nset y2tics\nset y2label " : "set ylabel ", f);
        char label[160];
        snprintf(label, sizeof label, "dev %s", m->name);
        TB_TRY(plot_put_quoted(f, "metric name", label));
        fputc('\n', f);
    }
    fputs("plot ", f);
    for (int i = 0, n_left = 0; i < d->n_series; i++) {
        const tb_plot_series *s = &d->series[i];
        const int on_right = s->axis == 2;
        const char *color = on_right ? plot_metric_color
                                     : plot_loss_colors[n_left++ % (int)(sizeof plot_loss_colors / sizeof *plot_loss_colors)];
        fprintf(f, "%s'data.dat' index %d using 1:2 with %s lw 2 lc rgb '%s' title ", i ? ", \\\n     " : "", i,
                on_right || s->n < 30 ? "linespoints pt 7 ps 0.7" : "lines", color);
        char label[160];
        snprintf(label, sizeof label, "%s%s", on_right ? "dev " : "", s->name);
        TB_TRY(plot_put_quoted(f, "curve name", label));
        fprintf(f, " axes x1y%d", on_right ? metric_axis : 1);
    }
    fputc('\n', f);
    TB_CHECK(!ferror(f), TB_EIO, "writing gnuplot script '%s' failed", path);
error:
    if (f && fclose(f) != 0 && rc == TB_OK) rc = TB_ERR(TB_EIO, "writing gnuplot script '%s' failed: %s", path,
                                                        strerror(errno));
    return rc;
}

/* ---- running gnuplot --------------------------------------------------------------------------- */

static int plot_missing(const char *what, const char *detail)
{
    return TB_ERR(TB_EUNSUPPORTED, "gnuplot not found (%s%s%s); install gnuplot-nox (apt-get install gnuplot-nox, "
                  "or scripts/install-deps) to get loss-curve plots", what, detail ? ": " : "", detail ? detail : "");
}

/* Resolves the gnuplot program to an absolute path (gnuplot runs in another directory). */
static int plot_find_program(const char *name, char *out)
{
    if (strchr(name, '/')) {
        if (!realpath(name, out) || access(out, X_OK) != 0) return plot_missing(name, strerror(errno));
        return TB_OK;
    }
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *colon = strchr(p, ':');
        const size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char cand[PATH_MAX];
        struct stat st;
        if (snprintf(cand, sizeof cand, "%.*s/%s", (int)(len ? len : 1), len ? p : ".", name) < (int)sizeof cand &&
            stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0 && realpath(cand, out))
            return TB_OK;
        p += len + (colon ? 1 : 0);
    }
    char what[128];
    snprintf(what, sizeof what, "no '%s' in PATH", name);
    return plot_missing(what, NULL);
}

static double plot_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The first part of gnuplot's error output, on one line. */
static void plot_read_log(const char *path, char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t got = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[got] = '\0';
    for (size_t i = 0; i < got; i++)
        if (buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t') buf[i] = ' ';
    if (!got) snprintf(buf, n, "(no output)");
}

/* In the child: only async-signal-safe calls, since the parent may have threads. */
static void plot_child(const char *prog, const char *dir, int log_fd, int null_fd, int report_fd)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chdir(dir) == 0 && dup2(null_fd, 0) >= 0 && dup2(log_fd, 1) >= 0 && dup2(log_fd, 2) >= 0) {
        char *const argv[] = {(char *)"gnuplot", (char *)"plot.gp", NULL};
        execv(prog, argv);
    }
    int e = errno;
    ssize_t w = write(report_fd, &e, sizeof e);
    (void)w;
    _exit(127);
}

/* Waits for `pid` until `timeout_ms`; kills it after that. */
static int plot_wait(pid_t pid, int timeout_ms, int *status)
{
    const double deadline = plot_now() + timeout_ms / 1000.0;
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) return TB_OK;
        if (w < 0 && errno != EINTR)
            return TB_ERR(TB_EIO, "cannot wait for gnuplot (pid %d): %s", (int)pid, strerror(errno));
        if (plot_now() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
            }
            return TB_ERR(TB_ETIMEOUT, "gnuplot took more than %d ms and was killed", timeout_ms);
        }
        nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    }
}

static int plot_run(const char *prog, const char *dir, const char *log_path, int timeout_ms)
{
    int rc = TB_OK, status = 0, report[2] = {-1, -1};
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    TB_CHECK(log_fd >= 0 && null_fd >= 0, TB_EIO, "cannot open '%s' or /dev/null for gnuplot: %s", log_path,
             strerror(errno));
    TB_CHECK(pipe2(report, O_CLOEXEC) == 0, TB_EIO, "pipe for gnuplot failed: %s", strerror(errno));
    pid_t pid = fork();
    TB_CHECK(pid >= 0, TB_EIO, "cannot start gnuplot: fork failed: %s", strerror(errno));
    if (pid == 0) plot_child(prog, dir, log_fd, null_fd, report[1]);
    close(report[1]);
    report[1] = -1;
    int child_errno = 0;
    ssize_t got;
    while ((got = read(report[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR) {
    }
    if (got == (ssize_t)sizeof child_errno) { /* exec failed: the pipe carried its errno */
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (child_errno == ENOENT || child_errno == EACCES || child_errno == ENOEXEC)
            TB_TRY(plot_missing(prog, strerror(child_errno)));
        TB_CHECK(0, TB_EIO, "cannot run gnuplot '%s' in '%s': %s", prog, dir, strerror(child_errno));
    }
    TB_TRY(plot_wait(pid, timeout_ms, &status));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char msg[600];
        plot_read_log(log_path, msg, sizeof msg);
        if (WIFSIGNALED(status))
            TB_CHECK(0, TB_EIO, "gnuplot '%s' was killed by signal %d: %s", prog, WTERMSIG(status), msg);
        TB_CHECK(0, TB_EIO, "gnuplot '%s' exited with status %d: %s", prog, WEXITSTATUS(status), msg);
    }
error:
    if (log_fd >= 0) close(log_fd);
    if (null_fd >= 0) close(null_fd);
    if (report[0] >= 0) close(report[0]);
    if (report[1] >= 0) close(report[1]);
    return rc;
}

/* Copies `src` to `dst` through a temporary name beside `dst` and a rename. */
static int plot_copy_file(const char *src, const char *dst)
{
    int rc = TB_OK, in = -1, out = -1;
    char *tmp = NULL;
    struct stat st;
    in = open(src, O_RDONLY | O_CLOEXEC);
    TB_CHECK(in >= 0 && fstat(in, &st) == 0 && st.st_size > 0, TB_EIO, "gnuplot wrote no image ('%s' missing or empty)",
             src);
    TB_CHECK(asprintf(&tmp, "%s.tmp-%d", dst, (int)getpid()) >= 0, TB_ENOMEM, "out of memory for a path");
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TB_CHECK(out >= 0, TB_EIO, "cannot write the plot '%s': %s (check the directory exists and is writable)", dst,
             strerror(errno));
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        TB_CHECK(n >= 0, TB_EIO, "reading the image '%s' failed: %s", src, strerror(errno));
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            TB_CHECK(w > 0, TB_EIO, "writing the plot '%s' failed: %s", tmp, strerror(errno));
            off += w;
        }
    }
    int c = close(out);
    out = -1;
    TB_CHECK(c == 0, TB_EIO, "writing the plot '%s' failed: %s", tmp, strerror(errno));
    TB_CHECK(rename(tmp, dst) == 0, TB_EIO, "cannot rename '%s' to '%s': %s", tmp, dst, strerror(errno));
    free(tmp);
    close(in);
    return TB_OK;
error:
    if (out >= 0) close(out);
    if (tmp) unlink(tmp);
    free(tmp);
    if (in >= 0) close(in);
    return rc;
}

/* ---- rendering --------------------------------------------------------------------------------- */

static tb_plot_format plot_format_of(const char *out_path, tb_plot_format fmt)
{
    if (fmt != TB_PLOT_AUTO) return fmt;
    size_t n = strlen(out_path);
    return n >= 4 && strcasecmp(out_path + n - 4, ".svg") == 0 ? TB_PLOT_SVG : TB_PLOT_PNG;
}

static int plot_check(const tb_plot_data *d, const char *out_path, const tb_plot_opts *o)
{
    if (!out_path || !*out_path) return TB_ERR(TB_EINVAL, "no output path for the plot");
    if ((unsigned)o->format > TB_PLOT_SVG) return TB_ERR(TB_EINVAL, "unknown plot format %d", (int)o->format);
    if (o->width < 0 || o->height < 0 || o->width > PLOT_MAX_SIDE || o->height > PLOT_MAX_SIDE ||
        (o->width && o->width < 100) || (o->height && o->height < 100))
        return TB_ERR(TB_EINVAL, "plot size %dx%d outside 100..%d pixels (0: default 1000x600)", o->width, o->height,
                      PLOT_MAX_SIDE);
    if (o->timeout_ms < 0) return TB_ERR(TB_EINVAL, "negative gnuplot timeout %d ms", o->timeout_ms);
    int64_t points = 0;
    for (int i = 0; i < d->n_series; i++) {
        const tb_plot_series *s = &d->series[i];
        points += s->n;
        for (int64_t k = 0; o->log_y && s->axis == 1 && k < s->n; k++)
            if (!(s->value[k] > 0))
                return TB_ERR(TB_EINVAL, "a logarithmic loss axis needs positive values; '%s' is %g at step %lld",
                              s->name, s->value[k], (long long)s->step[k]);
    }
    if (points == 0)
        return TB_ERR(TB_EINVAL, "nothing to plot: no train line with a loss and no eval line with a metric (check "
                      "the metrics file, the event names and the keys)");
    return TB_OK;
}

int tb_plot_render(const tb_plot_data *d, const char *out_path, const tb_plot_opts *opts)
{
    static const tb_plot_opts defaults = {0};
    const tb_plot_opts *o = opts ? opts : &defaults;
    int rc = TB_OK;
    char prog[PATH_MAX], dir[PATH_MAX] = "", data[PATH_MAX + 16], script[PATH_MAX + 16], log[PATH_MAX + 16],
         image[PATH_MAX + 16];
    TB_TRY(plot_check(d, out_path, o));
    const tb_plot_format fmt = plot_format_of(out_path, o->format);
    TB_TRY(plot_find_program(o->gnuplot ? o->gnuplot : "gnuplot", prog));
    const char *tmp = getenv("TMPDIR");
    TB_CHECK(snprintf(dir, sizeof dir, "%s/tb-plot-XXXXXX", tmp && *tmp ? tmp : "/tmp") < (int)sizeof dir, TB_EINVAL,
             "TMPDIR is too long");
    if (!mkdtemp(dir)) {
        rc = TB_ERR(TB_EIO, "cannot make a temporary directory '%s' for gnuplot: %s", dir, strerror(errno));
        dir[0] = '\0';
        goto error;
    }
    const char *image_name = fmt == TB_PLOT_SVG ? "plot.svg" : "plot.png";
    snprintf(data, sizeof data, "%s/data.dat", dir);
    snprintf(script, sizeof script, "%s/plot.gp", dir);
    snprintf(log, sizeof log, "%s/gnuplot.log", dir);
    snprintf(image, sizeof image, "%s/%s", dir, image_name);
    TB_TRY(plot_write_data(d, data));
    TB_TRY(plot_write_script(d, script, image_name, fmt, o));
    TB_TRY(plot_run(prog, dir, log, o->timeout_ms > 0 ? o->timeout_ms : 60000));
    TB_TRY(plot_copy_file(image, out_path));
error:
    if (dir[0]) {
        unlink(data);
        unlink(script);
        unlink(log);
        unlink(image);
        rmdir(dir);
    }
    return rc;
}

int tb_plot_metrics(const char *metrics_path, const char *out_path, const tb_plot_opts *opts)
{
    tb_plot_data d;
    int rc = tb_plot_data_load(&d, metrics_path, opts);
    if (rc == TB_OK) rc = tb_plot_render(&d, out_path, opts);
    tb_plot_data_free(&d);
    return rc;
}
