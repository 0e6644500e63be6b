/* tb-distill fed by tb-emit over ipc:// against a float64 PyTorch implementation of the TinyBERT
 * losses (tests/reference/py/distill_ref.py recomputes teacher and student from their checkpoints):
 * losses and every trainable parameter's gradient within a relative error of 1e-4, frozen
 * parameters absent. Also measures what fp16 feature transport does to the losses. */
#include "../integration/test_distill.h"

#include "tb/store/safetensors.h"

#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>

#define VOCAB 60
#define B 3
#define T 8

typedef struct fixture {
    char dir[4096], teacher[4200], student[4200], batches[4200];
} fixture;

static void setup_models_labels(fixture *f, int student_layers, int num_labels)
{
    tb_proc_tmpdir(f->dir, sizeof f->dir);
    char d[4200];
    tb_bert_config tc = td_config(VOCAB, 32, 4, 4, 64, TB_HEAD_TINYBERT, num_labels, 0);
    snprintf(d, sizeof d, "%s/teacher", f->dir);
    td_model(d, &tc, 5, f->teacher, sizeof f->teacher);
    tb_bert_config sc = td_config(VOCAB, 16, student_layers, 4, 32, TB_HEAD_TINYBERT, num_labels, 32);
    snprintf(d, sizeof d, "%s/student", f->dir);
    td_model(d, &sc, 9, f->student, sizeof f->student);
    snprintf(f->batches, sizeof f->batches, "%s/batch.msg", f->dir);
    td_batches(f->batches, 1, B, T, VOCAB, num_labels, 4);
}

static void setup_models(fixture *f, int student_layers)
{
    setup_models_labels(f, student_layers, 3);
}

/* tb-emit --output ipc://... | tb-distill --check CHECK; returns tb-distill's exit code. */
static int run_check(const fixture *f, const char *mode, const char *dtype, const char *check, const char *extra)
{
    char ep[256];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    char *eargv[] = {TD_EMIT, "--teacher", (char *)f->teacher, "--input", (char *)f->batches, "--output", ep,
                     "--students", "1", "--feature-dtype", (char *)dtype, "--threads", "1", "--progress", "none",
                     "--log-level", "warn", NULL};
    pid_t em = td_spawn(eargv, NULL);
    char *dargv[] = {TD_DISTILL, "--input", ep, "--init", (char *)f->student, "--mode", (char *)mode, "--check",
                     (char *)check, "--no-dropout", "--threads", "1", "--log-level", "warn", "--progress", "none",
                     (char *)extra, extra ? "2" : NULL, NULL};
    pid_t st = td_spawn(dargv, NULL);
    int code = td_wait(st, 60000);
    cr_assert_eq(td_wait(em, 60000), 0, "tb-emit failed");
    return code;
}

static double json_num(const char *path, const char *key)
{
    char *text = td_slurp(path, NULL);
    cr_assert(text, "cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s is not JSON", path);
    const cJSON *v = cJSON_GetObjectItem(j, key);
    cr_assert(cJSON_IsNumber(v), "%s has no number \"%s\"", path, key);
    double x = v->valuedouble;
    cJSON_Delete(j);
    free(text);
    return x;
}

static double ref_scalar(const tb_st_file *ref, const char *name)
{
    const tb_st_entry *e = tb_st_find(ref, name);
    cr_assert(e && e->dtype == TB_F64, "reference has no f64 %s", name);
    double x;
    cr_assert_eq(tb_st_read(ref, e, &x, sizeof x), TB_OK, "%s", tb_err_msg());
    return x;
}

static void check_loss(const char *losses, const tb_st_file *ref, const char *key)
{
    char name[64];
    snprintf(name, sizeof name, "loss.%s", key);
    double got = json_num(losses, key), want = ref_scalar(ref, name);
    cr_assert(fabs(got - want) <= 1e-4 * fabs(want) + 1e-12, "loss %s: tb-distill %.9g, torch %.9g (rel %.3g)", key,
              got, want, fabs(got - want) / fabs(want));
}

/* Compares every grad/<name> tb-distill wrote with the reference; returns how many. Parameters
 * named in `frozen` must be absent. */
