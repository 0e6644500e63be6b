/* stages/augment/augment.c - see augment.h. */
#include "augment.h"

#include "rows.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/outfile.h"
#include "tb/base/rng.h"
#include "tb/base/signals.h"
#include "tb/wire/stream.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tb_strs_free(tb_strs *s)
{
    free(s->buf);
    free(s->off);
    memset(s, 0, sizeof *s);
}

static int strs_push(tb_strs *s, const char *text, size_t len)
{
    if (s->n == s->ncap) {
        int nc = s->ncap ? 2 * s->ncap : 16;
        size_t *o = realloc(s->off, (size_t)nc * sizeof *o);
        if (!o) return TB_ERR(TB_ENOMEM, "augment: out of memory");
        s->off = o;
        s->ncap = nc;
    }
    if (s->len + len + 1 > s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 1024;
        while (nc < s->len + len + 1) nc *= 2;
        char *b = realloc(s->buf, nc);
        if (!b) return TB_ERR(TB_ENOMEM, "augment: out of memory");
        s->buf = b;
        s->cap = nc;
    }
    memcpy(s->buf + s->len, text, len);
    s->buf[s->len + len] = 0;
    s->off[s->n++] = s->len;
    s->len += len + 1;
    return TB_OK;
}

static const char *strs_at(const tb_strs *s, int i)
{
    return s->buf + s->off[i];
}

/* 1 when the words prev and w are joined without a space: `cjk_join` and either of them is a CJK
 * character (tb_augment_is_cjk_text_char). The basic tokenizer splits such characters apart
 * anyway, so the sentence tokenizes the same either way. */
static int no_space(const char *prev, const char *w, int cjk_join)
{
    return cjk_join && (tb_augment_is_cjk_text_char(prev, strlen(prev)) || tb_augment_is_cjk_text_char(w, strlen(w)));
}

/* Appends w to the growing sentence b (a space before every word but the first, unless `tight`). */
static int cat_word(char **b, size_t *len, size_t *cap, const char *w, int first, int tight)
{
    size_t wl = strlen(w);
    if (*len + wl + 2 > *cap) {
        size_t nc = *cap ? 2 * *cap : 256;
        while (nc < *len + wl + 2) nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb) return TB_ERR(TB_ENOMEM, "augment: out of memory");
        *b = nb;
        *cap = nc;
    }
    if (!first && !tight) (*b)[(*len)++] = ' ';
    memcpy(*b + *len, w, wl);
    *len += wl;
    (*b)[*len] = 0;
    return TB_OK;
}

int tb_augment_draw(const tb_aug_sentence *s, const char *original, uint64_t seed, uint32_t column, uint64_t example,
                    int N, double p, tb_strs *out)
{
    int rc = TB_OK;
    char *base = NULL, *cur = NULL;
    size_t base_len = 0, base_cap = 0, cur_len = 0, cur_cap = 0;
    out->n = 0;
    out->len = 0;
    TB_CHECK(example <= UINT32_MAX, TB_EINVAL, "augment: example index %llu beyond 2^32", (unsigned long long)example);
    const int32_t nw = s->words.count, E = s->n_elig;
    for (int32_t k = 0; k < nw; k++) {
        const char *w = s->words.buf + s->words.off[k];
        int tight = k > 0 && no_space(s->words.buf + s->words.off[k - 1], w, s->cjk_join);
        TB_TRY(cat_word(&base, &base_len, &base_cap, w, k == 0, tight));
    }
    if (!base) TB_TRY(cat_word(&base, &base_len, &base_cap, "", 1, 0));
    if (E == 0) goto error; /* nothing can change */
    tb_rng_key key = tb_rng_key_make(seed, TB_RNG_AUGMENT);
    for (int d = 0; d < N; d++) {
        cur_len = 0;
        int32_t e = 0;
        const char *prev = NULL;
        for (int32_t k = 0; k < nw; k++) {
            const char *w = s->words.buf + s->words.off[k];
            if (e < E && s->elig[e] == k) {
                uint64_t i = 2 * ((uint64_t)d * (uint64_t)E + (uint64_t)e);
                uint32_t u_pick = tb_rng_u32(key, column, (uint32_t)example, i);
                uint32_t u_use = tb_rng_u32(key, column, (uint32_t)example, i + 1);
                int32_t n = s->cand_off[e + 1] - s->cand_off[e];
                int32_t pick = (int32_t)(((uint64_t)u_pick * (uint64_t)n) >> 32);
                if ((double)(u_use >> 8) * (1.0 / 16777216.0) < p) w = s->cand[s->cand_off[e] + pick];
                e++;
            }
            TB_TRY(cat_word(&cur, &cur_len, &cur_cap, w, k == 0, prev && no_space(prev, w, s->cjk_join)));
            prev = w;
        }
        if (strcmp(cur, original) == 0 || strcmp(cur, base) == 0) continue;
        int seen = 0;
        for (int i = 0; i < out->n && !seen; i++) seen = strcmp(strs_at(out, i), cur) == 0;
        if (!seen) TB_TRY(strs_push(out, cur, cur_len));
    }
error:
    free(base);
    free(cur);
    return rc;
}

