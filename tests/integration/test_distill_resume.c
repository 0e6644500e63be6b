/* tb-distill under failures: a student SIGKILLed mid-run and restarted with --resume ends with the
 * weights of an uninterrupted run (every batch used exactly once); a killed emitter makes the
 * students fail with a clear error; mismatched students and messages are refused clearly. */
#include "test_distill.h"

#include <criterion/criterion.h>
#include <sys/stat.h>
#include <time.h>

/* Peer timeout of the processes whose liveness is not under test: generous, so that a loaded host
 * (CI runs the sanitizer build beside others) cannot starve a heartbeat into a false death. */
#define TEST_PEER_TIMEOUT_MS "6000"

#define NB 48
#define BS 8
#define SEQ 32

typedef struct fixture {
    char dir[4096], teacher[4200], batches[4200], cfg[4200];
} fixture;

static void setup(fixture *f)
{
    tb_proc_tmpdir(f->dir, sizeof f->dir);
    char d[4200];
    tb_bert_config tc = td_config(100, 64, 4, 4, 128, TB_HEAD_NONE, 0, 0);
    snprintf(d, sizeof d, "%s/teacher", f->dir);
    td_model(d, &tc, 3, f->teacher, sizeof f->teacher);
    snprintf(f->batches, sizeof f->batches, "%s/batches.msg", f->dir);
    td_batches(f->batches, NB, BS, SEQ, 100, 2, 21);
    tb_bert_config sc = td_config(100, 128, 2, 4, 256, TB_HEAD_NONE, 0, 0);
    snprintf(f->cfg, sizeof f->cfg, "%s/student.json", f->dir);
    cr_assert_eq(tb_config_save(f->cfg, &sc), TB_OK, "%s", tb_err_msg());
}

static pid_t emitter(const fixture *f, const char *ep, const char *policy, const char *err)
{
    char *argv[] = {TD_EMIT, "--teacher", (char *)f->teacher, "--input", (char *)f->batches, "--output", (char *)ep,
                    "--students", "1", "--on-student-death", (char *)policy, "--dead-wait-ms", "60000",
                    "--peer-timeout-ms", TEST_PEER_TIMEOUT_MS, "--threads", "1", "--progress", "none", "--log-level", "warn", NULL};
    return td_spawn(argv, err);
}

