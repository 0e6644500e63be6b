/* test_emit.c - tb-emit as a process: a tiny random teacher checkpoint and a file of token
 * batches; students are forked consumers that validate every feature message and compare it,
 * bit for bit, with a tb_bert_forward of the same batch that they run themselves. Also: a
 * student killed and restarted from its checkpoint position gets every batch exactly once; file
 * output (size estimate, refusal, f16); check mode against a float64 PyTorch reference.
 *
 * The test process itself never runs BLIS/OpenMP or ZeroMQ: set-up and students run in forked
 * children (tests/support/proc.h), tb-emit is exec'd. */
#include "proc.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/text/dataset.h"
#include "emit/emit.h"
#include "tb/base/error.h"
#include "tb/train/features.h"
#include "tb/store/safetensors.h"
#include "tb/wire/stream.h"
#include "tb/base/threads.h"

#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EMIT TB_BIN_DIR "/tb-emit"

enum { NB = 10, BB = 3, TT = 8, VOCAB = 40 };

static char g_dir[256], g_teacher[512], g_student[512], g_batches[512];

/* ---- set-up (in a child) ------------------------------------------------------------------ */

static tb_bert_config teacher_config(void)
{
    tb_bert_config c = {.vocab_size = VOCAB, .hidden_size = 16, .num_hidden_layers = 4, .num_attention_heads = 2,
                        .intermediate_size = 24, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f, .attention_probs_dropout_prob = 0.1f,
                        .initializer_range = 0.3f, .head = TB_HEAD_TINYBERT, .num_labels = 2,
                        .classifier_dropout = 0.1f};
    return c;
}

/* Token ids of batch g, example i, position t (ids 5.. of a made-up vocabulary; [CLS]=2, [SEP]=3). */
static void fill_batch(tb_batch *b, int64_t g)
{
    int64_t s2[2] = {BB, TT}, s1[1] = {BB};
    memset(b, 0, sizeof *b);
    cr_assert_eq(tb_tensor_alloc(&b->input_ids, TB_I32, 2, s2), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b->token_type_ids, TB_I32, 2, s2), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b->attention_mask, TB_I32, 2, s2), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b->labels, TB_I32, 1, s1), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b->example_ids, TB_I64, 1, s1), TB_OK);
    int32_t *ids = b->input_ids.data, *tt = b->token_type_ids.data, *mk = b->attention_mask.data;
    for (int i = 0; i < BB; i++) {
        int len = 3 + (int)((g * 5 + i * 3) % (TT - 2)); /* 3..TT: padding in most rows */
        for (int t = 0; t < TT; t++) {
            int k = i * TT + t;
            if (t < len) {
                ids[k] = t == 0 ? 2 : t == len - 1 ? 3 : 5 + (int)((g * 131 + i * 17 + t * 7) % (VOCAB - 5));
                mk[k] = 1;
                tt[k] = t > len / 2;
            }
        }
        ((int32_t *)b->labels.data)[i] = (int32_t)((g + i) % 2);
        ((int64_t *)b->example_ids.data)[i] = g * BB + i;
    }
    b->epoch = 0;
    b->index = g;
}

static int setup_child(void *arg)
{
    (void)arg;
    tb_bert_model t = {0}, s = {0};
    tb_bert_config c = teacher_config();
    if (tb_bert_init(&t, &c)) return 1;
    tb_bert_init_random(&t, 11);
    if (tb_checkpoint_save(g_dir, 0, &c, &t.params, NULL, NULL, NULL, g_teacher, sizeof g_teacher)) return 2;
    /* a student: 2 layers, hidden 8, the teacher's 2 heads, fit_dense 8 -> 16 */
    tb_bert_config sc = c;
    sc.hidden_size = 8;
    sc.num_hidden_layers = 2;
    sc.intermediate_size = 12;
    sc.fit_size = 16;
    char sdir[300];
    snprintf(sdir, sizeof sdir, "%s/student", g_dir);
    if (tb_bert_init(&s, &sc)) return 3;
    tb_bert_init_random(&s, 12);
    if (tb_checkpoint_save(sdir, 0, &sc, &s.params, NULL, NULL, NULL, g_student, sizeof g_student)) return 4;
    tb_stream *w;
    if (tb_stream_open(&w, g_batches, TB_STREAM_WRITE, NULL)) return 5;
    for (int64_t g = 0; g < NB; g++) {
        tb_batch b;
        fill_batch(&b, g);
        tb_msg m;
        tb_msg_init(&m);
        if (tb_batch_to_msg(&b, "fnv1a64:00000000000000aa", "0,1", &m) || tb_stream_send(w, &m, NULL)) return 6;
        tb_msg_free(&m);
        tb_batch_free(&b);
    }
    if (tb_stream_finish(w)) return 7;
    tb_stream_close(w);
    tb_bert_free(&t);
    tb_bert_free(&s);
    return 0;
}

