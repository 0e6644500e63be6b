/* bench_augment: tb-augment's candidate speed (sentences/s) on SST-2 sentences, batched against
 * its own one-at-a-time path and against the PyTorch reference script (one sentence and one
 * word at a time, float32), same model, sentences and thread count, in one run; FLOPs per
 * augmented word; and the word-vector loader on a synthetic 400,000 x 100 GloVe file (text and
 * binary cache).
 *
 *   bench_augment [--threads N] [--sentences N] [--base-sentences N] [--no-python] [--no-base]
 *                 [--no-vectors] [--no-models]
 * Models (random Hugging Face BertForMaskedLM written by tests/reference/py/augment_ref.py):
 *   demo  - the demo teacher's shape (configs/demo/teacher.json: 4 layers, 256, 4 heads, 1024)
 *   base  - bert-base (12 layers, 768, 12 heads, 3072)
 * One JSON object per line on stdout. Timings on a shared machine are indicative only. */
#include "augment/augmenter.h"
#include "augment/rows.h"
#include "augment/vectors.h"
#include "tb/base/error.h"
#include "tb/base/threads.h"
#include "tb/model/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"
#define GLOVE TB_SOURCE_DIR "/data/glove/glove.6B.100d.first2604.txt"
#define STOP TB_SOURCE_DIR "/data/augment/stopwords-en.txt"
#define SST2 TB_SOURCE_DIR "/data/sst2/train.tsv"
#ifndef TB_PYTHON
#define TB_PYTHON "/usr/bin/python3"
#endif
#define REF TB_PYTHON " " TB_SOURCE_DIR "/tests/reference/py/augment_ref.py"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct model_spec {
    const char *name;
    int layers, hidden, heads, inter;
} model_spec;

/* Forward FLOPs (multiply-adds x 2) of one masked sequence of length T with the MLM head on one row. */
static double seq_flops(const tb_bert_config *c, double T)
{
    double C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    double layer = 2 * T * (4 * C * C + 2 * C * F) + 4 * T * T * C;
    return c->num_hidden_layers * layer + 2 * C * C + 2 * C * V;
}

/* Candidates of n sentences with one engine; returns seconds; *flops gets the useful FLOPs
 * (unpadded sequences) per MLM word. */
static double run_cands(const char *model, int one, int n, char **texts, int threads, int64_t *words,
                        int64_t *mlm_words, double *flops, int64_t *positions, int64_t *passes)
{
    tb_augmenter a;
    tb_augmenter_opts o = {.model = model, .stopwords = STOP, .vectors = TB_VEC_GLOVE, .glove = GLOVE,
                           .glove_max_words = 100000,
                           .cands = {.M = 15, .batch = 64, .tokens = 8192, .one_at_a_time = one, .threads = threads}};
    if (tb_augmenter_open(&a, &o)) {
        fprintf(stderr, "bench_augment: %s\n", tb_err_msg());
        exit(1);
    }
    tb_aug_sentence *s = calloc((size_t)n, sizeof *s);
    tb_aug_sentence **p = calloc((size_t)n, sizeof *p);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        tb_aug_sentence_init(&s[i]);
        if (tb_cands_prepare(&a.cands, &s[i], texts[i], strlen(texts[i]))) exit(1);
        p[i] = &s[i];
    }
    if (tb_cands_compute(&a.cands, p, n)) {
        fprintf(stderr, "bench_augment: %s\n", tb_err_msg());
        exit(1);
    }
    double dt = now() - t0;
    double f = 0;
    for (int i = 0; i < n; i++)
        for (int e = 0; e < s[i].n_elig; e++)
            if (s[i].kind[e] == TB_CAND_MLM) {
                int T = 2 * s[i].pieces.count + 3;
                f += seq_flops(&a.model.config, T < a.cands.max_len ? T : a.cands.max_len);
            }
    *words = a.cands.eligible;
    *mlm_words = a.cands.mlm_words;
    *flops = a.cands.mlm_words ? f / (double)a.cands.mlm_words : 0;
    *positions = a.cands.mlm_positions;
    *passes = a.cands.mlm_forwards;
    for (int i = 0; i < n; i++) tb_aug_sentence_free(&s[i]);
    free(s);
    free(p);
    tb_augmenter_close(&a);
    return dt;
}

static char **read_sentences(int n)
{
    tb_rows r;
    char **t = calloc((size_t)n, sizeof *t);
    if (tb_rows_open(&r, SST2, "sst-2")) exit(1);
    for (int i = 0; i < n; i++) {
        int got;
        if (tb_rows_next(&r, &got) || !got) exit(1);
        t[i] = strdup(r.field[r.col_a]);
    }
    tb_rows_close(&r);
    return t;
}

