/* distill.c - tb-distill: a student trained on teacher-feature messages (see stages/distill/distill.h). */
#include "distill.h"

#include "tb/base/clock.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/outfile.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/store/runfolder.h"
#include "tb/store/safetensors.h"
#include "tb/text/dataset.h"
#include "tb/train/evaluate.h"
#include "tb/train/trainer.h"
#include "tb/wire/stream.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_N 4096

static const char *const mode_names[] = {"general", "task-stage1", "task-stage2"};

int tb_distill_mode_parse(const char *s, tb_distill_mode *out)
{
    int rc = TB_OK;
    TB_CHECK(s && out, TB_EINVAL, "tb_distill_mode_parse: NULL argument");
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, mode_names[i])) {
            *out = (tb_distill_mode)i;
            return TB_OK;
        }
    TB_CHECK(0, TB_EINVAL, "unknown distillation mode '%s': use general, task-stage1 or task-stage2", s);
error:
    return rc;
}

const char *tb_distill_mode_name(tb_distill_mode mode)
{
    return (unsigned)mode < 3 ? mode_names[mode] : "?";
}

static int intermediate(tb_distill_mode mode)
{
    return mode == TB_DISTILL_GENERAL || mode == TB_DISTILL_TASK_STAGE1;
}

int tb_distill_request(tb_distill_mode mode, const tb_bert_config *cfg, const char *expect_config_hash,
                       const char *expect_vocab_hash, tb_features_request *out)
{
    int rc = TB_OK;
    TB_CHECK(cfg && out, TB_EINVAL, "tb_distill_request: NULL argument");
    TB_CHECK((unsigned)mode < 3, TB_EINVAL, "tb_distill_request: unknown mode %d", (int)mode);
    memset(out, 0, sizeof *out);
    if (intermediate(mode)) {
        out->student_layers = cfg->num_hidden_layers;
        out->student_heads = cfg->num_attention_heads;
        out->expect_hidden_size = cfg->fit_size;
    } else {
        out->logits = 1;
    }
    TB_CHECK(!expect_config_hash || strlen(expect_config_hash) < TB_FEATURES_HASH_MAX, TB_EINVAL,
             "expected teacher config hash '%s' is too long", expect_config_hash);
    TB_CHECK(!expect_vocab_hash || strlen(expect_vocab_hash) < TB_FEATURES_HASH_MAX, TB_EINVAL,
             "expected vocabulary hash '%s' is too long", expect_vocab_hash);
    if (expect_config_hash) snprintf(out->expect_config_hash, TB_FEATURES_HASH_MAX, "%s", expect_config_hash);
    if (expect_vocab_hash) snprintf(out->expect_vocab_hash, TB_FEATURES_HASH_MAX, "%s", expect_vocab_hash);
error:
    return rc;
}

int tb_distill_check_compat(tb_distill_mode mode, const tb_bert_config *cfg, const tb_features_meta *meta)
{
    int rc = TB_OK;
    TB_CHECK(cfg && meta, TB_EINVAL, "tb_distill_check_compat: NULL argument");
    const int N = meta->layers, M = cfg->num_hidden_layers;
    if (intermediate(mode)) {
        TB_CHECK(M > 0 && N % M == 0, TB_EINVAL,
                 "the teacher has %d layers and the student %d: TinyBERT maps student layer i onto teacher layer "
                 "i*k with k = N / M, which must be an integer; give the student a divisor of %d layers",
                 N, M, N);
        TB_CHECK(cfg->num_attention_heads == meta->heads, TB_ESHAPE,
                 "the student has %d attention heads, the teacher %d: the attention loss compares the scores head by "
                 "head; give the student %d heads",
                 cfg->num_attention_heads, meta->heads, meta->heads);
        TB_CHECK(cfg->fit_size == meta->hidden_size, TB_ESHAPE,
                 "the student's fit_dense maps to %d features, the teacher's hidden size is %d: start from a "
                 "student made for this teacher",
                 cfg->fit_size, meta->hidden_size);
    } else {
        TB_CHECK(cfg->head != TB_HEAD_NONE, TB_EINVAL,
                 "task-stage2 needs a student with a classification head: initialise it from a task-stage1 student");
        TB_CHECK(meta->num_labels == cfg->num_labels, TB_ESHAPE,
                 "the teacher has %d outputs, the student %d: stage 2 compares logits class by class",
                 meta->num_labels, cfg->num_labels);
    }
error:
    return rc;
}

int tb_distill_prepare(tb_bert_model *m, tb_distill_mode mode, int B, int T)
{
    int rc = TB_OK;
    TB_CHECK(m && B > 0 && T > 0, TB_EINVAL, "tb_distill_prepare: bad arguments");
    tb_bert_set_trainable(m, "", 1);
    if (intermediate(mode)) {
        tb_bert_set_trainable(m, "bert.pooler.", 0);
        tb_bert_set_trainable(m, "classifier.", 0);
        tb_bert_set_trainable(m, "cls.", 0);
    } else {
        tb_bert_set_trainable(m, "fit_dense.", 0);
        tb_bert_set_trainable(m, "cls.", 0);
    }
    TB_TRY(tb_bert_arena_reserve(m, B, T, TB_BERT_TRAIN, 0, 0));
error:
    return rc;
}

