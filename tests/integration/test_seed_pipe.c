/* Integration test of pipelines/seed.pipe: the whole four-step flow on seed data at a tiny size
 * (two steps per training stage, sequences of 32), through tb-pipeline as a user runs it, with
 * TRAIN and DEV given on the command line. TRAIN starts with lines 9086-9090 of the seed's
 * train.txt, whose line 9088 (line 3 here) is a continuation fragment without a label: every
 * reader runs with --lenient, skips it and says where it was. DEV's label counts (the majority
 * baseline) are counted here from the file. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "proc.h"
#include "repodata.h"

#define RUNNER TB_BIN_DIR "/tb-pipeline"
#define PIPE TB_SOURCE_DIR "/pipelines/seed.pipe"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    return b;
}

Test(seed_pipe, check_passes)
{
    char d[256];
    tb_proc_tmpdir(d, sizeof d);
    cr_assert_eq(tb_proc_sh(RUNNER " --check " PIPE " RUN=%s/run > %s/out.txt 2>&1", d, d), 0, "tb-pipeline --check failed");
    tb_proc_sh("rm -rf %s", d);
}

Test(seed_pipe, tiny_flow_end_to_end_with_lenient_readers, .timeout = 900)
{
    char d[256], p[512];
    tb_proc_tmpdir(d, sizeof d);
    cr_assert_eq(tb_proc_sh("sed -n 9086,9090p '%s' > %s/train.txt && head -n 400 '%s' >> %s/train.txt",
                    tb_test_data("seed/train.txt"), d, tb_test_data("seed/train-3000.txt"), d),
                 0);
    cr_assert_eq(tb_proc_sh("head -n 100 '%s' > %s/dev.txt", tb_test_data("seed/eval-1000.txt"), d), 0);
    int code = tb_proc_sh("nice -n 5 " RUNNER " " PIPE " RUN=%s/run TRAIN=%s/train.txt DEV=%s/dev.txt SEQ=32 PRETRAIN_STEPS=2 "
                  "GENERAL_STEPS=2 FINETUNE_STEPS=2 TASK_STEPS=2 AUGMENT_ROWS=5 AUGMENT_N=1 > %s/out.txt 2> %s/err.txt",
                  d, d, d, d, d);
    snprintf(p, sizeof p, "%s/err.txt", d);
    char *err = slurp(p);
    cr_assert_eq(code, 0, "the flow failed:\n%s", err);

    /* the malformed line, named by tb-vocab / tb-tokenize (each skipped line, then the count and
     * the first line) and tb-augment (file:line of the subset it augments) */
    char want[600];
    snprintf(want, sizeof want, "%s/train.txt: skipped 1 malformed rows (first at line 3)", d);
    cr_assert(strstr(err, want), "no '%s' in:\n%s", want, err);
    snprintf(want, sizeof want, "skipped (lenient): %s/train.txt:3: label 'X", d);
    cr_assert(strstr(err, want), "no '%s' in:\n%s", want, err);
    /* the label is quoted in whole characters: 40 bytes of this one end inside one */
    cr_assert(strstr(err, "\xe7\x8e\x8b...' (last field) is not an integer"), "%s", err);
    snprintf(want, sizeof want, "skipped (--lenient): %s/run/train-head.txt:3:", d);
    cr_assert(strstr(err, want), "no '%s' in:\n%s", want, err);
    free(err);

    /* evaluation: teacher and student on DEV */
    snprintf(p, sizeof p, "%s/run/eval.json", d);
    char *ev = slurp(p);
    int models = 0;
    for (const char *s = ev; (s = strstr(s, "\"accuracy\":")); s++) models++;
    cr_assert_eq(models, 2, "eval.json: %s", ev);
    free(ev);

    /* the label counts of DEV, counted here */
    snprintf(p, sizeof p, "%s/dev.txt", d);
    char *dev = slurp(p);
    int n0 = 0, n1 = 0;
    for (char *line = dev; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        const char *tab = strrchr(line, '\t');
        cr_assert(tab);
        if (strcmp(tab + 1, "0") == 0) n0++;
        if (strcmp(tab + 1, "1") == 0) n1++;
        if (!nl) break;
        line = nl + 1;
    }
    free(dev);
    cr_assert_eq(n0 + n1, 100);
    snprintf(p, sizeof p, "%s/run/dev-labels.txt", d);
    char *labels = slurp(p);
    int c1 = 0, c2 = 0;
    char l1[8], l2[8];
    cr_assert_eq(sscanf(labels, "%d %7s %d %7s", &c1, l1, &c2, l2), 4, "%s", labels);
    cr_assert_eq(c1, n0 > n1 ? n0 : n1, "%s", labels);
    cr_assert_str_eq(l1, n0 > n1 ? "0" : "1", "%s", labels);
    cr_assert_eq(c2, n0 > n1 ? n1 : n0, "%s", labels);
    free(labels);

    /* the augmented training set: the 5 head lines' 4 good rows, each with at most one new row,
     * then the rest of TRAIN as it was */
    snprintf(p, sizeof p, "%s/run/train-aug.txt", d);
    char *aug = slurp(p);
    int rows = 0;
    for (const char *s = aug; (s = strchr(s, '\n')); s++) rows++;
    cr_assert_geq(rows, 4 + 400, "%d rows", rows);
    cr_assert_leq(rows, 8 + 400, "%d rows", rows);
    free(aug);
    tb_proc_sh("rm -rf %s", d);
}
