/* tb-finetune as a process: training, files written, best checkpoint, MLM mode, kill-and-resume
 * bit-identical losses, SIGTERM checkpoint, bad input. */
#include "proc.h"
#include "test_finetune_data.h"

#include "tb/store/checkpoint.h"
#include "tb/store/safetensors.h"
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FT TB_BIN_DIR "/tb-finetune"

static char dir[256];
static char cfg[512], train[512], dev[512], vocab[512];

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(train, sizeof train, "%s/train.tbs", dir);
    snprintf(dev, sizeof dev, "%s/dev.tbs", dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    cr_assert_eq(ft_write_config(cfg, 1), 0);
    cr_assert_eq(ft_write_vocab(vocab), 0);
    cr_assert_eq(ft_write_batches(train, 16, 8, 12, 1, 0), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(ft_write_batches(dev, 4, 8, 12, 99, 0), TB_OK, "%s", tb_err_msg());
}

static void rm_tree(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static void teardown(void) { rm_tree(dir); }

static int run(char *const argv[], int timeout_ms)
{
    pid_t pid = tb_proc_spawn(argv);
    cr_assert_gt(pid, 0);
    int code = -1;
    if (tb_proc_wait(pid, timeout_ms, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("%s did not finish in %d ms", argv[0], timeout_ms);
    }
    return code;
}

static int exists(const char *fmt, const char *a, const char *b)
{
    char p[1024];
    snprintf(p, sizeof p, fmt, a, b);
    struct stat st;
    return stat(p, &st) == 0;
}

TestSuite(finetune, .init = setup, .fini = teardown, .timeout = 120);

Test(finetune, trains_evaluates_keeps_best_and_plots)
{
    char out[512], met[600];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(met, sizeof met, "%s/m.jsonl", dir);
    char *argv[] = {FT, "--input", train, "--dev", dev, "--output", out, "--config", cfg, "--vocab", vocab,
                    "--epochs", "10", "--lr", "2e-3", "--eval-every", "40", "--save-every", "40", "--keep", "2",
                    "--threads", "1", "--progress", "none", "--metrics", met, "--log-level", "warn", NULL};
    cr_assert_eq(run(argv, 60000), 0);
    char losses[170][40] = {{0}};
    cr_assert_eq(ft_read_losses(met, losses, 170), 160, "10 epochs of 16 batches are 160 steps");
    /* the task is learnable: the mean loss of the last 16 steps is below that of the first 16 */
    double first = 0, last = 0;
    for (int i = 1; i <= 16; i++) first += atof(losses[i]);
    for (int i = 145; i <= 160; i++) last += atof(losses[i]);
    cr_expect_lt(last, first * 0.9, "loss did not fall: first 16 %.4f, last 16 %.4f", first / 16, last / 16);
    /* kept: the newest 2 periodic checkpoints, latest, best/ with one folder, metrics, plot */
    cr_expect(exists("%s/step-160/%s", out, TB_CKPT_MODEL));
    cr_expect(exists("%s/step-120/%s", out, TB_CKPT_STATE_JSON));
    cr_expect(!exists("%s/step-80%s", out, ""), "older checkpoints are pruned");
    cr_expect(!exists("%s/step-40%s", out, ""));
    cr_expect(exists("%s/latest%s", out, ""));
    cr_expect(exists("%s/step-160/%s", out, TB_CKPT_VOCAB));
    cr_expect(exists("%s/best/latest%s", out, ""));
    cr_expect(exists("%s/metrics.jsonl%s", out, ""));
    /* 4 eval lines, one per 16 steps */
    FILE *f = fopen(met, "r");
    cr_assert_not_null(f);
    char line[4096];
    int evals = 0;
    while (fgets(line, sizeof line, f)) evals += strstr(line, "\"event\":\"eval\"") != NULL;
    fclose(f);
    cr_expect_eq(evals, 4);
    if (access("/usr/bin/gnuplot", X_OK) == 0) cr_expect(exists("%s/loss.png%s", out, ""), "plot missing");
}

/* Starts argv with its stderr written to `log`. */
static pid_t spawn_logged(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr)) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* A second run into a folder that holds checkpoints is refused unless it resumes them: a typo in
 * --output must not mix two runs' checkpoints and metrics. */
Test(finetune, refuses_an_output_folder_holding_another_run)
{
    char out[512], log[600];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(log, sizeof log, "%s/second.log", dir);
    char *argv[] = {FT, "--input", train, "--output", out, "--config", cfg, "--epochs", "1", "--max-steps", "2",
                    "--threads", "1", "--progress", "none", "--log-level", "warn", "--plot", "", NULL};
    cr_assert_eq(run(argv, 60000), 0);
    cr_assert(exists("%s/step-2/%s", out, TB_CKPT_MODEL));
    char *argv2[] = {FT, "--input", train, "--output", out, "--config", cfg, "--epochs", "1", "--max-steps", "4",
                     "--threads", "1", "--progress", "none", "--log-level", "warn", "--plot", "", NULL};
    pid_t pid = spawn_logged(argv2, log);
    cr_assert_gt(pid, 0);
    int code = -1;
    cr_assert_eq(tb_proc_wait(pid, 60000, &code), 0);
    cr_expect_eq(code, 1, "the second run must fail");
    cr_expect(!exists("%s/step-4%s", out, ""), "nothing was trained into the other run's folder");
    FILE *f = fopen(log, "r");
    cr_assert_not_null(f);
    char text[8192] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    cr_expect(strstr(text, "already holds checkpoints") && strstr(text, "--resume"), "%s", text);
}

/* ---- kill and resume ------------------------------------------------------------------------ */

typedef struct feeder {
    const char *endpoint, *file;
    int count; /* messages sent before stalling */
} feeder;

/* A producer that sends the first `count` batches of the file, then stalls (heartbeats go on)
 * until it is killed: the trainer reading it is blocked waiting at a known step. */
static int feed_and_stall(void *arg)
{
    const feeder *fd = arg;
    tb_stream *in = NULL, *out = NULL;
    if (tb_stream_open(&in, fd->file, TB_STREAM_READ, NULL) != TB_OK) return 10;
    if (tb_stream_open(&out, fd->endpoint, TB_STREAM_WRITE, NULL) != TB_OK) return 11;
    for (int i = 0; i < fd->count; i++) {
        tb_msg m;
        if (tb_stream_recv(in, &m, -1) != TB_OK) return 12;
        if (tb_stream_send(out, &m, NULL) != TB_OK) return 13;
        tb_msg_free(&m);
    }
    for (;;) pause();
    return 0;
}

/* Waits until `path` has a line containing `needle`; gives up early when process `pid` (> 0)
 * ended. */
static int wait_for_line(const char *path, const char *needle, int timeout_ms, pid_t pid)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        int code;
        if (pid > 0 && tb_proc_wait(pid, 0, &code) == 0) {
            fprintf(stderr, "the process ended (status %d) before logging %s\n", code, needle);
            return 0;
        }
        FILE *f = fopen(path, "r");
        if (f) {
            char line[4096];
            int found = 0;
            while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
            fclose(f);
            if (found) return 1;
        }
        usleep(20000);
    }
    return 0;
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Runs tb-finetune on the stalling feeder until step `stall` is logged; returns its pid. */
static pid_t start_stalled(const char *out, const char *met, int stall, pid_t *feeder_pid)
{
    static char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    static feeder fd;
    fd = (feeder){.endpoint = ep, .file = train, .count = stall};
    *feeder_pid = tb_proc_fork(feed_and_stall, &fd);
    cr_assert_gt(*feeder_pid, 0);
    char *argv[] = {FT, "--input", ep, "--output", (char *)out, "--config", cfg, "--total-steps", "16",
                    "--num-labels", "2", "--lr", "2e-3", "--save-every", "4", "--keep", "10", "--threads", "2",
                    "--progress", "none", "--metrics", (char *)met, "--log-level", "warn", "--plot", "", NULL};
    pid_t pid = tb_proc_spawn(argv);
    cr_assert_gt(pid, 0);
    char needle[64];
    snprintf(needle, sizeof needle, "\"event\":\"step\",\"step\":%d,", stall);
    if (!wait_for_line(met, needle, 60000, pid)) {
        tb_proc_reap(pid);
        tb_proc_reap(*feeder_pid);
        cr_assert_fail("the trainer never logged step %d", stall);
    }
    return pid;
}

static void run_reference(const char *out, const char *met)
{
    char *argv[] = {FT, "--input", train, "--output", (char *)out, "--config", cfg, "--total-steps", "16",
                    "--lr", "2e-3", "--save-every", "4", "--keep", "10", "--threads", "2", "--progress", "none",
                    "--metrics", (char *)met, "--log-level", "warn", "--plot", "", "--epochs", "1", NULL};
    cr_assert_eq(run(argv, 60000), 0);
}

static void resume(const char *out, const char *met)
{
    char *argv[] = {FT, "--input", train, "--output", (char *)out, "--config", cfg, "--total-steps", "16",
                    "--lr", "2e-3", "--save-every", "4", "--keep", "10", "--threads", "2", "--progress", "none",
                    "--metrics", (char *)met, "--log-level", "warn", "--plot", "", "--epochs", "1", "--resume", NULL};
    cr_assert_eq(run(argv, 60000), 0);
}

static void expect_same_trajectory(const char *ref_met, const char *met, int from, int to)
{
    char a[20][40] = {{0}}, b[20][40] = {{0}};
    cr_assert_geq(ft_read_losses(ref_met, a, 20), to);
    cr_assert_eq(ft_read_losses(met, b, 20), to);
    for (int s = from; s <= to; s++) {
        cr_assert(a[s][0], "step %d missing in the reference run", s);
        cr_expect_str_eq(b[s], a[s], "step %d: loss %s after the restart, %s uninterrupted", s, b[s], a[s]);
    }
}

Test(finetune, sigkill_then_resume_is_bit_identical)
{
    char ref[512], ref_met[600], out[512], met[600], met2[600];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(ref_met, sizeof ref_met, "%s/ref.jsonl", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(met, sizeof met, "%s/killed.jsonl", dir);
    snprintf(met2, sizeof met2, "%s/resumed.jsonl", dir);
    run_reference(ref, ref_met);

    pid_t feeder_pid;
    pid_t pid = start_stalled(out, met, 6, &feeder_pid);
    tb_proc_kill(pid, SIGKILL);
    int code = 0;
    cr_assert_eq(tb_proc_wait(pid, 10000, &code), 0);
    cr_expect_eq(code, -SIGKILL);
    tb_proc_reap(feeder_pid);
    cr_assert(exists("%s/step-4/%s", out, TB_CKPT_STATE), "no checkpoint at step 4 before the kill");
    cr_assert(!exists("%s/step-8%s", out, ""));
    /* the live stream and the file give the same steps 1..6 */
    expect_same_trajectory(ref_met, met, 1, 6);

    resume(out, met2);
    char a[20][40] = {{0}};
    cr_assert_eq(ft_read_losses(met2, a, 20), 16);
    cr_expect(!a[4][0] && a[5][0], "the resumed run starts at step 5");
    expect_same_trajectory(ref_met, met2, 5, 16);
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/step-16/%s", ref, TB_CKPT_MODEL);
    snprintf(pb, sizeof pb, "%s/step-16/%s", out, TB_CKPT_MODEL);
    cr_expect(same_file(pa, pb), "final weights differ from the uninterrupted run");
    snprintf(pa, sizeof pa, "%s/step-16/%s", ref, TB_CKPT_STATE);
    snprintf(pb, sizeof pb, "%s/step-16/%s", out, TB_CKPT_STATE);
    cr_expect(same_file(pa, pb), "final optimiser state differs from the uninterrupted run");
}

Test(finetune, sigterm_writes_a_checkpoint_then_resumes)
{
    char ref[512], ref_met[600], out[512], met[600], met2[600];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(ref_met, sizeof ref_met, "%s/ref.jsonl", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(met, sizeof met, "%s/term.jsonl", dir);
    snprintf(met2, sizeof met2, "%s/resumed.jsonl", dir);
    run_reference(ref, ref_met);

    pid_t feeder_pid;
    pid_t pid = start_stalled(out, met, 7, &feeder_pid);
    tb_proc_kill(pid, SIGTERM);
    int code = 0;
    cr_assert_eq(tb_proc_wait(pid, 20000, &code), 0);
    cr_expect_eq(code, 130, "exit code %d after SIGTERM", code);
    tb_proc_reap(feeder_pid);
    cr_assert(exists("%s/step-7/%s", out, TB_CKPT_STATE), "SIGTERM at step 7 wrote no checkpoint");
    cr_expect(exists("%s/step-7/%s", out, TB_CKPT_STATE_JSON));
    char resolved[1024];
    cr_assert_eq(tb_checkpoint_resolve(out, resolved, sizeof resolved), TB_OK, "%s", tb_err_msg());
    cr_expect(strstr(resolved, "step-7") != NULL, "latest is %s", resolved);
    cr_expect(wait_for_line(met, "\"reason\":\"signal\"", 1000, 0));

    resume(out, met2);
    expect_same_trajectory(ref_met, met2, 8, 16);
}

Test(finetune, bad_input_is_a_clear_error)
{
    char out[512], junk[512];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(junk, sizeof junk, "%s/junk.tbs", dir);
    FILE *f = fopen(junk, "w");
    cr_assert_not_null(f);
    fputs("not a message file\n", f);
    fclose(f);
    char *a1[] = {FT, "--input", junk, "--output", out, "--config", cfg, "--num-labels", "2", "--progress", "none", NULL};
    cr_expect_eq(run(a1, 30000), 1);
    char *a2[] = {FT, "--input", train, "--output", out, "--progress", "none", NULL};
    cr_expect_eq(run(a2, 30000), 1, "no --init and no --config");
    char *a3[] = {FT, "--input", train, "--output", out, "--config", cfg, "--task", "regression", "--progress", "none", NULL};
    cr_expect_eq(run(a3, 30000), 1, "class labels with --task regression");
    char *a4[] = {FT, "--input", train, "--output", out, "--config", cfg, "--mlm", "--progress", "none", NULL};
    cr_expect_eq(run(a4, 30000), 1, "--mlm without --vocab");
    char *a5[] = {FT, "--output", out, NULL};
    cr_expect_eq(run(a5, 30000), 2, "missing --input is a usage error");
    char *a6[] = {FT, "--input", train, "--dev", "ipc:///tmp/tb-test-none", "--output", out, "--config", cfg,
                  "--progress", "none", NULL};
    cr_expect_eq(run(a6, 30000), 1, "a live dev stream cannot be re-read");
}

Test(finetune, mlm_pretraining_learns_and_saves_the_head)
{
    char out[512], met[600], corpus[512];
    snprintf(out, sizeof out, "%s/mlm", dir);
    snprintf(met, sizeof met, "%s/mlm.jsonl", dir);
    snprintf(corpus, sizeof corpus, "%s/corpus.tbs", dir);
    cr_assert_eq(ft_write_batches_ex(corpus, 16, 8, 12, 5, 0, 1), TB_OK, "%s", tb_err_msg());
    char *argv[] = {FT, "--input", corpus, "--output", out, "--config", cfg, "--vocab", vocab, "--mlm", "--epochs", "20",
                    "--lr", "1e-2", "--threads", "1", "--progress", "none", "--metrics", met, "--log-level", "warn",
                    "--plot", "", "--mlm-bias", "zero", NULL};
    cr_assert_eq(run(argv, 60000), 0);
    char losses[330][40] = {{0}};
    cr_assert_eq(ft_read_losses(met, losses, 330), 320);
    /* the first loss is about ln(40) (uniform over the vocabulary); it falls well below */
    cr_expect(fabs(atof(losses[1]) - log(40.0)) < 0.2, "first MLM loss %s, ln 40 = %.4f", losses[1], log(40.0));
    double last = 0;
    for (int i = 305; i <= 320; i++) last += atof(losses[i]) / 16;
    /* below ln 35, the best a model blind to the context can do on 35 equally frequent words */
    cr_expect_lt(last, log(35.0) - 0.1, "MLM loss did not fall below the context-free level: %.4f", last);
    tb_bert_config c;
    cr_assert_eq(tb_checkpoint_load_config(out, TB_CKPT_ANY_HEAD, &c), TB_OK, "%s", tb_err_msg());
    cr_expect(c.mlm_head);
    cr_expect_eq(c.head, TB_HEAD_NONE);
}

/* Counts, independently of tb-finetune, the ids of the batches of `path` that masked LM can
 * choose (attention mask 1, not one of the 5 special ids of ft_write_vocab). */
static int64_t count_words(const char *path, int64_t counts[40])
{
    tb_stream *s = NULL;
    cr_assert_eq(tb_stream_open(&s, path, TB_STREAM_READ, NULL), TB_OK, "%s", tb_err_msg());
    int64_t total = 0;
    for (;;) {
        tb_msg m;
        tb_msg_init(&m);
        int rc = tb_stream_recv(s, &m, -1);
        if (rc == TB_EEND) break;
        cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
        const tb_tensor *ids, *mask;
        cr_assert_eq(tb_msg_get_tensor(&m, "input_ids", &ids), TB_OK);
        cr_assert_eq(tb_msg_get_tensor(&m, "attention_mask", &mask), TB_OK);
        int64_t n = ids->shape[0] * ids->shape[1];
        for (int64_t i = 0; i < n; i++) {
            int32_t id = ((const int32_t *)ids->data)[i];
            if (((const int32_t *)mask->data)[i] == 1 && id >= 5) counts[id]++, total++;
        }
        tb_msg_free(&m);
    }
    tb_stream_close(s);
    return total;
}

Test(finetune, mlm_unigram_bias_starts_at_the_log_frequencies)
{
    char out[512], met[600], corpus[512], st[700];
    snprintf(out, sizeof out, "%s/uni", dir);
    snprintf(met, sizeof met, "%s/uni.jsonl", dir);
    snprintf(corpus, sizeof corpus, "%s/uni.tbs", dir);
    snprintf(st, sizeof st, "%s/step-0/model.safetensors", out);
    cr_assert_eq(ft_write_batches_ex(corpus, 6, 8, 12, 17, 0, 0), TB_OK, "%s", tb_err_msg());
    char *argv[] = {FT, "--input", corpus, "--output", out, "--config", cfg, "--vocab", vocab, "--mlm", "--epochs", "1",
                    "--max-steps", "1", "--save-init", "--threads", "1", "--progress", "none", "--metrics", met,
                    "--log-level", "warn", "--plot", "", NULL}; /* --mlm-bias auto: unigram for a new model */
    cr_assert_eq(run(argv, 60000), 0);
    int64_t counts[40] = {0};
    int64_t total = count_words(corpus, counts);
    cr_assert_gt(total, 100);
    tb_st_file f;
    cr_assert_eq(tb_st_open(&f, st), TB_OK, "%s", tb_err_msg());
    const tb_st_entry *e = tb_st_find(&f, "cls.predictions.bias");
    cr_assert_not_null(e);
    float bias[40];
    cr_assert_eq(tb_st_read(&f, e, bias, sizeof bias), TB_OK, "%s", tb_err_msg());
    tb_st_close(&f);
    double entropy = 0;
    for (int v = 0; v < 40; v++) {
        double expect = log((double)(counts[v] + 1) / (double)(total + 40));
        cr_expect(fabs(bias[v] - expect) < 1e-5, "bias[%d] = %.7f, log((%lld + 1) / (%lld + 40)) = %.7f", v, bias[v],
                  (long long)counts[v], (long long)total, expect);
        if (counts[v]) entropy -= (double)counts[v] / total * log((double)counts[v] / total);
    }
    /* the untrained model already predicts the word frequencies: its first loss is about their
     * entropy (the masked positions are a sample of the counted ones) */
    char losses[4][40] = {{0}};
    cr_assert_eq(ft_read_losses(met, losses, 4), 1);
    cr_expect(fabs(atof(losses[1]) - entropy) < 0.25, "first MLM loss %s, unigram entropy %.4f", losses[1], entropy);

    /* a live stream cannot be counted ahead */
    char *live[] = {FT, "--input", "ipc:///tmp/tb-no-such-stream", "--output", out, "--config", cfg, "--vocab", vocab,
                    "--mlm", "--mlm-bias", "unigram", "--log-level", "quiet", NULL};
    cr_expect_eq(run(live, 30000), 1);
}

Test(finetune, regression_with_correlation_on_dev)
{
    char rtrain[512], rdev[512], out[512], met[600];
    snprintf(rtrain, sizeof rtrain, "%s/rtrain.tbs", dir);
    snprintf(rdev, sizeof rdev, "%s/rdev.tbs", dir);
    snprintf(out, sizeof out, "%s/reg", dir);
    snprintf(met, sizeof met, "%s/reg.jsonl", dir);
    cr_assert_eq(ft_write_batches(rtrain, 16, 8, 12, 3, 1), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(ft_write_batches(rdev, 4, 8, 12, 98, 1), TB_OK, "%s", tb_err_msg());
    char *argv[] = {FT, "--input", rtrain, "--dev", rdev, "--output", out, "--config", cfg, "--task", "regression",
                    "--epochs", "4", "--lr", "2e-3", "--threads", "1", "--progress", "none", "--metrics", met,
                    "--log-level", "warn", "--plot", "", NULL};
    cr_assert_eq(run(argv, 60000), 0);
    cr_expect(wait_for_line(met, "\"main\":\"corr\"", 1000, 0), "the dev metric of regression is corr");
    cr_expect(wait_for_line(met, "\"pearson\":", 1000, 0));
    tb_bert_config c;
    cr_assert_eq(tb_checkpoint_load_config(out, TB_CKPT_ANY_HEAD, &c), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(c.num_labels, 1);
    cr_expect_eq(c.head, TB_HEAD_TINYBERT);
    /* class batches are refused by a regression model, and the reverse */
    char out2[512];
    snprintf(out2, sizeof out2, "%s/reg2", dir);
    char *a2[] = {FT, "--input", rtrain, "--output", out2, "--config", cfg, "--task", "classification", "--progress",
                  "none", NULL};
    cr_expect_eq(run(a2, 30000), 1, "regression batches carry no class label order");
    /* without --task the batches' label order "regression" picks the objective */
    snprintf(out2, sizeof out2, "%s/reg3", dir);
    char *a3[] = {FT, "--input", rtrain, "--output", out2, "--config", cfg, "--epochs", "1", "--threads", "1",
                  "--progress", "none", "--log-level", "warn", "--plot", "", NULL};
    cr_assert_eq(run(a3, 30000), 0, "regression from the batches' label order");
    cr_assert_eq(tb_checkpoint_load_config(out2, TB_CKPT_ANY_HEAD, &c), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(c.num_labels, 1, "a regression model from regression batches");
}

/* ---- resume over a live stream --------------------------------------------------------------- */

typedef struct waiting_feeder {
    const char *endpoint, *file, *go;
    int first; /* messages sent before waiting for the `go` file */
} waiting_feeder;

/* A producer that keeps a consumer's place when it dies (TB_PEER_WAIT): sends `first` batches,
 * waits for the test's go-ahead, then the rest, and finishes (every batch acknowledged). */
static int feed_with_wait(void *arg)
{
    const waiting_feeder *fd = arg;
    tb_stream *in = NULL, *out = NULL;
    tb_stream_opts so;
    tb_stream_opts_default(&so);
    so.policy = TB_PEER_WAIT;
    so.peer_timeout_ms = 1000;
    so.dead_wait_ms = 60000;
    if (tb_stream_open(&in, fd->file, TB_STREAM_READ, NULL) != TB_OK) return 10;
    if (tb_stream_open(&out, fd->endpoint, TB_STREAM_WRITE, &so) != TB_OK) return 11;
    for (int i = 0;; i++) {
        if (i == fd->first)
            while (access(fd->go, F_OK) != 0) usleep(20000);
        tb_msg m;
        int rc = tb_stream_recv(in, &m, -1);
        if (rc == TB_EEND) break;
        if (rc != TB_OK) return 12;
        rc = tb_stream_send(out, &m, NULL);
        tb_msg_free(&m);
        if (rc != TB_OK) return 13;
    }
    int rc = tb_stream_finish(out);
    tb_stream_close(out);
    tb_stream_close(in);
    return rc == TB_OK ? 0 : 14;
}

Test(finetune, sigkill_then_resume_over_a_live_stream)
{
    char ref[512], ref_met[600], out[512], met[600], met2[600], go[600], ep[128];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(ref_met, sizeof ref_met, "%s/ref.jsonl", dir);
    snprintf(out, sizeof out, "%s/live", dir);
    snprintf(met, sizeof met, "%s/killed.jsonl", dir);
    snprintf(met2, sizeof met2, "%s/resumed.jsonl", dir);
    snprintf(go, sizeof go, "%s/go", dir);
    run_reference(ref, ref_met);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    waiting_feeder fd = {.endpoint = ep, .file = train, .go = go, .first = 6};
    pid_t feeder_pid = tb_proc_fork(feed_with_wait, &fd);
    cr_assert_gt(feeder_pid, 0);
    char *argv[] = {FT, "--input", ep, "--output", out, "--config", cfg, "--total-steps", "16", "--num-labels", "2",
                    "--lr", "2e-3", "--save-every", "4", "--keep", "10", "--threads", "2", "--progress", "none",
                    "--metrics", met, "--log-level", "warn", "--plot", "", "--consumer-id", "ft-test", NULL};
    pid_t pid = tb_proc_spawn(argv);
    cr_assert_gt(pid, 0);
    if (!wait_for_line(met, "\"event\":\"step\",\"step\":6,", 60000, pid)) {
        tb_proc_reap(pid);
        tb_proc_reap(feeder_pid);
        cr_assert_fail("the trainer never logged step 6");
    }
    tb_proc_kill(pid, SIGKILL);
    int code = 0;
    cr_assert_eq(tb_proc_wait(pid, 10000, &code), 0);
    /* restart with --resume and the same id: the producer still holds batches 4 and 5 (not yet
     * acknowledged, since the last checkpoint holds 0..3) and sends them again */
    char *argv2[] = {FT, "--input", ep, "--output", out, "--config", cfg, "--total-steps", "16", "--num-labels", "2",
                     "--lr", "2e-3", "--save-every", "4", "--keep", "10", "--threads", "2", "--progress", "none",
                     "--metrics", met2, "--log-level", "warn", "--plot", "", "--consumer-id", "ft-test", "--resume", NULL};
    pid = tb_proc_spawn(argv2);
    cr_assert_gt(pid, 0);
    FILE *g = fopen(go, "w");
    cr_assert_not_null(g);
    fclose(g);
    code = -1;
    int waited = tb_proc_wait(pid, 60000, &code);
    if (waited != 0) tb_proc_reap(pid);
    cr_assert_eq(waited, 0, "the resumed trainer did not finish");
    cr_expect_eq(code, 0);
    int fcode = -1;
    if (tb_proc_wait(feeder_pid, 30000, &fcode) != 0) tb_proc_reap(feeder_pid);
    cr_expect_eq(fcode, 0, "the producer did not finish cleanly (status %d)", fcode);
    expect_same_trajectory(ref_met, met2, 5, 16);
}
