/* Unit tests: reading curves from a JSON-lines metrics file (events, stages, nulls, resumed runs,
 * malformed lines), and drawing them with gnuplot: a PNG checked by its signature, its IHDR
 * chunk (size, bit depth, CRC computed here), its IEND trailer and, decoded by an independent
 * Python decoder, the pixels of every curve's colour; an SVG by its size attributes;
 * hostile names and paths; gnuplot missing, failing and hanging; no temporary files left. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tb/base/error.h"
#include "tb/base/metrics.h"
#include "tb/base/plot.h"
#include "tb/train/taskmetrics.h"

static char dir[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tb-test-plot-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(setenv("TMPDIR", dir, 1), 0); /* gnuplot's work directories go here: checked below */
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    unsetenv("TMPDIR");
}

TestSuite(plot, .init = setup, .fini = teardown);

static const char *path_in(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static const char *write_file(const char *name, const char *text)
{
    const char *p = path_in(name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
    return p;
}

static void expect_points(const tb_plot_data *d, const char *name, int axis, int n, const int64_t *steps,
                          const double *values)
{
    const tb_plot_series *s = tb_plot_data_find(d, name);
    cr_assert_not_null(s, "no curve '%s'", name);
    cr_expect_eq(s->axis, axis, "%s: axis", name);
    cr_assert_eq(s->n, n, "%s: %lld points, want %d", name, (long long)s->n, n);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(s->step[i], steps[i], "%s[%d]: step %lld, want %lld", name, i, (long long)s->step[i],
                     (long long)steps[i]);
        cr_expect_eq(s->value[i], values[i], "%s[%d]: value %g, want %g", name, i, s->value[i], values[i]);
    }
}

/* Two stages in one file, a null (non-finite) loss, an eval line naming its main metric, and a run
 * resumed at step 40 whose points replace the first run's from step 40 on. */
static const char *TRAINING =
    "{\"stage\":\"tb-finetune\",\"event\":\"start\",\"time\":1.0}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"step\",\"step\":10,\"time\":2.0,\"loss\":2.0,\"lr\":1e-05}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"train\",\"step\":20,\"loss\":1.5,\"loss_att\":0.75}\n"
    "\n"
    "{\"stage\":\"tb-other\",\"event\":\"step\",\"step\":25,\"loss\":9}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"step\",\"step\":30,\"loss\":null,\"nonfinite\":{\"loss\":\"nan\"}}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"eval\",\"step\":30,\"examples\":100,\"mcc\":0.25,\"accuracy\":0.75,"
    "\"main\":\"mcc\"}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"step\",\"step\":40,\"loss\":1.0}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"step\",\"step\":50,\"loss\":0.75}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"step\",\"step\":40,\"loss\":1.125}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"step\",\"step\":50,\"loss\":0.875}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"eval\",\"step\":60,\"examples\":100,\"mcc\":0.375,\"accuracy\":0.875,"
    "\"main\":\"mcc\"}\n"
    "{\"stage\":\"tb-finetune\",\"event\":\"step\",\"step\":60,\"loss\":0.5}\n";

Test(plot, load_curves)
{
    const char *p = write_file("m.jsonl", TRAINING);
    tb_plot_data d;
    tb_plot_opts o = {.stage = "tb-finetune", .loss_keys = "loss, loss_att"};
    cr_assert_eq(tb_plot_data_load(&d, p, &o), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(d.lines, 12, "non-blank lines");
    cr_expect_eq(d.n_series, 3);
    expect_points(&d, "loss", 1, 5, (const int64_t[]){10, 20, 40, 50, 60}, (const double[]){2, 1.5, 1.125, 0.875, 0.5});
    expect_points(&d, "loss_att", 1, 1, (const int64_t[]){20}, (const double[]){0.75});
    expect_points(&d, "mcc", 2, 2, (const int64_t[]){30, 60}, (const double[]){0.25, 0.375});
    tb_plot_data_free(&d);

    /* defaults: every stage, key "loss"; an explicit metric; "" for no dev curve */
    cr_assert_eq(tb_plot_data_load(&d, p, NULL), TB_OK, "%s", tb_err_msg());
    expect_points(&d, "loss", 1, 6, (const int64_t[]){10, 20, 25, 40, 50, 60},
                  (const double[]){2, 1.5, 9, 1.125, 0.875, 0.5});
    cr_expect_null(tb_plot_data_find(&d, "loss_att"));
    tb_plot_data_free(&d);
    o = (tb_plot_opts){.metric_key = "accuracy"};
    cr_assert_eq(tb_plot_data_load(&d, p, &o), TB_OK, "%s", tb_err_msg());
    expect_points(&d, "accuracy", 2, 2, (const int64_t[]){30, 60}, (const double[]){0.75, 0.875});
    cr_expect_null(tb_plot_data_find(&d, "mcc"));
    tb_plot_data_free(&d);
    o = (tb_plot_opts){.metric_key = ""};
    cr_assert_eq(tb_plot_data_load(&d, p, &o), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(d.n_series, 1);
    tb_plot_data_free(&d);
    /* other event names */
    o = (tb_plot_opts){.train_event = "train", .eval_event = "nothing"};
    cr_assert_eq(tb_plot_data_load(&d, p, &o), TB_OK, "%s", tb_err_msg());
    expect_points(&d, "loss", 1, 1, (const int64_t[]){20}, (const double[]){1.5});
    cr_expect_eq(d.n_series, 1);
    tb_plot_data_free(&d);
}

/* What a stage writes (tb/base/metrics.h lines, eval fields from tb/train/taskmetrics.h naming their main
 * metric, a NaN loss written as null) is what the plot reads. */
Test(plot, reads_the_metrics_writer)
{
    const char *p = path_in("stage.jsonl");
    tb_metrics w;
    cr_assert_eq(tb_metrics_open(&w, "tb-finetune", p), TB_OK, "%s", tb_err_msg());
    const float losses[5] = {0.75f, 0.5f, NAN, 0.25f, 0.125f};
    for (int s = 0; s < 5; s++) {
        tb_metric f[] = {TB_MF("loss", losses[s]), TB_MF("lr", 1e-5)};
        cr_assert_eq(tb_metrics_write(&w, "step", 10 * (s + 1), f, 2), TB_OK, "%s", tb_err_msg());
    }
    /* dev: CoLA-like, 4 examples: pred {1,1,0,1}, gold {1,0,0,1} -> tp 2, fp 1, tn 1:
     * MCC = (2 - 0) / sqrt(3 * 2 * 1 * 2) = 2 / sqrt(12) */
    tb_taskmetrics tm;
    tb_taskmetrics_result r;
    cr_assert_eq(tb_taskmetrics_init(&tm, TB_TM_MCC, 2), TB_OK);
    cr_assert_eq(tb_taskmetrics_add_classes(&tm, (const int32_t[]){1, 1, 0, 1}, (const int32_t[]){1, 0, 0, 1}, 4),
                 TB_OK);
    cr_assert_eq(tb_taskmetrics_compute(&tm, &r), TB_OK);
    tb_taskmetrics_free(&tm);
    tb_metric f[TB_TM_MAX_FIELDS];
    int n = 0;
    cr_assert_eq(tb_taskmetrics_fields(&r, f, TB_TM_MAX_FIELDS, &n), TB_OK);
    cr_assert_eq(tb_metrics_write(&w, "eval", 50, f, n), TB_OK, "%s", tb_err_msg());
    tb_metrics_close(&w);

    tb_plot_data d;
    cr_assert_eq(tb_plot_data_load(&d, p, NULL), TB_OK, "%s", tb_err_msg());
    expect_points(&d, "loss", 1, 4, (const int64_t[]){10, 20, 40, 50}, (const double[]){0.75, 0.5, 0.25, 0.125});
    const tb_plot_series *m = tb_plot_data_find(&d, "mcc");
    cr_assert_not_null(m, "the dev curve follows the eval line's main metric");
    cr_assert_eq(m->n, 1);
    cr_expect(fabs(m->value[0] - 2.0 / sqrt(12.0)) < 1e-8, "mcc %g", m->value[0]);
    cr_expect_eq(d.n_series, 2);
    tb_plot_data_free(&d);
}

Test(plot, metric_chosen_without_main)
{
    const char *p = write_file("m.jsonl",
                               "{\"event\":\"eval\",\"step\":5,\"examples\":3,\"f1\":0.5,\"accuracy\":0.25}\n"
                               "{\"event\":\"eval\",\"step\":9,\"examples\":3,\"f1\":0.75,\"accuracy\":0.5}\n");
    tb_plot_data d;
    cr_assert_eq(tb_plot_data_load(&d, p, NULL), TB_OK, "%s", tb_err_msg());
    /* preference mcc, corr, accuracy, f1, ...: accuracy, and "examples" never */
    expect_points(&d, "accuracy", 2, 2, (const int64_t[]){5, 9}, (const double[]){0.25, 0.5});
    cr_expect_eq(d.n_series, 1);
    tb_plot_data_free(&d);
}

Test(plot, malformed_files)
{
    tb_plot_data d;
    const char *p = write_file("bad.jsonl", "{\"event\":\"step\",\"step\":1,\"loss\":1}\n{\"event\":\"step\",\n"
                                            "{\"event\":\"step\",\"step\":2,\"loss\":1}\n");
    cr_expect_eq(tb_plot_data_load(&d, p, NULL), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "bad.jsonl:2:") != NULL, "message: %s", tb_err_msg());
    cr_expect_eq(d.n_series, 0, "a failed load leaves nothing");
    /* an unterminated last line is a writer caught mid-line: skipped */
    p = write_file("tail.jsonl", "{\"event\":\"step\",\"step\":1,\"loss\":1}\n{\"event\":\"step\",\"st");
    cr_assert_eq(tb_plot_data_load(&d, p, NULL), TB_OK, "%s", tb_err_msg());
    expect_points(&d, "loss", 1, 1, (const int64_t[]){1}, (const double[]){1});
    tb_plot_data_free(&d);
    p = write_file("str.jsonl", "{\"event\":\"step\",\"step\":1,\"loss\":\"low\"}\n");
    cr_expect_eq(tb_plot_data_load(&d, p, NULL), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "str.jsonl:1: \"loss\" is not a number") != NULL, "message: %s", tb_err_msg());
    p = write_file("step.jsonl", "{\"event\":\"step\",\"step\":1.5,\"loss\":1}\n");
    cr_expect_eq(tb_plot_data_load(&d, p, NULL), TB_EFORMAT);
    p = write_file("neg.jsonl", "{\"event\":\"step\",\"step\":-3,\"loss\":1}\n");
    cr_expect_eq(tb_plot_data_load(&d, p, NULL), TB_EFORMAT);
    p = write_file("array.jsonl", "[1,2]\n");
    cr_expect_eq(tb_plot_data_load(&d, p, NULL), TB_EFORMAT);
    cr_expect_eq(tb_plot_data_load(&d, path_in("missing.jsonl"), NULL), TB_ENOTFOUND);
    cr_expect(strstr(tb_err_msg(), "missing.jsonl") != NULL, "message: %s", tb_err_msg());
    cr_expect_eq(tb_plot_data_load(&d, NULL, NULL), TB_EINVAL);
    /* explicitly requested keys that never appear are most likely typos */
    p = write_file("m.jsonl", TRAINING);
    tb_plot_opts o = {.loss_keys = "loss,los"};
    cr_expect_eq(tb_plot_data_load(&d, p, &o), TB_ENOTFOUND);
    cr_expect(strstr(tb_err_msg(), "\"los\"") != NULL, "message: %s", tb_err_msg());
    o = (tb_plot_opts){.metric_key = "f1"};
    cr_expect_eq(tb_plot_data_load(&d, p, &o), TB_ENOTFOUND);
    o = (tb_plot_opts){.loss_keys = " , "};
    cr_expect_eq(tb_plot_data_load(&d, p, &o), TB_EINVAL);
}

Test(plot, add_points)
{
    tb_plot_data d = {0};
    cr_assert_eq(tb_plot_data_add(&d, "loss", 1, 0, 3.0), TB_OK);
    cr_assert_eq(tb_plot_data_add(&d, "loss", 1, 5, 2.0), TB_OK);
    cr_assert_eq(tb_plot_data_add(&d, "loss", 1, 9, 1.0), TB_OK);
    cr_assert_eq(tb_plot_data_add(&d, "loss", 1, 5, 2.5), TB_OK); /* resumed at 5: drops 5 and 9 */
    expect_points(&d, "loss", 1, 2, (const int64_t[]){0, 5}, (const double[]){3.0, 2.5});
    cr_expect_eq(tb_plot_data_add(&d, "loss", 1, 6, NAN), TB_EINVAL);
    cr_expect_eq(tb_plot_data_add(&d, "loss", 3, 6, 1.0), TB_EINVAL);
    cr_expect_eq(tb_plot_data_add(&d, "", 1, 6, 1.0), TB_EINVAL);
    for (int i = 0; i < 1000; i++) cr_assert_eq(tb_plot_data_add(&d, "acc", 2, i, i / 1000.0), TB_OK);
    cr_expect_eq(tb_plot_data_find(&d, "acc")->n, 1000);
    cr_expect_eq(tb_plot_data_find(&d, "acc")->value[999], 0.999);
    tb_plot_data_free(&d);
}

/* ---- images -------------------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* CRC-32 (ISO 3309, the one PNG uses), bit by bit. */
static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "no file %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    cr_assert(len > 0, "%s is empty", path);
    rewind(f);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    b[len] = 0;
    *n = (size_t)len;
    return b;
}

