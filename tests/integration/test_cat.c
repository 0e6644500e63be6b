/* Integration tests: tb-cat on a message file and on a live stream, text and --json; and, with
 * tb-cat as students, tb-emit refusing one student (a request it cannot serve) while the other
 * receives the whole stream. */
#include "test_distill.h"

#include <cJSON.h>
#include <math.h>

#define CAT TB_BIN_DIR "/tb-cat"

static int run_to(char *const argv[], const char *out_path, const char *err_path, int timeout_ms)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (out_path && !freopen(out_path, "w", stdout)) _exit(126);
        if (err_path && !freopen(err_path, "w", stderr)) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    cr_assert_gt(pid, 0);
    return td_wait(pid, timeout_ms);
}

/* 3 batches of 2 x 4 with known values: input_ids row i, position t = 10 k + 4 i + t + 1 (k = batch),
 * mask all 1, labels {0, 1}, and one NaN in a float tensor "x" of batch 1. */
static void write_batches(const char *path)
{
    tb_stream *s = NULL;
    cr_assert_eq(tb_stream_open(&s, path, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    for (int k = 0; k < 3; k++) {
        tb_msg m;
        tb_msg_init(&m);
        tb_tensor ids, x;
        int64_t bt[2] = {2, 4}, n3[1] = {3};
        cr_assert_eq(tb_tensor_alloc(&ids, TB_I32, 2, bt), TB_OK);
        for (int i = 0; i < 8; i++) ((int32_t *)ids.data)[i] = 10 * k + i + 1;
        cr_assert_eq(tb_tensor_alloc(&x, TB_F32, 1, n3), TB_OK);
        float *xv = x.data;
        xv[0] = 1.0f, xv[1] = 2.0f, xv[2] = k == 1 ? NAN : 6.0f;
        cr_assert_eq(tb_msg_set_tensor_move(&m, "input_ids", &ids), TB_OK);
        cr_assert_eq(tb_msg_set_tensor_move(&m, "x", &x), TB_OK);
        cr_assert_eq(tb_msg_set_str(&m, "note", "hello"), TB_OK);
        cr_assert_eq(tb_msg_set_int(&m, "index", k), TB_OK);
        cr_assert_eq(tb_stream_send(s, &m, NULL), TB_OK, "%s", tb_err_msg());
        tb_msg_free(&m);
    }
    cr_assert_eq(tb_stream_finish(s), TB_OK);
    tb_stream_close(s);
}

static const cJSON *field(const cJSON *msg, const char *name)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(msg, "fields"))
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(f, "name")->valuestring, name)) return f;
    cr_assert_fail("no field %s", name);
    return NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(cJSON_IsNumber(v), "%s is not a number", key);
    return v->valuedouble;
}

Test(cat, json_of_a_message_file)
{
    char dir[256], path[512], out[512];
    tb_proc_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/b.tbm", dir);
    snprintf(out, sizeof out, "%s/out.jsonl", dir);
    write_batches(path);
    char *argv[] = {CAT, "--input", path, "--json", NULL};
    cr_assert_eq(run_to(argv, out, NULL, 30000), 0);
    char *text = td_slurp(out, NULL);
    cr_assert_not_null(text);
    char *save = NULL;
    int line = 0;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save), line++) {
        cJSON *o = cJSON_Parse(l);
        cr_assert_not_null(o, "line %d is not JSON: %s", line, l);
        if (line == 3) { /* the end line */
            cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "end")));
            cr_assert_eq(num(o, "count"), 3);
            cr_assert_eq(num(o, "tensor_bytes"), 3 * (32 + 12));
            cJSON_Delete(o);
            continue;
        }
        cr_assert_eq(num(o, "seq"), line);
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "msg")->valuestring, "batch");
        const cJSON *ids = field(o, "input_ids");
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(ids, "dtype")->valuestring, "<i4");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(ids, "shape");
        cr_assert(cJSON_GetArraySize(shape) == 2 && cJSON_GetArrayItem(shape, 0)->valueint == 2 &&
                  cJSON_GetArrayItem(shape, 1)->valueint == 4);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(ids, "stats");
        /* values 10k+1 .. 10k+8: mean 10k + 4.5, population std sqrt(63/12) = 2.29128784 */
        cr_assert_eq(num(st, "min"), 10 * line + 1);
        cr_assert_eq(num(st, "max"), 10 * line + 8);
        cr_assert_float_eq(num(st, "mean"), 10 * line + 4.5, 1e-9);
        cr_assert_float_eq(num(st, "std"), 2.29128784747792, 1e-8);
        const cJSON *xs = cJSON_GetObjectItemCaseSensitive(field(o, "x"), "stats");
        if (line == 1) { /* {1, 2, NaN}: the NaN is counted, the rest summarised */
            cr_assert_eq(num(xs, "nan"), 1);
            cr_assert_float_eq(num(xs, "mean"), 1.5, 1e-12);
            cr_assert_float_eq(num(xs, "std"), 0.5, 1e-12);
        } else {
            cr_assert_eq(num(xs, "nan"), 0);
            cr_assert_float_eq(num(xs, "mean"), 3.0, 1e-12);
        }
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(field(o, "note"), "value")->valuestring, "hello");
        cr_assert_eq(num(field(o, "index"), "value"), line);
        cJSON_Delete(o);
    }
    cr_assert_eq(line, 4);
    free(text);
    td_rmtree(dir);
}