static void scale(float *p, size_t n, double w)
{
    if (!p || w == 1.0) return;
    const float f = (float)w;
    for (size_t i = 0; i < n; i++) p[i] *= f;
}

/* Each loss term of the step must be finite: a NaN or an infinity (from the teacher's features or a
 * diverged student) stops the step before its gradient is used, naming the term and the message. */
static const char *nonfinite_term(int stage2, const tb_bert_distill_losses *p, double *v)
{
    if (stage2) return isfinite(p->pred) ? NULL : (*v = p->pred, "prediction");
    if (!isfinite(p->att)) return *v = p->att, "attention";
    if (!isfinite(p->emb)) return *v = p->emb, "hidden (embedding layer)";
    if (!isfinite(p->hidden)) return *v = p->hidden, "hidden";
    return NULL;
}

static int check_loss_terms(int stage2, const tb_bert_distill_losses *p, uint64_t seq)
{
    int rc = TB_OK;
    double v = 0.0;
    const char *bad = nonfinite_term(stage2, p, &v);
    TB_CHECK(!bad, TB_EINVAL,
             "message %llu: the %s loss is %g: no update applied (check the teacher's features in this message, or "
             "lower the learning rate if the student diverged)",
             (unsigned long long)seq, bad, v);
error:
    return rc;
}

int tb_distill_step(tb_bert_model *m, const tb_distill_loss_opts *lo, const tb_msg *msg,
                    const tb_features_view *v, uint64_t seq, tb_distill_step_result *out)
{
    int rc = TB_OK;
    tb_batch b;
    memset(&b, 0, sizeof b);
    TB_CHECK(m && lo && msg && v && out, TB_EINVAL, "tb_distill_step: NULL argument");
    memset(out, 0, sizeof *out);
    TB_TRY(tb_batch_from_msg(&b, msg));
    const tb_bert_config *cf = &m->config;
    const int B = v->B, T = v->T;
    TB_CHECK(b.input_ids.shape[0] == B && b.input_ids.shape[1] == T, TB_ESHAPE,
             "tb_distill_step: the batch and its feature view disagree on B x T");
    TB_CHECK(T <= cf->max_position_embeddings, TB_ESHAPE,
             "batch of sequence length %d exceeds the student's max_position_embeddings %d", T,
             cf->max_position_embeddings);
    TB_TRY(tb_bert_arena_reserve(m, B, T, TB_BERT_TRAIN, 0, 0));
    tb_bert_batch bb = {.B = B,
                        .T = T,
                        .input_ids = b.input_ids.data,
                        .token_type_ids = b.token_type_ids.data,
                        .attention_mask = b.attention_mask.data};
    tb_bert_run run;
    memset(&run, 0, sizeof run);
    run.dropout = lo->dropout;
    run.seed = lo->seed;
    run.seq = seq;
    const int stage2 = lo->mode == TB_DISTILL_TASK_STAGE2;
    run.logits = stage2;
    TB_TRY(tb_bert_forward(m, &bb, &run));
    const float *gold = NULL;
    if (stage2 && cf->num_labels == 1) {
        TB_CHECK(b.labels.dtype == TB_F32 && b.labels.ndim == 1 && b.labels.shape[0] == B, TB_ESHAPE,
                 "regression stage 2 needs f32 gold labels [%d] in the batch (a 1-output student learns the gold "
                 "values, not the teacher's)", B);
        gold = b.labels.data;
    }
    tb_bert_grads g;
    tb_bert_zero_grad(m);
    TB_TRY(tb_bert_distill_loss(m, &v->teacher, stage2 ? TB_DISTILL_PREDICTION : TB_DISTILL_INTERMEDIATE,
                                (float)lo->temperature, gold, &out->parts, &g));
    TB_TRY(check_loss_terms(stage2, &out->parts, seq));
    if (stage2) {
        scale((float *)g.dlogits, (size_t)B * cf->num_labels, lo->w_pred);
        out->loss = lo->w_pred * out->parts.pred;
    } else {
        const size_t S = (size_t)B * cf->num_attention_heads * T * T, H = (size_t)B * T * cf->hidden_size;
        for (int i = 0; i < cf->num_hidden_layers; i++) scale((float *)g.dscores[i], S, lo->w_att);
        for (int j = 0; j <= cf->num_hidden_layers; j++) scale((float *)g.dhidden[j], H, lo->w_hidden);
        /* fit_dense gradients were accumulated by the loss into zeroed buffers: weight them too */
        if (m->fit_w >= 0) {
            tb_param *w = &m->params.items[m->fit_w], *bi = &m->params.items[m->fit_b];
            scale(w->grad.data, (size_t)tb_tensor_numel(&w->grad), lo->w_hidden);
            scale(bi->grad.data, (size_t)tb_tensor_numel(&bi->grad), lo->w_hidden);
        }
        out->loss = lo->w_att * out->parts.att + lo->w_hidden * out->parts.hidden;
    }
    TB_TRY(tb_bert_backward(m, &g));
    out->samples = B;
error:
    tb_batch_free(&b);
    return rc;
}

