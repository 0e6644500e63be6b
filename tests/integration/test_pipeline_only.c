/* Integration tests: tb-pipeline --only (tb_pipeline_select), which the containers of
 * docker-compose.yml use to run their own steps of one pipeline file: the selection keeps the
 * named stages and their order among themselves, takes the others as done, and runs nothing else;
 * running a flow group by group gives the same files as running it whole. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/pipeline.h"
#include "proc.h"
#include "tb/base/error.h"

#define RUNNER TB_BIN_DIR "/tb-pipeline"

static char dir[64];

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    unsetenv("TB_THREADS");
}
static void teardown(void) { tb_proc_rmdir(dir); }

/* Runs tb-pipeline with args (NULL-terminated), stdout and stderr to dir/out.txt and dir/err.txt;
 * returns its exit code (at most 60 s). */
static int run_runner(const char **args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)RUNNER;
    for (int i = 0; args[i] && argc < 31; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char out[128], err[128];
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
    int code = 0;
    if (tb_proc_wait(pid, 60000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("tb-pipeline did not finish within 60 s");
    }
    return code;
}

/* The whole of dir/name as a string (NULL when it cannot be read). */
static char *slurp(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return buf;
}

static int exists(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* a -> b -> c, b -> d, e alone (stage names as in a pipeline of containers). */
static const char *graph = "[a]\nrun = true\n"
                           "[b]\nafter = a\nrun = true\n"
                           "[c]\nafter = b\nrun = true\n"
                           "[d]\nafter = a, b\nrun = true\n"
                           "[e]\nrun = true\n";

TestSuite(pipeline_only, .init = setup, .fini = teardown, .timeout = 120);

/* Kept stages in file order; `after` on a left-out stage dropped, the rest re-indexed; levels and
 * concurrency as hand-computed for the smaller graph b -> c, b -> d. */
Test(pipeline_only, select_keeps_order_and_inner_dependencies)
{
    tb_pipeline p = {0};
    cr_assert_eq(tb_pipeline_parse(&p, graph, "g.pipe", NULL, 0), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_pipeline_select(&p, "d, c,b"), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(p.count, 3);
    cr_expect_str_eq(p.stages[0].name, "b");
    cr_expect_str_eq(p.stages[1].name, "c");
    cr_expect_str_eq(p.stages[2].name, "d");
    cr_expect_eq(p.stages[0].nafter, 0, "b's after = a is dropped: a is left out");
    cr_assert_eq(p.stages[1].nafter, 1);
    cr_expect_str_eq(p.stages[1].after[0], "b");
    cr_expect_eq(p.stages[1].after_idx[0], 0);
    cr_assert_eq(p.stages[2].nafter, 1, "d keeps only b");
    cr_expect_str_eq(p.stages[2].after[0], "b");
    cr_expect_eq(p.stages[2].after_idx[0], 0);
    cr_expect_eq(p.stages[0].level, 0);
    cr_expect_eq(p.stages[1].level, 1);
    cr_expect_eq(p.stages[2].level, 1);
    cr_expect_eq(p.stages[0].concurrent, 1, "b runs alone");
    cr_expect_eq(p.stages[1].concurrent, 2, "c beside d");
    cr_expect_eq(p.stages[2].concurrent, 2, "d beside c");
    tb_pipeline_free(&p);

    cr_assert_eq(tb_pipeline_parse(&p, graph, "g.pipe", NULL, 0), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_pipeline_select(&p, "e"), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(p.count, 1);
    cr_expect_str_eq(p.stages[0].name, "e");
    cr_expect_eq(p.stages[0].concurrent, 1);
    tb_pipeline_free(&p);
}

Test(pipeline_only, unknown_or_empty_names_are_errors)
{
    tb_pipeline p = {0};
    cr_assert_eq(tb_pipeline_parse(&p, graph, "g.pipe", NULL, 0), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(tb_pipeline_select(&p, "b,x"), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "'x'") && strstr(tb_err_msg(), "g.pipe"), "%s", tb_err_msg());
    cr_expect_eq(p.count, 5, "a failed selection leaves the pipeline whole");
    cr_expect_eq(tb_pipeline_select(&p, " , "), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "at least one stage"), "%s", tb_err_msg());
    tb_pipeline_free(&p);
}

/* The runner starts the selected stages only, and an unknown name is a usage error (exit 2). */
Test(pipeline_only, runner_runs_only_the_selection)
{
    char file[128], outvar[128];
    snprintf(file, sizeof file, "%s/marks.pipe", dir);
    snprintf(outvar, sizeof outvar, "OUT=%s", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("[first]\nrun = touch ${OUT}/first\n"
          "[second]\nafter = first\nrun = touch ${OUT}/second\n"
          "[third]\nafter = second\nrun = /bin/sh -c 'test -e ${OUT}/second && touch ${OUT}/third'\n",
          f);
    fclose(f);
    const char *run[] = {"--only", "second,third", file, outvar, NULL};
    int code = run_runner(run);
    char *err = slurp("err.txt");
    cr_expect_eq(code, 0, "%s", err);
    free(err);
    cr_expect(!exists("first"), "[first] was left out and must not run");
    cr_expect(exists("second") && exists("third"), "[second] then [third] ran");
    const char *bad[] = {"--only", "fourth", file, outvar, NULL};
    code = run_runner(bad);
    err = slurp("err.txt");
    cr_expect_eq(code, 2, "%s", err);
    cr_expect(err && strstr(err, "'fourth'"), "%s", err);
    free(err);
}

/* smoke.pipe run group by group (as three containers would run it) writes the same files,
 * byte for byte, as one run of the whole file. */
Test(pipeline_only, groups_in_turn_equal_the_whole_flow)
{
    const char *file = TB_SOURCE_DIR "/pipelines/smoke.pipe";
    char whole[128], parts[128];
    snprintf(whole, sizeof whole, "OUT=%s/whole", dir);
    snprintf(parts, sizeof parts, "OUT=%s/parts", dir);
    const char *all[] = {file, whole, "VOCAB_SIZE=500", NULL};
    int code = run_runner(all);
    char *err = slurp("err.txt");
    cr_assert_eq(code, 0, "%s", err);
    free(err);
    const char *groups[] = {"prepare", "vocab,count", "hash"};
    for (int g = 0; g < 3; g++) {
        const char *one[] = {"--only", groups[g], file, parts, "VOCAB_SIZE=500", NULL};
        code = run_runner(one);
        err = slurp("err.txt");
        cr_assert_eq(code, 0, "--only %s: %s", groups[g], err);
        free(err);
    }
    const char *files[] = {"vocab.txt", "vocab.hash", "input-lines.txt"};
    char a[64], b[64];
    for (int k = 0; k < 3; k++) {
        snprintf(a, sizeof a, "whole/%s", files[k]);
        snprintf(b, sizeof b, "parts/%s", files[k]);
        char *x = slurp(a), *y = slurp(b);
        cr_assert(x && y, "%s or %s missing", a, b);
        cr_expect_str_eq(x, y, "%s differs between the whole run and the groups", files[k]);
        free(x);
        free(y);
    }
    char path[256];
    for (int k = 0; k < 3; k++)
        for (int w = 0; w < 2; w++) {
            snprintf(path, sizeof path, "%s/%s/%s", dir, w ? "parts" : "whole", files[k]);
            unlink(path);
        }
    snprintf(path, sizeof path, "%s/whole", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/parts", dir);
    rmdir(path);
}
