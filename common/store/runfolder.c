/* runfolder.c - an output folder belongs to one run: its lock and the replacement of an old run
 * (tb/store/runfolder.h). */
#include "tb/store/runfolder.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/store/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MARKER ".old-moved"

static int join(char *out, size_t n, const char *a, const char *b)
{
    int k = snprintf(out, n, "%s/%s", a, b);
    if (k < 0 || (size_t)k >= n) return TB_ERR(TB_EINVAL, "path '%s/%s' is longer than %zu bytes", a, b, n - 1);
    return TB_OK;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return TB_ERR(TB_EIO, "cannot open folder %s to sync it: %s", dir, strerror(errno));
    int ok = fsync(fd) == 0;
    int e = errno;
    close(fd);
    return ok ? TB_OK : TB_ERR(TB_EIO, "cannot fsync folder %s: %s", dir, strerror(e));
}

/* ---- the lock ------------------------------------------------------------------------------- */

/* The holder's line from DIR/.lock.info into `out` ("" when there is none). */
static void read_holder(const char *dir, char *out, size_t n)
{
    char p[PATH_MAX];
    out[0] = 0;
    if (join(p, sizeof p, dir, TB_RUNFOLDER_LOCK_INFO) != TB_OK) {
        tb_err_clear();
        return;
    }
    FILE *f = fopen(p, "r");
    if (!f) return;
    if (!fgets(out, (int)n, f)) out[0] = 0;
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
}

/* Writes who holds the lock into DIR/.lock.info (through a temporary name: a reader sees a whole line). */
static int write_holder(const char *dir, const char *stage)
{
    int rc = TB_OK;
    char p[PATH_MAX], tmp[PATH_MAX], host[256] = "?", when[64] = "?";
    FILE *f = NULL;
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = 0;
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    TB_TRY(join(p, sizeof p, dir, TB_RUNFOLDER_LOCK_INFO));
    TB_TRY(join(tmp, sizeof tmp, dir, TB_RUNFOLDER_LOCK_INFO ".new"));
    f = fopen(tmp, "w");
    TB_CHECK(f, TB_EIO, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "pid %ld on host %s (%s, started %s)\n", (long)getpid(), host, stage ? stage : "?", when);
    int closed = fclose(f);
    f = NULL;
    TB_CHECK(closed == 0, TB_EIO, "cannot write %s: %s", tmp, strerror(errno));
    TB_CHECK(rename(tmp, p) == 0, TB_EIO, "cannot rename %s to %s: %s", tmp, p, strerror(errno));
error:
    if (f) fclose(f);
    return rc;
}

int tb_runfolder_lock_take(tb_runfolder_lock *l, const char *dir, const char *stage)
{
    int rc = TB_OK, fd = -1;
    char p[PATH_MAX], holder[512];
    struct stat st;
    TB_CHECK(l && dir && dir[0], TB_EINVAL, "tb_runfolder_lock_take: a lock and a folder are required");
    l->fd = -1;
    TB_CHECK(mkdir(dir, 0777) == 0 || errno == EEXIST, TB_EIO, "cannot create the output folder %s: %s", dir,
             strerror(errno));
    TB_CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode), TB_EINVAL,
             "the output folder %s exists but is not a folder: give a folder path", dir);
    TB_TRY(join(p, sizeof p, dir, TB_RUNFOLDER_LOCK));
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    TB_CHECK(fd >= 0, TB_EIO, "cannot open the lock file %s: %s", p, strerror(errno));
    int r;
    while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (r != 0) {
        int e = errno;
        TB_CHECK(e == EWOULDBLOCK, TB_EIO, "cannot lock %s: %s", p, strerror(e));
        read_holder(dir, holder, sizeof holder);
        TB_CHECK(0, TB_EINVAL,
                 "the output folder %s is in use by another run: %s (%s); wait for it to end, or write to another "
                 "folder", dir, holder[0] ? holder : "its owner did not say who it is", p);
    }
    TB_TRY(write_holder(dir, stage));
    l->fd = fd;
    fd = -1;
error:
    if (fd >= 0) close(fd);
    return rc;
}

void tb_runfolder_unlock(tb_runfolder_lock *l)
{
    if (!l || l->fd < 0) return;
    close(l->fd); /* the lock goes with the last descriptor of the open file */
    l->fd = -1;
}

