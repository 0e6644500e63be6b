/* Unit tests of the test-data guard (tests/support/repodata.h): names that could reach outside
 * data/ are refused, symbolic links leading out are refused; and the data manifest: every file
 * shipped in data/ has a row in data/README.md with its byte count and its sha256 (computed here
 * by sha256sum, not by tinybert-c). */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repodata.h"

#define DATA TB_SOURCE_DIR "/data"

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/tb-repodata-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(repodata, .init = make_tmpdir, .fini = remove_tmpdir);

static void expect_refused(const char *root, const char *name, const char *reason)
{
    char out[PATH_MAX], why[2 * PATH_MAX + 128];
    cr_expect_eq(tb_test_path_resolve(root, name, out, sizeof out, why, sizeof why), -1, "'%s' accepted as %s", name,
                 out);
    cr_expect(strstr(why, reason), "'%s': reason [%s] lacks [%s]", name, why, reason);
}

Test(repodata, names_reaching_outside_are_refused)
{
    expect_refused(DATA, "../README.md", "not a relative name");
    expect_refused(DATA, "sst2/../../README.md", "not a relative name");
    expect_refused(DATA, "/etc/hostname", "not a relative name");
    expect_refused(DATA, "./sst2/dev.tsv", "not a relative name");
    expect_refused(DATA, "sst2//dev.tsv", "not a relative name");
    expect_refused(DATA, "sst2/", "not a relative name");
    expect_refused(DATA, "", "not a relative name");
    expect_refused(DATA, "sst2/none.tsv", "missing");
    /* "..x" and "x.." are ordinary names */
    char out[PATH_MAX], why[2 * PATH_MAX + 128];
    expect_refused(DATA, "..x", "missing");
    /* the real thing resolves inside the source tree */
    const char *p = tb_test_data("sst2/dev.tsv");
    char root[PATH_MAX];
    cr_assert_not_null(realpath(TB_SOURCE_DIR, root));
    cr_expect(strncmp(p, root, strlen(root)) == 0 && strcmp(p + strlen(root), "/data/sst2/dev.tsv") == 0, "%s", p);
    cr_expect_eq(tb_test_path_resolve(DATA, "vocab/bert-base-uncased-vocab.txt", out, sizeof out, why, sizeof why), 0,
                 "%s", why);
}

Test(repodata, links_leading_outside_are_refused)
{
    char root[256], outside[256], path[512], target[512];
    snprintf(root, sizeof root, "%s/root", tmpdir);
    snprintf(outside, sizeof outside, "%s/outside.txt", tmpdir);
    cr_assert_eq(mkdir(root, 0755), 0);
    FILE *f = fopen(outside, "w");
    cr_assert(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/inside.txt", root);
    f = fopen(path, "w");
    cr_assert(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/escape.txt", root);
    cr_assert_eq(symlink(outside, path), 0);
    snprintf(path, sizeof path, "%s/alias.txt", root);
    cr_assert_eq(symlink("inside.txt", path), 0);
    snprintf(path, sizeof path, "%s/up", root);
    cr_assert_eq(symlink("..", path), 0);
    expect_refused(root, "escape.txt", "outside");
    expect_refused(root, "up/outside.txt", "outside");
    char out[PATH_MAX], why[2 * PATH_MAX + 128];
    cr_expect_eq(tb_test_path_resolve(root, "alias.txt", out, sizeof out, why, sizeof why), 0, "%s", why);
    cr_assert_not_null(realpath(root, target));
    strcat(target, "/inside.txt");
    cr_expect_str_eq(out, target);
}

/* Every file under data/ (README.md and NOTICE.md aside) has a row in data/README.md that names it
 * in backquotes, gives its size in bytes and its full sha256. */
Test(repodata, every_data_file_is_in_the_manifest)
{
    FILE *f = fopen(DATA "/README.md", "r");
    cr_assert_not_null(f, "data/README.md is missing");
    static char readme[1 << 17];
    size_t len = fread(readme, 1, sizeof readme - 1, f);
    fclose(f);
    readme[len] = '\0';
    cr_assert_lt(len, sizeof readme - 1, "data/README.md larger than the buffer");
    FILE *p = popen("cd '" DATA "' && find . -type f ! -name README.md ! -name NOTICE.md -printf '%P\\n' | sort | "
                    "while read -r f; do echo \"$f $(stat -c %s \"$f\") $(sha256sum < \"$f\")\"; done", "r");
    cr_assert_not_null(p);
    char line[1024];
    int files = 0;
    while (fgets(line, sizeof line, p)) {
        char name[512], hash[65];
        long long bytes;
        cr_assert_eq(sscanf(line, "%511s %lld %64s", name, &bytes, hash), 3, "find/sha256sum printed [%s]", line);
        char quoted[520], size[40];
        snprintf(quoted, sizeof quoted, "`%s`", name);
        snprintf(size, sizeof size, "| %lld |", bytes);
        const char *row = strstr(readme, quoted);
        cr_expect_not_null(row, "data/%s is not listed in data/README.md", name);
        if (row) {
            const char *end = strchr(row, '\n');
            size_t n = end ? (size_t)(end - row) : strlen(row);
            char buf[2048];
            snprintf(buf, sizeof buf, "%.*s", (int)n, row);
            cr_expect(strstr(buf, hash), "data/%s: data/README.md lacks its sha256 %s on its row", name, hash);
            cr_expect(strstr(buf, size), "data/%s: data/README.md lacks its size %s on its row", name, size);
        }
        files++;
    }
    cr_assert_eq(pclose(p), 0);
    cr_expect_geq(files, 15, "only %d data files found", files);
}
