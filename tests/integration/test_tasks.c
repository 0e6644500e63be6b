/* Integration tests: the generic pipeline pipelines/task.pipe, run by tb-pipeline at a tiny size
 * (a 2-layer 32-wide teacher, a 1-layer student, a 600-token vocabulary, a few steps per step)
 * for a pair task scored by F1 (MRPC, data/mrpc), a regression task (data/stsb, STS-B's format)
 * and the simple text<TAB>label format (data/seed). Each flow must finish; the teacher has the
 * task's outputs (2 classes, or 1 for regression); the final table (eval.json) is the task's
 * metric, and its values equal scikit-learn's / SciPy's computed from tb-eval's predictions and
 * the gold labels read by Python from the dev file (tests/reference/py/task_flow_check.py); the
 * prediction-layer student's schedule is the count its emitter announced, which equals the
 * batches of the augmented training file counted here from its rows.
 * Bad input (an unknown task, a label outside the task's set, a regression value that is not a
 * number, a DEV file of another format) stops the flow with an error naming the file and line. */
#include "proc.h"
#include "repodata.h"
#include "tb/base/error.h"
#include "tb/model/bert_config.h"
#include "tb/store/checkpoint.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PIPELINE TB_BIN_DIR "/tb-pipeline"
#define EVAL TB_BIN_DIR "/tb-eval"
#define TASK_PIPE TB_SOURCE_DIR "/pipelines/task.pipe"
#define CHECK_PY TB_SOURCE_DIR "/tests/reference/py/task_flow_check.py"
#define BATCH 16

static char dir[256];

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(tasks, .init = setup, .fini = teardown, .timeout = 900);

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

/* A tiny teacher and student (vocabulary 600) in DIR/configs. */
static void write_configs(void)
{
    static const char *const fmt =
        "{\"architectures\": [\"BertModel\"], \"hidden_act\": \"gelu\", \"max_position_embeddings\": 64,\n"
        " \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, \"hidden_dropout_prob\": 0.1,\n"
        " \"attention_probs_dropout_prob\": 0.1, \"initializer_range\": 0.02, \"pad_token_id\": 0,\n"
        " \"vocab_size\": 600, \"model_type\": \"bert\", \"hidden_size\": %d, \"num_hidden_layers\": %d,\n"
        " \"num_attention_heads\": 2, \"intermediate_size\": %d, \"tinybert_head\": \"none\",\n"
        " \"tinybert_mlm_head\": false, \"fit_size\": %d}\n";
    char path[400], text[1024];
    snprintf(path, sizeof path, "%s/configs", dir);
    cr_assert_eq(mkdir(path, 0777), 0);
    snprintf(path, sizeof path, "%s/configs/teacher.json", dir);
    snprintf(text, sizeof text, fmt, 32, 2, 64, 0);
    write_text(path, text);
    snprintf(path, sizeof path, "%s/configs/student.json", dir);
    snprintf(text, sizeof text, fmt, 16, 1, 32, 32);
    write_text(path, text);
}

/* Runs tb-pipeline on task.pipe at the tiny size with `vars` (NULL-terminated "K=V" strings) and
 * RUN=DIR/<run>; its stderr goes to DIR/<run>.err. Returns the exit status. */
