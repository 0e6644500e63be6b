/* Integration tests: pipeline-level resume. A rerun of tb-pipeline skips the steps that are up to
 * date, reruns a step whose input, command or output changed and everything after it, and resumes
 * a training step killed (with the runner and every stage, SIGKILL) in the middle of its run: the
 * final student weights are byte for byte those of an uninterrupted run. Also: the summary table,
 * --force and --from, the state file's lock, stdout files written only on success, and --check
 * refusing two steps that write one output. */
#define _XOPEN_SOURCE 700
#include <cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "repodata.h"

#define RUNNER TB_BIN_DIR "/tb-pipeline"

static char dir[64];
static const char *io_tag = ""; /* runners write to dir/out<tag>.txt and dir/err<tag>.txt */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    unsetenv("TB_THREADS");
    unsetenv("RUN");
    unsetenv("PIPELINE_STATE");
}
static void teardown(void) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static char *path_in(const char *name)
{
    static char slots[64][512]; /* a ring: a path stays valid for the next 63 calls */
    static int next;
    char *p = slots[next++ % 64];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_in(name), "w");
    cr_assert_not_null(f, "cannot write %s", path_in(name));
    fputs(text, f);
    fclose(f);
}

/* The contents of a file (malloc'd, "" when missing). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    cr_assert_not_null(buf);
    if (f) {
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

static int count_of(const char *text, const char *what)
{
    int n = 0;
    for (const char *c = text; (c = strstr(c, what)); c += strlen(what)) n++;
    return n;
}

/* Starts tb-pipeline with args; stdout and stderr to dir/out.txt and dir/err.txt. */
static pid_t start_runner(const char **args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)RUNNER;
    for (int i = 0; args[i]; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char out[512], err[512];
    snprintf(out, sizeof out, "%s/out%s.txt", dir, io_tag);
    snprintf(err, sizeof err, "%s/err%s.txt", dir, io_tag);
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

static int run_runner(const char **args)
{
    pid_t pid = start_runner(args);
    int code = 0;
    if (tb_proc_wait(pid, 300000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("tb-pipeline did not finish within 300 s");
    }
    return code;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- skipping and rerunning, with shell steps -------------------------------------------- */

/* a copies in.txt to a.txt, b (after a) a.txt to b.txt, c writes c.txt on its stdout; each also
 * notes that it ran in runs.log (which is none of their declared inputs or outputs). */
static const char *shell_pipe = "[vars]\n"
                                "RUN = ${D}/run\n"
                                "[a]\n"
                                "inputs = ${D}/in.txt\n"
                                "outputs = ${RUN}/a.txt\n"
                                "run = /bin/sh -c 'mkdir -p ${RUN} && echo a >> ${D}/runs.log && cp ${D}/in.txt ${RUN}/a.txt'\n"
                                "[b]\n"
                                "after = a\n"
                                "inputs = ${RUN}/a.txt\n"
                                "outputs = ${RUN}/b.txt\n"
                                "run = /bin/sh -c 'echo b >> ${D}/runs.log && cp ${RUN}/a.txt ${RUN}/b.txt'\n"
                                "[c]\n"
                                "after = a\n"
                                "stdout = ${RUN}/c.txt\n"
                                "run = /bin/sh -c 'echo c >> ${D}/runs.log && echo ${WORD:-hello}'\n";

/* Runs the shell pipeline with extra arguments; returns what it appended to runs.log. */
static char *shell_run(const char *extra1, const char *extra2, int want_code)
{
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[6];
    int n = 0;
    if (extra1) args[n++] = extra1;
    args[n++] = path_in("s.pipe");
    args[n++] = dvar;
    if (extra2) args[n++] = extra2;
    args[n] = NULL;
    remove(path_in("runs.log"));
    int code = run_runner(args);
    char *err = slurp(path_in("err.txt"));
    cr_assert_eq(code, want_code, "tb-pipeline exited %d:\n%s", code, err);
    free(err);
    char *log = slurp(path_in("runs.log"));
    for (char *c = log; *c; c++)
        if (*c == '\n') *c = ' ';
    return log;
}

TestSuite(pipeline_resume, .init = setup, .fini = teardown);

Test(pipeline_resume, up_to_date_steps_are_skipped_and_changes_rerun_what_follows)
{
    write_text("s.pipe", shell_pipe);
    write_text("in.txt", "one\n");
    char *ran = shell_run(NULL, NULL, 0);
    cr_expect(strstr(ran, "a") && strstr(ran, "b") && strstr(ran, "c"), "first run: %s", ran);
    free(ran);
    char *out = slurp(path_in("run/b.txt")), *c = slurp(path_in("run/c.txt"));
    cr_expect_str_eq(out, "one\n");
    cr_expect_str_eq(c, "hello\n");
    free(out);
    free(c);
    char *state = slurp(path_in("run/pipeline-state.json"));
    cJSON *root = cJSON_Parse(state);
    cr_assert_not_null(root, "the state file is not JSON:\n%s", state);
    cJSON *b = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "steps"), "b");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(b, "status")->valuestring, "done");
    cr_expect_not_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "inputs"),
                                                        path_in("run/a.txt")), "%s", state);
    cJSON_Delete(root);
    free(state);

    /* the same command again: nothing runs */
    ran = shell_run(NULL, NULL, 0);
    cr_expect_str_eq(ran, "");
    free(ran);
    char *err = slurp(path_in("err.txt"));
    cr_expect_eq(count_of(err, ": skipped: up to date\n"), 3, "%s", err);
    cr_expect(strstr(err, "  a     skipped: up to date\n"), "the summary shows the skipped steps:\n%s", err);
    free(err);

    /* a changed input reruns its step and every step after it */
    sleep_ms(20);
    write_text("in.txt", "two\n");
    ran = shell_run(NULL, NULL, 0);
    cr_expect(strncmp(ran, "a ", 2) == 0 && strstr(ran, "b") && strstr(ran, "c") && strlen(ran) == 6,
              "after in.txt changed: %s", ran);
    free(ran);
    out = slurp(path_in("run/b.txt"));
    cr_expect_str_eq(out, "two\n");
    free(out);

    /* a missing output reruns its step only */
    cr_assert_eq(remove(path_in("run/b.txt")), 0);
    ran = shell_run(NULL, NULL, 0);
    cr_expect_str_eq(ran, "b ", "after b.txt was removed: %s", ran);
    free(ran);
    err = slurp(path_in("err.txt"));
    cr_expect(strstr(err, "b: runs (its output ") && strstr(err, "b.txt is gone)"), "%s", err);
    free(err);

    /* a changed command (a variable) reruns that step */
    ran = shell_run(NULL, "WORD=bye", 0);
    cr_expect_str_eq(ran, "c ", "after WORD changed: %s", ran);
    free(ran);
    c = slurp(path_in("run/c.txt"));
    cr_expect_str_eq(c, "bye\n");
    free(c);

    /* --from b: b and what follows it (not c); --force: everything */
    ran = shell_run("--from=b", "WORD=bye", 0);
    cr_expect_str_eq(ran, "b ", "--from b: %s", ran);
    free(ran);
    ran = shell_run("--force", "WORD=bye", 0);
    cr_expect(strstr(ran, "a") && strstr(ran, "b") && strstr(ran, "c"), "--force: %s", ran);
    free(ran);
    ran = shell_run("--from=nope", "WORD=bye", 2);
    free(ran);
    err = slurp(path_in("err.txt"));
    cr_expect(strstr(err, "--from nope") && strstr(err, "its steps: a, b, c"), "%s", err);
    free(err);

    /* --state "" turns recording off: every step runs */
    ran = shell_run("--state=", "WORD=bye", 0);
    cr_expect(strstr(ran, "a") && strstr(ran, "b") && strstr(ran, "c"), "--state '': %s", ran);
    free(ran);
}

