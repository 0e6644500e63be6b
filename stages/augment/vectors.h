/* stages/augment/vectors.h - word vectors for the augmentation's GloVe candidates.
 *
 * A tb_vectors holds `rows` words and their vectors scaled to unit length (a zero vector stays
 * zero and is never a neighbour), plus a hash index word -> row.
 *
 * Text files: one word a line, `word v1 ... vd`, fields split on spaces or tabs (GloVe). A first
 * line of exactly two integers `count dim` is the word2vec / fastText `.vec` header and is
 * skipped. Only the first `max_rows` word lines are read (the reference reads 100,000). Every
 * line must have the dimension of the first; a ragged or non-numeric line is TB_EFORMAT naming
 * file:line (and the field). As in the reference, the row of `<unk>` is left at zero, and a word
 * that occurs twice keeps its last vector (its earlier row becomes zero).
 *
 * Binary cache (tb_vectors_save_cache / _load_cache): "TBVEC001", then u64 rows, dim, bytes of
 * the word blob, source size, source mtime (ns), max_rows; the words (NUL-terminated, in row
 * order); zero padding to a multiple of 64 bytes; the unit vectors, f32 [rows, dim] little-endian.
 * A cache is used only when its source size, mtime and max_rows match (tb_vectors_open).
 */
#ifndef TB_AUG_VECTORS_H
#define TB_AUG_VECTORS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tb_vectors {
    int64_t rows;
    int dim;
    char *text;        /* words, NUL-terminated, row order */
    size_t text_bytes;
    int64_t *word_off; /* [rows] offsets into text */
    float *unit;       /* [rows, dim], unit length or zero */
    uint8_t *usable;   /* [rows] 1: nonzero vector */
    int64_t *slots;    /* hash index: row + 1, 0 empty; size slot_mask + 1 */
    uint64_t slot_mask;
    /* provenance, for the cache */
    uint64_t source_size;
    int64_t source_mtime_ns;
    int64_t max_rows;
} tb_vectors;

/* Reads a GloVe / .vec text file (see above); max_rows <= 0 means all lines. Uses up to
 * `threads` threads for parsing (0: the default). */
int tb_vectors_load_text(tb_vectors *v, const char *path, int64_t max_rows, int threads);
/* Builds vectors from n given words and their rows mat[n, dim] (copied and normalised). */
int tb_vectors_from_rows(tb_vectors *v, const char *const *words, int64_t n, const float *mat, int dim);
int tb_vectors_save_cache(const tb_vectors *v, const char *path);
/* Loads a cache; TB_ENOTFOUND when it does not exist, TB_EFORMAT when it is damaged. */
int tb_vectors_load_cache(tb_vectors *v, const char *path);
/* The text file `path` through the cache `cache_path` (NULL: no cache): a cache that matches
 * the file (size, mtime, max_rows) is loaded, otherwise the text is read and the cache
 * (re)written (temporary name, then rename). *from_cache tells which (may be NULL). */
int tb_vectors_open(tb_vectors *v, const char *path, const char *cache_path, int64_t max_rows, int threads,
                    int *from_cache);
void tb_vectors_free(tb_vectors *v);

/* Row of word w[0..len), or -1. */
int64_t tb_vectors_find(const tb_vectors *v, const char *w, size_t len);
static inline const char *tb_vectors_word(const tb_vectors *v, int64_t row)
{
    return v->text + v->word_off[row];
}

/* Nearest rows by cosine for n unit query vectors q[n, dim]: for query i, out[i*M ..] gets up
 * to M rows, highest dot product first (equal ones: lower row first), leaving out zero rows and
 * row exclude[i] (exclude may be NULL, an entry < 0 excludes nothing); count[i] = how many.
 * The dot products are one matrix product per block of queries. */
int tb_vectors_nearest(const tb_vectors *v, const float *q, int n, const int64_t *exclude, int M, int64_t *out,
                       int *count);

#endif
