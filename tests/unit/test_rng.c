/* Unit tests: Philox4x32-10 against the Random123 known-answer vectors, and stream statistics. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "tb/base/rng.h"

/* Known-answer tests from Random123 (kat_vectors: philox4x32 10 rounds). */
Test(rng, philox4x32_10_known_answers)
{
    struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t t = 0; t < sizeof kat / sizeof kat[0]; t++) {
        uint32_t out[4];
        tb_rng_key k = {{kat[t].key[0], kat[t].key[1]}};
        tb_philox4x32(k, kat[t].ctr, out);
        for (int i = 0; i < 4; i++) cr_assert_eq(out[i], kat[t].out[i], "kat %zu word %d: %08x", t, i, out[i]);
    }
}

Test(rng, uniform_is_position_addressable)
{
    tb_rng_key k = tb_rng_key_make(42, TB_RNG_DROPOUT);
    float all[103], part[50];
    tb_rng_uniform(k, 1, 2, 0, all, 103);
    tb_rng_uniform(k, 1, 2, 37, part, 50);
    for (int i = 0; i < 50; i++) cr_assert_eq(part[i], all[37 + i]);
    float other[103];
    tb_rng_uniform(k, 1, 3, 0, other, 103);
    int same = 0;
    for (int i = 0; i < 103; i++) same += other[i] == all[i];
    cr_assert_lt(same, 3, "different streams must differ");
}

Test(rng, normal_moments)
{
    enum { N = 200000 };
    static float v[N];
    tb_rng_normal(tb_rng_key_make(7, TB_RNG_INIT), 0, 0, 0.0f, 0.02f, v, N);
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) { s += v[i]; s2 += (double)v[i] * v[i]; }
    double mean = s / N, var = s2 / N - mean * mean;
    /* standard errors: mean 0.02/sqrt(N) = 4.5e-5; std of the variance estimate ~ sqrt(2/N) relative */
    cr_assert_lt(fabs(mean), 5 * 4.5e-5, "mean %g", mean);
    cr_assert_lt(fabs(sqrt(var) / 0.02 - 1.0), 5 * sqrt(0.5 / N), "std %g", sqrt(var));
}

/* Element i of a stream from its definition: word i % 4 of Philox block (i / 4 as two words,
 * stream_lo, stream_hi), as (w >> 8) * 2^-24. tb_philox4x32 is pinned by the known answers. */
static float uniform_ref(tb_rng_key k, uint32_t hi, uint32_t lo, uint64_t i)
{
    uint32_t ctr[4] = {(uint32_t)(i >> 2), (uint32_t)(i >> 34), lo, hi}, w[4];
    tb_philox4x32(k, ctr, w);
    return (float)(w[i & 3] >> 8) * (1.0f / 16777216.0f);
}

/* Every (first, n) alignment against the per-element definition, with block numbers that carry
 * from the low counter word into the high one inside a vector. */
static void check_uniform_matches_definition(void)
{
    static float out[1100];
    tb_rng_key k = tb_rng_key_make(2024, TB_RNG_DROPOUT);
    const uint64_t firsts[] = {0, 1, 2, 3, 5, 63, 64, 1000003, ((uint64_t)1 << 34) - 4 * 21 + 2,
                               ((uint64_t)1 << 34) - 4 * 3, ((uint64_t)1 << 35) - 130};
    const size_t ns[] = {0, 1, 3, 4, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 1031};
    for (size_t f = 0; f < sizeof firsts / sizeof firsts[0]; f++) {
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            const size_t n = ns[t];
            out[n] = -1.0f; /* guard: nothing written past n */
            tb_rng_uniform(k, 0x01020304u, 0x0a0b0c0du, firsts[f], out, n);
            for (size_t i = 0; i < n; i++) {
                float want = uniform_ref(k, 0x01020304u, 0x0a0b0c0du, firsts[f] + i);
                cr_assert_eq(out[i], want, "first %llu n %zu element %zu: %.9g, definition %.9g",
                             (unsigned long long)firsts[f], n, i, (double)out[i], (double)want);
            }
            cr_assert_eq(out[n], -1.0f, "first %llu n %zu: wrote past the end", (unsigned long long)firsts[f], n);
        }
    }
}

Test(rng, uniform_matches_definition_best_isa) { check_uniform_matches_definition(); }

Test(rng, uniform_matches_definition_avx2)
{
    setenv("TB_RNG_ISA", "avx2", 1); /* read once per process; Criterion runs each test in its own */
    check_uniform_matches_definition();
}

Test(rng, uniform_matches_definition_scalar)
{
    setenv("TB_RNG_ISA", "scalar", 1);
    check_uniform_matches_definition();
}
