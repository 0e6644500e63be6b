/* vocab.c - WordPiece vocabulary: loading vocab.txt, lookups, hash, saving. */
#include "tb/text/vocab.h"

#include "tb/base/error.h"
#include "tb/base/outfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME 0x100000001b3ULL

static uint32_t bytes_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint64_t fnv64_update(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= FNV64_PRIME;
    }
    return h;
}

int32_t tb_vocab_find(const tb_vocab *v, const char *s, size_t len)
{
    if (!v->slots || len > (size_t)v->max_len) return -1;
    uint32_t i = bytes_hash(s, len) & v->mask;
    for (;;) {
        int32_t slot = v->slots[i];
        if (slot == 0) return -1;
        int32_t id = slot - 1;
        if ((size_t)v->lens[id] == len && memcmp(v->tokens[id], s, len) == 0) return id;
        i = (i + 1) & v->mask;
    }
}

int32_t tb_vocab_find_cont(const tb_vocab *v, const char *s, size_t len)
{
    if (!v->slots || len + 2 > (size_t)v->max_len) return -1;
    uint32_t h = 2166136261u;
    h = (h ^ '#') * 16777619u;
    h = (h ^ '#') * 16777619u;
    for (size_t k = 0; k < len; k++) h = (h ^ (unsigned char)s[k]) * 16777619u;
    uint32_t i = h & v->mask;
    for (;;) {
        int32_t slot = v->slots[i];
        if (slot == 0) return -1;
        int32_t id = slot - 1;
        const char *t = v->tokens[id];
        if ((size_t)v->lens[id] == len + 2 && t[0] == '#' && t[1] == '#' && memcmp(t + 2, s, len) == 0) return id;
        i = (i + 1) & v->mask;
    }
}

const char *tb_vocab_token(const tb_vocab *v, int32_t id)
{
    if (id < 0 || id >= v->count) return NULL;
    return v->tokens[id];
}

/* Inserts id (later ids replace earlier ones with the same bytes, as a Python dict does). */
static void index_insert(tb_vocab *v, int32_t id)
{
    const char *s = v->tokens[id];
    size_t len = (size_t)v->lens[id];
    uint32_t i = bytes_hash(s, len) & v->mask;
    for (;;) {
        int32_t slot = v->slots[i];
        if (slot == 0) {
            v->slots[i] = id + 1;
            return;
        }
        int32_t other = slot - 1;
        if ((size_t)v->lens[other] == len && memcmp(v->tokens[other], s, len) == 0) {
            v->slots[i] = id + 1;
            return;
        }
        i = (i + 1) & v->mask;
    }
}

/* Builds the id arrays, hash table, hash and special ids once `store` holds n NUL-terminated
 * tokens back to back. */
static int vocab_index(tb_vocab *v, int32_t n)
{
    int rc = TB_OK;
    v->count = n;
    v->tokens = malloc((size_t)(n > 0 ? n : 1) * sizeof *v->tokens);
    v->lens = malloc((size_t)(n > 0 ? n : 1) * sizeof *v->lens);
    TB_CHECK(v->tokens && v->lens, TB_ENOMEM, "out of memory indexing a vocabulary of %d tokens", n);
    uint32_t size = 16;
    while (size < (uint32_t)n * 2u + 1u) size *= 2;
    v->mask = size - 1;
    v->slots = calloc(size, sizeof *v->slots);
    TB_CHECK(v->slots, TB_ENOMEM, "out of memory indexing a vocabulary of %d tokens", n);
    char *p = v->store;
    v->hash = FNV64_OFFSET;
    v->max_len = 0;
    for (int32_t id = 0; id < n; id++) {
        size_t len = strlen(p);
        v->tokens[id] = p;
        v->lens[id] = (int32_t)len;
        if ((int32_t)len > v->max_len) v->max_len = (int32_t)len;
        v->hash = fnv64_update(v->hash, p, len);
        v->hash = fnv64_update(v->hash, "\n", 1);
        p += len + 1;
    }
    for (int32_t id = 0; id < n; id++) index_insert(v, id);
    v->pad_id = tb_vocab_find(v, "[PAD]", 5);
    v->unk_id = tb_vocab_find(v, "[UNK]", 5);
    v->cls_id = tb_vocab_find(v, "[CLS]", 5);
    v->sep_id = tb_vocab_find(v, "[SEP]", 5);
    v->mask_id = tb_vocab_find(v, "[MASK]", 6);
error:
    return rc;
}

