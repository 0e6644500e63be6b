/* Reference test: task metrics against scikit-learn (accuracy_score, f1_score pos_label=1
 * zero_division=0, matthews_corrcoef) and SciPy (pearsonr, spearmanr) on the cases that
 * tests/reference/py/taskmetrics_ref.py generates: MRPC/QQP/CoLA/MNLI/SST-2-like logits (with
 * rows whose top two logits tie), degenerate F1 and MCC, STS-B-like scores with many ties, and
 * constant gold values (NaN in SciPy, NaN here), and the real GLUE dev labels shipped in data/
 * (majority-class predictions on MRPC, SST-2, CoLA; CoLA with every fifth label flipped). Every
 * case is fed in batches of 64 through the accumulator. Tolerance 1e-10 absolute (both sides
 * compute in double; the difference is summation order). The MRPC dev majority baseline is also
 * checked against the figure published with GLUE (F1 81.2, accuracy 68.4). */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/base/error.h"
#include "tb/train/taskmetrics.h"

#include "repodata.h"

#define BATCH 64

static char tmpdir[256];
static cJSON *cases;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert(n > 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tb-taskmetrics-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    char cmd[4096];
    const char *mrpc = tb_test_data("mrpc/dev.tsv"), *sst2 = tb_test_data("sst2/dev.tsv"),
               *cola = tb_test_data("cola/dev.tsv");
    cr_assert(snprintf(cmd, sizeof cmd, "%s %s/tests/reference/py/taskmetrics_ref.py '%s' '%s' '%s' '%s'", TB_PYTHON,
                       TB_SOURCE_DIR, tmpdir, mrpc, sst2, cola) < (int)sizeof cmd);
    cr_assert_eq(system(cmd), 0, "reference script failed (needs python3-scipy and python3-sklearn, see "
                 "scripts/install-deps): %s", cmd);
    char path[512];
    snprintf(path, sizeof path, "%s/taskmetrics_cases.json", tmpdir);
    char *text = slurp(path);
    cases = cJSON_Parse(text);
    free(text);
    cr_assert(cJSON_IsArray(cases), "reference file is not a JSON array");
}

