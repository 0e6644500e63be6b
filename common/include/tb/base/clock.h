/* tb/base/clock.h - the monotonic clock in seconds, for durations (step times, timeouts). */
#ifndef TB_CLOCK_H
#define TB_CLOCK_H

/* Seconds on CLOCK_MONOTONIC (an arbitrary origin: only differences mean anything). */
double tb_now_s(void);

#endif
