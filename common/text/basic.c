/* basic.c - BERT basic tokenization (google-research/bert BasicTokenizer): clean, CJK split,
 * whitespace split, lower + NFD + strip Mn, punctuation split; the UTF-8 helpers it rests on.
 * See tb/text/basic.h. */
#include "tb/text/basic.h"

#include "tb/base/error.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum { A_DROP = 1, A_SPACE = 2, A_PUNCT = 4 };

/* Classes of ASCII characters after the reference's rules. */
static unsigned char ascii_class(uint32_t c)
{
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return A_SPACE;
    if (c < 32 || c == 127) return A_DROP; /* NUL and Cc */
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
        return A_PUNCT;
    return 0;
}

static unsigned char ASCII_CLASS[128];
static pthread_once_t ascii_once = PTHREAD_ONCE_INIT;

static void ascii_fill(void)
{
    for (uint32_t c = 0; c < 128; c++) ASCII_CLASS[c] = ascii_class(c);
}

static void ascii_init(void)
{
    pthread_once(&ascii_once, ascii_fill);
}

static int is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int is_punct_u(uint32_t c)
{
    if (c < 128) return ASCII_CLASS[c] & A_PUNCT;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return 1;
    default:
        return 0;
    }
}

int tb_char_stands_alone(uint32_t cp)
{
    ascii_init();
    return is_cjk(cp) || is_punct_u(cp);
}

/* Python's str.split() separators that survive cleaning (Zl, Zp). */
static int is_split_space(uint32_t c)
{
    return c == ' ' || c == 0x2028 || c == 0x2029;
}

/* Case_Ignorable: Mn, Me, Cf, Lm, Sk, or Word_Break MidLetter / MidNumLet / Single_Quote. */
static int is_case_ignorable(uint32_t c)
{
    switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4:
    case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52:
    case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return 1;
    default:
        break;
    }
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK:
        return 1;
    default:
        return 0;
    }
}

/* Cased: Lu, Ll, Lt, Other_Lowercase, Other_Uppercase. Characters of the last two that neither
 * have a case mapping nor are case-ignorable (the only ones the final-sigma rule can see) are
 * U+00AA, U+00BA and the squared / negative squared Latin capitals U+1F130..1F189. */
static int is_cased(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
        return 1;
    default:
        break;
    }
    if (c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
        (c >= 0x1F170 && c <= 0x1F189))
        return 1;
    utf8proc_int32_t s = (utf8proc_int32_t)c;
    return utf8proc_tolower(s) != s || utf8proc_toupper(s) != s || utf8proc_totitle(s) != s;
}

/* Python handle_capital_sigma: U+03A3 at w[i] lowers to U+03C2 in the Final_Sigma context. */
static uint32_t lower_sigma(const uint32_t *w, size_t n, size_t i)
{
    size_t j = i;
    uint32_t c = 0;
    int found = 0;
    while (j > 0) {
        c = w[--j];
        if (!is_case_ignorable(c)) {
            found = 1;
            break;
        }
    }
    int final_sigma = found && is_cased(c);
    if (final_sigma && i + 1 < n) {
        size_t k = i + 1;
        for (; k < n; k++) {
            c = w[k];
            if (!is_case_ignorable(c)) break;
        }
        final_sigma = k == n || !is_cased(c);
    }
    return final_sigma ? 0x3C2 : 0x3C3;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return TB_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return TB_ERR(TB_ENOMEM, "out of memory (%zu elements of %zu bytes) while tokenizing", n, elem);
    *p = q;
    *cap = n;
    return TB_OK;
}

void tb_words_init(tb_words *w) { memset(w, 0, sizeof *w); }

void tb_words_free(tb_words *w)
{
    free(w->buf);
    free(w->off);
    free(w->len);
    free(w->cps);
    free(w->word);
    memset(w, 0, sizeof *w);
}

tb_tokenizer_opts tb_tokenizer_opts_default(void)
{
    tb_tokenizer_opts o = {.do_lower_case = 1, .max_input_chars_per_word = 100, .unk_literal = NULL};
    return o;
}