static void setup(void)
{
    cr_assert(tb_proc_tmpdir(g_dir, sizeof g_dir));
    snprintf(g_batches, sizeof g_batches, "%s/batches.tbm", g_dir);
    pid_t p = tb_proc_fork(setup_child, NULL);
    int code = -1;
    cr_assert_eq(tb_proc_wait(p, 60000, &code), 0);
    cr_assert_eq(code, 0, "set-up failed with %d", code);
    snprintf(g_teacher, sizeof g_teacher, "%s/step-0", g_dir);
    snprintf(g_student, sizeof g_student, "%s/student/step-0", g_dir);
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void teardown(void)
{
    rm_rf(g_dir);
}

/* ---- a student (in a child) --------------------------------------------------------------- */

typedef struct student {
    const char *endpoint, *id;
    tb_features_request req;
    uint64_t resume_from;
    int manual_ack;
    int64_t ack_upto;      /* manual_ack: acknowledge up to here (as a checkpoint would) */
    int64_t die_after;     /* >= 0: SIGKILL itself after receiving this seq */
    const char *log;       /* file: one line per seq received */
    uint64_t want_hidden, want_attn; int want_logits; /* exact sets expected in each message */
    tb_dtype dtype;
    int dropout;           /* the emitter runs the teacher with dropout (seed 42) */
    int sleep_ms;          /* a slow student: pause after each batch */
} student;

/* Compares the features of `v` (message of batch seq) with a forward of the teacher run here. */
static int compare_with_forward(tb_bert_model *t, const tb_msg *m, const tb_features_view *v, const student *st,
                                uint64_t seq)
{
    tb_batch b = {0};
    int rc = 0;
    if (tb_batch_from_msg(&b, m)) return 20;
    tb_bert_batch bb = {.B = v->B, .T = v->T, .input_ids = b.input_ids.data,
                        .token_type_ids = b.token_type_ids.data, .attention_mask = b.attention_mask.data};
    tb_bert_run run = {.scores_layers = 0xf, .logits = 1};
    if (st->dropout) {
        /* dropout must show: the features differ from an evaluation-mode forward */
        if (tb_bert_forward(t, &bb, &run)) {
            rc = 21;
            goto done;
        }
        if (!memcmp(tb_bert_hidden(t, 4), v->hidden[4], (size_t)v->B * v->T * 16 * 4)) {
            fprintf(stderr, "student %s: batch %llu carries no dropout\n", st->id, (unsigned long long)seq);
            rc = 25;
            goto done;
        }
        run.dropout = 1;
        run.seed = 42;
        run.seq = seq;
    }
    if (tb_bert_forward(t, &bb, &run)) {
        fprintf(stderr, "student %s: %s\n", st->id, tb_err_msg());
        rc = 21;
        goto done;
    }
    const size_t hn = (size_t)v->B * v->T * 16, an = (size_t)v->B * 2 * v->T * v->T;
    for (int j = 0; j <= 4; j++) {
        if (!v->hidden[j]) continue;
        const float *ref = tb_bert_hidden(t, j);
        for (size_t i = 0; i < hn; i++) {
            float want = st->dtype == TB_F16 ? tb_f16_to_f32(tb_f32_to_f16(ref[i])) : ref[i];
            if (memcmp(&want, &v->hidden[j][i], 4)) {
                fprintf(stderr, "student %s: hidden %d element %zu: %.9g vs %.9g\n", st->id, j, i, v->hidden[j][i], want);
                rc = 22;
                goto done;
            }
        }
    }
    for (int l = 0; l < 4; l++) {
        if (!v->scores[l]) continue;
        const float *ref = tb_bert_scores(t, l);
        for (size_t i = 0; i < an; i++) {
            float want = st->dtype == TB_F16 ? tb_f16_to_f32(tb_f32_to_f16(ref[i])) : ref[i];
            if (memcmp(&want, &v->scores[l][i], 4)) {
                rc = 23;
                goto done;
            }
        }
    }
    if (v->logits) {
        const float *ref = tb_bert_logits(t);
        for (int i = 0; i < v->B * 2; i++) {
            float want = st->dtype == TB_F16 ? tb_f16_to_f32(tb_f32_to_f16(ref[i])) : ref[i];
            if (memcmp(&want, &v->logits[i], 4)) {
                rc = 24;
                goto done;
            }
        }
    }
done:
    tb_batch_free(&b);
    return rc;
}

/* Which features a message carries, by name. */
static void carried(const tb_msg *m, uint64_t *hid, uint64_t *att, int *logits)
{
    *hid = *att = 0;
    *logits = tb_msg_find(m, "teacher.logits") != NULL;
    for (int i = 0; i < m->count; i++) {
        int k;
        if (sscanf(m->fields[i].key, "teacher.hidden.%d", &k) == 1) *hid |= 1ull << k;
        if (sscanf(m->fields[i].key, "teacher.attn.%d", &k) == 1) *att |= 1ull << k;
    }
}

static int student_main(void *arg)
{
    const student *st = arg;
    tb_threads_setup(1);
    tb_bert_model t;
    char vh[64];
    if (tb_emit_load_model(g_teacher, &t, vh, sizeof vh)) return 10;
    tb_bert_set_threads(&t, 1);
    if (tb_bert_arena_reserve(&t, BB, TT, TB_BERT_INFER, 0xf, 0)) return 11;
    tb_msg hello;
    tb_msg_init(&hello);
    if (tb_features_request_to_hello(&st->req, &hello)) return 12;
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumer_id = st->id;
    o.hello = &hello;
    o.resume_from = st->resume_from;
    o.manual_ack = st->manual_ack;
    o.peer_timeout_ms = 5000;
    o.credit = 2;
    tb_stream *s;
    if (tb_stream_open(&s, st->endpoint, TB_STREAM_READ, &o)) {
        fprintf(stderr, "student %s: %s\n", st->id, tb_err_msg());
        return 13;
    }
    FILE *log = st->log ? fopen(st->log, "a") : NULL;
    uint64_t next = st->resume_from;
    int rc = 0;
    for (;;) {
        tb_msg m;
        int r = tb_stream_recv(s, &m, 30000);
        if (r == TB_EEND) break;
        if (r) {
            fprintf(stderr, "student %s: %s\n", st->id, tb_err_msg());
            rc = 14;
            break;
        }
        int64_t seq = -1;
        tb_msg_get_int(&m, "seq", &seq);
        tb_features_view v;
        if (seq != (int64_t)next) {
            rc = 15;
        } else if (tb_features_view_init(&v, &m, &st->req)) {
            fprintf(stderr, "student %s: %s\n", st->id, tb_err_msg());
            rc = 16;
        } else {
            uint64_t h, a;
            int lg;
            carried(&m, &h, &a, &lg);
            if (h != st->want_hidden || a != st->want_attn || lg != st->want_logits) {
                fprintf(stderr, "student %s: message carries hidden %llx attn %llx logits %d\n", st->id,
                        (unsigned long long)h, (unsigned long long)a, lg);
                rc = 17;
            }
            if (!rc) rc = compare_with_forward(&t, &m, &v, st, (uint64_t)seq);
            tb_features_view_free(&v);
        }
        tb_msg_free(&m);
        if (rc) break;
        if (log) {
            fprintf(log, "%s %lld\n", st->id, (long long)seq);
            fflush(log);
        }
        if (st->manual_ack && seq <= st->ack_upto) tb_stream_ack(s, (uint64_t)seq);
        if (st->manual_ack && seq > st->ack_upto && st->die_after < 0) tb_stream_ack(s, (uint64_t)seq);
        if (st->die_after >= 0 && seq == st->die_after) raise(SIGKILL);
        if (st->sleep_ms) usleep((useconds_t)st->sleep_ms * 1000);
        next++;
    }
    if (!rc && next != NB) rc = 18;
    tb_stream_close(s);
    if (log) fclose(log);
    tb_msg_free(&hello);
    tb_bert_free(&t);
    return rc;
}

static pid_t spawn_sh(const char *cmd)
{
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    return tb_proc_spawn(argv);
}

static int wait_code(pid_t p, int ms)
{
    int code = -999;
    if (tb_proc_wait(p, ms, &code) != 0) {
        tb_proc_reap(p);
        cr_assert_fail("process %d did not end within %d ms", (int)p, ms);
    }
    return code;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc(1, (size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
    fclose(f);
    return s;
}

/* ---- tests --------------------------------------------------------------------------------- */

TestSuite(emit, .init = setup, .fini = teardown, .timeout = 240);

/* Three students of depth 1, 2 and 4 (and one asking for logits) share one teacher run: each gets
 * the union, validates it and finds every feature equal to its own forward of the batch. */
Test(emit, three_students_get_the_union_bit_identical)
{
    char ep[128], cmd[2048], err[300];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    /* teacher 4 layers: depth 1 -> hidden {0,4} attn {3}; depth 2 -> hidden {0,2,4} attn {1,3};
     * depth 4 -> hidden {0..4} attn {0..3}; union hidden 0x1f, attn 0xf */
    student s[3] = {
        {.endpoint = ep, .id = "s1", .req = {.student_layers = 1, .logits = 1}},
        {.endpoint = ep, .id = "s2", .req = {.student_layers = 2, .student_heads = 2}},
        {.endpoint = ep, .id = "s4", .req = {.student_layers = 4, .expect_hidden_size = 16}},
    };
    for (int i = 0; i < 3; i++) {
        s[i].want_hidden = 0x1f;
        s[i].want_attn = 0xf;
        s[i].want_logits = 1;
        s[i].resume_from = 0;
        s[i].die_after = -1;
        s[i].dtype = TB_F32;
    }
    pid_t ps[3];
    for (int i = 0; i < 3; i++) ps[i] = tb_proc_fork(student_main, &s[i]);
    snprintf(err, sizeof err, "%s/emit.err", g_dir);
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s --output %s --students 3 --threads 1 2>%s", EMIT,
             g_teacher, g_batches, ep, err);
    pid_t pe = spawn_sh(cmd);
    for (int i = 0; i < 3; i++) { int c_ = wait_code(ps[i], 120000); cr_expect_eq(c_, 0, "student %s failed with %d", s[i].id, c_); }
    int code = wait_code(pe, 60000);
    char *e = slurp(err);
    cr_expect_eq(code, 0, "tb-emit: %s", e);
    cr_expect(strstr(e, "hidden states {0,1,2,3,4}, attention scores of layers {0,1,2,3} and logits"), "%s", e);
    free(e);
}

/* A student that checkpointed batch 0, then died (SIGKILL) after receiving batch 1, restarts from
 * 1: with --on-student-death wait and regeneration from the input file, every batch is counted
 * exactly once; the other (slow) student is not disturbed, and the batch the emitter was sending
 * while it recomputed old ones still carries its own features. */
Test(emit, killed_student_resumes_exactly_once)
{
    char ep[128], cmd[2048], err[300], log[300], log2[300];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    snprintf(log, sizeof log, "%s/seen.log", g_dir);
    snprintf(log2, sizeof log2, "%s/seen2.log", g_dir);
    const int64_t ckpt = 0, died = 1; /* safe in its checkpoint: batch 0; received before dying: 0, 1 */
    student a = {.endpoint = ep, .id = "a", .req = {.student_layers = 2}, .manual_ack = 1, .ack_upto = ckpt,
                 .die_after = died, .log = log, .want_hidden = 0x15, .want_attn = 0xa, .dtype = TB_F32};
    /* b is slow, so the emitter is still inside tb_stream_send (its message borrowing the teacher's
     * arena) when a's restart asks for batches to be recomputed */
    student b = {.endpoint = ep, .id = "b", .req = {.student_layers = 2}, .die_after = -1, .want_hidden = 0x15,
                 .want_attn = 0xa, .dtype = TB_F32, .sleep_ms = 300};
    pid_t pa = tb_proc_fork(student_main, &a), pb = tb_proc_fork(student_main, &b);
    snprintf(err, sizeof err, "%s/emit.err", g_dir);
    snprintf(cmd, sizeof cmd,
             "exec %s --teacher %s --input %s --output %s --students 2 --threads 1 --on-student-death wait "
             "--peer-timeout-ms 1500 --dead-wait-ms 30000 --retain-max 1 2>%s",
             EMIT, g_teacher, g_batches, ep, err);
    pid_t pe = spawn_sh(cmd);
    cr_assert_eq(wait_code(pa, 60000), -SIGKILL, "student a should have died by SIGKILL");
    /* restart from its checkpoint position, same consumer id, logging its second life apart */
    student a2 = a;
    a2.resume_from = (uint64_t)ckpt + 1;
    a2.die_after = -1;
    a2.ack_upto = NB;
    a2.log = log2;
    pid_t pa2 = tb_proc_fork(student_main, &a2);
    cr_expect_eq(wait_code(pa2, 120000), 0, "restarted student failed");
    cr_expect_eq(wait_code(pb, 120000), 0, "student b failed");
    int code = wait_code(pe, 60000);
    char *e = slurp(err);
    cr_expect_eq(code, 0, "tb-emit: %s", e);
    cr_expect(strstr(e, "regenerated") && !strstr(e, " 0 regenerated"), "nothing was regenerated: %s", e);
    free(e);
    char *l1 = slurp(log), *l2 = slurp(log2);
    cr_expect_str_eq(l1, "a 0\na 1\n");
    char want[256] = "";
    for (int g = (int)ckpt + 1; g < NB; g++) snprintf(want + strlen(want), sizeof want - strlen(want), "a %d\n", g);
    cr_expect_str_eq(l2, want);
    /* counted once: the checkpointed part of life 1 plus life 2 covers every batch exactly once */
    int count[NB] = {0};
    int64_t q;
    char who[8];
    for (char *p = l1; sscanf(p, "%7s %lld", who, (long long *)&q) == 2; p = strchr(p, '\n') + 1)
        if (q <= ckpt) count[q]++;
    for (char *p = l2; sscanf(p, "%7s %lld", who, (long long *)&q) == 2; p = strchr(p, '\n') + 1) count[q]++;
    for (int g = 0; g < NB; g++) cr_expect_eq(count[g], 1, "batch %d counted %d times", g, count[g]);
    free(l1);
    free(l2);
}

/* A student killed for good: with --on-student-death drop the emitter goes on with the other and
 * reports the drop; with fail (the default) it stops with an error naming the student. */
Test(emit, dead_student_dropped_or_fatal)
{
    const char *policy[2] = {"drop", "fail"};
    for (int k = 0; k < 2; k++) {
        char ep[128], cmd[2048], err[300];
        tb_proc_ipc_endpoint(ep, sizeof ep);
        student a = {.endpoint = ep, .id = "gone", .req = {.student_layers = 4}, .die_after = 1, .want_hidden = 0x1f,
                     .want_attn = 0xf, .dtype = TB_F32};
        student b = {.endpoint = ep, .id = "stays", .req = {.student_layers = 4}, .die_after = -1,
                     .want_hidden = 0x1f, .want_attn = 0xf, .dtype = TB_F32, .sleep_ms = 200};
        pid_t pa = tb_proc_fork(student_main, &a), pb = tb_proc_fork(student_main, &b);
        snprintf(err, sizeof err, "%s/emit.err", g_dir);
        snprintf(cmd, sizeof cmd,
                 "exec %s --teacher %s --input %s --output %s --students 2 --threads 1 --on-student-death %s "
                 "--peer-timeout-ms 1000 2>%s",
                 EMIT, g_teacher, g_batches, ep, policy[k], err);
        pid_t pe = spawn_sh(cmd);
        cr_expect_eq(wait_code(pa, 60000), -SIGKILL);
        int code = wait_code(pe, 60000), bc = wait_code(pb, 60000);
        char *e = slurp(err);
        if (k == 0) {
            cr_expect_eq(code, 0, "%s", e);
            cr_expect_eq(bc, 0, "the remaining student failed");
            cr_expect(strstr(e, "1 student(s) dropped"), "%s", e);
        } else {
            cr_expect_eq(code, 1, "%s", e);
            cr_expect(strstr(e, "tb-emit: ") && strstr(e, "'gone'"), "%s", e);
            cr_expect_neq(bc, 0, "the other student must not see a complete stream");
        }
        free(e);
    }
}

/* With --teacher-dropout the features of a regenerated batch are the same bits as the first
 * time (masks keyed by seed and batch number): a student dies after batch 2 having checkpointed
 * batch 0 only, resumes from 1, and both lives compare with their own dropout forward. */
Test(emit, teacher_dropout_regenerates_identical_features)
{
    char ep[128], cmd[2048], err[300];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    student a = {.endpoint = ep, .id = "d", .req = {.student_layers = 4}, .manual_ack = 1, .ack_upto = 0,
                 .die_after = 2, .want_hidden = 0x1f, .want_attn = 0xf, .dtype = TB_F32, .dropout = 1};
    pid_t pa = tb_proc_fork(student_main, &a);
    snprintf(err, sizeof err, "%s/emit.err", g_dir);
    snprintf(cmd, sizeof cmd,
             "exec %s --teacher %s --input %s --output %s --students 1 --threads 1 --teacher-dropout --seed 42 "
             "--on-student-death wait --peer-timeout-ms 1500 --dead-wait-ms 30000 --retain-max 1 2>%s",
             EMIT, g_teacher, g_batches, ep, err);
    pid_t pe = spawn_sh(cmd);
    cr_assert_eq(wait_code(pa, 60000), -SIGKILL, "the student should have died by SIGKILL");
    student a2 = a;
    a2.resume_from = 1;
    a2.die_after = -1;
    a2.ack_upto = NB;
    cr_expect_eq(wait_code(tb_proc_fork(student_main, &a2), 120000), 0, "restarted student failed");
    int code = wait_code(pe, 60000);
    char *e = slurp(err);
    cr_expect_eq(code, 0, "tb-emit: %s", e);
    cr_expect(strstr(e, "regenerated") && !strstr(e, " 0 regenerated"), "nothing was regenerated: %s", e);
    free(e);
}

/* File output: the estimate is printed first; a limit below it is refused before anything is
 * written; without the limit the file is written, fits the estimate, and its features equal a
 * direct forward (f32 bit for bit, f16 as the f16 rounding of it). */
static int file_reader_child(void *arg)
{
    student *st = arg;
    return student_main(st);
}

static const char *read_features_py =
    "import struct, sys\n"
    "import msgpack, msgpack_numpy, numpy as np\n"
    "path, dtype, nb, bb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n"
    "raw = open(path, 'rb').read()\n"
    "assert raw[:8] == b'TBSTRM\\r\\n', raw[:8]\n"
    "off, n = 16, 0\n"
    "while off < len(raw):\n"
    "    marker, kind, size = struct.unpack_from('<IIQ', raw, off)\n"
    "    off += 24\n"
    "    if kind == 1:\n"
    "        m = msgpack.unpackb(raw[off:off + size], object_hook=msgpack_numpy.decode, raw=False)\n"
    "        assert m['msg'] == 'batch' and m['seq'] == n, (m['msg'], m['seq'])\n"
    "        B, T = m['input_ids'].shape\n"
    "        assert B == bb and m['features.dtype'] == {'<f4': 'f32', '<f2': 'f16'}[dtype]\n"
    "        L, H, NH = m['teacher.layers'], m['teacher.hidden_size'], m['teacher.heads']\n"
    "        assert (L, H, NH, m['teacher.num_labels']) == (4, 16, 2, 2)\n"
    "        names = sorted(k for k in m if k.startswith('teacher.') and isinstance(m[k], np.ndarray))\n"
    "        assert names == ['teacher.attn.1', 'teacher.attn.3', 'teacher.hidden.0', 'teacher.hidden.2',\n"
    "                         'teacher.hidden.4', 'teacher.logits'], names\n"
    "        for j in (0, 2, 4):\n"
    "            h = m['teacher.hidden.%d' % j]\n"
    "            assert h.dtype.str == dtype and h.shape == (B, T, H) and np.isfinite(h).all()\n"
    "        for l in (1, 3):\n"
    "            a = m['teacher.attn.%d' % l]\n"
    "            assert a.dtype.str == dtype and a.shape == (B, NH, T, T)\n"
    "            # padded key positions carry the -10000 mask\n"
    "            pad = m['attention_mask'] == 0\n"
    "            for b in range(B):\n"
    "                for key in np.nonzero(pad[b])[0]:\n"
    "                    assert (a[b, :, :, key].astype(np.float64) < -9000).all(), (b, key)\n"
    "        assert m['teacher.logits'].shape == (B, 2)\n"
    "        n += 1\n"
    "    off += size\n"
    "assert n == nb, n\n"
    "print('python read', n, 'feature messages of', path)\n";

Test(emit, file_output_estimate_refusal_and_content)
{
    char cmd[2048], err[300], out[300];
    snprintf(err, sizeof err, "%s/emit.err", g_dir);
    snprintf(out, sizeof out, "%s/features.tbm", g_dir);
    snprintf(cmd, sizeof cmd,
             "exec %s --teacher %s --input %s --output file:%s --student-layers 2 --logits --threads 1 "
             "--max-output-bytes 1000 2>%s",
             EMIT, g_teacher, g_batches, out, err);
    int code = wait_code(spawn_sh(cmd), 60000);
    char *e = slurp(err);
    cr_expect_eq(code, 1, "%s", e);
    cr_expect(strstr(e, "feature file"), "no estimate printed: %s", e);
    cr_expect(strstr(e, "more than --max-output-bytes"), "%s", e);
    cr_expect(strstr(e, "--feature-dtype f16"), "%s", e);
    free(e);
    struct stat sb;
    cr_expect_neq(stat(out, &sb), 0, "a refused run must not create the file");

    /* hand-computed payload: hidden {0,2,4} 3 x (3 x 8 x 16) + attn {1,3} 2 x (3 x 2 x 8 x 8) + logits 3 x 2, f32 */
    const uint64_t payload = (3ull * 3 * 8 * 16 + 2ull * 3 * 2 * 8 * 8 + 3 * 2) * 4;
    const char *dt[2] = {"f32", "f16"};
    uint64_t size[2];
    for (int k = 0; k < 2; k++) {
        snprintf(out, sizeof out, "%s/features-%s.tbm", g_dir, dt[k]);
        snprintf(cmd, sizeof cmd,
                 "exec %s --teacher %s --input %s --output file:%s --student-layers 2 --logits --threads 1 "
                 "--feature-dtype %s 2>%s",
                 EMIT, g_teacher, g_batches, out, dt[k], err);
        code = wait_code(spawn_sh(cmd), 60000);
        e = slurp(err);
        cr_assert_eq(code, 0, "%s", e);
        cr_assert(stat(out, &sb) == 0);
        size[k] = (uint64_t)sb.st_size;
        char *p = strstr(e, "MB");
        cr_expect(p, "%s", e);
        /* the estimate line ends with "= X GB (N bytes)"; parse N */
        char *q = strstr(e, " GB (");
        unsigned long long est = q ? strtoull(q + 5, NULL, 10) : 0;
        cr_expect(size[k] <= est && size[k] * 2 > est, "file %llu bytes, estimate %llu", (unsigned long long)size[k],
                  est);
        cr_expect(size[k] >= NB * payload / (k ? 2 : 1), "file %llu bytes < payload", (unsigned long long)size[k]);
        free(e);
        student st = {.endpoint = out, .id = "f", .req = {.student_layers = 2, .logits = 1}, .die_after = -1,
                      .want_hidden = 0x15, .want_attn = 0xa, .want_logits = 1, .dtype = k ? TB_F16 : TB_F32};
        cr_expect_eq(wait_code(tb_proc_fork(file_reader_child, &st), 60000), 0, "%s file content", dt[k]);
        /* Python with msgpack-numpy reads the same file: numpy dtypes, shapes and metadata */
        char py[700];
        snprintf(py, sizeof py, "%s/read_features.py", g_dir);
        FILE *pf = fopen(py, "w");
        cr_assert(pf);
        fputs(read_features_py, pf);
        fclose(pf);
        snprintf(cmd, sizeof cmd, "exec %s %s %s '%s' %d %d 1>&2", TB_PYTHON, py, out, k ? "<f2" : "<f4", NB, BB);
        cr_expect_eq(wait_code(spawn_sh(cmd), 60000), 0, "Python reader rejects the %s file", dt[k]);
    }
    /* f16 halves the payload: the difference is NB x payload / 2 */
    cr_expect_eq(size[0] - size[1] >= NB * payload / 2 - NB * 64 * 8, 1, "f32 %llu f16 %llu",
                 (unsigned long long)size[0], (unsigned long long)size[1]);
}

Test(emit, bad_requests_fail_clearly)
{
    char ep[128], cmd[2048], err[300];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    /* a 3-layer student cannot be mapped onto a 4-layer teacher */
    student s = {.endpoint = ep, .id = "odd", .req = {.student_layers = 3}, .die_after = -1};
    pid_t ps = tb_proc_fork(student_main, &s);
    snprintf(err, sizeof err, "%s/emit.err", g_dir);
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s --output %s --students 1 --threads 1 2>%s", EMIT,
             g_teacher, g_batches, ep, err);
    int code = wait_code(spawn_sh(cmd), 60000);
    char *e = slurp(err);
    cr_expect_eq(code, 1, "%s", e);
    cr_expect(strstr(e, "student 'odd'") && strstr(e, "3-layer student"), "%s", e);
    free(e);
    int sc = wait_code(ps, 60000);
    cr_expect_neq(sc, 0);
    /* usage errors */
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s 2>/dev/null", EMIT, g_teacher, g_batches);
    cr_expect_eq(wait_code(spawn_sh(cmd), 20000), 2);
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s --output x.tbm --hidden 1,,2 2>/dev/null", EMIT,
             g_teacher, g_batches);
    cr_expect_eq(wait_code(spawn_sh(cmd), 20000), 2);
    /* --max-seq may only cut padding: batch 0 has a row of 7 tokens */
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s --output file:%s/cut.tbm --hidden 0 --max-seq 4 2>%s",
             EMIT, g_teacher, g_batches, g_dir, err);
    code = wait_code(spawn_sh(cmd), 60000);
    e = slurp(err);
    cr_expect_eq(code, 1, "%s", e);
    cr_expect(strstr(e, "beyond --max-seq 4"), "%s", e);
    free(e);
}

