/* tb/base/threads.h - one thread count per stage, for BLIS and OpenMP alike.
 *
 * Stages that run side by side on one host must not fight for the cores. Two things matter:
 *
 * 1. The thread count. The default is the number of cores this process may run on
 *    (sched_getaffinity, so `taskset` and container CPU sets are honoured), unless the TB_THREADS
 *    environment variable says otherwise; `--threads N` overrides both. tb-pipeline sets
 *    TB_THREADS for each stage it starts so that concurrent stages share the cores.
 *
 * 2. OpenMP's wait policy. By default libgomp's idle threads spin for a while after each
 *    parallel region; two co-located stages then burn each other's cores while waiting
 *    (OMP_WAIT_POLICY=PASSIVE measured +40 % for co-located PyTorch on this project's machines).
 *    libgomp reads OMP_WAIT_POLICY once, when it is loaded - before main() runs - so setting it
 *    from inside the process is too late. tb_threads_passive_reexec() therefore re-executes the
 *    stage (same pid, same arguments) with OMP_WAIT_POLICY=PASSIVE when the variable is unset.
 *    An explicit OMP_WAIT_POLICY in the environment is always respected.
 */
#ifndef TB_THREADS_H
#define TB_THREADS_H

/* Cores available to this process (sched_getaffinity; 1 if that fails). */
int tb_threads_available(void);

/* The default thread count: TB_THREADS if set (a positive integer, else an error), otherwise
 * tb_threads_available(). */
int tb_threads_default(int *out);

/* Sets BLIS's and OpenMP's thread counts to `n` (n <= 0: tb_threads_default). Call once, before
 * the first BLIS call or parallel region. */
int tb_threads_setup(int n);

/* The thread count set by tb_threads_setup (0 before it was called). */
int tb_threads_count(void);

/* If OMP_WAIT_POLICY is unset: sets it to PASSIVE and re-executes /proc/self/exe with `argv`
 * and the new environment. Returns only when no re-exec was needed (TB_OK) or when it failed
 * (an error status; the stage can go on with libgomp's default policy). Call it first thing in
 * main(), before any threads exist. */
int tb_threads_passive_reexec(char **argv);

#endif
