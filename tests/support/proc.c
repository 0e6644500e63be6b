/* proc.c - child processes and unique endpoints for integration tests. */
#include "proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

const char *tb_proc_ipc_endpoint(char *buf, size_t n)
{
    static int counter;
    snprintf(buf, n, "ipc:///tmp/tb-test-%ld-%d", (long)getpid(), counter++);
    unlink(buf + 6);
    return buf;
}

const char *tb_proc_tcp_endpoint(char *buf, size_t n)
{
    int port = 0, fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    if (port == 0) port = 30000 + (int)(getpid() % 20000);
    snprintf(buf, n, "tcp://127.0.0.1:%d", port);
    return buf;
}

pid_t tb_proc_fork(int (*fn)(void *arg), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = fn(arg);
#if defined(__SANITIZE_ADDRESS__)
        /* _exit skips LeakSanitizer's exit-time check: run it here; leaks fail the child. */
        if (__lsan_do_recoverable_leak_check()) rc = 98;
#endif
        fflush(stderr);
        _exit(rc & 0xff);
    }
    return pid;
}

pid_t tb_proc_spawn(char *const argv[])
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        fprintf(stderr, "cannot exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int tb_proc_wait(pid_t pid, int timeout_ms, int *code)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (code) *code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? -WTERMSIG(st) : -1000;
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            if (code) *code = -1000;
            return 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms >= timeout_ms) return -1;
        struct timespec d = {0, 5 * 1000000};
        nanosleep(&d, NULL);
    }
}

void tb_proc_kill(pid_t pid, int sig)
{
    if (pid > 0) kill(pid, sig);
}

void tb_proc_reap(pid_t pid)
{
    if (pid <= 0) return;
    if (waitpid(pid, NULL, WNOHANG) == pid) return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

const char *tb_proc_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/tb-test-XXXXXX");
    return mkdtemp(buf);
}

void tb_proc_rmdir(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

long tb_proc_peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* One command line from fmt/ap, with " 2> 'err_path'" appended when err_path is given. */
static int vsh(const char *err_path, const char *fmt, va_list ap)
{
    char cmd[16384];
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    if (n >= 0 && (size_t)n < sizeof cmd && err_path)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " 2> '%s'", err_path);
    if (n < 0 || (size_t)n >= sizeof cmd) {
        fprintf(stderr, "tb_proc_sh: command of %d bytes does not fit in %zu\n", n, sizeof cmd);
        return -2;
    }
    fflush(NULL);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int tb_proc_sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vsh(NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int tb_proc_sh_err(const char *err_path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vsh(err_path, fmt, ap);
    va_end(ap);
    return rc;
}
