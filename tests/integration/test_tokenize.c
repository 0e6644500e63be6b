/* Integration tests of tb-tokenize: batches written to a message file and over ipc://, checked
 * against the golden ids of the original BERT tokenizer (data/golden), the stream's exactly-once
 * bookkeeping, and errors for bad input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "tb/base/error.h"
#include "tb/wire/msg.h"
#include "tb/wire/stream.h"

#include "repodata.h"

#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"
#define TOKENIZE TB_BIN_DIR "/tb-tokenize"

/* Reads line `n` (0-based) of the golden ids file into ids; returns the count. */
static int golden_ids(FILE *f, int32_t *ids, int cap)
{
    char line[1 << 16];
    cr_assert_not_null(fgets(line, sizeof line, f), "golden file ended early");
    int n = 0;
    for (char *p = strtok(line, " \n"); p; p = strtok(NULL, " \n")) {
        cr_assert_lt(n, cap);
        ids[n++] = (int32_t)atoi(p);
    }
    return n;
}

static int run(char *const argv[])
{
    pid_t pid = tb_proc_spawn(argv);
    cr_assert_gt(pid, 0);
    int code = -1;
    cr_assert_eq(tb_proc_wait(pid, 120000, &code), 0, "%s did not finish", argv[0]);
    return code;
}

/* SST-2 train in file order: every row of the first batches is [CLS] golden ids [SEP], padded. */
Test(tokenize, file_batches_match_the_golden_tokenizer)
{
    char dir[256], out[512];
    tb_proc_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/sst2.tbm", dir);
    enum { B = 16, T = 40, BATCHES = 5 };
    char train[4096];
    snprintf(train, sizeof train, "%s", tb_test_data("sst2/train.tsv"));
    char *argv[] = {TOKENIZE, "--input", train, "--format", "sst-2", "--vocab", VOCAB, "--output", out,
                    "--batch-size", "16", "--max-seq-length", "40", "--shuffle=false", "--max-batches", "5",
                    "--progress", "none", NULL};
    cr_assert_eq(run(argv), 0);

    FILE *gold = fopen(tb_test_data("golden/sst2-train-4000.ids"), "r");
    cr_assert_not_null(gold);
    FILE *tsv = fopen(train, "r");
    cr_assert_not_null(tsv);
    char header[256];
    cr_assert_not_null(fgets(header, sizeof header, tsv));
    tb_stream *s = NULL;
    cr_assert_eq(tb_stream_open(&s, out, TB_STREAM_READ, NULL), TB_OK, "%s", tb_err_msg());
    int batches = 0;
    for (;;) {
        tb_msg m;
        int rc = tb_stream_recv(s, &m, 1000);
        if (rc == TB_EEND) break;
        cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
        int64_t seq, index, epoch;
        cr_assert_eq(tb_msg_get_int(&m, "seq", &seq), TB_OK);
        cr_assert_eq(tb_msg_get_int(&m, "index", &index), TB_OK);
        cr_assert_eq(tb_msg_get_int(&m, "epoch", &epoch), TB_OK);
        cr_assert_eq(seq, batches);
        cr_assert_eq(index, batches);
        cr_assert_eq(epoch, 0);
        const char *order;
        cr_assert_eq(tb_msg_get_str(&m, "label_order", &order), TB_OK);
        cr_assert_str_eq(order, "0,1");
        const tb_tensor *ids, *mask, *labels;
        cr_assert_eq(tb_msg_get_tensor(&m, "input_ids", &ids), TB_OK);
        cr_assert_eq(tb_msg_get_tensor(&m, "attention_mask", &mask), TB_OK);
        cr_assert_eq(tb_msg_get_tensor(&m, "labels", &labels), TB_OK);
        cr_assert_eq(ids->shape[0], B);
        cr_assert_eq(ids->shape[1], T);
        for (int r = 0; r < B; r++) {
            int32_t want[4096];
            int n = golden_ids(gold, want, 4096);
            if (n > T - 2) n = T - 2;
            const int32_t *row = (const int32_t *)ids->data + r * T;
            const int32_t *mrow = (const int32_t *)mask->data + r * T;
            cr_assert_eq(row[0], 101, "[CLS]");
            for (int k = 0; k < n; k++) cr_assert_eq(row[1 + k], want[k], "batch %d row %d token %d", batches, r, k);
            cr_assert_eq(row[n + 1], 102, "[SEP]");
            for (int k = n + 2; k < T; k++) cr_assert_eq(row[k], 0, "padding");
            for (int k = 0; k < T; k++) cr_assert_eq(mrow[k], k < n + 2, "mask");
        }
        /* labels: the last column of the same rows of the TSV, read here independently */
        for (int r = 0; r < B; r++) {
            char line[1 << 16];
            cr_assert_not_null(fgets(line, sizeof line, tsv));
            const char *tab = strrchr(line, '\t');
            cr_assert_not_null(tab);
            cr_assert_eq(((const int32_t *)labels->data)[r], atoi(tab + 1), "batch %d row %d label", batches, r);
        }
        batches++;
        tb_msg_free(&m);
    }
    cr_assert_eq(batches, BATCHES);
    tb_stream_close(s);
    fclose(gold);
    fclose(tsv);
    tb_proc_rmdir(dir);
}