int tb_augment_default_n(const char *format)
{
    tb_task t;
    if (!format || tb_task_parse(format, &t) != TB_OK) return 30;
    switch (t) {
    case TB_TASK_SST2:
    case TB_TASK_QNLI:
        return 20;
    case TB_TASK_MNLI:
    case TB_TASK_MNLI_MM:
    case TB_TASK_QQP:
        return 10;
    default:
        return 30;
    }
}

/* ---- files ------------------------------------------------------------------------------------ */

/* Lines in the file (for the progress total); -1 when it cannot be read. */
static int64_t count_lines(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char buf[1 << 16];
    int64_t n = 0;
    size_t got, last = 0;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++) n += buf[i] == '\n';
        last = got;
    }
    if (last && buf[last - 1] != '\n') n++;
    fclose(f);
    return n;
}

typedef struct chunk_row {
    char *line;       /* as read */
    int col[2];       /* text columns (-1: none or not augmented) */
    int64_t index;
} chunk_row;

typedef struct chunk {
    chunk_row *row;
    tb_aug_sentence *sent;   /* [2 * rows]: text a, text b */
    tb_aug_sentence **ptr;   /* the prepared ones */
    tb_strs *drawn;          /* [2 * rows] */
    int *rc;                 /* per item */
    int cap;
} chunk;

static void chunk_free(chunk *ch)
{
    for (int i = 0; i < ch->cap; i++) {
        free(ch->row[i].line);
        for (int k = 0; k < 2; k++) {
            tb_aug_sentence_free(&ch->sent[2 * i + k]);
            tb_strs_free(&ch->drawn[2 * i + k]);
        }
    }
    free(ch->row);
    free(ch->sent);
    free(ch->ptr);
    free(ch->drawn);
    free(ch->rc);
    memset(ch, 0, sizeof *ch);
}

static int chunk_init(chunk *ch, int n)
{
    memset(ch, 0, sizeof *ch);
    ch->row = calloc((size_t)n, sizeof *ch->row);
    ch->sent = calloc((size_t)n * 2, sizeof *ch->sent);
    ch->ptr = calloc((size_t)n * 2, sizeof *ch->ptr);
    ch->drawn = calloc((size_t)n * 2, sizeof *ch->drawn);
    ch->rc = calloc((size_t)n * 2, sizeof *ch->rc);
    ch->cap = n;
    if (!ch->row || !ch->sent || !ch->ptr || !ch->drawn || !ch->rc) {
        chunk_free(ch);
        return TB_ERR(TB_ENOMEM, "augment: out of memory for a chunk of %d rows", n);
    }
    for (int i = 0; i < 2 * n; i++) tb_aug_sentence_init(&ch->sent[i]);
    return TB_OK;
}

/* The text of field `col` of a tab-separated line, copied into a fresh string. */
static char *field_dup(const char *line, int col)
{
    const char *p = line;
    for (int i = 0; i < col && p; i++) {
        p = strchr(p, '\t');
        if (p) p++;
    }
    if (!p) return NULL;
    const char *tab = strchr(p, '\t');
    return strndup(p, tab ? (size_t)(tab - p) : strlen(p));
}

/* Writes one row's output lines. */
static int write_row(FILE *out, const chunk *ch, int i, int pair_quirk)
{
    int rc = TB_OK;
    const chunk_row *r = &ch->row[i];
    const tb_strs *da = &ch->drawn[2 * i], *db = &ch->drawn[2 * i + 1];
    char *a_orig = NULL;
    TB_TRY(tb_rows_write_line(out, r->line, -1, NULL, -1, NULL));
    if (r->col[0] >= 0)
        for (int k = 0; k < da->n; k++) TB_TRY(tb_rows_write_line(out, r->line, r->col[0], strs_at(da, k), -1, NULL));
    if (r->col[1] >= 0) {
        if (pair_quirk && r->col[0] >= 0) {
            /* the reference: b's list, original first, beside the last entry of a's list */
            const char *a_last = da->n ? strs_at(da, da->n - 1) : NULL;
            if (!a_last) {
                a_orig = field_dup(r->line, r->col[0]);
                TB_CHECK(a_orig, TB_ENOMEM, "augment: out of memory");
                a_last = a_orig;
            }
            char *b_orig = field_dup(r->line, r->col[1]);
            TB_CHECK(b_orig, TB_ENOMEM, "augment: out of memory");
            rc = tb_rows_write_line(out, r->line, r->col[0], a_last, r->col[1], b_orig);
            free(b_orig);
            if (rc) goto error;
            for (int k = 0; k < db->n; k++)
                TB_TRY(tb_rows_write_line(out, r->line, r->col[0], a_last, r->col[1], strs_at(db, k)));
        } else {
            for (int k = 0; k < db->n; k++)
                TB_TRY(tb_rows_write_line(out, r->line, r->col[1], strs_at(db, k), -1, NULL));
        }
    }
error:
    free(a_orig);
    return rc;
}

