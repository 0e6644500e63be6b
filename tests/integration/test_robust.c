/* The stages as processes: nothing silently wrong. A checkpoint with a NaN weight is refused by
 * tb-eval (not evaluated to a plausible accuracy) and by tb-finetune (not trained on and saved
 * again), out-of-range ports and integer options are usage errors, every
 * integer option of every stage declares its range, and error texts name the user's files without
 * our C source locations and without ": :". */
#include "proc.h"
#include "test_finetune_data.h"

#include "tb/base/error.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/store/safetensors.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define EV TB_BIN_DIR "/tb-eval"
#define FT TB_BIN_DIR "/tb-finetune"

static char dir[256], cfg[512], train[512], vocab[512], errpath[512];
static char err[16384];

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(train, sizeof train, "%s/train.tbs", dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    cr_assert_eq(ft_write_config(cfg, 0), 0);
    cr_assert_eq(ft_write_vocab(vocab), 0);
    cr_assert_eq(ft_write_batches(train, 4, 8, 12, 1, 0), TB_OK, "%s", tb_err_msg());
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(robust, .init = setup, .fini = teardown, .timeout = 120);

/* Runs argv with stderr into `err` (also echoed on our stderr); returns the exit status. */
static int run(char *const argv[])
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0) _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int code = -1;
    if (tb_proc_wait(pid, 90000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("%s did not finish", argv[0]);
    }
    FILE *f = fopen(errpath, "r");
    size_t n = f ? fread(err, 1, sizeof err - 1, f) : 0;
    err[n] = '\0';
    if (f) fclose(f);
    fprintf(stderr, "%s", err);
    return code;
}

/* No "name.c:123" source location and no empty wrap ": :" in the text. */
static void expect_user_text(const char *text)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, "[A-Za-z_]+\\.c:[0-9]+", REG_EXTENDED | REG_NOSUB), 0);
    cr_expect_neq(regexec(&re, text, 0, NULL, 0), 0, "a C source location in: %s", text);
    regfree(&re);
    cr_expect_null(strstr(text, ": :"), "an empty wrap in: %s", text);
}

/* A small classifier checkpoint (the config of test_finetune_data.h) in `out`. */
static void write_checkpoint(const char *out)
{
    tb_bert_config c;
    cr_assert_eq(tb_config_load(cfg, &c), TB_OK, "%s", tb_err_msg());
    c.head = TB_HEAD_TINYBERT;
    c.num_labels = 2;
    tb_bert_model m = {0};
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_checkpoint_save(out, 1, &m.config, &m.params, NULL, NULL, NULL, NULL, 0), TB_OK, "%s",
                 tb_err_msg());
    tb_bert_free(&m);
}

/* Overwrites elements [first, first + count) of tensor `name` in the checkpoint's model.safetensors with NaN. */
static void poison(const char *ck, const char *name, int64_t first, int64_t count)
{
    char path[700];
    snprintf(path, sizeof path, "%s/step-1/%s", ck, TB_CKPT_MODEL);
    tb_st_file f = {0};
    cr_assert_eq(tb_st_open(&f, path), TB_OK, "%s", tb_err_msg());
    const tb_st_entry *e = tb_st_find(&f, name);
    cr_assert_not_null(e, "no %s", name);
    long off = (long)(f.data - (const uint8_t *)f.map) + (long)e->begin + (long)first * 4;
    tb_st_close(&f);
    FILE *fp = fopen(path, "r+b");
    cr_assert_not_null(fp);
    cr_assert_eq(fseek(fp, off, SEEK_SET), 0);
    float nan = NAN;
    for (int64_t i = 0; i < count; i++) cr_assert_eq(fwrite(&nan, 4, 1, fp), 1u);
    cr_assert_eq(fclose(fp), 0);
}

Test(robust, eval_refuses_a_checkpoint_with_nan_word_embeddings)
{
    char ck[600];
    snprintf(ck, sizeof ck, "%s/nan", dir);
    write_checkpoint(ck);
    poison(ck, "bert.embeddings.word_embeddings.weight", 0, 40 * 16);
    char *argv[] = {EV, "--model", ck, "--input", train, "--json", "", "--progress", "none", NULL};
    cr_expect_eq(run(argv), 1, "tb-eval evaluated a checkpoint whose word embeddings are NaN");
    char want[800];
    snprintf(want, sizeof want, "%s/step-1/model.safetensors: tensor 'bert.embeddings.word_embeddings.weight' holds NaN "
             "at element 0 (of 640)", ck);
    cr_expect(strstr(err, want), "stderr should say '%s'", want);
    expect_user_text(err);
}

/* A NaN row the data never uses ([MASK], id 4): the loss stays finite, so only the load check can
 * stop the NaN from being trained on and saved again. */