void tb_distill_opts_default(tb_distill_opts *o)
{
    memset(o, 0, sizeof *o);
    o->loss.w_att = o->loss.w_hidden = o->loss.w_pred = 1.0;
    o->loss.temperature = 1.0;
    o->loss.dropout = 1;
    o->loss.seed = 42;
    o->head = TB_HEAD_TINYBERT;
    tb_adam_options_default(&o->adam);
    o->keep = 2;
    o->credit = 4;
    o->progress = TB_PROGRESS_AUTO;
    o->dev_kind = TB_TM_KIND_COUNT;
    tb_distill_opts_for_mode(o, TB_DISTILL_GENERAL);
}

void tb_distill_opts_for_mode(tb_distill_opts *o, tb_distill_mode mode)
{
    o->loss.mode = mode;
    o->adam.lr = mode == TB_DISTILL_TASK_STAGE2 ? 3e-5 : 5e-5;
    o->adam.schedule = mode == TB_DISTILL_TASK_STAGE1 ? TB_SCHEDULE_CONSTANT : TB_SCHEDULE_WARMUP_LINEAR;
}

/* ---- the stage: hooks of the training loop (tb/train/trainer.h) ------------------------------- */

typedef struct run_state {
    const tb_distill_opts *o;
    tb_bert_config cfg;
    int have_request;           /* cfg and req are set */
    tb_features_request req;
    char cfg_hash[TB_FEATURES_HASH_MAX], vocab_hash[TB_FEATURES_HASH_MAX]; /* expected by the request */
    tb_msg hello;
    char consumer_id[64];
    char resume_path[PATH_N];   /* "" : fresh start */
    double outage;              /* deadline of the current emitter outage (0: none) */
    int replaying;              /* re-reading from message 0 after a producer restart */
} run_state;

/* snprintf for paths: TB_EINVAL when the result does not fit. */
static int pathf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pathf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= n) return TB_ERR(TB_EINVAL, "path too long (limit %zu bytes): %s...", n, buf);
    return TB_OK;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* The vocabulary copied into the checkpoints: --vocab, else the init checkpoint's (if any). */
static int vocab_source(const tb_distill_opts *o, char *out, size_t n)
{
    int rc = TB_OK;
    char dir[PATH_N];
    out[0] = 0;
    if (o->vocab_path) {
        TB_TRY(pathf(out, n, "%s", o->vocab_path));
    } else if (o->init_path) {
        if (tb_checkpoint_resolve(o->init_path, dir, sizeof dir) == TB_OK) {
            TB_TRY(pathf(out, n, "%s/%s", dir, TB_CKPT_VOCAB));
            if (!file_exists(out)) out[0] = 0;
        } else {
            tb_err_clear();
        }
    }
error:
    return rc;
}

/* The student's vocabulary (`vocab`, from vocab_source) is the one its batches and features must
 * carry: its hash goes into the request (checked by the emitter at the hello and on every
 * message) and into the dev evaluation. An explicit expected hash must agree with it. */
static int student_vocab(const char *vocab, char hash[TB_FEATURES_HASH_MAX])
{
    int rc = TB_OK;
    char vh[TB_FEATURES_HASH_MAX];
    tb_vocab v = {0};
    if (!vocab[0]) return TB_OK;
    TB_TRY(tb_vocab_load(&v, vocab));
    tb_vocab_hash_str(&v, vh, sizeof vh);
    TB_CHECK(!hash[0] || !strcmp(hash, vh), TB_EINVAL,
             "the student's vocabulary %s (%s) is not the expected vocabulary %s: give the vocab.txt the teacher "
             "and the data were made with", vocab, vh, hash);
    snprintf(hash, TB_FEATURES_HASH_MAX, "%s", vh);
error:
    tb_vocab_free(&v);
    return rc;
}

/* Student configuration before the stream opens: from the resume checkpoint, the init checkpoint
 * or config.json; and the request it sends. */
