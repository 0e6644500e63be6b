/* emit.c - the teacher-feature emitter (stages/emit/emit.h): teacher forward once per batch, the union
 * of the students' requests, lossless fan-out, regeneration for resuming students, feature files
 * with a size check. The check mode is in check.c. */
#include "emit.h"

#include "tb/store/checkpoint.h"
#include "tb/text/batch_msg.h"
#include "tb/base/error.h"
#include "tb/base/outfile.h"
#include "tb/base/log.h"
#include "tb/base/metrics.h"
#include "tb/base/signals.h"
#include "tb/text/vocab.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Framing and metadata of one feature message beyond its tensor payloads (map keys, tensor
 * headers, 64-byte alignment padding per tensor, metadata strings): a generous upper bound. */
#define EMIT_MSG_OVERHEAD 4096u
#define EMIT_TENSOR_OVERHEAD 192u

void tb_emit_opts_default(tb_emit_opts *o)
{
    memset(o, 0, sizeof *o);
    o->input_stream_id = "main";
    o->stream_id = "main";
    o->recv_timeout_ms = -1;
    o->students = 1;
    o->dtype = TB_F32;
    o->seed = 42;
    o->policy = TB_PEER_FAIL;
    o->progress = TB_PROGRESS_NONE;
}

int tb_emit_is_stream(const char *endpoint)
{
    return !strncmp(endpoint, "tcp://", 6) || !strncmp(endpoint, "ipc://", 6) || !strncmp(endpoint, "inproc://", 9);
}

static const char *file_path(const char *endpoint)
{
    if (!strncmp(endpoint, "file://", 7)) return endpoint + 7;
    if (!strncmp(endpoint, "file:", 5)) return endpoint + 5;
    return endpoint;
}

int tb_emit_load_model(const char *path, tb_bert_model *m, char *vocab_hash, size_t n)
{
    int rc = TB_OK;
    char dir[4096], vpath[4200];
    tb_bert_config cfg;
    tb_vocab v = {0};
    memset(m, 0, sizeof *m);
    if (vocab_hash && n) vocab_hash[0] = '\0';
    TB_TRY(tb_checkpoint_resolve(path, dir, sizeof dir));
    TB_TRY(tb_checkpoint_load_config(dir, TB_CKPT_ANY_HEAD, &cfg));
    TB_TRY(tb_bert_init(m, &cfg));
    TB_TRY(tb_checkpoint_load_params(dir, &m->params, NULL));
    snprintf(vpath, sizeof vpath, "%s/%s", dir, TB_CKPT_VOCAB);
    if (vocab_hash && n && access(vpath, R_OK) == 0) {
        TB_TRY(tb_vocab_load(&v, vpath));
        tb_vocab_hash_str(&v, vocab_hash, n);
    }
error:
    tb_vocab_free(&v);
    if (rc) {
        tb_err_wrap(rc, "loading checkpoint %s", path);
        tb_bert_free(m);
    }
    return rc;
}

uint64_t tb_emit_file_estimate(const tb_features_request *r, const tb_features_meta *meta, int64_t batches,
                               int64_t B, int64_t T)
{
    int ntensors = __builtin_popcountll(r->hidden) + __builtin_popcountll(r->attn) + (r->logits ? 1 : 0) + 5;
    /* tokens: input_ids, token_type_ids, attention_mask (i32 [B, T]), labels (4 B), example_ids (8 B) */
    uint64_t tokens = (uint64_t)B * (uint64_t)T * 12u + (uint64_t)B * 12u;
    uint64_t per = tb_features_bytes(r, meta, B, T) + tokens + EMIT_MSG_OVERHEAD +
                   (uint64_t)ntensors * (EMIT_TENSOR_OVERHEAD + TB_ALIGN) + 24u /* record header */;
    return (uint64_t)batches * per + 16u + 32u; /* file header, end record */
}

/* ---- the emitter ------------------------------------------------------------------------------ */

