/* Unit tests: outputs are written under a temporary name and renamed when complete, so a failed
 * or abandoned writer (a file, a message file) leaves an existing output byte for byte as it was;
 * and an output naming the same file as an input is recognised however it is spelled (file:,
 * file://, "./", "..", a symbolic or hard link, a file that does not exist yet). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/outfile.h"
#include "tb/wire/stream.h"

static char dir[256];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(outfile, .init = setup, .fini = teardown);

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

/* The whole file as a string (at most 4095 bytes); "" when missing. */
static const char *get(const char *path, char *buf, size_t n)
{
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return buf;
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    fclose(f);
    return buf;
}

/* Entries of `dir` (besides . and ..). */
static int entries(void)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

Test(outfile, commit_replaces_abort_keeps_the_old_file)
{
    char path[512], buf[4096];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    put(path, "old contents\n");
    tb_outfile o;
    cr_assert_eq(tb_outfile_open(&o, path), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(entries(), 2, "the temporary sits beside the output");
    cr_expect(strstr(o.tmp, "/out.txt.tmp-"), "%s", o.tmp);
    fputs("half of the new", o.f);
    fflush(o.f);
    cr_expect_str_eq(get(path, buf, sizeof buf), "old contents\n", "the output changed before the commit");
    tb_outfile_abort(&o);
    cr_expect_str_eq(get(path, buf, sizeof buf), "old contents\n");
    cr_expect_eq(entries(), 1, "the temporary was not removed");

    cr_assert_eq(tb_outfile_open(&o, path), TB_OK, "%s", tb_err_msg());
    fputs("new contents\n", o.f);
    cr_assert_eq(tb_outfile_commit(&o), TB_OK, "%s", tb_err_msg());
    tb_outfile_abort(&o); /* a no-op after a commit */
    cr_expect_str_eq(get(path, buf, sizeof buf), "new contents\n");
    cr_expect_eq(entries(), 1);
}

Test(outfile, a_folder_or_a_missing_folder_is_refused_clearly)
{
    tb_outfile o;
    cr_expect_eq(tb_outfile_open(&o, dir), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "is a folder"), "%s", tb_err_msg());
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/folder.txt", dir);
    cr_expect_eq(tb_outfile_open(&o, path), TB_EIO);
    cr_expect(strstr(tb_err_msg(), path) && strstr(tb_err_msg(), "folder"), "%s", tb_err_msg());
    tb_outfile_abort(&o);
    cr_expect_eq(entries(), 0);
}

static void send_one(tb_stream *s, int i)
{
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_msg_set_int(&m, "n", i), TB_OK);
    cr_assert_eq(tb_stream_send(s, &m, NULL), TB_OK, "%s", tb_err_msg());
    tb_msg_free(&m);
}

/* A message-file writer that stops before END (a failure, a refused batch) leaves the existing
 * file as it was; one that finishes replaces it, and the new file reads back. */
Test(outfile, message_file_is_renamed_into_place_only_after_end)
{
    char path[512], ep[600], buf[4096];
    snprintf(path, sizeof path, "%s/features.tbm", dir);
    snprintf(ep, sizeof ep, "file:%s", path);
    put(path, "an earlier output\n");
    tb_stream *s = NULL;
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    send_one(s, 0);
    cr_expect_str_eq(get(path, buf, sizeof buf), "an earlier output\n", "opened for writing: the output changed");
    tb_stream_close(s); /* abandoned before END */
    cr_expect_str_eq(get(path, buf, sizeof buf), "an earlier output\n", "an abandoned writer changed the output");
    cr_expect_eq(entries(), 1, "the temporary was left behind");

    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    send_one(s, 0);
    send_one(s, 1);
    cr_assert_eq(tb_stream_finish(s), TB_OK, "%s", tb_err_msg());
    tb_stream_close(s);
    cr_expect_eq(entries(), 1);
    cr_assert_eq(tb_stream_open(&s, path, TB_STREAM_READ, NULL), TB_OK, "%s", tb_err_msg());
    int n = 0, rc;
    tb_msg m;
    while ((rc = tb_stream_recv(s, &m, 0)) == TB_OK) {
        int64_t v = -1;
        cr_expect_eq(tb_msg_get_int(&m, "n", &v), TB_OK);
        cr_expect_eq(v, n);
        n++;
        tb_msg_free(&m);
    }
    cr_expect_eq(rc, TB_EEND, "%s", tb_err_msg());
    cr_expect_eq(n, 2);
    tb_stream_close(s);
}

Test(outfile, same_file_however_spelled)
{
    char a[512], b[512], sub[512], link[512], hard[512], t1[1200];
    snprintf(a, sizeof a, "%s/a.tbm", dir);
    snprintf(b, sizeof b, "%s/b.tbm", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    /* neither exists yet: by normalised path */
    snprintf(t1, sizeof t1, "file:%s/sub/../a.tbm", dir);
    cr_expect_eq(tb_outfile_same(a, t1), 1);
    snprintf(t1, sizeof t1, "file://%s//./a.tbm", dir);
    cr_expect_eq(tb_outfile_same(t1, a), 1);
    snprintf(t1, sizeof t1, "%s/nowhere/../a.tbm", dir); /* a missing folder: lexically */
    cr_expect_eq(tb_outfile_same(t1, a), 1);
    cr_expect_eq(tb_outfile_same(a, b), 0);
    /* existing: by device and inode */
    put(a, "x");
    put(b, "x");
    cr_expect_eq(tb_outfile_same(a, b), 0, "two files with equal bytes are not the same file");
    snprintf(link, sizeof link, "%s/sub/l.tbm", dir);
    cr_assert_eq(symlink(a, link), 0);
    cr_expect_eq(tb_outfile_same(link, a), 1);
    snprintf(hard, sizeof hard, "%s/sub/h.tbm", dir);
    cr_assert_eq(linkat(AT_FDCWD, a, AT_FDCWD, hard, 0), 0);
    cr_expect_eq(tb_outfile_same(hard, a), 1);
    /* relative to the working folder */
    char cwd[512];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(sub), 0);
    cr_expect_eq(tb_outfile_same("../a.tbm", a), 1);
    cr_expect_eq(tb_outfile_same("./new.tbm", "file:new.tbm"), 1);
    cr_expect_eq(tb_outfile_same("new.tbm", "../new.tbm"), 0);
    cr_assert_eq(chdir(cwd), 0);
    /* endpoints that are not files never collide */
    cr_expect_eq(tb_outfile_same("ipc:///tmp/x", "ipc:///tmp/x"), 0);
    cr_expect_eq(tb_outfile_same("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555"), 0);
    cr_expect_eq(tb_outfile_same("-", "-"), 0);
}

Test(outfile, output_check_names_both_options)
{
    char a[512], a2[600];
    snprintf(a, sizeof a, "%s/in.txt", dir);
    snprintf(a2, sizeof a2, "file:%s/./in.txt", dir);
    put(a, "rows\n");
    const tb_path_arg ins[] = {{"input", a}, {"vocab", NULL}};
    const tb_path_arg outs[] = {{"metrics", NULL}, {"output", a2}};
    cr_assert_eq(tb_output_check(outs, 2, ins, 2), TB_EINVAL);
    const char *e = tb_err_msg();
    cr_expect(strstr(e, "--output") && strstr(e, "--input") && strstr(e, a2) && strstr(e, "same file") &&
                  strstr(e, "choose another output"),
              "%s", e);
    const tb_path_arg other[] = {{"output", "ipc:///tmp/tb-none"}};
    cr_expect_eq(tb_output_check(other, 1, ins, 2), TB_OK, "%s", tb_err_msg());
}