/* A live input: token batches from a ZeroMQ producer (as tb-tokenize sends them) into a feature
 * file; the size limit is then checked batch by batch. */
static char g_live_ep[128];

static int live_producer(void *arg)
{
    (void)arg;
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumers = 1;
    o.hello_timeout_ms = 30000;
    tb_stream *w;
    if (tb_stream_open(&w, g_live_ep, TB_STREAM_WRITE, &o)) return 1;
    int rc = 0;
    for (int64_t g = 0; g < NB && !rc; g++) {
        tb_batch b;
        fill_batch(&b, g);
        tb_msg m;
        tb_msg_init(&m);
        if (tb_batch_to_msg(&b, "fnv1a64:00000000000000aa", "0,1", &m) || tb_stream_send(w, &m, NULL)) rc = 2;
        tb_msg_free(&m);
        tb_batch_free(&b);
    }
    if (!rc && tb_stream_finish(w)) rc = 3;
    tb_stream_close(w);
    return rc;
}

Test(emit, live_input_to_file)
{
    char cmd[2048], err[300], out[300];
    tb_proc_ipc_endpoint(g_live_ep, sizeof g_live_ep);
    snprintf(err, sizeof err, "%s/emit.err", g_dir);
    snprintf(out, sizeof out, "%s/live.tbm", g_dir);
    pid_t pp = tb_proc_fork(live_producer, NULL);
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s --output file:%s --student-layers 4 --threads 1 2>%s",
             EMIT, g_teacher, g_live_ep, out, err);
    int code = wait_code(spawn_sh(cmd), 60000);
    char *e = slurp(err);
    cr_expect_eq(code, 0, "%s", e);
    cr_expect(strstr(e, "checked batch by batch"), "%s", e);
    free(e);
    cr_expect_eq(wait_code(pp, 30000), 0, "producer failed");
    student st = {.endpoint = out, .id = "f", .req = {.student_layers = 4}, .die_after = -1, .want_hidden = 0x1f,
                  .want_attn = 0xf, .dtype = TB_F32};
    cr_expect_eq(wait_code(tb_proc_fork(file_reader_child, &st), 60000), 0, "live file content");

    /* the same with a limit that the third batch crosses: two batches fit, then a clear refusal */
    tb_proc_ipc_endpoint(g_live_ep, sizeof g_live_ep);
    pp = tb_proc_fork(live_producer, NULL);
    snprintf(out, sizeof out, "%s/live2.tbm", g_dir);
    uint64_t one = 0;
    {
        tb_features_meta mt = {.layers = 4, .heads = 2, .hidden_size = 16, .num_labels = 2, .dtype = TB_F32};
        tb_features_request r = {.hidden = 0x1f, .attn = 0xf};
        one = tb_emit_file_estimate(&r, &mt, 1, BB, TT);
    }
    snprintf(cmd, sizeof cmd,
             "exec %s --teacher %s --input %s --output file:%s --student-layers 4 --threads 1 "
             "--max-output-bytes %llu 2>%s",
             EMIT, g_teacher, g_live_ep, out, (unsigned long long)(2 * one + one / 2), err);
    code = wait_code(spawn_sh(cmd), 60000);
    e = slurp(err);
    cr_expect_eq(code, 1, "%s", e);
    cr_expect(strstr(e, "more than --max-output-bytes") && strstr(e, "so far"), "%s", e);
    free(e);
    struct stat sb;
    cr_expect_neq(stat(out, &sb), 0, "the incomplete file must be removed");
    tb_proc_reap(pp);
}

