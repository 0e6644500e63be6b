/* outfile.c - output files written under a temporary name and renamed when complete; an output
 * that is one of the inputs is refused (see tb/base/outfile.h). */
#include "tb/base/outfile.h"

#include "tb/base/cli.h"
#include "tb/base/error.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tb_outfile_open(tb_outfile *o, const char *path)
{
    int rc = TB_OK;
    memset(o, 0, sizeof *o);
    TB_CHECK(path && *path, TB_EINVAL, "output path is empty");
    TB_CHECK(strlen(path) < sizeof o->path, TB_EINVAL, "output path '%.64s...' is longer than %zu bytes", path,
             sizeof o->path - 1);
    struct stat st;
    TB_CHECK(stat(path, &st) != 0 || !S_ISDIR(st.st_mode), TB_EINVAL,
             "output '%s' is a folder: give a file name", path);
    snprintf(o->path, sizeof o->path, "%s", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp-%ld", path, (long)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        int e = errno;
        o->tmp[0] = 0;
        TB_CHECK(0, TB_EIO, "cannot create '%s' (written first as %s.tmp-%ld, then renamed): %s; check that its "
                 "folder exists and is writable", path, path, (long)getpid(), strerror(e));
    }
error:
    return rc;
}

int tb_outfile_commit(tb_outfile *o)
{
    int rc = TB_OK;
    TB_CHECK(o->f && o->tmp[0], TB_EINVAL, "output '%s' is not open", o->path);
    int ok = fflush(o->f) == 0 && !ferror(o->f) && fsync(fileno(o->f)) == 0;
    int e = errno;
    int cl = fclose(o->f);
    o->f = NULL;
    TB_CHECK(ok && cl == 0, TB_EIO, "cannot write '%s': %s (disk full?); the previous file, if any, is untouched",
             o->tmp, strerror(ok ? errno : e));
    TB_CHECK(rename(o->tmp, o->path) == 0, TB_EIO, "cannot rename '%s' to '%s': %s", o->tmp, o->path,
             strerror(errno));
    o->tmp[0] = 0;
error:
    if (rc) tb_outfile_abort(o);
    return rc;
}

void tb_outfile_abort(tb_outfile *o)
{
    if (!o) return;
    if (o->f) fclose(o->f);
    o->f = NULL;
    if (o->tmp[0]) unlink(o->tmp);
    o->tmp[0] = 0;
}

int tb_outfile_endpoint_path(const char *endpoint, char *out, size_t n)
{
    const char *p = endpoint;
    if (!n) return -1;
    out[0] = 0;
    if (!p || !*p || strcmp(p, "-") == 0) return 0;
    if (!strncmp(p, "tcp://", 6) || !strncmp(p, "ipc://", 6) || !strncmp(p, "inproc://", 9)) return 0;
    if (!strncmp(p, "file://", 7))
        p += 7;
    else if (!strncmp(p, "file:", 5))
        p += 5;
    if ((size_t)snprintf(out, n, "%s", p) >= n) return -1;
    return 0;
}

/* Lexical normalisation of an absolute path in place: repeated '/', "." and ".." removed. */
static void lexical_normalise(char *p)
{
    char *w = p; /* p[0] == '/' */
    const char *r = p;
    while (*r) {
        while (*r == '/') r++;
        if (!*r) break;
        const char *end = strchr(r, '/');
        size_t len = end ? (size_t)(end - r) : strlen(r);
        if (len == 1 && r[0] == '.') {
        } else if (len == 2 && r[0] == '.' && r[1] == '.') {
            while (w > p && *--w != '/') {
            }
        } else {
            *w++ = '/';
            memmove(w, r, len);
            w += len;
        }
        r += len;
    }
    if (w == p) *w++ = '/';
    *w = 0;
}

/* An absolute, normalised name for `path`: realpath of the path, else of its folder plus the
 * last component, else the lexical normalisation of cwd/path. */
static void normalised(const char *path, char *out, size_t n)
{
    char buf[PATH_MAX * 2 + 2];
    if (realpath(path, buf)) {
        snprintf(out, n, "%s", buf);
        return;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[PATH_MAX];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    char rdir[PATH_MAX];
    if (*base && strcmp(base, ".") && strcmp(base, "..") && realpath(dir, rdir)) {
        snprintf(out, n, "%s/%s", strcmp(rdir, "/") ? rdir : "", base);
        return;
    }
    if (path[0] == '/') {
        snprintf(buf, sizeof buf, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, "/");
        snprintf(buf, sizeof buf, "%s/%s", cwd, path);
    }
    lexical_normalise(buf);
    snprintf(out, n, "%s", buf);
}

int tb_outfile_same(const char *a, const char *b)
{
    char pa[PATH_MAX], pb[PATH_MAX];
    if (tb_outfile_endpoint_path(a, pa, sizeof pa) || tb_outfile_endpoint_path(b, pb, sizeof pb)) return 0;
    if (!pa[0] || !pb[0]) return 0;
    struct stat sa, sb;
    if (stat(pa, &sa) == 0 && stat(pb, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char na[PATH_MAX * 2 + 2], nb[PATH_MAX * 2 + 2];
    normalised(pa, na, sizeof na);
    normalised(pb, nb, sizeof nb);
    return strcmp(na, nb) == 0;
}

int tb_output_check(const tb_path_arg *outputs, int nout, const tb_path_arg *inputs, int nin)
{
    for (int j = 0; j < nout; j++) {
        const tb_path_arg *out = &outputs[j];
        if (!out->value) continue;
        for (int i = 0; i < nin; i++) {
            if (!inputs[i].value || !tb_outfile_same(out->value, inputs[i].value)) continue;
            return TB_ERR(TB_EINVAL,
                          "--%s '%s' is the same file as --%s '%s': writing it would destroy the input; choose "
                          "another output path", out->option, out->value, inputs[i].option, inputs[i].value);
        }
    }
    return TB_OK;
}

/* The options named in names[] (NULL-terminated, at most `max`) with their values. */
static int cli_paths(const tb_cli *cli, const char *const *names, tb_path_arg *out, int max)
{
    int n = 0;
    for (; names && names[n] && n < max; n++) out[n] = (tb_path_arg){names[n], tb_cli_str(cli, names[n])};
    return n;
}

int tb_cli_output_check(const tb_cli *cli, const char *const *outputs, const char *const *inputs)
{
    tb_path_arg outs[16], ins[16];
    int no = cli_paths(cli, outputs, outs, 16), ni = cli_paths(cli, inputs, ins, 16);
    return tb_output_check(outs, no, ins, ni);
}
