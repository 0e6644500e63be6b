/* Reference test of tb-augment's candidates (stages/augment/cands.h) against
 * tests/reference/py/augment_ref.py, a PyTorch script written from SPEC.md that runs the
 * reference's algorithm one sentence and one word at a time.
 *
 * The script writes a random Hugging Face BertForMaskedLM (2 layers, hidden 64, the bert-base
 * vocabulary; names bert.* and cls.predictions.*, the tied decoder stored too). C loads it with
 * the shipped stop words and GloVe file and computes the candidates of every eligible word of the
 * first 200 SST-2 training sentences (data/sst2/train.tsv), batched; the script computes its own
 * and compares: equal as sets, and in the same order except where the reference's two logits (or
 * cosines) differ by less than 1e-5 relative. The batched path must also equal the
 * one-at-a-time path exactly. Second test: the GloVe neighbours (one matrix product, float32) of
 * the first 500 words of the shipped GloVe file against the script's float64 cosines, compared
 * the same way. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment/augmenter.h"
#include "augment/rows.h"
#include "augment/vectors.h"
#include "tb/base/error.h"

#define N_SENT 200
#define M_CANDS 15

static char dir[] = "/tmp/tb-augref-XXXXXX";

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void open_aug(tb_augmenter *a, int one_at_a_time)
{
    char model[512];
    snprintf(model, sizeof model, "%s/model", dir);
    tb_augmenter_opts o = {
        .model = model,
        .stopwords = TB_SOURCE_DIR "/data/augment/stopwords-en.txt",
        .vectors = TB_VEC_GLOVE,
        .glove = TB_SOURCE_DIR "/data/glove/glove.6B.100d.first2604.txt",
        .glove_max_words = 100000,
        .cands = {.M = M_CANDS, .batch = 64, .tokens = 8192, .one_at_a_time = one_at_a_time},
    };
    int rc = tb_augmenter_open(a, &o);
    cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
}

/* Reads the first N_SENT rows and prepares their sentences. */
static void prepare(tb_augmenter *a, tb_aug_sentence *s, tb_aug_sentence **ptr)
{
    tb_rows rows;
    cr_assert_eq(tb_rows_open(&rows, TB_SOURCE_DIR "/data/sst2/train.tsv", "sst-2"), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < N_SENT; i++) {
        int got = 0;
        cr_assert_eq(tb_rows_next(&rows, &got), TB_OK, "%s", tb_err_msg());
        cr_assert(got);
        tb_aug_sentence_init(&s[i]);
        const char *text = rows.field[rows.col_a];
        cr_assert_eq(tb_cands_prepare(&a->cands, &s[i], text, strlen(text)), TB_OK, "%s", tb_err_msg());
        ptr[i] = &s[i];
    }
    tb_rows_close(&rows);
}