/* f16 transport's effect on the losses, against f32 (reported on stderr). */
Test(emit, f16_features_change_losses_little)
{
    double tot[2][2];
    const char *kinds[2] = {"intermediate", "prediction"}, *dts[2] = {"f32", "f16"};
    for (int k = 0; k < 2; k++)
        for (int d = 0; d < 2; d++) {
            char out[300], cmd[2048], path[700];
            snprintf(out, sizeof out, "%s/check-%s-%s", g_dir, kinds[k], dts[d]);
            snprintf(cmd, sizeof cmd,
                     "exec %s --check --teacher %s --student %s --input %s --check-index 2 --check-kind %s "
                     "--feature-dtype %s --check-out %s --threads 1 --log-level warn",
                     EMIT, g_teacher, g_student, g_batches, kinds[k], dts[d], out);
            cr_assert_eq(wait_code(spawn_sh(cmd), 60000), 0);
            snprintf(path, sizeof path, "%s/losses.json", out);
            char *js = slurp(path);
            cJSON *j = cJSON_Parse(js);
            cr_assert(j);
            cr_expect_str_eq(cJSON_GetObjectItem(j, "feature_dtype")->valuestring, dts[d]);
            tot[k][d] = cJSON_GetObjectItem(j, "total")->valuedouble;
            cJSON_Delete(j);
            free(js);
        }
    for (int k = 0; k < 2; k++) {
        double rel = fabs(tot[k][1] - tot[k][0]) / fabs(tot[k][0]);
        fprintf(stderr, "f16 features, %s loss: f32 %.9g f16 %.9g relative difference %.3g\n", kinds[k], tot[k][0],
                tot[k][1], rel);
        /* f16 keeps 11 significant bits: a relative change of the loss well below 1e-2 */
        cr_expect(rel < 1e-2, "%s: %.3g", kinds[k], rel);
        cr_expect(tot[k][1] != tot[k][0] || k == 1, "f16 left the %s loss bit-identical: was it applied?", kinds[k]);
    }
}

