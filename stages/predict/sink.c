/* sink.c - standard output, or a file written under a temporary name and renamed (sink.h). */
#include "sink.h"

#include "tb/base/error.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int pr_sink_open(pr_sink *s, const char *path)
{
    memset(s, 0, sizeof *s);
    if (strcmp(path, "-") == 0) {
        s->f = stdout;
        s->is_stdout = 1;
        snprintf(s->path, sizeof s->path, "stdout");
        return TB_OK;
    }
    int k = snprintf(s->path, sizeof s->path, "%s", path);
    if (k < 0 || (size_t)k >= sizeof s->path) return TB_ERR(TB_EINVAL, "--output: path is too long");
    snprintf(s->tmp, sizeof s->tmp, "%s.tmp", path);
    s->f = fopen(s->tmp, "w");
    if (!s->f) return TB_ERR(TB_EIO, "cannot create %s: %s (is the folder there and writable?)", s->tmp, strerror(errno));
    return TB_OK;
}

int pr_sink_flush(pr_sink *s)
{
    if (fflush(s->f) != 0 || ferror(s->f))
        return TB_ERR(TB_EIO, "cannot write %s: %s", s->is_stdout ? "stdout" : s->tmp, strerror(errno));
    return TB_OK;
}

int pr_sink_commit(pr_sink *s)
{
    int rc = TB_OK;
    TB_TRY(pr_sink_flush(s));
    if (s->is_stdout) {
        s->f = NULL;
        return TB_OK;
    }
    TB_CHECK(fsync(fileno(s->f)) == 0, TB_EIO, "cannot sync %s: %s", s->tmp, strerror(errno));
    int bad = fclose(s->f) != 0;
    s->f = NULL;
    TB_CHECK(!bad, TB_EIO, "cannot close %s: %s", s->tmp, strerror(errno));
    TB_CHECK(rename(s->tmp, s->path) == 0, TB_EIO, "cannot rename %s to %s: %s", s->tmp, s->path, strerror(errno));
    s->tmp[0] = '\0';
error:
    return rc;
}

void pr_sink_abort(pr_sink *s)
{
    if (s->f && !s->is_stdout) fclose(s->f);
    else if (s->f) fflush(s->f);
    s->f = NULL;
    if (!s->is_stdout && s->tmp[0]) unlink(s->tmp);
    s->tmp[0] = '\0';
}
