/* tb-distill --skip-nonfinite: a feature message whose teacher hidden state holds a NaN is skipped
 * (counted, a "skip" metrics line naming the loss term), and the student ends with the weights and
 * BertAdam moments, bit for bit, of a run on the same features without that message; without the
 * option the message stops the run naming the term, the step and the message. */
#include "test_distill.h"

#include <math.h>

typedef struct fixture {
    char dir[256], teacher[4200], student_cfg[4200], batches[4200], feats[4200];
} fixture;

static void setup(fixture *f)
{
    cr_assert_not_null(tb_proc_tmpdir(f->dir, sizeof f->dir));
    char tdir[4200];
    snprintf(tdir, sizeof tdir, "%s/teacher", f->dir);
    tb_bert_config tc = td_config(50, 32, 2, 2, 64, TB_HEAD_NONE, 0, 0);
    td_model(tdir, &tc, 3, f->teacher, sizeof f->teacher);
    tb_bert_config sc = td_config(50, 16, 1, 2, 32, TB_HEAD_NONE, 0, 0);
    snprintf(f->student_cfg, sizeof f->student_cfg, "%s/student.json", f->dir);
    cr_assert_eq(tb_config_save(f->student_cfg, &sc), TB_OK, "%s", tb_err_msg());
    snprintf(f->batches, sizeof f->batches, "%s/batches.tbs", f->dir);
    td_batches(f->batches, 6, 3, 8, 50, 2, 11);
    snprintf(f->feats, sizeof f->feats, "%s/features.msg", f->dir);
    char *eargv[] = {TD_EMIT, "--teacher", f->teacher, "--input", f->batches, "--output", f->feats,
                     "--student-layers", "1", "--threads", "1", "--progress", "none", "--log-level", "warn", NULL};
    cr_assert_eq(td_wait(td_spawn(eargv, NULL), 60000), 0, "tb-emit to a file failed");
}

/* Copies the feature file into `path`, leaving out message `drop` (-1: none) and putting a NaN
 * into teacher.hidden.2 of message `poison` (-1: none); the file stream numbers them anew. */
static void copy_features(const fixture *f, const char *path, int drop, int poison)
{
    tb_stream *in = NULL, *out = NULL;
    cr_assert_eq(tb_stream_open(&in, f->feats, TB_STREAM_READ, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_stream_open(&out, path, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    for (int k = 0;; k++) {
        tb_msg m;
        int rc = tb_stream_recv(in, &m, -1);
        if (rc == TB_EEND) break;
        cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
        if (k == poison) {
            const tb_tensor *t = NULL;
            cr_assert_eq(tb_msg_get_tensor(&m, "teacher.hidden.2", &t), TB_OK, "%s", tb_err_msg());
            cr_assert_eq(t->dtype, TB_F32);
            ((float *)t->data)[5] = NAN;
        }
        if (k != drop) cr_assert_eq(tb_stream_send(out, &m, NULL), TB_OK, "%s", tb_err_msg());
        tb_msg_free(&m);
    }
    cr_assert_eq(tb_stream_finish(out), TB_OK, "%s", tb_err_msg());
    tb_stream_close(out);
    tb_stream_close(in);
}

static int distill(const fixture *f, const char *input, const char *out, const char *err, const char *skip)
{
    char *argv[] = {TD_DISTILL, "--input", (char *)input, "--output", (char *)out, "--mode", "general", "--config",
                    (char *)f->student_cfg, "--no-dropout", "--total-steps", "5", "--lr", "1e-3", "--save-every", "2",
                    "--threads", "1", "--progress", "none", "--log-level", "warn", "--plot", "", "--skip-nonfinite",
                    (char *)skip, NULL};
    return td_wait(td_spawn(argv, err), 120000);
}

static int same(const char *a, const char *b, const char *file)
{
    char pa[4400], pb[4400];
    snprintf(pa, sizeof pa, "%s/step-5/%s", a, file);
    snprintf(pb, sizeof pb, "%s/step-5/%s", b, file);
    return td_same_file(pa, pb);
}

Test(distill_skip, a_skipped_message_leaves_no_trace, .timeout = 240)
{
    fixture f;
    setup(&f);
    char poisoned[4400], clean[4400], a[4400], b[4400], c[4400], err[4400], met[4500];
    snprintf(poisoned, sizeof poisoned, "%s/poisoned.msg", f.dir);
    snprintf(clean, sizeof clean, "%s/clean.msg", f.dir);
    snprintf(a, sizeof a, "%s/a", f.dir);
    snprintf(b, sizeof b, "%s/b", f.dir);
    snprintf(c, sizeof c, "%s/c", f.dir);
    snprintf(err, sizeof err, "%s/err", f.dir);
    copy_features(&f, poisoned, -1, 2);
    copy_features(&f, clean, 2, -1);
    cr_assert_eq(distill(&f, poisoned, a, err, "1"), 0, "the run with the skip failed");
    char *text = td_slurp(err, NULL);
    cr_expect(text && strstr(text, "step 3 (message 2): the hidden loss is nan: batch skipped"), "%s",
              text ? text : "(none)");
    free(text);
    cr_assert_eq(distill(&f, clean, b, NULL, "0"), 0, "the run without the message failed");
    cr_expect(same(a, b, TB_CKPT_MODEL), "the weights differ from those of a run without the message");
    cr_expect(same(a, b, TB_CKPT_STATE), "the moments differ from those of a run without the message");
    snprintf(met, sizeof met, "%s/metrics.jsonl", a);
    text = td_slurp(met, NULL);
    cr_assert_not_null(text);
    const char *skip = strstr(text, "\"event\":\"skip\"");
    cr_expect(skip && strstr(skip, "\"message\":2,") && strstr(skip, "hidden loss is nan"), "%s", text);
    free(text);
    /* without the option: the run stops at that message */
    cr_expect_eq(distill(&f, poisoned, c, err, "0"), 1);
    text = td_slurp(err, NULL);
    cr_expect(text && strstr(text, "step 3 (message 2): the hidden loss is nan: no update applied"), "%s",
              text ? text : "(none)");
    free(text);
    td_rmtree(f.dir);
}
