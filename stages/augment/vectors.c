/* stages/augment/vectors.c - see vectors.h. */
#include "vectors.h"

#include "tb/base/error.h"
#include "tb/model/ops.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char cache_magic[8] = {'T', 'B', 'V', 'E', 'C', '0', '0', '1'};

void tb_vectors_free(tb_vectors *v)
{
    free(v->text);
    free(v->word_off);
    free(v->unit);
    free(v->usable);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

static uint64_t hash_word(const char *w, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)w[i]) * 1099511628211ull;
    return h;
}

int64_t tb_vectors_find(const tb_vectors *v, const char *w, size_t len)
{
    if (!v->slots) return -1;
    for (uint64_t i = hash_word(w, len) & v->slot_mask;; i = (i + 1) & v->slot_mask) {
        int64_t r = v->slots[i] - 1;
        if (r < 0) return -1;
        const char *s = tb_vectors_word(v, r);
        if (strncmp(s, w, len) == 0 && s[len] == 0) return r;
    }
}

/* Builds the hash index; a word seen again takes over the slot and its earlier row becomes zero
 * (the reference's dict keeps the last vector). */
static int build_index(tb_vectors *v)
{
    uint64_t n = 16;
    while (n < 2 * (uint64_t)v->rows + 2) n <<= 1;
    v->slots = calloc(n, sizeof *v->slots);
    if (!v->slots) return TB_ERR(TB_ENOMEM, "word vectors: out of memory for the index of %lld words", (long long)v->rows);
    v->slot_mask = n - 1;
    for (int64_t r = 0; r < v->rows; r++) {
        const char *w = tb_vectors_word(v, r);
        size_t len = strlen(w);
        for (uint64_t i = hash_word(w, len) & v->slot_mask;; i = (i + 1) & v->slot_mask) {
            int64_t o = v->slots[i] - 1;
            if (o < 0) {
                v->slots[i] = r + 1;
                break;
            }
            if (strcmp(tb_vectors_word(v, o), w) == 0) {
                memset(v->unit + o * v->dim, 0, (size_t)v->dim * sizeof(float));
                v->usable[o] = 0;
                v->slots[i] = r + 1;
                break;
            }
        }
    }
    return TB_OK;
}

/* Scales row r to unit length (computed in double); a zero row stays zero and unusable. */
static void normalise_row(tb_vectors *v, int64_t r)
{
    float *x = v->unit + r * v->dim;
    double ss = 0;
    for (int j = 0; j < v->dim; j++) ss += (double)x[j] * x[j];
    if (ss > 0 && isfinite(ss)) {
        double inv = 1.0 / sqrt(ss);
        for (int j = 0; j < v->dim; j++) x[j] = (float)(x[j] * inv);
        v->usable[r] = 1;
    } else {
        memset(x, 0, (size_t)v->dim * sizeof(float));
        v->usable[r] = 0;
    }
}

static int alloc_rows(tb_vectors *v, int64_t rows, int dim, size_t text_bytes)
{
    v->rows = rows;
    v->dim = dim;
    v->text_bytes = text_bytes;
    v->text = malloc(text_bytes ? text_bytes : 1);
    v->word_off = malloc((size_t)(rows ? rows : 1) * sizeof *v->word_off);
    v->unit = aligned_alloc(64, ((size_t)rows * (size_t)dim * sizeof(float) + 64) / 64 * 64);
    v->usable = calloc((size_t)(rows ? rows : 1), 1);
    if (!v->text || !v->word_off || !v->unit || !v->usable)
        return TB_ERR(TB_ENOMEM, "word vectors: out of memory for %lld x %d", (long long)rows, dim);
    return TB_OK;
}

int tb_vectors_from_rows(tb_vectors *v, const char *const *words, int64_t n, const float *mat, int dim)
{
    int rc = TB_OK;
    memset(v, 0, sizeof *v);
    TB_CHECK(n >= 0 && dim > 0, TB_EINVAL, "word vectors: %lld rows of dimension %d", (long long)n, dim);
    size_t bytes = 0;
    for (int64_t i = 0; i < n; i++) bytes += strlen(words[i]) + 1;
    TB_TRY(alloc_rows(v, n, dim, bytes));
    size_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t len = strlen(words[i]) + 1;
        memcpy(v->text + off, words[i], len);
        v->word_off[i] = (int64_t)off;
        off += len;
        memcpy(v->unit + i * dim, mat + i * dim, (size_t)dim * sizeof(float));
        normalise_row(v, i);
    }
    TB_TRY(build_index(v));
error:
    if (rc) tb_vectors_free(v);
    return rc;
}

