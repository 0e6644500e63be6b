/* An output folder belongs to one run (tb-finetune and tb-distill as processes): a second writer
 * is refused while the first goes on unharmed, a lock freed by SIGKILL is taken by the next run,
 * --overwrite replaces the old run only at its end, --resume on a missing or empty folder starts
 * fresh, a dangling or unreadable `latest` is an error, and two runs never mix metrics.jsonl.
 * --skip-nonfinite: a run with one poisoned batch skipped ends with the bits of a run where that
 * batch is absent, also across a restart. */
#include "proc.h"
#include "test_finetune_data.h"

#include "tb/store/checkpoint.h"
#include "tb/store/runfolder.h"
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FT TB_BIN_DIR "/tb-finetune"
#define DI TB_BIN_DIR "/tb-distill"

static char dir[256], cfg[512], train[512], dev[512];

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(train, sizeof train, "%s/train.tbs", dir);
    snprintf(dev, sizeof dev, "%s/dev.tbs", dir);
    cr_assert_eq(ft_write_config(cfg, 1), 0);
    cr_assert_eq(ft_write_batches(train, 8, 4, 8, 1, 0), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(ft_write_batches(dev, 2, 4, 8, 99, 0), TB_OK, "%s", tb_err_msg());
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(folders, .init = setup, .fini = teardown, .timeout = 180);

/* ---- helpers ---------------------------------------------------------------------------------- */

/* Starts argv with its stderr in `log` (NULL: inherited). */
static pid_t spawn_logged(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (log && !freopen(log, "w", stderr)) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int run_logged(char *const argv[], const char *log)
{
    pid_t pid = spawn_logged(argv, log);
    cr_assert_gt(pid, 0);
    int code = -1;
    if (tb_proc_wait(pid, 90000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("%s did not finish in time", argv[0]);
    }
    return code;
}

/* The whole of a (small) file, NUL-terminated, into buf; "" when it cannot be read. */
static const char *slurp(const char *path, char *buf, size_t n)
{
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return buf;
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    fclose(f);
    return buf;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static int exists(const char *fmt, const char *a)
{
    char p[1024];
    snprintf(p, sizeof p, fmt, a);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Byte-for-byte equality of two files (both must exist). */
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

/* The target of symlink DIR/latest ("" when none). */
static const char *latest_of(const char *out, char *buf, size_t n)
{
    char p[600];
    snprintf(p, sizeof p, "%s/latest", out);
    ssize_t k = readlink(p, buf, n - 1);
    buf[k > 0 ? k : 0] = 0;
    return buf;
}

/* Waits until `path` contains `needle`; gives up when process `pid` ended. */
static int wait_for_text(const char *path, const char *needle, int timeout_ms, pid_t pid)
{
    static char text[1 << 16];
    for (int t = 0; t < timeout_ms; t += 20) {
        int code;
        if (pid > 0 && tb_proc_wait(pid, 0, &code) == 0) {
            fprintf(stderr, "the process ended (status %d) before %s showed %s\n", code, path, needle);
            return 0;
        }
        if (strstr(slurp(path, text, sizeof text), needle)) return 1;
        usleep(20000);
    }
    return 0;
}

/* A producer that sends the first `first` batches of `file`, waits for the file `go`, then sends
 * the rest and finishes. */
typedef struct feeder {
    const char *endpoint, *file, *go;
    int first;
} feeder;

static int feed(void *arg)
{
    const feeder *fd = arg;
    tb_stream *in = NULL, *out = NULL;
    if (tb_stream_open(&in, fd->file, TB_STREAM_READ, NULL) != TB_OK) return 10;
    if (tb_stream_open(&out, fd->endpoint, TB_STREAM_WRITE, NULL) != TB_OK) return 11;
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

/* A plain tb-finetune run of `steps` updates on the file input, seed `seed`, into `out`, with
 * `extra` (up to 4 more arguments, NULL-terminated) at the end. */
static int finetune(const char *out, int steps, const char *seed, const char *log, const char *const *extra)
{
    char st[16];
    snprintf(st, sizeof st, "%d", steps);
    char *argv[40] = {FT, "--input", train, "--output", (char *)out, "--config", cfg, "--epochs", "1",
                      "--max-steps", st, "--save-every", "2", "--seed", (char *)seed, "--threads", "1",
                      "--progress", "none", "--log-level", "info", "--plot", ""};
    int n = 23;
    for (int i = 0; extra && extra[i]; i++) argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return run_logged(argv, log);
}

/* ---- the lock ----------------------------------------------------------------------------------- */

/* Two writers at once: the second is refused with the folder and the first's pid and host; the
 * first finishes as if alone, and metrics.jsonl holds its lines only. */
Test(folders, a_second_writer_is_refused_and_the_first_is_unharmed)
{
    char out[512], ep[128], go[600], log[600], met[600], text[1 << 16], host[256];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(go, sizeof go, "%s/go", dir);
    snprintf(log, sizeof log, "%s/second.log", dir);
    snprintf(met, sizeof met, "%s/run/metrics.jsonl", dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    feeder fd = {.endpoint = ep, .file = train, .go = go, .first = 3};
    pid_t feeder_pid = tb_proc_fork(feed, &fd);
    cr_assert_gt(feeder_pid, 0);
    char *first[] = {FT, "--input", ep, "--output", out, "--config", cfg, "--total-steps", "8", "--num-labels", "2",
                     "--save-every", "2", "--threads", "1", "--progress", "none", "--log-level", "warn", "--plot", "",
                     NULL};
    pid_t pid = spawn_logged(first, NULL);
    cr_assert_gt(pid, 0);
    if (!wait_for_text(met, "\"event\":\"step\",\"step\":3,", 60000, pid)) {
        tb_proc_reap(pid);
        tb_proc_reap(feeder_pid);
        cr_assert_fail("the first run never logged step 3");
    }
    /* the second writer, with --overwrite and --resume as well: none of them gets past the lock */
    const char *flags[][2] = {{NULL, NULL}, {"--resume", NULL}, {"--overwrite", NULL}};
    for (int i = 0; i < 3; i++) {
        int code = finetune(out, 4, "7", log, flags[i]);
        cr_expect_eq(code, 1, "the second writer (%s) must fail", flags[i][0] ? flags[i][0] : "no flag");
        slurp(log, text, sizeof text);
        char want[128];
        snprintf(want, sizeof want, "pid %ld on host ", (long)pid);
        cr_assert_eq(gethostname(host, sizeof host), 0);
        cr_expect(strstr(text, "is in use by another run") && strstr(text, out) && strstr(text, want) &&
                      strstr(text, host),
                  "the error must name the folder and the holder's pid %ld and host %s: %s", (long)pid, host, text);
    }
    cr_expect(!exists("%s/overwrite.new", out), "the refused --overwrite wrote nothing");
    FILE *g = fopen(go, "w");
    cr_assert_not_null(g);
    fclose(g);
    int code = -1;
    if (tb_proc_wait(pid, 60000, &code) != 0) tb_proc_reap(pid);
    cr_expect_eq(code, 0, "the first run must end normally");
    int fcode = -1;
    if (tb_proc_wait(feeder_pid, 30000, &fcode) != 0) tb_proc_reap(feeder_pid);
    slurp(met, text, sizeof text);
    cr_expect_eq(count(text, "\"event\":\"start\""), 1, "one run's start line: %s", text);
    for (int s = 1; s <= 8; s++) {
        char needle[64];
        snprintf(needle, sizeof needle, "\"event\":\"step\",\"step\":%d,", s);
        cr_expect_eq(count(text, needle), 1, "step %d logged once", s);
    }
    cr_expect_eq(count(text, "\"event\":\"step\""), 8, "%s", text);
    char target[256];
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-8");
}

/* A run killed with SIGKILL while it holds the folder leaves the lock file, but not the lock: the
 * next run takes it (here with --resume, which starts fresh since no checkpoint was written). */
Test(folders, a_lock_freed_by_sigkill_is_taken_by_the_next_run)
{
    char out[512], ep[128], info[600], text[4096], want[64], log[600];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(info, sizeof info, "%s/run/%s", dir, TB_RUNFOLDER_LOCK_INFO);
    snprintf(log, sizeof log, "%s/next.log", dir);
    tb_proc_ipc_endpoint(ep, sizeof ep); /* nobody produces: the run waits, holding the folder */
    char *argv[] = {FT, "--input", ep, "--output", out, "--config", cfg, "--total-steps", "8", "--num-labels", "2",
                    "--threads", "1", "--progress", "none", "--log-level", "warn", "--plot", "", NULL};
    pid_t pid = tb_proc_spawn(argv);
    cr_assert_gt(pid, 0);
    snprintf(want, sizeof want, "pid %ld ", (long)pid);
    if (!wait_for_text(info, want, 60000, pid)) {
        tb_proc_reap(pid);
        cr_assert_fail("the run never took the lock");
    }
    /* while it lives, a second run is refused */
    cr_expect_eq(finetune(out, 2, "1", log, NULL), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), want), "%s", text);
    tb_proc_kill(pid, SIGKILL);
    int code = 0;
    cr_assert_eq(tb_proc_wait(pid, 10000, &code), 0);
    cr_assert_eq(code, -SIGKILL);
    cr_expect(exists("%s/.lock", out), "the lock file stays (it is never removed)");
    const char *resume[] = {"--resume", NULL};
    cr_expect_eq(finetune(out, 2, "1", log, resume), 0, "the next run takes the lock: %s", slurp(log, text, sizeof text));
    cr_expect(strstr(slurp(log, text, sizeof text), "starting from the beginning"), "%s", text);
    char target[256];
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-2");
    snprintf(want, sizeof want, "pid %ld ", (long)pid);
    cr_expect(!strstr(slurp(info, text, sizeof text), want), "the new owner rewrote %s: %s", info, text);
}

/* ---- used folders, --overwrite, --resume ------------------------------------------------------- */

/* A second run into a used folder is refused and changes nothing; --overwrite replaces the old run
 * (checkpoints, best/, metrics.jsonl) by the new one only when it ends. */
Test(folders, overwrite_replaces_the_old_run_at_its_end)
{
    char out[512], log[600], met[600], before[600], text[1 << 16], target[256];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(met, sizeof met, "%s/run/metrics.jsonl", dir);
    snprintf(before, sizeof before, "%s/metrics.before", dir);
    const char *with_dev[] = {"--dev", dev, "--eval-every", "2", NULL};
    cr_assert_eq(finetune(out, 4, "1", log, with_dev), 0, "%s", slurp(log, text, sizeof text));
    cr_assert(exists("%s/best/latest", out) && exists("%s/step-4", out));
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", met, before);
    cr_assert_eq(system(cmd), 0);

    /* no flag: refused, nothing touched */
    cr_expect_eq(finetune(out, 6, "2", log, NULL), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), "already holds checkpoints") && strstr(text, "--overwrite"), "%s",
              text);
    cr_expect(same_file(met, before), "the refused run left metrics.jsonl as it was");
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-4");

    /* --overwrite: a new run of 6 steps, without a dev set */
    const char *ow[] = {"--overwrite", NULL};
    cr_assert_eq(finetune(out, 6, "2", log, ow), 0, "%s", slurp(log, text, sizeof text));
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-6");
    cr_expect(exists("%s/step-6/model.safetensors", out) && exists("%s/step-4", out), "the new run's checkpoints");
    cr_expect(!exists("%s/best", out), "the old run's best/ went with it");
    cr_expect(!exists("%s/overwrite.new", out) && !exists("%s/overwrite.old", out), "nothing left over");
    char state[700];
    snprintf(state, sizeof state, "%s/step-6/training_state.json", out);
    slurp(state, text, sizeof text);
    cr_expect(strstr(text, "\"seed\":\t\"2\"") || strstr(text, "\"seed\": \"2\""), "the new run's state: %s", text);
    slurp(met, text, sizeof text);
    cr_expect_eq(count(text, "\"event\":\"start\""), 1, "the new run's metrics only: %s", text);
    cr_expect_eq(count(text, "\"event\":\"step\""), 6, "%s", text);
    cr_expect_eq(count(text, "\"event\":\"eval\""), 0, "%s", text);
    cr_expect(strstr(text, "run/step-6\"") && !strstr(text, "overwrite.new"), "final paths in the metrics: %s", text);
}

/* While the replacing run goes on (stopped by SIGTERM here), the old run is untouched and
 * `latest` names its checkpoint; --overwrite --resume continues the replacement and ends with
 * the new run in place. */
Test(folders, an_interrupted_overwrite_leaves_the_old_run_in_place)
{
    char out[512], ep[128], log[600], met[600], before[600], text[1 << 16], target[256], go[600];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(met, sizeof met, "%s/run/metrics.jsonl", dir);
    snprintf(before, sizeof before, "%s/metrics.before", dir);
    snprintf(go, sizeof go, "%s/go", dir);
    cr_assert_eq(finetune(out, 4, "1", log, NULL), 0, "%s", slurp(log, text, sizeof text));
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", met, before);
    cr_assert_eq(system(cmd), 0);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    feeder fd = {.endpoint = ep, .file = train, .go = go, .first = 3};
    pid_t feeder_pid = tb_proc_fork(feed, &fd);
    cr_assert_gt(feeder_pid, 0);
    char newmet[700];
    snprintf(newmet, sizeof newmet, "%s/overwrite.new/metrics.jsonl", out);
    char *argv[] = {FT, "--input", ep, "--output", out, "--config", cfg, "--total-steps", "8", "--num-labels", "2",
                    "--save-every", "2", "--threads", "1", "--progress", "none", "--log-level", "warn", "--plot", "",
                    "--overwrite", "--seed", "5", NULL};
    pid_t pid = spawn_logged(argv, log);
    cr_assert_gt(pid, 0);
    if (!wait_for_text(newmet, "\"event\":\"step\",\"step\":3,", 60000, pid)) {
        tb_proc_reap(pid);
        tb_proc_reap(feeder_pid);
        cr_assert_fail("the replacing run never logged step 3");
    }
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-4", "latest names the old run's checkpoint");
    cr_expect(same_file(met, before), "the old run's metrics are untouched");
    cr_expect(exists("%s/overwrite.new/step-2", out), "the new run writes beside the old one");
    tb_proc_kill(pid, SIGTERM);
    int code = 0;
    cr_assert_eq(tb_proc_wait(pid, 30000, &code), 0);
    cr_expect_eq(code, 130);
    tb_proc_reap(feeder_pid);
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-4");
    cr_expect(same_file(met, before));
    /* the replacement continues from its own checkpoint (step 3, written on SIGTERM) on the file input */
    const char *cont[] = {"--overwrite", "--resume", "--total-steps", "8", NULL};
    cr_assert_eq(finetune(out, 8, "5", log, cont), 0, "%s", slurp(log, text, sizeof text));
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-8");
    cr_expect(!exists("%s/overwrite.new", out));
    slurp(met, text, sizeof text);
    cr_expect_eq(count(text, "\"event\":\"start\""), 2, "the new run's two starts only: %s", text);
    cr_expect_eq(count(text, "\"resumed\":true"), 1, "%s", text);
}

/* --resume on a missing or an empty folder starts from the beginning (one command serves a first
 * run and a restart). */
Test(folders, resume_on_a_missing_or_empty_folder_starts_fresh)
{
    char out[512], log[600], text[1 << 16], target[256];
    const char *resume[] = {"--resume", NULL};
    snprintf(out, sizeof out, "%s/missing", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    cr_assert_eq(finetune(out, 2, "1", log, resume), 0, "%s", slurp(log, text, sizeof text));
    cr_expect(strstr(slurp(log, text, sizeof text), "no checkpoint in") && strstr(text, "starting from the beginning"),
              "%s", text);
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-2");
    snprintf(out, sizeof out, "%s/empty", dir);
    cr_assert_eq(mkdir(out, 0777), 0);
    cr_assert_eq(finetune(out, 2, "1", log, resume), 0, "%s", slurp(log, text, sizeof text));
    cr_expect(strstr(slurp(log, text, sizeof text), "starting from the beginning"), "%s", text);
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-2");
    /* and the same command again continues it */
    cr_assert_eq(finetune(out, 4, "1", log, resume), 0, "%s", slurp(log, text, sizeof text));
    cr_expect(strstr(slurp(log, text, sizeof text), "resuming from"), "%s", text);
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-4");
}

/* A broken `latest` is an error with --resume, never a fresh start, and nothing is removed:
 * dangling, pointing at a folder without a checkpoint, a truncated training state, and step-N
 * folders without any `latest`. tb-distill shares the behaviour. */
Test(folders, a_broken_latest_is_an_error)
{
    char out[512], log[600], text[1 << 16], p[700], target[256];
    const char *resume[] = {"--resume", NULL};
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    cr_assert_eq(finetune(out, 2, "1", log, NULL), 0, "%s", slurp(log, text, sizeof text));
    snprintf(p, sizeof p, "%s/latest", out);
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(symlink("step-7", p), 0);
    cr_expect_eq(finetune(out, 4, "1", log, resume), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), "cannot resume from") && strstr(text, "latest") &&
                  strstr(text, "broken"),
              "dangling: %s", text);
    cr_expect_str_eq(latest_of(out, target, sizeof target), "step-7", "the link is left for the user to see");
    cr_expect(exists("%s/step-2/model.safetensors", out), "nothing removed");
    char *dargv[] = {DI, "--input", train, "--output", out, "--mode", "general", "--config", cfg, "--resume",
                     "--total-steps", "2", "--threads", "1", "--progress", "none", "--plot", "", NULL};
    cr_expect_eq(run_logged(dargv, log), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), "cannot resume from") && strstr(text, "broken"),
              "tb-distill: %s", text);

    /* a folder that is not a checkpoint */
    snprintf(p, sizeof p, "%s/step-9", out);
    cr_assert_eq(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/latest", out);
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(symlink("step-9", p), 0);
    cr_expect_eq(finetune(out, 4, "1", log, resume), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), "cannot resume from"), "not a checkpoint: %s", text);

    /* a truncated training state */
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(symlink("step-2", p), 0);
    snprintf(p, sizeof p, "%s/step-2/training_state.json", out);
    cr_assert_eq(truncate(p, 20), 0);
    cr_expect_eq(finetune(out, 4, "1", log, resume), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), "cannot resume from") && strstr(text, "training_state.json"),
              "truncated: %s", text);

    /* checkpoints without any latest */
    snprintf(p, sizeof p, "%s/latest", out);
    cr_assert_eq(unlink(p), 0);
    cr_expect_eq(finetune(out, 4, "1", log, resume), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), "but no 'latest' link"), "no latest: %s", text);
    cr_expect(exists("%s/step-2/model.safetensors", out) && exists("%s/step-9", out), "nothing removed");
}

