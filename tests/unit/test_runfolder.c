/* Unit tests of tb/store/runfolder.h: the folder lock (a second holder refused with the first's
 * pid and host; released on unlock and when the owner is killed), what counts as a used folder,
 * and the replacement of an old run by a new one, including one cut short after each step. */
#include "proc.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/store/runfolder.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], out[512];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(out, sizeof out, "%s/out", dir);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(runfolder, .init = setup, .fini = teardown, .timeout = 60);

static void put(const char *rel, const char *text)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", out, rel);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
}

static void mk(const char *rel)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", out, rel);
    cr_assert_eq(mkdir(p, 0777), 0, "mkdir %s: %s", p, strerror(errno));
}

static void ln(const char *target, const char *rel)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", out, rel);
    cr_assert_eq(symlink(target, p), 0, "symlink %s: %s", p, strerror(errno));
}

static const char *get(const char *rel, char *buf, size_t n)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", out, rel);
    buf[0] = 0;
    FILE *f = fopen(p, "r");
    if (!f) return buf;
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    fclose(f);
    return buf;
}

static int has(const char *rel)
{
    char p[800];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", out, rel);
    return lstat(p, &st) == 0;
}

static const char *target_of(const char *rel, char *buf, size_t n)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", out, rel);
    ssize_t k = readlink(p, buf, n - 1);
    buf[k > 0 ? k : 0] = 0;
    return buf;
}

/* ---- the lock --------------------------------------------------------------------------------- */

Test(runfolder, a_second_holder_is_refused_naming_the_first)
{
    tb_runfolder_lock a = {.fd = -1}, b = {.fd = -1};
    cr_assert_eq(tb_runfolder_lock_take(&a, out, "tb-test"), TB_OK, "%s", tb_err_msg());
    char text[512], want[64], host[256];
    get(TB_RUNFOLDER_LOCK_INFO, text, sizeof text);
    snprintf(want, sizeof want, "pid %ld on host ", (long)getpid());
    cr_assert_eq(gethostname(host, sizeof host), 0);
    cr_expect(strstr(text, want) && strstr(text, host) && strstr(text, "tb-test") && strstr(text, "started "), "%s",
              text);
    /* another open file description, even in this process, does not get it */
    cr_expect_eq(tb_runfolder_lock_take(&b, out, "tb-other"), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), out) && strstr(tb_err_msg(), "in use by another run") && strstr(tb_err_msg(), want),
              "%s", tb_err_msg());
    cr_expect_eq(b.fd, -1);
    tb_runfolder_unlock(&a);
    cr_expect_eq(a.fd, -1);
    tb_runfolder_unlock(&a); /* twice is harmless */
    cr_assert_eq(tb_runfolder_lock_take(&b, out, "tb-other"), TB_OK, "%s", tb_err_msg());
    cr_expect(strstr(get(TB_RUNFOLDER_LOCK_INFO, text, sizeof text), "tb-other"), "%s", text);
    tb_runfolder_unlock(&b);
}

Test(runfolder, a_file_in_the_way_is_a_clear_error)
{
    FILE *f = fopen(out, "w");
    cr_assert_not_null(f);
    fclose(f);
    tb_runfolder_lock a = {.fd = -1};
    cr_expect_eq(tb_runfolder_lock_take(&a, out, "tb-test"), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "is not a folder"), "%s", tb_err_msg());
}

static const char *child_ready;

static int hold_lock(void *arg)
{
    (void)arg;
    tb_runfolder_lock l = {.fd = -1};
    if (tb_runfolder_lock_take(&l, out, "tb-child") != TB_OK) return 3;
    FILE *f = fopen(child_ready, "w");
    if (f) fclose(f);
    for (;;) pause();
    return 0;
}