/* Strict UTF-8 decoding of one code point at s[*i]; returns -1 on invalid input. */
static int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    size_t p = *i;
    uint32_t c = s[p];
    if (c < 0x80) {
        *i = p + 1;
        return (int32_t)c;
    }
    int n;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) { n = 1; c &= 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 2; c &= 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 3; c &= 0x07; min = 0x10000; }
    else return -1;
    if ((size_t)n >= len - p) return -1; /* truncated sequence */
    for (int k = 1; k <= n; k++) {
        uint32_t b = s[p + (size_t)k];
        if ((b & 0xC0) != 0x80) return -1;
        c = (c << 6) | (b & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return -1;
    *i = p + (size_t)n + 1;
    return (int32_t)c;
}

int tb_utf8_check(const char *s, size_t len, size_t *bad_offset)
{
    size_t i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t at = i;
        if (utf8_next(u, len, &i) < 0) {
            if (bad_offset) *bad_offset = at;
            return TB_EFORMAT;
        }
    }
    return TB_OK;
}

static size_t utf8_put(char *out, uint32_t c)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Appends the word made of code points w[0..n) (n > 0); `unk` marks the unk literal. */
static int words_push(tb_words *out, const uint32_t *w, size_t n, int unk)
{
    int rc = TB_OK;
    TB_TRY(grow((void **)&out->buf, &out->buf_cap, out->buf_len + n * 4 + 1, 1));
    size_t cap = (size_t)out->cap;
    if ((size_t)out->count + 1 > cap) {
        size_t cap2 = cap;
        TB_TRY(grow((void **)&out->off, &cap2, (size_t)out->count + 1, sizeof *out->off));
        TB_TRY(grow((void **)&out->len, &cap, (size_t)out->count + 1, sizeof *out->len));
        TB_CHECK(cap <= INT32_MAX, TB_ENOMEM, "too many words in one text");
        out->cap = (int32_t)cap;
    }
    size_t start = out->buf_len;
    char *p = out->buf + start;
    for (size_t i = 0; i < n; i++) p += utf8_put(p, w[i]);
    *p = '\0';
    size_t blen = (size_t)(p - (out->buf + start));
    TB_CHECK(start <= INT32_MAX && blen <= INT32_MAX, TB_ENOMEM, "text too long to tokenize (over 2 GB)");
    out->off[out->count] = (int32_t)start;
    out->len[out->count] = unk ? -1 : (int32_t)blen;
    out->count++;
    out->buf_len = start + blen + 1;
error:
    return rc;
}

/* Canonical ordering of w[0..k): a stable sort of each run of non-starters by combining class. */
static void canonical_order(uint32_t *w, size_t k)
{
    for (size_t i = 1; i < k; i++) {
        uint32_t c = w[i];
        int cc = c < 0x300 ? 0 : utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
        if (cc == 0) continue;
        size_t j = i;
        while (j > 0) {
            uint32_t p = w[j - 1];
            int pc = p < 0x300 ? 0 : utf8proc_get_property((utf8proc_int32_t)p)->combining_class;
            if (pc <= cc) break;
            w[j] = p;
            j--;
        }
        w[j] = c;
    }
}

/* Removes the nonspacing marks (Mn) from w[0..k) in place; returns the new length. */
static size_t strip_mn(uint32_t *w, size_t k)
{
    size_t o = 0;
    for (size_t i = 0; i < k; i++) {
        uint32_t c = w[i];
        if (c >= 0x300 && utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN) continue;
        w[o++] = c;
    }
    return o;
}

/* Lower-cases (Python str.lower) and strips accents (NFD, drop Mn) of token t[0..n) into
 * out->word; returns the new length through *m. */
static int lower_strip(tb_words *out, const uint32_t *t, size_t n, size_t *m)
{
    int rc = TB_OK;
    /* Worst case: every char lowers to 2 and decomposes to up to 18 code points. */
    TB_TRY(grow((void **)&out->word, &out->word_cap, n * 2 * 18 + 8, sizeof(uint32_t)));
    uint32_t *w = out->word;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = t[i];
        uint32_t lc[2];
        int nl = 1;
        if (c < 128) {
            lc[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            lc[0] = 0x69;
            lc[1] = 0x307;
            nl = 2;
        } else if (c == 0x3A3) {
            lc[0] = lower_sigma(t, n, i);
        } else {
            lc[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
        for (int j = 0; j < nl; j++) {
            uint32_t d = lc[j];
            if (d < 0xC0) {
                w[k++] = d;
                continue;
            }
            int bound = 0;
            utf8proc_ssize_t r = utf8proc_decompose_char((utf8proc_int32_t)d, (utf8proc_int32_t *)(w + k), 18,
                                                         UTF8PROC_DECOMPOSE, &bound);
            TB_CHECK(r > 0 && r <= 18, TB_EFORMAT, "cannot decompose U+%04X", (unsigned)d);
            k += (size_t)r;
        }
    }
    canonical_order(w, k);
    *m = strip_mn(w, k);
error:
    return rc;
}

/* Splits w[0..n) on punctuation and pushes the pieces. */
static int split_punct(tb_words *out, const uint32_t *w, size_t n)
{
    int rc = TB_OK;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_punct_u(w[i])) continue;
        if (i > start) TB_TRY(words_push(out, w + start, i - start, 0));
        TB_TRY(words_push(out, w + i, 1, 0));
        start = i + 1;
    }
    if (n > start) TB_TRY(words_push(out, w + start, n - start, 0));
error:
    return rc;
}