static pid_t student(const fixture *f, const char *ep, const char *out, int resume, const char *err)
{
    char *argv[] = {TD_DISTILL, "--input", (char *)ep, "--output", (char *)out, "--mode", "general", "--config",
                    (char *)f->cfg, "--seed", "5", "--total-steps", "48", "--save-every", "2", "--threads", "1",
                    "--progress", "none", "--log-level", "warn", "--plot", "", "--consumer-id", "student-a",
                    "--peer-timeout-ms", TEST_PEER_TIMEOUT_MS, resume ? "--resume" : NULL, NULL};
    return td_spawn(argv, err);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Counts the lines of OUT/metrics.jsonl with "event":"step" and "seq":<seq>. */
static int step_lines(const char *out, int seq)
{
    char p[4400], pat[64];
    snprintf(p, sizeof p, "%s/metrics.jsonl", out);
    char *text = td_slurp(p, NULL);
    cr_assert(text, "no %s", p);
    snprintf(pat, sizeof pat, "\"seq\":%d,", seq);
    int n = 0;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n"))
        if (strstr(l, "\"event\":\"step\"") && strstr(l, pat)) n++;
    free(text);
    return n;
}

Test(distill_resume, sigkilled_student_resumes_to_the_uninterrupted_weights, .timeout = 240)
{
    fixture f;
    setup(&f);
    char ep[256], ref_out[4200], out[4200], a[4400], b[4400];

    /* the uninterrupted run */
    snprintf(ref_out, sizeof ref_out, "%s/ref", f.dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t em = emitter(&f, ep, "fail", NULL);
    pid_t st = student(&f, ep, ref_out, 0, NULL);
    cr_assert_eq(td_wait(st, 120000), 0, "uninterrupted student failed");
    cr_assert_eq(td_wait(em, 60000), 0, "emitter failed");

    /* killed after its checkpoint of step 4, restarted from it, against an emitter that waits */
    snprintf(out, sizeof out, "%s/killed", f.dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    em = emitter(&f, ep, "wait", NULL);
    st = student(&f, ep, out, 0, NULL);
    char step4[4400];
    snprintf(step4, sizeof step4, "%s/step-4", out);
    for (int i = 0; i < 60000 && !exists(step4); i++) sleep_ms(1);
    cr_assert(exists(step4), "the student never wrote step-4");
    kill(st, SIGKILL);
    int code = 0;
    cr_assert_eq(tb_proc_wait(st, 10000, &code), 0);
    cr_assert_eq(code, -SIGKILL, "the student was not killed mid-run (exit %d): make the run longer", code);
    char last[4400];
    snprintf(last, sizeof last, "%s/step-%d", out, NB);
    cr_assert(!exists(last), "the student had already finished when it was killed");

    st = student(&f, ep, out, 1, NULL);
    cr_assert_eq(td_wait(st, 120000), 0, "the restarted student failed");
    cr_assert_eq(td_wait(em, 60000), 0, "the emitter failed after the student came back");

    snprintf(a, sizeof a, "%s/step-%d/model.safetensors", ref_out, NB);
    snprintf(b, sizeof b, "%s/step-%d/model.safetensors", out, NB);
    cr_assert(td_same_file(a, b), "weights after kill + resume differ from the uninterrupted run");
    snprintf(a, sizeof a, "%s/step-%d/training_state.safetensors", ref_out, NB);
    snprintf(b, sizeof b, "%s/step-%d/training_state.safetensors", out, NB);
    cr_assert(td_same_file(a, b), "optimiser moments after kill + resume differ from the uninterrupted run");
    /* every batch was trained on; the uninterrupted run logged each exactly once */
    for (int s = 0; s < NB; s++) {
        cr_assert_eq(step_lines(ref_out, s), 1, "uninterrupted run: message %d logged %d times", s,
                     step_lines(ref_out, s));
        cr_assert_geq(step_lines(out, s), 1, "resumed run: message %d never trained on", s);
    }
    cr_assert_eq(step_lines(out, 0), 1, "message 0 was before the checkpoint: trained once");
    td_rmtree(f.dir);
}

/* An emitter SIGKILLed mid-run: the student fails with a clear error (no --emitter-wait-ms);
 * restarted with --resume against a new emitter, it reads from message 0, skips what its
 * checkpoint holds, and ends with the uninterrupted weights. */
Test(distill_resume, killed_emitter_fails_the_student_clearly_and_a_new_one_resumes_it, .timeout = 240)
{
    fixture f;
    setup(&f);
    char ep[256], out[4200], err[4200], ref_out[4200], a[4400], b[4400];
    snprintf(ref_out, sizeof ref_out, "%s/ref", f.dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t em0 = emitter(&f, ep, "fail", NULL);
    pid_t st0 = student(&f, ep, ref_out, 0, NULL);
    cr_assert_eq(td_wait(st0, 120000), 0, "uninterrupted student failed");
    cr_assert_eq(td_wait(em0, 60000), 0, "emitter failed");
    snprintf(out, sizeof out, "%s/out", f.dir);
    snprintf(err, sizeof err, "%s/student.err", f.dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t em = emitter(&f, ep, "fail", NULL);
    pid_t st = student(&f, ep, out, 0, err);
    char step2[4400];
    snprintf(step2, sizeof step2, "%s/step-2", out);
    for (int i = 0; i < 60000 && !exists(step2); i++) sleep_ms(1);
    cr_assert(exists(step2), "the student never wrote step-2");
    kill(em, SIGKILL);
    int code = 0;
    cr_assert_eq(tb_proc_wait(em, 10000, &code), 0);
    code = td_wait(st, 60000);
    cr_assert_eq(code, 1, "the student should fail (exit 1) when its emitter dies, got %d", code);
    char *text = td_slurp(err, NULL);
    cr_assert(text);
    cr_assert(strstr(text, "tb-distill: ") && strstr(text, "reading teacher features from"),
              "the error should say what failed: %s", text);
    free(text);
    /* its newest checkpoint holds every step it made (written on the failure when needed) */
    snprintf(a, sizeof a, "%s/metrics.jsonl", out);
    text = td_slurp(a, NULL);
    cr_assert(text);
    int steps = 0;
    for (char *q = text; (q = strstr(q, "\"event\":\"step\"")); q++) steps++;
    free(text);
    snprintf(a, sizeof a, "%s/latest", out);
    char target[256] = "";
    cr_assert_gt(readlink(a, target, sizeof target - 1), 0, "no %s", a);
    char want[64];
    snprintf(want, sizeof want, "step-%d", steps);
    cr_assert_str_eq(target, want, "the newest checkpoint is %s after %d steps", target, steps);
    /* a new emitter serves the student again from its checkpoint */
    tb_proc_ipc_endpoint(ep, sizeof ep);
    em = emitter(&f, ep, "fail", NULL);
    st = student(&f, ep, out, 1, NULL);
    cr_assert_eq(td_wait(st, 120000), 0, "the student restarted with --resume against a new emitter failed");
    cr_assert_eq(td_wait(em, 60000), 0, "the new emitter failed");
    snprintf(a, sizeof a, "%s/step-%d/model.safetensors", ref_out, NB);
    snprintf(b, sizeof b, "%s/step-%d/model.safetensors", out, NB);
    cr_assert(td_same_file(a, b), "weights after the emitter crash and resume differ from the uninterrupted run");
    td_rmtree(f.dir);
}

/* A student whose depth does not divide the teacher's, or whose head count differs, is refused
 * with a message that says what to change: by the emitter when it reads the student's hello (the
 * student gets a fatal "refused: <reason>" and fails; the emitter, left without students, fails). */
Test(distill_resume, incompatible_students_are_refused_clearly, .timeout = 120)
{
    fixture f;
    setup(&f);
    struct {
        int layers, heads;
        const char *want;
    } cases[] = {{3, 4, "multiple of the student"}, {2, 2, "heads"}};
    for (int c = 0; c < 2; c++) {
        char ep[256], out[4200], err[4200], eerr[4200], cfg[4200];
        tb_bert_config sc = td_config(100, 32, cases[c].layers, cases[c].heads, 64, TB_HEAD_NONE, 0, 0);
        snprintf(cfg, sizeof cfg, "%s/bad%d.json", f.dir, c);
        cr_assert_eq(tb_config_save(cfg, &sc), TB_OK, "%s", tb_err_msg());
        snprintf(out, sizeof out, "%s/bad%d", f.dir, c);
        snprintf(err, sizeof err, "%s/bad%d.err", f.dir, c);
        snprintf(eerr, sizeof eerr, "%s/emit%d.err", f.dir, c);
        tb_proc_ipc_endpoint(ep, sizeof ep);
        pid_t em = emitter(&f, ep, "fail", eerr);
        char *argv[] = {TD_DISTILL, "--input", ep, "--output", out, "--mode", "general", "--config", cfg,
                        "--total-steps", "4", "--threads", "1", "--progress", "none", "--log-level", "warn",
                        "--peer-timeout-ms", TEST_PEER_TIMEOUT_MS, "--recv-timeout-ms", "20000", NULL};
        pid_t st = td_spawn(argv, err);
        int code = td_wait(st, 60000);
        cr_assert_eq(code, 1, "case %d: the student should fail, got exit %d", c, code);
        code = td_wait(em, 60000);
        cr_assert_eq(code, 1, "case %d: the emitter should refuse the student, got exit %d", c, code);
        char *text = td_slurp(eerr, NULL);
        cr_assert(text && strstr(text, cases[c].want), "case %d: the emitter's error should mention '%s': %s", c,
                  cases[c].want, text ? text : "(none)");
        free(text);
        text = td_slurp(err, NULL);
        cr_assert(text && strstr(text, "tb-distill: reading teacher features from"),
                  "case %d: the student's error should say what failed: %s", c, text ? text : "(none)");
        cr_assert(strstr(text, "refused: student") && strstr(text, cases[c].want),
                  "case %d: the student should report the emitter's reason ('%s'): %s", c, cases[c].want, text);
        free(text);
    }
    td_rmtree(f.dir);
}

/* The same checks when the student reads a feature file (no emitter to refuse it): its own
 * message names the mismatch. */
Test(distill_resume, incompatible_student_of_a_feature_file_is_refused_clearly, .timeout = 120)
{
    fixture f;
    setup(&f);
    char feats[4400], out[4200], err[4200], cfg[4200];
    snprintf(feats, sizeof feats, "%s/features.msg", f.dir);
    char *eargv[] = {TD_EMIT, "--teacher", f.teacher, "--input", f.batches, "--output", feats, "--student-layers", "4",
                     "--max-batches", "1", "--threads", "1", "--progress", "none", "--log-level", "warn", NULL};
    cr_assert_eq(td_wait(td_spawn(eargv, NULL), 60000), 0, "tb-emit to a file failed");
    tb_bert_config sc = td_config(100, 32, 4, 2, 64, TB_HEAD_NONE, 0, 0);
    snprintf(cfg, sizeof cfg, "%s/heads2.json", f.dir);
    cr_assert_eq(tb_config_save(cfg, &sc), TB_OK, "%s", tb_err_msg());
    snprintf(out, sizeof out, "%s/out", f.dir);
    snprintf(err, sizeof err, "%s/student.err", f.dir);
    char *argv[] = {TD_DISTILL, "--input", feats, "--output", out, "--mode", "general", "--config", cfg,
                    "--total-steps", "1", "--threads", "1", "--progress", "none", "--log-level", "warn", NULL};
    int code = td_wait(td_spawn(argv, err), 60000);
    cr_assert_eq(code, 1, "the 2-head student should be refused, got exit %d", code);
    char *text = td_slurp(err, NULL);
    cr_assert(text && strstr(text, "heads") && strstr(text, "message 0"),
              "the error should name the message and the head counts: %s", text ? text : "(none)");
    free(text);
    td_rmtree(f.dir);
}

/* A message that lacks what the student asked for (a feature file written for another depth) is
 * refused with the missing field named. */
Test(distill_resume, message_without_the_requested_features_is_refused, .timeout = 120)
{
    fixture f;
    setup(&f);
    char feats[4400], out[4200], err[4200];
    snprintf(feats, sizeof feats, "%s/features.msg", f.dir);
    /* features for a 4-layer student only: hidden 0..4, attention of every layer */
    char *eargv[] = {TD_EMIT, "--teacher", f.teacher, "--input", f.batches, "--output", feats, "--hidden", "0,4",
                     "--attn", "3", "--max-batches", "2", "--threads", "1", "--progress", "none", "--log-level", "warn",
                     NULL};
    pid_t em = td_spawn(eargv, NULL);
    cr_assert_eq(td_wait(em, 60000), 0, "tb-emit to a file failed");
    snprintf(out, sizeof out, "%s/out", f.dir);
    snprintf(err, sizeof err, "%s/student.err", f.dir);
    /* a 2-layer student needs hidden 0, 2, 4 and attention 1, 3 */
    char *argv[] = {TD_DISTILL, "--input", feats, "--output", out, "--mode", "general", "--config", f.cfg,
                    "--total-steps", "2", "--threads", "1", "--progress", "none", "--log-level", "warn", NULL};
    int code = td_wait(td_spawn(argv, err), 60000);
    cr_assert_eq(code, 1, "the student should refuse the message, got exit %d", code);
    char *text = td_slurp(err, NULL);
    cr_assert(text && strstr(text, "message 0") && strstr(text, "teacher."),
              "the error should name the message and the missing feature: %s", text ? text : "(none)");
    free(text);
    td_rmtree(f.dir);
}

/* Features from another teacher than the student expects (its config hash) are refused. */
Test(distill_resume, features_from_an_unexpected_teacher_are_refused, .timeout = 120)
{
    fixture f;
    setup(&f);
    char feats[4400], out[4200], err[4200];
    snprintf(feats, sizeof feats, "%s/features.msg", f.dir);
    char *eargv[] = {TD_EMIT, "--teacher", f.teacher, "--input", f.batches, "--output", feats, "--student-layers", "2",
                     "--max-batches", "1", "--threads", "1", "--progress", "none", "--log-level", "warn", NULL};
    cr_assert_eq(td_wait(td_spawn(eargv, NULL), 60000), 0, "tb-emit to a file failed");
    snprintf(out, sizeof out, "%s/out", f.dir);
    snprintf(err, sizeof err, "%s/student.err", f.dir);
    char *argv[] = {TD_DISTILL, "--input", feats, "--output", out, "--mode", "general", "--config", f.cfg,
                    "--expect-config-hash", "fnv1a64:0123456789abcdef", "--total-steps", "1", "--threads", "1",
                    "--progress", "none", "--log-level", "warn", NULL};
    int code = td_wait(td_spawn(argv, err), 60000);
    cr_assert_eq(code, 1, "the student should refuse features of another teacher, got exit %d", code);
    char *text = td_slurp(err, NULL);
    cr_assert(text && strstr(text, "fnv1a64:0123456789abcdef") && strstr(text, "message 0"),
              "the error should name the message and the expected hash: %s", text ? text : "(none)");
    free(text);
    /* the same file with the right expectation trains */
    char *ok[] = {TD_DISTILL, "--input", feats, "--output", out, "--mode", "general", "--config", f.cfg,
                  "--total-steps", "1", "--threads", "1", "--progress", "none", "--log-level", "warn", "--plot", "",
                  NULL};
    cr_assert_eq(td_wait(td_spawn(ok, NULL), 60000), 0, "the student should train on the feature file");
    td_rmtree(f.dir);
}

/* --emitter-wait-ms: the emitter stops answering for longer than the student's peer timeout
 * (SIGSTOP: a hung host or a broken link), the student's stream gives up, and the student
 * reconnects (same consumer id, resume_from = its next message) until the emitter answers again;
 * it ends with the uninterrupted weights, every message trained on once. */
Test(distill_resume, student_waits_for_a_silent_emitter, .timeout = 240)
{
    fixture f;
    setup(&f);
    char ep[256], ref_out[4200], out[4200], err[4200], a[4400], b[4400];
    snprintf(ref_out, sizeof ref_out, "%s/ref", f.dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t em = emitter(&f, ep, "fail", NULL);
    pid_t st = student(&f, ep, ref_out, 0, NULL);
    cr_assert_eq(td_wait(st, 120000), 0, "uninterrupted student failed");
    cr_assert_eq(td_wait(em, 60000), 0, "emitter failed");

    snprintf(out, sizeof out, "%s/waiting", f.dir);
    snprintf(err, sizeof err, "%s/waiting.err", f.dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    em = emitter(&f, ep, "wait", NULL);
    char *argv[] = {TD_DISTILL, "--input", ep, "--output", out, "--mode", "general", "--config", f.cfg, "--seed", "5",
                    "--total-steps", "48", "--save-every", "2", "--threads", "1", "--progress", "none", "--log-level",
                    "warn", "--plot", "", "--consumer-id", "student-a", "--peer-timeout-ms", "1000",
                    "--emitter-wait-ms", "30000", NULL};
    st = td_spawn(argv, err);
    char step4[4400];
    snprintf(step4, sizeof step4, "%s/step-4", out);
    for (int i = 0; i < 60000 && !exists(step4); i++) sleep_ms(1);
    cr_assert(exists(step4), "the student never wrote step-4");
    kill(em, SIGSTOP);
    char last[4400];
    snprintf(last, sizeof last, "%s/step-%d", out, NB);
    sleep_ms(2500); /* > the student's peer timeout */
    int alive = tb_proc_wait(st, 0, NULL) != 0;
    kill(em, SIGCONT);
    cr_assert(alive, "the student should wait for the emitter, not fail");
    cr_assert_eq(td_wait(st, 120000), 0, "the student did not finish after the emitter came back");
    cr_assert_eq(td_wait(em, 60000), 0, "the emitter failed");
    char *text = td_slurp(err, NULL);
    cr_assert(text && strstr(text, "waiting up to 30000 ms"), "the student should say it waits: %s",
              text ? text : "(none)");
    free(text);
    snprintf(a, sizeof a, "%s/step-%d/model.safetensors", ref_out, NB);
    snprintf(b, sizeof b, "%s/step-%d/model.safetensors", out, NB);
    cr_assert(exists(last), "no final checkpoint");
    cr_assert(td_same_file(a, b), "weights after the outage differ from the uninterrupted run");
    for (int s = 0; s < NB; s++)
        cr_assert_eq(step_lines(out, s), 1, "message %d trained on %d times", s, step_lines(out, s));
    td_rmtree(f.dir);
}


/* --emitter-wait-ms with an emitter that is SIGKILLed and started again on the same endpoint: the
 * student reconnects, the new emitter cannot resume it beyond what it produced, so the student
 * reads from message 0 and skips what it already trained on; it ends with the uninterrupted
 * weights, every message trained on once. */
Test(distill_resume, student_waits_for_a_restarted_emitter, .timeout = 240)
{
    fixture f;
    setup(&f);
    char ep[256], ref_out[4200], out[4200], a[4400], b[4400];
    snprintf(ref_out, sizeof ref_out, "%s/ref", f.dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t em = emitter(&f, ep, "fail", NULL);
    pid_t st = student(&f, ep, ref_out, 0, NULL);
    cr_assert_eq(td_wait(st, 120000), 0, "uninterrupted student failed");
    cr_assert_eq(td_wait(em, 60000), 0, "emitter failed");

    snprintf(out, sizeof out, "%s/waiting", f.dir);
    tb_proc_ipc_endpoint(ep, sizeof ep);
    em = emitter(&f, ep, "wait", NULL);
    char *argv[] = {TD_DISTILL, "--input", ep, "--output", out, "--mode", "general", "--config", f.cfg, "--seed", "5",
                    "--total-steps", "48", "--save-every", "2", "--threads", "1", "--progress", "none", "--log-level",
                    "warn", "--plot", "", "--consumer-id", "student-a", "--peer-timeout-ms", "1000",
                    "--emitter-wait-ms", "30000", NULL};
    st = td_spawn(argv, NULL);
    char step4[4400];
    snprintf(step4, sizeof step4, "%s/step-4", out);
    for (int i = 0; i < 60000 && !exists(step4); i++) sleep_ms(1);
    cr_assert(exists(step4), "the student never wrote step-4");
    kill(em, SIGKILL);
    int code = 0;
    cr_assert_eq(tb_proc_wait(em, 10000, &code), 0);
    char last[4400];
    snprintf(last, sizeof last, "%s/step-%d", out, NB);
    cr_assert(!exists(last), "the student had already finished when the emitter was killed");
    sleep_ms(1500); /* the student notices the silence */
    em = emitter(&f, ep, "wait", NULL);
    cr_assert_eq(td_wait(st, 120000), 0, "the student did not finish with the restarted emitter");
    cr_assert_eq(td_wait(em, 60000), 0, "the restarted emitter failed");
    snprintf(a, sizeof a, "%s/step-%d/model.safetensors", ref_out, NB);
    snprintf(b, sizeof b, "%s/step-%d/model.safetensors", out, NB);
    cr_assert(td_same_file(a, b), "weights after the emitter restart differ from the uninterrupted run");
    for (int s = 0; s < NB; s++)
        cr_assert_eq(step_lines(out, s), 1, "message %d trained on %d times", s, step_lines(out, s));
    td_rmtree(f.dir);
}