static int run_flow(const char *run, const char *const *vars)
{
    char *argv[64];
    char runvar[400], cfg[400], err[400];
    int n = 0;
    snprintf(runvar, sizeof runvar, "RUN=%s/%s", dir, run);
    snprintf(cfg, sizeof cfg, "CONFIGS=%s/configs", dir);
    snprintf(err, sizeof err, "%s/%s.err", dir, run);
    argv[n++] = PIPELINE;
    argv[n++] = TASK_PIPE;
    argv[n++] = runvar;
    argv[n++] = cfg;
    static const char *const tiny[] = {"VOCAB_SIZE=600", "SEQ=32", "BATCH=16", "PRETRAIN_STEPS=6", "GENERAL_STEPS=4",
                                       "CORPUS_EPOCHS=1", "CORPUS_FORMAT=corpus", "AUGMENT_N=1", "AUGMENT_ROWS=64",
                                       NULL};
    for (int i = 0; tiny[i]; i++) argv[n++] = (char *)tiny[i];
    for (int i = 0; vars[i]; i++) argv[n++] = (char *)vars[i]; /* later ones win */
    argv[n] = NULL;
    pid_t p = fork();
    cr_assert_geq(p, 0);
    if (p == 0) {
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0 || dup2(fd, 1) < 0) _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int code = -1;
    int r = tb_proc_wait(p, 800000, &code);
    if (r != 0) tb_proc_reap(p);
    cr_assert_eq(r, 0, "tb-pipeline did not finish (%s)", err);
    return code;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Fails with the flow's stderr when `code` is not `want`. */
static void expect_exit(const char *run, int code, int want)
{
    char err[400];
    snprintf(err, sizeof err, "%s/%s.err", dir, run);
    if (code != want) {
        const char *e = slurp(err);
        size_t n = strlen(e);
        cr_assert_fail("%s: tb-pipeline exited %d, expected %d; its stderr ends:\n%s", run, code, want,
                       n > 6000 ? e + n - 6000 : e);
    }
}

static void expect_in_err(const char *run, const char *want)
{
    char err[400];
    snprintf(err, sizeof err, "%s/%s.err", dir, run);
    const char *e = slurp(err);
    cr_expect(strstr(e, want) != NULL, "%s: stderr lacks [%s]:\n%s", run, want, strlen(e) > 4000 ? e + strlen(e) - 4000 : e);
}

static int run_cmd(char *const argv[])
{
    pid_t p = tb_proc_spawn(argv);
    cr_assert_gt(p, 0);
    int code = -1;
    int r = tb_proc_wait(p, 300000, &code);
    if (r != 0) tb_proc_reap(p);
    cr_assert_eq(r, 0, "%s did not finish", argv[0]);
    return code;
}

/* Data rows of a task file (lines that are not empty, less the header line of a header task). */
static long data_rows(const char *path, int header)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot read %s", path);
    char line[1 << 14];
    long n = 0;
    while (fgets(line, sizeof line, f))
        if (line[0] != '\n') n++;
    fclose(f);
    return n - (header ? 1 : 0);
}

/* The number after "key": in `text`, from `from` on; -1 when absent. */
static long json_int(const char *text, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(text, k);
    return p ? atol(p + strlen(k)) : -1;
}

/* The checks every finished flow gets (see the top of the file). */
static void check_flow(const char *run, const char *task, const char *dev, int header, int labels, int epochs)
{
    char p[600], q[600], pred[600], json[600];
    /* the teacher and the student have the task's outputs: 2 classes, or 1 value for regression */
    static const char *const models[] = {"teacher-task/best", "student-stage2/best"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s/%s", dir, run, models[i]);
        tb_bert_config c;
        cr_assert_eq(tb_checkpoint_load_config(p, TB_CKPT_ANY_HEAD, &c), TB_OK, "%s", tb_err_msg());
        cr_expect_eq(c.num_labels, labels, "%s: %s has %d outputs, the task %d", run, models[i], c.num_labels, labels);
    }
    /* eval.json: teacher and student, by the task's metric */
    snprintf(p, sizeof p, "%s/%s/eval.json", dir, run);
    const char *ej = slurp(p);
    const char *main_name = strcmp(task, "mrpc") == 0 ? "\"main\":\"acc_and_f1\"" : strcmp(task, "sts-b") == 0 ? "\"main\":\"corr\"" : "\"main\":\"accuracy\"";
    cr_expect(strstr(ej, main_name) && strstr(strstr(ej, main_name) + 1, main_name), "%s: eval.json lacks %s twice: %s", run,
              main_name, ej);
    /* the student's metrics equal scikit-learn / SciPy's from its predictions */
    snprintf(p, sizeof p, "%s/%s/student-stage2/best", dir, run);
    snprintf(q, sizeof q, "%s/%s/dev.tbm", dir, run);
    snprintf(pred, sizeof pred, "%s/%s/pred.tsv", dir, run);
    snprintf(json, sizeof json, "%s/%s/student.json", dir, run);
    char *ev[] = {EVAL, "--model", p, "--input", q, "--predictions", pred, "--json", json, "--log-level", "warn", NULL};
    cr_assert_eq(run_cmd(ev), 0, "tb-eval on %s", p);
    char *py[] = {TB_PYTHON, CHECK_PY, (char *)task, (char *)tb_test_data(dev), pred, json, NULL};
    cr_expect_eq(run_cmd(py), 0, "%s: the metrics differ from scikit-learn / SciPy's (stderr above)", run);
    /* the stage-2 student's schedule is the announced count = the batches of the augmented rows */
    snprintf(p, sizeof p, "%s/%s/train-aug", dir, run);
    long batches = data_rows(p, header) / BATCH * epochs; /* tb-tokenize --epochs TASK_EPOCHS, full batches */
    snprintf(p, sizeof p, "%s/%s/student-stage2/metrics.jsonl", dir, run);
    const char *m = strstr(slurp(p), "\"event\":\"schedule\"");
    cr_assert_not_null(m, "%s: no schedule event in %s", run, p);
    cr_expect_eq(json_int(m, "announced"), batches, "%s: announced %ld, the augmented file makes %ld batches", run,
                 json_int(m, "announced"), batches);
    cr_expect_eq(json_int(m, "t_total"), batches, "%s: schedule of %ld steps, want %ld", run, json_int(m, "t_total"), batches);
}

