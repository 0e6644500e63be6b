/* signals.c - SIGINT/SIGTERM recorded in sig_atomic_t flags, plus a self-pipe to wake pollers. */
#include "tb/base/signals.h"

#include "tb/base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t sig_first;   /* first signal number, 0 when none */
static volatile sig_atomic_t sig_count;
static volatile sig_atomic_t sig_hard_kill = 1;
static volatile sig_atomic_t sig_wake_fd = -1;
static int sig_pipe[2] = {-1, -1};
static int sig_installed;
static struct sigaction sig_old_int, sig_old_term;

static void sig_handler(int signo)
{
    int saved = errno;
    if (signo == SIGINT && sig_hard_kill && sig_count > 0) {
        /* Second SIGINT: die now, with the default action, so the exit status says SIGINT. */
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
    }
    if (sig_first == 0) sig_first = signo;
    if (sig_count < 1000) sig_count = sig_count + 1;
    if (sig_wake_fd >= 0) {
        char c = 1;
        ssize_t w = write(sig_wake_fd, &c, 1); /* a full pipe already means "wake up" */
        (void)w;
    }
    errno = saved;
}

int tb_signals_install(unsigned flags)
{
    sig_hard_kill = (flags & TB_SIGNALS_NO_HARD_KILL) ? 0 : 1;
    if (sig_installed) return TB_OK;
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return TB_ERR(TB_EIO, "cannot create the signal wake-up pipe: %s", strerror(errno));
    sig_wake_fd = sig_pipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sig_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* poll/zmq_poll still return EINTR; plain reads are restarted */
    if (sigaction(SIGINT, &sa, &sig_old_int) != 0 || sigaction(SIGTERM, &sa, &sig_old_term) != 0) {
        int e = errno;
        sigaction(SIGINT, &sig_old_int, NULL);
        close(sig_pipe[0]);
        close(sig_pipe[1]);
        sig_pipe[0] = sig_pipe[1] = -1;
        sig_wake_fd = -1;
        return TB_ERR(TB_EIO, "cannot install SIGINT/SIGTERM handlers: %s", strerror(e));
    }
    sig_first = 0;
    sig_count = 0;
    sig_installed = 1;
    return TB_OK;
}

void tb_signals_restore(void)
{
    if (!sig_installed) return;
    sigaction(SIGINT, &sig_old_int, NULL);
    sigaction(SIGTERM, &sig_old_term, NULL);
    sig_wake_fd = -1;
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    sig_pipe[0] = sig_pipe[1] = -1;
    sig_installed = 0;
    sig_first = 0;
    sig_count = 0;
}

int tb_signals_pending(void) { return sig_first; }

int tb_signals_count(void) { return sig_count; }

void tb_signals_reset(void)
{
    tb_signals_drain_fd();
    sig_first = 0;
    sig_count = 0;
}

int tb_signals_fd(void) { return sig_pipe[0]; }

void tb_signals_drain_fd(void)
{
    if (sig_pipe[0] < 0) return;
    char buf[64];
    while (read(sig_pipe[0], buf, sizeof buf) > 0) {
    }
}
