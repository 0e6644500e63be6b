/* Integration tests: pipeline files (parsing, variables, errors) and tb-pipeline running small
 * shell commands as stages: order, parallel start, failure propagation and clean-up, signal
 * forwarding, stderr prefixes, --check against --describe and --dry-run. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "tb/base/error.h"
#include "pipeline/pipeline.h"

#define RUNNER TB_BIN_DIR "/tb-pipeline"

static char dir[64];

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    unsetenv("TB_THREADS"); /* thread counts in the plan are then computed from the cores */
}
static void teardown(void) { tb_proc_rmdir(dir); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void write_file(const char *name, const char *text, int mode)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    if (mode) chmod(path, (mode_t)mode);
}

/* Contents of dir/name ("" when missing); static buffer per call site is enough here. */
static char *read_file(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);
    cr_assert_not_null(buf);
    if (f) {
        size_t n = fread(buf, 1, 65535, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

/* Starts tb-pipeline with args, stdout/stderr to dir/out.txt and dir/err.txt. */
static pid_t start_runner(const char **args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)RUNNER;
    for (int i = 0; args[i]; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char out[256], err[256];
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0) _exit(126);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        execv(RUNNER, argv);
        _exit(127);
    }
    return pid;
}

/* Runs tb-pipeline to the end (at most 60 s); returns its exit code (or -signal). */
static int run_runner(const char **args)
{
    pid_t pid = start_runner(args);
    int code = 0;
    if (tb_proc_wait(pid, 60000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("tb-pipeline did not finish within 60 s");
    }
    return code;
}

/* Alive and not a zombie (an orphan's new parent may be slow to reap it). */
static int alive(pid_t pid)
{
    if (kill(pid, 0) != 0) return 0;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return !(close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z');
}

static char *pipe_path(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* ---- parsing ----------------------------------------------------------------------------- */

Test(pipeline_parse, variables_quotes_and_continuations)
{
    setenv("TB_TEST_FROM_ENV", "env value", 1);
    unsetenv("TB_TEST_UNSET");
    const char *text = "# a comment\n"
                       "; another\n"
                       "[vars]\n"
                       "A = alpha\n"
                       "B = ${A}-beta\n"
                       "C = from file\n"
                       "\n"
                       "[one]\n"
                       "run = /bin/echo ${B} '${C}' \"x ${TB_TEST_FROM_ENV}\" ${TB_TEST_UNSET:-fallback} $HOME$$ $${A} \\\n"
                       "      'it''s' a\\ b \"q\\\"q\" ''\n"
                       "[two]\n"
                       "after = one\n"
                       "run = /bin/true\n";
    char *over[] = {(char *)"C=override with spaces"};
    tb_pipeline p;
    cr_assert_eq(tb_pipeline_parse(&p, text, "t.pipe", over, 1), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(p.count, 2);
    const char *want[] = {"/bin/echo", "alpha-beta", "override with spaces", "x env value", "fallback", "$HOME$$",
                          "${A}", "its", "a b", "q\"q", ""};
    const tb_pipeline_stage *s = &p.stages[0];
    cr_assert_eq(s->argc, 11, "got %d words", s->argc);
    for (int i = 0; i < 11; i++) cr_expect_str_eq(s->argv[i], want[i], "word %d", i);
    cr_expect_null(s->argv[11]);
    cr_expect_str_eq(p.stages[1].name, "two");
    cr_assert_eq(p.stages[1].nafter, 1);
    cr_expect_eq(p.stages[1].after_idx[0], 0);
    cr_expect_eq(p.stages[1].level, 1);
    cr_expect_eq(p.stages[0].concurrent, 1);
    tb_pipeline_free(&p);
    unsetenv("TB_TEST_FROM_ENV");
}

Test(pipeline_parse, concurrency_and_threads)
{
    const char *text = "[a]\nrun = x\n[b]\nrun = x\n[c]\nrun = x\nafter = a, b\n[d]\nrun = x\nthreads = 3\n";
    tb_pipeline p;
    cr_assert_eq(tb_pipeline_parse(&p, text, "t", NULL, 0), TB_OK, "%s", tb_err_msg());
    /* a: b and d may run beside it (c waits for a) -> 3; c: only d beside it -> 2 */
    cr_expect_eq(p.stages[0].concurrent, 3);
    cr_expect_eq(p.stages[1].concurrent, 3);
    cr_expect_eq(p.stages[2].concurrent, 2);
    cr_expect_eq(p.stages[3].concurrent, 4);
    cr_expect_eq(tb_pipeline_stage_threads(&p, 3), 3);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cr_expect_geq(tb_pipeline_stage_threads(&p, 0), 1);
    cr_expect_leq(tb_pipeline_stage_threads(&p, 0), cores > 3 ? cores / 3 : 1);
    tb_pipeline_free(&p);
}

static void expect_parse_error(const char *text, const char *needle)
{
    tb_pipeline p;
    unsetenv("TB_TEST_UNDEFINED");
    int rc = tb_pipeline_parse(&p, text, "bad.pipe", NULL, 0);
    cr_expect_neq(rc, TB_OK, "accepted:\n%s", text);
    cr_expect(strstr(tb_err_msg(), needle) != NULL, "error '%s' should contain '%s'", tb_err_msg(), needle);
    tb_pipeline_free(&p);
}

Test(pipeline_parse, errors_say_where)
{
    expect_parse_error("[a]\nrun = echo ${TB_TEST_UNDEFINED}\n", "bad.pipe:2: variable 'TB_TEST_UNDEFINED' is not defined");
    expect_parse_error("[a]\nrun = echo ${1x}\n", "bad.pipe:2: '${1x}' is not a variable name");
    expect_parse_error("[a]\nrun = echo ${A\n", "without a closing");
    expect_parse_error("[a]\nrun = echo 'open\n", "bad.pipe:2: unterminated ' quote");
    expect_parse_error("[a]\nrun = echo \"open\n", "unterminated \" quote");
    expect_parse_error("[a]\nrun = x\ncolour = red\n", "bad.pipe:3: unknown key 'colour' in [a]");
    expect_parse_error("[a]\nrun = x\n[a]\nrun = y\n", "bad.pipe:3: stage [a] is defined twice (first on line 1)");
    expect_parse_error("[a]\nrun = x\nafter = b\n", "[a] runs after 'b', which is not a stage");
    expect_parse_error("[a]\nrun = x\nafter = a\n", "cannot run after itself");
    expect_parse_error("[a]\nrun = x\nafter = c\n[b]\nrun = x\nafter = a\n[c]\nrun = x\nafter = b\n",
                       "cycle: a -> c -> b -> a");
    expect_parse_error("[a]\nafter = \n", "stage [a] has no run");
    expect_parse_error("[a]\nrun = \n", "run is empty");
    expect_parse_error("[a]\nrun = x\nrun = y\n", "two run lines");
    expect_parse_error("run = x\n", "bad.pipe:1: 'run = ...' before any [section]");
    expect_parse_error("# nothing\n", "no stages");
    expect_parse_error("[a b]\nrun = x\n", "section name 'a b' is not valid");
    expect_parse_error("[a]\nrun = x\nthreads = many\n", "threads = 'many'");
    expect_parse_error("[a]\nrun x\n", "bad.pipe:2: expected 'key = value'");
    expect_parse_error("[vars]\n2x = 1\n[a]\nrun = x\n", "'2x' is not a variable name");
    tb_pipeline p;
    char *bad[] = {(char *)"noequals"};
    cr_expect_eq(tb_pipeline_parse(&p, "[a]\nrun = x\n", "t", bad, 1), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "'noequals' is not a variable setting"), "%s", tb_err_msg());
    tb_pipeline_free(&p);
    cr_expect_eq(tb_pipeline_load(&p, "/nonexistent/x.pipe", NULL, 0), TB_EIO);
    cr_expect(strstr(tb_err_msg(), "/nonexistent/x.pipe"), "%s", tb_err_msg());
    tb_pipeline_free(&p);
}

Test(pipeline_parse, resolve_finds_programs)
{
    tb_pipeline p;
    cr_assert_eq(tb_pipeline_parse(&p, "[a]\nrun = sh -c true\n[b]\nrun = tb-pipeline --help\n", "t", NULL, 0), TB_OK);
    cr_assert_eq(tb_pipeline_resolve(&p, TB_BIN_DIR), TB_OK, "%s", tb_err_msg());
    cr_expect(strcmp(p.stages[0].program + strlen(p.stages[0].program) - 3, "/sh") == 0, "%s", p.stages[0].program);
    cr_expect_str_eq(p.stages[1].program, TB_BIN_DIR "/tb-pipeline");
    tb_pipeline_free(&p);
    cr_assert_eq(tb_pipeline_parse(&p, "[a]\nrun = tb-no-such-program-x\n", "t", NULL, 0), TB_OK);
    cr_expect_eq(tb_pipeline_resolve(&p, TB_BIN_DIR), TB_ENOTFOUND);
    cr_expect(strstr(tb_err_msg(), "program 'tb-no-such-program-x' not found"), "%s", tb_err_msg());
    tb_pipeline_free(&p);
}

/* ---- running ----------------------------------------------------------------------------- */

TestSuite(pipeline_run, .init = setup, .fini = teardown);

Test(pipeline_run, after_order_and_parallel_start)
{
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    /* c after b after a, each appending to order.txt after a pause; w and r only finish if they
     * run at the same time (a FIFO opens when both ends are open). */
    write_file("p.pipe",
               "[vars]\nLOG = ${D}/order.txt\n"
               "[c]\nafter = b\nrun = /bin/sh -c 'echo c >> ${LOG}'\n"
               "[a]\nrun = /bin/sh -c 'sleep 0.3; echo a >> ${LOG}'\n"
               "[b]\nafter = a\nrun = /bin/sh -c 'sleep 0.2; echo b >> ${LOG}'\n"
               "[w]\nrun = /bin/sh -c 'echo through-fifo > ${D}/fifo'\n"
               "[r]\nrun = /bin/sh -c 'cat ${D}/fifo > ${D}/fifo.out'\n",
               0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {pipe_path("p.pipe"), dvar, NULL};
    int code = run_runner(args);
    char *err = read_file("err.txt");
    cr_expect_eq(code, 0, "exit %d, stderr:\n%s", code, err);
    char *order = read_file("order.txt");
    cr_expect_str_eq(order, "a\nb\nc\n");
    char *fo = read_file("fifo.out");
    cr_expect_str_eq(fo, "through-fifo\n");
    free(order);
    free(fo);
    free(err);
}

Test(pipeline_run, stderr_lines_are_prefixed)
{
    write_file("p.pipe",
               "[talker]\nrun = /bin/sh -c 'echo one >&2; echo two >&2; printf partial >&2; echo to-stdout'\n"
               "[x]\nrun = /bin/sh -c 'echo from-x >&2'\n",
               0);
    const char *args[] = {pipe_path("p.pipe"), NULL};
    cr_expect_eq(run_runner(args), 0);
    char *err = read_file("err.txt"), *out = read_file("out.txt");
    /* the talker's lines, in order, each prefixed (lines of other stages or of the runner may
     * fall between them: the stages run at the same time) */
    const char *one = strstr(err, "talker | one\n");
    const char *two = one ? strstr(one, "talker | two\n") : NULL;
    const char *partial = two ? strstr(two, "talker | partial\n") : NULL;
    cr_expect(one && two && partial, "stderr:\n%s", err);
    cr_expect(strstr(err, "x      | from-x\n"), "names padded to one width:\n%s", err);
    cr_expect_str_eq(out, "to-stdout\n", "stdout is passed through unprefixed");
    free(err);
    free(out);
}

Test(pipeline_run, stage_environment)
{
    write_file("p.pipe",
               "[envcheck]\nthreads = 3\nstdout = ${D}/env.txt\n"
               "run = /bin/sh -c 'echo \"$TB_STAGE $TB_THREADS $OMP_WAIT_POLICY\"; command -v tb-pipeline'\n"
               "[inherit]\nstdout = ${D}/env2.txt\nrun = /bin/sh -c 'echo $TB_THREADS'\n",
               0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    setenv("TB_THREADS", "5", 1); /* the runner's own setting goes to stages without threads = N */
    char *saved = getenv("OMP_WAIT_POLICY") ? strdup(getenv("OMP_WAIT_POLICY")) : NULL;
    unsetenv("OMP_WAIT_POLICY");
    const char *args[] = {pipe_path("p.pipe"), dvar, NULL};
    cr_expect_eq(run_runner(args), 0);
    if (saved) setenv("OMP_WAIT_POLICY", saved, 1);
    free(saved);
    char *env = read_file("env.txt");
    unsetenv("TB_THREADS");
    cr_expect_str_eq(env, "envcheck 3 PASSIVE\n" TB_BIN_DIR "/tb-pipeline\n");
    free(env);
    env = read_file("env2.txt");
    cr_expect_str_eq(env, "5\n");
    free(env);
}

/* A stage started without OMP_WAIT_POLICY re-executes itself with PASSIVE (libgomp reads it
 * before main): the runner's initial environment (/proc/PID/environ, which setenv does not
 * change) then holds it, under the same pid. */
Test(pipeline_run, runner_reexecutes_with_passive_wait_policy)
{
    write_file("p.pipe",
               "[peek]\nstdout = ${D}/environ.txt\n"
               "run = /bin/sh -c 'tr \"\\000\" \"\\n\" < /proc/$PPID/environ | grep ^OMP_WAIT_POLICY='\n",
               0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    char *saved = getenv("OMP_WAIT_POLICY") ? strdup(getenv("OMP_WAIT_POLICY")) : NULL;
    unsetenv("OMP_WAIT_POLICY");
    const char *args[] = {pipe_path("p.pipe"), dvar, NULL};
    int code = run_runner(args);
    if (saved) setenv("OMP_WAIT_POLICY", saved, 1);
    free(saved);
    char *env = read_file("environ.txt"), *err = read_file("err.txt");
    cr_expect_eq(code, 0, "%s", err);
    cr_expect_str_eq(env, "OMP_WAIT_POLICY=PASSIVE\n");
    free(env);
    free(err);
}

Test(pipeline_run, failure_stops_the_others)
{
    /* long: dies on SIGTERM; stubborn: ignores SIGTERM (killed after the grace period);
     * bad: fails with 3; never: after bad, must not start. */
    write_file("p.pipe",
               "[long]\nrun = /bin/sh -c 'echo $$ > ${D}/long.pid; exec sleep 60'\n"
               "[stubborn]\nrun = /bin/sh -c 'trap \"\" TERM; echo $$ > ${D}/stub.pid; sleep 60; echo survived'\n"
               "[bad]\nrun = /bin/sh -c 'sleep 0.5; echo giving up >&2; exit 3'\n"
               "[never]\nafter = bad\nrun = /bin/sh -c 'touch ${D}/never-ran'\n",
               0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {"--grace", "0.5", pipe_path("p.pipe"), dvar, NULL};
    double t0 = now_s();
    int code = run_runner(args);
    double took = now_s() - t0;
    char *err = read_file("err.txt");
    cr_expect_eq(code, 1, "exit %d:\n%s", code, err);
    cr_expect_lt(took, 15.0, "the runner took %.1f s: the others were not stopped", took);
    cr_expect(strstr(err, "stage 'bad'") && strstr(err, "failed: exit status 3"), "stderr:\n%s", err);
    cr_expect(strstr(err, "bad      | giving up"), "stderr:\n%s", err);
    cr_expect(strstr(err, "long stopped: killed by signal 15"), "stderr:\n%s", err);
    cr_expect(strstr(err, "stubborn stopped: killed by signal 9"), "stderr:\n%s", err);
    cr_expect(strstr(err, "never was not started"), "stderr:\n%s", err);
    cr_expect(!strstr(err, "survived"), "stderr:\n%s", err);
    cr_expect_neq(access(pipe_path("never-ran"), F_OK), 0, "a stage after the failed one ran");
    const char *pidfiles[] = {"long.pid", "stub.pid"};
    for (int k = 0; k < 2; k++) {
        char *txt = read_file(pidfiles[k]);
        pid_t pid = (pid_t)atoi(txt);
        cr_expect_gt(pid, 0, "%s missing", pidfiles[k]);
        if (pid > 0) cr_expect(!alive(pid), "%s: process %d still alive", pidfiles[k], (int)pid);
        free(txt);
    }
    free(err);
}

Test(pipeline_run, signal_death_and_exec_failure_are_failures)
{
    write_file("p.pipe", "[self-kill]\nrun = /bin/sh -c 'kill -9 $$'\n", 0);
    const char *args[] = {pipe_path("p.pipe"), NULL};
    int code = run_runner(args);
    char *err = read_file("err.txt");
    cr_expect_eq(code, 1);
    cr_expect(strstr(err, "stage 'self-kill'") && strstr(err, "killed by signal 9"), "stderr:\n%s", err);
    free(err);
    write_file("q.pipe", "[ok]\nrun = true\n[no]\nrun = false\n", 0);
    const char *args2[] = {pipe_path("q.pipe"), NULL};
    code = run_runner(args2);
    err = read_file("err.txt");
    cr_expect_eq(code, 1);
    cr_expect(strstr(err, "stage 'no' (") && strstr(err, "q.pipe:3) failed: exit status 1"), "stderr:\n%s", err);
    free(err);
    write_file("r.pipe", "[missing]\nrun = /nonexistent/tb-x --help\n", 0);
    const char *args3[] = {pipe_path("r.pipe"), NULL};
    code = run_runner(args3);
    err = read_file("err.txt");
    cr_expect_eq(code, 2, "a missing program is found before anything starts");
    cr_expect(strstr(err, "program '/nonexistent/tb-x' not found"), "stderr:\n%s", err);
    free(err);
}

Test(pipeline_run, all_succeed_exit_zero_and_bad_usage)
{
    write_file("p.pipe", "[a]\nrun = true\n[b]\nrun = true\nafter = a\n", 0);
    const char *args[] = {pipe_path("p.pipe"), NULL};
    cr_expect_eq(run_runner(args), 0);
    const char *none[] = {NULL};
    cr_expect_eq(run_runner(none), 2, "no pipeline file is a usage error");
    write_file("bad.pipe", "[a]\nrun = echo ${NOPE_TB_UNDEFINED}\n", 0);
    const char *args2[] = {pipe_path("bad.pipe"), NULL};
    cr_expect_eq(run_runner(args2), 2);
    char *err = read_file("err.txt");
    cr_expect(strstr(err, "bad.pipe:2: variable 'NOPE_TB_UNDEFINED' is not defined"), "stderr:\n%s", err);
    free(err);
}

Test(pipeline_run, sigint_is_forwarded)
{
    write_file("p.pipe",
               "[waiter]\nrun = /bin/sh -c 'trap \"echo got-int > ${D}/int.txt; exit 7\" INT; touch ${D}/ready; "
               "while :; do sleep 0.1; done'\n",
               0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {pipe_path("p.pipe"), dvar, NULL};
    pid_t pid = start_runner(args);
    double t0 = now_s();
    while (access(pipe_path("ready"), F_OK) != 0 && now_s() - t0 < 20) usleep(20000);
    cr_assert_eq(access(pipe_path("ready"), F_OK), 0, "the stage never started");
    kill(pid, SIGINT);
    int code = 0;
    if (tb_proc_wait(pid, 20000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("tb-pipeline did not stop after SIGINT");
    }
    char *err = read_file("err.txt"), *got = read_file("int.txt");
    cr_expect_eq(code, 130, "exit %d:\n%s", code, err);
    cr_expect_str_eq(got, "got-int\n", "the stage did not receive SIGINT");
    cr_expect(strstr(err, "interrupted"), "stderr:\n%s", err);
    free(err);
    free(got);
}

/* ---- --dry-run and --check --------------------------------------------------------------- */

Test(pipeline_run, dry_run_prints_the_plan)
{
    write_file("p.pipe",
               "[vars]\nMSG = two words\n[late]\nafter = early\nrun = /bin/echo \"${MSG}\"\n"
               "[early]\nrun = /bin/echo \"it's\" > x\nthreads = 2\nstdout = ${D}/o.txt\n",
               0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {"--dry-run", pipe_path("p.pipe"), dvar, NULL};
    int code = run_runner(args);
    char *out = read_file("out.txt");
    cr_expect_eq(code, 0);
    /* late runs alone (after early), so it gets every core this process may use */
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    char want[2048];
    snprintf(want, sizeof want,
             "pipeline %s: 2 stages\n  var MSG = two words\n"
             "1. early: starts at once; threads 2\n   /bin/echo 'it'\\''s' '>' x > %s/o.txt\n"
             "2. late: after early; threads %d\n   /bin/echo 'two words'\n",
             pipe_path("p.pipe"), dir, CPU_COUNT(&set));
    cr_expect_str_eq(out, want);
    cr_expect_neq(access(pipe_path("o.txt"), F_OK), 0, "a dry run started a stage");
    free(out);
}

/* Two fake stages that describe themselves like tinybert-c stages do. */
static void write_fake_stages(void)
{
    write_file("tb-fakeprod",
               "#!/bin/sh\n"
               "if [ \"$1\" = --describe ]; then cat <<'J'\n"
               "{\"stage\":\"tb-fakeprod\",\"summary\":\"p\",\"inputs\":[],\"outputs\":[{\"option\":\"output\","
               "\"message\":\"batch\",\"fields\":[{\"name\":\"input_ids\",\"dtype\":\"<i4\",\"shape\":\"B,T\"},"
               "{\"name\":\"teacher.hidden.*\",\"dtype\":\"<f4\",\"shape\":\"B,T,H\"}]}],"
               "\"parameters\":[{\"name\":\"output\",\"type\":\"endpoint\",\"required\":true},"
               "{\"name\":\"batch-size\",\"type\":\"int\",\"required\":false},"
               "{\"name\":\"fp16\",\"type\":\"bool\",\"required\":false},"
               "{\"name\":\"mode\",\"type\":\"enum\",\"choices\":[\"a\",\"b\"],\"required\":false}]}\n"
               "J\nexit 0; fi\nexit 0\n",
               0755);
    write_file("tb-fakecons",
               "#!/bin/sh\n"
               "if [ \"$1\" = --describe ]; then cat <<'J'\n"
               "{\"stage\":\"tb-fakecons\",\"summary\":\"c\",\"outputs\":[],\"inputs\":[{\"option\":\"input\","
               "\"message\":\"batch\",\"fields\":[{\"name\":\"input_ids\"},{\"name\":\"teacher.hidden.3\"}]}],"
               "\"parameters\":[{\"name\":\"input\",\"type\":\"endpoint\",\"required\":true}]}\n"
               "J\nexit 0; fi\nexit 0\n",
               0755);
    write_file("tb-nodescribe", "#!/bin/sh\nexit 1\n", 0755);
}

Test(pipeline_run, check_passes_a_consistent_pipeline)
{
    write_fake_stages();
    write_file("p.pipe",
               "[prod]\nrun = ${D}/tb-fakeprod --output ipc:///tmp/x --batch-size=8 --fp16 --mode b\n"
               "[cons]\nrun = ${D}/tb-fakecons --input ipc:///tmp/x\n"
               "[helper]\nrun = /bin/sleep 1\n",
               0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {"--check", pipe_path("p.pipe"), dvar, NULL};
    int code = run_runner(args);
    char *out = read_file("out.txt"), *err = read_file("err.txt");
    cr_expect_eq(code, 0, "stdout:\n%s\nstderr:\n%s", out, err);
    cr_expect(strstr(out, "ok   [prod] tb-fakeprod"), "%s", out);
    cr_expect(strstr(out, "ok   [cons] tb-fakecons"), "%s", out);
    cr_expect(strstr(out, "ok   [helper] /bin/sleep (not described)"), "%s", out);
    free(out);
    free(err);
}

Test(pipeline_run, check_reports_every_problem)
{
    write_fake_stages();
    write_file("p.pipe",
               "[prod]\nrun = ${D}/tb-fakeprod --output ipc:///tmp/x --batch-size many --colour red --mode c\n"
               "[cons]\nrun = ${D}/tb-fakecons\n"
               "[cons2]\nrun = ${D}/tb-fakecons --input ipc:///tmp/x\n"
               "[mute]\ndescribe = yes\nrun = ${D}/tb-nodescribe\n",
               0);
    write_file("q.pipe", "[x]\nrun = tb-definitely-missing-program\n[y]\nrun = /bin/sleep 1\n", 0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {"--check", pipe_path("p.pipe"), dvar, NULL};
    int code = run_runner(args);
    char *out = read_file("out.txt"), *err = read_file("err.txt");
    cr_expect_eq(code, 1);
    const char *needles[] = {"FAIL [prod]", "--batch-size: 'many' is not a valid int", "unknown option '--colour'",
                             "--mode: 'c' is not a valid enum", "FAIL [cons]", "--input is required",
                             "FAIL [mute]", "--describe' failed (exit status 1)"};
    for (size_t k = 0; k < sizeof needles / sizeof needles[0]; k++)
        cr_expect(strstr(out, needles[k]), "report lacks '%s':\n%s", needles[k], out);
    cr_expect(strstr(out, "ok   [cons2] tb-fakecons"), "%s", out);
    cr_expect(strstr(err, "problems found"), "%s", err);
    free(out);
    free(err);
    /* links: a consumer expecting fields the producer does not send, or another message kind */
    write_file("tb-fakecons2",
               "#!/bin/sh\ncat <<'J'\n"
               "{\"stage\":\"tb-fakecons2\",\"summary\":\"c\",\"outputs\":[],\"inputs\":[{\"option\":\"input\","
               "\"message\":\"features\",\"fields\":[]},{\"option\":\"labels\",\"message\":\"batch\",\"fields\":"
               "[{\"name\":\"labels\"}]}],\"parameters\":[{\"name\":\"input\",\"type\":\"endpoint\"},"
               "{\"name\":\"labels\",\"type\":\"endpoint\"}]}\nJ\n",
               0755);
    write_file("l.pipe",
               "[prod]\nrun = ${D}/tb-fakeprod --output ipc:///tmp/x\n"
               "[c]\nrun = ${D}/tb-fakecons2 --input ipc:///tmp/x --labels=ipc:///tmp/x\n",
               0);
    const char *args2[] = {"--check", pipe_path("l.pipe"), dvar, NULL};
    code = run_runner(args2);
    out = read_file("out.txt");
    cr_expect_eq(code, 1);
    cr_expect(strstr(out, "--input reads 'features' messages from ipc:///tmp/x, but [prod] writes 'batch'"), "%s", out);
    cr_expect(strstr(out, "--labels expects field 'labels', which [prod] does not produce"), "%s", out);
    free(out);
    const char *args3[] = {"--check", pipe_path("q.pipe"), NULL};
    code = run_runner(args3);
    out = read_file("out.txt");
    err = read_file("err.txt");
    cr_expect_eq(code, 1);
    cr_expect(strstr(out, "FAIL [x]") && strstr(out, "was not found"), "%s", out);
    cr_expect(strstr(out, "ok   [y] /bin/sleep (not described)"), "stages after a missing one are still checked:\n%s",
              out);
    free(out);
    free(err);
}

Test(pipeline_run, check_asks_real_stages)
{
    /* tb-pipeline describes itself like every stage; its own options check out */
    write_file("p.pipe", "[inner]\nrun = tb-pipeline --dry-run --grace 2 x.pipe\n[bad]\nrun = tb-pipeline --grace soon\n", 0);
    const char *args[] = {"--check", pipe_path("p.pipe"), NULL};
    int code = run_runner(args);
    char *out = read_file("out.txt");
    cr_expect_eq(code, 1);
    cr_expect(strstr(out, "ok   [inner] tb-pipeline"), "%s", out);
    cr_expect(strstr(out, "FAIL [bad]") && strstr(out, "--grace: 'soon' is not a valid float"), "%s", out);
    free(out);
}

Test(pipeline_run, pipeline_dir_is_the_files_directory)
{
    write_file("p.pipe", "[a]\nrun = /bin/echo ${PIPELINE_DIR}/x\n", 0);
    tb_pipeline p;
    cr_assert_eq(tb_pipeline_load(&p, pipe_path("p.pipe"), NULL, 0), TB_OK, "%s", tb_err_msg());
    char *real = realpath(dir, NULL), want[512];
    snprintf(want, sizeof want, "%s/x", real);
    cr_expect_str_eq(p.stages[0].argv[1], want);
    free(real);
    tb_pipeline_free(&p);
}

/* The example in pipelines/ checks out against the real tb-vocab and runs. */
Test(pipeline_run, smoke_example_checks_and_runs)
{
    const char *file = TB_SOURCE_DIR "/pipelines/smoke.pipe";
    char outvar[128];
    snprintf(outvar, sizeof outvar, "OUT=%s/smoke", dir);
    const char *check[] = {"--check", file, outvar, NULL};
    int code = run_runner(check);
    char *out = read_file("out.txt");
    cr_expect_eq(code, 0, "%s", out);
    cr_expect(strstr(out, "ok   [vocab] tb-vocab"), "%s", out);
    free(out);
    const char *run[] = {file, outvar, "VOCAB_SIZE=600", NULL};
    code = run_runner(run);
    char *err = read_file("err.txt");
    cr_expect_eq(code, 0, "%s", err);
    free(err);
    char *hash = read_file("smoke/vocab.hash"), *lines = read_file("smoke/input-lines.txt");
    cr_expect(strncmp(hash, "fnv1a64:", 8) == 0 && strlen(hash) == 8 + 16 + 1, "hash file: '%s'", hash);
    cr_expect(strncmp(lines, "30522 ", 6) == 0, "wc output: '%s'", lines);
    char *vocab = read_file("smoke/vocab.txt");
    int n = 0;
    for (char *c = vocab; *c; c++) n += *c == '\n';
    cr_expect_eq(n, 600, "VOCAB_SIZE=600 on the command line gives 600 tokens, got %d", n);
    cr_expect(strncmp(vocab, "[PAD]\n", 6) == 0, "%.40s", vocab);
    free(vocab);
    free(hash);
    free(lines);
    char path[256];
    const char *files[] = {"vocab.txt", "vocab.hash", "input-lines.txt"};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/smoke/%s", dir, files[k]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/smoke", dir);
    rmdir(path);
}

/* --metrics: one "stage" line per stage and a "pipeline" line; stderr ends with a summary. */
Test(pipeline_run, metrics_and_summary)
{
    write_file("p.pipe", "[good]\nrun = true\n[bad]\nafter = good\nrun = /bin/sh -c 'exit 4'\n[later]\nafter = bad\nrun = true\n",
               0);
    char mpath[256];
    snprintf(mpath, sizeof mpath, "%s/m.jsonl", dir);
    const char *args[] = {"--metrics", mpath, pipe_path("p.pipe"), NULL};
    cr_expect_eq(run_runner(args), 1);
    char *err = read_file("err.txt");
    cr_expect(strstr(err, "\n  good   ok  "), "%s", err);
    cr_expect(strstr(err, "\n  bad    FAILED: exit status 4  "), "%s", err);
    cr_expect(strstr(err, "\n  later  not started\n"), "%s", err);
    free(err);
    char *text = read_file("m.jsonl");
    const char *want_name[] = {"good", "bad", "later"}, *want_state[] = {"ok", "failed", "not_started"};
    int want_exit[] = {0, 4, -1};
    char *save = NULL;
    int n = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        cJSON *o = cJSON_Parse(line);
        cr_assert_not_null(o, "not JSON: %s", line);
        cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "stage")->valuestring, "tb-pipeline");
        if (n < 3) {
            cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "event")->valuestring, "stage");
            cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring, want_name[n]);
            cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "state")->valuestring, want_state[n]);
            cr_expect_eq(cJSON_GetObjectItemCaseSensitive(o, "exit")->valuedouble, want_exit[n]);
        } else {
            cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "event")->valuestring, "pipeline");
            cr_expect(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "ok")));
            cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "failed")->valuestring, "bad");
        }
        cJSON_Delete(o);
    }
    cr_expect_eq(n, 4);
    free(text);
}