/* ---- text files ---------------------------------------------------------------------------- */

static int is_sep(char c)
{
    return c == ' ' || c == '\t';
}

/* Reads the whole file into a NUL-terminated buffer. */
static int read_all(const char *path, char **out, size_t *n)
{
    int rc = TB_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    TB_CHECK(f, TB_EIO, "word vectors: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    TB_CHECK(fstat(fileno(f), &st) == 0, TB_EIO, "word vectors: cannot stat '%s'", path);
    buf = malloc((size_t)st.st_size + 1);
    TB_CHECK(buf, TB_ENOMEM, "word vectors: out of memory for '%s' (%lld bytes)", path, (long long)st.st_size);
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    TB_CHECK(got == (size_t)st.st_size, TB_EIO, "word vectors: short read of '%s'", path);
    buf[got] = 0;
    *out = buf;
    *n = got;
    buf = NULL;
error:
    free(buf);
    if (f) fclose(f);
    return rc;
}

/* Fields of line [s, e) separated by spaces / tabs. */
static int count_fields(const char *s, const char *e)
{
    int n = 0;
    while (s < e) {
        while (s < e && is_sep(*s)) s++;
        if (s >= e) break;
        n++;
        while (s < e && !is_sep(*s)) s++;
    }
    return n;
}

static int is_vec_header(const char *s, const char *e)
{
    if (count_fields(s, e) != 2) return 0;
    for (const char *p = s; p < e; p++)
        if (!is_sep(*p) && (*p < '0' || *p > '9')) return 0;
    return 1;
}

/* One line's problem, kept for the smallest line number. */
typedef struct parse_err {
    int64_t line; /* 1-based file line, INT64_MAX: none */
    int field;    /* 1-based field (the word is field 1) */
    int got;      /* fields on the line (ragged) or -1 (not a number) */
} parse_err;

static const double pow10_tab[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Parses one number at p (before e): plain decimals with up to 15 significant digits and a
 * decimal exponent within +-22 exactly (mantissa and power of ten are exact doubles, so their
 * product or quotient is the correctly rounded double), then rounded to float; anything else
 * (more digits, "1e-30", "nan") through strtof. Returns the end, or NULL when the field is not a
 * number. */
static const char *parse_number(const char *p, const char *e, float *out)
{
    const char *s = p;
    int neg = 0;
    if (p < e && (*p == '-' || *p == '+')) neg = *p++ == '-';
    uint64_t m = 0;
    int sig = 0, exp10 = 0, any = 0;
    for (; p < e && *p >= '0' && *p <= '9'; p++, any = 1) {
        if (sig < 19) {
            m = m * 10 + (uint64_t)(*p - '0');
            sig += m != 0;
        } else {
            exp10++;
        }
    }
    if (p < e && *p == '.') {
        for (p++; p < e && *p >= '0' && *p <= '9'; p++, any = 1) {
            if (sig < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                sig += m != 0;
                exp10--;
            }
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        int eneg = 0, ev = 0, edig = 0;
        if (q < e && (*q == '-' || *q == '+')) eneg = *q++ == '-';
        for (; q < e && *q >= '0' && *q <= '9'; q++, edig++)
            if (ev < 10000) ev = ev * 10 + (*q - '0');
        if (!edig) any = 0;
        exp10 += eneg ? -ev : ev;
        p = q;
    }
    if (any && (p == e || is_sep(*p)) && sig <= 15 && exp10 >= -22 && exp10 <= 22) {
        double v = exp10 < 0 ? (double)m / pow10_tab[-exp10] : (double)m * pow10_tab[exp10];
        *out = (float)(neg ? -v : v);
        return p;
    }
    char *end;
    *out = strtof(s, &end);
    if (end == s || end > e || (end < e && !is_sep(*end)) || !isfinite(*out)) return NULL;
    return end;
}

/* Parses the numbers of word line `r` ([s, e), word already skipped) into v->unit[r]. */
static int parse_numbers(tb_vectors *v, int64_t r, const char *s, const char *e, parse_err *err)
{
    float *x = v->unit + r * v->dim;
    const char *p = s;
    for (int j = 0; j < v->dim; j++) {
        while (p < e && is_sep(*p)) p++;
        if (p >= e) {
            err->field = j + 2;
            err->got = j + 1;
            return -1;
        }
        const char *end = parse_number(p, e, &x[j]);
        if (!end) {
            err->field = j + 2;
            err->got = -1;
            return -1;
        }
        p = end;
    }
    while (p < e && is_sep(*p)) p++;
    if (p < e) {
        err->field = v->dim + 2;
        err->got = count_fields(s, e) + 1;
        return -1;
    }
    return 0;
}

int tb_vectors_load_text(tb_vectors *v, const char *path, int64_t max_rows, int threads)
{
    int rc = TB_OK;
    char *buf = NULL;
    size_t n = 0;
    const char **line_s = NULL, **line_e = NULL;
    int64_t *line_no = NULL;
    memset(v, 0, sizeof *v);
    TB_TRY(read_all(path, &buf, &n));
    /* line table: word lines only */
    int64_t cap = 1024, rows = 0, lineno = 0;
    line_s = malloc((size_t)cap * sizeof *line_s);
    line_e = malloc((size_t)cap * sizeof *line_e);
    line_no = malloc((size_t)cap * sizeof *line_no);
    TB_CHECK(line_s && line_e && line_no, TB_ENOMEM, "word vectors: out of memory");
    size_t text_bytes = 0;
    for (const char *p = buf, *end = buf + n; p < end && (max_rows <= 0 || rows < max_rows);) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        lineno++;
        if (e > p && e[-1] == '\r') e--;
        if (lineno == 1 && is_vec_header(p, e)) {
            p = next;
            continue;
        }
        const char *w = p;
        while (w < e && !is_sep(*w)) w++;
        TB_CHECK(w > p, TB_EFORMAT, "%s:%lld: %s (expected 'word v1 ... vd')", path, (long long)lineno,
                 e == p ? "empty line" : "line starts with a space");
        if (rows == cap) {
            cap *= 2;
            const char **ns = realloc(line_s, (size_t)cap * sizeof *ns);
            if (ns) line_s = ns;
            const char **ne = realloc(line_e, (size_t)cap * sizeof *ne);
            if (ne) line_e = ne;
            int64_t *nn = realloc(line_no, (size_t)cap * sizeof *nn);
            if (nn) line_no = nn;
            TB_CHECK(ns && ne && nn, TB_ENOMEM, "word vectors: out of memory");
        }
        line_s[rows] = p;
        line_e[rows] = e;
        line_no[rows] = lineno;
        text_bytes += (size_t)(w - p) + 1;
        rows++;
        p = next;
    }
    TB_CHECK(rows > 0, TB_EFORMAT, "%s: no word vectors in the file", path);
    int dim = count_fields(line_s[0], line_e[0]) - 1;
    TB_CHECK(dim >= 1, TB_EFORMAT, "%s:%lld: a word without numbers (expected 'word v1 ... vd')", path,
             (long long)line_no[0]);
    TB_TRY(alloc_rows(v, rows, dim, text_bytes));
    size_t off = 0;
    for (int64_t r = 0; r < rows; r++) {
        const char *w = line_s[r];
        size_t len = 0;
        while (w + len < line_e[r] && !is_sep(w[len])) len++;
        memcpy(v->text + off, w, len);
        v->text[off + len] = 0;
        v->word_off[r] = (int64_t)off;
        off += len + 1;
    }
    parse_err first = {.line = INT64_MAX};
    int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel num_threads(nt)
    {
        parse_err mine = {.line = INT64_MAX};
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (line_no[r] > mine.line) continue;
            const char *w = line_s[r];
            while (w < line_e[r] && !is_sep(*w)) w++;
            parse_err e = {.line = line_no[r]};
            if (parse_numbers(v, r, w, line_e[r], &e) != 0) {
                if (e.line < mine.line) mine = e;
                continue;
            }
            if (strcmp(tb_vectors_word(v, r), "<unk>") == 0) memset(v->unit + r * dim, 0, (size_t)dim * sizeof(float));
            normalise_row(v, r);
        }
#pragma omp critical(tb_vectors_err)
        if (mine.line < first.line) first = mine;
    }
    if (first.line != INT64_MAX) {
        if (first.got < 0)
            rc = TB_ERR(TB_EFORMAT, "%s:%lld: field %d is not a number (expected 'word v1 ... v%d')", path,
                        (long long)first.line, first.field, dim);
        else
            rc = TB_ERR(TB_EFORMAT, "%s:%lld: %d fields, expected %d ('word' and %d numbers, as on the first line)",
                        path, (long long)first.line, first.got, dim + 1, dim);
        goto error;
    }
    TB_TRY(build_index(v));
    struct stat st;
    if (stat(path, &st) == 0) {
        v->source_size = (uint64_t)st.st_size;
        v->source_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    }
    v->max_rows = max_rows;
error:
    free(buf);
    free(line_s);
    free(line_e);
    free(line_no);
    if (rc) tb_vectors_free(v);
    return rc;
}

/* ---- binary cache ---------------------------------------------------------------------------- */

int tb_vectors_save_cache(const tb_vectors *v, const char *path)
{
    int rc = TB_OK;
    char tmp[4096];
    FILE *f = NULL;
    TB_CHECK((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) < sizeof tmp, TB_EINVAL,
             "word vectors: cache path too long");
    f = fopen(tmp, "wb");
    TB_CHECK(f, TB_EIO, "word vectors: cannot create '%s': %s", tmp, strerror(errno));
    uint64_t hdr[6] = {(uint64_t)v->rows, (uint64_t)v->dim, v->text_bytes, v->source_size,
                       (uint64_t)v->source_mtime_ns, (uint64_t)v->max_rows};
    size_t head = sizeof cache_magic + sizeof hdr + v->text_bytes;
    size_t pad = (64 - head % 64) % 64;
    static const char zeros[64];
    size_t nf = (size_t)v->rows * (size_t)v->dim;
    TB_CHECK(fwrite(cache_magic, 1, sizeof cache_magic, f) == sizeof cache_magic &&
                 fwrite(hdr, sizeof hdr, 1, f) == 1 && fwrite(v->text, 1, v->text_bytes, f) == v->text_bytes &&
                 fwrite(zeros, 1, pad, f) == pad && fwrite(v->unit, sizeof(float), nf, f) == nf,
             TB_EIO, "word vectors: cannot write '%s'", tmp);
    TB_CHECK(fflush(f) == 0 && fsync(fileno(f)) == 0, TB_EIO, "word vectors: cannot write '%s'", tmp);
    int cl = fclose(f);
    f = NULL;
    TB_CHECK(cl == 0, TB_EIO, "word vectors: cannot write '%s'", tmp);
    TB_CHECK(rename(tmp, path) == 0, TB_EIO, "word vectors: cannot rename '%s' to '%s': %s", tmp, path,
             strerror(errno));
    return TB_OK;
error:
    if (f) fclose(f);
    unlink(tmp);
    return rc;
}

int tb_vectors_load_cache(tb_vectors *v, const char *path)
{
    int rc = TB_OK;
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "rb");
    if (!f && errno == ENOENT) return TB_ENOTFOUND; /* no message: the caller builds the cache */
    TB_CHECK(f, TB_EIO, "word vectors: cannot open cache '%s': %s", path, strerror(errno));
    char magic[8];
    uint64_t hdr[6];
    TB_CHECK(fread(magic, 1, 8, f) == 8 && memcmp(magic, cache_magic, 8) == 0 && fread(hdr, sizeof hdr, 1, f) == 1,
             TB_EFORMAT, "word vectors: '%s' is not a tinybert-c vector cache (TBVEC001)", path);
    TB_CHECK(hdr[0] < (1ull << 40) && hdr[1] >= 1 && hdr[1] < (1u << 20) && hdr[2] < (1ull << 40), TB_EFORMAT,
             "word vectors: cache '%s' has a damaged header", path);
    TB_TRY(alloc_rows(v, (int64_t)hdr[0], (int)hdr[1], (size_t)hdr[2]));
    v->source_size = hdr[3];
    v->source_mtime_ns = (int64_t)hdr[4];
    v->max_rows = (int64_t)hdr[5];
    size_t head = sizeof cache_magic + sizeof hdr + v->text_bytes;
    size_t pad = (64 - head % 64) % 64;
    size_t nf = (size_t)v->rows * (size_t)v->dim;
    TB_CHECK(fread(v->text, 1, v->text_bytes, f) == v->text_bytes && fseek(f, (long)pad, SEEK_CUR) == 0 &&
                 fread(v->unit, sizeof(float), nf, f) == nf,
             TB_EFORMAT, "word vectors: cache '%s' is truncated", path);
    TB_CHECK(v->text_bytes > 0 && v->text[v->text_bytes - 1] == 0, TB_EFORMAT,
             "word vectors: cache '%s' has a damaged word list", path);
    int64_t r = 0;
    for (size_t off = 0; off < v->text_bytes && r <= v->rows; off += strlen(v->text + off) + 1) {
        if (r < v->rows) v->word_off[r] = (int64_t)off;
        r++;
    }
    TB_CHECK(r == v->rows, TB_EFORMAT, "word vectors: cache '%s' has %lld words for %lld rows", path, (long long)r,
             (long long)v->rows);
    for (int64_t i = 0; i < v->rows; i++) {
        const float *x = v->unit + i * v->dim;
        int nz = 0;
        for (int j = 0; j < v->dim && !nz; j++) nz = x[j] != 0;
        v->usable[i] = (uint8_t)nz;
    }
    TB_TRY(build_index(v));
error:
    if (f) fclose(f);
    if (rc) tb_vectors_free(v);
    return rc;
}