/* ---- --skip-nonfinite ----------------------------------------------------------------------- */

/* Writes the regression batches 0..n-1 of seed 5 into `path`, leaving out batch `drop` (-1: none)
 * and giving batches `nan_a` and `nan_b` (-1: none) a NaN gold value in row 1. */
static void write_poisoned(const char *path, int n, int drop, int nan_a, int nan_b)
{
    tb_stream *s = NULL;
    char ep[700];
    snprintf(ep, sizeof ep, "file:%s", path);
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    uint64_t rng = 5;
    for (int k = 0; k < n; k++) {
        tb_batch b = {0};
        tb_msg m;
        tb_msg_init(&m);
        cr_assert_eq(ft_make_batch(&b, 4, 8, &rng, 1, (int64_t)k * 4), TB_OK);
        if (k == nan_a || k == nan_b) ((float *)b.labels.data)[1] = NAN;
        b.index = k;
        if (k != drop) {
            cr_assert_eq(tb_batch_to_msg(&b, "test", "regression", &m), TB_OK, "%s", tb_err_msg());
            cr_assert_eq(tb_stream_send(s, &m, NULL), TB_OK, "%s", tb_err_msg());
        }
        tb_msg_free(&m);
        tb_batch_free(&b);
    }
    cr_assert_eq(tb_stream_finish(s), TB_OK, "%s", tb_err_msg());
    tb_stream_close(s);
}