static int make_request(run_state *s)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    if (s->resume_path[0]) {
        TB_TRY(tb_checkpoint_load_config(s->resume_path, TB_CKPT_ANY_HEAD, &s->cfg));
    } else if (o->init_path) {
        TB_TRY(tb_checkpoint_load_config(o->init_path, TB_CKPT_ANY_HEAD, &s->cfg));
    } else {
        TB_CHECK(o->config_path, TB_EINVAL, "give the student: --init CHECKPOINT or --config config.json (random)");
        TB_TRY(tb_config_load(o->config_path, &s->cfg));
    }
    TB_TRY(tb_distill_request(o->loss.mode, &s->cfg, s->cfg_hash, s->vocab_hash, &s->req));
    s->have_request = 1;
error:
    return rc;
}

/* hooks.open_input: the hello with the request, this student's id, credit and manual acks. */
static int hook_open_input(void *ctx, uint64_t from, tb_stream_opts *so)
{
    int rc = TB_OK;
    run_state *s = ctx;
    const tb_distill_opts *o = s->o;
    (void)from;
    if (!s->have_request) TB_TRY(make_request(s));
    tb_msg_free(&s->hello);
    tb_msg_init(&s->hello);
    TB_TRY(tb_features_request_to_hello(&s->req, &s->hello));
    TB_TRY(tb_msg_set_str(&s->hello, "student.mode", tb_distill_mode_name(o->loss.mode)));
    if (o->consumer_id)
        snprintf(s->consumer_id, sizeof s->consumer_id, "%s", o->consumer_id);
    else
        snprintf(s->consumer_id, sizeof s->consumer_id, "student-%ld", (long)getpid());
    so->consumer_id = o->consumer_id ? o->consumer_id : s->consumer_id;
    if (o->credit > 0) so->credit = o->credit;
    if (o->peer_timeout_ms > 0) so->peer_timeout_ms = o->peer_timeout_ms;
    so->hello = &s->hello;
    so->manual_ack = 1; /* a message is acknowledged once a checkpoint holds it */
error:
    return rc;
}

/* Validates message `msg` against the request; pins the teacher's hashes at the first one. */
static int view_message(run_state *s, const tb_msg *msg, tb_features_view *v)
{
    int rc = TB_OK;
    TB_TRY(tb_features_view_init(v, msg, &s->req));
    if (!s->req.expect_config_hash[0]) {
        snprintf(s->req.expect_config_hash, TB_FEATURES_HASH_MAX, "%s", v->meta.config_hash);
        TB_INFO("teacher config %s", v->meta.config_hash);
    }
    if (!s->req.expect_vocab_hash[0] && v->meta.vocab_hash[0])
        snprintf(s->req.expect_vocab_hash, TB_FEATURES_HASH_MAX, "%s", v->meta.vocab_hash);
error:
    return rc;
}

/* The message's sequence number must be `want`, the next one the student trains on. */
static int check_seq(const tb_msg *msg, uint64_t want)
{
    int rc = TB_OK;
    int64_t v = 0;
    TB_TRY(tb_msg_get_int(msg, "seq", &v));
    TB_CHECK(v >= 0, TB_EFORMAT, "message sequence number %lld is negative", (long long)v);
    TB_CHECK((uint64_t)v == want, TB_EPEER, "expected message %llu, got %lld: the stream skipped or repeated a message",
             (unsigned long long)want, (long long)v);
error:
    return rc;
}

/* Completes the configuration from the teacher's metadata and builds the student `m`. */
static int build_model(run_state *s, const tb_features_meta *meta, tb_bert_model *m)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    tb_bert_config *c = &s->cfg;
    if (!s->resume_path[0]) {
        if (c->fit_size == 0) c->fit_size = meta->hidden_size;
        /* A general student carries a (frozen, random) pooler so that it loads strictly as a
         * Hugging Face BertModel; the task stages train it with the classifier. */
        if (o->loss.mode == TB_DISTILL_GENERAL) c->pooler = 1;
        if (o->loss.mode != TB_DISTILL_GENERAL && c->head == TB_HEAD_NONE) {
            TB_CHECK(meta->num_labels > 0 || o->loss.mode == TB_DISTILL_TASK_STAGE1, TB_EINVAL,
                     "task-stage2 needs a teacher with a classification head (the stream says it has none)");
            if (meta->num_labels > 0) {
                /* The init checkpoint's pooler, if it has one (a general student's), is kept as
                 * Hugging Face keeps a pre-trained pooler under a new classifier; only the
                 * classifier is new. */
                int pooler_loaded = o->init_path && c->pooler;
                c->head = o->head == TB_HEAD_NONE ? TB_HEAD_TINYBERT : o->head;
                c->num_labels = meta->num_labels;
                TB_INFO("the student gets a %s head with %d outputs: classifier randomly initialised, pooler %s",
                        tb_head_kind_name(c->head), c->num_labels,
                        pooler_loaded ? "loaded from the init checkpoint" : "randomly initialised");
            }
        }
    }
    TB_TRY(tb_distill_check_compat(o->loss.mode, c, meta));
    TB_TRY(tb_bert_init(m, c));
    tb_bert_set_threads(m, o->threads);
    tb_bert_init_random(m, o->loss.seed);
    if (!s->resume_path[0] && o->init_path) { /* a resumed student gets its weights from the loop */
        static const char *const optional[] = {"bert.pooler.", "classifier.", "fit_dense.", NULL};
        TB_TRY(tb_checkpoint_load_params(o->init_path, &m->params, optional));
    }
