/* tb-predict as a process: GLUE submission files equal to tb-eval's predictions on the same
 * examples (SST-2 single sentences, MRPC pairs), one answer per stdin line as the lines arrive,
 * and bad input (missing column, wrong task, label count, pair without tab, invalid UTF-8) as a
 * clear error naming file and line that leaves an existing output untouched. The logits
 * themselves are checked against PyTorch in tests/reference/test_predict_torch.c. */
#include "ckpt.h"
#include "proc.h"
#include "repodata.h"

#include "tb/base/error.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PREDICT TB_BIN_DIR "/tb-predict"
#define TOKENIZE TB_BIN_DIR "/tb-tokenize"
#define EVAL TB_BIN_DIR "/tb-eval"

static char dir[256], m2[512], m2h[512], m3[512], m1[512];

static void setup(void)
{
    char sub[600];
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(sub, sizeof sub, "%s/m2", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_TINYBERT, .num_labels = 2, .seed = 7}, m2, sizeof m2);
    snprintf(sub, sizeof sub, "%s/m2h", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 2, .seed = 10}, m2h, sizeof m2h);
    snprintf(sub, sizeof sub, "%s/m3", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 3, .seed = 8}, m3, sizeof m3);
    snprintf(sub, sizeof sub, "%s/m1", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 1, .seed = 9}, m1, sizeof m1);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(predict, .init = setup, .fini = teardown, .timeout = 120);

/* Runs a shell command; its exit status. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[8][1 << 16];
    static int slot;
    char *b = buf[slot++ % 8];
    size_t n = fread(b, 1, sizeof buf[0] - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

/* (m2, relu head, predicts both classes on MRPC; on SST-2 it says 1 throughout, m2h does not.)
 * tb-tokenize the dev file in file order (batches of 8, none dropped), tb-eval's predictions of
 * its first `batches` batches into want.tsv; tb-predict on the test file into got.tsv. */
static void compare_with_eval(const char *task, const char *dev, const char *test, int batches, const char *model)
{
    cr_assert_eq(tb_proc_sh("%s --input %s --format %s --vocab %s --output %s/dev.tbm --no-shuffle --no-drop-last "
                    "--batch-size 8 --max-seq-length 128 --log-level warn",
                    TOKENIZE, dev, task, tb_test_data("vocab/bert-base-uncased-vocab.txt"), dir),
                 0);
    cr_assert_eq(tb_proc_sh("%s --model %s --input %s/dev.tbm --task %s --max-batches %d --predictions %s/want.tsv "
                    "--json '' --threads 1 --log-level warn 2>/dev/null",
                    EVAL, model, dir, task, batches, dir),
                 0);
    cr_assert_eq(tb_proc_sh("%s --model %s --task %s --format glue --input %s --output %s/got.tsv --threads 1 --batch-size 5 "
                    "--chunk 7 --log-level warn",
                    PREDICT, model, task, test, dir),
                 0);
    char want[600], got[600];
    snprintf(want, sizeof want, "%s/want.tsv", dir);
    snprintf(got, sizeof got, "%s/got.tsv", dir);
    const char *w = slurp(want), *g = slurp(got);
    cr_expect_str_eq(g, w, "tb-predict:\n%s\ntb-eval:\n%s", g, w);
    int ones = 0, rows = 0;
    for (const char *p = strchr(g, '\n'); p && p[1]; p = strchr(p + 1, '\n')) {
        rows++;
        ones += strchr(p + 1, '\t')[1] == '1';
    }
    cr_expect_eq(rows, batches * 8);
    cr_expect(ones > 0 && ones < rows, "a model predicting one class only tells little: %d of %d", ones, rows);
}

Test(predict, glue_sst2_submission_equals_tb_eval_predictions)
{
    compare_with_eval("sst-2", tb_test_data("sst2/dev.tsv"), tb_test_data("sst2/test.tsv"), 5, m2h);
}

Test(predict, glue_mrpc_pairs_submission_equals_tb_eval_predictions)
{
    compare_with_eval("mrpc", tb_test_data("mrpc/dev.tsv"), tb_test_data("mrpc/test.tsv"), 3, m2);
}

