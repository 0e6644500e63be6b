/* Thread count shared by the OpenMP kernels and threaded BLIS GEMMs of tb/model/ops.h. */
#include "tb/model/ops.h"

#include "tb/base/error.h"

#include <blis.h>
#include <omp.h>

int tb_ops_set_threads(int n)
{
    if (n < 1 || n > 4096)
        return TB_ERR(TB_EINVAL, "tb_ops_set_threads: thread count must be in [1, 4096], got %d", n);
    omp_set_num_threads(n);
    bli_thread_set_num_threads(n);
    return TB_OK;
}

int tb_ops_threads(void)
{
    return omp_get_max_threads();
}
