/* repodata.c - data paths confined to the repository (see repodata.h). */
#include "repodata.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SLOTS = 8 };

/* 1 when name is a relative path whose parts are all ordinary names (no "", ".", ".."). */
static int plain_relative_name(const char *name)
{
    if (!name || !*name || *name == '/') return 0;
    for (const char *p = name;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 0;
        if (!end) return 1;
        p = end + 1;
    }
}

static int fail(char *why, size_t wn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, wn, fmt, ap);
    va_end(ap);
    return -1;
}

int tb_test_path_resolve(const char *root, const char *name, char *out, size_t n, char *why, size_t wn)
{
    char want[PATH_MAX], real_root[PATH_MAX];
    if (n < PATH_MAX) return fail(why, wn, "output buffer smaller than PATH_MAX");
    if (!plain_relative_name(name))
        return fail(why, wn, "'%s' is not a relative name without '', '.' or '..' parts", name ? name : "(null)");
    if (!realpath(root, real_root)) return fail(why, wn, "cannot resolve the folder %s", root);
    if (snprintf(want, sizeof want, "%s/%s", real_root, name) >= (int)sizeof want)
        return fail(why, wn, "%s/%s: path too long", root, name);
    if (!realpath(want, out)) return fail(why, wn, "%s is missing (%s)", name, want);
    size_t k = strlen(real_root);
    if (strncmp(out, real_root, k) != 0 || out[k] != '/')
        return fail(why, wn, "%s resolves to %s, outside %s", name, out, real_root);
    if (access(out, R_OK) != 0) return fail(why, wn, "%s (%s) is not readable", name, out);
    return 0;
}

const char *tb_test_data(const char *name)
{
    static char slot[SLOTS][PATH_MAX];
    static unsigned next;
    char *path = slot[next++ % SLOTS], why[2 * PATH_MAX + 128];
    int rc = tb_test_path_resolve(TB_SOURCE_DIR "/data", name, path, PATH_MAX, why, sizeof why);
    cr_assert_eq(rc, 0, "test data: %s (tests read only the repository's data/, see data/README.md)", why);
    return path;
}
