/* clock.c - the monotonic clock; see tb/base/clock.h. */
#include "tb/base/clock.h"

#include <time.h>

double tb_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
