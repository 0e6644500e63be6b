/* Reference test: id-for-id equality with the original Google BERT tokenizer (tokenization.py
 * FullTokenizer, bert-base-uncased, do_lower_case, 100 characters per word) on every line of the
 * golden files shipped in data/golden: the first 4,000 text lines of the SST-2, CoLA and MRPC
 * train files (12,000 lines; data/README.md says how they were made). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb/base/error.h"
#include "tb/text/tokenizer.h"

#include "repodata.h"

#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Compares every line of <name>.txt with <name>.ids; returns the number of lines. */
static long check_golden(const char *name, long expect_lines)
{
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "golden/%s.txt", name);
    snprintf(p2, sizeof p2, "golden/%s.ids", name);
    size_t tl, il;
    char *txt = slurp(tb_test_data(p1), &tl), *ids = slurp(tb_test_data(p2), &il);
    tb_tokenizer tok;
    cr_assert_eq(tb_tokenizer_init(&tok, VOCAB, NULL), TB_OK, "%s", tb_err_msg());
    tb_ids out;
    tb_ids_init(&out);
    size_t tp = 0, ip = 0;
    long line = 0, mismatches = 0;
    while (tp < tl && ip < il) {
        size_t te = tp;
        while (te < tl && txt[te] != '\n') te++;
        size_t ie = ip;
        while (ie < il && ids[ie] != '\n') ie++;
        line++;
        cr_assert_eq(tb_tokenizer_tokenize(&tok, txt + tp, te - tp, &out), TB_OK, "%s:%ld: %s", name, line,
                     tb_err_msg());
        /* parse expected ids */
        char *p = ids + ip;
        int32_t k = 0;
        int ok = 1;
        while (p < ids + ie) {
            char *q;
            long v = strtol(p, &q, 10);
            if (q == p) break;
            if (k >= out.count || out.ids[k] != v) ok = 0;
            k++;
            p = q;
            while (p < ids + ie && *p == ' ') p++;
        }
        if (k != out.count) ok = 0;
        if (!ok && mismatches++ < 5) {
            cr_log_error("%s line %ld differs: text [%.*s], expected [%.*s], got %d ids", name, line,
                         (int)(te - tp), txt + tp, (int)(ie - ip), ids + ip, out.count);
            for (int32_t j = 0; j < out.count && j < 60; j++)
                cr_log_error("  got %d %s", out.ids[j], tb_vocab_token(&tok.vocab, out.ids[j]));
        }
        tp = te + 1;
        ip = ie + 1;
    }
    cr_expect_eq(mismatches, 0, "%s: %ld of %ld lines differ from the reference tokenizer", name, mismatches, line);
    cr_expect_eq(line, expect_lines, "%s: expected %ld lines, compared %ld", name, expect_lines, line);
    tb_ids_free(&out);
    tb_tokenizer_free(&tok);
    free(txt);
    free(ids);
    return line;
}

Test(tokenizer_golden, sst2_train) { check_golden("sst2-train-4000", 4000); }
Test(tokenizer_golden, cola_train) { check_golden("cola-train-4000", 4000); }
Test(tokenizer_golden, mrpc_train) { check_golden("mrpc-train-4000", 4000); }
