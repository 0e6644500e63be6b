/* Unit tests of scripts/check-layers, the layering rule of docs/ARCHITECTURE.md: the real tree
 * passes; small planted trees with an upward include, a stage header used from common/, one
 * stage using another, and a file outside the layer folders each fail with a line naming the
 * file, the line number and the rule. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define SCRIPT TB_SOURCE_DIR "/scripts/check-layers"

static char g_root[256];

/* Runs check-layers on `root`; its stdout (the violations) into out. Returns the exit status. */
static int run_check(const char *root, char *out, size_t n)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s --root %s 2>/dev/null", TB_PYTHON, SCRIPT, root);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    cr_assert(WIFEXITED(st), "check-layers did not exit normally");
    return WEXITSTATUS(st);
}

/* Writes `text` to root/rel, making the folders on the way. */
static void plant(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    for (char *s = path + strlen(g_root) + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* A small tree that follows the rule. */
static void setup_tree(void)
{
    snprintf(g_root, sizeof g_root, "/tmp/tb-test-layers-XXXXXX");
    cr_assert(mkdtemp(g_root), "mkdtemp");
    plant("common/include/tb/base/error.h", "#include <stddef.h>\n");
    plant("common/include/tb/wire/msg.h", "#include \"tb/base/error.h\"\n");
    plant("common/base/error.c", "#include \"tb/base/error.h\"\n");
    plant("common/wire/msg.c", "#include \"tb/wire/msg.h\"\n#include \"tb/base/error.h\"\n#include \"wire_priv.h\"\n");
    plant("common/wire/wire_priv.h", "\n");
    plant("common/train/run.c", "#include \"tb/wire/msg.h\"\n");
    plant("stages/emit/main.c", "#include \"tb/train/x.h\"\n#include \"emit.h\"\n");
    plant("stages/emit/emit.h", "#include \"tb/wire/msg.h\"\n");
    plant("stages/distill/main.c", "#include \"tb/base/error.h\"\n");
}

static void teardown_tree(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    cr_assert(system(cmd) == 0);
}

TestSuite(layers, .init = setup_tree, .fini = teardown_tree);

Test(layers, the_real_tree_follows_the_rule)
{
    char out[8192];
    int rc = run_check(TB_SOURCE_DIR, out, sizeof out);
    cr_assert_eq(rc, 0, "check-layers finds violations in the tree:\n%s", out);
}

Test(layers, a_tree_that_follows_the_rule_passes)
{
    char out[4096];
    cr_assert_eq(run_check(g_root, out, sizeof out), 0, "unexpected violations:\n%s", out);
    cr_assert_eq(out[0], 'c', "expected only the summary line, got:\n%s", out);
}

Test(layers, an_upward_include_fails_naming_file_line_and_layers)
{
    plant("common/wire/codec.c", "#include \"tb/wire/msg.h\"\n#include \"tb/train/trainer.h\"\n");
    char out[4096];
    cr_assert_eq(run_check(g_root, out, sizeof out), 1, "an upward include passed:\n%s", out);
    cr_assert(strstr(out, "common/wire/codec.c:2: includes \"tb/train/trainer.h\": layer 'wire' may not use "
                          "the higher layer 'train'"), "got:\n%s", out);
}

Test(layers, a_public_header_including_a_higher_layer_fails)
{
    plant("common/include/tb/base/log.h", "#include \"tb/store/checkpoint.h\"\n");
    char out[4096];
    cr_assert_eq(run_check(g_root, out, sizeof out), 1, "got:\n%s", out);
    cr_assert(strstr(out, "common/include/tb/base/log.h:1:"), "got:\n%s", out);
}

Test(layers, common_including_a_stage_header_fails)
{
    plant("common/train/feat.c", "#include \"emit/emit.h\"\n");
    char out[4096];
    cr_assert_eq(run_check(g_root, out, sizeof out), 1, "got:\n%s", out);
    cr_assert(strstr(out, "common/train/feat.c:1: includes \"emit/emit.h\""), "got:\n%s", out);
}

Test(layers, a_stage_using_another_stage_fails)
{
    plant("stages/distill/main.c", "#include \"tb/base/error.h\"\n#include \"emit/emit.h\"\n");
    char out[4096];
    cr_assert_eq(run_check(g_root, out, sizeof out), 1, "got:\n%s", out);
    cr_assert(strstr(out, "stages/distill/main.c:2: includes \"emit/emit.h\": stage 'distill'"), "got:\n%s", out);
}

Test(layers, files_outside_the_layer_folders_and_unknown_layers_fail)
{
    plant("common/loose.c", "\n");
    plant("common/misc/x.c", "\n");
    plant("common/base/y.c", "#include \"tb/gui/window.h\"\n");
    char out[4096];
    cr_assert_eq(run_check(g_root, out, sizeof out), 1, "got:\n%s", out);
    cr_assert(strstr(out, "common/loose.c: not in a layer folder"), "got:\n%s", out);
    cr_assert(strstr(out, "common/misc/x.c: not in a layer folder"), "got:\n%s", out);
    cr_assert(strstr(out, "common/base/y.c:1: includes \"tb/gui/window.h\": no layer 'gui'"), "got:\n%s", out);
}

Test(layers, a_missing_private_header_and_a_relative_path_fail)
{
    plant("common/text/a.c", "#include \"nowhere.h\"\n#include \"../wire/wire_priv.h\"\n");
    char out[4096];
    cr_assert_eq(run_check(g_root, out, sizeof out), 1, "got:\n%s", out);
    cr_assert(strstr(out, "common/text/a.c:1: includes \"nowhere.h\", which is not in its own folder"), "got:\n%s", out);
    cr_assert(strstr(out, "common/text/a.c:2: includes \"../wire/wire_priv.h\""), "got:\n%s", out);
}
