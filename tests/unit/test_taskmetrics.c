/* Unit tests: GLUE task metrics against values worked out by hand (confusion matrices and ranks
 * in the comments), degenerate cases, bad input, and the table / JSON / metrics-field output. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tb/base/error.h"
#include "tb/train/taskmetrics.h"

#define N_OF(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

static void expect_near(double got, double want, const char *what)
{
    cr_expect(fabs(got - want) <= 1e-12 * fmax(1.0, fabs(want)), "%s: got %.17g, want %.17g", what, got, want);
}

static tb_taskmetrics_result run_classes(tb_taskmetrics_kind kind, int labels, const int32_t *pred,
                                         const int32_t *gold, int64_t n)
{
    tb_taskmetrics m;
    tb_taskmetrics_result r;
    cr_assert_eq(tb_taskmetrics_init(&m, kind, labels), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_taskmetrics_add_classes(&m, pred, gold, n), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK, "%s", tb_err_msg());
    tb_taskmetrics_free(&m);
    return r;
}

static tb_taskmetrics_result run_values(const float *pred, const float *gold, int64_t n)
{
    tb_taskmetrics m;
    tb_taskmetrics_result r;
    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_CORR, 1), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_taskmetrics_add_values(&m, pred, gold, n), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK, "%s", tb_err_msg());
    tb_taskmetrics_free(&m);
    return r;
}

/* Binary case used below. Per example (gold, pred):
 *   (1,1) (1,1) (1,0) (1,1) (0,0) (0,1) (0,0) (0,0) (1,1) (0,1)
 * tp = 4 (ex 0,1,3,8), fn = 1 (ex 2), fp = 2 (ex 5,9), tn = 3 (ex 4,6,7).
 * accuracy = (4 + 3) / 10 = 0.7
 * F1 = 2 tp / (2 tp + fp + fn) = 8 / 11  (precision 4/6, recall 4/5: 2 (2/3)(4/5) / (2/3 + 4/5) = 8/11)
 * MCC = (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (12 - 2) / sqrt(6*5*5*4) = 1/sqrt(6) */
static const int32_t BIN_GOLD[10] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 0};
static const int32_t BIN_PRED[10] = {1, 1, 0, 1, 0, 1, 0, 0, 1, 1};

Test(taskmetrics, binary_accuracy_f1_by_hand)
{
    tb_taskmetrics_result r = run_classes(TB_TM_ACC_F1, 2, BIN_PRED, BIN_GOLD, 10);
    cr_expect_eq(r.examples, 10);
    cr_expect_eq(r.n_values, 3);
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 0.7, "accuracy");
    expect_near(tb_taskmetrics_get(&r, "f1"), 8.0 / 11.0, "f1");
    expect_near(tb_taskmetrics_get(&r, "acc_and_f1"), 0.5 * (0.7 + 8.0 / 11.0), "acc_and_f1");
    const char *name = NULL;
    expect_near(tb_taskmetrics_main(&r, &name), 0.5 * (0.7 + 8.0 / 11.0), "main");
    cr_expect_str_eq(name, "acc_and_f1");
    cr_expect(isnan(tb_taskmetrics_get(&r, "mcc")), "a value the kind does not report is NaN");
}

Test(taskmetrics, binary_mcc_by_hand)
{
    tb_taskmetrics_result r = run_classes(TB_TM_MCC, 2, BIN_PRED, BIN_GOLD, 10);
    expect_near(tb_taskmetrics_get(&r, "mcc"), 1.0 / sqrt(6.0), "mcc");
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 0.7, "accuracy");
    const char *name = NULL;
    expect_near(tb_taskmetrics_main(&r, &name), 1.0 / sqrt(6.0), "main");
    cr_expect_str_eq(name, "mcc");
}

/* Three classes (MNLI-like). Confusion matrix, rows gold, columns predicted:
 *          p0 p1 p2
 *   g0  [  3  1  0 ]   t0 = 4
 *   g1  [  1  2  1 ]   t1 = 4
 *   g2  [  0  0  4 ]   t2 = 4
 *   p_k =  4  3  5,  s = 12, correct c = 9
 * accuracy = 9/12 = 0.75
 * MCC = (c s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))
 *     = (108 - (16 + 12 + 20)) / sqrt((144 - 50)(144 - 48)) = 60 / sqrt(94 * 96) */
