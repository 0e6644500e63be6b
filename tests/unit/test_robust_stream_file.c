/* Unit tests: a message file ends with its END record. Bytes after it (a second file appended, a
 * stray write) are refused with an error naming the file and the byte offset where they start. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/wire/stream.h"

static char dir[128], path[256];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    snprintf(dir, sizeof dir, "/tmp/tb-sfile-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a.msgs", dir);
}

static void teardown(void)
{
    unlink(path);
    rmdir(dir);
}

TestSuite(robust_stream_file, .init = setup, .fini = teardown);

static long write_file(int messages)
{
    tb_stream *s = NULL;
    cr_assert_eq(tb_stream_open(&s, path, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < messages; i++) {
        tb_msg m;
        tb_msg_init(&m);
        cr_assert_eq(tb_msg_set_int(&m, "n", i), TB_OK);
        cr_assert_eq(tb_stream_send(s, &m, NULL), TB_OK, "%s", tb_err_msg());
        tb_msg_free(&m);
    }
    cr_assert_eq(tb_stream_finish(s), TB_OK, "%s", tb_err_msg());
    tb_stream_close(s);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return (long)st.st_size;
}

static void append(const void *p, size_t n)
{
    FILE *f = fopen(path, "ab");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* Reads every message; returns the status that ended the reading and the count read. */
static int read_all(int *count)
{
    tb_stream *s = NULL;
    int rc = tb_stream_open(&s, path, TB_STREAM_READ, NULL);
    *count = 0;
    while (rc == TB_OK) {
        tb_msg m;
        rc = tb_stream_recv(s, &m, -1);
        if (rc == TB_OK) (*count)++;
        tb_msg_free(&m);
    }
    tb_stream_close(s);
    return rc;
}

Test(robust_stream_file, a_clean_file_ends_at_its_end_record)
{
    write_file(3);
    int n = 0;
    cr_expect_eq(read_all(&n), TB_EEND, "%s", tb_err_msg());
    cr_expect_eq(n, 3);
}

Test(robust_stream_file, bytes_after_end_are_refused_with_file_and_offset)
{
    long size = write_file(2);
    append("x", 1);
    int n = 0;
    cr_expect_eq(read_all(&n), TB_EFORMAT, "%s", tb_err_msg());
    cr_expect_eq(n, 2);
    char want[400];
    snprintf(want, sizeof want, "%s: 1 unexpected bytes after the END record, from byte %ld", path, size);
    cr_expect(strstr(tb_err_msg(), want), "message '%s' should contain '%s'", tb_err_msg(), want);
}

Test(robust_stream_file, a_second_file_appended_is_refused)
{
    long size = write_file(1);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    char *copy = malloc((size_t)size);
    cr_assert_eq(fread(copy, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    append(copy, (size_t)size);
    free(copy);
    int n = 0;
    cr_expect_eq(read_all(&n), TB_EFORMAT);
    char want[64];
    snprintf(want, sizeof want, "%ld unexpected bytes after the END record, from byte %ld", size, size);
    cr_expect(strstr(tb_err_msg(), want), "%s", tb_err_msg());
}