/* ---- what a folder holds ---------------------------------------------------------------------- */

static int is_step_name(const char *name)
{
    if (strncmp(name, "step-", 5) != 0 || !name[5]) return 0;
    for (const char *c = name + 5; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    return 1;
}

/* Entries that are checkpoints of a run. */
static int is_checkpoint_entry(const char *name)
{
    return strcmp(name, TB_CKPT_LATEST) == 0 || strcmp(name, "best") == 0 || is_step_name(name);
}

/* Everything a run writes into its folder (moved as a whole when a run is replaced). */
static int is_run_entry(const char *name)
{
    return is_checkpoint_entry(name) || strcmp(name, "metrics.jsonl") == 0 || strcmp(name, TB_CKPT_VOCAB) == 0 ||
           strcmp(name, "loss.png") == 0;
}

int tb_runfolder_used(const char *dir, char *what, size_t n)
{
    int used = 0;
    size_t len = 0;
    if (what && n) what[0] = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        TB_ERR(TB_EIO, "cannot list the output folder %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_run_entry(e->d_name)) continue;
        if (is_checkpoint_entry(e->d_name)) used = TB_RUNFOLDER_CHECKPOINTS;
        else if (!used) used = TB_RUNFOLDER_OUTPUT;
        if (!what || len + strlen(e->d_name) + 8 >= n) continue;
        len += (size_t)snprintf(what + len, n - len, "%s%s", len ? ", " : "", e->d_name);
    }
    closedir(d);
    return used;
}

/* ---- replacing a run ---------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int tb_runfolder_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? TB_OK : TB_ERR(TB_EIO, "cannot stat %s: %s", path, strerror(errno));
    int r = S_ISDIR(st.st_mode) ? nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) : unlink(path);
    if (r != 0) return TB_ERR(TB_EIO, "cannot remove %s: %s", path, strerror(errno));
    return TB_OK;
}

/* The target of symlink `path` into `out` ("" when it is not a symlink). */
static void link_target(const char *path, char *out, size_t n)
{
    ssize_t k = readlink(path, out, n - 1);
    out[k > 0 ? k : 0] = 0;
}

int tb_runfolder_replace_pending(const char *dir)
{
    char p[PATH_MAX], target[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, TB_CKPT_LATEST) >= (int)sizeof p) return 0;
    link_target(p, target, sizeof target);
    if (strncmp(target, TB_RUNFOLDER_NEW "/", sizeof TB_RUNFOLDER_NEW) == 0) return 1;
    if (snprintf(p, sizeof p, "%s/%s/%s", dir, TB_RUNFOLDER_NEW, MARKER) >= (int)sizeof p) return 0;
    return exists(p);
}

/* DIR/latest -> target, replaced atomically (a new link under a temporary name, then rename). */
static int point_latest(const char *dir, const char *target)
{
    int rc = TB_OK;
    char tmp[PATH_MAX], link[PATH_MAX];
    TB_TRY(join(tmp, sizeof tmp, dir, TB_CKPT_LATEST ".tmp"));
    TB_TRY(join(link, sizeof link, dir, TB_CKPT_LATEST));
    TB_CHECK(unlink(tmp) == 0 || errno == ENOENT, TB_EIO, "cannot remove %s: %s", tmp, strerror(errno));
    TB_CHECK(symlink(target, tmp) == 0, TB_EIO, "cannot create symlink %s: %s", tmp, strerror(errno));
    TB_CHECK(rename(tmp, link) == 0, TB_EIO, "cannot rename %s to %s: %s", tmp, link, strerror(errno));
    TB_TRY(fsync_dir(dir));
error:
    return rc;
}

/* Moves the entries of `from` accepted by `take` (and not named `except`) into `to`. */
static int move_entries(const char *from, const char *to, int (*take)(const char *), const char *except)
{
    int rc = TB_OK;
    char a[PATH_MAX], b[PATH_MAX];
    DIR *d = opendir(from);
    TB_CHECK(d, TB_EIO, "cannot list %s: %s", from, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!take(e->d_name) || (except && strcmp(e->d_name, except) == 0)) continue;
        TB_TRY(join(a, sizeof a, from, e->d_name));
        TB_TRY(join(b, sizeof b, to, e->d_name));
        TB_CHECK(!exists(b), TB_EIO, "cannot move %s to %s: the target exists", a, b);
        TB_CHECK(rename(a, b) == 0, TB_EIO, "cannot move %s to %s: %s", a, b, strerror(errno));
    }
    TB_TRY(fsync_dir(to));
    TB_TRY(fsync_dir(from));
