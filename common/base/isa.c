/* isa.c - the vector path of kernels with run-time dispatch (see isa.h). */
#include "tb/base/isa.h"

#include <stdlib.h>
#include <string.h>

int tb_isa_level(const char *cap_env, int need_fma)
{
#if defined(__x86_64__) && defined(__GNUC__)
    const char *cap = cap_env ? getenv(cap_env) : NULL;
    __builtin_cpu_init();
    int l = __builtin_cpu_supports("avx512f") ? 2
            : __builtin_cpu_supports("avx2") && (!need_fma || __builtin_cpu_supports("fma")) ? 1 : 0;
    if (cap && !strcmp(cap, "scalar")) l = 0;
    if (cap && !strcmp(cap, "avx2") && l > 1) l = 1;
    return l;
#else
    (void)cap_env;
    (void)need_fma;
    return 0;
#endif
}