Test(augment_torch, candidates_match_the_reference, .timeout = 600)
{
    cr_assert(mkdtemp(dir));
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             TB_PYTHON " " TB_SOURCE_DIR "/tests/reference/py/augment_ref.py make-model %s/model --vocab " TB_SOURCE_DIR
                       "/data/vocab/bert-base-uncased-vocab.txt --layers 2 --hidden 64 --heads 4 --inter 128 --seed 7",
             dir);
    cr_assert_eq(run(cmd), 0, "making the model failed: %s", cmd);

    static tb_aug_sentence sb[N_SENT], so[N_SENT];
    tb_aug_sentence *pb[N_SENT], *po[N_SENT];
    tb_augmenter ab, ao;
    open_aug(&ab, 0);
    open_aug(&ao, 1);
    prepare(&ab, sb, pb);
    prepare(&ao, so, po);
    cr_assert_eq(tb_cands_compute(&ab.cands, pb, N_SENT), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_cands_compute(&ao.cands, po, N_SENT), TB_OK, "%s", tb_err_msg());
    cr_assert_lt(ab.cands.mlm_forwards * 10, ao.cands.mlm_forwards, "batched: %lld passes, one at a time: %lld",
                 (long long)ab.cands.mlm_forwards, (long long)ao.cands.mlm_forwards);

    char path[512];
    snprintf(path, sizeof path, "%s/c.tsv", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    int64_t words = 0;
    for (int i = 0; i < N_SENT; i++) {
        cr_assert_eq(sb[i].n_elig, so[i].n_elig);
        for (int e = 0; e < sb[i].n_elig; e++) {
            int32_t k = sb[i].elig[e];
            int32_t n = sb[i].cand_off[e + 1] - sb[i].cand_off[e];
            cr_assert_eq(n, so[i].cand_off[e + 1] - so[i].cand_off[e], "sentence %d word %d", i, k);
            fprintf(f, "%d\t%d\t%s\t", i, k, sb[i].words.buf + sb[i].words.off[k]);
            for (int32_t c = 0; c < n; c++) {
                const char *x = sb[i].cand[sb[i].cand_off[e] + c], *y = so[i].cand[so[i].cand_off[e] + c];
                cr_assert_str_eq(x, y, "sentence %d word %d candidate %d: batched '%s', one at a time '%s'", i, k, c,
                                 x, y);
                fprintf(f, "%s%s", c ? " " : "", x);
            }
            fputc('\n', f);
            words++;
        }
        tb_aug_sentence_free(&sb[i]);
        tb_aug_sentence_free(&so[i]);
    }
    cr_assert_eq(fclose(f), 0);
    cr_assert_gt(words, 500, "only %lld eligible words", (long long)words);
    tb_augmenter_close(&ab);
    tb_augmenter_close(&ao);

    snprintf(cmd, sizeof cmd,
             TB_PYTHON " " TB_SOURCE_DIR "/tests/reference/py/augment_ref.py candidates %s/model " TB_SOURCE_DIR
                       "/data/glove/glove.6B.100d.first2604.txt " TB_SOURCE_DIR
                       "/data/augment/stopwords-en.txt " TB_SOURCE_DIR "/data/sst2/train.tsv %d %d %s/ref.jsonl",
             dir, N_SENT, M_CANDS, dir);
    cr_assert_eq(run(cmd), 0, "the reference script failed: %s", cmd);
    snprintf(cmd, sizeof cmd,
             TB_PYTHON " " TB_SOURCE_DIR "/tests/reference/py/augment_ref.py compare %s/ref.jsonl %s/c.tsv 1e-5", dir,
             dir);
    cr_assert_eq(run(cmd), 0, "candidates differ from the reference: %s", cmd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    run(cmd);
}

Test(augment_torch, glove_neighbours_match_the_reference, .timeout = 300)
{
    enum { NQ = 500 };
    char d[] = "/tmp/tb-augglove-XXXXXX";
    cr_assert(mkdtemp(d));
    tb_vectors v;
    cr_assert_eq(tb_vectors_load_text(&v, TB_SOURCE_DIR "/data/glove/glove.6B.100d.first2604.txt", 100000, 0), TB_OK,
                 "%s", tb_err_msg());
    int64_t rows[NQ], out[NQ * M_CANDS];
    int count[NQ], nq = 0;
    static float q[NQ * 100];
    cr_assert_eq(v.dim, 100);
    for (int64_t r = 0; r < NQ; r++) {
        if (!v.usable[r]) continue;
        rows[nq] = r;
        memcpy(q + (size_t)nq * 100, v.unit + r * 100, sizeof(float) * 100);
        nq++;
    }
    cr_assert_gt(nq, NQ - 5);
    cr_assert_eq(tb_vectors_nearest(&v, q, nq, rows, M_CANDS, out, count), TB_OK, "%s", tb_err_msg());
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/c.tsv", d);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < nq; i++) {
        cr_assert_eq(count[i], M_CANDS);
        fprintf(f, "%lld\t0\t%s\t", (long long)rows[i], tb_vectors_word(&v, rows[i]));
        for (int k = 0; k < count[i]; k++) fprintf(f, "%s%s", k ? " " : "", tb_vectors_word(&v, out[i * M_CANDS + k]));
        fputc('\n', f);
    }
    cr_assert_eq(fclose(f), 0);
    tb_vectors_free(&v);
    snprintf(cmd, sizeof cmd,
             TB_PYTHON " " TB_SOURCE_DIR "/tests/reference/py/augment_ref.py glove-neighbours " TB_SOURCE_DIR
                       "/data/glove/glove.6B.100d.first2604.txt %d %d %s/ref.jsonl",
             NQ, M_CANDS, d);
    cr_assert_eq(run(cmd), 0, "the reference script failed: %s", cmd);
    snprintf(cmd, sizeof cmd, TB_PYTHON " " TB_SOURCE_DIR "/tests/reference/py/augment_ref.py compare %s/ref.jsonl %s/c.tsv 1e-5",
             d, d);
    cr_assert_eq(run(cmd), 0, "GloVe neighbours differ from the reference: %s", cmd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    run(cmd);
}