error:
    return rc;
}

/* hooks.first_message: the student is built for the teacher that sent `msg`, its parameters
 * frozen as the mode says. */
static int hook_first_message(void *ctx, const tb_msg *msg, const char *resume_path, tb_bert_model *m)
{
    int rc = TB_OK;
    run_state *s = ctx;
    tb_features_view v;
    memset(&v, 0, sizeof v);
    (void)resume_path; /* the same as s->resume_path (hooks.resumed) */
    TB_TRY(view_message(s, msg, &v));
    TB_TRY(build_model(s, &v.meta, m));
    TB_TRY(tb_distill_prepare(m, s->o->loss.mode, v.B, v.T));
error:
    tb_features_view_free(&v);
    return rc;
}

/* The loop's loss function: one distillation step on message `seq`. */
static int distill_loss(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out)
{
    int rc = TB_OK;
    run_state *s = ctx;
    const tb_distill_opts *o = s->o;
    tb_features_view v;
    memset(&v, 0, sizeof v);
    TB_TRY(check_seq(msg, seq));
    rc = view_message(s, msg, &v);
    if (rc) {
        tb_err_wrap(rc, "message %llu from %s", (unsigned long long)seq, o->input);
        goto error;
    }
    tb_distill_step_result r;
    memset(&r, 0, sizeof r);
    rc = tb_distill_step(m, &o->loss, msg, &v, seq, &r);
    double bad_value = 0.0;
    const char *bad = rc == TB_EINVAL ? nonfinite_term(o->loss.mode == TB_DISTILL_TASK_STAGE2, &r.parts, &bad_value)
                                      : NULL;
    if (bad) { /* the loop skips or refuses the message (skip_nonfinite), naming the term */
        tb_err_clear();
        rc = TB_OK;
        out->loss = bad_value;
        out->nonfinite_part = bad;
        out->samples = v.B;
        goto error;
    }
    if (rc != TB_OK) goto error;
    out->loss = r.loss;
    out->samples = r.samples;
    out->n_parts = 0;
    out->parts[out->n_parts++] = TB_MI("seq", seq);
    if (o->loss.mode == TB_DISTILL_TASK_STAGE2) {
        out->parts[out->n_parts++] = TB_MF("pred", r.parts.pred);
    } else {
        out->parts[out->n_parts++] = TB_MF("att", r.parts.att);
        out->parts[out->n_parts++] = TB_MF("hidden", r.parts.hidden);
        out->parts[out->n_parts++] = TB_MF("emb", r.parts.emb);
    }
error:
    tb_features_view_free(&v);
    return rc;
}

/* hooks.resumed: the checkpoint must be of this mode; its pinned teacher hashes hold on. */
static int hook_resumed(void *ctx, const char *path, const char *extra_json)
{
    int rc = TB_OK;
    run_state *s = ctx;
    const tb_distill_opts *o = s->o;
    cJSON *extra = NULL;
    TB_TRY(pathf(s->resume_path, sizeof s->resume_path, "%s", path));
    if (extra_json && (extra = cJSON_Parse(extra_json))) {
        const cJSON *md = cJSON_GetObjectItem(extra, "mode"), *ch = cJSON_GetObjectItem(extra, "teacher_config_hash"),
                    *vh = cJSON_GetObjectItem(extra, "vocab_hash");
        TB_CHECK(!cJSON_IsString(md) || !strcmp(md->valuestring, tb_distill_mode_name(o->loss.mode)), TB_EINVAL,
                 "%s is a %s checkpoint; this run is %s: use another output folder", path, md->valuestring,
                 tb_distill_mode_name(o->loss.mode));
        if (cJSON_IsString(ch) && strlen(ch->valuestring) < TB_FEATURES_HASH_MAX) strcpy(s->cfg_hash, ch->valuestring);
        if (cJSON_IsString(vh) && vh->valuestring[0] && strlen(vh->valuestring) < TB_FEATURES_HASH_MAX)
            strcpy(s->vocab_hash, vh->valuestring);
    }
error:
    cJSON_Delete(extra);
    return rc;
}

/* hooks.state_extra: the mode and the teacher's hashes go into every checkpoint. */
static int hook_state_extra(void *ctx, char **json)
{
    int rc = TB_OK;
    run_state *s = ctx;
    cJSON *j = cJSON_CreateObject();
    TB_CHECK(j, TB_ENOMEM, "out of memory");
    cJSON_AddStringToObject(j, "mode", tb_distill_mode_name(s->o->loss.mode));
    cJSON_AddStringToObject(j, "teacher_config_hash", s->req.expect_config_hash);
    cJSON_AddStringToObject(j, "vocab_hash", s->req.expect_vocab_hash);
    *json = cJSON_PrintUnformatted(j);
    TB_CHECK(*json, TB_ENOMEM, "out of memory");
error:
    cJSON_Delete(j);
    return rc;
}

