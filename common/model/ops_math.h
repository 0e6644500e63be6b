/* ops_math.h - private to the tb/model/ops.h kernels: branch-free fp32 exp and erf
 * that gcc vectorises inside simple loops (a libm call in a loop blocks vectorisation).
 * Accuracy is checked against double-precision libm in tests/unit/test_ops.c. */
#ifndef TB_OPS_MATH_H
#define TB_OPS_MATH_H

#include <stdint.h>
#include <string.h>

#include "tb/base/rng.h"

/* Kernels including this header are compiled without trapping-math: FP exception flags are never
 * read in tinybert-c, and without it gcc will not if-convert the float selects below, which
 * leaves every loop that uses them scalar. Results are unchanged (no value-changing flag). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#if defined(__clang__) /* clang reports `omp simd` loops it leaves scalar; they are still correct */
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

/* Kernels marked OPS_CLONES are compiled for AVX-512, AVX2 and baseline x86-64 and the best one
 * is picked at load time (ifunc), so the default build stays portable. Elementwise results are
 * the same on every CPU; sums inside a row may round differently between vector widths (the
 * same CPU always gives the same bits). -DTB_NO_CLONES turns this off. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(TB_NO_CLONES)
#define OPS_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define OPS_CLONES
#endif

/* Elements per call of a cloned kernel inside an OpenMP loop (the call is per chunk, not per element). */
#define OPS_CHUNK 4096

static inline float ops_bits_to_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t ops_f_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* e^x for fp32, max relative error ~2 ulp; x < -87.3 gives 0, x > 88.7 is clamped. */
static inline __attribute__((always_inline)) float ops_expf(float x)
{
    const float big = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = x > 88.7f ? 88.7f : x;
    xc = xc < -87.3f ? -87.3f : xc;
    float t = xc * 1.44269504088896341f + big;
    float n = t - big;
    int32_t ni = (int32_t)(ops_f_to_bits(t) - ops_f_to_bits(big));
    float r = xc - n * 0.693145751953125f;   /* ln 2, high part (exact in fp32 times n) */
    r = r - n * 1.428606765330187e-06f;      /* ln 2, low part */
    /* e^r on |r| <= ln2/2: Taylor to degree 7 (truncation < 3e-9 relative) */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    float y = ops_bits_to_f(ops_f_to_bits(p) + ((uint32_t)ni << 23));
    return x < -87.3f ? 0.0f : y;
}

/* 1 + erf(a), accurate in RELATIVE terms also for a << 0 (the left tail of GELU), where it is
 * computed as exp(r) instead of 1 - (1 - exp(r)). Two minimax pieces (|a| below / above 0.927734375),
 * both evaluated and one selected, so loops over it vectorise. */
static inline __attribute__((always_inline)) float ops_one_plus_erf(float a)
{
    const float t = a < 0.0f ? -a : a, s = a * a;
    /* |a| <= 0.927734375: erf(a) = a + a * P(a^2) */
    float q = -5.96761703e-4f;
    q = q * s + 4.99119423e-3f;
    q = q * s - 2.67681349e-2f;
    q = q * s + 1.12819925e-1f;
    q = q * s - 3.76125336e-1f;
    q = q * s + 1.28379166e-1f;
    const float small = 1.0f + (q * a + a);
    /* |a| > 0.927734375: erf(|a|) = 1 - exp(R(|a|)) */
    float r = -1.72853470e-5f * t + 3.83197126e-4f;
    const float u = -3.88396438e-3f * t + 2.42546219e-2f;
    r = r * s + u;
    r = r * t - 1.06777877e-1f;
    r = r * t - 6.34846687e-1f;
    r = r * t - 1.28717512e-1f;
    r = r * t - t;
    const float e = ops_expf(r);
    const float large = a < 0.0f ? e : 2.0f - e;
    return t > 0.927734375f ? large : small;
}

#endif
