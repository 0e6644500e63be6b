/* Unit tests: progress lines (plain and bar) with explicit times, checked against hand-computed text. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/progress.h"

typedef struct memout { char *buf; size_t len; FILE *f; } memout;

static void mem_open(memout *m)
{
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    cr_assert_not_null(m->f);
}

static void mem_close(memout *m)
{
    fclose(m->f);
    free(m->buf);
}

Test(progress, plain_lines_every_interval)
{
    memout m;
    mem_open(&m);
    tb_progress p;
    cr_assert_eq(tb_progress_init_at(&p, m.f, TB_PROGRESS_PLAIN, "tb-x", 1000, 10.0, 100.0), TB_OK);
    cr_expect_eq(p.mode, TB_PROGRESS_PLAIN);
    tb_progress_update_at(&p, 10, 320, 0.5, 5e-5, 105.0); /* 5 s < 10 s: nothing */
    fflush(m.f);
    cr_expect_eq(m.len, 0, "drew too early: %s", m.buf);
    /* 10 s elapsed: 3200 samples / 10 s = 320.0/s; 900 steps left at 0.1 s/step = 90 s */
    tb_progress_update_at(&p, 100, 3200, 0.52311, 5e-5, 110.0);
    fflush(m.f);
    cr_expect_str_eq(m.buf, "[tb-x] step 100/1000 (10.0%) loss 0.5231 lr 5e-05 320.0 samples/s eta 0:01:30\n");
    tb_progress_update_at(&p, 150, 4800, 0.4, 5e-5, 119.9); /* 9.9 s after the last line */
    fflush(m.f);
    size_t before = m.len;
    cr_expect_eq(before, strlen("[tb-x] step 100/1000 (10.0%) loss 0.5231 lr 5e-05 320.0 samples/s eta 0:01:30\n"));
    /* 20 s elapsed, 250 steps: 750 left * 0.08 s = 60 s; 8000/20 = 400/s */
    tb_progress_update_at(&p, 250, 8000, 0.25, 4e-5, 120.0);
    fflush(m.f);
    cr_expect_str_eq(m.buf + before, "[tb-x] step 250/1000 (25.0%) loss 0.2500 lr 4e-05 400.0 samples/s eta 0:01:00\n");
    before = m.len;
    /* finish always draws: 1000 steps in 4000 s -> eta 0 */
    tb_progress_update_at(&p, 1000, 32000, NAN, NAN, 120.5);
    tb_progress_finish_at(&p, 4100.0);
    fflush(m.f);
    cr_expect_str_eq(m.buf + before, "[tb-x] step 1000/1000 (100.0%) 8.0 samples/s eta 0:00:00\n");
    mem_close(&m);
}

Test(progress, unknown_total_shows_elapsed)
{
    memout m;
    mem_open(&m);
    tb_progress p;
    cr_assert_eq(tb_progress_init_at(&p, m.f, TB_PROGRESS_PLAIN, "tok", 0, 0, 0.0), TB_OK);
    cr_expect_eq(p.interval, 10.0, "default interval");
    tb_progress_update_at(&p, 7, -1, NAN, NAN, 3725.0);
    fflush(m.f);
    cr_expect_str_eq(m.buf, "[tok] step 7 elapsed 1:02:05\n");
    mem_close(&m);
}

Test(progress, bar_is_redrawn_in_place_at_most_10_per_second)
{
    memout m;
    mem_open(&m);
    tb_progress p;
    cr_assert_eq(tb_progress_init_at(&p, m.f, TB_PROGRESS_BAR, "d", 8, 99.0, 0.0), TB_OK);
    cr_expect_eq(p.interval, 0.1);
    tb_progress_update_at(&p, 1, -1, NAN, NAN, 0.05); /* too soon */
    fflush(m.f);
    cr_expect_eq(m.len, 0);
    /* 2 of 8 steps: 6 of 24 cells; 1 s elapsed, 6 steps left at 0.5 s = 3 s */
    tb_progress_update_at(&p, 2, -1, 1.25, NAN, 1.0);
    fflush(m.f);
    cr_expect_str_eq(m.buf, "\r[d] [######..................] step 2/8 (25.0%) loss 1.2500 eta 0:00:03\033[K");
    size_t before = m.len;
    tb_progress_update_at(&p, 3, -1, 1.0, NAN, 1.05);
    fflush(m.f);
    cr_expect_eq(m.len, before, "redrawn within 0.1 s");
    tb_progress_update_at(&p, 8, -1, 1.0, NAN, 2.0);
    tb_progress_finish_at(&p, 2.0);
    fflush(m.f);
    const char *tail = "\r[d] [########################] step 8/8 (100.0%) loss 1.0000 eta 0:00:00\033[K\n";
    cr_expect(m.len >= strlen(tail) && strcmp(m.buf + m.len - strlen(tail), tail) == 0, "ends with %s", m.buf + before);
    mem_close(&m);
}