static int check_grads(const char *check_dir, const char *const *frozen)
{
    char p[4400];
    tb_st_file got, ref;
    snprintf(p, sizeof p, "%s/grads.safetensors", check_dir);
    cr_assert_eq(tb_st_open(&got, p), TB_OK, "%s", tb_err_msg());
    snprintf(p, sizeof p, "%s/ref.safetensors", check_dir);
    cr_assert_eq(tb_st_open(&ref, p), TB_OK, "%s", tb_err_msg());
    /* the largest reference gradient: the scale of tensors whose true gradient is 0 (the key bias
     * in stage 2: softmax does not see a per-row constant) */
    double global = 0;
    for (int i = 0; i < ref.count; i++) {
        tb_tensor b;
        if (strncmp(ref.entries[i].name, "grad/", 5)) continue;
        cr_assert_eq(tb_st_read_tensor(&ref, &ref.entries[i], &b), TB_OK, "%s", tb_err_msg());
        for (int64_t k = 0; k < tb_tensor_numel(&b); k++) global = fmax(global, fabs(((const double *)b.data)[k]));
        tb_tensor_free(&b);
    }
    cr_assert(global > 0, "every reference gradient is zero");
    int n = 0, zero = 0;
    for (int i = 0; i < got.count; i++) {
        const tb_st_entry *e = &got.entries[i];
        if (strncmp(e->name, "grad/", 5)) continue;
        const tb_st_entry *r = tb_st_find(&ref, e->name);
        cr_assert(r, "the reference has no %s", e->name);
        tb_tensor a, b;
        cr_assert_eq(tb_st_read_tensor(&got, e, &a), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(tb_st_read_tensor(&ref, r, &b), TB_OK, "%s", tb_err_msg());
        cr_assert(a.dtype == TB_F32 && b.dtype == TB_F64, "%s: dtypes", e->name);
        cr_assert_eq(tb_tensor_numel(&a), tb_tensor_numel(&b), "%s: sizes differ", e->name);
        const float *x = a.data;
        const double *y = b.data;
        double maxd = 0, maxr = 0;
        for (int64_t k = 0; k < tb_tensor_numel(&a); k++) {
            maxd = fmax(maxd, fabs((double)x[k] - y[k]));
            maxr = fmax(maxr, fabs(y[k]));
        }
        if (maxr <= 1e-9 * global) {
            zero++;
            cr_assert(maxd <= 1e-6 * global, "%s: torch's gradient is 0, tb-distill's reaches %.3g (largest gradient %.3g)",
                      e->name, maxd, global);
        } else {
            cr_assert(maxd <= 1e-4 * maxr, "%s: max |tb-distill - torch| %.3g vs max |torch| %.3g (rel %.3g)", e->name,
                  maxd, maxr, maxd / maxr);
        }
        tb_tensor_free(&a);
        tb_tensor_free(&b);
        n++;
    }
    for (int i = 0; frozen && frozen[i]; i++) {
        snprintf(p, sizeof p, "grad/%s", frozen[i]);
        cr_assert_null(tb_st_find(&got, p), "%s is frozen in this mode but tb-distill wrote a gradient for it", p);
    }
    tb_st_close(&got);
    tb_st_close(&ref);
    cr_assert(zero <= 4, "%d tensors have a zero gradient: the comparison proves little", zero);
    return n;
}

static void run_reference(const fixture *f, const char *check)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s %s/tests/reference/py/distill_ref.py %s %s %s", TB_PYTHON, TB_SOURCE_DIR,
             f->teacher, f->student, check);
    cr_assert_eq(system(cmd), 0, "distill_ref.py failed: %s", cmd);
}

Test(distill_torch, stage1_losses_and_gradients_match_torch, .timeout = 180)
{
    fixture f;
    setup_models(&f, 2); /* 4-layer teacher, 2-layer student: k = 2 */
    char check[4400], losses[4500], ref_path[4500];
    snprintf(check, sizeof check, "%s/check-s1", f.dir);
    cr_assert_eq(run_check(&f, "task-stage1", "f32", check, "--att-weight"), 0, "tb-distill --check failed");
    run_reference(&f, check);
    snprintf(losses, sizeof losses, "%s/losses.json", check);
    snprintf(ref_path, sizeof ref_path, "%s/ref.safetensors", check);
    tb_st_file ref;
    cr_assert_eq(tb_st_open(&ref, ref_path), TB_OK, "%s", tb_err_msg());
    check_loss(losses, &ref, "att");
    check_loss(losses, &ref, "hidden");
    check_loss(losses, &ref, "emb");
    /* the total is weighted: 2 * att + hidden */
    double got = json_num(losses, "loss"), want = ref_scalar(&ref, "loss.total");
    cr_assert(fabs(got - want) <= 1e-4 * fabs(want), "weighted total %.9g vs torch %.9g", got, want);
    tb_st_close(&ref);
    static const char *const frozen[] = {"bert.pooler.dense.weight", "classifier.weight", NULL};
    int n = check_grads(check, frozen);
    cr_assert_eq(n, 5 + 2 * 16 + 2, "trainable tensors compared: %d (embeddings, 2 layers, fit_dense)", n);
    td_rmtree(f.dir);
}