Test(runfolder, a_lock_whose_owner_was_killed_is_free)
{
    char ready[600], want[64];
    snprintf(ready, sizeof ready, "%s/ready", dir);
    child_ready = ready;
    pid_t pid = tb_proc_fork(hold_lock, NULL);
    cr_assert_gt(pid, 0);
    for (int t = 0; t < 20000 && access(ready, F_OK) != 0; t += 10) usleep(10000);
    cr_assert_eq(access(ready, F_OK), 0, "the child never took the lock");
    tb_runfolder_lock l = {.fd = -1};
    cr_expect_eq(tb_runfolder_lock_take(&l, out, "tb-test"), TB_EINVAL);
    snprintf(want, sizeof want, "pid %ld on host", (long)pid);
    cr_expect(strstr(tb_err_msg(), want), "%s", tb_err_msg());
    tb_proc_kill(pid, SIGKILL);
    int code = 0;
    cr_assert_eq(tb_proc_wait(pid, 10000, &code), 0);
    cr_assert_eq(tb_runfolder_lock_take(&l, out, "tb-test"), TB_OK, "%s", tb_err_msg());
    tb_runfolder_unlock(&l);
}

/* ---- used folders ----------------------------------------------------------------------------- */

Test(runfolder, what_makes_a_folder_used)
{
    char what[256];
    cr_expect_eq(tb_runfolder_used(out, what, sizeof what), TB_RUNFOLDER_NONE, "a missing folder");
    cr_assert_eq(mkdir(out, 0777), 0);
    put(".lock", "");
    put("notes.txt", "mine");
    mk("step-3.tmp");
    cr_expect_eq(tb_runfolder_used(out, what, sizeof what), TB_RUNFOLDER_NONE, "%s", what);
    cr_expect_str_eq(what, "");
    put("metrics.jsonl", "{}\n");
    cr_expect_eq(tb_runfolder_used(out, what, sizeof what), TB_RUNFOLDER_OUTPUT);
    cr_expect_str_eq(what, "metrics.jsonl");
    mk("step-12");
    cr_expect_eq(tb_runfolder_used(out, what, sizeof what), TB_RUNFOLDER_CHECKPOINTS);
    cr_expect(strstr(what, "step-12") && strstr(what, "metrics.jsonl"), "%s", what);
}

/* ---- replacing a run ------------------------------------------------------------------------- */

/* Old run: step-4, step-8 (latest), best/step-8, metrics, loss.png, vocab.txt, and a file of the
 * user's; new run in overwrite.new: step-5, step-8, step-10 (latest), metrics, vocab.txt. */
static void two_runs(void)
{
    cr_assert_eq(mkdir(out, 0777), 0);
    const char *old_steps[] = {"step-4", "step-8"};
    for (int i = 0; i < 2; i++) {
        char p[64];
        mk(old_steps[i]);
        snprintf(p, sizeof p, "%s/config.json", old_steps[i]);
        put(p, "old");
    }
    ln("step-8", "latest");
    mk("best");
    mk("best/step-8");
    put("best/step-8/config.json", "old best");
    ln("step-8", "best/latest");
    put("metrics.jsonl", "old metrics\n");
    put("loss.png", "old plot");
    put("vocab.txt", "old vocab");
    put("notes.txt", "the user's");
    mk(TB_RUNFOLDER_NEW);
    const char *new_steps[] = {"step-5", "step-8", "step-10"};
    for (int i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", TB_RUNFOLDER_NEW, new_steps[i]);
        mk(p);
        snprintf(p, sizeof p, "%s/%s/config.json", TB_RUNFOLDER_NEW, new_steps[i]);
        put(p, new_steps[i]);
        snprintf(p, sizeof p, "%s/%s/model.safetensors", TB_RUNFOLDER_NEW, new_steps[i]);
        put(p, "weights");
    }
    ln("step-10", TB_RUNFOLDER_NEW "/latest");
    put(TB_RUNFOLDER_NEW "/metrics.jsonl", "new metrics\n");
    put(TB_RUNFOLDER_NEW "/vocab.txt", "new vocab");
}

