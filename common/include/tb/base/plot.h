/* tb/base/plot.h - loss curves and a dev-metric curve from a JSON-lines metrics file, drawn by gnuplot.
 *
 * Input: the file tb/base/metrics.h writes, one JSON object per line, e.g.
 *   {"stage":"tb-finetune","event":"step","step":10,"time":...,"loss":0.5,"lr":1e-05}
 *   {"stage":"tb-finetune","event":"eval","step":100,"time":...,"accuracy":0.8,"main":"accuracy"}
 * Train lines (event "step" or "train" by default) give the curves on the left axis (keys
 * `loss_keys`, default "loss"); eval lines (event "eval") give one dev-metric curve on the right
 * axis: `metric_key`, or else the key named by the line's "main" string (tb_taskmetrics_fields
 * writes it), or else the first of mcc, corr, accuracy, f1, spearman, pearson present.
 * Rules: blank lines are skipped; a line that is not a JSON object is TB_EFORMAT naming
 * file:line, except an unterminated last line (a writer may be mid-line), which is skipped with
 * a warning; lines of other events or stages, lines without a "step", and null values
 * (non-finite numbers, see tb/base/metrics.h) are skipped; a "step" that is not a non-negative
 * integer, or a requested key holding a string or a bool, is TB_EFORMAT naming file:line. When a curve's step goes back (a run resumed from a checkpoint appends to the
 * same file), the points at and after that step are replaced by the resumed run's.
 *
 * Output: PNG (pngcairo when gnuplot has it, else gd's png) or SVG. gnuplot runs as a child
 * process (fork + exec, no shell) in a fresh temporary directory holding the data, the script
 * and the image; the image is then copied to `out_path` (written to a temporary name beside it
 * and renamed, so a reader never sees half a file). No user string reaches gnuplot unescaped:
 * titles and key names are quoted and control characters refused. gnuplot missing is
 * TB_EUNSUPPORTED (install gnuplot-nox); gnuplot failing is TB_EIO with its error output;
 * gnuplot taking longer than the timeout is killed (TB_ETIMEOUT). The caller must not reap
 * children it did not start (SIGCHLD ignored, or a handler calling waitpid(-1)): the plot would
 * then fail with TB_EIO. Curve colours are fixed (train curves #9400d3, #009e73, #0072b2, ...;
 * the dev curve #e69f00), so a picture reads the same with any gnuplot version.
 */
#ifndef TB_PLOT_H
#define TB_PLOT_H

#include <stdint.h>

typedef enum tb_plot_format { TB_PLOT_AUTO = 0, TB_PLOT_PNG, TB_PLOT_SVG } tb_plot_format;

typedef struct tb_plot_series {
    char *name;          /* the metrics key ("loss", "accuracy", ...) */
    int axis;            /* 1: left (train curves), 2: right (dev metric) */
    int64_t n, cap;
    int64_t *step;       /* increasing */
    double *value;
} tb_plot_series;

typedef struct tb_plot_data {
    tb_plot_series *series;
    int n_series;
    int64_t lines;       /* non-blank lines read */
    int64_t used;        /* lines that gave at least one point */
} tb_plot_data;

typedef struct tb_plot_opts {
    const char *train_event;  /* NULL: "step" and "train" */
    const char *eval_event;   /* NULL: "eval" */
    const char *stage;        /* NULL: lines of every stage; else only this "stage" */
    const char *loss_keys;    /* comma-separated keys for the left axis; NULL: "loss" */
    const char *metric_key;   /* right axis; NULL: automatic (see above); "": no dev curve */
    const char *title;        /* NULL: no title */
    tb_plot_format format;    /* AUTO: SVG when out_path ends in ".svg", PNG otherwise */
    int width, height;        /* pixels, 0: 1000 x 600; at most 10000 each */
    int log_y;                /* logarithmic left axis */
    const char *gnuplot;      /* the program; NULL: "gnuplot" found in PATH */
    int timeout_ms;           /* 0: 60000 */
} tb_plot_opts;

/* Reads the curves of `metrics_path` (opts may be NULL). Free with tb_plot_data_free. */
int tb_plot_data_load(tb_plot_data *d, const char *metrics_path, const tb_plot_opts *opts);
/* Appends the point (step, value) to the curve `name` on `axis` (created when new), applying
 * the resume rule above. `value` must be finite. Start from a zeroed tb_plot_data. */
int tb_plot_data_add(tb_plot_data *d, const char *name, int axis, int64_t step, double value);
/* The curve named `name`, or NULL. */
const tb_plot_series *tb_plot_data_find(const tb_plot_data *d, const char *name);
void tb_plot_data_free(tb_plot_data *d);

/* Draws `d` into `out_path` (opts may be NULL). TB_EINVAL when `d` has no point. */
int tb_plot_render(const tb_plot_data *d, const char *out_path, const tb_plot_opts *opts);

/* tb_plot_data_load + tb_plot_render: the plot a stage writes at the end of training. */
int tb_plot_metrics(const char *metrics_path, const char *out_path, const tb_plot_opts *opts);

#endif