typedef struct emitter {
    const tb_emit_opts *o;
    tb_bert_model teacher;
    tb_features_meta meta;
    tb_features_request uni;     /* union sent */
    int arena_B, arena_T;
    uint64_t arena_attn;
    int input_is_file;
    tb_stream *in, *out;
    int out_is_file;
    /* the batch whose borrowed features wait in tb_stream_send (restored after a regeneration) */
    int in_send;
    tb_batch pending;
    tb_msg *pending_msg;
    uint64_t pending_seq;
    uint64_t regenerated;
    uint64_t feature_bytes;
    int logged_union;
    uint64_t built;              /* batches built so far (with the union of their time) */
} emitter;

static int reserve(emitter *e, int B, int T)
{
    int rc = TB_OK;
    if (e->arena_B >= B && e->arena_T >= T && (e->arena_attn & e->uni.attn) == e->uni.attn) return TB_OK;
    int nb = B > e->arena_B ? B : e->arena_B, nt = T > e->arena_T ? T : e->arena_T;
    TB_TRY(tb_bert_arena_reserve(&e->teacher, nb, nt, TB_BERT_INFER, e->uni.attn | e->arena_attn, 0));
    e->arena_B = nb;
    e->arena_T = nt;
    e->arena_attn |= e->uni.attn;
error:
    return rc;
}

/* Cuts the batch to max_seq positions; only padding may go. */
static int trim_batch(tb_batch *b, int max_seq, uint64_t seq)
{
    int rc = TB_OK;
    tb_tensor t[3] = {{0}};
    const int64_t B = b->input_ids.shape[0], T = b->input_ids.shape[1];
    if (max_seq <= 0 || T <= max_seq) return TB_OK;
    const int32_t *mask = b->attention_mask.data;
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = max_seq; j < T; j++)
            TB_CHECK(!mask[i * T + j], TB_EINVAL,
                     "batch %llu: example %lld has a token at position %lld, beyond --max-seq %d; tokenize with "
                     "tb-tokenize --max-seq-length %d instead (cutting real tokens would change the data)",
                     (unsigned long long)seq, (long long)i, (long long)j, max_seq, max_seq);
    tb_tensor *src[3] = {&b->input_ids, &b->token_type_ids, &b->attention_mask};
    int64_t shape[2] = {B, max_seq};
    for (int k = 0; k < 3; k++) {
        TB_TRY(tb_tensor_alloc(&t[k], TB_I32, 2, shape));
        const int32_t *s = src[k]->data;
        int32_t *d = t[k].data;
        for (int64_t i = 0; i < B; i++) memcpy(d + i * max_seq, s + i * T, (size_t)max_seq * sizeof *d);
    }
    for (int k = 0; k < 3; k++) {
        tb_tensor_free(src[k]);
        *src[k] = t[k];
        memset(&t[k], 0, sizeof t[k]);
    }
error:
    for (int k = 0; k < 3; k++) tb_tensor_free(&t[k]);
    return rc;
}

static int forward(emitter *e, const tb_batch *b, uint64_t seq)
{
    int rc = TB_OK;
    const int B = (int)b->input_ids.shape[0], T = (int)b->input_ids.shape[1];
    TB_TRY(reserve(e, B, T));
    tb_bert_batch bb = {.B = B, .T = T, .input_ids = b->input_ids.data, .token_type_ids = b->token_type_ids.data,
                        .attention_mask = b->attention_mask.data};
    tb_bert_run run = {.dropout = e->o->teacher_dropout, .seed = e->o->seed, .seq = seq};
    tb_features_run_flags(&e->uni, &run);
    rc = tb_bert_forward(&e->teacher, &bb, &run);
    if (rc) tb_err_wrap(rc, "teacher forward of batch %llu", (unsigned long long)seq);
error:
    return rc;
}

/* Turns input message `m` (a token batch) into the feature message for `seq`, in place. `b`
 * receives the parsed batch (the message borrows its trimmed tensors). */