Test(predict, regression_submission_has_three_decimals)
{
    char out[600];
    snprintf(out, sizeof out, "%s/STS-B.tsv", dir);
    FILE *f = fopen(tb_test_data("mrpc/test.tsv"), "rb");
    cr_assert_not_null(f);
    char in[600];
    snprintf(in, sizeof in, "%s/sts.tsv", dir);
    FILE *g = fopen(in, "w");
    char line[4096];
    int n = 0;
    /* the MRPC pairs in the STS-B test layout (9 columns, texts in 8 and 9) */
    while (fgets(line, sizeof line, f)) {
        char *c[5], *save = NULL;
        line[strcspn(line, "\n")] = 0;
        c[0] = strtok_r(line, "\t", &save);
        for (int k = 1; k < 5; k++) c[k] = strtok_r(NULL, "\t", &save);
        if (n++ == 0)
            fprintf(g, "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\n");
        else
            fprintf(g, "%s\tnews\tf\t2012\t%s\tx\ty\t%s\t%s\n", c[0], c[1], c[3], c[4]);
    }
    fclose(f);
    fclose(g);
    cr_assert_eq(tb_proc_sh("%s --model %s --task sts-b --format glue --input %s --output %s --log-level warn", PREDICT, m1, in,
                    out),
                 0);
    const char *s = slurp(out);
    cr_assert(strncmp(s, "index\tprediction\n0\t", 19) == 0, "%s", s);
    int rows = 0;
    for (const char *p = strchr(s, '\n') + 1; *p; p = strchr(p, '\n') + 1) {
        const char *v = strchr(p, '\t') + 1, *dot = strchr(v, '.');
        cr_expect(dot && dot < strchr(v, '\n') && strchr(v, '\n') - dot == 4, "not 3 decimals: %.20s", v);
        rows++;
    }
    cr_expect_eq(rows, 24);
}

/* Reads one line from fd within timeout_ms into buf; 0 on success. */
static int read_line(int fd, char *buf, size_t n, int timeout_ms)
{
    size_t k = 0;
    while (k + 1 < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0) return -1;
        ssize_t r = read(fd, buf + k, 1);
        if (r <= 0) return -1;
        if (buf[k] == '\n') {
            buf[k] = 0;
            return 0;
        }
        k++;
    }
    return -1;
}

/* Label and probabilities of a "label<TAB>p0<TAB>p1" line. */
static void parse_probs(const char *line, int *label, double *p, int n)
{
    char *end;
    *label = (int)strtol(line, &end, 10);
    for (int k = 0; k < n; k++) {
        cr_assert_eq(*end, '\t', "bad line '%s'", line);
        p[k] = strtod(end + 1, &end);
    }
    cr_assert_eq(*end, 0, "bad line '%s'", line);
}

