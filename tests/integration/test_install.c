/* `cmake --install` of this build into a temporary prefix, then examples/classify.c built with
 * the C compiler against the INSTALLED copy only (pkg-config tinybert: <tinybert.h>,
 * libtinybert.so) and run on a checkpoint: its labels and probabilities equal tb-predict's for
 * the same lines. Also: the library exports the tinybert_* functions and nothing of libtb. */
#include "ckpt.h"
#include "proc.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char dir[256];

static void setup(void) { cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir)); }

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(install, .init = setup, .fini = teardown, .timeout = 300);

Test(install, example_built_against_the_installed_library_agrees_with_tb_predict)
{
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/prefix", dir);
    cr_assert_eq(tb_proc_sh("%s --install %s --prefix %s > %s/install.log 2>&1", TB_CMAKE, TB_BUILD_DIR, prefix, dir), 0,
                 "cmake --install failed (see %s/install.log)", dir);
    const char *lib = TB_INSTALL_LIBDIR;
    cr_assert_eq(tb_proc_sh("test -f %s/include/tinybert.h && test -f %s/%s/pkgconfig/tinybert.pc && test -e %s/%s/libtinybert.so "
                    "&& test -x %s/bin/tb-predict && test -f %s/share/doc/tinybert-c/examples/classify.c",
                    prefix, prefix, lib, prefix, lib, prefix, prefix),
                 0, "installed files missing");
    /* exported symbols: the API only */
    cr_expect_eq(tb_proc_sh("nm -D --defined-only %s/%s/libtinybert.so | awk '$2 == \"T\" {print $3}' | grep -v '^tinybert_' "
                    "| grep -v '^_' | grep -q .",
                    prefix, lib),
                 1, "libtinybert exports functions other than tinybert_*");
    /* the example, compiled from the installed copy with the installed headers and library only */
    cr_assert_eq(tb_proc_sh("cd %s && PKG_CONFIG_PATH=%s/%s/pkgconfig cc -std=c11 -Wall -Wextra -Werror %s "
                    "share/doc/tinybert-c/examples/classify.c $(PKG_CONFIG_PATH=%s/%s/pkgconfig pkg-config --cflags --libs "
                    "tinybert) -o %s/classify 2> %s/cc.log",
                    prefix, prefix, lib, TB_EXAMPLE_CFLAGS, prefix, lib, dir, dir),
                 0, "building the example against the installed library failed (see %s/cc.log)", dir);

    char sub[600], model[600];
    snprintf(sub, sizeof sub, "%s/m", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 2, .seed = 31}, model, sizeof model);
    FILE *f = fopen(strcat(strcpy(sub, dir), "/lines.txt"), "w");
    fprintf(f, "a gripping , heartfelt film\nit is dull\tand far too long\nnothing new here\n\nUn film très ennuyeux !\n");
    fclose(f);
    cr_assert_eq(tb_proc_sh("LD_LIBRARY_PATH=%s/%s %s/classify %s < %s/lines.txt > %s/example.txt", prefix, lib, dir, model, dir,
                    dir),
                 0);
    cr_assert_eq(tb_proc_sh("%s/bin/tb-predict --model %s --log-level warn < %s/lines.txt > %s/predict.txt", prefix, model, dir,
                    dir),
                 0);
    FILE *a = fopen(strcat(strcpy(sub, dir), "/example.txt"), "r");
    FILE *b = fopen(strcat(strcpy(sub, dir), "/predict.txt"), "r");
    cr_assert(a && b);
    char la[512], lb[512];
    int n = 0;
    while (fgets(la, sizeof la, a)) {
        cr_assert_not_null(fgets(lb, sizeof lb, b), "tb-predict has fewer lines than the example");
        int ka, kb;
        double pa[2], pb[2];
        cr_assert_eq(sscanf(la, "LABEL_%d\t%lf\t%lf", &ka, &pa[0], &pa[1]), 3, "example line '%s'", la);
        cr_assert_eq(sscanf(lb, "%d\t%lf\t%lf", &kb, &pb[0], &pb[1]), 3, "tb-predict line '%s'", lb);
        cr_expect_eq(ka, kb, "line %d: %s vs %s", n + 1, la, lb);
        cr_expect(fabs(pa[0] - pb[0]) <= 2e-6 && fabs(pa[1] - pb[1]) <= 2e-6, "line %d: %s vs %s", n + 1, la, lb);
        n++;
    }
    cr_expect_null(fgets(lb, sizeof lb, b), "tb-predict has more lines than the example");
    cr_expect_eq(n, 5);
    fclose(a);
    fclose(b);
}