static int regress(const char *input, const char *out, const char *log, const char *const *extra)
{
    char *argv[40] = {FT, "--input", (char *)input, "--output", (char *)out, "--config", cfg, "--task",
                      "regression", "--epochs", "1", "--total-steps", "7", "--no-dropout", "--lr", "1e-3",
                      "--save-every", "2", "--keep", "10", "--threads", "1", "--progress", "none",
                      "--log-level", "warn", "--plot", ""};
    int n = 28;
    for (int i = 0; extra && extra[i]; i++) argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return run_logged(argv, log);
}

static void expect_same_checkpoint(const char *a, const char *b, const char *step)
{
    const char *files[] = {TB_CKPT_MODEL, TB_CKPT_STATE};
    for (int i = 0; i < 2; i++) {
        char pa[800], pb[800];
        snprintf(pa, sizeof pa, "%s/%s/%s", a, step, files[i]);
        snprintf(pb, sizeof pb, "%s/%s/%s", b, step, files[i]);
        cr_expect(same_file(pa, pb), "%s differs from %s", pa, pb);
    }
}

/* A run with one poisoned batch skipped ends with the weights and BertAdam moments (bit for bit)
 * of a run on the same data without that batch; the skip is in the log and metrics.jsonl, and a
 * second poisoned batch beyond the limit fails the run naming the step and the message. */