/* A failing step's stdout file is not touched; the step is not recorded as done. */
Test(pipeline_resume, stdout_file_replaced_only_on_success)
{
    write_text("f.pipe", "[s]\nstdout = ${D}/stage.txt\nrun = /bin/sh -c 'echo new; exit ${CODE}'\n");
    write_text("stage.txt", "old\n");
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *fail[] = {"--state", path_in("state.json"), path_in("f.pipe"), dvar, "CODE=3", NULL};
    cr_expect_eq(run_runner(fail), 1);
    char *text = slurp(path_in("stage.txt"));
    cr_expect_str_eq(text, "old\n", "a failed step replaced its stdout file");
    free(text);
    cr_expect_neq(access(path_in("stage.txt.tmp"), F_OK), 0, "the temporary file was left behind");
    const char *ok[] = {"--state", path_in("state.json"), path_in("f.pipe"), dvar, "CODE=0", NULL};
    cr_expect_eq(run_runner(ok), 0);
    text = slurp(path_in("stage.txt"));
    cr_expect_str_eq(text, "new\n");
    free(text);
}

/* Two runners never share a state file. */
Test(pipeline_resume, a_second_runner_on_the_same_state_is_refused)
{
    write_text("w.pipe", "[wait]\nrun = /bin/sh -c 'touch ${D}/started; exec sleep 30'\n");
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    char state[512], pipe[512];
    snprintf(state, sizeof state, "%s", path_in("state.json"));
    snprintf(pipe, sizeof pipe, "%s", path_in("w.pipe"));
    const char *args[] = {"--state", state, pipe, dvar, NULL};
    pid_t first = start_runner(args);
    for (int i = 0; i < 2000 && access(path_in("started"), F_OK) != 0; i++) sleep_ms(5);
    cr_assert_eq(access(path_in("started"), F_OK), 0, "the first runner never started its stage");
    io_tag = "2";
    int code = run_runner(args);
    io_tag = "";
    char *err = slurp(path_in("err2.txt"));
    cr_expect_eq(code, 2, "%s", err);
    cr_expect(strstr(err, "another tb-pipeline runs with the state") && strstr(err, "state.json"), "%s", err);
    free(err);
    kill(first, SIGTERM);
    cr_expect_eq(tb_proc_wait(first, 20000, &code), 0);
    cr_expect_eq(code, 130);
}