Test(tasks, a_pair_task_with_f1_mrpc)
{
    write_configs();
    char corpus[1024], train[1024], dev[1024];
    snprintf(corpus, sizeof corpus, "CORPUS=%s", tb_test_data("corpus/en_data.txt"));
    snprintf(train, sizeof train, "TRAIN=%s", tb_test_data("mrpc/train.tsv"));
    snprintf(dev, sizeof dev, "DEV=%s", tb_test_data("mrpc/dev.tsv"));
    const char *vars[] = {"TASK=mrpc", corpus, train, dev, NULL};
    expect_exit("mrpc", run_flow("mrpc", vars), 0);
    check_flow("mrpc", "mrpc", "mrpc/dev.tsv", 1, 2, 1);
}

Test(tasks, a_regression_task_sts_b)
{
    write_configs();
    char corpus[1024], train[1024], dev[1024];
    snprintf(corpus, sizeof corpus, "CORPUS=%s", tb_test_data("corpus/en_data.txt"));
    snprintf(train, sizeof train, "TRAIN=%s", tb_test_data("stsb/train.tsv"));
    snprintf(dev, sizeof dev, "DEV=%s", tb_test_data("stsb/dev.tsv"));
    const char *vars[] = {"TASK=sts-b", corpus, train, dev, "FINETUNE_EPOCHS=3", "TASK_EPOCHS=3", NULL};
    expect_exit("stsb", run_flow("stsb", vars), 0);
    check_flow("stsb", "sts-b", "stsb/dev.tsv", 1, 1, 3);
}

Test(tasks, the_simple_format)
{
    write_configs();
    char corpus[1024], train[1024], dev[1024];
    snprintf(corpus, sizeof corpus, "CORPUS=%s", tb_test_data("seed/train-3000.txt"));
    snprintf(train, sizeof train, "TRAIN=%s", tb_test_data("seed/train-3000.txt"));
    snprintf(dev, sizeof dev, "DEV=%s", tb_test_data("seed/eval-1000.txt"));
    const char *vars[] = {"TASK=simple", corpus, train, dev, NULL};
    expect_exit("simple", run_flow("simple", vars), 0);
    check_flow("simple", "simple", "seed/eval-1000.txt", 0, 2, 1);
}

/* The first `lines` lines of data file `name` into DIR/<out>, line `bad_line` (1-based) with its
 * last field replaced by `bad`. */
static const char *copy_with_bad_last_field(const char *name, const char *out, int lines, int bad_line, const char *bad)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, out);
    FILE *in = fopen(tb_test_data(name), "r");
    cr_assert_not_null(in);
    FILE *o = fopen(path, "w");
    cr_assert_not_null(o);
    char line[1 << 14];
    for (int k = 1; k <= lines && fgets(line, sizeof line, in); k++) {
        if (k == bad_line) {
            char *tab = strrchr(line, '\t');
            cr_assert_not_null(tab);
            sprintf(tab + 1, "%s\n", bad);
        }
        fputs(line, o);
    }
    fclose(in);
    cr_assert_eq(fclose(o), 0);
    return path;
}