Test(folders, a_skipped_nonfinite_batch_leaves_no_trace)
{
    char poisoned[600], clean[600], two[600], out_a[600], out_b[600], out_c[600], out_d[600], log[600],
        text[1 << 16], met[700];
    snprintf(poisoned, sizeof poisoned, "%s/poisoned.tbs", dir);
    snprintf(clean, sizeof clean, "%s/clean.tbs", dir);
    snprintf(two, sizeof two, "%s/two.tbs", dir);
    snprintf(out_a, sizeof out_a, "%s/a", dir);
    snprintf(out_b, sizeof out_b, "%s/b", dir);
    snprintf(out_c, sizeof out_c, "%s/c", dir);
    snprintf(out_d, sizeof out_d, "%s/d", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    write_poisoned(poisoned, 8, -1, 3, -1);
    write_poisoned(clean, 8, 3, -1, -1);
    write_poisoned(two, 8, -1, 3, 5);
    const char *skip1[] = {"--skip-nonfinite", "1", NULL};
    cr_assert_eq(regress(poisoned, out_a, log, skip1), 0, "%s", slurp(log, text, sizeof text));
    cr_expect(strstr(slurp(log, text, sizeof text), "step 4 (message 3): the loss is nan: batch skipped"), "%s", text);
    cr_assert_eq(regress(clean, out_b, log, NULL), 0, "%s", slurp(log, text, sizeof text));
    expect_same_checkpoint(out_a, out_b, "step-7");
    expect_same_checkpoint(out_a, out_b, "step-4");
    snprintf(met, sizeof met, "%s/metrics.jsonl", out_a);
    slurp(met, text, sizeof text);
    cr_expect_eq(count(text, "\"event\":\"skip\""), 1, "%s", text);
    cr_expect(strstr(text, "\"event\":\"skip\",\"step\":3,") && strstr(text, "\"message\":3,") &&
                  strstr(text, "\"skipped\":1,"),
              "%s", text);
    char state[800];
    snprintf(state, sizeof state, "%s/step-7/training_state.json", out_a);
    cr_expect(strstr(slurp(state, text, sizeof text), "\"skipped_nonfinite\":\t1"), "%s", text);

    /* without the option the poisoned batch stops the run before its update */
    cr_expect_eq(regress(poisoned, out_c, log, NULL), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), "step 4 (message 3): the loss is nan: no update applied"), "%s",
              text);
    /* two poisoned batches with a limit of one */
    cr_expect_eq(regress(two, out_d, log, skip1), 1);
    cr_expect(strstr(slurp(log, text, sizeof text), "step 5 (message 5): the loss is nan") &&
                  strstr(text, "1 non-finite batches were skipped already"),
              "%s", text);
}

