/* pipeline_run.c - starts the stages of a pipeline as child processes and supervises them. */
#include "pipeline.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/signals.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_LINE_MAX 4096   /* a longer stderr line is written in pieces */
#define RUN_POLL_MS 50
#define RUN_DRAIN_SECONDS 1.0 /* after the last stage exits, wait this long for its pipes to close */

typedef struct run_child {
    int fd;                 /* read end of its stderr pipe, -1 when closed */
    char buf[RUN_LINE_MAX];
    size_t len;
} run_child;

typedef struct runner {
    const tb_pipeline *p;
    FILE *log;
    const char *bin_dir;
    const tb_pipeline_run_opts *opts;
    double grace;
    int width;              /* name column */
    run_child *child;
    tb_pipeline_result *res;
    int running;
    int stopping;           /* a stage failed or a signal came: start nothing more */
    double kill_at;         /* when stopping: SIGKILL what is left at this time (0: done) */
    double *started;        /* per stage: start time */
    char start_err[1024];   /* why a stage could not be started ("" if all started) */
} runner;

static double run_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void tb_pipeline_describe_status(int st, char *buf, size_t cap)
{
    if (WIFEXITED(st)) snprintf(buf, cap, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else snprintf(buf, cap, "wait status 0x%x", (unsigned)st);
}

/* ---- stderr lines ------------------------------------------------------------------------ */

static void run_emit(runner *r, int i, const char *text, size_t len)
{
    char line[RUN_LINE_MAX + 128];
    int n = snprintf(line, sizeof line, "%-*s | %.*s\n", r->width, r->p->stages[i].name, (int)len, text);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
    fwrite(line, 1, (size_t)n, r->log);
    fflush(r->log);
}

/* Reads what is available from stage i's stderr; writes out every complete line. */
static void run_read(runner *r, int i)
{
    run_child *c = &r->child[i];
    for (;;) {
        ssize_t got = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (got <= 0) { /* EOF or error: flush the partial line, close */
            if (c->len) run_emit(r, i, c->buf, c->len);
            c->len = 0;
            close(c->fd);
            c->fd = -1;
            return;
        }
        c->len += (size_t)got;
        size_t start = 0;
        for (size_t k = 0; k < c->len; k++)
            if (c->buf[k] == '\n') {
                size_t end = k > start && c->buf[k - 1] == '\r' ? k - 1 : k;
                run_emit(r, i, c->buf + start, end - start);
                start = k + 1;
            }
        if (start == 0 && c->len == sizeof c->buf) { /* no newline in a full buffer */
            run_emit(r, i, c->buf, c->len);
            start = c->len;
        }
        memmove(c->buf, c->buf + start, c->len - start);
        c->len -= start;
    }
}

/* ---- starting ---------------------------------------------------------------------------- */

/* In the child: never returns. */
static void run_exec_child(const runner *r, int i, int errfd, pid_t runner_pid)
{
    const tb_pipeline_stage *s = &r->p->stages[i];
    setpgid(0, 0);
    /* if the runner dies without stopping us (SIGKILL, crash), we get SIGTERM */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != runner_pid) _exit(128 + SIGTERM);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0 && in != STDIN_FILENO) {
        dup2(in, STDIN_FILENO);
        close(in);
    }
    if (s->stdout_path) { /* written under a temporary name, renamed into place when the stage exits 0 */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", s->stdout_path);
        int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0) {
            dprintf(errfd, "cannot open stdout file '%s': %s\n", tmp, strerror(errno));
            _exit(127);
        }
        dup2(out, STDOUT_FILENO);
        close(out);
    }
    dup2(errfd, STDERR_FILENO);
    if (!getenv("OMP_WAIT_POLICY")) setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    char threads[16];
    snprintf(threads, sizeof threads, "%d", tb_pipeline_stage_threads(r->p, i));
    setenv("TB_THREADS", threads, 1);
    setenv("TB_STAGE", s->name, 1);
    if (r->bin_dir && *r->bin_dir) {
        const char *path = getenv("PATH");
        size_t n = strlen(r->bin_dir) + (path ? strlen(path) : 0) + 2;
        char *np = malloc(n);
        if (np) {
            snprintf(np, n, "%s%s%s", r->bin_dir, path ? ":" : "", path ? path : "");
            setenv("PATH", np, 1);
        }
    }
    char *const *argv = r->opts && r->opts->argv && r->opts->argv[i] ? r->opts->argv[i] : s->argv;
    execv(s->program ? s->program : s->argv[0], argv);
    dprintf(STDERR_FILENO, "cannot start '%s': %s\n", s->program ? s->program : s->argv[0], strerror(errno));
    _exit(127);
}