static int build(emitter *e, tb_msg *m, uint64_t seq, tb_batch *b)
{
    int rc = TB_OK;
    const char *vh = NULL, *lo = NULL;
    TB_TRY(tb_batch_from_msg(b, m));
    if (tb_msg_find(m, "vocab_hash")) TB_TRY(tb_msg_get_str(m, "vocab_hash", &vh));
    if (tb_msg_find(m, "label_order")) TB_TRY(tb_msg_get_str(m, "label_order", &lo));
    TB_CHECK(!vh || !e->meta.vocab_hash[0] || !strcmp(vh, e->meta.vocab_hash), TB_EFORMAT,
             "batch %llu was tokenized with vocabulary %s, the teacher's vocab.txt is %s: tokenize with the "
             "teacher's vocabulary", (unsigned long long)seq, vh, e->meta.vocab_hash);
    TB_TRY(trim_batch(b, e->o->max_seq, seq));
    if (e->o->max_seq > 0) {
        TB_TRY(tb_msg_set_tensor_ref(m, "input_ids", &b->input_ids));
        TB_TRY(tb_msg_set_tensor_ref(m, "token_type_ids", &b->token_type_ids));
        TB_TRY(tb_msg_set_tensor_ref(m, "attention_mask", &b->attention_mask));
    }
    TB_TRY(forward(e, b, seq));
    TB_TRY(tb_features_add(m, &e->teacher, &e->uni, &e->meta, (int)b->input_ids.shape[0],
                           (int)b->input_ids.shape[1], lo));
error:
    return rc;
}

/* Makes every borrowed tensor of `m` a copy owned by it. */
static int own_all(tb_msg *m)
{
    int rc = TB_OK;
    for (int i = 0; i < m->count; i++) {
        tb_field *f = &m->fields[i];
        if (f->kind != TB_VAL_TENSOR || f->v.tensor.owned) continue;
        tb_tensor view = f->v.tensor, copy = {0};
        TB_TRY(tb_tensor_copy(&copy, &view));
        tb_tensor_free(&f->v.tensor);
        f->v.tensor = copy;
    }
error:
    return rc;
}

int tb_emit_read_input_at(const char *input, const char *stream_id, uint64_t seq, tb_msg *out)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    tb_stream_opts so;
    tb_stream_opts_default(&so);
    so.stream_id = stream_id;
    so.resume_from = seq;
    TB_TRY(tb_stream_open(&s, input, TB_STREAM_READ, &so));
    rc = tb_stream_recv(s, out, -1);
    if (rc == TB_EEND) rc = TB_ERR(TB_EINVAL, "input %s has no message %llu", input, (unsigned long long)seq);
error:
    tb_stream_close(s);
    return rc;
}

/* After a regeneration inside tb_stream_send: the message waiting there borrows the teacher's
 * arena, so the teacher runs its batch again (same seq, same bits) and the message points at the
 * (possibly reallocated) arena again. */
static int restore_pending(emitter *e)
{
    int rc = TB_OK;
    const char *lo = NULL;
    TB_TRY(forward(e, &e->pending, e->pending_seq));
    if (tb_msg_find(e->pending_msg, "label_order")) TB_TRY(tb_msg_get_str(e->pending_msg, "label_order", &lo));
    TB_TRY(tb_features_add(e->pending_msg, &e->teacher, &e->uni, &e->meta, (int)e->pending.input_ids.shape[0],
                           (int)e->pending.input_ids.shape[1], lo));
error:
    return rc;
}

static int regen(void *ctx, uint64_t seq, tb_msg *out)
{
    emitter *e = ctx;
    int rc = TB_OK;
    tb_batch b = {0};
    tb_msg in;
    tb_msg_init(&in);
    TB_TRY(tb_emit_read_input_at(e->o->input, e->o->input_stream_id, seq, &in));
    tb_msg_free(out);
    *out = in; /* the message (and its buffer) moves into `out` */
    tb_msg_init(&in);
    TB_TRY(build(e, out, seq, &b));
    TB_TRY(own_all(out));
    e->regenerated++;
    TB_DEBUG("regenerated batch %llu for a resuming student", (unsigned long long)seq);
    if (e->in_send) TB_TRY(restore_pending(e));
error:
    tb_batch_free(&b);
    tb_msg_free(&in);
    return rc;
}

/* 1 when the resolved request r asks for a feature that the union u does not carry. */
static int widens(const tb_features_request *u, const tb_features_request *r)
{
    return (r->hidden & ~u->hidden) || (r->attn & ~u->attn) || (r->logits && !u->logits);
}

/* Checks one student's hello: TB_OK with its resolved request, or an error naming the student.
 * `built` batches were already built with the union `sent`: a student resuming before that and
 * needing more than `sent` would receive batches without its features. */