static void three_class_case(int32_t *pred, int32_t *gold)
{
    static const int cm[3][3] = {{3, 1, 0}, {1, 2, 1}, {0, 0, 4}};
    int n = 0;
    for (int g = 0; g < 3; g++)
        for (int p = 0; p < 3; p++)
            for (int k = 0; k < cm[g][p]; k++) {
                gold[n] = g;
                pred[n] = p;
                n++;
            }
    cr_assert_eq(n, 12);
}

Test(taskmetrics, three_classes_by_hand)
{
    int32_t pred[12], gold[12];
    three_class_case(pred, gold);
    tb_taskmetrics_result r = run_classes(TB_TM_ACCURACY, 3, pred, gold, 12);
    cr_expect_eq(r.n_values, 1);
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 0.75, "accuracy");
    r = run_classes(TB_TM_MCC, 3, pred, gold, 12);
    expect_near(tb_taskmetrics_get(&r, "mcc"), 60.0 / sqrt(94.0 * 96.0), "mcc 3 classes");
}

Test(taskmetrics, perfect_and_inverted)
{
    const int32_t g[6] = {0, 1, 1, 0, 1, 0}, inv[6] = {1, 0, 0, 1, 0, 1};
    tb_taskmetrics_result r = run_classes(TB_TM_MCC, 2, g, g, 6);
    expect_near(tb_taskmetrics_get(&r, "mcc"), 1.0, "perfect mcc");
    r = run_classes(TB_TM_MCC, 2, inv, g, 6);
    expect_near(tb_taskmetrics_get(&r, "mcc"), -1.0, "inverted mcc");
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 0.0, "inverted accuracy");
    r = run_classes(TB_TM_ACC_F1, 2, g, g, 6);
    expect_near(tb_taskmetrics_get(&r, "f1"), 1.0, "perfect f1");
    r = run_classes(TB_TM_ACC_F1, 2, inv, g, 6);
    expect_near(tb_taskmetrics_get(&r, "f1"), 0.0, "inverted f1 (tp = 0)");
}

/* Degenerate MCC: the denominator is 0 when predictions or labels are constant -> 0 (sklearn). */
Test(taskmetrics, degenerate_mcc_is_zero)
{
    const int32_t g[5] = {0, 1, 1, 0, 1}, zeros[5] = {0}, ones[5] = {1, 1, 1, 1, 1};
    tb_taskmetrics_result r = run_classes(TB_TM_MCC, 2, zeros, g, 5); /* constant predictions */
    cr_expect_eq(tb_taskmetrics_get(&r, "mcc"), 0.0);
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 0.4, "accuracy");
    r = run_classes(TB_TM_MCC, 2, g, ones, 5); /* constant labels */
    cr_expect_eq(tb_taskmetrics_get(&r, "mcc"), 0.0);
    r = run_classes(TB_TM_MCC, 2, ones, ones, 5); /* both constant, all correct: still 0 */
    cr_expect_eq(tb_taskmetrics_get(&r, "mcc"), 0.0);
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 1.0, "accuracy");
    int32_t one = 1;
    r = run_classes(TB_TM_MCC, 3, &one, &one, 1); /* one example */
    cr_expect_eq(tb_taskmetrics_get(&r, "mcc"), 0.0);
}

/* Degenerate F1 (zero_division = 0):
 *   nothing positive, predicted or gold: tp = fp = fn = 0 -> 0 (accuracy 1)
 *   positives in gold, none predicted:  tp = 0, fn = 2 -> 0
 *   everything predicted positive, gold {1,0,0,1}: tp = 2, fp = 2, fn = 0 -> 4 / 6 */
Test(taskmetrics, degenerate_f1)
{
    const int32_t zeros[4] = {0}, ones[4] = {1, 1, 1, 1}, g[4] = {1, 0, 0, 1};
    tb_taskmetrics_result r = run_classes(TB_TM_ACC_F1, 2, zeros, zeros, 4);
    cr_expect_eq(tb_taskmetrics_get(&r, "f1"), 0.0);
    cr_expect_eq(tb_taskmetrics_get(&r, "accuracy"), 1.0);
    expect_near(tb_taskmetrics_get(&r, "acc_and_f1"), 0.5, "acc_and_f1");
    r = run_classes(TB_TM_ACC_F1, 2, zeros, g, 4);
    cr_expect_eq(tb_taskmetrics_get(&r, "f1"), 0.0);
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 0.5, "accuracy");
    r = run_classes(TB_TM_ACC_F1, 2, ones, g, 4);
    expect_near(tb_taskmetrics_get(&r, "f1"), 4.0 / 6.0, "f1 all positive");
}