static int run_start(runner *r, int i)
{
    const tb_pipeline_stage *s = &r->p->stages[i];
    if (r->opts && r->opts->on_stage && r->opts->on_stage(r->opts->ctx, i, TB_PIPELINE_EV_START, 0.0) != TB_OK)
        TB_WARN("%s: %s", s->name, tb_err_msg());
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return TB_ERR(TB_EIO, "cannot create a pipe for stage '%s': %s", s->name, strerror(errno));
    fflush(NULL);
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return TB_ERR(TB_EIO, "cannot start stage '%s': fork failed: %s", s->name, strerror(e));
    }
    if (pid == 0) {
        close(fds[0]);
        run_exec_child(r, i, fds[1], self);
    }
    setpgid(pid, pid); /* also done in the child: whichever runs first */
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    r->child[i].fd = fds[0];
    r->res->pid[i] = pid;
    r->started[i] = run_now();
    r->res->state[i] = TB_STAGE_RUNNING;
    r->running++;
    TB_INFO("started %s (pid %d)", s->name, (int)pid);
    return TB_OK;
}

/* Starts every pending stage whose dependencies all exited 0. */
static int run_start_ready(runner *r)
{
    for (int i = 0; i < r->p->count; i++) {
        if (r->res->state[i] != TB_STAGE_PENDING) continue;
        const tb_pipeline_stage *s = &r->p->stages[i];
        int ready = 1;
        for (int a = 0; a < s->nafter && ready; a++) {
            int st = r->res->state[s->after_idx[a]];
            ready = st == TB_STAGE_DONE || st == TB_STAGE_SKIPPED;
        }
        if (!ready) continue;
        int rc = run_start(r, i);
        if (rc != TB_OK) return rc;
    }
    return TB_OK;
}

/* ---- stopping ---------------------------------------------------------------------------- */

/* Sends sig to the process group of every stage that still runs, and (unless only_running) of
 * every stage whose stderr is still open although it exited: something it started still holds
 * it. A group whose leader was reaped and whose pipe is closed is left alone - its id may
 * already belong to an unrelated process. */
static void run_signal_all(runner *r, int sig, int only_running)
{
    for (int i = 0; i < r->p->count; i++) {
        pid_t pid = r->res->pid[i];
        if (pid <= 0) continue;
        int running = r->res->state[i] == TB_STAGE_RUNNING;
        if (running || (!only_running && r->child[i].fd >= 0)) kill(-pid, sig);
    }
}

static void run_stop(runner *r, int sig, const char *why)
{
    if (r->stopping) return;
    r->stopping = 1;
    r->kill_at = run_now() + r->grace;
    if (r->running)
        TB_WARN("%s: sending SIG%s to the running stages (SIGKILL after %.1f s)", why,
                sig == SIGINT ? "INT" : "TERM", r->grace);
    run_signal_all(r, sig, 1);
}

/* A stage's stdout file: renamed into place when it exited 0, removed otherwise. */
static int run_stdout_done(runner *r, int i, int ok)
{
    const char *path = r->p->stages[i].stdout_path;
    if (!path) return TB_OK;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!ok) {
        unlink(tmp);
        return TB_OK;
    }
    if (rename(tmp, path) != 0)
        return TB_ERR(TB_EIO, "cannot rename its stdout file '%s' to '%s': %s", tmp, path, strerror(errno));
    return TB_OK;
}