/* Bad input: ids outside the teacher's vocabulary, and a file that is not a message file. */
static char g_bad_path[512];

static int bad_batch_child(void *arg)
{
    (void)arg;
    tb_stream *w;
    if (tb_stream_open(&w, g_bad_path, TB_STREAM_WRITE, NULL)) return 1;
    tb_batch b;
    fill_batch(&b, 0);
    ((int32_t *)b.input_ids.data)[1] = VOCAB + 5;
    tb_msg m;
    tb_msg_init(&m);
    int rc = tb_batch_to_msg(&b, NULL, NULL, &m) || tb_stream_send(w, &m, NULL) || tb_stream_finish(w);
    tb_msg_free(&m);
    tb_batch_free(&b);
    tb_stream_close(w);
    return rc;
}

Test(emit, bad_input_fails_clearly)
{
    char cmd[2048], err[300];
    snprintf(g_bad_path, sizeof g_bad_path, "%s/bad.tbm", g_dir);
    cr_assert_eq(wait_code(tb_proc_fork(bad_batch_child, NULL), 30000), 0);
    snprintf(err, sizeof err, "%s/emit.err", g_dir);
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s --output file:%s/o.tbm --hidden 0 2>%s", EMIT,
             g_teacher, g_bad_path, g_dir, err);
    int code = wait_code(spawn_sh(cmd), 60000);
    char *e = slurp(err);
    cr_expect_eq(code, 1, "%s", e);
    cr_expect(strstr(e, "teacher forward of batch 0") && strstr(e, "45"), "%s", e);
    free(e);
    /* not a message file */
    FILE *f = fopen(g_bad_path, "w");
    fputs("input_ids\t1 2 3\n", f);
    fclose(f);
    code = wait_code(spawn_sh(cmd), 60000);
    e = slurp(err);
    cr_expect_eq(code, 1, "%s", e);
    cr_expect(strstr(e, "bad.tbm"), "the error should name the file: %s", e);
    free(e);
}

