/* The three distillation steps chained through checkpoints, each fed by tb-emit: general ->
 * task-stage1 (initialised from the general student, head added) -> task-stage2 (from stage 1,
 * evaluated on a dev stream, best kept). Checks what each mode trains and freezes, what it keeps,
 * and a SIGTERM checkpoint that resumes. */
#include "test_distill.h"

#include "tb/store/safetensors.h"

#include <criterion/criterion.h>
#include <time.h>

#define NB 4
#define BS 4
#define SEQ 16

typedef struct fixture {
    char dir[4096], teacher[4200], batches[4200], dev[4200], cfg[4200];
} fixture;

static void setup(fixture *f)
{
    tb_proc_tmpdir(f->dir, sizeof f->dir);
    char d[4200];
    tb_bert_config tc = td_config(100, 64, 4, 4, 128, TB_HEAD_TINYBERT, 3, 0);
    snprintf(d, sizeof d, "%s/teacher", f->dir);
    td_model(d, &tc, 3, f->teacher, sizeof f->teacher);
    snprintf(f->batches, sizeof f->batches, "%s/train.msg", f->dir);
    td_batches(f->batches, NB, BS, SEQ, 100, 3, 31);
    snprintf(f->dev, sizeof f->dev, "%s/dev.msg", f->dir);
    td_batches(f->dev, 2, BS, SEQ, 100, 3, 32);
    tb_bert_config sc = td_config(100, 32, 2, 4, 64, TB_HEAD_NONE, 0, 0);
    snprintf(f->cfg, sizeof f->cfg, "%s/student.json", f->dir);
    cr_assert_eq(tb_config_save(f->cfg, &sc), TB_OK, "%s", tb_err_msg());
}

/* tb-emit -> tb-distill with the given tb-distill arguments; returns tb-distill's exit code. */
static int distill(const fixture *f, char **args) { return td_emit_distill(f->teacher, f->batches, args); }