/* ---- --check: one output, one writer ------------------------------------------------------ */

Test(pipeline_resume, check_refuses_two_steps_writing_one_output)
{
    const char *vocab = tb_test_data("vocab/bert-base-uncased-vocab.txt");
    char text[4096];
    snprintf(text, sizeof text,
             "[one]\nrun = tb-vocab --input %s --output ${D}/v.txt --vocab-size 100\n"
             "[two]\nafter = one\nrun = tb-vocab --input %s --output=${D}/./v.txt --vocab-size 200\n"
             "[three]\nstdout = ${D}/v.txt\nrun = echo x\n"
             "[train]\nrun = tb-finetune --input ${D}/b.tbm --output ${D}/model --config ${D}/c.json\n"
             "[inside]\nafter = train\noutputs = ${D}/model/extra.json\nrun = true\n",
             vocab, vocab);
    write_text("o.pipe", text);
    char dvar[128];
    snprintf(dvar, sizeof dvar, "D=%s", dir);
    const char *args[] = {"--check", path_in("o.pipe"), dvar, NULL};
    int code = run_runner(args);
    char *out = slurp(path_in("out.txt"));
    cr_expect_eq(code, 1, "%s", out);
    char want[1024];
    snprintf(want, sizeof want, "FAIL [two] %s:5: [one] and [two] both write %s/v.txt", path_in("o.pipe"), dir);
    cr_expect(strstr(out, want), "want '%s' in:\n%s", want, out);
    snprintf(want, sizeof want, "FAIL [three] %s:8: [one] and [three] both write %s/v.txt", path_in("o.pipe"), dir);
    cr_expect(strstr(out, want), "want '%s' in:\n%s", want, out);
    cr_expect(strstr(out, "[two] and [three] both write"), "%s", out);
    snprintf(want, sizeof want, "FAIL [inside] %s:14: [inside] writes %s/model/extra.json inside the checkpoint folder "
             "%s/model of [train]", path_in("o.pipe"), dir, dir);
    cr_expect(strstr(out, want), "want '%s' in:\n%s", want, out);
    cr_expect(strstr(out, "ok   [one] tb-vocab"), "the stages themselves check out:\n%s", out);
    free(out);
    /* running it is refused before anything starts */
    const char *run[] = {path_in("o.pipe"), dvar, NULL};
    code = run_runner(run);
    char *err = slurp(path_in("err.txt"));
    cr_expect_eq(code, 2, "%s", err);
    cr_expect(strstr(err, "written by two steps"), "%s", err);
    cr_expect_neq(access(path_in("v.txt"), F_OK), 0, "a step ran");
    free(err);
    /* one writer each: ok */
    snprintf(text, sizeof text,
             "[one]\nrun = tb-vocab --input %s --output ${D}/v1.txt --vocab-size 100\n"
             "[two]\nrun = tb-vocab --input %s --output ${D}/v2.txt --vocab-size 200\n",
             vocab, vocab);
    write_text("o.pipe", text);
    code = run_runner(args);
    out = slurp(path_in("out.txt"));
    cr_expect_eq(code, 0, "%s", out);
    free(out);
}