static void bench_model(const char *dir, const model_spec *m, int n, int threads, int python)
{
    char model[512], cmd[2048];
    snprintf(model, sizeof model, "%s/%s", dir, m->name);
    snprintf(cmd, sizeof cmd, REF " make-model %s --vocab " VOCAB " --layers %d --hidden %d --heads %d --inter %d",
             model, m->layers, m->hidden, m->heads, m->inter);
    if (sh(cmd)) exit(1);
    char **texts = read_sentences(n);
    int64_t words, mlm, pos_b, pos_o, pass_b, pass_o;
    double flops;
    double tb = run_cands(model, 0, n, texts, threads, &words, &mlm, &flops, &pos_b, &pass_b);
    double to = run_cands(model, 1, n, texts, threads, &words, &mlm, &flops, &pos_o, &pass_o);
    printf("{\"model\":\"%s\",\"threads\":%d,\"sentences\":%d,\"eligible_words\":%lld,\"mlm_words\":%lld,"
           "\"gflop_per_mlm_word\":%.4f,\"padding_overhead\":%.3f,\"batched_passes\":%lld,"
           "\"batched_sentences_per_s\":%.2f,\"one_at_a_time_sentences_per_s\":%.2f,\"batched_speedup\":%.2f",
           m->name, threads, n, (long long)words, (long long)mlm, flops / 1e9, (double)pos_b / (double)pos_o,
           (long long)pass_b, n / tb, n / to, to / tb);
    fflush(stdout);
    if (python) {
        char out[512];
        snprintf(out, sizeof out, "%s/py.json", dir);
        snprintf(cmd, sizeof cmd, REF " bench %s " GLOVE " " STOP " " SST2 " %d 15 %d > %s", model, n,
                 threads > 0 ? threads : 1, out);
        if (sh(cmd) == 0) {
            FILE *f = fopen(out, "r");
            double secs = 0;
            char line[1024] = "";
            if (f && fgets(line, sizeof line, f)) {
                char *p = strstr(line, "\"seconds\": ");
                if (p) secs = atof(p + 11);
            }
            if (f) fclose(f);
            unlink(out);
            if (secs > 0)
                printf(",\"pytorch_sentences_per_s\":%.2f,\"batched_vs_pytorch\":%.2f,\"one_at_a_time_vs_pytorch\":%.2f",
                       n / secs, secs / tb, secs / to);
        }
    }
    printf("}\n");
    fflush(stdout);
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    snprintf(cmd, sizeof cmd, "rm -rf %s", model);
    sh(cmd);
}

/* A synthetic GloVe file: 400,000 words x 100 numbers with 6 decimals, like glove.6B.100d. */
static void bench_vectors(const char *dir, int threads)
{
    char path[512], cache[512];
    snprintf(path, sizeof path, "%s/synthetic.txt", dir);
    snprintf(cache, sizeof cache, "%s/synthetic.cache", dir);
    FILE *f = fopen(path, "w");
    if (!f) exit(1);
    uint64_t x = 88172645463325252ull;
    for (int r = 0; r < 400000; r++) {
        fprintf(f, "w%d", r);
        for (int j = 0; j < 100; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            fprintf(f, " %.6f", ((double)(x >> 11) / 9007199254740992.0 - 0.5) * 2);
        }
        fputc('\n', f);
    }
    fclose(f);
    tb_vectors v;
    double t0 = now();
    if (tb_vectors_load_text(&v, path, 0, threads)) exit(1);
    double t_text = now() - t0;
    if (tb_vectors_save_cache(&v, cache)) exit(1);
    tb_vectors_free(&v);
    t0 = now();
    if (tb_vectors_load_cache(&v, cache)) exit(1);
    double t_cache = now() - t0;
    /* neighbours of 1,000 words: one product per block of queries */
    int64_t *out = malloc(sizeof *out * 1000 * 15);
    int *cnt = malloc(sizeof *cnt * 1000);
    t0 = now();
    if (tb_vectors_nearest(&v, v.unit, 1000, NULL, 15, out, cnt)) exit(1);
    double t_nn = now() - t0;
    printf("{\"vectors\":\"synthetic 400000 x 100\",\"threads\":%d,\"text_load_s\":%.2f,\"cache_load_s\":%.3f,"
           "\"nearest_1000_words_s\":%.3f}\n",
           threads, t_text, t_cache, t_nn);
    free(out);
    free(cnt);
    tb_vectors_free(&v);
    unlink(path);
    unlink(cache);
}

int main(int argc, char **argv)
{
    int threads = 1, n = 200, n_base = 40, python = 1, base = 1, vectors = 1, models = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sentences") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--base-sentences") && i + 1 < argc) n_base = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-python")) python = 0;
        else if (!strcmp(argv[i], "--no-base")) base = 0;
        else if (!strcmp(argv[i], "--no-vectors")) vectors = 0;
        else if (!strcmp(argv[i], "--no-models")) models = 0;
        else {
            fprintf(stderr, "usage: bench_augment [--threads N] [--sentences N] [--base-sentences N] [--no-python] "
                            "[--no-base] [--no-vectors] [--no-models]\n");
            return 2;
        }
    }
    if (tb_threads_setup(threads)) return 1;
    char dir[] = "/tmp/tb-augbench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    if (vectors) bench_vectors(dir, threads);
    model_spec demo = {"demo", 4, 256, 4, 1024}, bb = {"bert-base", 12, 768, 12, 3072};
    if (models) bench_model(dir, &demo, n, threads, python);
    if (models && base) bench_model(dir, &bb, n_base, threads, python);
    rmdir(dir);
    return 0;
}