/* Ties for Spearman: x = {1, 2, 2, 3, 4}, y = {2, 1, 3, 3, 5}
 * ranks x = {1, 2.5, 2.5, 4, 5}, ranks y = {2, 1, 3.5, 3.5, 5}, both with mean 3:
 *   dx = {-2, -0.5, -0.5, 1, 2}, dy = {-1, -2, 0.5, 0.5, 2}
 *   sum dx dy = 2 + 1 - 0.25 + 0.5 + 4 = 7.25, sum dx^2 = sum dy^2 = 9.5  -> spearman = 7.25 / 9.5
 * Pearson of x, y: means 2.4 and 2.8, dx = {-1.4, -0.4, -0.4, 0.6, 1.6}, dy = {-0.8, -1.8, 0.2, 0.2, 2.2}
 *   sum dx dy = 1.12 + 0.72 - 0.08 + 0.12 + 3.52 = 5.4, sum dx^2 = 5.2, sum dy^2 = 8.8
 *   -> pearson = 5.4 / sqrt(45.76) */
Test(taskmetrics, spearman_with_ties_by_hand)
{
    const float x[5] = {1, 2, 2, 3, 4}, y[5] = {2, 1, 3, 3, 5};
    tb_taskmetrics_result r = run_values(x, y, 5);
    expect_near(tb_taskmetrics_get(&r, "spearman"), 7.25 / 9.5, "spearman");
    expect_near(tb_taskmetrics_get(&r, "pearson"), 5.4 / sqrt(45.76), "pearson");
    expect_near(tb_taskmetrics_get(&r, "corr"), 0.5 * (7.25 / 9.5 + 5.4 / sqrt(45.76)), "corr");
    const char *name = NULL;
    tb_taskmetrics_main(&r, &name);
    cr_expect_str_eq(name, "corr");
    /* the same pairs in another order give the same values (ranks go back to the right rows) */
    const float xs[5] = {3, 2, 4, 1, 2}, ys[5] = {3, 3, 5, 2, 1};
    tb_taskmetrics_result s = run_values(xs, ys, 5);
    expect_near(tb_taskmetrics_get(&s, "spearman"), 7.25 / 9.5, "spearman shuffled");
    expect_near(tb_taskmetrics_get(&s, "pearson"), 5.4 / sqrt(45.76), "pearson shuffled");
}

/* A tie group of three and a monotone but non-linear relation:
 *   x = {0, 1, 2, 3}, y = {0, 1, 8, 27} (y = x^3): spearman = 1 exactly, pearson < 1.
 *   x = {5, 5, 5, 1}, y = {1, 2, 3, 0}: ranks x = {3, 3, 3, 1}, ranks y = {2, 3, 4, 1}, means 2.5:
 *   dx = {.5, .5, .5, -1.5}, dy = {-.5, .5, 1.5, -1.5}: sum dx dy = -.25 + .25 + .75 + 2.25 = 3,
 *   sum dx^2 = 3, sum dy^2 = 5 -> spearman = 3 / sqrt(15) */
Test(taskmetrics, spearman_monotone_and_triple_tie)
{
    const float x[4] = {0, 1, 2, 3}, y[4] = {0, 1, 8, 27};
    tb_taskmetrics_result r = run_values(x, y, 4);
    cr_expect_eq(tb_taskmetrics_get(&r, "spearman"), 1.0);
    /* pearson by hand: means 1.5 and 9; dx = {-1.5,-.5,.5,1.5}, dy = {-9,-8,-1,18}
     * sum dx dy = 13.5 + 4 - .5 + 27 = 44, sum dx^2 = 5, sum dy^2 = 81+64+1+324 = 470 */
    expect_near(tb_taskmetrics_get(&r, "pearson"), 44.0 / sqrt(5.0 * 470.0), "pearson");
    const float a[4] = {5, 5, 5, 1}, b[4] = {1, 2, 3, 0};
    r = run_values(a, b, 4);
    expect_near(tb_taskmetrics_get(&r, "spearman"), 3.0 / sqrt(15.0), "spearman triple tie");
}

