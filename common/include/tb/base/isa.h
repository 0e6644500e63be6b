/* tb/base/isa.h - which x86 vector path a kernel with run-time dispatch takes (rng.c, ops_gemm_small.c). */
#ifndef TB_ISA_H
#define TB_ISA_H

/* 2 = AVX-512F, 1 = AVX2 (and FMA when need_fma), 0 = plain C: the best this CPU has, capped by
 * the environment variable `cap_env` (= scalar | avx2) so that tests can run every path on one
 * machine. Callers cache the answer (it cannot change during a run). Always 0 off x86-64. */
int tb_isa_level(const char *cap_env, int need_fma);

#endif
