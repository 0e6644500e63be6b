/* tb-distill fed by tb-emit: one emitter, three students of different depths and widths trained
 * at once; each ends bit-identical to the same student trained alone with the same seed. */
#include "test_distill.h"

#include <criterion/criterion.h>

#define NB 4   /* batches */
#define BS 4
#define SEQ 16

typedef struct student {
    int layers, hidden;
    char cfg[4200], out[4200], id[32];
} student;

static void write_student_config(student *s, const char *dir, int i)
{
    tb_bert_config c = td_config(100, s->hidden, s->layers, 4, 2 * s->hidden, TB_HEAD_NONE, 0, 0);
    snprintf(s->cfg, sizeof s->cfg, "%s/student%d.json", dir, i);
    cr_assert_eq(tb_config_save(s->cfg, &c), TB_OK, "%s", tb_err_msg());
    snprintf(s->id, sizeof s->id, "s%d", i);
}

static pid_t start_student(const student *s, const char *ep, const char *out)
{
    char *argv[] = {TD_DISTILL, "--input", (char *)ep, "--output", (char *)out, "--mode", "general", "--config",
                    (char *)s->cfg, "--seed", "7", "--total-steps", "4", "--threads", "1", "--progress", "none",
                    "--log-level", "warn", "--plot", "", "--consumer-id", (char *)s->id, NULL};
    return td_spawn(argv, NULL);
}

static pid_t start_emitter(const char *teacher, const char *batches, const char *ep, const char *students)
{
    char *argv[] = {TD_EMIT, "--teacher", (char *)teacher, "--input", (char *)batches, "--output", (char *)ep,
                    "--students", (char *)students, "--threads", "1", "--progress", "none", "--log-level", "warn",
                    NULL};
    return td_spawn(argv, NULL);
}

Test(distill_fanout, three_students_at_once_equal_each_alone, .timeout = 240)
{
    char dir[4096], teacher[4200], batches[4200], ep[256];
    tb_proc_tmpdir(dir, sizeof dir);
    tb_bert_config tc = td_config(100, 64, 4, 4, 128, TB_HEAD_NONE, 0, 0);
    char tdir[4200];
    snprintf(tdir, sizeof tdir, "%s/teacher", dir);
    td_model(tdir, &tc, 3, teacher, sizeof teacher);
    snprintf(batches, sizeof batches, "%s/batches.msg", dir);
    td_batches(batches, NB, BS, SEQ, 100, 2, 11);

    student st[3] = {{.layers = 1, .hidden = 64}, {.layers = 2, .hidden = 128}, {.layers = 4, .hidden = 256}};
    for (int i = 0; i < 3; i++) write_student_config(&st[i], dir, i);

    /* all three at once */
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t em = start_emitter(teacher, batches, ep, "3");
    pid_t pids[3];
    for (int i = 0; i < 3; i++) {
        snprintf(st[i].out, sizeof st[i].out, "%s/together%d", dir, i);
        pids[i] = start_student(&st[i], ep, st[i].out);
    }
    for (int i = 0; i < 3; i++) cr_assert_eq(td_wait(pids[i], 120000), 0, "student %d failed", i);
    cr_assert_eq(td_wait(em, 60000), 0, "the emitter failed");

    /* each alone */
    for (int i = 0; i < 3; i++) {
        char out[4200];
        snprintf(out, sizeof out, "%s/alone%d", dir, i);
        tb_proc_ipc_endpoint(ep, sizeof ep);
        em = start_emitter(teacher, batches, ep, "1");
        pid_t p = start_student(&st[i], ep, out);
        cr_assert_eq(td_wait(p, 120000), 0, "student %d alone failed", i);
        cr_assert_eq(td_wait(em, 60000), 0, "the emitter (alone %d) failed", i);

        char a[4400], b[4400];
        snprintf(a, sizeof a, "%s/step-%d/model.safetensors", st[i].out, NB);
        snprintf(b, sizeof b, "%s/step-%d/model.safetensors", out, NB);
        cr_assert(td_same_file(a, b), "student %d (%dL/%dH): weights after training with the others differ from "
                                      "training alone (%s vs %s)", i, st[i].layers, st[i].hidden, a, b);
        /* and training changed them: the final weights differ from a fresh random student's */
        tb_bert_config sc;
        char stepdir[4400];
        snprintf(stepdir, sizeof stepdir, "%s/step-%d", st[i].out, NB);
        cr_assert_eq(tb_checkpoint_load_config(stepdir, TB_CKPT_ANY_HEAD, &sc), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(sc.fit_size, 64, "fit_dense sized to the teacher's hidden size");
        char init[4200], p0[4200];
        snprintf(init, sizeof init, "%s/init%d", dir, i);
        td_model(init, &sc, 7, p0, sizeof p0);
        char f0[4400];
        snprintf(f0, sizeof f0, "%s/model.safetensors", p0);
        cr_assert(!td_same_file(a, f0), "student %d did not change", i);
    }
    td_rmtree(dir);
}
