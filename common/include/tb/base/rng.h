/* tb/base/rng.h - counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
 *
 * A value depends only on (key, counter), never on what was drawn before, so a batch recomputed
 * after a restart gets the same dropout masks: key = (seed, purpose), counter = (batch sequence
 * number, layer, site, element index / 4). No state, no locks, any thread may draw any element.
 */
#ifndef TB_RNG_H
#define TB_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct tb_rng_key {
    uint32_t k[2];
} tb_rng_key;

/* What a random stream is for; mixed into the key so streams never overlap. */
typedef enum tb_rng_purpose {
    TB_RNG_INIT = 1,     /* parameter initialisation */
    TB_RNG_DROPOUT = 2,  /* dropout masks */
    TB_RNG_SHUFFLE = 3,  /* data order */
    TB_RNG_MLM = 4,      /* masked-LM token choice */
    TB_RNG_AUGMENT = 5,  /* data augmentation */
} tb_rng_purpose;

tb_rng_key tb_rng_key_make(uint64_t seed, tb_rng_purpose purpose);

/* Philox4x32-10: four 32-bit words for counter (c0, c1, c2, c3). */
void tb_philox4x32(tb_rng_key key, const uint32_t ctr[4], uint32_t out[4]);

/* Element i of the stream (key, stream_hi, stream_lo): a uniform 32-bit word.
 * Counter = (i / 4 low, i / 4 high, stream_lo, stream_hi), word i % 4. */
uint32_t tb_rng_u32(tb_rng_key key, uint32_t stream_hi, uint32_t stream_lo, uint64_t i);

/* Fills out[0..n) with elements [first, first + n) of a stream, as uniform floats in [0, 1)
 * (24-bit resolution: (u32 >> 8) * 2^-24). Runs 16 (AVX-512F) or 8 (AVX2) Philox blocks per
 * vector when the CPU has them, bit-identical to the scalar definition above; the environment
 * variable TB_RNG_ISA = scalar | avx2 caps the instruction set (read once per process). */
void tb_rng_uniform(tb_rng_key key, uint32_t stream_hi, uint32_t stream_lo, uint64_t first,
                    float *out, size_t n);

/* Fills out[0..n) with N(mean, std) values (Box-Muller on pairs of stream elements 2j, 2j+1). */
void tb_rng_normal(tb_rng_key key, uint32_t stream_hi, uint32_t stream_lo, float mean, float std,
                   float *out, size_t n);

#endif