/* hooks.input_failed: the emitter is gone or refuses to resume.
 * A producer that started after this student's checkpoint (a restarted emitter) refuses to resume
 * beyond what it has produced: the student re-reads from message 0 and skips (acknowledges
 * without training) the messages its checkpoint holds - the emitter recomputes them, teacher
 * forwards spent, results unchanged. Otherwise, with emitter_wait_ms, it re-opens the stream at
 * the next message until an emitter answers or the deadline of this outage passes. */
static int hook_input_failed(void *ctx, const tb_trainer_input_failure *f, uint64_t *reopen_at)
{
    run_state *s = ctx;
    const tb_distill_opts *o = s->o;
    if (f->received > 0) s->outage = 0; /* messages came since the last failure: a new outage */
    if (f->why == TB_EPEER && !s->replaying && f->position > 0 && strstr(tb_err_msg(), "were produced so far")) {
        TB_WARN("%s; the emitter started after this student's checkpoint: reading from message 0 and skipping the "
                "%lld messages the checkpoint holds", tb_err_msg(), (long long)f->position);
        tb_err_clear();
        s->replaying = 1;
        *reopen_at = 0;
        return TB_OK;
    }
    if (o->emitter_wait_ms <= 0) return f->why;
    double now = tb_now_s();
    if (s->outage == 0) {
        s->outage = now + o->emitter_wait_ms / 1000.0;
        TB_WARN("the emitter is gone (%s); waiting up to %d ms for one at %s to serve message %lld on", tb_err_msg(),
                o->emitter_wait_ms, o->input, (long long)f->position);
    }
    if (now >= s->outage) return tb_err_wrap(f->why, "no emitter came back within %d ms", o->emitter_wait_ms);
    tb_err_clear();
    s->replaying = 0;
    *reopen_at = (uint64_t)f->position;
    return TB_OK;
}

/* ---- check mode ------------------------------------------------------------------------------- */

static int write_check(const tb_distill_opts *o, const tb_bert_model *m, const tb_msg *msg,
                       const tb_distill_step_result *r)
{
    int rc = TB_OK;
    char path[PATH_N];
    tb_outfile out = {0};
    tb_st_item *items = NULL;
    char **names = NULL;
    int n = 0;
    const tb_param_table *p = &m->params;
    if (mkdir(o->check_dir, 0777) != 0 && errno != EEXIST)
        TB_CHECK(0, TB_EIO, "cannot create %s: %s", o->check_dir, strerror(errno));
    items = calloc((size_t)p->count + 4, sizeof *items);
    names = calloc((size_t)p->count, sizeof *names);
    TB_CHECK(items && names, TB_ENOMEM, "out of memory");
    static const char *const inputs[] = {"input_ids", "token_type_ids", "attention_mask", "labels"};
    for (int i = 0; i < 4; i++) {
        const tb_tensor *t;
        TB_TRY(tb_msg_get_tensor(msg, inputs[i], &t));
        items[n].name = inputs[i];
        items[n++].tensor = t;
    }
    for (int i = 0; i < p->count; i++) {
        if (!p->items[i].trainable) continue;
        size_t len = strlen(p->items[i].name) + 6;
        names[i] = malloc(len);
        TB_CHECK(names[i], TB_ENOMEM, "out of memory");
        snprintf(names[i], len, "grad/%s", p->items[i].name);
        items[n].name = names[i];
        items[n++].tensor = &p->items[i].grad;
    }
    TB_TRY(pathf(path, sizeof path, "%s/grads.safetensors", o->check_dir));
    tb_st_meta meta[] = {{"mode", (char *)tb_distill_mode_name(o->loss.mode)}};
    TB_TRY(tb_st_write(path, items, n, meta, 1));
    TB_TRY(pathf(path, sizeof path, "%s/losses.json", o->check_dir));
    TB_TRY(tb_outfile_open(&out, path));
    fprintf(out.f,
            "{\"mode\":\"%s\",\"loss\":%.17g,\"att\":%.17g,\"hidden\":%.17g,\"emb\":%.17g,\"pred\":%.17g,"
            "\"w_att\":%.17g,\"w_hidden\":%.17g,\"w_pred\":%.17g,\"temperature\":%.17g,\"dropout\":%s,"
            "\"step\":0}\n",
            tb_distill_mode_name(o->loss.mode), r->loss, r->parts.att, r->parts.hidden, r->parts.emb, r->parts.pred,
            o->loss.w_att, o->loss.w_hidden, o->loss.w_pred, o->loss.temperature, o->loss.dropout ? "true" : "false");
    TB_TRY(tb_outfile_commit(&out));
    TB_INFO("check: losses and gradients written to %s", o->check_dir);
error:
    tb_outfile_abort(&out);
    if (names)
        for (int i = 0; i < p->count; i++) free(names[i]);
    free(names);
    free(items);
    return rc;
}

