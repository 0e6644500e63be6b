/* test_distill.h - shared pieces of the tb-distill tests: tiny models saved as checkpoints, token
 * batch files, running tb-emit and tb-distill. Included by the tb-distill test files only. */
#ifndef TEST_DISTILL_H
#define TEST_DISTILL_H

#include "proc.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/text/dataset.h"
#include "tb/base/error.h"
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TD_EMIT TB_BIN_DIR "/tb-emit"
#define TD_DISTILL TB_BIN_DIR "/tb-distill"

static inline tb_bert_config td_config(int vocab, int hidden, int layers, int heads, int inter, tb_head_kind head,
                                int num_labels, int fit_size)
{
    tb_bert_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.num_hidden_layers = layers;
    c.num_attention_heads = heads;
    c.intermediate_size = inter;
    c.max_position_embeddings = 64;
    c.type_vocab_size = 2;
    c.layer_norm_eps = 1e-12f;
    c.hidden_dropout_prob = 0.1f;
    c.attention_probs_dropout_prob = 0.1f;
    c.initializer_range = 0.2f; /* larger than BERT's 0.02 so the losses are far from 0 */
    c.head = head;
    c.num_labels = head == TB_HEAD_NONE ? 0 : num_labels;
    c.classifier_dropout = 0.1f;
    c.fit_size = fit_size;
    return c;
}

/* Saves a randomly initialised model as DIR/step-0 (path into `path`). */
static inline void td_model(const char *dir, const tb_bert_config *cfg, uint64_t seed, char *path, size_t n)
{
    tb_bert_model m;
    memset(&m, 0, sizeof m);
    cr_assert_eq(tb_bert_init(&m, cfg), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&m, seed);
    cr_assert_eq(tb_checkpoint_save(dir, 0, cfg, &m.params, NULL, NULL, NULL, path, n), TB_OK, "%s", tb_err_msg());
    tb_bert_free(&m);
}

/* Writes `count` token batches of B x T (random ids in [1, vocab), rows of shrinking length padded
 * with 0, labels in [0, num_labels), or f32 values in [0, 5) when num_labels is 1) as a message file. */
static inline void td_batches(const char *path, int count, int B, int T, int vocab, int num_labels, uint32_t seed)
{
    tb_stream *s = NULL;
    cr_assert_eq(tb_stream_open(&s, path, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    uint32_t r = seed * 2654435761u + 12345u;
    for (int k = 0; k < count; k++) {
        tb_batch b;
        memset(&b, 0, sizeof b);
        int64_t bt[2] = {B, T}, bb[1] = {B};
        cr_assert_eq(tb_tensor_alloc(&b.input_ids, TB_I32, 2, bt), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.token_type_ids, TB_I32, 2, bt), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.attention_mask, TB_I32, 2, bt), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.labels, num_labels == 1 ? TB_F32 : TB_I32, 1, bb), TB_OK);
        cr_assert_eq(tb_tensor_alloc(&b.example_ids, TB_I64, 1, bb), TB_OK);
        int32_t *ids = b.input_ids.data, *tt = b.token_type_ids.data, *am = b.attention_mask.data,
                *lab = b.labels.data;
        int64_t *ex = b.example_ids.data;
        for (int i = 0; i < B; i++) {
            int len = T - (i % 3) * (T / 4);
            for (int t = 0; t < T; t++) {
                r = r * 1664525u + 1013904223u;
                ids[i * T + t] = t < len ? 1 + (int32_t)((r >> 8) % (uint32_t)(vocab - 1)) : 0;
                am[i * T + t] = t < len;
                tt[i * T + t] = t < len && t >= len / 2;
            }
            r = r * 1664525u + 1013904223u;
            if (num_labels == 1)
                ((float *)b.labels.data)[i] = (float)((r >> 8) % 5000u) / 1000.0f;
            else
                lab[i] = (int32_t)((r >> 8) % (uint32_t)num_labels);
            ex[i] = (int64_t)k * B + i;
        }
        b.index = k;
        tb_msg m;
        tb_msg_init(&m);
        cr_assert_eq(tb_batch_to_msg(&b, NULL, num_labels == 3 ? "a,b,c" : num_labels == 1 ? "regression" : NULL, &m), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(tb_stream_send(s, &m, NULL), TB_OK, "%s", tb_err_msg());
        tb_msg_free(&m);
        tb_batch_free(&b);
    }
    cr_assert_eq(tb_stream_finish(s), TB_OK, "%s", tb_err_msg());
    tb_stream_close(s);
}

/* Starts a program with stderr redirected to `err_path` (NULL: inherited). */
static inline pid_t td_spawn(char *const argv[], const char *err_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (err_path) {
            FILE *f = freopen(err_path, "w", stderr);
            (void)f;
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static inline int td_wait(pid_t pid, int timeout_ms)
{
    int code = -1000;
    if (tb_proc_wait(pid, timeout_ms, &code) != 0) {
        tb_proc_reap(pid);
        cr_assert_fail("process %d did not finish within %d ms", (int)pid, timeout_ms);
    }
    return code;
}

/* Runs tb-emit (teacher over the batch file, one student, over a fresh ipc endpoint) -> tb-distill
 * with the given tb-distill arguments (NULL-terminated, after the common ones); returns
 * tb-distill's exit code and asserts that tb-emit exited 0. */
static inline int td_emit_distill(const char *teacher, const char *batches, char **args)
{
    char ep[256];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    char *eargv[] = {TD_EMIT, "--teacher", (char *)teacher, "--input", (char *)batches, "--output", ep,
                     "--students", "1", "--threads", "1", "--progress", "none", "--log-level", "warn", NULL};
    pid_t em = td_spawn(eargv, NULL);
    char *argv[64] = {TD_DISTILL, "--input", ep, "--threads", "1", "--progress", "none", "--log-level", "warn",
                      "--plot", ""};
    int n = 11;
    for (int i = 0; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int code = td_wait(td_spawn(argv, NULL), 120000);
    int ecode = td_wait(em, 60000);
    cr_assert_eq(ecode, 0, "tb-emit failed (exit %d)", ecode);
    return code;
}

/* Whole file into a malloc'd buffer (NUL-terminated); NULL when unreadable. */
static char *td_slurp(const char *path, size_t *len)
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
    if (buf) buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

/* 1 when both files exist and have the same bytes. */
static inline int td_same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = td_slurp(a, &na), *y = td_slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* Removes a folder tree two levels deep (OUT/step-N/files, OUT/files). */
static inline void td_rmtree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    int rc = system(cmd);
    (void)rc;
}

#endif
