/* stages/augment/augment.h - new sentences from candidates, and the tb-augment run over a file.
 *
 * Draws (tb_augment_draw): for draw d = 0..N-1, eligible token e (in sentence order) of a
 * sentence with E eligible tokens, elements i = 2 (d E + e) and i + 1 of the Philox stream
 * (tb_rng_key_make(seed, TB_RNG_AUGMENT), stream_hi = column, stream_lo = example index) give
 * the candidate (u32 * count) >> 32 and, as a uniform (u32 >> 8) 2^-24, whether to use it
 * (< p). The new sentence is the basic tokens joined by single spaces. A draw equal to the
 * original text, to the unchanged tokens joined, or to an earlier draw is dropped. So the
 * output depends on (seed, example index, column) only: the same at any thread count and
 * chunk size.
 *
 * Rows (tb_augment_file): the original line first (verbatim, without "\r"), then for each text
 * column augmented, its new sentences with the other fields as read. Pair tasks: with
 * `pair_quirk` the reference's order is kept instead: column a's list (original first), then
 * column b's list (original first) with column a set to the last entry of a's list. A header
 * line is copied. The output file appears when complete (temporary name, then rename).
 *
 * An output that is an endpoint (tcp://, ipc://) or a message file (file:PATH) gets the same
 * rows as a stream of text messages (docs/protocol.md, "Text rows"): one message per chunk,
 * sent as the chunk is done, with `format`, `header` (tasks with a header line) and `rows` (the
 * chunk's lines, each ended by "\n"), then END. A message file, too, is written under a
 * temporary name and renamed when complete. A plain path is the task file.
 */
#ifndef TB_AUG_AUGMENT_H
#define TB_AUG_AUGMENT_H

#include "cands.h"
#include "tb/base/progress.h"

#include <stdint.h>

/* A list of strings: string i is buf + off[i]. */
typedef struct tb_strs {
    char *buf;
    size_t len, cap;
    size_t *off;
    int n, ncap;
} tb_strs;

void tb_strs_free(tb_strs *s);

/* The new sentences of a sentence with candidates (see above), appended to out (cleared first). */
int tb_augment_draw(const tb_aug_sentence *s, const char *original, uint64_t seed, uint32_t column, uint64_t example,
                    int N, double p, tb_strs *out);

/* The reference's N per task: SST-2 20, MNLI and QQP 10, QNLI 20, others 30. */
int tb_augment_default_n(const char *format);

typedef struct tb_augment_opts {
    const char *input, *format, *output;
    int N;               /* >= 0: new sentences drawn per text (draws, before dropping repeats) */
    double p;            /* replacement probability, 0..1 */
    uint64_t seed;
    int columns;         /* bit 0: augment text a, bit 1: text b (pair tasks) */
    int pair_quirk;      /* the reference's row order for pairs (see above) */
    int chunk;           /* rows per chunk (memory bound), >= 1 */
    int lenient;         /* skip malformed rows (a warning naming file:line each) instead of failing */
} tb_augment_opts;

typedef struct tb_augment_stats {
    int64_t rows, texts, rows_out;
    int64_t skipped, skipped_first_line;  /* lenient: malformed rows skipped, the first one's line */
} tb_augment_stats;

/* 1 when `output` names a message stream (tcp://, ipc://, file:PATH), 0 for a task file. */
int tb_augment_output_is_stream(const char *output);

/* Augments opts->input into opts->output. `progress` may be NULL. */
int tb_augment_file(tb_cands *c, const tb_augment_opts *opts, tb_progress *progress, tb_augment_stats *st);

#endif