static void run_reap(runner *r)
{
    for (int i = 0; i < r->p->count; i++) {
        if (r->res->state[i] != TB_STAGE_RUNNING) continue;
        int st = 0;
        pid_t w = waitpid(r->res->pid[i], &st, WNOHANG);
        if (w == 0 || (w < 0 && errno == EINTR)) continue;
        if (w < 0) st = 0x7f00; /* cannot happen for our own child; count it as exit 127 */
        r->res->state[i] = TB_STAGE_DONE;
        r->res->wait_status[i] = st;
        r->res->seconds[i] = run_now() - r->started[i];
        r->running--;
        char desc[96];
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (run_stdout_done(r, i, ok) != TB_OK) {
            TB_ERROR("%s: %s", r->p->stages[i].name, tb_err_msg());
            st = r->res->wait_status[i] = 1 << 8; /* exit status 1: its output is not in place */
            ok = 0;
        }
        tb_pipeline_describe_status(st, desc, sizeof desc);
        if (ok) {
            TB_INFO("%s finished", r->p->stages[i].name);
            if (r->opts && r->opts->on_stage &&
                r->opts->on_stage(r->opts->ctx, i, TB_PIPELINE_EV_OK, r->res->seconds[i]) != TB_OK)
                TB_WARN("%s: %s", r->p->stages[i].name, tb_err_msg());
        } else if (!r->stopping) {
            r->res->failed = i;
            TB_ERROR("%s failed: %s", r->p->stages[i].name, desc);
            run_stop(r, SIGTERM, "a stage failed");
        } else {
            TB_INFO("%s stopped: %s", r->p->stages[i].name, desc);
        }
    }
}