Test(taskmetrics, constant_regression_is_null)
{
    const float x[4] = {1, 2, 3, 4}, c[4] = {2.5f, 2.5f, 2.5f, 2.5f};
    tb_taskmetrics_result r = run_values(x, c, 4); /* constant labels */
    cr_expect(isnan(tb_taskmetrics_get(&r, "pearson")));
    cr_expect(isnan(tb_taskmetrics_get(&r, "spearman")));
    cr_expect(isnan(tb_taskmetrics_get(&r, "corr")));
    r = run_values(c, x, 4); /* constant predictions */
    cr_expect(isnan(tb_taskmetrics_get(&r, "pearson")));
    r = run_values(x, x, 1); /* one example */
    cr_expect(isnan(tb_taskmetrics_get(&r, "spearman")));
    char *json = NULL;
    r = run_values(x, c, 4);
    cr_assert_eq(tb_taskmetrics_format_json(&r, &json), TB_OK, "%s", tb_err_msg());
    cr_expect_str_eq(json, "{\"examples\":4,\"pearson\":null,\"spearman\":null,\"corr\":null,\"main\":\"corr\","
                           "\"nonfinite\":{\"pearson\":\"nan\",\"spearman\":\"nan\",\"corr\":\"nan\"}}");
    free(json);
    char *table = NULL;
    cr_assert_eq(tb_taskmetrics_format_table(&r, NULL, &table), TB_OK, "%s", tb_err_msg());
    cr_expect_str_eq(table, "metric      value\npearson     n/a\nspearman    n/a\ncorr        n/a *\nexamples    4\n");
    free(table);
}

Test(taskmetrics, empty_is_an_error)
{
    tb_taskmetrics m;
    tb_taskmetrics_result r;
    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_ACCURACY, 2), TB_OK);
    cr_expect_eq(tb_taskmetrics_add_classes(&m, NULL, NULL, 0), TB_OK, "adding 0 examples is fine");
    cr_expect_eq(tb_taskmetrics_compute(&m, &r), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "no examples") != NULL, "message: %s", tb_err_msg());
    tb_taskmetrics_free(&m);
    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_CORR, 1), TB_OK);
    cr_expect_eq(tb_taskmetrics_compute(&m, &r), TB_EINVAL);
    tb_taskmetrics_free(&m);
    /* a zeroed (never initialised) accumulator is refused, not read */
    memset(&m, 0, sizeof m);
    cr_expect_eq(tb_taskmetrics_compute(&m, &r), TB_EINVAL);
    int32_t one = 1;
    cr_expect_eq(tb_taskmetrics_add_classes(&m, &one, &one, 1), TB_EINVAL);
}

/* Argmax: ties go to the lowest class id. Logits and gold (3 classes):
 *   {0.5, 0.5, 0.1} -> 0 (gold 0, correct)     {1, 3, 3} -> 1 (gold 2, wrong)
 *   {-1, -2, -0.5}  -> 2 (gold 2, correct)      {2, 2, 2} -> 0 (gold 1, wrong)  accuracy 2/4 */
Test(taskmetrics, logits_argmax_ties_go_low)
{
    const float logits[12] = {0.5f, 0.5f, 0.1f, 1, 3, 3, -1, -2, -0.5f, 2, 2, 2};
    const int32_t gold[4] = {0, 2, 2, 1};
    tb_taskmetrics m;
    tb_taskmetrics_result r;
    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_MCC, 3), TB_OK);
    cr_assert_eq(tb_taskmetrics_add_logits(&m, logits, gold, 4), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK);
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 0.5, "accuracy");
    /* pred = {0,1,2,0}, gold = {0,2,2,1}: p = {2,1,1}, t = {1,1,2}, c = 2, s = 4
     * MCC = (8 - (2 + 1 + 2)) / sqrt((16 - 6)(16 - 6)) = 3 / 10 */
    expect_near(tb_taskmetrics_get(&r, "mcc"), 0.3, "mcc");
    tb_taskmetrics_free(&m);
}