Test(progress, none_writes_nothing)
{
    memout m;
    mem_open(&m);
    tb_progress p;
    cr_assert_eq(tb_progress_init_at(&p, m.f, TB_PROGRESS_NONE, "x", 10, 1, 0), TB_OK);
    tb_progress_update_at(&p, 5, 5, 1, 1, 100);
    tb_progress_finish_at(&p, 200);
    fflush(m.f);
    cr_expect_eq(m.len, 0);
    mem_close(&m);
}

Test(progress, auto_is_plain_on_a_pipe_and_bar_on_a_terminal)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    FILE *w = fdopen(fds[1], "w");
    tb_progress p;
    cr_assert_eq(tb_progress_init_at(&p, w, TB_PROGRESS_AUTO, "x", 10, 1, 0), TB_OK);
    cr_expect_eq(p.mode, TB_PROGRESS_PLAIN);
    fclose(w);
    close(fds[0]);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert_geq(master, 0);
    cr_assert_eq(grantpt(master), 0);
    cr_assert_eq(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    cr_assert_geq(slave, 0);
    FILE *t = fdopen(slave, "w");
    const char *term = getenv("TERM");
    char *saved = term ? strdup(term) : NULL;
    setenv("TERM", "xterm", 1);
    cr_assert_eq(tb_progress_init_at(&p, t, TB_PROGRESS_AUTO, "x", 10, 1, 0), TB_OK);
    cr_expect_eq(p.mode, TB_PROGRESS_BAR);
    setenv("TERM", "dumb", 1);
    cr_assert_eq(tb_progress_init_at(&p, t, TB_PROGRESS_AUTO, "x", 10, 1, 0), TB_OK);
    cr_expect_eq(p.mode, TB_PROGRESS_PLAIN, "TERM=dumb gets plain lines");
    if (saved) setenv("TERM", saved, 1);
    else unsetenv("TERM");
    free(saved);
    fclose(t);
    close(master);
}

Test(progress, parse_mode)
{
    tb_progress_mode m;
    cr_expect_eq(tb_progress_parse_mode("auto", &m), TB_OK);
    cr_expect_eq(m, TB_PROGRESS_AUTO);
    cr_expect_eq(tb_progress_parse_mode("bar", &m), TB_OK);
    cr_expect_eq(m, TB_PROGRESS_BAR);
    cr_expect_eq(tb_progress_parse_mode("plain", &m), TB_OK);
    cr_expect_eq(m, TB_PROGRESS_PLAIN);
    cr_expect_eq(tb_progress_parse_mode("none", &m), TB_OK);
    cr_expect_eq(m, TB_PROGRESS_NONE);
    cr_expect_eq(tb_progress_parse_mode("fancy", &m), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "'fancy'"), "%s", tb_err_msg());
    cr_expect_eq(tb_progress_parse_mode(NULL, &m), TB_EINVAL);
}

/* A log line while a bar is on screen clears the bar first; the next update redraws it at once. */
Test(progress, log_lines_clear_the_bar)
{
    memout m;
    mem_open(&m);
    tb_progress p;
    cr_assert_eq(tb_progress_init_at(&p, m.f, TB_PROGRESS_BAR, "d", 0, 0, 0.0), TB_OK);
    tb_progress_update_at(&p, 1, -1, NAN, NAN, 1.0);
    fflush(m.f);
    size_t before = m.len;
    tb_log_set_level(TB_LOG_INFO);
    TB_INFO("a log line while the bar is shown");
    fflush(m.f);
    cr_expect_str_eq(m.buf + before, "\r\033[K");
    before = m.len;
    tb_progress_update_at(&p, 2, -1, NAN, NAN, 1.01); /* < 0.1 s later, but the bar was cleared */
    fflush(m.f);
    cr_expect_str_eq(m.buf + before, "\r[d] step 2 elapsed 0:00:01\033[K");
    before = m.len;
    tb_progress_free(&p);
    TB_INFO("after free: the hook is gone");
    fflush(m.f);
    cr_expect_str_eq(m.buf + before, "\n", "free ends the bar's line, and the log no longer touches it");
    mem_close(&m);
}