Test(tasks, bad_input_is_named_by_file_and_line)
{
    write_configs();
    char corpus[1024], train[1024], dev[1024];
    snprintf(corpus, sizeof corpus, "CORPUS=%s", tb_test_data("corpus/en_data.txt"));

    /* an unknown task: the stage and the pipeline line, and the tasks there are */
    snprintf(train, sizeof train, "TRAIN=%s", tb_test_data("mrpc/train.tsv"));
    snprintf(dev, sizeof dev, "DEV=%s", tb_test_data("mrpc/dev.tsv"));
    const char *unknown[] = {"TASK=paraphrase", corpus, train, dev, NULL};
    expect_exit("unknown", run_flow("unknown", unknown), 1);
    expect_in_err("unknown", "--format: 'paraphrase' is not one of");
    expect_in_err("unknown", "task.pipe:");

    /* a label outside the task's set: MRPC's labels are 0 and 1, in its first column */
    {
        char path[600];
        snprintf(path, sizeof path, "%s/mrpc-label.tsv", dir);
        FILE *in = fopen(tb_test_data("mrpc/train.tsv"), "r"), *o = fopen(path, "w");
        cr_assert(in && o);
        char line[1 << 14];
        for (int k = 1; k <= 40 && fgets(line, sizeof line, in); k++) {
            if (k == 5) line[0] = '2';
            fputs(line, o);
        }
        fclose(in);
        cr_assert_eq(fclose(o), 0);
        snprintf(train, sizeof train, "TRAIN=%s", path);
    }
    const char *label[] = {"TASK=mrpc", corpus, train, dev, NULL};
    expect_exit("label", run_flow("label", label), 1);
    expect_in_err("label", "mrpc-label.tsv:5: unknown mrpc label '2'; expected one of '0' '1'");

    /* a regression value that is not a number */
    snprintf(train, sizeof train, "TRAIN=%s", copy_with_bad_last_field("stsb/train.tsv", "stsb-bad.tsv", 60, 4, "n/a"));
    snprintf(dev, sizeof dev, "DEV=%s", tb_test_data("stsb/dev.tsv"));
    const char *number[] = {"TASK=sts-b", corpus, train, dev, NULL};
    expect_exit("number", run_flow("number", number), 1);
    expect_in_err("number", "stsb-bad.tsv:4: label 'n/a' is not a finite number");

    /* a DEV file of another format than TRAIN: SST-2's dev for MRPC, GLUE's SST-2 dev for simple */
    snprintf(train, sizeof train, "TRAIN=%s", tb_test_data("mrpc/train.tsv"));
    snprintf(dev, sizeof dev, "DEV=%s", tb_test_data("sst2/dev.tsv"));
    const char *other[] = {"TASK=mrpc", corpus, train, dev, NULL};
    expect_exit("other", run_flow("other", other), 1);
    expect_in_err("other", "sst2/dev.tsv:1: the header line has 2 tab-separated fields, mrpc rows have at least 5");
    snprintf(train, sizeof train, "TRAIN=%s", tb_test_data("seed/train-3000.txt"));
    const char *other2[] = {"TASK=simple", corpus, train, dev, NULL};
    expect_exit("other2", run_flow("other2", other2), 1);
    expect_in_err("other2", "sst2/dev.tsv:1: label 'label' (last field) is not an integer");
    snprintf(train, sizeof train, "TRAIN=%s", tb_test_data("sst2/train.tsv"));
    snprintf(dev, sizeof dev, "DEV=%s", tb_test_data("mrpc/dev.tsv"));
    const char *other3[] = {"TASK=sst-2", corpus, train, dev, NULL};
    expect_exit("other3", run_flow("other3", other3), 1);
    expect_in_err("other3", "mrpc/dev.tsv:1: this is the header of GLUE's mrpc");
}