/* If the runner is killed outright (no chance to stop its stages), the stages get SIGTERM. */
Test(pipeline_run, stages_die_with_the_runner)
{
    write_file("p.pipe", "[orphan]\nrun = /bin/sh -c 'echo $$ > ${D}/pid; exec sleep 60'\n", 0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {pipe_path("p.pipe"), dvar, NULL};
    pid_t pid = start_runner(args);
    double t0 = now_s();
    char *txt = NULL;
    while (now_s() - t0 < 20) {
        free(txt);
        txt = read_file("pid");
        if (strchr(txt, '\n')) break;
        usleep(20000);
    }
    pid_t stage = (pid_t)atoi(txt);
    free(txt);
    cr_assert_gt(stage, 0, "the stage never started");
    kill(pid, SIGKILL);
    int code = 0;
    cr_assert_eq(tb_proc_wait(pid, 10000, &code), 0);
    t0 = now_s();
    while (alive(stage) && now_s() - t0 < 10) usleep(20000);
    cr_expect(!alive(stage), "stage %d outlived its runner", (int)stage);
}

/* Mutated pipeline texts: every one parses or fails with a message, never crashes (run under
 * ASan/UBSan in CI). */
Test(pipeline_parse, mutations_never_crash)
{
    const char *base = "[vars]\nA = x${B:-y}\nB = $${z}\n[s1]\nrun = /bin/sh -c 'echo \"${A}\" $$' \\\n  tail\n"
                       "after = \n[s2]\nafter = s1, s1\nrun = a \"b\\\"c\" 'd' e\\ f\nthreads = 2\nstdout = ${A}\n";
    size_t len = strlen(base);
    const char alphabet[] = "[]=$\\{}'\"#;:-\n \tabs12";
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char *buf = malloc(len + 64);
    cr_assert_not_null(buf);
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, base, len + 1);
        size_t n = len;
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t pos = (size_t)(x % (n ? n : 1));
            char c = alphabet[(x >> 32) % (sizeof alphabet - 1)];
            switch ((x >> 40) % 3) {
            case 0: buf[pos] = c; break;                            /* replace */
            case 1: memmove(buf + pos, buf + pos + 1, n - pos); n--; break; /* delete */
            default: memmove(buf + pos + 1, buf + pos, n - pos + 1); buf[pos] = c; n++; break; /* insert */
            }
        }
        tb_pipeline p;
        int rc = tb_pipeline_parse(&p, buf, "m", NULL, 0);
        if (rc == TB_OK) {
            ok++;
            for (int i = 0; i < p.count; i++) cr_assert(p.stages[i].argc > 0 && p.stages[i].argv[p.stages[i].argc] == NULL);
        } else {
            failed++;
            cr_assert(strlen(tb_err_msg()) > 0, "failure without a message");
        }
        tb_pipeline_free(&p);
    }
    cr_expect_gt(ok, 0);
    cr_expect_gt(failed, 0);
    free(buf);
}

/* A stage that exits but leaves a process holding its stderr: the runner does not wait for it
 * forever, and kills it. */
Test(pipeline_run, leftovers_are_killed)
{
    write_file("p.pipe", "[leaver]\nrun = /bin/sh -c 'sleep 60 & echo $! > ${D}/pid; echo bye >&2'\n", 0);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {pipe_path("p.pipe"), dvar, NULL};
    double t0 = now_s();
    int code = run_runner(args);
    double took = now_s() - t0;
    char *err = read_file("err.txt"), *txt = read_file("pid");
    cr_expect_eq(code, 0, "%s", err);
    cr_expect_lt(took, 10.0, "waited %.1f s for a leftover process", took);
    cr_expect(strstr(err, "leaver | bye"), "%s", err);
    pid_t left = (pid_t)atoi(txt);
    cr_assert_gt(left, 0);
    t0 = now_s();
    while (alive(left) && now_s() - t0 < 5) usleep(20000);
    cr_expect(!alive(left), "leftover process %d still runs", (int)left);
    free(err);
    free(txt);
}
