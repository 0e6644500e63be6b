/* proc.h - child processes and unique endpoints for integration tests.
 *
 * Children are made with fork() alone (tb_proc_fork: runs a function and _exits with its
 * return value) or fork()+exec() (tb_proc_spawn). Fork before the test process creates threads
 * (a ZeroMQ context, BLIS, OpenMP): a child forked from a threaded parent may only exec.
 */
#ifndef TB_TEST_PROC_H
#define TB_TEST_PROC_H

#include <stddef.h>
#include <sys/types.h>

/* Writes a fresh "ipc:///tmp/tb-test-<pid>-<n>" into buf (and removes a stale socket file). */
const char *tb_proc_ipc_endpoint(char *buf, size_t n);

/* Writes "tcp://127.0.0.1:<port>" with a port that was free a moment ago (the kernel's pick). */
const char *tb_proc_tcp_endpoint(char *buf, size_t n);

/* Forks a child that runs fn(arg) and _exits with its return value (0..255); under ASan a leak
 * found at that point makes the exit status 98. -1 on failure. */
pid_t tb_proc_fork(int (*fn)(void *arg), void *arg);

/* Forks and execs argv[0] (a path) with argv; stdout/stderr are inherited. -1 on failure. */
pid_t tb_proc_spawn(char *const argv[]);

/* Waits up to timeout_ms for `pid`. Returns 0 when it ended: *code is its exit status (0..255)
 * or -signal when a signal killed it. Returns -1 on timeout (the child still runs). */
int tb_proc_wait(pid_t pid, int timeout_ms, int *code);

/* Sends `sig` to `pid`, ignoring a child that is already gone. */
void tb_proc_kill(pid_t pid, int sig);

/* Kills (SIGKILL) and reaps the child, if it still runs. For clean-up paths. */
void tb_proc_reap(pid_t pid);

/* Makes a fresh directory /tmp/tb-test-XXXXXX (path into buf); removes it with everything in
 * it (one level deep) with tb_proc_rmdir. */
const char *tb_proc_tmpdir(char *buf, size_t n);
void tb_proc_rmdir(const char *path);

/* Runs a printf-formatted command line with /bin/sh (system(3)) after flushing stdio. Returns
 * its exit status (0..255), -1 when a signal ended it or it could not run, -2 when the command
 * does not fit in 16 KiB (said on stderr). */
int tb_proc_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with the command's stderr written to err_path (replaced on each call). */
int tb_proc_sh_err(const char *err_path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The process's peak resident set (VmHWM) in KiB, or -1. */
long tb_proc_peak_rss_kb(void);

#endif