/* A valid PNG of w x h: signature, IHDR first with a correct CRC, IEND last. */
static void expect_png(const char *path, uint32_t w, uint32_t h)
{
    size_t n;
    unsigned char *b = slurp(path, &n);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    cr_assert(n > 8 + 25 + 12 + 2000, "%s: %zu bytes is too small for a plot", path, n);
    cr_assert_eq(memcmp(b, sig, 8), 0, "%s: not a PNG signature", path);
    cr_expect_eq(be32(b + 8), 13, "IHDR length");
    cr_assert_eq(memcmp(b + 12, "IHDR", 4), 0, "first chunk is not IHDR");
    cr_expect_eq(be32(b + 16), w, "width %u, want %u", be32(b + 16), w);
    cr_expect_eq(be32(b + 20), h, "height %u, want %u", be32(b + 20), h);
    cr_expect(b[24] == 8 || b[24] == 16 || b[24] <= 4, "bit depth %d", b[24]);
    cr_expect(b[25] <= 6 && b[25] != 1 && b[25] != 5, "colour type %d", b[25]);
    cr_expect_eq(be32(b + 29), crc32_png(b + 12, 17), "IHDR CRC");
    cr_expect_eq(be32(b + n - 12), 0, "IEND length");
    cr_expect_eq(memcmp(b + n - 8, "IEND", 4), 0, "last chunk is not IEND");
    cr_expect_eq(be32(b + n - 4), crc32_png(b + n - 8, 4), "IEND CRC");
    free(b);
}