Test(taskmetrics, batches_accumulate_and_reset)
{
    tb_taskmetrics m;
    tb_taskmetrics_result r;
    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_ACC_F1, 2), TB_OK);
    cr_assert_eq(tb_taskmetrics_add_classes(&m, BIN_PRED, BIN_GOLD, 3), TB_OK);
    cr_assert_eq(tb_taskmetrics_add_classes(&m, BIN_PRED + 3, BIN_GOLD + 3, 7), TB_OK);
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK);
    expect_near(tb_taskmetrics_get(&r, "f1"), 8.0 / 11.0, "f1 over two batches");
    tb_taskmetrics_reset(&m);
    cr_expect_eq(tb_taskmetrics_compute(&m, &r), TB_EINVAL, "reset forgets every example");
    cr_assert_eq(tb_taskmetrics_add_classes(&m, BIN_GOLD, BIN_GOLD, 10), TB_OK);
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK);
    cr_expect_eq(tb_taskmetrics_get(&r, "accuracy"), 1.0);
    cr_expect_eq(r.examples, 10);
    tb_taskmetrics_free(&m);

    /* regression over many batches (growing storage): y = 2x + 1 exactly -> pearson = spearman = 1 */
    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_CORR, 1), TB_OK);
    for (int b = 0; b < 30; b++) {
        float x[100], y[100];
        for (int i = 0; i < 100; i++) {
            x[i] = (float)((b * 37 + i * 11) % 3000);
            y[i] = 2 * x[i] + 1;
        }
        cr_assert_eq(tb_taskmetrics_add_values(&m, x, y, 100), TB_OK, "%s", tb_err_msg());
    }
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK);
    cr_expect_eq(r.examples, 3000);
    expect_near(tb_taskmetrics_get(&r, "pearson"), 1.0, "pearson of a line");
    expect_near(tb_taskmetrics_get(&r, "spearman"), 1.0, "spearman of a line");
    tb_taskmetrics_free(&m);
}

Test(taskmetrics, batch_tensors)
{
    tb_taskmetrics m;
    tb_taskmetrics_result r;
    float logits[8] = {0.1f, 0.9f, 0.8f, 0.2f, 0.3f, 0.7f, 0.6f, 0.4f}; /* pred {1,0,1,0} */
    int32_t gold32[4] = {1, 0, 0, 0};
    int64_t gold64[4] = {1, 0, 0, 0};
    tb_tensor tl, t32, t64;
    cr_assert_eq(tb_tensor_borrow(&tl, TB_F32, 2, (const int64_t[]){4, 2}, logits), TB_OK);
    cr_assert_eq(tb_tensor_borrow(&t32, TB_I32, 1, (const int64_t[]){4}, gold32), TB_OK);
    cr_assert_eq(tb_tensor_borrow(&t64, TB_I64, 1, (const int64_t[]){4}, gold64), TB_OK);
    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_ACC_F1, 2), TB_OK);
    cr_assert_eq(tb_taskmetrics_add_batch(&m, &tl, &t32), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_taskmetrics_add_batch(&m, &tl, &t64), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK);
    /* per batch: tp 1, fp 1, tn 2, fn 0 -> accuracy 3/4, f1 = 2 / (2 + 1) */
    expect_near(tb_taskmetrics_get(&r, "accuracy"), 0.75, "accuracy");
    expect_near(tb_taskmetrics_get(&r, "f1"), 2.0 / 3.0, "f1");
    cr_expect_eq(r.examples, 8);
    /* wrong shapes and dtypes */
    tb_tensor bad;
    cr_assert_eq(tb_tensor_borrow(&bad, TB_F32, 2, (const int64_t[]){2, 4}, logits), TB_OK);
    cr_expect_eq(tb_taskmetrics_add_batch(&m, &bad, &t32), TB_ESHAPE);
    cr_assert_eq(tb_tensor_borrow(&bad, TB_F32, 1, (const int64_t[]){4}, logits), TB_OK);
    cr_expect_eq(tb_taskmetrics_add_batch(&m, &tl, &bad), TB_ESHAPE, "float labels for classification");
    cr_expect_eq(tb_taskmetrics_add_batch(&m, &tl, NULL), TB_EINVAL);
    gold64[2] = 7;
    cr_expect_eq(tb_taskmetrics_add_batch(&m, &tl, &t64), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "example 2") != NULL, "message: %s", tb_err_msg());
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK);
    cr_expect_eq(r.examples, 8, "a refused batch adds nothing");
    tb_taskmetrics_free(&m);

    /* regression: outputs [B, 1] or [B], labels f32 [B] */
    float out[4] = {1, 2, 3, 4}, tgt[4] = {1, 3, 2, 4};
    tb_tensor to, tt;
    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_CORR, 1), TB_OK);
    cr_assert_eq(tb_tensor_borrow(&to, TB_F32, 2, (const int64_t[]){4, 1}, out), TB_OK);
    cr_assert_eq(tb_tensor_borrow(&tt, TB_F32, 1, (const int64_t[]){4}, tgt), TB_OK);
    cr_assert_eq(tb_taskmetrics_add_batch(&m, &to, &tt), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_tensor_borrow(&to, TB_F32, 1, (const int64_t[]){4}, out), TB_OK);
    cr_assert_eq(tb_taskmetrics_add_batch(&m, &to, &tt), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(tb_taskmetrics_add_batch(&m, &to, &t32), TB_ESHAPE, "int labels for regression");
    cr_assert_eq(tb_taskmetrics_compute(&m, &r), TB_OK);
    /* pairs (1,1) (2,3) (3,2) (4,4) twice: x ranks {1.5,3.5,5.5,7.5} twice, y ranks {1.5,5.5,3.5,7.5} twice;
     * dx = {-3,-1,1,3}, dy = {-3,1,-1,3} (each twice): sum dx dy = 2 (9 - 1 - 1 + 9) = 32,
     * sum dx^2 = sum dy^2 = 2 * 20 = 40 -> spearman 0.8; pearson (values, same pattern) also 0.8 */
    expect_near(tb_taskmetrics_get(&r, "spearman"), 0.8, "spearman");
    expect_near(tb_taskmetrics_get(&r, "pearson"), 0.8, "pearson");
    tb_taskmetrics_free(&m);
}