error:
    if (d) closedir(d);
    return rc;
}

static int is_old_entry(const char *name) { return strcmp(name, TB_CKPT_LATEST) != 0 && is_run_entry(name); }

/* Links every file of checkpoint folder `from` into a new folder `to` (through `to`.tmp). */
static int link_checkpoint(const char *from, const char *to)
{
    int rc = TB_OK;
    char tmp[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
    DIR *d = NULL;
    TB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp", to) < (int)sizeof tmp, TB_EINVAL, "path %s.tmp is too long", to);
    TB_TRY(tb_runfolder_remove_tree(tmp));
    TB_CHECK(mkdir(tmp, 0755) == 0, TB_EIO, "cannot create %s: %s", tmp, strerror(errno));
    d = opendir(from);
    TB_CHECK(d, TB_EIO, "cannot list %s: %s", from, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        TB_TRY(join(a, sizeof a, from, e->d_name));
        TB_TRY(join(b, sizeof b, tmp, e->d_name));
        TB_CHECK(link(a, b) == 0, TB_EIO, "cannot link %s to %s: %s", a, b, strerror(errno));
    }
    TB_TRY(fsync_dir(tmp));
    TB_CHECK(rename(tmp, to) == 0, TB_EIO, "cannot rename %s to %s: %s", tmp, to, strerror(errno));
error:
    if (d) closedir(d);
    return rc;
}

int tb_runfolder_replace(const char *dir)
{
    int rc = TB_OK;
    char nw[PATH_MAX], old[PATH_MAX], p[PATH_MAX], final[64], via[PATH_MAX], at[PATH_MAX];
    TB_TRY(join(nw, sizeof nw, dir, TB_RUNFOLDER_NEW));
    TB_TRY(join(old, sizeof old, dir, TB_RUNFOLDER_OLD));
    TB_TRY(join(p, sizeof p, nw, TB_CKPT_LATEST));
    link_target(p, final, sizeof final);
    TB_CHECK(is_step_name(final), TB_EINVAL,
             "cannot replace the run in %s: %s is not a link to the new run's step-N checkpoint", dir, p);
    TB_TRY(join(via, sizeof via, TB_RUNFOLDER_NEW, final));
    TB_TRY(join(at, sizeof at, dir, final));
    TB_TRY(join(p, sizeof p, nw, MARKER));
    if (!exists(p)) {
        /* 1, 2: latest names the new checkpoint where it is; the old run moves aside */
        TB_TRY(point_latest(dir, via));
        TB_CHECK(mkdir(old, 0755) == 0 || errno == EEXIST, TB_EIO, "cannot create %s: %s", old, strerror(errno));
        TB_TRY(move_entries(dir, old, is_old_entry, NULL));
        FILE *f = fopen(p, "w");
        TB_CHECK(f && fclose(f) == 0, TB_EIO, "cannot write %s: %s", p, strerror(errno));
        TB_TRY(fsync_dir(nw));
    }
    /* 3: the new run's entries but its final checkpoint */
    TB_TRY(move_entries(nw, dir, is_old_entry, final));
    /* 4: the final checkpoint, linked into place, then latest */
    TB_TRY(join(p, sizeof p, nw, final));
    if (!exists(at)) TB_TRY(link_checkpoint(p, at));
    TB_TRY(point_latest(dir, final));
    /* 5: what is left of both */
    TB_TRY(tb_runfolder_remove_tree(old));
    TB_TRY(join(p, sizeof p, nw, MARKER));
    TB_CHECK(unlink(p) == 0 || errno == ENOENT, TB_EIO, "cannot remove %s: %s", p, strerror(errno));
    TB_TRY(tb_runfolder_remove_tree(nw));
    TB_TRY(fsync_dir(dir));
error:
    if (rc != TB_OK) tb_err_wrap(rc, "replacing the old run in %s with the new one in %s", dir, nw);
    return rc;
}
