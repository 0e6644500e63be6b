/* stages/augment/shipped.c - see shipped.h. */
#include "shipped.h"

#include "tb/base/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tb_shipped_dir(char *out, size_t cap)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return TB_ERR(TB_EIO, "cannot find the running executable (/proc/self/exe): %s", strerror(errno));
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return TB_ERR(TB_EIO, "the running executable '%s' has no folder", exe);
    *slash = 0;
    if ((size_t)snprintf(out, cap, "%s/../share/tinybert-c", exe) >= cap)
        return TB_ERR(TB_EINVAL, "the executable's folder '%s' is too long", exe);
    return TB_OK;
}

int tb_shipped_find(const char *rel, const char *option, char *out, size_t cap)
{
    int rc = TB_OK;
    char dir[4096];
    struct stat st;
    TB_TRY(tb_shipped_dir(dir, sizeof dir));
    TB_CHECK((size_t)snprintf(out, cap, "%s/%s", dir, rel) < cap, TB_EINVAL, "shipped file path too long: %s/%s", dir,
             rel);
    TB_CHECK(stat(out, &st) == 0 && S_ISREG(st.st_mode), TB_ENOTFOUND,
             "--%s not given, and the shipped %s is not at %s (looked beside the executable, in "
             "../share/tinybert-c/): give --%s PATH (the file is data/%s in the source tree), or install "
             "tinybert-c with its data (cmake --install)",
             option, rel, out, option, rel);
error:
    return rc;
}