static void run_handle_signals(runner *r, int *handled)
{
    tb_signals_drain_fd();
    int count = tb_signals_count();
    if (count <= *handled) return;
    int sig = tb_signals_pending();
    if (*handled == 0) {
        r->res->interrupted = sig;
        run_stop(r, sig == SIGINT ? SIGINT : SIGTERM, sig == SIGINT ? "interrupted" : "terminated");
    }
    if (count >= 2 && r->kill_at > 0) {
        TB_WARN("second signal: killing every stage now");
        r->kill_at = run_now();
    }
    *handled = count;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static int run_loop(runner *r)
{
    int rc = TB_OK;
    int n = r->p->count, handled = 0;
    struct pollfd *pf = calloc((size_t)n + 1, sizeof *pf);
    int *who = calloc((size_t)n + 1, sizeof *who);
    TB_CHECK(pf && who, TB_ENOMEM, "out of memory supervising %d stages", n);
    double drain_until = 0;
    for (;;) {
        if (!r->stopping) {
            int src = run_start_ready(r);
            if (src != TB_OK) {
                snprintf(r->start_err, sizeof r->start_err, "%s", tb_err_msg());
                TB_ERROR("%s", r->start_err);
                run_stop(r, SIGTERM, "cannot start a stage");
            }
        }
        int open_fds = 0;
        for (int i = 0; i < n; i++) open_fds += r->child[i].fd >= 0;
        if (r->running == 0) {
            if (open_fds == 0) break;
            if (drain_until == 0) drain_until = run_now() + RUN_DRAIN_SECONDS;
            else if (run_now() >= drain_until) break; /* something the stage started keeps its stderr */
        }
        int k = 0;
        if (tb_signals_fd() >= 0) {
            pf[k] = (struct pollfd){.fd = tb_signals_fd(), .events = POLLIN};
            who[k++] = -1;
        }
        for (int i = 0; i < n; i++)
            if (r->child[i].fd >= 0) {
                pf[k] = (struct pollfd){.fd = r->child[i].fd, .events = POLLIN};
                who[k++] = i;
            }
        int pr = poll(pf, (nfds_t)k, RUN_POLL_MS);
        if (pr > 0)
            for (int j = 0; j < k; j++)
                if (pf[j].revents && who[j] >= 0) run_read(r, who[j]);
        run_handle_signals(r, &handled);
        run_reap(r);
        if (r->stopping && r->kill_at > 0 && run_now() >= r->kill_at) {
            if (r->running) TB_WARN("grace period over: sending SIGKILL to the stages still running");
            run_signal_all(r, SIGKILL, 0);
            r->kill_at = 0;
        }
    }
error:
    free(pf);
    free(who);
    return rc;
}

static int run_alloc_result(tb_pipeline_result *res, int n)
{
    memset(res, 0, sizeof *res);
    res->failed = -1;
    res->state = calloc((size_t)n + 1, sizeof *res->state);
    res->wait_status = calloc((size_t)n + 1, sizeof *res->wait_status);
    res->pid = calloc((size_t)n + 1, sizeof *res->pid);
    res->seconds = calloc((size_t)n + 1, sizeof *res->seconds);
    if (!res->state || !res->wait_status || !res->pid || !res->seconds)
        return TB_ERR(TB_ENOMEM, "out of memory for the state of %d stages", n);
    return TB_OK;
}

void tb_pipeline_result_free(tb_pipeline_result *res)
{
    free(res->state);
    free(res->wait_status);
    free(res->pid);
    free(res->seconds);
    memset(res, 0, sizeof *res);
    res->failed = -1;
}

int tb_pipeline_run(const tb_pipeline *p, const tb_pipeline_run_opts *opts, tb_pipeline_result *res)
{
    int rc = TB_OK;
    tb_pipeline_result local;
    if (!res) res = &local;
    runner r = {0};
    TB_TRY(run_alloc_result(res, p->count));
    r.p = p;
    r.res = res;
    r.log = opts && opts->log ? opts->log : stderr;
    r.bin_dir = opts ? opts->bin_dir : NULL;
    r.opts = opts;
    r.grace = opts && opts->grace > 0 ? opts->grace : 5.0;
    r.child = calloc((size_t)p->count + 1, sizeof *r.child);
    r.started = calloc((size_t)p->count + 1, sizeof *r.started);
    TB_CHECK(r.child && r.started, TB_ENOMEM, "out of memory for %d stages", p->count);
    for (int i = 0; i < p->count; i++) {
        r.child[i].fd = -1;
        if (opts && opts->skip && opts->skip[i]) res->state[i] = TB_STAGE_SKIPPED;
        int w = (int)strlen(p->stages[i].name);
        if (w > r.width) r.width = w;
    }
    if (tb_signals_fd() < 0) TB_TRY(tb_signals_install(TB_SIGNALS_NO_HARD_KILL));
    TB_TRY(run_loop(&r));
    run_signal_all(&r, SIGKILL, 0); /* whatever a stage left behind holding its stderr */
    for (int i = 0; i < p->count; i++) {
        if (r.child[i].fd >= 0) {
            if (r.child[i].len) run_emit(&r, i, r.child[i].buf, r.child[i].len);
            close(r.child[i].fd);
            r.child[i].fd = -1;
        }
        if (res->state[i] == TB_STAGE_PENDING) {
            res->state[i] = TB_STAGE_NOT_RUN;
            TB_WARN("%s was not started", p->stages[i].name);
        }
    }
    if (res->failed >= 0) {
        char desc[96];
        tb_pipeline_describe_status(res->wait_status[res->failed], desc, sizeof desc);
        rc = TB_ERR(TB_EPEER, "stage '%s' (%s:%d) failed: %s", p->stages[res->failed].name, p->origin,
                    p->stages[res->failed].line, desc);
    } else if (r.start_err[0]) {
        rc = TB_ERR(TB_EIO, "%s", r.start_err);
    } else if (res->interrupted) {
        rc = TB_ERR(TB_EINTR, "interrupted by %s; the stages were stopped", strsignal(res->interrupted));
    }
error:
    if (r.child)
        for (int i = 0; i < p->count; i++)
            if (r.child[i].fd >= 0) close(r.child[i].fd);
    free(r.child);
    free(r.started);
    if (res == &local) tb_pipeline_result_free(&local);
    return rc;
}

void tb_pipeline_state_text(const tb_pipeline_result *res, int i, char *buf, size_t cap)
{
    int st = res->wait_status[i];
    if (res->state[i] == TB_STAGE_SKIPPED) {
        snprintf(buf, cap, "skipped: up to date");
    } else if (res->state[i] != TB_STAGE_DONE) {
        snprintf(buf, cap, "%s", res->state[i] == TB_STAGE_RUNNING ? "still running" : "not started");
    } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        snprintf(buf, cap, "ok");
    } else {
        char why[96];
        tb_pipeline_describe_status(st, why, sizeof why);
        snprintf(buf, cap, "%s: %s", i == res->failed ? "FAILED" : "stopped", why);
    }
}
