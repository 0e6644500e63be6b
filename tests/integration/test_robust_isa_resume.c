/* tb-finetune resumed on a machine with a narrower vector ISA: the first half runs with what the CPU
 * has (AVX-512 where present), the second half resumes from its checkpoint with the GEMM and RNG
 * kernels capped at AVX2 (TB_GEMM_ISA, TB_RNG_ISA), as on an AVX2-only machine. The run resumes
 * and completes; the losses stay finite and close to the uninterrupted run, but are no longer
 * bit-identical to it when the ISAs differ (another summation order in the small GEMMs). */
#include "proc.h"
#include "test_finetune_data.h"

#include "tb/base/isa.h"
#include "tb/store/checkpoint.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FT TB_BIN_DIR "/tb-finetune"

static char dir[256], cfg[512], train[512];

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(train, sizeof train, "%s/train.tbs", dir);
    cr_assert_eq(ft_write_config(cfg, 1), 0);
    cr_assert_eq(ft_write_batches(train, 16, 8, 12, 1, 0), TB_OK, "%s", tb_err_msg());
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(isa_resume, .init = setup, .fini = teardown, .timeout = 240);

/* tb-finetune on the 16 batches, 16 steps in all; max_steps "0" runs to the end. */
static void run(const char *out, const char *met, const char *max_steps, int resume)
{
    char *argv[] = {FT, "--input", train, "--output", (char *)out, "--config", cfg, "--total-steps", "16",
                    "--max-steps", (char *)max_steps, "--lr", "2e-3", "--save-every", "4", "--keep", "10",
                    "--threads", "2", "--progress", "none", "--metrics", (char *)met, "--log-level", "warn",
                    "--plot", "", "--epochs", "1", resume ? "--resume" : NULL, NULL};
    pid_t pid = tb_proc_spawn(argv);
    cr_assert_gt(pid, 0);
    int code = -1;
    if (tb_proc_wait(pid, 120000, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("tb-finetune did not finish");
    }
    cr_assert_eq(code, 0, "tb-finetune exited with %d", code);
}

/* Runs 8 steps with the CPU's own ISA, resumes with the kernels capped at `cap` for steps 9..16, and
 * compares with the uninterrupted run. Returns the largest relative loss difference; *identical
 * tells whether every loss text was the same. */
static double resume_capped(const char *cap, int *identical)
{
    char ref[512], ref_met[600], out[512], met1[600], met2[600];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(ref_met, sizeof ref_met, "%s/ref.jsonl", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(met1, sizeof met1, "%s/first.jsonl", dir);
    snprintf(met2, sizeof met2, "%s/second.jsonl", dir);
    run(ref, ref_met, "0", 0);
    run(out, met1, "8", 0); /* stops after step 8 with a checkpoint */
    char p[700];
    struct stat st;
    snprintf(p, sizeof p, "%s/step-8/%s", out, TB_CKPT_STATE);
    cr_assert_eq(stat(p, &st), 0, "no checkpoint at step 8");

    cr_assert_eq(setenv("TB_GEMM_ISA", cap, 1), 0);
    cr_assert_eq(setenv("TB_RNG_ISA", cap, 1), 0);
    run(out, met2, "0", 1);
    unsetenv("TB_GEMM_ISA");
    unsetenv("TB_RNG_ISA");

    char a[20][40] = {{0}}, b[20][40] = {{0}};
    cr_assert_eq(ft_read_losses(ref_met, a, 20), 16);
    cr_assert_eq(ft_read_losses(met2, b, 20), 16, "the resumed run did not reach step 16");
    cr_expect(!b[8][0] && b[9][0], "the resumed run starts at step 9");
    double worst = 0;
    *identical = 1;
    for (int s = 9; s <= 16; s++) {
        double x = atof(a[s]), y = atof(b[s]);
        cr_assert(isfinite(y), "step %d: loss %s", s, b[s]);
        double rel = fabs(x - y) / fmax(fabs(x), 1e-6);
        if (rel > worst) worst = rel;
        if (strcmp(a[s], b[s]) != 0) *identical = 0;
        cr_expect_leq(rel, 1e-4, "step %d: loss %s after resuming with %s, %s uninterrupted", s, b[s], cap, a[s]);
    }
    snprintf(p, sizeof p, "%s/step-16/%s", out, TB_CKPT_MODEL);
    cr_expect_eq(stat(p, &st), 0, "no final checkpoint");
    fprintf(stderr, "isa_resume: CPU level %d (2 = AVX-512), resumed with %s: largest relative loss difference over "
                    "steps 9..16: %.3g%s\n", tb_isa_level(NULL, 1), cap, worst, *identical ? " (bit-identical)" : "");
    return worst;
}

/* tb_gemm_small sums every element in the same order on every path (one FMA per term) and Philox
 * gives the same numbers on every path: AVX-512 -> AVX2 resumes bit for bit. */
Test(isa_resume, resumes_with_avx2_after_a_wider_isa)
{
    int identical = 0;
    resume_capped("avx2", &identical);
    cr_expect(identical, "AVX-512 -> AVX2 was bit-identical by design of tb_gemm_small and Philox; docs/finetune.md "
                         "says so and needs updating if this changes");
}

/* Without FMA (the plain-C path, as on a CPU without AVX2) each product is rounded before the add:
 * the run resumes and completes, close to but not bit-identical with the uninterrupted run. */
Test(isa_resume, resumes_with_plain_c_after_a_vector_isa_and_stays_close)
{
    int identical = 0;
    resume_capped("scalar", &identical);
}