Test(distill_torch, stage2_losses_and_gradients_match_torch, .timeout = 180)
{
    fixture f;
    setup_models(&f, 2);
    char check[4400], losses[4500], ref_path[4500];
    snprintf(check, sizeof check, "%s/check-s2", f.dir);
    cr_assert_eq(run_check(&f, "task-stage2", "f32", check, "--temperature"), 0, "tb-distill --check failed");
    run_reference(&f, check);
    snprintf(losses, sizeof losses, "%s/losses.json", check);
    snprintf(ref_path, sizeof ref_path, "%s/ref.safetensors", check);
    tb_st_file ref;
    cr_assert_eq(tb_st_open(&ref, ref_path), TB_OK, "%s", tb_err_msg());
    check_loss(losses, &ref, "pred");
    tb_st_close(&ref);
    static const char *const frozen[] = {"fit_dense.weight", "fit_dense.bias", NULL};
    int n = check_grads(check, frozen);
    cr_assert_eq(n, 5 + 2 * 16 + 4, "trainable tensors compared: %d (embeddings, 2 layers, pooler, classifier)", n);
    td_rmtree(f.dir);
}

/* Regression (one output): stage 2 is the MSE of the student's output against the gold value. */
Test(distill_torch, stage2_regression_matches_torch, .timeout = 180)
{
    fixture f;
    setup_models_labels(&f, 2, 1);
    char check[4400], losses[4500], ref_path[4500];
    snprintf(check, sizeof check, "%s/check-reg", f.dir);
    cr_assert_eq(run_check(&f, "task-stage2", "f32", check, "--pred-weight"), 0, "tb-distill --check failed");
    run_reference(&f, check);
    snprintf(losses, sizeof losses, "%s/losses.json", check);
    snprintf(ref_path, sizeof ref_path, "%s/ref.safetensors", check);
    tb_st_file ref;
    cr_assert_eq(tb_st_open(&ref, ref_path), TB_OK, "%s", tb_err_msg());
    check_loss(losses, &ref, "pred");
    double got = json_num(losses, "loss"), want = ref_scalar(&ref, "loss.total");
    cr_assert(fabs(got - want) <= 1e-4 * fabs(want), "weighted total %.9g vs torch %.9g", got, want);
    tb_st_close(&ref);
    static const char *const frozen[] = {"fit_dense.weight", NULL};
    check_grads(check, frozen);
    td_rmtree(f.dir);
}

/* fp16 transport: the same step with <f2 features; the losses move by what rounding the teacher's
 * features to half precision costs (reported), and stay close to fp32. */
Test(distill_torch, fp16_features_change_the_losses_little, .timeout = 180)
{
    fixture f;
    setup_models(&f, 1); /* 4-layer teacher, 1-layer student: k = 4 */
    const char *modes[2] = {"task-stage1", "task-stage2"};
    const char *keys[2][3] = {{"att", "hidden", "emb"}, {"pred", NULL, NULL}};
    for (int m = 0; m < 2; m++) {
        char c32[4400], c16[4400], l32[4500], l16[4500];
        snprintf(c32, sizeof c32, "%s/f32-%d", f.dir, m);
        snprintf(c16, sizeof c16, "%s/f16-%d", f.dir, m);
        cr_assert_eq(run_check(&f, modes[m], "f32", c32, NULL), 0);
        cr_assert_eq(run_check(&f, modes[m], "f16", c16, NULL), 0);
        snprintf(l32, sizeof l32, "%s/losses.json", c32);
        snprintf(l16, sizeof l16, "%s/losses.json", c16);
        for (int k = 0; k < 3 && keys[m][k]; k++) {
            double a = json_num(l32, keys[m][k]), b = json_num(l16, keys[m][k]);
            double rel = fabs(a - b) / fabs(a);
            cr_log_info("fp16 transport, %s %s loss: f32 %.9g, f16 %.9g, relative change %.3g", modes[m], keys[m][k],
                        a, b, rel);
            fprintf(stderr, "fp16 transport, %s %s loss: f32 %.9g, f16 %.9g, relative change %.3g\n", modes[m],
                    keys[m][k], a, b, rel);
            cr_assert(a != b || !strcmp(keys[m][k], "emb"), "%s: f16 transport changed nothing - were the features "
                                                             "really sent as <f2?", keys[m][k]);
            cr_assert(rel < 1e-2, "%s %s: fp16 features change the loss by %.3g (relative)", modes[m], keys[m][k], rel);
        }
    }
    td_rmtree(f.dir);
}