Test(robust, finetune_refuses_to_start_from_a_checkpoint_with_a_nan_row)
{
    char ck[600], out[600], step[700];
    snprintf(ck, sizeof ck, "%s/init", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    write_checkpoint(ck);
    poison(ck, "bert.embeddings.word_embeddings.weight", 4 * 16, 16);
    char *argv[] = {FT, "--input", train, "--output", out, "--init", ck, "--epochs", "1", "--threads", "1",
                    "--progress", "none", "--plot", "", NULL};
    cr_expect_eq(run(argv), 1, "tb-finetune trained from a checkpoint holding NaN");
    cr_expect(strstr(err, "tensor 'bert.embeddings.word_embeddings.weight' holds NaN at element 64 (of 640)"),
              "stderr: %s", err);
    snprintf(step, sizeof step, "%s/step-4/%s", out, TB_CKPT_MODEL);
    struct stat st;
    cr_expect_neq(stat(step, &st), 0, "a checkpoint was written");
    expect_user_text(err);
}

Test(robust, out_of_range_ports_are_usage_errors)
{
    char ck[600];
    snprintf(ck, sizeof ck, "%s/m", dir);
    char *argv[] = {EV, "--model", ck, "--input", "tcp://127.0.0.1:99999", NULL};
    cr_expect_eq(run(argv), 2);
    cr_expect(strstr(err, "tb-eval: --input: 'tcp://127.0.0.1:99999' is not an endpoint: port '99999' is not "
                          "1..65535 or '*'"), "stderr: %s", err);
    char long_ipc[300] = "ipc:///tmp/";
    memset(long_ipc + 11, 'x', 150);
    char *argv2[] = {EV, "--model", ck, "--input", long_ipc, NULL};
    cr_expect_eq(run(argv2), 2);
    cr_expect(strstr(err, "Unix socket path at most 107"), "stderr: %s", err);
}

Test(robust, negative_counts_are_usage_errors)
{
    char out[600];
    snprintf(out, sizeof out, "%s/run", dir);
    char *a1[] = {FT, "--input", train, "--output", out, "--config", cfg, "--num-labels", "-1", NULL};
    cr_expect_eq(run(a1), 2);
    cr_expect(strstr(err, "tb-finetune: --num-labels: -1 is out of range (0 to 1024)"), "stderr: %s", err);
    char *a2[] = {FT, "--input", train, "--output", out, "--config", cfg, "--total-steps", "-5", NULL};
    cr_expect_eq(run(a2), 2);
    cr_expect(strstr(err, "--total-steps: -5 is out of range (0 to "), "stderr: %s", err);
    char *a3[] = {EV, "--model", out, "--input", train, "--max-batches", "-1", NULL};
    cr_expect_eq(run(a3), 2);
    cr_expect(strstr(err, "tb-eval: --max-batches: -1 is out of range (0 to "), "stderr: %s", err);
    struct stat st;
    cr_expect_neq(stat(out, &st), 0, "a refused run created %s", out);
}

/* Every integer parameter in every stage's --describe has "min" and "max". */
Test(robust, every_integer_option_of_every_stage_has_a_range)
{
    const char *stages[] = {"tb-tokenize", "tb-finetune", "tb-emit", "tb-distill", "tb-eval", "tb-vocab",
                            "tb-pipeline"};
    char outpath[600], cmd[1400];
    snprintf(outpath, sizeof outpath, "%s/describe.json", dir);
    for (size_t k = 0; k < sizeof stages / sizeof stages[0]; k++) {
        snprintf(cmd, sizeof cmd,
                 "%s -c 'import json,sys; d=json.load(open(sys.argv[1])); "
                 "bad=[p[\"name\"] for p in d[\"parameters\"] if p[\"type\"]==\"int\" and not (\"min\" in p and "
                 "\"max\" in p and p[\"min\"]<=p[\"max\"])]; print(\" \".join(bad)); sys.exit(1 if bad else 0)' %s",
                 TB_PYTHON, outpath);
        char desc[1000];
        snprintf(desc, sizeof desc, "%s/%s --describe > %s", TB_BIN_DIR, stages[k], outpath);
        cr_assert_eq(system(desc), 0, "%s --describe failed", stages[k]);
        cr_expect_eq(system(cmd), 0, "%s: integer options without a range (listed above)", stages[k]);
    }
}

Test(robust, error_texts_name_the_users_file_without_source_locations)
{
    /* a TSV row with too few fields: the reader's error is wrapped with "FILE:LINE" */
    char tsv[600], out[600];
    snprintf(tsv, sizeof tsv, "%s/bad.tsv", dir);
    snprintf(out, sizeof out, "%s/vocab-out.txt", dir);
    FILE *f = fopen(tsv, "w");
    cr_assert_not_null(f);
    fputs("sentence\tlabel\nhello world\t1\nno label here\n", f);
    fclose(f);
    char *a1[] = {TB_BIN_DIR "/tb-vocab", "--input", tsv, "--output", out, "--format", "sst-2", NULL};
    cr_expect_eq(run(a1), 1);
    char want[700];
    snprintf(want, sizeof want, "%s:3", tsv);
    cr_expect(strstr(err, want), "stderr should name %s: %s", want, err);
    expect_user_text(err);
    /* a missing checkpoint */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nothing-here", dir);
    char *a2[] = {EV, "--model", missing, "--input", train, "--json", "", NULL};
    cr_expect_eq(run(a2), 1);
    cr_expect(strstr(err, missing), "stderr should name %s: %s", missing, err);
    expect_user_text(err);
}