/* Over ipc:// with shuffling and two epochs: every example appears once per epoch, and the two
 * epochs are ordered differently. */
Test(tokenize, ipc_epochs_cover_every_example_once)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    char dev[4096];
    snprintf(dev, sizeof dev, "%s", tb_test_data("mrpc/dev.tsv"));
    char *argv[] = {TOKENIZE, "--input", dev, "--format", "mrpc", "--vocab", VOCAB,
                    "--output", ep, "--batch-size", "8", "--max-seq-length", "64", "--epochs", "2",
                    "--seed", "3", "--progress", "none", NULL};
    pid_t pid = tb_proc_spawn(argv);
    cr_assert_gt(pid, 0);
    tb_stream *s = NULL;
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_READ, NULL), TB_OK, "%s", tb_err_msg());
    enum { N = 408, PER_EPOCH = N / 8 };
    static int seen[2][N];
    int64_t first_ids[2] = {-1, -1};
    int count = 0;
    for (;;) {
        tb_msg m;
        int rc = tb_stream_recv(s, &m, 30000);
        if (rc == TB_EEND) break;
        cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
        int64_t epoch;
        cr_assert_eq(tb_msg_get_int(&m, "epoch", &epoch), TB_OK);
        cr_assert(epoch == 0 || epoch == 1);
        const tb_tensor *ex, *tt;
        cr_assert_eq(tb_msg_get_tensor(&m, "example_ids", &ex), TB_OK);
        cr_assert_eq(tb_msg_get_tensor(&m, "token_type_ids", &tt), TB_OK);
        for (int i = 0; i < 8; i++) {
            int64_t id = ((const int64_t *)ex->data)[i];
            cr_assert(id >= 0 && id < N);
            seen[epoch][id]++;
            if (first_ids[epoch] < 0) first_ids[epoch] = id;
        }
        int ones = 0; /* sentence pairs: some token types are 1 */
        for (int64_t k = 0; k < tb_tensor_numel(tt); k++) ones += ((const int32_t *)tt->data)[k] == 1;
        cr_assert_gt(ones, 0);
        count++;
        tb_msg_free(&m);
    }
    tb_stream_close(s);
    int code;
    cr_assert_eq(tb_proc_wait(pid, 30000, &code), 0);
    cr_assert_eq(code, 0);
    cr_assert_eq(count, 2 * PER_EPOCH);
    for (int e = 0; e < 2; e++) {
        int total = 0;
        for (int i = 0; i < N; i++) {
            cr_assert_leq(seen[e][i], 1, "example %d twice in epoch %d", i, e);
            total += seen[e][i];
        }
        cr_assert_eq(total, PER_EPOCH * 8); /* the 0 dropped examples of the partial batch: 408 = 51 * 8 */
    }
    cr_assert_neq(first_ids[0], first_ids[1], "epochs should be shuffled differently");
}

/* Runs a command with stderr captured; returns the exit status and the text. */
static int run_capture(const char *cmd, char *buf, size_t n)
{
    char full[2048];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p);
    size_t k = fread(buf, 1, n - 1, p);
    buf[k] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(tokenize, errors_name_what_and_where)
{
    char dir[256], bad[512], cmd[2048], out[8192];
    tb_proc_tmpdir(dir, sizeof dir);
    /* a missing file */
    snprintf(cmd, sizeof cmd, "%s --input %s/none.tsv --format sst-2 --vocab %s --output %s/o.tbm --progress none",
             TOKENIZE, dir, VOCAB, dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "none.tsv"), "%s", out);
    /* a malformed row: an unknown label on line 3 */
    snprintf(bad, sizeof bad, "%s/bad.tsv", dir);
    FILE *f = fopen(bad, "w");
    fputs("sentence\tlabel\ngood movie \t1\nbad row \tmaybe\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s --input %s --format sst-2 --vocab %s --output %s/o.tbm --batch-size 1 --progress none",
             TOKENIZE, bad, VOCAB, dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "bad.tsv:3"), "%s", out);
    /* lenient mode skips it and sends the one good row */
    snprintf(cmd, sizeof cmd, "%s --input %s --format sst-2 --vocab %s --output %s/o.tbm --batch-size 1 --lenient --progress none",
             TOKENIZE, bad, VOCAB, dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    /* a usage error */
    snprintf(cmd, sizeof cmd, "%s --input %s --format nope --vocab %s --output x", TOKENIZE, bad, VOCAB);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--format"), "%s", out);
    /* --describe is JSON naming the output fields */
    snprintf(cmd, sizeof cmd, "%s --describe", TOKENIZE);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "\"input_ids\""), "%s", out);
    tb_proc_rmdir(dir);
}