/* Pixels of each colour (hex "rrggbb") in a PNG, decoded independently by
 * tests/reference/py/png_pixels.py (zlib + the PNG row filters). */
static void color_counts(const char *png, int n, const char *const *colors, long *counts)
{
    char cmd[1024];
    int len = snprintf(cmd, sizeof cmd, "%s %s/tests/reference/py/png_pixels.py '%s'", TB_PYTHON, TB_SOURCE_DIR, png);
    for (int i = 0; i < n; i++) len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s", colors[i]);
    cr_assert(len < (int)sizeof cmd);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    for (int i = 0; i < n; i++) {
        char hex[16];
        cr_assert_eq(fscanf(p, " %6[0-9a-f]:%ld", hex, &counts[i]), 2, "bad output of %s", cmd);
        cr_assert_str_eq(hex, colors[i]);
    }
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
}

/* With TB_PLOT_KEEP=<dir> in the environment, copies an image there to look at it. */
static void keep_copy(const char *path, const char *as)
{
    const char *keep = getenv("TB_PLOT_KEEP");
    if (!keep) return;
    size_t n;
    unsigned char *b = slurp(path, &n);
    char dst[512];
    snprintf(dst, sizeof dst, "%s/%s", keep, as);
    FILE *f = fopen(dst, "wb");
    cr_assert_not_null(f, "cannot write %s", dst);
    cr_expect_eq(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

/* Nothing but the expected files is left in the test directory (gnuplot's work dirs are gone). */
static void expect_no_leftovers(void)
{
    DIR *dp = opendir(dir);
    cr_assert_not_null(dp);
    struct dirent *e;
    while ((e = readdir(dp)))
        cr_expect(strncmp(e->d_name, "tb-plot-", 8) != 0 && !strstr(e->d_name, ".tmp-"), "left over: %s", e->d_name);
    closedir(dp);
}

Test(plot, png_from_metrics)
{
    const char *m = write_file("m.jsonl", TRAINING);
    const char *out = path_in("curves.png");
    tb_plot_opts o = {.stage = "tb-finetune", .loss_keys = "loss,loss_att", .title = "tb-finetune: CoLA",
                      .width = 800, .height = 500};
    cr_assert_eq(tb_plot_metrics(m, out, &o), TB_OK, "%s", tb_err_msg());
    expect_png(out, 800, 500);
    keep_copy(out, "metrics.png");
    /* every curve was drawn in its colour: loss (6 points), loss_att (1 point), dev mcc (2 points) */
    static const char *const colors[] = {"9400d3", "009e73", "e69f00", "ffffff"};
    long c[4];
    color_counts(out, 4, colors, c);
    cr_expect(c[0] >= 200, "loss curve: %ld pixels", c[0]);
    cr_expect(c[1] >= 10, "loss_att point: %ld pixels", c[1]);
    cr_expect(c[2] >= 100, "dev mcc curve: %ld pixels", c[2]);
    cr_expect(c[3] >= 800 * 500 / 2, "white background: %ld pixels", c[3]);
    expect_no_leftovers();
}

/* A longer run on a log axis, default size. */
Test(plot, png_default_size_and_many_points)
{
    tb_plot_data d = {0};
    for (int s = 0; s <= 2000; s += 10) {
        cr_assert_eq(tb_plot_data_add(&d, "loss", 1, s, 0.7 * exp(-s / 500.0) + 0.05 + 0.02 * sin(s / 7.0)), TB_OK);
        cr_assert_eq(tb_plot_data_add(&d, "loss_hidden", 1, s, 0.4 * exp(-s / 800.0) + 0.01), TB_OK);
        if (s % 200 == 0) cr_assert_eq(tb_plot_data_add(&d, "accuracy", 2, s, 0.5 + 0.35 * (1 - exp(-s / 600.0))), TB_OK);
    }
    const char *out = path_in("long.png");
    tb_plot_opts o = {.title = "SST-2 fine-tuning (it's a 'test')", .log_y = 1};
    cr_assert_eq(tb_plot_render(&d, out, &o), TB_OK, "%s", tb_err_msg());
    expect_png(out, 1000, 600);
    keep_copy(out, "long.png");
    static const char *const colors[] = {"9400d3", "009e73", "e69f00"};
    long c[3];
    color_counts(out, 3, colors, c);
    cr_expect(c[0] >= 500 && c[1] >= 500 && c[2] >= 200, "curve pixels: loss %ld, loss_hidden %ld, dev %ld", c[0],
              c[1], c[2]);
    tb_plot_data_free(&d);
}

Test(plot, svg_and_dev_curve_alone)
{
    tb_plot_data d = {0};
    cr_assert_eq(tb_plot_data_add(&d, "spearman", 2, 100, 0.5), TB_OK);
    cr_assert_eq(tb_plot_data_add(&d, "spearman", 2, 200, 0.625), TB_OK);
    const char *out = path_in("dev.svg");
    tb_plot_opts o = {.width = 640, .height = 400};
    cr_assert_eq(tb_plot_render(&d, out, &o), TB_OK, "%s", tb_err_msg());
    size_t n;
    char *s = (char *)slurp(out, &n);
    cr_expect(strstr(s, "<svg") != NULL, "not an SVG");
    cr_expect(strstr(s, "width=\"640\"") != NULL && strstr(s, "height=\"400\"") != NULL, "size attributes");
    cr_expect(strstr(s, "dev spearman") != NULL, "curve title");
    cr_expect(strstr(s, "</svg>") != NULL, "truncated SVG");
    free(s);
    /* an explicit format wins over the extension */
    out = path_in("dev.img");
    o.format = TB_PLOT_SVG;
    cr_assert_eq(tb_plot_render(&d, out, &o), TB_OK, "%s", tb_err_msg());
    s = (char *)slurp(out, &n);
    cr_expect(strstr(s, "<svg") != NULL, "not an SVG");
    free(s);
    tb_plot_data_free(&d);
    expect_no_leftovers();
}

/* Quotes, backquotes and spaces reach gnuplot as text, never as commands; control characters are
 * refused. */
Test(plot, hostile_names_and_paths)
{
    char pwned[300], name[400];
    snprintf(pwned, sizeof pwned, "%s/pwned", dir);
    snprintf(name, sizeof name, "it's `touch %s` @x \\' \"q\"", pwned);
    tb_plot_data d = {0};
    cr_assert_eq(tb_plot_data_add(&d, name, 1, 1, 1.0), TB_OK);
    cr_assert_eq(tb_plot_data_add(&d, name, 1, 2, 0.5), TB_OK);
    const char *out = path_in("it's a \"plot\" `x`.png");
    tb_plot_opts o = {.title = name, .width = 400, .height = 300};
    cr_assert_eq(tb_plot_render(&d, out, &o), TB_OK, "%s", tb_err_msg());
    expect_png(out, 400, 300);
    keep_copy(out, "hostile.png");
    cr_expect_neq(access(pwned, F_OK), 0, "a backquote in a name ran a command");
    o.title = "two\nlines";
    cr_expect_eq(tb_plot_render(&d, out, &o), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "control character") != NULL, "message: %s", tb_err_msg());
    expect_no_leftovers();
    tb_plot_data_free(&d);
}

Test(plot, bad_requests)
{
    tb_plot_data d = {0};
    cr_expect_eq(tb_plot_render(&d, path_in("x.png"), NULL), TB_EINVAL, "nothing to plot");
    cr_expect(strstr(tb_err_msg(), "nothing to plot") != NULL, "message: %s", tb_err_msg());
    cr_assert_eq(tb_plot_data_add(&d, "loss", 1, 1, 0.0), TB_OK);
    tb_plot_opts o = {.log_y = 1};
    cr_expect_eq(tb_plot_render(&d, path_in("x.png"), &o), TB_EINVAL, "log axis with a zero loss");
    o = (tb_plot_opts){.width = 20000};
    cr_expect_eq(tb_plot_render(&d, path_in("x.png"), &o), TB_EINVAL);
    o = (tb_plot_opts){.format = (tb_plot_format)9};
    cr_expect_eq(tb_plot_render(&d, path_in("x.png"), &o), TB_EINVAL);
    cr_expect_eq(tb_plot_render(&d, "", NULL), TB_EINVAL);
    cr_expect_eq(tb_plot_render(&d, path_in("no/such/dir/x.png"), NULL), TB_EIO);
    cr_expect(strstr(tb_err_msg(), "no/such/dir/x.png") != NULL, "message: %s", tb_err_msg());
    expect_no_leftovers();
    tb_plot_data_free(&d);
}

Test(plot, gnuplot_missing_failing_hanging)
{
    tb_plot_data d = {0};
    cr_assert_eq(tb_plot_data_add(&d, "loss", 1, 1, 1.0), TB_OK);
    const char *out = path_in("x.png");
    tb_plot_opts o = {.gnuplot = "/nonexistent/gnuplot"};
    cr_expect_eq(tb_plot_render(&d, out, &o), TB_EUNSUPPORTED);
    cr_expect(strstr(tb_err_msg(), "gnuplot-nox") != NULL, "message: %s", tb_err_msg());
    /* not in PATH */
    char *saved = strdup(getenv("PATH") ? getenv("PATH") : "");
    cr_assert_eq(setenv("PATH", dir, 1), 0);
    int rc = tb_plot_render(&d, out, NULL);
    cr_assert_eq(setenv("PATH", saved, 1), 0);
    free(saved);
    cr_expect_eq(rc, TB_EUNSUPPORTED);
    cr_expect(strstr(tb_err_msg(), "PATH") != NULL && strstr(tb_err_msg(), "gnuplot-nox") != NULL, "message: %s",
              tb_err_msg());
    /* a program that fails, with its error output in the message */
    const char *fail = write_file("fail.sh", "#!/bin/sh\necho 'line 3: unknown terminal' >&2\nexit 3\n");
    cr_assert_eq(chmod(fail, 0755), 0);
    o.gnuplot = fail;
    cr_expect_eq(tb_plot_render(&d, out, &o), TB_EIO);
    cr_expect(strstr(tb_err_msg(), "exited with status 3: line 3: unknown terminal") != NULL, "message: %s",
              tb_err_msg());
    /* a program that succeeds without drawing */
    o.gnuplot = "/bin/true";
    cr_expect_eq(tb_plot_render(&d, out, &o), TB_EIO);
    cr_expect(strstr(tb_err_msg(), "no image") != NULL, "message: %s", tb_err_msg());
    /* a program that hangs is killed */
    const char *hang = write_file("hang.sh", "#!/bin/sh\nexec sleep 30\n");
    cr_assert_eq(chmod(hang, 0755), 0);
    o.gnuplot = hang;
    o.timeout_ms = 300;
    cr_expect_eq(tb_plot_render(&d, out, &o), TB_ETIMEOUT);
    /* not executable */
    const char *noexec = write_file("noexec", "x");
    o.gnuplot = noexec;
    cr_expect_eq(tb_plot_render(&d, out, &o), TB_EUNSUPPORTED);
    cr_expect_neq(access(out, F_OK), 0, "no plot after failures");
    expect_no_leftovers();
    tb_plot_data_free(&d);
}