Test(cat, text_of_a_message_file_and_max)
{
    char dir[256], path[512], out[512];
    tb_proc_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/b.tbm", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    write_batches(path);
    char *argv[] = {CAT, "--input", path, "--max", "2", NULL};
    cr_assert_eq(run_to(argv, out, NULL, 30000), 0);
    char *text = td_slurp(out, NULL);
    cr_assert(strstr(text, "message 0: 7 fields") && strstr(text, "message 1: 7 fields"), "%s", text);
    cr_assert_null(strstr(text, "message 2:"), "--max 2 printed a third message:\n%s", text);
    cr_assert(strstr(text, "input_ids                <i4    [2, 4] 32 bytes  min 1 max 8 mean 4.5"), "%s", text);
    cr_assert(strstr(text, "nan 1 inf 0"), "the NaN of batch 1 is not reported:\n%s", text);
    cr_assert(strstr(text, "stopped (--max) after 2 messages"), "%s", text);
    free(text);
    td_rmtree(dir);
}

Test(cat, bad_input_names_the_file)
{
    char dir[256], path[512], err[512];
    tb_proc_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/missing.tbm", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    char *argv[] = {CAT, "--input", path, NULL};
    cr_assert_eq(run_to(argv, "/dev/null", err, 30000), 1);
    char *text = td_slurp(err, NULL);
    cr_assert(text && strstr(text, "tb-cat: reading") && strstr(text, path), "%s", text ? text : "");
    free(text);
    td_rmtree(dir);
}

/* Live: tb-emit with two students, both tb-cat. One asks for teacher hidden state 9 of a 4-layer
 * teacher: it is refused with the reason and exits 1; the other receives all 5 feature batches and
 * the END, and the emitter succeeds. */
Test(cat, emitter_refuses_one_student_and_serves_the_other, .timeout = 180)
{
    char dir[256], teacher[512], batches[512], ep[256], out_good[512], err_bad[512], err_emit[512];
    tb_proc_tmpdir(dir, sizeof dir);
    tb_bert_config tc = td_config(50, 16, 4, 2, 32, TB_HEAD_NONE, 0, 0);
    snprintf(out_good, sizeof out_good, "%s/teacher", dir);
    td_model(out_good, &tc, 3, teacher, sizeof teacher);
    snprintf(batches, sizeof batches, "%s/batches.tbm", dir);
    td_batches(batches, 5, 2, 8, 50, 2, 1);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    snprintf(err_emit, sizeof err_emit, "%s/emit.err", dir);
    char *emit[] = {TD_EMIT, "--teacher", teacher, "--input", batches, "--output", ep, "--students", "2",
                    "--progress", "none", "--threads", "1", NULL};
    pid_t e = td_spawn(emit, err_emit);
    snprintf(out_good, sizeof out_good, "%s/good.jsonl", dir);
    snprintf(err_bad, sizeof err_bad, "%s/bad.err", dir);
    char *good[] = {CAT, "--input", ep, "--consumer-id", "good", "--hello", "features.student_layers=2", "--json",
                    "--no-stats", NULL};
    char *bad[] = {CAT, "--input", ep, "--consumer-id", "bad", "--hello", "features.hidden=3,9", NULL};
    pid_t g = fork();
    if (g == 0) {
        if (!freopen(out_good, "w", stdout)) _exit(126);
        execv(good[0], good);
        _exit(127);
    }
    int bad_code = run_to(bad, "/dev/null", err_bad, 60000);
    int good_code = td_wait(g, 60000), emit_code = td_wait(e, 60000);
    char *berr = td_slurp(err_bad, NULL), *eerr = td_slurp(err_emit, NULL), *gout = td_slurp(out_good, NULL);
    cr_assert_eq(bad_code, 1, "the refused student should fail: %s", berr ? berr : "");
    cr_assert(berr && strstr(berr, "refused: student 'bad'") && strstr(berr, "the teacher has 0..4"),
              "the refused student should say why: %s", berr ? berr : "");
    cr_assert_eq(good_code, 0, "the good student should get everything");
    cr_assert(gout && strstr(gout, "{\"end\":true,\"count\":5,"), "the good student's output: %s", gout ? gout : "");
    cr_assert(strstr(gout, "teacher.hidden.4") && !strstr(gout, "teacher.hidden.3\""), "%s", gout);
    cr_assert_eq(emit_code, 0, "the emitter should finish with the other student: %s", eerr ? eerr : "");
    free(berr);
    free(eerr);
    free(gout);
    td_rmtree(dir);
}

/* tb-pipeline --check accepts tb-cat reading any stage's output (its input kind is "*"). */
Test(cat, pipeline_check_accepts_tb_cat_on_any_stream)
{
    char dir[256], pipe[512], err[512];
    tb_proc_tmpdir(dir, sizeof dir);
    snprintf(pipe, sizeof pipe, "%s/look.pipe", dir);
    FILE *f = fopen(pipe, "w");
    cr_assert_not_null(f);
    fprintf(f, "[tok]\nrun = tb-tokenize --input %s/data/sst2/dev.tsv --format sst-2 --vocab "
               "%s/data/vocab/bert-base-uncased-vocab.txt --output ipc://%s/t.ipc --consumers 1\n\n"
               "[cat]\nrun = tb-cat --input ipc://%s/t.ipc --json\n",
            TB_SOURCE_DIR, TB_SOURCE_DIR, dir, dir);
    fclose(f);
    snprintf(err, sizeof err, "%s/check.out", dir);
    char *argv[] = {TB_BIN_DIR "/tb-pipeline", "--check", pipe, NULL};
    int code = run_to(argv, err, NULL, 60000);
    char *text = td_slurp(err, NULL);
    cr_assert_eq(code, 0, "tb-pipeline --check failed:\n%s", text ? text : "");
    cr_assert(text && strstr(text, "ok   [cat] tb-cat"), "%s", text ? text : "");
    free(text);
    td_rmtree(dir);
}
