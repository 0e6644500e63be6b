/* The stages as processes: an output never destroys an input or an earlier output. A tb-emit run
 * refused part-way (batches of another vocabulary) leaves the existing feature file byte for
 * byte; an output that is one of the stage's inputs (tb-emit, tb-tokenize, tb-vocab, tb-eval,
 * however the path is spelled; the Python kit's stages too) is refused before anything is
 * written, and the input is untouched. */
#include "proc.h"
#include "test_finetune_data.h"

#include "tb/base/error.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define EMIT TB_BIN_DIR "/tb-emit"
#define TOKENIZE TB_BIN_DIR "/tb-tokenize"
#define VOCAB TB_BIN_DIR "/tb-vocab"
#define EVAL TB_BIN_DIR "/tb-eval"
#define FT TB_BIN_DIR "/tb-finetune"
#define DISTILL TB_BIN_DIR "/tb-distill"

static char dir[256], cfg[512], vocab[512], train[512], teacher[512], errpath[512];

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    snprintf(train, sizeof train, "%s/train.tbm", dir);
    snprintf(teacher, sizeof teacher, "%s/teacher", dir);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    cr_assert_eq(ft_write_config(cfg, 0), 0);
    cr_assert_eq(ft_write_vocab(vocab), 0);
    /* batches carrying the hash of vocab.txt, which the teacher carries too */
    cr_assert_eq(ft_write_batches(train, 3, 4, 8, 1, 0), TB_OK, "%s", tb_err_msg());
    tb_bert_config c;
    cr_assert_eq(tb_config_load(cfg, &c), TB_OK, "%s", tb_err_msg());
    c.head = TB_HEAD_TINYBERT;
    c.num_labels = 2;
    tb_bert_model m = {0};
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_checkpoint_save(teacher, 1, &m.config, &m.params, NULL, NULL, vocab, NULL, 0), TB_OK, "%s",
                 tb_err_msg());
    tb_bert_free(&m);
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(robust_outputs, .init = setup, .fini = teardown, .timeout = 120);

/* The file's bytes (malloc'd, NUL-terminated) and length; NULL when missing. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    cr_assert_not_null(p);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return p;
}

static char *err_text(void)
{
    char *e = slurp(errpath, NULL);
    cr_assert_not_null(e);
    fprintf(stderr, "%s", e);
    return e;
}

/* Files in dir whose name contains ".tmp" (a temporary left behind). */
static int temporaries(void)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) n++;
    closedir(d);
    return n;
}

/* The file at `path` still has exactly the bytes `want` (wn bytes). */
static void expect_bytes(const char *path, const char *want, size_t wn, const char *what)
{
    size_t n = 0;
    char *got = slurp(path, &n);
    cr_expect_not_null(got, "%s: %s is gone", what, path);
    if (got) cr_expect(n == wn && memcmp(got, want, wn) == 0, "%s: %s changed (%zu bytes, was %zu)", what, path, n, wn);
    free(got);
}

/* Issue 15, item 3: the feature file became 16 bytes before the vocabulary check ran. */
Test(robust_outputs, emit_refused_by_vocabulary_leaves_the_existing_output)
{
    char out[600];
    snprintf(out, sizeof out, "%s/features.tbm", dir);
    cr_assert_eq(tb_proc_sh_err(errpath, "%s --teacher %s --input %s --output file:%s --hidden 0 --threads 1", EMIT, teacher, train, out),
                 0);
    size_t n0 = 0;
    char *before = slurp(out, &n0);
    cr_assert_not_null(before);
    cr_assert_gt(n0, 1000u);
    /* the teacher now carries another vocabulary than the batches say */
    char tv[700];
    snprintf(tv, sizeof tv, "%s/step-1/vocab.txt", teacher);
    FILE *f = fopen(tv, "a");
    cr_assert_not_null(f);
    fputs("extra\n", f);
    fclose(f);
    cr_assert_eq(tb_proc_sh_err(errpath, "%s --teacher %s --input %s --output file:%s --hidden 0 --threads 1", EMIT, teacher, train, out),
                 1);
    char *e = err_text();
    cr_expect(strstr(e, "vocabulary"), "%s", e);
    free(e);
    expect_bytes(out, before, n0, "a refused tb-emit");
    cr_expect_eq(temporaries(), 0, "a temporary file was left behind");
    free(before);
}

Test(robust_outputs, emit_input_as_output_is_refused)
{
    size_t n0 = 0;
    char *before = slurp(train, &n0);
    cr_assert_not_null(before);
    for (int k = 0; k < 3; k++) {
        char out[1200];
        if (k == 0) snprintf(out, sizeof out, "file:%s/train.tbm", dir);
        if (k == 1) snprintf(out, sizeof out, "file://%s/./train.tbm", dir);
        if (k == 2) snprintf(out, sizeof out, "%s/../%s/train.tbm", dir, strrchr(dir, '/') + 1);
        cr_assert_eq(tb_proc_sh_err(errpath, "%s --teacher %s --input %s --output %s --hidden 0 --threads 1", EMIT, teacher, train, out), 1,
                     "%s", out);
        char *e = err_text();
        cr_expect(strstr(e, "same file") && strstr(e, "--output") && strstr(e, "--input"), "%s", e);
        free(e);
        expect_bytes(train, before, n0, "tb-emit --output = --input");
    }
    /* the metrics are an output too */
    cr_assert_eq(tb_proc_sh_err(errpath, "%s --teacher %s --input %s --output file:%s/o.tbm --metrics %s --hidden 0", EMIT, teacher, train,
                    dir, train),
                 1);
    expect_bytes(train, before, n0, "tb-emit --metrics = --input");
    free(before);
}