int tb_vectors_open(tb_vectors *v, const char *path, const char *cache_path, int64_t max_rows, int threads,
                    int *from_cache)
{
    int rc = TB_OK;
    if (from_cache) *from_cache = 0;
    if (cache_path) {
        struct stat st;
        TB_CHECK(stat(path, &st) == 0, TB_EIO, "word vectors: cannot open '%s': %s", path, strerror(errno));
        rc = tb_vectors_load_cache(v, cache_path);
        if (rc == TB_OK) {
            int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            if (v->source_size == (uint64_t)st.st_size && v->source_mtime_ns == mt && v->max_rows == max_rows) {
                if (from_cache) *from_cache = 1;
                return TB_OK;
            }
            tb_vectors_free(v);
        } else if (rc != TB_ENOTFOUND) {
            return rc;
        }
        rc = TB_OK;
    }
    TB_TRY(tb_vectors_load_text(v, path, max_rows, threads));
    if (cache_path) TB_TRY(tb_vectors_save_cache(v, cache_path));
error:
    if (rc) tb_vectors_free(v);
    return rc;
}

/* ---- nearest neighbours ------------------------------------------------------------------------ */

/* Inserts (s, r) into the best-first list top[0..*n) of at most M entries. */
static void top_insert(float *ts, int64_t *tr, int *n, int M, float s, int64_t r)
{
    if (*n == M && !(s > ts[M - 1])) return; /* equal: the earlier (lower) row stays */
    int i = *n < M ? (*n)++ : M - 1;
    while (i > 0 && s > ts[i - 1]) {
        ts[i] = ts[i - 1];
        tr[i] = tr[i - 1];
        i--;
    }
    ts[i] = s;
    tr[i] = r;
}

