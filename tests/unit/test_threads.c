/* Unit tests: thread counts (TB_THREADS, affinity) and the SIGINT/SIGTERM flags. */
#include <blis.h>
#include <criterion/criterion.h>
#include <omp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tb/base/error.h"
#include "tb/base/signals.h"
#include "tb/base/threads.h"

static int affinity_count(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    return CPU_COUNT(&set);
}

Test(threads, default_is_affinity_or_tb_threads)
{
    unsetenv("TB_THREADS");
    int n = 0;
    cr_assert_eq(tb_threads_default(&n), TB_OK);
    cr_expect_eq(n, affinity_count());
    cr_expect_eq(tb_threads_available(), affinity_count());
    setenv("TB_THREADS", "3", 1);
    cr_assert_eq(tb_threads_default(&n), TB_OK);
    cr_expect_eq(n, 3);
    const char *bad[] = {"0", "-2", "two", "3x", "99999"};
    for (int k = 0; k < 5; k++) {
        setenv("TB_THREADS", bad[k], 1);
        cr_expect_eq(tb_threads_default(&n), TB_EINVAL, "TB_THREADS=%s accepted", bad[k]);
        cr_expect(strstr(tb_err_msg(), "TB_THREADS"), "%s", tb_err_msg());
    }
    unsetenv("TB_THREADS");
}

Test(threads, setup_sets_blis_and_openmp)
{
    unsetenv("TB_THREADS");
    cr_assert_eq(tb_threads_setup(3), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(tb_threads_count(), 3);
    cr_expect_eq(omp_get_max_threads(), 3);
    cr_expect_eq(bli_thread_get_num_threads(), 3);
    cr_assert_eq(tb_threads_setup(0), TB_OK);
    cr_expect_eq(tb_threads_count(), affinity_count());
    cr_expect_eq(omp_get_max_threads(), affinity_count());
    cr_expect_eq(tb_threads_setup(5000), TB_EINVAL);
}

/* With OMP_WAIT_POLICY set, nothing is re-executed and the setting is kept. (The re-execution
 * itself is checked in tests/integration/test_pipeline.c, on the tb-pipeline executable.) */
Test(threads, passive_reexec_respects_an_explicit_policy)
{
    setenv("OMP_WAIT_POLICY", "ACTIVE", 1);
    char *argv[] = {(char *)"x", NULL};
    cr_expect_eq(tb_threads_passive_reexec(argv), TB_OK);
    cr_expect_str_eq(getenv("OMP_WAIT_POLICY"), "ACTIVE");
    cr_expect_eq(tb_threads_passive_reexec(NULL), TB_OK);
}

Test(signals, flag_count_and_wakeup_fd)
{
    cr_assert_eq(tb_signals_install(TB_SIGNALS_NO_HARD_KILL), TB_OK);
    cr_expect_eq(tb_signals_pending(), 0);
    int fd = tb_signals_fd();
    cr_assert_geq(fd, 0);
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    cr_expect_eq(poll(&pf, 1, 0), 0, "wake-up fd readable before any signal");
    raise(SIGTERM);
    cr_expect_eq(tb_signals_pending(), SIGTERM);
    cr_expect_eq(tb_signals_count(), 1);
    cr_expect_eq(poll(&pf, 1, 0), 1, "wake-up fd not readable after a signal");
    raise(SIGINT);
    raise(SIGINT); /* NO_HARD_KILL: counted, not fatal */
    cr_expect_eq(tb_signals_pending(), SIGTERM, "the first signal is kept");
    cr_expect_eq(tb_signals_count(), 3);
    tb_signals_reset();
    cr_expect_eq(tb_signals_pending(), 0);
    cr_expect_eq(tb_signals_count(), 0);
    cr_expect_eq(poll(&pf, 1, 0), 0, "reset drains the wake-up fd");
    tb_signals_restore();
    cr_expect_eq(tb_signals_fd(), -1);
}

Test(signals, second_sigint_kills_at_once)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (tb_signals_install(0) != TB_OK) _exit(20);
        raise(SIGINT);
        if (tb_signals_pending() != SIGINT) _exit(21);
        raise(SIGINT); /* must not return */
        _exit(22);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGINT, "status 0x%x (exit %d)", st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

Test(signals, sigterm_twice_is_not_fatal)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (tb_signals_install(0) != TB_OK) _exit(20);
        raise(SIGTERM);
        raise(SIGTERM);
        _exit(tb_signals_count() == 2 && tb_signals_pending() == SIGTERM ? 0 : 23);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
}
