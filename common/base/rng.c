/* rng.c - Philox4x32-10 counter-based generator and the streams built on it. */
#include "tb/base/rng.h"

#include "tb/base/isa.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

tb_rng_key tb_rng_key_make(uint64_t seed, tb_rng_purpose purpose)
{
    uint64_t h = splitmix64(seed ^ splitmix64((uint64_t)purpose));
    tb_rng_key k = {{(uint32_t)h, (uint32_t)(h >> 32)}};
    return k;
}

void tb_philox4x32(tb_rng_key key, const uint32_t ctr[4], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key.k[0], k1 = key.k[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void block(tb_rng_key key, uint32_t hi, uint32_t lo, uint64_t blk, uint32_t out[4])
{
    uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), lo, hi};
    tb_philox4x32(key, ctr, out);
}

uint32_t tb_rng_u32(tb_rng_key key, uint32_t stream_hi, uint32_t stream_lo, uint64_t i)
{
    uint32_t w[4];
    block(key, stream_hi, stream_lo, i >> 2, w);
    return w[i & 3];
}

/* Scalar path: elements [first, first + n) one block at a time. */
static void uniform_scalar(tb_rng_key key, uint32_t hi, uint32_t lo, uint64_t first, float *out, size_t n)
{
    size_t j = 0;
    uint32_t w[4];
    while (j < n) {
        uint64_t i = first + j;
        block(key, hi, lo, i >> 2, w);
        for (unsigned q = (unsigned)(i & 3); q < 4 && j < n; q++, j++)
            out[j] = (float)(w[q] >> 8) * (1.0f / 16777216.0f);
    }
}

/* ---- vector paths -------------------------------------------------------------------------
 * Each vector lane runs one Philox block (counter = block number); a round's two 32x32->64 bit
 * products are taken on the even and odd lanes separately (mul_epu32) and their halves blended
 * back. The four output words of the lanes are interleaved with unpack instructions, which
 * leaves 128-bit chunk j of result vector r holding lane 4j + r; so lane 4j + r is given block
 * (r * chunks + j) and every result vector is one contiguous run of 4 * chunks outputs. The
 * values are bit-identical to the scalar path: same counters, same words, same conversion
 * ((float)(w >> 8) is exact, and scaling by 2^-24 is exact). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TB_RNG_VECTOR 1

__attribute__((target("avx512f"))) static void uniform_avx512(tb_rng_key key, uint32_t hi, uint32_t lo,
                                                              uint64_t blk, size_t nvec, float *out)
{
    /* lane 4j + r -> block 4r + j (four 128-bit chunks) */
    const __m512i lane_blk = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i m0 = _mm512_set1_epi32((int)PHILOX_M0), m1 = _mm512_set1_epi32((int)PHILOX_M1);
    const __m512 sc = _mm512_set1_ps(1.0f / 16777216.0f);
    const __mmask16 odd = 0xAAAA;
    for (size_t v = 0; v < nvec; v++, blk += 16, out += 64) {
        /* block numbers blk + 0..15 (64-bit): low words per lane, carry into the high word */
        const __m512i base_lo = _mm512_set1_epi32((int)(uint32_t)blk);
        __m512i c0 = _mm512_add_epi32(base_lo, lane_blk);
        const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, base_lo);
        __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32((int)(uint32_t)(blk >> 32)), carry,
                                           _mm512_set1_epi32((int)(uint32_t)(blk >> 32)),
                                           _mm512_set1_epi32(1));
        __m512i c2 = _mm512_set1_epi32((int)lo), c3 = _mm512_set1_epi32((int)hi);
        uint32_t k0 = key.k[0], k1 = key.k[1];
        for (int r = 0; r < 10; r++) {
            __m512i e0 = _mm512_mul_epu32(c0, m0), o0 = _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), m0);
            __m512i e1 = _mm512_mul_epu32(c2, m1), o1 = _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), m1);
            __m512i hi0 = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(e0, 32), o0);
            __m512i lo0 = _mm512_mask_blend_epi32(odd, e0, _mm512_slli_epi64(o0, 32));
            __m512i hi1 = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(e1, 32), o1);
            __m512i lo1 = _mm512_mask_blend_epi32(odd, e1, _mm512_slli_epi64(o1, 32));
            __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
            __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
            c0 = n0;
            c1 = lo1;
            c2 = n2;
            c3 = lo0;
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
        __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
        __m512i r0 = _mm512_unpacklo_epi64(t0, t2), r1 = _mm512_unpackhi_epi64(t0, t2);
        __m512i r2 = _mm512_unpacklo_epi64(t1, t3), r3 = _mm512_unpackhi_epi64(t1, t3);
        _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(r0, 8)), sc));
        _mm512_storeu_ps(out + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(r1, 8)), sc));
        _mm512_storeu_ps(out + 32, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(r2, 8)), sc));
        _mm512_storeu_ps(out + 48, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(r3, 8)), sc));
    }
}