static void teardown(void)
{
    cJSON_Delete(cases);
    cases = NULL;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static const cJSON *item(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert_not_null(v, "reference case lacks '%s'", key);
    return v;
}

static tb_taskmetrics_kind kind_of(const char *name)
{
    for (int k = 0; k < TB_TM_KIND_COUNT; k++)
        if (strcmp(tb_taskmetrics_kind_name((tb_taskmetrics_kind)k), name) == 0) return (tb_taskmetrics_kind)k;
    cr_assert_fail("unknown kind '%s' in the reference file", name);
    return TB_TM_KIND_COUNT;
}

/* Feeds one case through the accumulator in batches and computes its metrics. */
static void run_case(const cJSON *c, tb_taskmetrics_result *r)
{
    const char *name = item(c, "name")->valuestring;
    const tb_taskmetrics_kind kind = kind_of(item(c, "kind")->valuestring);
    const int labels = item(c, "labels")->valueint;
    const cJSON *gold = item(c, "gold");
    const cJSON *logits = cJSON_GetObjectItemCaseSensitive(c, "logits");
    const cJSON *pred = logits ? NULL : item(c, "pred");
    const int n = cJSON_GetArraySize(gold);
    cr_assert(n > 0);

    float *fl = calloc((size_t)n * (size_t)labels, sizeof *fl), *fp = calloc((size_t)n, sizeof *fp),
          *fg = calloc((size_t)n, sizeof *fg);
    int32_t *ip = calloc((size_t)n, sizeof *ip), *ig = calloc((size_t)n, sizeof *ig);
    cr_assert(fl && fp && fg && ip && ig);
    for (int i = 0; i < n; i++) {
        const cJSON *gi = cJSON_GetArrayItem(gold, i);
        fg[i] = (float)gi->valuedouble;
        ig[i] = (int32_t)gi->valueint;
        if (logits) {
            const cJSON *row = cJSON_GetArrayItem(logits, i);
            cr_assert_eq(cJSON_GetArraySize(row), labels, "%s: logits row %d", name, i);
            for (int k = 0; k < labels; k++) fl[(size_t)i * labels + k] = (float)cJSON_GetArrayItem(row, k)->valuedouble;
        } else {
            const cJSON *pi = cJSON_GetArrayItem(pred, i);
            fp[i] = (float)pi->valuedouble;
            ip[i] = (int32_t)pi->valueint;
        }
    }

    tb_taskmetrics m;
    cr_assert_eq(tb_taskmetrics_init(&m, kind, labels), TB_OK, "%s: %s", name, tb_err_msg());
    for (int b = 0; b < n; b += BATCH) {
        const int len = n - b < BATCH ? n - b : BATCH;
        int rc;
        if (kind == TB_TM_CORR) rc = tb_taskmetrics_add_values(&m, fp + b, fg + b, len);
        else if (logits) rc = tb_taskmetrics_add_logits(&m, fl + (size_t)b * labels, ig + b, len);
        else rc = tb_taskmetrics_add_classes(&m, ip + b, ig + b, len);
        cr_assert_eq(rc, TB_OK, "%s: %s", name, tb_err_msg());
    }
    cr_assert_eq(tb_taskmetrics_compute(&m, r), TB_OK, "%s: %s", name, tb_err_msg());
    cr_expect_eq(r->examples, n, "%s: examples", name);
    tb_taskmetrics_free(&m);
    free(fl);
    free(fp);
    free(fg);
    free(ip);
    free(ig);
}

/* Checks every expected value of a case (null: NaN), and the derived acc_and_f1 / corr. */
static void check_case(const cJSON *c, const tb_taskmetrics_result *r)
{
    const char *name = item(c, "name")->valuestring;
    const cJSON *expect = item(c, "expect");
    int checked = 0;
    for (const cJSON *e = expect->child; e; e = e->next) {
        const double got = tb_taskmetrics_get(r, e->string);
        if (cJSON_IsNull(e)) {
            cr_expect(isnan(got), "%s: %s should be undefined (NaN), got %.17g", name, e->string, got);
        } else {
            cr_expect(fabs(got - e->valuedouble) <= 1e-10, "%s: %s = %.17g, reference %.17g", name, e->string, got,
                      e->valuedouble);
        }
        checked++;
    }
    cr_expect(checked >= 1, "%s: no expected values", name);
    if (r->kind == TB_TM_ACC_F1)
        cr_expect(fabs(tb_taskmetrics_get(r, "acc_and_f1") - 0.5 * (item(expect, "accuracy")->valuedouble +
                                                                      item(expect, "f1")->valuedouble)) <= 1e-10,
                  "%s: acc_and_f1", name);
    if (r->kind == TB_TM_CORR && !cJSON_IsNull(item(expect, "pearson")))
        cr_expect(fabs(tb_taskmetrics_get(r, "corr") - 0.5 * (item(expect, "pearson")->valuedouble +
                                                               item(expect, "spearman")->valuedouble)) <= 1e-10,
                  "%s: corr", name);
}

Test(taskmetrics_python, against_sklearn_and_scipy, .init = setup, .fini = teardown)
{
    int n = 0, by_kind[TB_TM_KIND_COUNT] = {0};
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        tb_taskmetrics_result r;
        run_case(c, &r);
        check_case(c, &r);
        by_kind[r.kind]++;
        n++;
    }
    cr_expect(n >= 19, "only %d reference cases", n);
    for (int k = 0; k < TB_TM_KIND_COUNT; k++)
        cr_expect(by_kind[k] >= 2, "kind %s has %d reference cases", tb_taskmetrics_kind_name((tb_taskmetrics_kind)k),
                  by_kind[k]);
}

/* Predicting the majority class (1) on MRPC dev: 279 of the 408 pairs are paraphrases
 * (data/README.md), so tp = 279, fp = 129, fn = 0: accuracy 279/408, F1 = 558/687 -
 * GLUE's published most-frequent-class baseline for MRPC, 81.2 / 68.4. */
Test(taskmetrics_python, mrpc_majority_baseline, .init = setup, .fini = teardown)
{
    const cJSON *c, *found = NULL;
    cJSON_ArrayForEach(c, cases)
    {
        if (strcmp(item(c, "name")->valuestring, "mrpc_dev_majority") == 0) found = c;
    }
    cr_assert_not_null(found, "no mrpc_dev_majority case");
    tb_taskmetrics_result r;
    run_case(found, &r);
    cr_expect_eq(r.examples, 408);
    cr_expect(fabs(tb_taskmetrics_get(&r, "accuracy") - 279.0 / 408.0) <= 1e-12, "accuracy");
    cr_expect(fabs(tb_taskmetrics_get(&r, "f1") - 558.0 / 687.0) <= 1e-12, "f1");
    cr_expect(fabs(round(1000 * tb_taskmetrics_get(&r, "f1")) / 10 - 81.2) < 1e-9, "F1 %.4f is not GLUE's 81.2",
              tb_taskmetrics_get(&r, "f1"));
    cr_expect(fabs(round(1000 * tb_taskmetrics_get(&r, "accuracy")) / 10 - 68.4) < 1e-9, "accuracy is not 68.4");
}