Test(robust_outputs, tokenize_and_vocab_refuse_their_input_as_output)
{
    char rows[600], link[600];
    snprintf(rows, sizeof rows, "%s/rows.txt", dir);
    snprintf(link, sizeof link, "%s/rows-link.txt", dir);
    FILE *f = fopen(rows, "w");
    cr_assert_not_null(f);
    fputs("w5 w6 w7\t1\nw8 w9\t0\nw10 w11 w12\t1\n", f);
    fclose(f);
    cr_assert_eq(symlink(rows, link), 0);
    size_t n0 = 0, v0 = 0;
    char *before = slurp(rows, &n0), *vbefore = slurp(vocab, &v0);
    const char *tok = TOKENIZE " --format simple --batch-size 1 --consumers 0";
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --input %s --vocab %s --output %s", tok, rows, vocab, rows), 1);
    char *e = err_text();
    cr_expect(strstr(e, "same file") && strstr(e, rows), "%s", e);
    free(e);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --input %s --vocab %s --output file:%s", tok, rows, vocab, link), 1);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --input %s --vocab %s --output %s", tok, rows, vocab, vocab), 1);
    e = err_text();
    cr_expect(strstr(e, "--vocab"), "%s", e);
    free(e);
    cr_expect_eq(tb_proc_sh_err(errpath, VOCAB " --input %s --format simple --output %s --vocab-size 40 --min-frequency 1", link, rows), 1);
    e = err_text();
    cr_expect(strstr(e, "same file"), "%s", e);
    free(e);
    expect_bytes(rows, before, n0, "tb-tokenize / tb-vocab --output = --input");
    expect_bytes(vocab, vbefore, v0, "tb-tokenize --output = --vocab");
    /* a distinct output is written, and replaces an earlier one whole */
    char out[700];
    snprintf(out, sizeof out, "%s/batches.tbm", dir);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --input %s --vocab %s --output %s", tok, rows, vocab, out), 0);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --input %s --vocab %s --output %s", tok, link, vocab, out), 0);
    cr_expect_eq(temporaries(), 0);
    free(before);
    free(vbefore);
}

Test(robust_outputs, eval_refuses_its_input_as_json_or_predictions)
{
    size_t n0 = 0;
    char *before = slurp(train, &n0);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --model %s --input %s --json %s", EVAL, teacher, train, train), 1);
    char *e = err_text();
    cr_expect(strstr(e, "--json") && strstr(e, "same file"), "%s", e);
    free(e);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --model %s --input %s --predictions %s", EVAL, teacher, train, train), 1);
    expect_bytes(train, before, n0, "tb-eval --json/--predictions = --input");
    free(before);
}

/* The trainers' own files (metrics lines, the loss plot) are outputs too. */
Test(robust_outputs, trainers_refuse_an_input_as_metrics_or_plot)
{
    size_t n0 = 0;
    char *before = slurp(train, &n0);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --init %s --input %s --output %s/ft --metrics %s --max-steps 1 --threads 1", FT, teacher, train,
                    dir, train),
                 1);
    char *e = err_text();
    cr_expect(strstr(e, "--metrics") && strstr(e, "same file"), "%s", e);
    free(e);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --init %s --input %s --output %s/ft2 --plot %s --max-steps 1 --threads 1", FT, teacher, train,
                    dir, train),
                 1);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --mode task-stage2 --init %s --input %s --output %s/st --plot %s --max-steps 1 --threads 1",
                    DISTILL, teacher, train, dir, train),
                 1);
    e = err_text();
    cr_expect(strstr(e, "--plot") && strstr(e, "same file"), "%s", e);
    free(e);
    expect_bytes(train, before, n0, "tb-finetune / tb-distill --metrics, --plot = --input");
    free(before);
}

/* The Python stage kit applies the same rule (tinybert_stage.Stage.check_outputs). */
Test(robust_outputs, python_stage_refuses_its_input_as_output)
{
    char rows[600];
    snprintf(rows, sizeof rows, "%s/dev.tsv", dir);
    FILE *f = fopen(rows, "w");
    cr_assert_not_null(f);
    fputs("sentence\tlabel\nw5 w6\t1\n", f);
    fclose(f);
    size_t n0 = 0, v0 = 0;
    char *before = slurp(rows, &n0), *vbefore = slurp(vocab, &v0);
    const char *py = TB_PYTHON " " TB_SOURCE_DIR "/python/stages/tb-py-tokenize --consumers 0";
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --input %s --vocab %s --output file:%s", py, rows, vocab, rows), 1);
    char *e = err_text();
    cr_expect(strstr(e, "same file") && strstr(e, "--input"), "%s", e);
    free(e);
    cr_expect_eq(tb_proc_sh_err(errpath, "%s --input %s --vocab %s --output %s/../%s/vocab.txt", py, rows, vocab, dir, strrchr(dir, '/') + 1),
                 1);
    expect_bytes(rows, before, n0, "tb-py-tokenize --output = --input");
    expect_bytes(vocab, vbefore, v0, "tb-py-tokenize --output = --vocab");
    free(before);
    free(vbefore);
}