static int check_student(emitter *e, const tb_msg *h, uint64_t built, const tb_features_request *sent,
                         tb_features_request *res)
{
    int rc = TB_OK;
    tb_features_request r;
    const char *who = "a student";
    int64_t resume = 0;
    if (tb_msg_find(h, "consumer")) tb_msg_get_str(h, "consumer", &who);
    if (tb_msg_find(h, "resume")) tb_msg_get_int(h, "resume", &resume);
    rc = tb_features_request_from_hello(h, &r);
    if (!rc) rc = tb_features_request_resolve(&r, &e->meta, who, res);
    if (!rc && (uint64_t)resume < built && widens(sent, res)) {
        char hb[256], ab[256];
        rc = TB_ERR(TB_EINVAL,
                    "joined at batch %lld asking for features that batches %lld..%llu were built without "
                    "(they carry hidden {%s}, attention {%s}%s): start it together with the others, or "
                    "from batch %llu on", (long long)resume, (long long)resume, (unsigned long long)built - 1,
                    tb_features_mask_format(sent->hidden, hb, sizeof hb),
                    tb_features_mask_format(sent->attn, ab, sizeof ab), sent->logits ? ", logits" : "",
                    (unsigned long long)built);
    }
    if (rc) tb_err_wrap(rc, "student '%s'", who);
    return rc;
}

/* tb_stream_admit_fn: admits a student whose request the teacher can serve and widens the union
 * sent from the next batch on; refuses any other (it gets a fatal error with the reason and is
 * dropped; the other students go on). The stream sends a student nothing before this returns. */
static int admit_student(void *ctx, int i, const tb_msg *hello)
{
    (void)i;
    emitter *e = ctx;
    tb_features_request res, u = e->uni;
    int rc = check_student(e, hello, e->built, &e->uni, &res);
    if (rc) {
        TB_WARN("refusing %s", tb_err_msg());
        return rc;
    }
    tb_features_request_union(&u, &res);
    if (u.hidden != e->uni.hidden || u.attn != e->uni.attn || u.logits != e->uni.logits || !e->logged_union) {
        char hb[256], ab[256];
        TB_INFO("sending teacher hidden states {%s}, attention scores of layers {%s}%s",
                tb_features_mask_format(u.hidden, hb, sizeof hb), tb_features_mask_format(u.attn, ab, sizeof ab),
                u.logits ? " and logits" : "");
        e->logged_union = 1;
    }
    e->uni = u;
    return TB_OK;
}

static uint64_t avail_bytes(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    struct statvfs st;
    if (statvfs(dir, &st) != 0) return UINT64_MAX;
    return (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
}

/* Counts the input file's messages and takes B, T from the first one. */
static int scan_input(emitter *e, int64_t *count, int64_t *B, int64_t *T)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    tb_msg m;
    tb_msg_init(&m);
    tb_stream_opts so;
    tb_stream_opts_default(&so);
    so.stream_id = e->o->input_stream_id;
    *count = 0;
    *B = *T = 0;
    TB_TRY(tb_stream_open(&s, e->o->input, TB_STREAM_READ, &so));
    for (;;) {
        rc = tb_stream_recv(s, &m, -1);
        if (rc == TB_EEND) {
            rc = TB_OK;
            break;
        }
        if (rc) goto error;
        if (*count == 0) {
            const tb_tensor *ids;
            TB_TRY(tb_msg_get_tensor(&m, "input_ids", &ids));
            TB_CHECK(ids->ndim == 2, TB_ESHAPE, "input message 0: input_ids is not [B, T]");
            *B = ids->shape[0];
            *T = ids->shape[1];
        }
        (*count)++;
        tb_msg_free(&m);
        if (e->o->max_batches > 0 && *count >= e->o->max_batches) break;
    }
error:
    tb_msg_free(&m);
    tb_stream_close(s);
    return rc;
}