/* Check mode: the losses and gradients of the first message (no update), then the stream is
 * drained to its end so the producer finishes. */
static int run_check(run_state *s, tb_distill_result *res)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    tb_stream *in = NULL;
    tb_bert_model m = {0};
    tb_msg msg;
    tb_msg_init(&msg);
    tb_stream_opts so;
    tb_stream_opts_default(&so);
    tb_runfolder_lock lock = {.fd = -1};
    TB_TRY(tb_runfolder_lock_take(&lock, o->check_dir, "tb-distill --check")); /* one writer of the folder */
    TB_TRY(hook_open_input(s, 0, &so));
    TB_TRY(tb_stream_open(&in, o->input, TB_STREAM_READ, &so));
    int timeout = o->recv_timeout_ms > 0 ? o->recv_timeout_ms : -1;
    rc = tb_stream_recv(in, &msg, timeout);
    if (rc == TB_EEND) rc = TB_ERR(TB_EINVAL, "check mode: %s holds no message", o->input);
    if (rc != TB_OK) {
        if (rc != TB_EINTR) tb_err_wrap(rc, "reading teacher features from %s", o->input);
        goto error;
    }
    TB_TRY(check_seq(&msg, 0));
    TB_TRY(hook_first_message(s, &msg, "", &m));
    tb_trainer_loss l;
    memset(&l, 0, sizeof l);
    tb_features_view v;
    memset(&v, 0, sizeof v);
    rc = view_message(s, &msg, &v);
    tb_distill_step_result r;
    if (rc == TB_OK) rc = tb_distill_step(&m, &o->loss, &msg, &v, 0, &r);
    tb_features_view_free(&v);
    if (rc != TB_OK) goto error;
    TB_CHECK(isfinite(r.loss), TB_EINVAL, "the loss of message 0 is %g: check the data", r.loss);
    TB_TRY(write_check(o, &m, &msg, &r));
    res->last_loss = r.loss;
    TB_TRY(tb_stream_ack(in, 0));
    for (;;) {
        tb_msg_free(&msg);
        rc = tb_stream_recv(in, &msg, timeout);
        if (rc == TB_EEND) {
            rc = TB_OK;
            break;
        }
        if (rc != TB_OK) {
            if (rc != TB_EINTR) tb_err_wrap(rc, "reading teacher features from %s", o->input);
            goto error;
        }
    }
error:
    tb_msg_free(&msg);
    tb_stream_close(in);
    tb_bert_free(&m);
    tb_runfolder_unlock(&lock);
    return rc;
}

/* ---- the whole stage ---------------------------------------------------------------------------- */

static int check_opts(const tb_distill_opts *o)
{
    int rc = TB_OK;
    TB_CHECK(o->input, TB_EINVAL, "give the teacher-feature stream (--input)");
    TB_CHECK(o->out_dir || o->check_dir, TB_EINVAL, "give the output folder (--output)");
    TB_CHECK(o->init_path || o->config_path || o->resume, TB_EINVAL,
             "give the student: --init CHECKPOINT or --config config.json (random, seeded by --seed)");
    TB_CHECK(o->loss.w_att >= 0 && o->loss.w_hidden >= 0 && o->loss.w_pred >= 0, TB_EINVAL,
             "loss weights must be >= 0 (att %g, hidden %g, pred %g)", o->loss.w_att, o->loss.w_hidden, o->loss.w_pred);
    TB_CHECK(o->loss.temperature > 0, TB_EINVAL, "temperature must be > 0, got %g", o->loss.temperature);
    TB_CHECK(o->keep >= 1, TB_EINVAL, "checkpoints to keep must be >= 1, got %d", o->keep);
    TB_CHECK(o->save_every >= 0 && o->eval_every >= 0 && o->max_steps >= 0, TB_EINVAL,
             "save/eval intervals and max steps must be >= 0");
    TB_CHECK(!o->dev_input || o->loss.mode == TB_DISTILL_TASK_STAGE2, TB_EINVAL,
             "a dev stream is evaluated in task-stage2 only (stage 1 and general keep every interval checkpoint)");
error:
    return rc;
}