static void expect_replaced(void)
{
    char buf[256];
    cr_expect_str_eq(target_of("latest", buf, sizeof buf), "step-10");
    cr_expect_str_eq(get("latest/config.json", buf, sizeof buf), "step-10");
    cr_expect_str_eq(get("latest/model.safetensors", buf, sizeof buf), "weights");
    cr_expect_str_eq(get("step-8/config.json", buf, sizeof buf), "step-8", "the new run's step-8");
    cr_expect_str_eq(get("step-5/config.json", buf, sizeof buf), "step-5");
    cr_expect(!has("step-4"), "the old run's step-4 is gone");
    cr_expect(!has("best"), "the old run's best/ is gone (the new run has none)");
    cr_expect(!has("loss.png"), "the old run's plot is gone");
    cr_expect_str_eq(get("metrics.jsonl", buf, sizeof buf), "new metrics\n");
    cr_expect_str_eq(get("vocab.txt", buf, sizeof buf), "new vocab");
    cr_expect_str_eq(get("notes.txt", buf, sizeof buf), "the user's", "other files are left alone");
    cr_expect(!has(TB_RUNFOLDER_NEW) && !has(TB_RUNFOLDER_OLD) && !has("step-10.tmp") && !has("latest.tmp"));
    cr_expect(!tb_runfolder_replace_pending(out));
}

Test(runfolder, replace_moves_the_new_run_into_place)
{
    two_runs();
    cr_expect(!tb_runfolder_replace_pending(out));
    cr_assert_eq(tb_runfolder_replace(out), TB_OK, "%s", tb_err_msg());
    expect_replaced();
}

/* The states a crash can leave after each step of the replacement: `latest` always names a complete
 * checkpoint, tb_runfolder_replace_pending says so, and calling tb_runfolder_replace again
 * completes it. */
Test(runfolder, a_replacement_cut_short_is_completed)
{
    char buf[256];
    for (int cut = 1; cut <= 4; cut++) {
        two_runs();
        /* replay the steps up to `cut` by hand, as the function does them */
        cr_assert_eq(unlink(strcat(strcpy(buf, out), "/latest")), 0);
        ln(TB_RUNFOLDER_NEW "/step-10", "latest"); /* 1 */
        if (cut >= 2) {
            char cmd[2000];
            snprintf(cmd, sizeof cmd,
                     "cd '%s' && mkdir " TB_RUNFOLDER_OLD " && mv step-4 step-8 best metrics.jsonl loss.png vocab.txt "
                     TB_RUNFOLDER_OLD "/ && touch " TB_RUNFOLDER_NEW "/.old-moved",
                     out);
            cr_assert_eq(system(cmd), 0);
        }
        if (cut >= 3) {
            char cmd[2000];
            snprintf(cmd, sizeof cmd, "cd '%s' && mv " TB_RUNFOLDER_NEW "/step-5 " TB_RUNFOLDER_NEW "/metrics.jsonl .",
                     out); /* part of step 3 */
            cr_assert_eq(system(cmd), 0);
        }
        if (cut >= 4) {
            char cmd[2000];
            snprintf(cmd, sizeof cmd,
                     "cd '%s' && mv " TB_RUNFOLDER_NEW "/step-8 " TB_RUNFOLDER_NEW "/vocab.txt . && cp -l -r "
                     TB_RUNFOLDER_NEW "/step-10 step-10",
                     out); /* rest of 3, 4 without the final link */
            cr_assert_eq(system(cmd), 0);
        }
        cr_expect_str_eq(get("latest/config.json", buf, sizeof buf), "step-10", "cut %d: latest is complete", cut);
        cr_expect(tb_runfolder_replace_pending(out), "cut %d", cut);
        cr_assert_eq(tb_runfolder_replace(out), TB_OK, "cut %d: %s", cut, tb_err_msg());
        expect_replaced();
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
        cr_assert_eq(system(cmd), 0);
    }
}

Test(runfolder, replace_needs_the_new_runs_latest)
{
    two_runs();
    char p[700];
    snprintf(p, sizeof p, "%s/%s/latest", out, TB_RUNFOLDER_NEW);
    cr_assert_eq(unlink(p), 0);
    cr_expect_neq(tb_runfolder_replace(out), TB_OK);
    cr_expect(strstr(tb_err_msg(), "not a link to the new run's step-N"), "%s", tb_err_msg());
    char buf[64];
    cr_expect_str_eq(target_of("latest", buf, sizeof buf), "step-8", "the old run is untouched");
    cr_expect(has("step-4") && has("best/latest"));
}