static int check_space(emitter *e, uint64_t need, const char *what)
{
    const char *path = file_path(e->o->output);
    uint64_t avail = avail_bytes(path);
    if (e->o->max_output_bytes && need > e->o->max_output_bytes)
        return TB_ERR(TB_EINVAL,
                      "feature file %s would need %.3f GB (%s), more than --max-output-bytes %.3f GB: use "
                      "--feature-dtype f16, a shorter --max-seq, fewer features or fewer batches, or stream to "
                      "the students instead", path, (double)need / 1e9, what, (double)e->o->max_output_bytes / 1e9);
    if (need > avail)
        return TB_ERR(TB_EINVAL,
                      "feature file %s would need %.3f GB (%s) but its file system has %.3f GB free: use "
                      "--feature-dtype f16, a shorter --max-seq, fewer features or fewer batches, or stream to "
                      "the students instead", path, (double)need / 1e9, what, (double)avail / 1e9);
    return TB_OK;
}

/* File output: the estimate, reported and checked before anything is written. */
static int plan_file(emitter *e, tb_emit_result *res, tb_metrics *mx)
{
    int rc = TB_OK;
    char hb[256], ab[256];
    TB_CHECK(e->uni.hidden || e->uni.attn || e->uni.logits, TB_EINVAL,
             "file output: no features requested; give --student-layers, --hidden, --attn or --logits");
    if (!e->input_is_file) {
        TB_INFO("feature file %s: the input is a live stream, so the size is checked batch by batch",
                file_path(e->o->output));
        return TB_OK;
    }
    int64_t n, B, T;
    TB_TRY(scan_input(e, &n, &B, &T));
    if (e->o->max_seq > 0 && T > e->o->max_seq) T = e->o->max_seq;
    uint64_t est = tb_emit_file_estimate(&e->uni, &e->meta, n, B, T);
    res->estimate_bytes = est;
    TB_INFO("feature file %s: %lld batches x %.3f MB (B %lld, T %lld, hidden {%s}, attention {%s}%s, %s) = %.3f GB "
            "(%llu bytes)",
            file_path(e->o->output), (long long)n, (double)tb_emit_file_estimate(&e->uni, &e->meta, 1, B, T) / 1e6,
            (long long)B, (long long)T, tb_features_mask_format(e->uni.hidden, hb, sizeof hb),
            tb_features_mask_format(e->uni.attn, ab, sizeof ab), e->uni.logits ? ", logits" : "",
            e->meta.dtype == TB_F16 ? "f16" : "f32", (double)est / 1e9, (unsigned long long)est);
    tb_metrics_write(mx, "estimate", -1,
                     (tb_metric[]){TB_MI("batches", n), TB_MI("batch_size", B), TB_MI("seq", T),
                                   TB_MI("bytes", (int64_t)est), TB_MS("dtype", e->meta.dtype == TB_F16 ? "f16" : "f32")},
                     5);
    TB_TRY(check_space(e, est, "the estimate"));
error:
    return rc;
}

/* The batches the students will get, when the input tells (a message file's END count, or the
 * count its producer announced), capped by --max-batches; 0 when unknown. */
static int announce_count(emitter *e, uint64_t *out)
{
    uint64_t n = 0;
    *out = 0;
    if (!e->input_is_file) return TB_OK; /* a live producer's count arrives with its first batch */
    int rc = tb_stream_count(e->in, &n);
    if (rc) return tb_err_wrap(rc, "counting the batches of %s", e->o->input);
    if (e->o->max_batches > 0 && (uint64_t)e->o->max_batches < n) n = (uint64_t)e->o->max_batches;
    *out = n;
    return TB_OK;
}

