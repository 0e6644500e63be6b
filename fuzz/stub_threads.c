/* stub_threads.c - the two thread-count queries of tb/base/threads.h for fuzz builds, which link
 * no BLIS or OpenMP. The pipeline parser only asks them for default `threads` values. */
#include "tb/base/threads.h"

#include "tb/base/error.h"

int tb_threads_available(void) { return 2; }

int tb_threads_default(int *out)
{
    *out = 2;
    return TB_OK;
}