Test(predict, stdin_lines_are_answered_one_by_one_as_they_arrive)
{
    static const char *texts[3] = {"a gripping , heartfelt film", "it is dull and far too long", "nothing new here"};
    /* the same lines in one run from a file: the reference answers */
    char in[600], ref[600];
    snprintf(in, sizeof in, "%s/in.txt", dir);
    snprintf(ref, sizeof ref, "%s/ref.txt", dir);
    FILE *f = fopen(in, "w");
    for (int i = 0; i < 3; i++) fprintf(f, "%s\n", texts[i]);
    fclose(f);
    cr_assert_eq(tb_proc_sh("%s --model %s --task sst-2 --input %s --output %s --log-level warn", PREDICT, m2, in, ref), 0);
    char *want = slurp(ref);

    int to_child[2], from_child[2];
    cr_assert_eq(pipe(to_child), 0);
    cr_assert_eq(pipe(from_child), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[1]);
        close(from_child[0]);
        execl(PREDICT, PREDICT, "--model", m2, "--task", "sst-2", "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    signal(SIGPIPE, SIG_IGN);
    char *save = NULL, *wline = strtok_r(want, "\n", &save);
    for (int i = 0; i < 3; i++) {
        char line[512];
        int len = snprintf(line, sizeof line, "%s\n", texts[i]);
        cr_assert_eq(write(to_child[1], line, (size_t)len), len);
        /* stdin stays open: the answer must come before the input ends */
        cr_assert_eq(read_line(from_child[0], line, sizeof line, 60000), 0, "no answer to line %d while stdin is open", i + 1);
        int lg, lw;
        double pg[2], pw[2];
        cr_assert_not_null(wline);
        parse_probs(line, &lg, pg, 2);
        parse_probs(wline, &lw, pw, 2);
        cr_expect_eq(lg, lw, "line %d: %s vs %s", i + 1, line, wline);
        cr_expect(fabs(pg[0] - pw[0]) <= 2e-6 && fabs(pg[1] - pw[1]) <= 2e-6, "line %d: %s vs %s", i + 1, line, wline);
        cr_expect(fabs(pg[0] + pg[1] - 1.0) < 2e-6, "%s", line);
        wline = strtok_r(NULL, "\n", &save);
    }
    close(to_child[1]);
    int code = -1;
    if (tb_proc_wait(pid, 30000, &code) != 0) tb_proc_reap(pid);
    close(from_child[0]);
    cr_expect_eq(code, 0);
}

/* Runs tb-predict with `args` on stdin from `input` (a file); exit status, stderr in err. */
static int predict_err(const char *args, const char *input, char **err)
{
    int code = tb_proc_sh("%s %s --log-level warn < %s > %s/out.txt 2> %s/err.txt", PREDICT, args, input, dir, dir);
    char p[600];
    snprintf(p, sizeof p, "%s/err.txt", dir);
    *err = slurp(p);
    return code;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[4][600];
    static int slot;
    char *p = path[slot++ % 4];
    snprintf(p, 600, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

Test(predict, a_missing_column_names_file_and_line_and_keeps_the_old_output)
{
    const char *bad = write_file("bad.tsv", "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                                            "0\t1\t2\tthe cat sat\tthe cat sits\n"
                                            "1\t3\t4\tonly one sentence\n");
    const char *out = write_file("MRPC.tsv", "previous results\n");
    char args[2048], *err;
    snprintf(args, sizeof args, "--model %s --task mrpc --format glue --input %s --output %s --chunk 1", m2, bad, out);
    cr_assert_eq(predict_err(args, "/dev/null", &err), 1);
    cr_expect(strstr(err, "bad.tsv:3:") && strstr(err, "column 5 is missing"), "%s", err);
    cr_expect_str_eq(slurp(out), "previous results\n");
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    cr_expect_neq(access(tmp, F_OK), 0, "%s was left behind", tmp);
}

Test(predict, the_test_file_of_another_task_is_refused_at_its_header)
{
    char args[2048], *err;
    snprintf(args, sizeof args, "--model %s --task mrpc --format glue --input %s", m2, tb_test_data("sst2/test.tsv"));
    cr_assert_eq(predict_err(args, "/dev/null", &err), 1);
    cr_expect(strstr(err, "sst2/test.tsv:1:") && strstr(err, "a mrpc test.tsv has 5"), "%s", err);
    /* a dev file (labels, no id column) */
    snprintf(args, sizeof args, "--model %s --task sst-2 --format glue --input %s", m2, tb_test_data("sst2/dev.tsv"));
    cr_assert_eq(predict_err(args, "/dev/null", &err), 1);
    cr_expect(strstr(err, "dev.tsv:1:") && strstr(err, "starting with 'sentence'"), "%s", err);
}

Test(predict, a_model_with_other_labels_than_the_task_is_refused)
{
    char args[2048], *err;
    snprintf(args, sizeof args, "--model %s --task mnli", m2);
    cr_assert_eq(predict_err(args, "/dev/null", &err), 1);
    cr_expect(strstr(err, "mnli has 3 labels but the model") && strstr(err, "has 2 outputs"), "%s", err);
    snprintf(args, sizeof args, "--model %s --task sts-b", m3);
    cr_assert_eq(predict_err(args, "/dev/null", &err), 1);
    cr_expect(strstr(err, "sts-b is a regression task"), "%s", err);
    snprintf(args, sizeof args, "--model %s --format glue", m2);
    cr_assert_eq(predict_err(args, "/dev/null", &err), 1);
    cr_expect(strstr(err, "--format glue needs --task"), "%s", err);
}

Test(predict, bad_lines_name_stdin_and_the_line)
{
    char args[2048], *err;
    const char *in = write_file("pairs.txt", "the cat sat\tthe cat sits\nno tab on this line\n");
    snprintf(args, sizeof args, "--model %s --task mrpc", m2);
    cr_assert_eq(predict_err(args, in, &err), 1);
    cr_expect(strstr(err, "stdin:2:") && strstr(err, "no tab"), "%s", err);
    in = write_file("utf8.txt", "fine\nbroken \xC3\x28 text\n");
    snprintf(args, sizeof args, "--model %s --task sst-2", m2);
    cr_assert_eq(predict_err(args, in, &err), 1);
    cr_expect(strstr(err, "stdin:2: invalid UTF-8 at byte 8"), "%s", err);
    in = write_file("tab.txt", "a labelled line\t1\n");
    cr_assert_eq(predict_err(args, in, &err), 1);
    cr_expect(strstr(err, "stdin:1:") && strstr(err, "single sentences"), "%s", err);
}

Test(predict, plain_lines_without_a_task_print_class_ids_and_pairs_by_tab)
{
    const char *in = write_file("mixed.txt", "one sentence\r\na sentence\tand its pair\n\nlast line without newline");
    char args[2048], *err;
    snprintf(args, sizeof args, "--model %s", m3);
    cr_assert_eq(predict_err(args, in, &err), 0, "%s", err);
    char p[600];
    snprintf(p, sizeof p, "%s/out.txt", dir);
    const char *s = slurp(p);
    int lines = 0;
    for (const char *q = s; *q; q = strchr(q, '\n') + 1) {
        int label;
        double pr[3];
        char line[512];
        size_t n = (size_t)(strchr(q, '\n') - q);
        memcpy(line, q, n);
        line[n] = 0;
        parse_probs(line, &label, pr, 3);
        cr_expect(label >= 0 && label < 3 && pr[label] >= pr[0] && pr[label] >= pr[1] && pr[label] >= pr[2], "%s", line);
        lines++;
    }
    cr_expect_eq(lines, 4, "%s", s);
}