/* The emitter killed mid-stream: its student fails with an error (no hang). SIGTERM while the
 * emitter waits for students: exit code 130 at once. */
Test(emit, emitter_death_and_sigterm)
{
    char ep[128], cmd[2048];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    student s = {.endpoint = ep, .id = "slow", .req = {.student_layers = 4}, .die_after = -1, .want_hidden = 0x1f,
                 .want_attn = 0xf, .dtype = TB_F32, .sleep_ms = 400};
    pid_t ps = tb_proc_fork(student_main, &s);
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s --output %s --threads 1 2>/dev/null", EMIT, g_teacher,
             g_batches, ep);
    pid_t pe = spawn_sh(cmd);
    usleep(1500 * 1000);
    tb_proc_kill(pe, SIGKILL);
    cr_expect_eq(wait_code(pe, 10000), -SIGKILL);
    /* the student notices within its peer timeout (5 s) and fails with a stream error (14) */
    cr_expect_eq(wait_code(ps, 20000), 14, "the student should fail with a stream error");

    tb_proc_ipc_endpoint(ep, sizeof ep);
    snprintf(cmd, sizeof cmd, "exec %s --teacher %s --input %s --output %s --students 2 2>/dev/null", EMIT, g_teacher,
             g_batches, ep);
    pe = spawn_sh(cmd);
    usleep(700 * 1000);
    tb_proc_kill(pe, SIGTERM);
    cr_expect_eq(wait_code(pe, 10000), 130);
}