static int open_streams(emitter *e)
{
    int rc = TB_OK;
    const tb_emit_opts *o = e->o;
    tb_stream_opts si, so;
    tb_stream_opts_default(&si);
    si.stream_id = o->input_stream_id;
    if (o->peer_timeout_ms > 0) si.peer_timeout_ms = o->peer_timeout_ms;
    TB_TRY(tb_stream_open(&e->in, o->input, TB_STREAM_READ, &si));
    tb_stream_opts_default(&so);
    so.stream_id = o->stream_id;
    so.consumers = o->students;
    so.policy = o->policy;
    if (o->peer_timeout_ms > 0) so.peer_timeout_ms = o->peer_timeout_ms;
    if (o->hello_timeout_ms > 0) so.hello_timeout_ms = o->hello_timeout_ms;
    if (o->dead_wait_ms > 0) so.dead_wait_ms = o->dead_wait_ms;
    if (o->finish_timeout_ms > 0) so.finish_timeout_ms = o->finish_timeout_ms;
    if (o->retain_max > 0) so.retain_max = o->retain_max;
    if (o->retain_max_bytes > 0) so.retain_max_bytes = o->retain_max_bytes;
    if (e->input_is_file && !e->out_is_file) {
        so.regen = regen;
        so.regen_ctx = e;
    }
    so.admit = admit_student;
    so.admit_ctx = e;
    TB_TRY(announce_count(e, &so.announce_count));
    TB_TRY(tb_stream_open(&e->out, o->output, TB_STREAM_WRITE, &so));
error:
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* File output without an estimate (live input): adds one batch of B x T to *written and checks
 * the total. A refusal fails the run: the message file's temporary is removed when the stream
 * closes, and an existing output file stays as it was. */
static int check_growth(emitter *e, uint64_t *written, int64_t B, int64_t T)
{
    *written += tb_emit_file_estimate(&e->uni, &e->meta, 1, B, T);
    return check_space(e, *written, "so far");
}

static int emit_loop(emitter *e, tb_emit_result *res, tb_metrics *mx, tb_progress *pr)
{
    int rc = TB_OK;
    const tb_emit_opts *o = e->o;
    tb_msg m;
    tb_msg_init(&m);
    uint64_t written = 0;
    int64_t samples = 0;
    for (uint64_t seq = 0;; seq++) {
        if (o->max_batches > 0 && (int64_t)seq >= o->max_batches) break;
        TB_CHECK(!tb_signals_pending(), TB_EINTR, "interrupted after %llu batches", (unsigned long long)seq);
        rc = tb_stream_recv(e->in, &m, o->recv_timeout_ms);
        if (rc == TB_EEND) {
            rc = TB_OK;
            break;
        }
        if (rc) {
            tb_err_wrap(rc, "reading token batch %llu from %s", (unsigned long long)seq, o->input);
            goto error;
        }
        double t0 = now_s();
        tb_batch_free(&e->pending);
        TB_TRY(build(e, &m, seq, &e->pending));
        e->pending_seq = seq;
        e->built = seq + 1;
        double t1 = now_s();
        const int64_t B = e->pending.input_ids.shape[0], T = e->pending.input_ids.shape[1];
        uint64_t fb = tb_features_bytes(&e->uni, &e->meta, B, T);
        if (e->out_is_file && !res->estimate_bytes) TB_TRY(check_growth(e, &written, B, T));
        e->in_send = 1;
        e->pending_msg = &m;
        rc = tb_stream_send(e->out, &m, NULL);
        e->in_send = 0;
        if (rc) {
            tb_err_wrap(rc, "sending batch %llu", (unsigned long long)seq);
            goto error;
        }
        double t2 = now_s();
        tb_msg_free(&m);
        e->feature_bytes += fb;
        res->batches = (int64_t)seq + 1;
        samples += B;
        tb_progress_update(pr, res->batches, samples, NAN, NAN);
        tb_metrics_write(mx, "batch", res->batches,
                         (tb_metric[]){TB_MI("seq", seq), TB_MI("examples", B), TB_MI("seq_len", T),
                                       TB_MI("feature_bytes", (int64_t)fb), TB_MF("teacher_s", t1 - t0),
                                       TB_MF("send_s", t2 - t1)},
                         6);
    }
    rc = tb_stream_finish(e->out);
    if (rc) tb_err_wrap(rc, "finishing the feature stream");
error:
    e->in_send = 0;
    tb_msg_free(&m);
    return rc;
}

/* Loads the teacher (o->teacher, o->threads) and its feature facts; resolves the emitter's own
 * request (o->extra) into the union. */
static int load_teacher(emitter *e)
{
    int rc = TB_OK;
    const tb_emit_opts *o = e->o;
    TB_TRY(tb_emit_load_model(o->teacher, &e->teacher, e->meta.vocab_hash, sizeof e->meta.vocab_hash));
    if (!e->meta.vocab_hash[0])
        TB_WARN("teacher %s has no vocab.txt: cannot check that the batches were made with its vocabulary", o->teacher);
    if (o->threads > 0) tb_bert_set_threads(&e->teacher, o->threads);
    char vh[TB_FEATURES_HASH_MAX];
    memcpy(vh, e->meta.vocab_hash, sizeof vh);
    tb_features_meta_from_model(&e->meta, &e->teacher);
    memcpy(e->meta.vocab_hash, vh, sizeof vh);
    e->meta.dtype = o->dtype;
    e->meta.dropout = o->teacher_dropout;
    TB_TRY(tb_features_request_resolve(&o->extra, &e->meta, "the emitter's own request", &e->uni));
error:
    return rc;
}

/* The counts of a run (also a failed one) into `res`. */
static void fill_result(const emitter *e, tb_emit_result *res)
{
    if (e->out) {
        tb_stream_stats st;
        if (tb_stream_stats_get(e->out, &st) == TB_OK) {
            res->students = st.consumers;
            res->dropped = st.dropped;
        }
    }
    res->regenerated = e->regenerated;
    res->feature_bytes = e->feature_bytes;
    res->sent = e->uni;
}

/* Refuses an output (the features, the metrics) that is one of the inputs, before anything opens. */
static int check_paths(const tb_emit_opts *o)
{
    const tb_path_arg ins[] = {{"input", o->input}, {"teacher", o->teacher}};
    const tb_path_arg outs[] = {{"output", o->output}, {"metrics", o->metrics_path}};
    return tb_output_check(outs, 2, ins, 2);
}

int tb_emit_run(const tb_emit_opts *o, tb_emit_result *res)
{
    int rc = TB_OK;
    emitter e;
    tb_emit_result dummy;
    tb_metrics mx = {0};
    tb_progress pr;
    int have_pr = 0;
    memset(&e, 0, sizeof e);
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    e.o = o;
    TB_CHECK(o && o->teacher && o->input && o->output, TB_EINVAL, "tb-emit needs a teacher, an input and an output");
    TB_CHECK(o->dtype == TB_F32 || o->dtype == TB_F16, TB_EINVAL, "feature dtype must be f32 or f16");
    TB_CHECK(o->students >= 1, TB_EINVAL, "--students must be >= 1, got %d", o->students);
    TB_TRY(check_paths(o));
    e.input_is_file = !tb_emit_is_stream(o->input);
    e.out_is_file = !tb_emit_is_stream(o->output);
    TB_TRY(tb_metrics_open(&mx, "tb-emit", o->metrics_path));
    TB_TRY(load_teacher(&e));
    if (e.out_is_file) TB_TRY(plan_file(&e, res, &mx));
    TB_TRY(open_streams(&e));
    if (!e.out_is_file) {
        TB_INFO("teacher %s (%d layers, hidden %d, %d heads, %s, dropout %s); waiting for %d student(s) on %s",
                o->teacher, e.meta.layers, e.meta.hidden_size, e.meta.heads, e.meta.config_hash,
                o->teacher_dropout ? "on" : "off", o->students, o->output);
        rc = tb_stream_wait_consumers(e.out);
        if (rc) {
            tb_err_wrap(rc, "waiting for %d student(s) on %s", o->students, o->output);
            goto error;
        }
    }
    int64_t total = 0, tB, tT;
    if (e.input_is_file) TB_TRY(scan_input(&e, &total, &tB, &tT)); /* for the progress total */
    TB_TRY(tb_progress_init(&pr, stderr, o->progress, "tb-emit", total, 10.0));
    have_pr = 1;
    TB_TRY(emit_loop(&e, res, &mx, &pr));
    tb_progress_finish(&pr);
error:
    fill_result(&e, res);
    if (rc == TB_OK)
        tb_metrics_write(&mx, "end", res->batches,
                         (tb_metric[]){TB_MI("batches", res->batches), TB_MI("feature_bytes", (int64_t)e.feature_bytes),
                                       TB_MI("regenerated", (int64_t)e.regenerated), TB_MI("dropped", res->dropped)},
                         4);
    if (have_pr) tb_progress_free(&pr);
    if (rc != TB_OK) { /* the students are told why (a refused request names the student and the field) */
        char why[512];
        snprintf(why, sizeof why, "%s", tb_err_msg());
        tb_stream_close_failed(e.out, rc, why);
    } else {
        tb_stream_close(e.out);
    }
    tb_stream_close(e.in);
    tb_batch_free(&e.pending);
    tb_bert_free(&e.teacher);
    tb_metrics_close(&mx);
    return rc;
}
