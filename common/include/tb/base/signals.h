/* tb/base/signals.h - SIGINT/SIGTERM as a flag that long loops and stream calls poll.
 *
 * A stage installs the handlers once (tb_cli_stage_start does it). The first SIGINT or SIGTERM
 * only records itself: loops poll tb_signals_pending() and stop cleanly (finish the step, close
 * the streams, exit non-zero). A second SIGINT kills the process at once (default action), so an
 * impatient user is never stuck behind a hung shutdown. Code that must do its own clean-up on a
 * second signal (the pipeline runner kills its children first) installs with
 * TB_SIGNALS_NO_HARD_KILL and counts signals with tb_signals_count().
 *
 * tb_signals_fd() is the read end of a non-blocking self-pipe that becomes readable whenever a
 * handled signal arrives, so poll()/zmq_poll() loops wake up at once instead of at their next
 * timeout. Drain it with tb_signals_drain_fd().
 */
#ifndef TB_SIGNALS_H
#define TB_SIGNALS_H

enum {
    TB_SIGNALS_NO_HARD_KILL = 1 << 0, /* a second SIGINT is counted, not fatal */
};

/* Installs SIGINT and SIGTERM handlers (and creates the wake-up pipe). Idempotent: a second
 * call only updates `flags`. Pair with tb_signals_restore. */
int tb_signals_install(unsigned flags);
/* Restores the handlers that were in place before tb_signals_install and closes the pipe. */
void tb_signals_restore(void);

/* The first signal received since install/reset (SIGINT or SIGTERM), or 0 when none. */
int tb_signals_pending(void);
/* How many SIGINT/SIGTERM arrived since install/reset. */
int tb_signals_count(void);
/* Forgets the signals received so far (the pipe is drained too). */
void tb_signals_reset(void);

/* Read end of the wake-up pipe, or -1 when not installed. */
int tb_signals_fd(void);
void tb_signals_drain_fd(void);

#endif