/* Prepares, computes and draws the candidates of the n rows of a chunk. */
static int chunk_process(tb_cands *c, const tb_augment_opts *o, int N, chunk *ch, int n)
{
    int rc = TB_OK;
    int items = 2 * n;
#pragma omp parallel for schedule(dynamic, 8)
    for (int it = 0; it < items; it++) {
        const chunk_row *r = &ch->row[it / 2];
        int col = r->col[it % 2];
        ch->rc[it] = TB_OK;
        if (col < 0) continue;
        char *text = field_dup(r->line, col);
        ch->rc[it] = text ? tb_cands_prepare(c, &ch->sent[it], text, strlen(text)) : TB_ENOMEM;
        free(text);
    }
    int np = 0;
    for (int it = 0; it < items; it++) {
        if (ch->rc[it]) return ch->rc[it] == TB_ENOMEM ? TB_ERR(TB_ENOMEM, "augment: out of memory") : ch->rc[it];
        if (ch->row[it / 2].col[it % 2] >= 0) ch->ptr[np++] = &ch->sent[it];
    }
    if (N > 0) TB_TRY(tb_cands_compute(c, ch->ptr, np)); /* N = 0: the input as it is, no MLM pass */
#pragma omp parallel for schedule(dynamic, 8)
    for (int it = 0; it < items; it++) {
        const chunk_row *r = &ch->row[it / 2];
        int col = r->col[it % 2];
        ch->drawn[it].n = 0;
        if (col < 0) continue;
        char *text = field_dup(r->line, col);
        ch->rc[it] = text ? tb_augment_draw(&ch->sent[it], text, o->seed, (uint32_t)(it % 2), (uint64_t)r->index, N,
                                            o->p, &ch->drawn[it])
                          : TB_ENOMEM;
        free(text);
    }
    for (int it = 0; it < items; it++)
        if (ch->rc[it]) return ch->rc[it] == TB_ENOMEM ? TB_ERR(TB_ENOMEM, "augment: out of memory") : ch->rc[it];
error:
    return rc;
}

int tb_augment_output_is_stream(const char *output)
{
    return strncmp(output, "tcp://", 6) == 0 || strncmp(output, "ipc://", 6) == 0 || strncmp(output, "file:", 5) == 0;
}

/* Where the output rows go: a task file (written to a temporary name, renamed when complete) or a
 * stream of text messages, one per chunk (a message file, too, is renamed into place when
 * complete: the stream's file writer does it). */
typedef struct sink {
    FILE *file;           /* the task file (out.f), or the chunk's memory stream */
    tb_outfile out;       /* the task file under its temporary name */
    tb_stream *stream;    /* NULL: task file */
    const char *format, *header;
    char *mem;            /* the chunk's rows (memory stream buffer) */
    size_t mem_len;
    uint64_t sent;        /* text messages sent */
} sink;

static int sink_open(sink *k, const tb_augment_opts *o, const char *header)
{
    int rc = TB_OK;
    memset(k, 0, sizeof *k);
    k->format = o->format;
    k->header = header;
    if (tb_augment_output_is_stream(o->output)) return tb_stream_open(&k->stream, o->output, TB_STREAM_WRITE, NULL);
    TB_TRY(tb_outfile_open(&k->out, o->output));
    k->file = k->out.f;
    if (header) TB_TRY(tb_rows_write_line(k->file, header, -1, NULL, -1, NULL));
error:
    return rc;
}

/* Starts a chunk: for a stream, its rows collect in memory until sink_end_chunk sends them. */
static int sink_begin_chunk(sink *k)
{
    if (!k->stream) return TB_OK;
    k->file = open_memstream(&k->mem, &k->mem_len);
    if (!k->file) return TB_ERR(TB_ENOMEM, "augment: out of memory for a chunk of rows");
    return TB_OK;
}

