/* rng.c - Philox4x32-10 counter-based generator and the streams built on it. */
#include "tb/rng.h"

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

void tb_rng_uniform(tb_rng_key key, uint32_t stream_hi, uint32_t stream_lo, uint64_t first,
                    float *out, size_t n)
{
    size_t j = 0;
    uint32_t w[4];
    while (j < n) {
        uint64_t i = first + j;
        block(key, stream_hi, stream_lo, i >> 2, w);
        for (unsigned q = (unsigned)(i & 3); q < 4 && j < n; q++, j++)
            out[j] = (float)(w[q] >> 8) * (1.0f / 16777216.0f);
    }
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
