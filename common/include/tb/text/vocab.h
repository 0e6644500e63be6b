/* tb/text/vocab.h - a WordPiece vocabulary (vocab.txt: one token per line, id = line number - 1).
 *
 * Loading follows google-research/bert tokenization.py load_vocab: every line is one id, the
 * token is the line with surrounding whitespace (space, \t, \r, \n, \v, \f) removed, and when a
 * token appears twice the later id wins for lookups (id -> token keeps every line).
 * Lookups are by exact bytes (UTF-8).
 *
 * The vocabulary hash ("fnv1a64:<16 hex>") is FNV-1a 64 over every token followed by "\n", in
 * id order: the same for a file with CRLF or LF line endings, different as soon as any token or
 * any id changes. Batches carry it so that stages with different vocabularies fail at once.
 */
#ifndef TB_VOCAB_H
#define TB_VOCAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct tb_vocab {
    char **tokens;      /* id -> NUL-terminated token (pointers into `store`) */
    int32_t *lens;      /* id -> byte length */
    int32_t count;
    char *store;        /* all token bytes */
    /* open-addressing hash table: slot -> id + 1 (0 = empty) */
    int32_t *slots;
    uint32_t mask;
    int32_t max_len;    /* longest token in bytes */
    uint64_t hash;      /* FNV-1a 64, see above */
    /* ids of the special tokens, -1 when the vocabulary lacks them */
    int32_t pad_id, unk_id, cls_id, sep_id, mask_id;
} tb_vocab;

/* Loads a vocab.txt file. Fails with TB_EIO (cannot read), TB_EFORMAT (empty file, NUL byte or
 * invalid UTF-8 in a token: the message names file:line). */
int tb_vocab_load(tb_vocab *v, const char *path);
/* Builds a vocabulary from `n` tokens in id order (copied). */
int tb_vocab_from_tokens(tb_vocab *v, const char *const *tokens, int32_t n);
void tb_vocab_free(tb_vocab *v);

/* Id of the token bytes s[0..len), or -1 when absent. */
int32_t tb_vocab_find(const tb_vocab *v, const char *s, size_t len);
/* Id of "##" followed by s[0..len) (a WordPiece continuation), or -1 when absent. */
int32_t tb_vocab_find_cont(const tb_vocab *v, const char *s, size_t len);
/* Token of `id`, or NULL when out of range. */
const char *tb_vocab_token(const tb_vocab *v, int32_t id);
/* Writes "fnv1a64:0123456789abcdef" (25 bytes with NUL) into buf. */
const char *tb_vocab_hash_str(const tb_vocab *v, char *buf, size_t n);
/* The hash string of DIR/vocab.txt (a checkpoint folder's vocabulary) into buf; buf = "" when
 * DIR has no vocab.txt. Fails only on an unreadable or malformed vocab.txt. */
int tb_vocab_hash_in(const char *dir, char *buf, size_t n);
/* Writes the vocabulary as vocab.txt (one token per line, LF), under a temporary name renamed
 * into place when complete (tb/base/outfile.h): an existing file is replaced whole or not at all. */
int tb_vocab_save(const tb_vocab *v, const char *path);

#endif