/* The loop's options for this stage. */
static void trainer_opts(const tb_distill_opts *o, run_state *s, const char *vocab, tb_eval_opts *eo,
                         tb_trainer_opts *t)
{
    tb_trainer_opts_default(t);
    t->stage = "tb-distill";
    t->input = o->input;
    t->input_what = "teacher features";
    t->epochs = 1;
    t->max_steps = o->max_steps;
    /* the schedule is --total-steps long, else as long as the input (a file's END count, or the
     * count tb-emit announces for its stream), capped by --max-steps */
    t->total_steps = o->total_steps > 0 ? o->total_steps : 0;
    t->adam = o->adam;
    t->out_dir = o->out_dir;
    t->save_every = o->save_every;
    t->keep = o->keep;
    t->keep_all = o->loss.mode != TB_DISTILL_TASK_STAGE2; /* general, stage 1: every checkpoint, as the reference */
    t->eval_every = o->eval_every;
    t->metrics_path = o->metrics_path;
    t->progress = o->progress;
    t->plot_path = o->plot_path;
    t->plot_title = tb_distill_mode_name(o->loss.mode);
    t->vocab_path = vocab[0] ? vocab : NULL;
    t->seed = o->loss.seed;
    t->resume = o->resume;
    t->overwrite = o->overwrite;
    t->skip_nonfinite = o->skip_nonfinite;
    t->recv_timeout_ms = o->recv_timeout_ms;
    t->loss = distill_loss;
    t->loss_ctx = s;
    if (o->loss.mode == TB_DISTILL_TASK_STAGE2 && o->dev_input) {
        tb_eval_opts_default(eo);
        eo->input = o->dev_input;
        eo->kind = o->dev_kind;
        eo->arena_mode = TB_BERT_TRAIN; /* reuse the training arena */
        eo->recv_timeout_ms = o->recv_timeout_ms;
        eo->expect_vocab_hash = s->req.expect_vocab_hash; /* the student's, or pinned at the first message */
        eo->vocab_from = "the student's vocabulary";
        t->eval = tb_trainer_eval_stream;
        t->eval_ctx = eo;
    }
    t->hooks = (tb_trainer_hooks){.ctx = s,
                                  .open_input = hook_open_input,
                                  .first_message = hook_first_message,
                                  .resumed = hook_resumed,
                                  .state_extra = hook_state_extra,
                                  .input_failed = hook_input_failed};
}

int tb_distill_run(const tb_distill_opts *o, tb_distill_result *res)
{
    int rc = TB_OK;
    run_state s;
    tb_bert_model m = {0};
    memset(&s, 0, sizeof s);
    tb_msg_init(&s.hello);
    TB_CHECK(o && res, TB_EINVAL, "tb_distill_run: options and result are required");
    memset(res, 0, sizeof *res);
    res->best_metric = NAN;
    res->best_step = -1;
    s.o = o;
    TB_TRY(check_opts(o));
    const tb_path_arg outs[] = {{"metrics", o->metrics_path}, {"plot", o->plot_path}},
                      ins[] = {{"input", o->input}, {"dev", o->dev_input}, {"vocab", o->vocab_path},
                               {"config", o->config_path}};
    TB_TRY(tb_output_check(outs, 2, ins, 4)); /* a metrics or plot file over an input */
    TB_CHECK(!o->expect_config_hash || strlen(o->expect_config_hash) < TB_FEATURES_HASH_MAX, TB_EINVAL,
             "expected teacher config hash '%s' is too long", o->expect_config_hash);
    TB_CHECK(!o->expect_vocab_hash || strlen(o->expect_vocab_hash) < TB_FEATURES_HASH_MAX, TB_EINVAL,
             "expected vocabulary hash '%s' is too long", o->expect_vocab_hash);
    if (o->expect_config_hash) snprintf(s.cfg_hash, sizeof s.cfg_hash, "%s", o->expect_config_hash);
    if (o->expect_vocab_hash) snprintf(s.vocab_hash, sizeof s.vocab_hash, "%s", o->expect_vocab_hash);
    char vocab[PATH_N];
    TB_TRY(vocab_source(o, vocab, sizeof vocab));
    TB_TRY(student_vocab(vocab, s.vocab_hash));
    if (o->dev_input && !tb_trainer_is_live(o->dev_input)) /* before training, not at the first evaluation */
        TB_TRY(tb_batch_file_check_vocab(o->dev_input, s.vocab_hash, "the student's vocabulary"));
    if (o->check_dir) {
        rc = run_check(&s, res);
        goto error;
    }
    tb_trainer_opts t;
    tb_eval_opts eo;
    trainer_opts(o, &s, vocab, &eo, &t);
    tb_trainer_result tr;
    memset(&tr, 0, sizeof tr);
    rc = tb_trainer_run(&t, &m, &tr);
    res->steps = tr.steps;
    res->messages = tr.messages;
    res->last_loss = tr.last_loss;
    res->interrupted = tr.interrupted;
    res->best_metric = tr.best_metric;
    res->best_step = tr.best_step;
    res->skipped = tr.skipped;
    snprintf(res->last_checkpoint, sizeof res->last_checkpoint, "%s", tr.last_checkpoint);
error:
    tb_msg_free(&s.hello);
    tb_bert_free(&m);
    return rc;
}