static int is_strip_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int tb_vocab_load(tb_vocab *v, const char *path)
{
    int rc = TB_OK;
    memset(v, 0, sizeof *v);
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    TB_CHECK(f, TB_EIO, "cannot open vocabulary %s: %s", path, strerror(errno));
    TB_CHECK(fseek(f, 0, SEEK_END) == 0, TB_EIO, "cannot seek in vocabulary %s", path);
    long size = ftell(f);
    TB_CHECK(size >= 0 && fseek(f, 0, SEEK_SET) == 0, TB_EIO, "cannot size vocabulary %s", path);
    buf = malloc((size_t)size + 1);
    TB_CHECK(buf, TB_ENOMEM, "out of memory reading vocabulary %s (%ld bytes)", path, size);
    TB_CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size, TB_EIO, "cannot read vocabulary %s", path);
    TB_CHECK(size > 0, TB_EFORMAT, "vocabulary %s is empty: expected one token per line", path);
    /* Lines: split on \n; a final line without \n still counts (Python readline does). */
    int32_t n = 0;
    v->store = malloc((size_t)size + 2);
    TB_CHECK(v->store, TB_ENOMEM, "out of memory reading vocabulary %s", path);
    char *out = v->store;
    size_t pos = 0;
    while (pos < (size_t)size) {
        size_t end = pos;
        while (end < (size_t)size && buf[end] != '\n') end++;
        size_t a = pos, b = end;
        while (a < b && is_strip_space(buf[a])) a++;
        while (b > a && is_strip_space(buf[b - 1])) b--;
        TB_CHECK(memchr(buf + a, '\0', b - a) == NULL, TB_EFORMAT,
                 "%s:%d: NUL byte in a vocabulary token", path, n + 1);
        TB_CHECK(utf8proc_decompose((const utf8proc_uint8_t *)buf + a, (utf8proc_ssize_t)(b - a), NULL, 0, 0) >= 0,
                 TB_EFORMAT, "%s:%d: token is not valid UTF-8; re-save the vocabulary as UTF-8", path, n + 1);
        TB_CHECK(n < INT32_MAX - 1, TB_EFORMAT, "%s: too many lines", path);
        memcpy(out, buf + a, b - a);
        out += b - a;
        *out++ = '\0';
        n++;
        pos = end + 1;
    }
    TB_TRY(vocab_index(v, n));
    free(buf);
    fclose(f);
    return TB_OK;
error:
    free(buf);
    if (f) fclose(f);
    tb_vocab_free(v);
    return rc;
}

int tb_vocab_from_tokens(tb_vocab *v, const char *const *tokens, int32_t n)
{
    int rc = TB_OK;
    memset(v, 0, sizeof *v);
    TB_CHECK(n >= 0 && tokens, TB_EINVAL, "tb_vocab_from_tokens: need a token array and n >= 0 (n = %d)", n);
    size_t total = 1;
    for (int32_t i = 0; i < n; i++) {
        TB_CHECK(tokens[i], TB_EINVAL, "tb_vocab_from_tokens: token %d is NULL", i);
        total += strlen(tokens[i]) + 1;
    }
    v->store = malloc(total);
    TB_CHECK(v->store, TB_ENOMEM, "out of memory building a vocabulary of %d tokens", n);
    char *p = v->store;
    for (int32_t i = 0; i < n; i++) {
        size_t len = strlen(tokens[i]);
        memcpy(p, tokens[i], len + 1);
        p += len + 1;
    }
    TB_TRY(vocab_index(v, n));
    return TB_OK;
error:
    tb_vocab_free(v);
    return rc;
}

void tb_vocab_free(tb_vocab *v)
{
    free(v->tokens);
    free(v->lens);
    free(v->store);
    free(v->slots);
    memset(v, 0, sizeof *v);
    v->pad_id = v->unk_id = v->cls_id = v->sep_id = v->mask_id = -1;
}

const char *tb_vocab_hash_str(const tb_vocab *v, char *buf, size_t n)
{
    snprintf(buf, n, "fnv1a64:%016llx", (unsigned long long)v->hash);
    return buf;
}

int tb_vocab_hash_in(const char *dir, char *buf, size_t n)
{
    int rc = TB_OK;
    char path[4200];
    tb_vocab v = {0};
    if (n) buf[0] = 0;
    TB_CHECK((size_t)snprintf(path, sizeof path, "%s/vocab.txt", dir) < sizeof path, TB_EINVAL,
             "folder path too long: %.64s...", dir);
    if (access(path, F_OK) != 0) return TB_OK;
    TB_TRY(tb_vocab_load(&v, path));
    tb_vocab_hash_str(&v, buf, n);
error:
    tb_vocab_free(&v);
    return rc;
}

int tb_vocab_save(const tb_vocab *v, const char *path)
{
    int rc = TB_OK;
    tb_outfile o;
    TB_TRY(tb_outfile_open(&o, path)); /* path appears complete or not at all */
    for (int32_t id = 0; id < v->count; id++) {
        TB_CHECK(fwrite(v->tokens[id], 1, (size_t)v->lens[id], o.f) == (size_t)v->lens[id] && fputc('\n', o.f) != EOF,
                 TB_EIO, "cannot write %s (token %d): %s", o.tmp, id, strerror(errno));
    }
    TB_TRY(tb_outfile_commit(&o));
error:
    tb_outfile_abort(&o);
    return rc;
}