/* 1 when tensor `name` has the same bytes in the model.safetensors of checkpoints a and b. */
static int same_tensor(const char *a, const char *b, const char *name)
{
    char p[4400];
    tb_st_file fa, fb;
    snprintf(p, sizeof p, "%s/model.safetensors", a);
    cr_assert_eq(tb_st_open(&fa, p), TB_OK, "%s", tb_err_msg());
    snprintf(p, sizeof p, "%s/model.safetensors", b);
    cr_assert_eq(tb_st_open(&fb, p), TB_OK, "%s", tb_err_msg());
    const tb_st_entry *ea = tb_st_find(&fa, name), *eb = tb_st_find(&fb, name);
    cr_assert(ea && eb, "%s missing in %s or %s", name, a, b);
    size_t na = ea->end - ea->begin, nb = eb->end - eb->begin;
    int same = na == nb && memcmp(fa.data + ea->begin, fb.data + eb->begin, na) == 0;
    tb_st_close(&fa);
    tb_st_close(&fb);
    return same;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int count_events(const char *out, const char *event)
{
    char p[4400], pat[64];
    snprintf(p, sizeof p, "%s/metrics.jsonl", out);
    snprintf(pat, sizeof pat, "\"event\":\"%s\"", event);
    char *text = td_slurp(p, NULL);
    cr_assert(text, "no %s", p);
    int n = 0;
    for (char *q = text; (q = strstr(q, pat)); q++) n++;
    free(text);
    return n;
}

Test(distill_chain, general_stage1_stage2_train_and_freeze_what_they_should, .timeout = 240)
{
    fixture f;
    setup(&f);
    char gen[4200], s1[4200], s2[4200], a[4400], b[4400];
    snprintf(gen, sizeof gen, "%s/general", f.dir);
    snprintf(s1, sizeof s1, "%s/stage1", f.dir);
    snprintf(s2, sizeof s2, "%s/stage2", f.dir);

    char *g[] = {"--mode", "general", "--config", f.cfg, "--output", gen, "--total-steps", "4", "--save-every", "2", NULL};
    cr_assert_eq(distill(&f, g), 0, "general distillation failed");
    snprintf(a, sizeof a, "%s/step-2", gen);
    snprintf(b, sizeof b, "%s/step-4", gen);
    cr_assert(exists(a) && exists(b), "general distillation keeps every interval checkpoint");
    cr_assert(!same_tensor(a, b, "bert.encoder.layer.0.attention.self.query.weight"), "general: encoder not trained");
    cr_assert(!same_tensor(a, b, "fit_dense.weight"), "general: fit_dense not trained");
    cr_assert_eq(count_events(gen, "step"), 4);

    char *t1[] = {"--mode", "task-stage1", "--init", gen, "--output", s1, "--save-every", "2", NULL};
    cr_assert_eq(distill(&f, t1), 0, "task-stage1 failed");
    snprintf(a, sizeof a, "%s/step-2", s1);
    snprintf(b, sizeof b, "%s/step-4", s1);
    cr_assert(exists(a) && exists(b), "stage 1 keeps every interval checkpoint");
    cr_assert(!same_tensor(a, b, "bert.embeddings.word_embeddings.weight"), "stage 1: embeddings not trained");
    cr_assert(!same_tensor(a, b, "fit_dense.weight"), "stage 1: fit_dense not trained");
    cr_assert(same_tensor(a, b, "bert.pooler.dense.weight"), "stage 1 must freeze the pooler");
    cr_assert(same_tensor(a, b, "classifier.weight"), "stage 1 must freeze the classifier");
    snprintf(a, sizeof a, "%s/step-4", gen);
    cr_assert(!same_tensor(a, b, "bert.encoder.layer.1.output.dense.weight"), "stage 1 did not start from general");

    char *t2[] = {"--mode", "task-stage2", "--init", s1, "--output", s2, "--total-steps", "4", "--save-every", "1",
                  "--keep", "1", "--dev", f.dev, "--eval-every", "2", "--lr", "1e-3", NULL};
    cr_assert_eq(distill(&f, t2), 0, "task-stage2 failed");
    snprintf(a, sizeof a, "%s/step-4", s1);
    snprintf(b, sizeof b, "%s/step-4", s2);
    cr_assert(exists(b), "stage 2 final checkpoint");
    for (int s = 1; s < 4; s++) {
        char p[4400];
        snprintf(p, sizeof p, "%s/step-%d", s2, s);
        cr_assert(!exists(p), "stage 2 --keep 1 should have removed %s", p);
    }
    cr_assert(same_tensor(a, b, "fit_dense.weight") && same_tensor(a, b, "fit_dense.bias"),
              "stage 2 must freeze fit_dense (and keep it in the checkpoint)");
    cr_assert(!same_tensor(a, b, "classifier.weight"), "stage 2: classifier not trained");
    cr_assert(!same_tensor(a, b, "bert.pooler.dense.weight"), "stage 2: pooler not trained");
    cr_assert_eq(count_events(s2, "eval"), 2, "stage 2 evaluates at steps 2 and 4");
    cr_assert_eq(count_events(s2, "eval\",\"step\":4,\"time"), 1);
    snprintf(a, sizeof a, "%s/metrics.jsonl", s2);
    char *text = td_slurp(a, NULL);
    cr_assert(text && strstr(text, "\"examples\":8,\"accuracy\":"), "dev accuracy over the 8 dev examples: %s",
              text ? text : "(none)");
    free(text);
    snprintf(a, sizeof a, "%s/best/latest", s2);
    cr_assert(exists(a), "stage 2 keeps the best model under best/");
    /* the evaluation of a step comes before its checkpoint, so the checkpoint holds the best so far */
    snprintf(a, sizeof a, "%s/metrics.jsonl", s2);
    text = td_slurp(a, NULL);
    char *ev = strstr(text, "\"event\":\"eval\",\"step\":4,"), *ck = strstr(text, "\"event\":\"checkpoint\",\"step\":4,");
    cr_assert(ev && ck && ev < ck, "the evaluation at step 4 is logged before the checkpoint of step 4");
    free(text);
    char target[64] = "";
    snprintf(a, sizeof a, "%s/best/latest", s2);
    ssize_t tn = readlink(a, target, sizeof target - 1);
    cr_assert_gt(tn, 5);
    target[tn] = 0;
    char want[80];
    snprintf(want, sizeof want, "\"best_step\":\t%s,", target + 5); /* "step-K", as the state file prints it */
    snprintf(a, sizeof a, "%s/step-4/training_state.json", s2);
    text = td_slurp(a, NULL);
    cr_assert(text && strstr(text, want), "step-4's state should name the best step (%s): %s", want, text ? text : "(none)");
    free(text);
    td_rmtree(f.dir);
}

/* SIGTERM: the student writes a checkpoint, exits 130, and --resume finishes the run with the
 * weights of an uninterrupted one. */
Test(distill_chain, sigterm_checkpoints_and_resumes, .timeout = 240)
{
    fixture f;
    setup(&f);
    /* a longer stream so the signal lands mid-run */
    snprintf(f.batches, sizeof f.batches, "%s/long.msg", f.dir);
    td_batches(f.batches, 80, 8, 32, 100, 3, 33);
    char ref[4200], out[4200], a[4400], b[4400], ep[256];
    snprintf(ref, sizeof ref, "%s/ref", f.dir);
    snprintf(out, sizeof out, "%s/term", f.dir);
    char *r[] = {"--mode", "general", "--config", f.cfg, "--output", ref, "--total-steps", "80", "--consumer-id", "t",
                 NULL};
    cr_assert_eq(distill(&f, r), 0, "uninterrupted run failed");

    tb_proc_ipc_endpoint(ep, sizeof ep);
    char *eargv[] = {TD_EMIT, "--teacher", f.teacher, "--input", f.batches, "--output", ep, "--students", "1",
                     "--on-student-death", "wait", "--threads", "1", "--progress", "none", "--log-level", "warn", NULL};
    pid_t em = td_spawn(eargv, NULL);
    char *argv[] = {TD_DISTILL, "--input", ep, "--mode", "general", "--config", f.cfg, "--output", out, "--total-steps",
                    "80", "--consumer-id", "t", "--threads", "1", "--progress", "none", "--log-level", "warn",
                    "--plot", "", NULL, NULL};
    pid_t st = td_spawn(argv, NULL);
    /* wait for the first step line, then SIGTERM */
    snprintf(a, sizeof a, "%s/metrics.jsonl", out);
    for (int i = 0; i < 60000; i++) {
        char *text = td_slurp(a, NULL);
        int started = text && strstr(text, "\"event\":\"step\"");
        free(text);
        if (started) break;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(st, SIGTERM);
    int code = td_wait(st, 60000);
    if (code == 0) tb_proc_reap(em);
    cr_assert_neq(code, 0, "the run finished before the signal arrived: make the stream longer");
    cr_assert_eq(code, 130, "SIGTERM: exit 130 after a checkpoint, got %d", code);
    cr_assert_eq(count_events(out, "checkpoint"), 1, "one checkpoint (reason signal)");
    argv[sizeof argv / sizeof argv[0] - 2] = "--resume";
    st = td_spawn(argv, NULL);
    cr_assert_eq(td_wait(st, 120000), 0, "resumed run failed");
    cr_assert_eq(td_wait(em, 60000), 0, "emitter failed");
    snprintf(a, sizeof a, "%s/step-80/model.safetensors", ref);
    snprintf(b, sizeof b, "%s/step-80/model.safetensors", out);
    cr_assert(td_same_file(a, b), "SIGTERM + resume differs from the uninterrupted run");
    td_rmtree(f.dir);
}