/* The skip count is part of the checkpoint: a run stopped after the skip (at step 5) and resumed
 * ends as the uninterrupted one, with the count carried over; stopped before it (step 2), the
 * resumed run skips the batch itself. */
Test(folders, resume_keeps_the_skip_count)
{
    char poisoned[600], ref[600], out[600], out2[600], log[600], text[1 << 16], state[800];
    snprintf(poisoned, sizeof poisoned, "%s/poisoned.tbs", dir);
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(out2, sizeof out2, "%s/out2", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    write_poisoned(poisoned, 8, -1, 3, -1);
    const char *skip1[] = {"--skip-nonfinite", "1", NULL};
    cr_assert_eq(regress(poisoned, ref, log, skip1), 0, "%s", slurp(log, text, sizeof text));
    const char *part[] = {"--skip-nonfinite", "1", "--max-steps", "5", NULL};
    const char *rest[] = {"--skip-nonfinite", "1", "--resume", NULL};
    cr_assert_eq(regress(poisoned, out, log, part), 0, "%s", slurp(log, text, sizeof text));
    cr_assert_eq(regress(poisoned, out, log, rest), 0, "%s", slurp(log, text, sizeof text));
    expect_same_checkpoint(ref, out, "step-7");
    snprintf(state, sizeof state, "%s/step-7/training_state.json", out);
    cr_expect(strstr(slurp(state, text, sizeof text), "\"skipped_nonfinite\":\t1"), "%s", text);
    /* a second poisoned batch after the resume would exceed the limit: the count was kept */
    const char *part2[] = {"--skip-nonfinite", "1", "--max-steps", "2", NULL};
    cr_assert_eq(regress(poisoned, out2, log, part2), 0, "%s", slurp(log, text, sizeof text));
    cr_assert_eq(regress(poisoned, out2, log, rest), 0, "%s", slurp(log, text, sizeof text));
    expect_same_checkpoint(ref, out2, "step-7");
}