Test(taskmetrics, bad_input_is_refused)
{
    tb_taskmetrics m;
    cr_expect_eq(tb_taskmetrics_init(&m, TB_TM_ACC_F1, 3), TB_EINVAL, "F1 needs 2 labels");
    cr_expect(strstr(tb_err_msg(), "2 labels") != NULL, "message: %s", tb_err_msg());
    tb_taskmetrics_free(&m);
    cr_expect_eq(tb_taskmetrics_init(&m, TB_TM_ACCURACY, 1), TB_EINVAL);
    tb_taskmetrics_free(&m);
    cr_expect_eq(tb_taskmetrics_init(&m, TB_TM_ACCURACY, TB_TM_MAX_LABELS + 1), TB_EINVAL);
    tb_taskmetrics_free(&m);
    cr_expect_eq(tb_taskmetrics_init(&m, TB_TM_CORR, 2), TB_EINVAL);
    tb_taskmetrics_free(&m);
    cr_expect_eq(tb_taskmetrics_init(&m, (tb_taskmetrics_kind)42, 2), TB_EINVAL);
    tb_taskmetrics_free(&m);

    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_ACCURACY, 2), TB_OK);
    const int32_t ok[3] = {0, 1, 0}, neg[3] = {0, -1, 0}, big[3] = {0, 1, 2};
    cr_expect_eq(tb_taskmetrics_add_classes(&m, ok, neg, 3), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "gold label of example 1 is -1") != NULL, "message: %s", tb_err_msg());
    cr_expect_eq(tb_taskmetrics_add_classes(&m, big, ok, 3), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "predicted class of example 2 is 2") != NULL, "message: %s", tb_err_msg());
    cr_expect_eq(tb_taskmetrics_add_classes(&m, ok, ok, -1), TB_EINVAL);
    cr_expect_eq(tb_taskmetrics_add_classes(&m, NULL, ok, 3), TB_EINVAL);
    const float nan_logits[6] = {0, 1, NAN, 0, 1, 0};
    cr_expect_eq(tb_taskmetrics_add_logits(&m, nan_logits, ok, 3), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "logit [1, 0]") != NULL, "message: %s", tb_err_msg());
    const float vals[3] = {1, 2, 3};
    cr_expect_eq(tb_taskmetrics_add_values(&m, vals, vals, 3), TB_EINVAL, "values into a classifier");
    tb_taskmetrics_result r;
    cr_expect_eq(tb_taskmetrics_compute(&m, &r), TB_EINVAL, "refused batches add nothing");
    tb_taskmetrics_free(&m);

    cr_assert_eq(tb_taskmetrics_init(&m, TB_TM_CORR, 1), TB_OK);
    const float inf[3] = {1, INFINITY, 3};
    cr_expect_eq(tb_taskmetrics_add_values(&m, inf, vals, 3), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "prediction of example 1") != NULL, "message: %s", tb_err_msg());
    cr_expect_eq(tb_taskmetrics_add_values(&m, vals, inf, 3), TB_EINVAL);
    cr_expect_eq(tb_taskmetrics_add_classes(&m, ok, ok, 3), TB_EINVAL, "classes into a regression");
    tb_taskmetrics_free(&m);
}