/* ---- a real flow killed in the middle of training ------------------------------------------ */

static const char *teacher_json =
    "{\"architectures\":[\"BertModel\"],\"hidden_act\":\"gelu\",\"max_position_embeddings\":64,"
    "\"type_vocab_size\":2,\"layer_norm_eps\":1e-12,\"hidden_dropout_prob\":0.1,"
    "\"attention_probs_dropout_prob\":0.1,\"initializer_range\":0.02,\"pad_token_id\":0,\"vocab_size\":400,"
    "\"model_type\":\"bert\",\"position_embedding_type\":\"absolute\",\"hidden_size\":%d,"
    "\"num_hidden_layers\":%d,\"num_attention_heads\":2,\"intermediate_size\":%d,\"tinybert_head\":\"none\","
    "\"tinybert_mlm_head\":false,\"fit_size\":%d}\n";

/* vocab -> tokenize (train and dev) -> teacher fine-tuning -> (emit | distill) -> eval. */
static const char *flow_pipe =
    "[vars]\n"
    "STEPS = 400\n"
    "[vocab]\nthreads = 1\n"
    "run = tb-vocab --input ${TSV} --format sst-2 --vocab-size 400 --output ${RUN}/vocab.txt --progress none\n"
    "[tokenize]\nafter = vocab\nthreads = 1\n"
    "run = tb-tokenize --input ${TSV} --format sst-2 --vocab ${RUN}/vocab.txt --max-seq-length 32 \\\n"
    "      --batch-size 8 --epochs 4 --output ${RUN}/train.tbm --progress none\n"
    "[tokenize-dev]\nafter = vocab\nthreads = 1\n"
    "run = tb-tokenize --input ${TSV} --format sst-2 --vocab ${RUN}/vocab.txt --max-seq-length 32 \\\n"
    "      --batch-size 64 --shuffle=false --drop-last=false --output ${RUN}/dev.tbm --progress none\n"
    "[teacher]\nafter = tokenize\nthreads = 1\n"
    "run = tb-finetune --config ${CONF}/teacher.json --vocab ${RUN}/vocab.txt --input ${RUN}/train.tbm \\\n"
    "      --max-steps 30 --output ${RUN}/teacher --progress none\n"
    "[emit]\nafter = teacher\nthreads = 1\n"
    "run = tb-emit --teacher ${RUN}/teacher --input ${RUN}/train.tbm --output ipc://${RUN}/features.ipc \\\n"
    "      --max-batches ${STEPS} --progress none\n"
    "[distill]\nafter = teacher\nthreads = 1\n"
    "run = tb-distill --mode general --config ${CONF}/student.json --input ipc://${RUN}/features.ipc \\\n"
    "      --total-steps ${STEPS} --save-every 10 --consumer-id student --output ${RUN}/student --progress none\n"
    "[eval]\nafter = teacher, tokenize-dev\nthreads = 1\n"
    "run = tb-eval --model ${RUN}/teacher --input ${RUN}/dev.tbm --json ${RUN}/eval.json --progress none\n";

static void flow_files(void)
{
    char text[2048];
    snprintf(text, sizeof text, teacher_json, 64, 4, 128, 0);
    write_text("teacher.json", text);
    snprintf(text, sizeof text, teacher_json, 32, 2, 64, 64);
    write_text("student.json", text);
    write_text("flow.pipe", flow_pipe);
}

static pid_t flow_start(const char *run)
{
    static char tsv[4200], conf[256], runvar[256];
    snprintf(tsv, sizeof tsv, "TSV=%s", tb_test_data("sst2/dev.tsv"));
    snprintf(conf, sizeof conf, "CONF=%s", dir);
    snprintf(runvar, sizeof runvar, "RUN=%s", path_in(run));
    const char *args[] = {path_in("flow.pipe"), tsv, conf, runvar, NULL};
    return start_runner(args);
}

static int flow_wait(pid_t pid)
{
    int code = 0;
    if (tb_proc_wait(pid, 300000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("tb-pipeline did not finish within 300 s");
    }
    return code;
}

/* The pids of the runner's children (its stages), from /proc. */
static int runner_children(pid_t runner, pid_t *kids, int cap)
{
    char path[128];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)runner, (int)runner);
    char *text = slurp(path);
    int n = 0;
    for (char *tok = strtok(text, " \n"); tok && n < cap; tok = strtok(NULL, " \n")) kids[n++] = (pid_t)atoi(tok);
    free(text);
    return n;
}