int tb_vectors_nearest(const tb_vectors *v, const float *q, int n, const int64_t *exclude, int M, int64_t *out,
                       int *count)
{
    int rc = TB_OK;
    float *scores = NULL;
    TB_CHECK(M >= 1 && n >= 0, TB_EINVAL, "nearest words: M %d, n %d", M, n);
    TB_CHECK(v->rows <= INT32_MAX, TB_EINVAL, "nearest words: %lld rows is too many", (long long)v->rows);
    if (n == 0 || v->rows == 0) {
        for (int i = 0; i < n; i++) count[i] = 0;
        return TB_OK;
    }
    int64_t qb64 = ((int64_t)1 << 24) / v->rows; /* ~64 MB of scores per block */
    int qb = qb64 > 256 ? 256 : qb64 < 8 ? 8 : (int)qb64;
    if (qb > n) qb = n;
    scores = malloc((size_t)qb * (size_t)v->rows * sizeof *scores);
    TB_CHECK(scores, TB_ENOMEM, "nearest words: out of memory");
    for (int q0 = 0; q0 < n; q0 += qb) {
        int nq = n - q0 < qb ? n - q0 : qb;
        /* scores[rows, nq] = unit . q^T: the long side is the rows, so the product runs on all threads */
        TB_TRY(tb_linear_forward(scores, v->unit, q + (size_t)q0 * v->dim, NULL, (int)v->rows, v->dim, nq));
        /* each thread: a contiguous range of queries, the rows scanned in order (row-major reads) */
        int fail = 0;
#pragma omp parallel reduction(| : fail)
        {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            int i0 = (int)((int64_t)nq * t / nt), i1 = (int)((int64_t)nq * (t + 1) / nt);
            float *ts = malloc((size_t)(i1 - i0 + 1) * (size_t)M * sizeof *ts);
            int *k = calloc((size_t)(i1 - i0 + 1), sizeof *k);
            if (ts && k) {
                for (int64_t r = 0; r < v->rows; r++) {
                    if (!v->usable[r]) continue;
                    const float *row = scores + r * nq;
                    for (int i = i0; i < i1; i++) {
                        float x = row[i];
                        int j = i - i0;
                        if (k[j] == M && !(x > ts[(size_t)j * M + M - 1])) continue;
                        int64_t ex = exclude ? exclude[q0 + i] : -1;
                        if (r != ex) top_insert(ts + (size_t)j * M, out + (size_t)(q0 + i) * M, &k[j], M, x, r);
                    }
                }
                for (int i = i0; i < i1; i++) count[q0 + i] = k[i - i0];
            } else {
                fail = 1;
            }
            free(ts);
            free(k);
        }
        TB_CHECK(!fail, TB_ENOMEM, "nearest words: out of memory");
    }
error:
    free(scores);
    return rc;
}