/* ---- check mode against PyTorch ------------------------------------------------------------ */

static const char *check_py =
    "import json, os, struct, sys\n"
    "import numpy as np, torch, msgpack, msgpack_numpy\n"
    "sys.path.insert(0, os.path.join(sys.argv[1], 'tests/reference/py'))\n"
    "import tbref\n"
    "torch.set_default_dtype(torch.float64)\n"
    "teacher_dir, student_dir, batches, index, out_dir, kind = sys.argv[2:8]\n"
    "def load(d):\n"
    "    cfg = json.load(open(os.path.join(d, 'config.json')))\n"
    "    cfg['head'] = {'relu': 'tinybert', 'hf': 'hf'}.get(cfg.get('tinybert_head', 'none'), 'none')\n"
    "    cfg['mlm_head'] = int(cfg.get('tinybert_mlm_head', False))\n"
    "    cfg['fit_size'] = cfg.get('fit_size', 0) or 0\n"
    "    t, _ = tbref.read_safetensors(os.path.join(d, 'model.safetensors'))\n"
    "    p = {n: torch.tensor(t[n].astype(np.float64), requires_grad=True) for n in tbref.param_names(cfg)}\n"
    "    return cfg, p\n"
    "# message file (docs/protocol.md section 6), read by hand\n"
    "raw = open(batches, 'rb').read()\n"
    "assert raw[:8] == b'TBSTRM\\r\\n'\n"
    "off, msgs = 16, []\n"
    "while off < len(raw):\n"
    "    marker, k, n = struct.unpack_from('<IIQ', raw, off)\n"
    "    off += 24\n"
    "    if k == 1: msgs.append(msgpack.unpackb(raw[off:off + n], object_hook=msgpack_numpy.decode, raw=False))\n"
    "    off += n\n"
    "m = msgs[int(index)]\n"
    "def key(d, k):\n"
    "    return d[k] if k in d else d[k.encode()]\n"
    "ids = torch.from_numpy(np.asarray(key(m, 'input_ids')).astype(np.int64))\n"
    "tt = torch.from_numpy(np.asarray(key(m, 'token_type_ids')).astype(np.int64))\n"
    "mk = torch.from_numpy(np.asarray(key(m, 'attention_mask')).astype(np.int64))\n"
    "tc, tp = load(teacher_dir)\n"
    "sc, sp = load(student_dir)\n"
    "T, S = tbref.TorchBert(tc, tp), tbref.TorchBert(sc, sp)\n"
    "to = T.forward(ids, tt, mk, logits=True)\n"
    "tf = {'hidden': [h.detach() for h in to['hidden']], 'scores': [s.detach() for s in to['scores']]}\n"
    "so = S.forward(ids, tt, mk, logits=True)\n"
    "if kind == 'intermediate':\n"
    "    att, hid, emb = tbref.stage1_loss(S, T, so, tf)\n"
    "    total = att + hid\n"
    "    ref = {'att': att.item(), 'hidden': hid.item(), 'emb': emb.item(), 'total': total.item()}\n"
    "else:\n"
    "    total = tbref.soft_ce(so['logits'], to['logits'].detach(), 1.0)\n"
    "    ref = {'pred': total.item(), 'total': total.item()}\n"
    "names = list(sp)\n"
    "gs = torch.autograd.grad(total, [sp[n] for n in names], allow_unused=True)\n"
    "got = json.load(open(os.path.join(out_dir, 'losses.json')))\n"
    "bad = 0\n"
    "for k, v in ref.items():\n"
    "    if abs(got[k] - v) > 1e-4 * max(abs(v), 1e-6):\n"
    "        print('loss', k, got[k], 'reference', v); bad += 1\n"
    "gt, meta = tbref.read_safetensors(os.path.join(out_dir, 'gradients.safetensors'))\n"
    "assert set(gt) == set(names), sorted(set(gt) ^ set(names))\n"
    "nonzero = 0\n"
    "gmax = max(float(np.abs(g.numpy()).max()) for g in gs if g is not None)\n"
    "for n, g in zip(names, gs):\n"
    "    r = np.zeros(sp[n].shape) if g is None else g.numpy()\n"
    "    c = gt[n].astype(np.float64)\n"
    "    # relative to the tensor's largest gradient; gradients that vanish analytically (key biases\n"
    "    # under a softmax) are judged against 1e-2 of the largest gradient of the model\n"
    "    scale = max(np.abs(r).max(), 1e-2 * gmax)\n"
    "    err = np.abs(c - r).max() / scale\n"
    "    if np.abs(r).max() > 1e-6 * gmax: nonzero += 1\n"
    "    if np.abs(r).max() == 0 and np.abs(c).max() != 0: print('grad', n, 'should be 0'); bad += 1\n"
    "    elif err > 1e-4: print('grad', n, 'rel err', err); bad += 1\n"
    "print('checked', len(ref), 'losses and', len(names), 'gradients,', nonzero, 'nonzero')\n"
    "sys.exit(1 if bad or nonzero < 10 else 0)\n";