/* Ends a chunk: for a stream, sends its rows as one text message (docs/protocol.md, "text"). */
static int sink_end_chunk(sink *k)
{
    int rc = TB_OK;
    if (!k->stream) return TB_OK;
    tb_msg m;
    tb_msg_init(&m);
    int cl = fclose(k->file);
    k->file = NULL;
    TB_CHECK(cl == 0, TB_ENOMEM, "augment: out of memory for a chunk of rows");
    TB_TRY(tb_msg_set_str(&m, "format", k->format));
    if (k->header) TB_TRY(tb_msg_set_str(&m, "header", k->header));
    TB_TRY(tb_msg_set_strn(&m, "rows", k->mem, k->mem_len));
    TB_TRY(tb_stream_send(k->stream, &m, NULL));
    k->sent++;
error:
    tb_msg_free(&m);
    free(k->mem);
    k->mem = NULL;
    k->mem_len = 0;
    return rc;
}

/* Makes the output complete: renames the task file, or ends the stream (END, final acks; a
 * message file is renamed into place). */
static int sink_finish(sink *k)
{
    if (k->stream) return tb_stream_finish(k->stream);
    k->file = NULL;
    return tb_outfile_commit(&k->out);
}

/* Releases the sink; after a failure (`status` != TB_OK) the temporary file goes and the
 * stream's consumers are told why. */
static void sink_close(sink *k, int status)
{
    if (k->stream && k->file) fclose(k->file); /* a chunk's memory stream */
    free(k->mem);
    if (k->stream && status != TB_OK)
        tb_stream_close_failed(k->stream, status, tb_err_msg());
    else
        tb_stream_close(k->stream);
    tb_outfile_abort(&k->out);
    memset(k, 0, sizeof *k);
}

int tb_augment_file(tb_cands *c, const tb_augment_opts *o, tb_progress *progress, tb_augment_stats *st)
{
    int rc = TB_OK;
    tb_rows rows = {0};
    chunk ch = {0};
    sink out = {0};
    memset(st, 0, sizeof *st);
    int N = o->N >= 0 ? o->N : tb_augment_default_n(o->format);
    TB_CHECK(o->p >= 0 && o->p <= 1, TB_EINVAL, "augment: p must be within [0, 1], got %g", o->p);
    TB_CHECK(o->chunk >= 1, TB_EINVAL, "augment: chunk must be >= 1, got %d", o->chunk);
    TB_CHECK(o->columns & 3, TB_EINVAL, "augment: no text column to augment");
    TB_TRY(tb_rows_open(&rows, o->input, o->format));
    rows.lenient = o->lenient;
    TB_TRY(chunk_init(&ch, o->chunk));
    TB_TRY(sink_open(&out, o, rows.header));
    int64_t total = count_lines(o->input);
    if (total > 0 && rows.header) total--;
    if (progress) {
        progress->total = total;
    }
    for (int got = 1; got;) {
        int n = 0;
        while (n < o->chunk) {
            TB_TRY(tb_rows_next(&rows, &got));
            if (!got) break;
            chunk_row *r = &ch.row[n];
            free(r->line);
            r->line = strdup(rows.line);
            TB_CHECK(r->line, TB_ENOMEM, "augment: out of memory");
            r->col[0] = (o->columns & 1) ? rows.col_a : -1;
            r->col[1] = (o->columns & 2) ? rows.col_b : -1;
            r->index = rows.index;
            n++;
        }
        if (n == 0) break;
        TB_CHECK(!tb_signals_pending(), TB_EINTR, "augment: interrupted after %lld rows", (long long)st->rows);
        TB_TRY(chunk_process(c, o, N, &ch, n));
        TB_TRY(sink_begin_chunk(&out));
        for (int i = 0; i < n; i++) {
            TB_TRY(write_row(out.file, &ch, i, o->pair_quirk));
            st->rows_out += 1 + ch.drawn[2 * i].n + ch.drawn[2 * i + 1].n;
            st->texts += (ch.row[i].col[0] >= 0) + (ch.row[i].col[1] >= 0);
            if (o->pair_quirk && ch.row[i].col[0] >= 0 && ch.row[i].col[1] >= 0) st->rows_out++;
        }
        TB_TRY(sink_end_chunk(&out));
        st->rows += n;
        if (progress) tb_progress_update(progress, st->rows, st->rows, NAN, NAN);
    }
    st->skipped = rows.skipped;
    st->skipped_first_line = rows.skipped_first_line;
    TB_CHECK(st->rows > 0, TB_EFORMAT, "%s: no examples to augment (%s)", o->input,
             rows.skipped ? "every row was malformed and skipped" : "empty input");
    TB_TRY(sink_finish(&out));
    if (progress) tb_progress_finish(progress);
error:
    sink_close(&out, rc);
    chunk_free(&ch);
    tb_rows_close(&rows);
    return rc;
}
