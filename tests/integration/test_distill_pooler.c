/* A general student (tb-distill --mode general from --config, no head) carries bert.pooler.*:
 * N(0, initializer_range) weight and zero bias, frozen, recorded in config.json, loadable with
 * strict=True into a PyTorch module laid out as Hugging Face's BertModel (add_pooling_layer);
 * task-stage1 from it keeps that pooler. */
#include "test_distill.h"

#include "tb/store/config.h"
#include "tb/store/safetensors.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <sys/wait.h>

#define NB 4
#define BS 4
#define SEQ 16
#define HID 32

typedef struct fixture {
    char dir[4096], teacher[4200], batches[4200], cfg[4200];
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
    tb_bert_config sc = td_config(100, HID, 2, 4, 64, TB_HEAD_NONE, 0, 0);
    snprintf(f->cfg, sizeof f->cfg, "%s/student.json", f->dir);
    cr_assert_eq(tb_config_save(f->cfg, &sc), TB_OK, "%s", tb_err_msg());
}

/* tb-emit -> tb-distill with the given tb-distill arguments; returns tb-distill's exit code. */
static int distill(const fixture *f, char **args) { return td_emit_distill(f->teacher, f->batches, args); }

/* Copies f32 tensor `name` of checkpoint `ck` into a fresh buffer; its shape into shape[2], ndim. */
static float *read_tensor(const char *ck, const char *name, int64_t shape[2], int *ndim)
{
    char p[4400];
    tb_st_file f;
    snprintf(p, sizeof p, "%s/model.safetensors", ck);
    cr_assert_eq(tb_st_open(&f, p), TB_OK, "%s", tb_err_msg());
    const tb_st_entry *e = tb_st_find(&f, name);
    cr_assert(e, "%s has no %s", p, name);
    cr_assert_eq(e->dtype, TB_F32, "%s: %s is not f32", p, name);
    *ndim = e->ndim;
    shape[0] = e->shape[0];
    shape[1] = e->ndim == 2 ? e->shape[1] : 0;
    size_t n = e->end - e->begin;
    float *v = malloc(n);
    cr_assert(v);
    memcpy(v, f.data + e->begin, n);
    tb_st_close(&f);
    return v;
}

/* Exit code of tests/reference/py/hf_strict_load.py on checkpoint `ck`. */
static int strict_load(const char *ck)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "%s %s/tests/reference/py/hf_strict_load.py %s >/dev/null", TB_PYTHON, TB_SOURCE_DIR,
             ck);
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "could not run %s", cmd);
    return WEXITSTATUS(st);
}

Test(distill_pooler, general_student_has_a_frozen_pooler_that_loads_strictly, .timeout = 240)
{
    fixture f;
    setup(&f);
    char gen[4200], s1[4200], a[4400], b[4400];
    snprintf(gen, sizeof gen, "%s/general", f.dir);
    snprintf(s1, sizeof s1, "%s/stage1", f.dir);
    char *g[] = {"--mode", "general", "--config", f.cfg, "--output", gen, "--total-steps", "4", "--save-every", "2", NULL};
    cr_assert_eq(distill(&f, g), 0, "general distillation failed");
    snprintf(a, sizeof a, "%s/step-2", gen);
    snprintf(b, sizeof b, "%s/step-4", gen);

    int64_t sw[2], sb[2];
    int nw, nbias;
    float *w = read_tensor(b, "bert.pooler.dense.weight", sw, &nw);
    float *bias = read_tensor(b, "bert.pooler.dense.bias", sb, &nbias);
    cr_assert(nw == 2 && sw[0] == HID && sw[1] == HID, "pooler weight is [%lld, %lld], not [%d, %d]",
              (long long)sw[0], (long long)sw[1], HID, HID);
    cr_assert(nbias == 1 && sb[0] == HID, "pooler bias is [%lld], not [%d]", (long long)sb[0], HID);
    for (int i = 0; i < HID; i++) cr_assert_eq(bias[i], 0.0f, "pooler bias[%d] = %g, not 0", i, bias[i]);
    /* N(0, 0.2) (the fixture's initializer_range) over 1024 draws: mean within 4 standard errors
     * (4 * 0.2 / 32 = 0.025), standard deviation within 10 %. */
    double s = 0, s2 = 0;
    for (int i = 0; i < HID * HID; i++) s += w[i], s2 += (double)w[i] * w[i];
    double mean = s / (HID * HID), sd = sqrt(s2 / (HID * HID) - mean * mean);
    cr_assert(fabs(mean) < 0.025 && fabs(sd - 0.2) < 0.02, "pooler weight mean %g sd %g, not N(0, 0.2)", mean, sd);

    /* Frozen: the same bytes at step 2 and step 4 (tb-distill started it at step 0). */
    int64_t s_a[2];
    int na;
    float *wa = read_tensor(a, "bert.pooler.dense.weight", s_a, &na);
    cr_assert(memcmp(wa, w, sizeof(float) * HID * HID) == 0, "general distillation trained the pooler");
    free(wa);

    /* Recorded in config.json. */
    tb_bert_config c;
    char cfgp[4500];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", b);
    cr_assert_eq(tb_config_load(cfgp, &c), TB_OK, "%s", tb_err_msg());
    cr_assert(c.pooler == 1 && c.head == TB_HEAD_NONE, "config.json: pooler %d head %d", c.pooler, (int)c.head);

    /* Strict PyTorch load succeeds; the same loader refuses a student without a pooler. */
    cr_assert_eq(strict_load(b), 0, "strict BertModel load of the general student failed");
    char nop[4200], nop_path[4400];
    snprintf(nop, sizeof nop, "%s/nopooler", f.dir);
    tb_bert_config sc = td_config(100, HID, 2, 4, 64, TB_HEAD_NONE, 0, 64);
    td_model(nop, &sc, 5, nop_path, sizeof nop_path);
    cr_assert_neq(strict_load(nop_path), 0, "the strict loader accepted a model without a pooler");

    /* Task stage 1 from it keeps the general student's pooler (frozen in stage 1). */
    char *t1[] = {"--mode", "task-stage1", "--init", gen, "--output", s1, NULL};
    cr_assert_eq(distill(&f, t1), 0, "task-stage1 from the general student failed");
    snprintf(a, sizeof a, "%s/step-4", s1);
    float *w1 = read_tensor(a, "bert.pooler.dense.weight", s_a, &na);
    cr_assert(memcmp(w1, w, sizeof(float) * HID * HID) == 0, "stage 1 did not keep the general student's pooler");
    free(w1);
    free(w);
    free(bias);
    td_rmtree(f.dir);
}