/* The newest checkpoint's model.safetensors of a training folder. */
static char *final_weights(const char *folder)
{
    char link[4200], target[256] = "";
    snprintf(link, sizeof link, "%s/latest", folder);
    ssize_t n = readlink(link, target, sizeof target - 1);
    cr_assert_gt(n, 0, "no %s", link);
    target[n] = '\0';
    static char out[2][4400];
    static int k;
    char *p = out[k++ % 2];
    snprintf(p, 4400, "%s/%s/model.safetensors", folder, target);
    return p;
}

static int same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static long long mtime_ns(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "no %s", path);
    return (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
}

/* The table row of `step` in a runner's stderr (static buffer). */
static const char *table_row(const char *err, const char *step)
{
    static char row[512];
    char key[64];
    snprintf(key, sizeof key, "\n  %s ", step);
    const char *at = strstr(err, "  step ");
    at = at ? strstr(at, key) : NULL;
    row[0] = '\0';
    if (at) {
        const char *end = strchr(at + 1, '\n');
        snprintf(row, sizeof row, "%.*s", (int)(end ? end - at - 1 : (long)strlen(at + 1)), at + 1);
    }
    return row;
}

Test(pipeline_resume, killed_in_the_middle_of_training_resumes_to_the_uninterrupted_weights, .timeout = 600)
{
    flow_files();
    /* the uninterrupted run */
    int code = flow_wait(flow_start("ref"));
    char *err = slurp(path_in("err.txt"));
    cr_assert_eq(code, 0, "the uninterrupted flow failed:\n%s", err);
    /* its table: the eval's accuracy and examples/s as tb-eval wrote them, the training rates */
    char *json = slurp(path_in("ref/eval.json"));
    cJSON *ev = cJSON_Parse(json);
    cr_assert_not_null(ev, "eval.json: %s", json);
    char rate[128], metric[128];
    snprintf(rate, sizeof rate, " %.1f examples/s ", cJSON_GetObjectItemCaseSensitive(ev, "examples_per_s")->valuedouble);
    snprintf(metric, sizeof metric, " accuracy %.4f", cJSON_GetObjectItemCaseSensitive(ev, "accuracy")->valuedouble);
    const char *row = table_row(err, "eval");
    cr_expect(strstr(row, rate) && strstr(row, metric), "want '%s' and '%s' in the row '%s'", rate, metric, row);
    cJSON_Delete(ev);
    free(json);
    cr_expect(strstr(table_row(err, "distill"), "ok ") && strstr(table_row(err, "distill"), " samples/s"), "%s",
              table_row(err, "distill"));
    cr_expect(strstr(table_row(err, "teacher"), " samples/s"), "%s", err);
    if (access(path_in("ref/student/loss.png"), F_OK) == 0) /* gnuplot drew it */
        cr_expect(strstr(err, "plot of distill: ") && strstr(err, "ref/student/loss.png"), "%s", err);
    free(err);

    /* the same flow, killed outright once the student has its first checkpoint */
    pid_t runner = flow_start("run");
    char latest[512];
    snprintf(latest, sizeof latest, "%s/run/student/latest", dir);
    for (int i = 0; i < 120000 && access(latest, F_OK) != 0; i++) sleep_ms(1);
    cr_assert_eq(access(latest, F_OK), 0, "the student never wrote a checkpoint");
    kill(runner, SIGSTOP); /* it cannot react to its stages dying */
    pid_t kids[16];
    int nk = runner_children(runner, kids, 16);
    cr_assert_geq(nk, 1, "no stage was running when the student had its first checkpoint");
    for (int k = 0; k < nk; k++) kill(-kids[k], SIGKILL); /* each stage is its own process group */
    kill(runner, SIGKILL);
    cr_assert_eq(tb_proc_wait(runner, 10000, &code), 0);
    cr_assert_eq(code, -SIGKILL);
    err = slurp(path_in("err.txt"));
    cr_assert(!strstr(err, "distill finished"), "the student finished before it was killed:\n%s", err);
    free(err);
    char *state = slurp(path_in("run/pipeline-state.json"));
    cJSON *root = cJSON_Parse(state);
    cr_assert_not_null(root, "%s", state);
    cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(steps, "teacher"), "status")
                         ->valuestring, "done");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(steps, "distill"), "status")
                         ->valuestring, "started");
    cJSON_Delete(root);
    free(state);
    long long teacher_before = mtime_ns(final_weights(path_in("run/teacher")));
    char first_ckpt[4400];
    snprintf(first_ckpt, sizeof first_ckpt, "%s", final_weights(path_in("run/student")));
    long long first_ckpt_before = mtime_ns(first_ckpt);

    /* the same command again */
    code = flow_wait(flow_start("run"));
    err = slurp(path_in("err.txt"));
    cr_assert_eq(code, 0, "the rerun failed:\n%s", err);
    cr_expect(strstr(err, "vocab: skipped: up to date") && strstr(err, "tokenize: skipped: up to date") &&
                  strstr(err, "teacher: skipped: up to date"), "%s", err);
    cr_expect(strstr(err, "distill: resumes from its checkpoint"), "%s", err);
    cr_expect(strstr(err, "emit: runs"), "the emitter restarts with its student:\n%s", err);
    cr_expect(!strstr(err, "started teacher"), "%s", err);
    cr_expect(strstr(table_row(err, "distill"), "ok (resumed)"), "%s", table_row(err, "distill"));
    cr_expect(strstr(table_row(err, "teacher"), "skipped: up to date"), "%s", table_row(err, "teacher"));
    free(err);
    cr_expect_eq(mtime_ns(final_weights(path_in("run/teacher"))), teacher_before, "the teacher was trained again");
    /* the student continued from its checkpoint (tb-distill says so itself), not from scratch */
    cr_expect_eq(mtime_ns(first_ckpt), first_ckpt_before, "%s was written again", first_ckpt);
    char *metrics = slurp(path_in("run/student/metrics.jsonl"));
    cr_expect_eq(count_of(metrics, "\"event\":\"start\""), 2, "%s", metrics);
    cr_expect_eq(count_of(metrics, "\"resumed\":true"), 1, "the second start is not a resumed one");
    free(metrics);
    const char *a = final_weights(path_in("ref/student")), *b = final_weights(path_in("run/student"));
    cr_expect(strstr(b, "/step-400/"), "%s", b);
    cr_expect(same_bytes(a, b), "the resumed student's weights (%s) differ from the uninterrupted run's (%s)", b, a);

    /* --from teacher: the teacher's checkpoints go aside, it trains from scratch, to the same weights */
    const char *args[] = {"--from", "teacher", path_in("flow.pipe"), NULL, NULL, NULL, NULL};
    static char tsv[4200], conf[256], runvar[256];
    snprintf(tsv, sizeof tsv, "TSV=%s", tb_test_data("sst2/dev.tsv"));
    snprintf(conf, sizeof conf, "CONF=%s", dir);
    snprintf(runvar, sizeof runvar, "RUN=%s", path_in("run"));
    args[3] = tsv;
    args[4] = conf;
    args[5] = runvar;
    code = run_runner(args);
    err = slurp(path_in("err.txt"));
    cr_assert_eq(code, 0, "--from teacher failed:\n%s", err);
    cr_expect(strstr(err, "teacher: its checkpoints of an earlier run moved to "), "%s", err);
    cr_expect(strstr(err, "vocab: skipped: up to date") && strstr(err, "eval: runs"), "%s", err);
    free(err);
    cr_expect(same_bytes(final_weights(path_in("ref/student")), final_weights(path_in("run/student"))),
              "after --from teacher the student differs from the uninterrupted run's");
}

/* A state file that is not one is an error naming it; it is left as it was. */
Test(pipeline_resume, a_broken_state_file_is_refused_and_kept)
{
    write_text("s.pipe", "[s]\nrun = true\n");
    const char *bad[] = {"{\"version\": 1, \"steps\": [", "{\"version\": 7, \"steps\": {}}", "\x01\x02", ""};
    for (int k = 0; k < 4; k++) {
        write_text("state.json", bad[k]);
        char state[512], pipe[512];
        snprintf(state, sizeof state, "%s", path_in("state.json"));
        snprintf(pipe, sizeof pipe, "%s", path_in("s.pipe"));
        const char *args[] = {"--state", state, pipe, NULL};
        int code = run_runner(args);
        char *err = slurp(path_in("err.txt"));
        cr_expect_eq(code, 2, "case %d: %s", k, err);
        cr_expect(strstr(err, "is not a version 1 state file") && strstr(err, state), "case %d: %s", k, err);
        free(err);
        char *text = slurp(state);
        cr_expect_str_eq(text, bad[k], "case %d: the state file was changed", k);
        free(text);
    }
}