Test(taskmetrics, kinds_of_tasks)
{
    tb_taskmetrics_kind k;
    cr_expect_eq(tb_taskmetrics_kind_for_task(TB_TASK_COLA, &k), TB_OK);
    cr_expect_eq(k, TB_TM_MCC);
    cr_expect_eq(tb_taskmetrics_kind_for_task(TB_TASK_MRPC, &k), TB_OK);
    cr_expect_eq(k, TB_TM_ACC_F1);
    cr_expect_eq(tb_taskmetrics_kind_for_task(TB_TASK_QQP, &k), TB_OK);
    cr_expect_eq(k, TB_TM_ACC_F1);
    cr_expect_eq(tb_taskmetrics_kind_for_task(TB_TASK_STSB, &k), TB_OK);
    cr_expect_eq(k, TB_TM_CORR);
    cr_expect_eq(tb_taskmetrics_kind_for_task(TB_TASK_MNLI, &k), TB_OK);
    cr_expect_eq(k, TB_TM_ACCURACY);
    cr_expect_eq(tb_taskmetrics_kind_for_task(TB_TASK_SST2, &k), TB_OK);
    cr_expect_eq(k, TB_TM_ACCURACY);
    cr_expect_eq(tb_taskmetrics_kind_for_task(TB_TASK_CORPUS, &k), TB_EINVAL);
    cr_expect_str_eq(tb_taskmetrics_kind_name(TB_TM_CORR), "corr");
    cr_expect_null(tb_taskmetrics_kind_name(TB_TM_KIND_COUNT));
}

Test(taskmetrics, table_json_and_fields)
{
    tb_taskmetrics_result r = run_classes(TB_TM_ACC_F1, 2, BIN_PRED, BIN_GOLD, 10);
    char *table = NULL, *json = NULL;
    cr_assert_eq(tb_taskmetrics_format_table(&r, "mrpc dev", &table), TB_OK, "%s", tb_err_msg());
    /* 8/11 = 0.72727..., (0.7 + 8/11)/2 = 0.71363... */
    cr_expect_str_eq(table, "mrpc dev\nmetric      value\naccuracy    0.7000\nf1          0.7273\n"
                            "acc_and_f1  0.7136 *\nexamples    10\n");
    cr_assert_eq(tb_taskmetrics_format_json(&r, &json), TB_OK, "%s", tb_err_msg());
    cr_expect_str_eq(json, "{\"examples\":10,\"accuracy\":0.7,\"f1\":0.727272727,\"acc_and_f1\":0.713636364,"
                           "\"main\":\"acc_and_f1\"}");
    cJSON *o = cJSON_Parse(json);
    cr_assert_not_null(o, "not JSON: %s", json);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(o, "examples")->valuedouble, 10.0);
    cJSON_Delete(o);
    free(table);
    free(json);

    tb_metric f[TB_TM_MAX_FIELDS];
    int n = 0;
    cr_assert_eq(tb_taskmetrics_fields(&r, f, TB_TM_MAX_FIELDS, &n), TB_OK);
    cr_expect_eq(n, 5);
    cr_expect_str_eq(f[4].key, "main");
    cr_expect_str_eq(f[4].s, "acc_and_f1");
    cr_expect_str_eq(f[0].key, "examples");
    cr_expect_eq(f[0].i, 10);
    cr_expect_str_eq(f[2].key, "f1");
    expect_near(f[2].f, 8.0 / 11.0, "field f1");
    char *line = NULL;
    cr_assert_eq(tb_metrics_format("tb-eval", "eval", 100, 0.0, f, n, &line), TB_OK, "%s", tb_err_msg());
    cr_expect(strstr(line, "\"f1\":0.727272727,\"acc_and_f1\":0.713636364,\"main\":\"acc_and_f1\"}") != NULL,
              "line: %s", line);
    free(line);
    cr_expect_eq(tb_taskmetrics_fields(&r, f, 4, &n), TB_EINVAL, "too little room");

    tb_taskmetrics_result empty;
    memset(&empty, 0, sizeof empty);
    cr_expect_eq(tb_taskmetrics_format_table(&empty, NULL, &table), TB_EINVAL);
    cr_expect_eq(tb_taskmetrics_format_json(&empty, &json), TB_EINVAL);
}
