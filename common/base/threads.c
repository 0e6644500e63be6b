/* threads.c - thread counts for BLIS and OpenMP, and OpenMP's passive wait policy. */
#include "tb/base/threads.h"

#include "tb/base/error.h"

#include <blis.h>
#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int threads_set;

int tb_threads_available(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

int tb_threads_default(int *out)
{
    const char *env = getenv("TB_THREADS");
    if (env && *env) {
        char *end = NULL;
        errno = 0;
        long v = strtol(env, &end, 10);
        if (errno != 0 || *end != '\0' || v < 1 || v > 4096)
            return TB_ERR(TB_EINVAL, "TB_THREADS='%s' is not a thread count (use an integer from 1 to 4096, "
                          "or unset it to use every available core)", env);
        *out = (int)v;
        return TB_OK;
    }
    *out = tb_threads_available();
    return TB_OK;
}

int tb_threads_setup(int n)
{
    int rc = TB_OK;
    if (n <= 0) TB_TRY(tb_threads_default(&n));
    TB_CHECK(n <= 4096, TB_EINVAL, "thread count %d is too large (at most 4096)", n);
    omp_set_num_threads(n);
    bli_thread_set_num_threads(n);
    threads_set = n;
error:
    return rc;
}

int tb_threads_count(void) { return threads_set; }

int tb_threads_passive_reexec(char **argv)
{
    if (getenv("OMP_WAIT_POLICY")) return TB_OK;
    if (!argv || !argv[0]) return TB_ERR(TB_EINVAL, "no argv to re-execute with");
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0)
        return TB_ERR(TB_EIO, "cannot set OMP_WAIT_POLICY: %s", strerror(errno));
    execv("/proc/self/exe", argv);
    return TB_ERR(TB_EIO, "cannot re-execute with OMP_WAIT_POLICY=PASSIVE (%s); OpenMP threads will "
                  "spin while idle - set OMP_WAIT_POLICY=PASSIVE in the environment to avoid this",
                  strerror(errno));
}