static void run_check(const char *kind, int expect_code)
{
    char out[300], cmd[4096], err[300], py[700];
    snprintf(out, sizeof out, "%s/check-%s", g_dir, kind);
    snprintf(err, sizeof err, "%s/check.err", g_dir);
    snprintf(cmd, sizeof cmd,
             "exec %s --check --teacher %s --student %s --input %s --check-index 4 --check-kind %s --check-out %s "
             "--threads 1 2>%s",
             EMIT, g_teacher, g_student, g_batches, kind, out, err);
    int code = wait_code(spawn_sh(cmd), 60000);
    char *e = slurp(err);
    cr_assert_eq(code, expect_code, "%s", e);
    free(e);
    if (expect_code) return;
    /* the JSON is read back here, then compared with the torch reference */
    snprintf(py, sizeof py, "%s/losses.json", out);
    char *js = slurp(py);
    cJSON *j = cJSON_Parse(js);
    cr_assert(j, "losses.json does not parse: %s", js);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "kind")->valuestring, kind);
    cr_expect_eq(cJSON_GetObjectItem(j, "batch_index")->valuedouble, 4);
    double total = cJSON_GetObjectItem(j, "total")->valuedouble;
    cr_expect(isfinite(total) && total > 0, "total %g", total);
    cJSON_Delete(j);
    free(js);
    tb_st_file f;
    snprintf(py, sizeof py, "%s/gradients.safetensors", out);
    cr_assert_eq(tb_st_open(&f, py), TB_OK, "%s", tb_err_msg());
    cr_expect(tb_st_find(&f, "fit_dense.weight"));
    cr_expect_str_eq(tb_st_meta_get(&f, "kind"), kind);
    tb_st_close(&f);
    snprintf(py, sizeof py, "%s/ref.py", g_dir);
    FILE *pf = fopen(py, "w");
    cr_assert(pf);
    fputs(check_py, pf);
    fclose(pf);
    snprintf(cmd, sizeof cmd, "exec %s %s %s %s %s %s 4 %s %s 1>&2", TB_PYTHON, py, TB_SOURCE_DIR, g_teacher,
             g_student, g_batches, out, kind);
    cr_expect_eq(wait_code(spawn_sh(cmd), 120000), 0, "torch reference disagrees (%s)", kind);
}

Test(emit, check_mode_matches_torch_intermediate)
{
    run_check("intermediate", 0);
}

Test(emit, check_mode_matches_torch_prediction)
{
    run_check("prediction", 0);
}