static int is_unk_literal(const char *lit, const uint32_t *t, size_t n)
{
    const unsigned char *s = (const unsigned char *)lit;
    size_t len = strlen(lit), i = 0, k = 0;
    while (i < len) {
        int32_t c = utf8_next(s, len, &i);
        if (c < 0 || k >= n || (uint32_t)c != t[k]) return 0;
        k++;
    }
    return k == n;
}

/* Steps 1-2: decodes text[0..len), drops what the reference drops, maps whitespace to ' ' and
 * puts spaces around CJK ideographs; the code points go to out->cps, their count to *n. */
static int clean_text(const char *text, size_t len, tb_words *out, size_t *n_out)
{
    int rc = TB_OK;
    size_t n = 0, i = 0;
    /* at most 3 code points per input byte */
    TB_TRY(grow((void **)&out->cps, &out->cps_cap, len * 3 + 1, sizeof(uint32_t)));
    uint32_t *cps = out->cps;
    const unsigned char *s = (const unsigned char *)text;
    while (i < len) {
        uint32_t c = s[i];
        if (c < 0x80) {
            i++;
            unsigned char cl = ASCII_CLASS[c];
            if (cl & A_DROP) continue;
            cps[n++] = (cl & A_SPACE) ? ' ' : c;
            continue;
        }
        size_t at = i;
        int32_t d = utf8_next(s, len, &i);
        TB_CHECK(d >= 0, TB_EFORMAT, "invalid UTF-8 at byte %zu of the text (byte 0x%02X)", at, s[at]);
        c = (uint32_t)d;
        if (c == 0xFFFD) continue;
        utf8proc_category_t cat = utf8proc_category(d);
        if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF) continue;
        if (cat == UTF8PROC_CATEGORY_ZS) {
            cps[n++] = ' ';
        } else if (is_cjk(c)) {
            cps[n++] = ' ';
            cps[n++] = c;
            cps[n++] = ' ';
        } else {
            cps[n++] = c;
        }
    }
error:
    *n_out = n;
    return rc;
}

/* Steps 3-5 on out->cps[0..n): whitespace split, lower + strip accents, punctuation split; the
 * words are pushed to `out`. */
static int split_words(const tb_tokenizer_opts *opts, size_t n, tb_words *out)
{
    int rc = TB_OK;
    uint32_t *cps = out->cps;
    size_t p = 0;
    while (p < n) {
        while (p < n && is_split_space(cps[p])) p++;
        if (p >= n) break;
        size_t q = p;
        int ascii = 1;
        while (q < n && !is_split_space(cps[q])) {
            ascii &= cps[q] < 128;
            q++;
        }
        const uint32_t *t = cps + p;
        size_t tn = q - p;
        if (opts->unk_literal && is_unk_literal(opts->unk_literal, t, tn)) {
            TB_TRY(words_push(out, t, tn, 1));
        } else if (!opts->do_lower_case) {
            TB_TRY(split_punct(out, t, tn));
        } else if (ascii) {
            for (size_t k = p; k < q; k++)
                if (cps[k] >= 'A' && cps[k] <= 'Z') cps[k] += 32;
            TB_TRY(split_punct(out, t, tn));
        } else {
            size_t m = 0;
            TB_TRY(lower_strip(out, t, tn, &m));
            TB_TRY(split_punct(out, out->word, m));
        }
        p = q;
    }
error:
    return rc;
}

int tb_basic_tokenize(const tb_tokenizer_opts *opts, const char *text, size_t len, tb_words *out)
{
    int rc = TB_OK;
    ascii_init();
    tb_tokenizer_opts def = tb_tokenizer_opts_default();
    if (!opts) opts = &def;
    out->count = 0;
    out->buf_len = 0;
    size_t n = 0;
    TB_TRY(clean_text(text, len, out, &n));
    TB_TRY(split_words(opts, n, out));
error:
    return rc;
}
