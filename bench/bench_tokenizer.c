/* bench_tokenizer: BERT tokenization speed on one core (tokens/s, MB/s) over real text, side by
 * side with the pure-Python port of tokenization.py (bench/bert_tokenization.py) in the same run.
 *
 *   bench_tokenizer [--no-python] [--repeat N] [FILE...]
 * Default files: the first 4,000 SST-2 train sentences and WikiText-2 valid, both shipped in data/
 * (the full SST-2 train set can be given as a FILE). Each file is
 * tokenized line by line (split on "\n", as the readers do). One JSON object per line on stdout. */
#include "tb/base/error.h"
#include "tb/text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static const char *base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Runs the Python baseline; returns its seconds (and tokens) or -1. */
static double python_baseline(const char *path, long *tokens)
{
    char cmd[2048], out[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/bert_tokenization.py %s --bench %s", TB_SOURCE_DIR, VOCAB,
             path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    double seconds = -1;
    if (fgets(out, sizeof out, p)) {
        const char *t = strstr(out, "\"tokens\": "), *s = strstr(out, "\"seconds\": ");
        if (t && s) {
            *tokens = atol(t + 10);
            seconds = atof(s + 11);
        }
    }
    if (pclose(p) != 0) return -1;
    return seconds;
}

int main(int argc, char **argv)
{
    int python = 1, repeat = 3, nfiles = 0;
    const char *files[64];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-python") == 0) python = 0;
        else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (nfiles < 64) files[nfiles++] = argv[i];
    }
    if (repeat < 1) repeat = 1;
    if (nfiles == 0) {
        files[nfiles++] = TB_SOURCE_DIR "/data/golden/sst2-train-4000.txt";
        files[nfiles++] = TB_SOURCE_DIR "/data/corpus/wikitext-2.valid.txt";
    }
    tb_tokenizer tok;
    if (tb_tokenizer_init(&tok, VOCAB, NULL) != TB_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", tb_err_msg());
        return 1;
    }
    tb_ids ids;
    tb_ids_init(&ids);
    int code = 0;
    for (int f = 0; f < nfiles; f++) {
        size_t len;
        char *buf = slurp(files[f], &len);
        if (!buf) {
            fprintf(stderr, "bench_tokenizer: cannot read %s\n", files[f]);
            code = 1;
            continue;
        }
        double best = 1e30;
        long tokens = 0, lines = 0;
        for (int r = 0; r < repeat; r++) {
            tokens = lines = 0;
            double t0 = now();
            size_t pos = 0;
            while (pos <= len) {
                const char *nl = memchr(buf + pos, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
                if (tb_tokenizer_tokenize(&tok, buf + pos, n, &ids) != TB_OK) {
                    fprintf(stderr, "bench_tokenizer: %s line %ld: %s\n", files[f], lines + 1, tb_err_msg());
                    code = 1;
                    break;
                }
                tokens += ids.count;
                lines++;
                pos += n + 1;
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        double mbs = (double)len / 1e6 / best, tps = (double)tokens / best;
        printf("{\"bench\": \"tokenizer\", \"impl\": \"tinybert-c\", \"file\": \"%s\", \"lines\": %ld, \"bytes\": %zu, "
               "\"tokens\": %ld, \"seconds\": %.4f, \"MB_per_s\": %.2f, \"tokens_per_s\": %.0f}\n",
               base(files[f]), lines, len, tokens, best, mbs, tps);
        fflush(stdout);
        if (python) {
            long ptokens = 0;
            double ps = python_baseline(files[f], &ptokens);
            if (ps > 0) {
                printf("{\"bench\": \"tokenizer\", \"impl\": \"python-tokenization.py\", \"file\": \"%s\", \"bytes\": %zu, "
                       "\"tokens\": %ld, \"seconds\": %.4f, \"MB_per_s\": %.2f, \"tokens_per_s\": %.0f, "
                       "\"speedup_c_over_python\": %.1f, \"same_token_count\": %s}\n",
                       base(files[f]), len, ptokens, ps, (double)len / 1e6 / ps, (double)ptokens / ps, ps / best,
                       ptokens == tokens ? "true" : "false");
            } else {
                fprintf(stderr, "bench_tokenizer: the Python baseline failed for %s\n", files[f]);
            }
            fflush(stdout);
        }
        free(buf);
    }
    tb_ids_free(&ids);
    tb_tokenizer_free(&tok);
    return code;
}