__attribute__((target("avx2"))) static void uniform_avx2(tb_rng_key key, uint32_t hi, uint32_t lo,
                                                         uint64_t blk, size_t nvec, float *out)
{
    /* lane 4j + r -> block 2r + j (two 128-bit chunks) */
    const __m256i lane_blk = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    const __m256 sc = _mm256_set1_ps(1.0f / 16777216.0f);
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    for (size_t v = 0; v < nvec; v++, blk += 8, out += 32) {
        const __m256i base_lo = _mm256_set1_epi32((int)(uint32_t)blk);
        __m256i c0 = _mm256_add_epi32(base_lo, lane_blk);
        /* unsigned c0 < base_lo (carry) as a signed compare on sign-flipped values: -1 where set */
        __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(base_lo, sign), _mm256_xor_si256(c0, sign));
        __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32((int)(uint32_t)(blk >> 32)), carry);
        __m256i c2 = _mm256_set1_epi32((int)lo), c3 = _mm256_set1_epi32((int)hi);
        uint32_t k0 = key.k[0], k1 = key.k[1];
        for (int r = 0; r < 10; r++) {
            __m256i e0 = _mm256_mul_epu32(c0, m0), o0 = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0);
            __m256i e1 = _mm256_mul_epu32(c2, m1), o1 = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1);
            __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(e0, 32), o0, 0xAA);
            __m256i lo0 = _mm256_blend_epi32(e0, _mm256_slli_epi64(o0, 32), 0xAA);
            __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(e1, 32), o1, 0xAA);
            __m256i lo1 = _mm256_blend_epi32(e1, _mm256_slli_epi64(o1, 32), 0xAA);
            __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32((int)k0));
            __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32((int)k1));
            c0 = n0;
            c1 = lo1;
            c2 = n2;
            c3 = lo0;
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
        __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
        __m256i r0 = _mm256_unpacklo_epi64(t0, t2), r1 = _mm256_unpackhi_epi64(t0, t2);
        __m256i r2 = _mm256_unpacklo_epi64(t1, t3), r3 = _mm256_unpackhi_epi64(t1, t3);
        _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(r0, 8)), sc));
        _mm256_storeu_ps(out + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(r1, 8)), sc));
        _mm256_storeu_ps(out + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(r2, 8)), sc));
        _mm256_storeu_ps(out + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(r3, 8)), sc));
    }
}

/* 2 = AVX-512F, 1 = AVX2, 0 = scalar, capped by TB_RNG_ISA (= scalar | avx2). Decided once; a
 * race only recomputes the same value. */
static int vector_level(void)
{
    static int level = -1;
    if (level < 0) level = tb_isa_level("TB_RNG_ISA", 0);
    return level;
}
#endif

void tb_rng_uniform(tb_rng_key key, uint32_t stream_hi, uint32_t stream_lo, uint64_t first,
                    float *out, size_t n)
{
#ifdef TB_RNG_VECTOR
    const int level = vector_level();
    if (level > 0) {
        size_t head = (size_t)((4 - (first & 3)) & 3);
        if (head > n) head = n;
        uniform_scalar(key, stream_hi, stream_lo, first, out, head);
        const size_t per = level == 2 ? 64 : 32, nvec = (n - head) / per;
        if (level == 2)
            uniform_avx512(key, stream_hi, stream_lo, (first + head) >> 2, nvec, out + head);
        else
            uniform_avx2(key, stream_hi, stream_lo, (first + head) >> 2, nvec, out + head);
        const size_t done = head + nvec * per;
        uniform_scalar(key, stream_hi, stream_lo, first + done, out + done, n - done);
        return;
    }
#endif
    uniform_scalar(key, stream_hi, stream_lo, first, out, n);
}

void tb_rng_normal(tb_rng_key key, uint32_t stream_hi, uint32_t stream_lo, float mean, float std,
                   float *out, size_t n)
{
    const double two_pi = 6.283185307179586476925286766559;
    for (size_t j = 0; j < n; j += 2) {
        uint32_t a = tb_rng_u32(key, stream_hi, stream_lo, j);
        uint32_t b = tb_rng_u32(key, stream_hi, stream_lo, j + 1);
        double u1 = ((double)a + 1.0) * (1.0 / 4294967296.0); /* (0, 1] */
        double u2 = (double)b * (1.0 / 4294967296.0);
        double r = sqrt(-2.0 * log(u1));
        out[j] = (float)(mean + std * r * cos(two_pi * u2));
        if (j + 1 < n) out[j + 1] = (float)(mean + std * r * sin(two_pi * u2));
    }
}
