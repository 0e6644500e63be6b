/* distill.c - tb-distill: a student trained on teacher-feature messages (see stages/distill/distill.h). */
#include "distill.h"

#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/text/dataset.h"
#include "tb/base/error.h"
#include "tb/train/evaluate.h"
#include "tb/base/log.h"
#include "tb/base/metrics.h"
#include "tb/base/plot.h"
#include "tb/store/safetensors.h"
#include "tb/base/signals.h"
#include "tb/wire/stream.h"
#include "tb/train/taskmetrics.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* ---- the stage ---------------------------------------------------------------------------------- */

typedef struct run_state {
    const tb_distill_opts *o;
    tb_distill_result *res;
    tb_bert_model m;
    int have_model;
    tb_bert_config cfg;
    tb_adam adam;
    int have_adam;
    tb_features_request req;
    tb_msg hello;
    tb_stream *in;
    tb_metrics metrics, extra_metrics;
    tb_progress prog;
    int have_prog;
    char metrics_file[PATH_N];
    char vocab[PATH_N];         /* "" : none */
    int64_t saved_step;         /* step of the newest checkpoint (-1: none) */
    int64_t saved_messages;     /* messages the newest checkpoint holds */
    int64_t evaluated_step;
    int64_t t_total;
    char resume_path[PATH_N];   /* "" : fresh start */
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

static int copy_file(const char *from, const char *to)
{
    int rc = TB_OK;
    char tmp[PATH_N];
    FILE *in = NULL, *out = NULL;
    char buf[65536];
    TB_TRY(pathf(tmp, sizeof tmp, "%s.tmp", to));
    in = fopen(from, "rb");
    TB_CHECK(in, TB_EIO, "cannot read %s: %s", from, strerror(errno));
    out = fopen(tmp, "wb");
    TB_CHECK(out, TB_EIO, "cannot write %s: %s", tmp, strerror(errno));
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) TB_CHECK(fwrite(buf, 1, n, out) == n, TB_EIO, "writing %s failed", tmp);
    TB_CHECK(!ferror(in), TB_EIO, "reading %s failed", from);
    int closed = fclose(out);
    out = NULL;
    TB_CHECK(closed == 0, TB_EIO, "closing %s failed: %s", tmp, strerror(errno));
    TB_CHECK(rename(tmp, to) == 0, TB_EIO, "cannot rename %s to %s: %s", tmp, to, strerror(errno));
error:
    if (in) fclose(in);
    if (out) fclose(out);
    return rc;
}

/* Removes a checkpoint folder (it holds files only). */
static int remove_flat_dir(const char *dir)
{
    int rc = TB_OK;
    DIR *d = opendir(dir);
    TB_CHECK(d, TB_EIO, "cannot open %s to remove it: %s", dir, strerror(errno));
    struct dirent *e;
    char p[PATH_N];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (pathf(p, sizeof p, "%s/%s", dir, e->d_name) != TB_OK || unlink(p) != 0) {
            rc = TB_ERR(TB_EIO, "cannot remove %s from %s: %s", e->d_name, dir, strerror(errno));
            break;
        }
    }
    closedir(d);
    if (rc == TB_OK && rmdir(dir) != 0) rc = TB_ERR(TB_EIO, "cannot remove %s: %s", dir, strerror(errno));
error:
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Keeps the newest `keep` step-N folders of `dir` (and always step `protect`). */
static int prune(const char *dir, int keep, int64_t protect)
{
    int rc = TB_OK;
    int64_t *steps = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir(dir);
    TB_CHECK(d, TB_EIO, "cannot list %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "step-%lld%c", &s, &tail) != 1) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *ns = realloc(steps, (size_t)cap * sizeof *steps);
            if (!ns) {
                closedir(d);
                TB_CHECK(0, TB_ENOMEM, "out of memory listing %s", dir);
            }
            steps = ns;
        }
        steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_i64);
    for (int i = 0; i + keep < n; i++) {
        if (steps[i] == protect) continue;
        char p[PATH_N];
        TB_TRY(pathf(p, sizeof p, "%s/step-%lld", dir, (long long)steps[i]));
        TB_TRY(remove_flat_dir(p));
    }
error:
    free(steps);
    return rc;
}

static int extra_json(run_state *s, char **out)
{
    int rc = TB_OK;
    cJSON *j = cJSON_CreateObject();
    TB_CHECK(j, TB_ENOMEM, "out of memory");
    cJSON_AddStringToObject(j, "mode", tb_distill_mode_name(s->o->loss.mode));
    cJSON_AddStringToObject(j, "teacher_config_hash", s->req.expect_config_hash);
    cJSON_AddStringToObject(j, "vocab_hash", s->req.expect_vocab_hash);
    if (isfinite(s->res->best_metric)) cJSON_AddNumberToObject(j, "best", s->res->best_metric);
    cJSON_AddNumberToObject(j, "best_step", (double)s->res->best_step);
    *out = cJSON_PrintUnformatted(j);
    TB_CHECK(*out, TB_ENOMEM, "out of memory");
error:
    cJSON_Delete(j);
    return rc;
}

static int write_event(run_state *s, const char *event, int64_t step, const tb_metric *f, int n)
{
    int rc = TB_OK;
    TB_TRY(tb_metrics_write(&s->metrics, event, step, f, n));
    TB_TRY(tb_metrics_write(&s->extra_metrics, event, step, f, n));
error:
    return rc;
}

static int save(run_state *s, const char *reason)
{
    int rc = TB_OK;
    char *extra = NULL, path[PATH_N];
    const tb_distill_opts *o = s->o;
    const int64_t step = s->adam.step;
    if (step == s->saved_step) return TB_OK;
    TB_TRY(extra_json(s, &extra));
    /* A step-N folder newer than the checkpoint this run resumed from was written by a run that
     * died before it moved OUT/latest: nothing acknowledged it, so it is replaced. */
    char old[PATH_N];
    TB_TRY(pathf(old, sizeof old, "%s/step-%lld", o->out_dir, (long long)step));
    if (file_exists(old)) {
        TB_WARN("replacing %s, left by an interrupted run after its last acknowledged checkpoint", old);
        TB_TRY(remove_flat_dir(old));
    }
    tb_train_state st = {.step = step,
                         .seed = o->loss.seed,
                         .rng_position = (uint64_t)s->res->messages,
                         .data_position = (uint64_t)s->res->messages,
                         .extra_json = extra};
    TB_TRY(tb_checkpoint_save(o->out_dir, step, &s->m.config, &s->m.params, &s->adam, &st,
                              s->vocab[0] ? s->vocab : NULL, path, sizeof path));
    s->saved_step = step;
    s->saved_messages = s->res->messages;
    snprintf(s->res->last_checkpoint, sizeof s->res->last_checkpoint, "%s", path);
    /* the update fed by every message up to res->messages - 1 is now safe */
    if (s->res->messages > 0 && s->in) TB_TRY(tb_stream_ack(s->in, (uint64_t)s->res->messages - 1));
    tb_metric f[] = {TB_MS("path", path), TB_MS("reason", reason)};
    TB_TRY(write_event(s, "checkpoint", step, f, 2));
    TB_INFO("checkpoint %s (%s)", path, reason);
    if (o->loss.mode == TB_DISTILL_TASK_STAGE2) TB_TRY(prune(o->out_dir, o->keep, step));
error:
    free(extra);
    return rc;
}

/* Runs the student over the dev stream (tb/train/evaluate.h: dropout off) and computes the task metrics
 * of o->dev_kind (automatic: correlation for a 1-output student, accuracy otherwise). */
static int dev_metrics(run_state *s, tb_taskmetrics_result *out)
{
    int rc = TB_OK;
    tb_eval_opts eo;
    tb_eval_opts_default(&eo);
    eo.input = s->o->dev_input;
    eo.kind = s->o->dev_kind;
    eo.arena_mode = TB_BERT_TRAIN; /* reuse the training arena */
    eo.recv_timeout_ms = s->o->recv_timeout_ms;
    tb_eval_result er;
    rc = tb_evaluate(&s->m, &eo, &er);
    if (rc) {
        tb_err_wrap(rc, "evaluating on %s: ", s->o->dev_input);
        goto error;
    }
    *out = er.metrics;
error:
    return rc;
}

static int evaluate(run_state *s)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    if (o->loss.mode != TB_DISTILL_TASK_STAGE2 || !o->dev_input || s->evaluated_step == s->adam.step) return TB_OK;
    tb_taskmetrics_result er;
    TB_TRY(dev_metrics(s, &er));
    s->evaluated_step = s->adam.step;
    tb_metric f[TB_TM_MAX_FIELDS];
    int n = 0;
    TB_TRY(tb_taskmetrics_fields(&er, f, TB_TM_MAX_FIELDS, &n));
    TB_TRY(write_event(s, "eval", s->adam.step, f, n));
    const char *name = NULL;
    double v = tb_taskmetrics_main(&er, &name);
    TB_INFO("step %lld: dev %s %.4f", (long long)s->adam.step, name ? name : "?", v);
    if (isfinite(v) && (!isfinite(s->res->best_metric) || v > s->res->best_metric)) {
        char dir[PATH_N], path[PATH_N];
        s->res->best_metric = v;
        s->res->best_step = s->adam.step;
        TB_TRY(pathf(dir, sizeof dir, "%s/best", o->out_dir));
        char stepdir[PATH_N];
        TB_TRY(pathf(stepdir, sizeof stepdir, "%s/step-%lld", dir, (long long)s->adam.step));
        if (!file_exists(stepdir))
            TB_TRY(tb_checkpoint_save(dir, s->adam.step, &s->m.config, &s->m.params, NULL, NULL,
                                      s->vocab[0] ? s->vocab : NULL, path, sizeof path));
        TB_TRY(prune(dir, 1, s->adam.step));
        tb_metric c[] = {TB_MS("path", stepdir), TB_MS("reason", "best")};
        TB_TRY(write_event(s, "checkpoint", s->adam.step, c, 2));
    }
error:
    return rc;
}

/* Student configuration before the stream opens: from the resume checkpoint, the init checkpoint
 * or config.json. */
static int load_config(run_state *s)
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
error:
    return rc;
}

/* Completes the configuration from the teacher's metadata and builds the model. */
static int build_model(run_state *s, const tb_features_meta *meta)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    tb_bert_config *c = &s->cfg;
    if (!s->resume_path[0]) {
        if (c->fit_size == 0) c->fit_size = meta->hidden_size;
        if (o->loss.mode != TB_DISTILL_GENERAL && c->head == TB_HEAD_NONE) {
            TB_CHECK(meta->num_labels > 0 || o->loss.mode == TB_DISTILL_TASK_STAGE1, TB_EINVAL,
                     "task-stage2 needs a teacher with a classification head (the stream says it has none)");
            if (meta->num_labels > 0) {
                c->head = o->head == TB_HEAD_NONE ? TB_HEAD_TINYBERT : o->head;
                c->num_labels = meta->num_labels;
                TB_INFO("the student gets a %s head with %d outputs (randomly initialised)", tb_head_kind_name(c->head),
                        c->num_labels);
            }
        }
    }
    TB_TRY(tb_distill_check_compat(o->loss.mode, c, meta));
    TB_TRY(tb_bert_init(&s->m, c));
    s->have_model = 1;
    tb_bert_set_threads(&s->m, o->threads);
    tb_bert_init_random(&s->m, o->loss.seed);
    if (s->resume_path[0]) {
        TB_TRY(tb_checkpoint_load_params(s->resume_path, &s->m.params, NULL));
    } else if (o->init_path) {
        static const char *const optional[] = {"bert.pooler.", "classifier.", "fit_dense.", NULL};
        TB_TRY(tb_checkpoint_load_params(o->init_path, &s->m.params, optional));
    }
error:
    return rc;
}

static int setup_optimizer(run_state *s, int B, int T)
{
    int rc = TB_OK;
    tb_train_state st;
    memset(&st, 0, sizeof st);
    TB_TRY(tb_distill_prepare(&s->m, s->o->loss.mode, B, T));
    tb_adam_options ao = s->o->adam;
    ao.t_total = s->t_total;
    TB_TRY(tb_adam_init(&s->adam, &s->m.params, &ao));
    s->have_adam = 1;
    if (s->resume_path[0]) {
        TB_TRY(tb_checkpoint_load_state(s->resume_path, &s->m.params, &s->adam, &st));
        s->saved_step = s->adam.step;
        s->res->steps = s->adam.step;
    }
error:
    tb_train_state_free(&st);
    return rc;
}

/* Finds the checkpoint to resume from and reads its position and pinned hashes. */
static int find_resume(run_state *s, char *cfg_hash, char *vocab_hash)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    tb_train_state st;
    cJSON *extra = NULL;
    memset(&st, 0, sizeof st);
    char latest[PATH_N];
    TB_TRY(pathf(latest, sizeof latest, "%s/%s", o->out_dir, TB_CKPT_LATEST));
    TB_CHECK(o->resume || !file_exists(latest), TB_EINVAL,
             "%s already holds checkpoints (%s): continue them with --resume, or write to another folder",
             o->out_dir, latest);
    if (!o->resume || !file_exists(latest)) {
        if (o->resume) TB_WARN("--resume: no checkpoint in %s yet, starting from the beginning", o->out_dir);
        return TB_OK;
    }
    TB_TRY(tb_checkpoint_resolve(o->out_dir, s->resume_path, sizeof s->resume_path));
    TB_TRY(tb_checkpoint_load_state(s->resume_path, NULL, NULL, &st));
    TB_CHECK(st.seed == o->loss.seed, TB_EINVAL,
             "%s was trained with seed %llu, this run has seed %llu: resume with the same seed", s->resume_path,
             (unsigned long long)st.seed, (unsigned long long)o->loss.seed);
    s->res->messages = (int64_t)st.data_position;
    s->saved_messages = (int64_t)st.data_position;
    if (st.extra_json && (extra = cJSON_Parse(st.extra_json))) {
        const cJSON *md = cJSON_GetObjectItem(extra, "mode"), *ch = cJSON_GetObjectItem(extra, "teacher_config_hash"),
                    *vh = cJSON_GetObjectItem(extra, "vocab_hash"), *b = cJSON_GetObjectItem(extra, "best"),
                    *bs = cJSON_GetObjectItem(extra, "best_step");
        TB_CHECK(!cJSON_IsString(md) || !strcmp(md->valuestring, tb_distill_mode_name(o->loss.mode)), TB_EINVAL,
                 "%s is a %s checkpoint; this run is %s: use another output folder", s->resume_path,
                 md->valuestring, tb_distill_mode_name(o->loss.mode));
        if (cJSON_IsString(ch) && strlen(ch->valuestring) < TB_FEATURES_HASH_MAX) strcpy(cfg_hash, ch->valuestring);
        if (cJSON_IsString(vh) && strlen(vh->valuestring) < TB_FEATURES_HASH_MAX) strcpy(vocab_hash, vh->valuestring);
        if (cJSON_IsNumber(b)) s->res->best_metric = b->valuedouble;
        if (cJSON_IsNumber(bs)) s->res->best_step = (int64_t)bs->valuedouble;
    }
    TB_INFO("resuming from %s: step %lld, message %llu", s->resume_path, (long long)st.step,
            (unsigned long long)st.data_position);
error:
    cJSON_Delete(extra);
    tb_train_state_free(&st);
    return rc;
}

/* Opens the feature stream at message `from`. */
static int open_stream(run_state *s, uint64_t from)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    char id[64];
    tb_msg_free(&s->hello);
    tb_msg_init(&s->hello);
    TB_TRY(tb_features_request_to_hello(&s->req, &s->hello));
    TB_TRY(tb_msg_set_str(&s->hello, "student.mode", tb_distill_mode_name(o->loss.mode)));
    tb_stream_opts so;
    tb_stream_opts_default(&so);
    if (o->consumer_id) {
        so.consumer_id = o->consumer_id;
    } else {
        snprintf(id, sizeof id, "student-%ld", (long)getpid());
        so.consumer_id = id;
    }
    if (o->credit > 0) so.credit = o->credit;
    if (o->peer_timeout_ms > 0) so.peer_timeout_ms = o->peer_timeout_ms;
    so.resume_from = from;
    so.hello = &s->hello;
    so.manual_ack = 1;
    TB_TRY(tb_stream_open(&s->in, o->input, TB_STREAM_READ, &so));
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

static int msg_seq(const tb_msg *msg, uint64_t *seq)
{
    int rc = TB_OK;
    int64_t v = 0;
    TB_TRY(tb_msg_get_int(msg, "seq", &v));
    TB_CHECK(v >= 0, TB_EFORMAT, "message sequence number %lld is negative", (long long)v);
    *seq = (uint64_t)v;
error:
    return rc;
}

static int write_check(run_state *s, const tb_msg *msg, const tb_distill_step_result *r)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    char path[PATH_N];
    FILE *f = NULL;
    tb_st_item *items = NULL;
    char **names = NULL;
    int n = 0;
    const tb_param_table *p = &s->m.params;
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
    f = fopen(path, "w");
    TB_CHECK(f, TB_EIO, "cannot write %s: %s", path, strerror(errno));
    fprintf(f,
            "{\"mode\":\"%s\",\"loss\":%.17g,\"att\":%.17g,\"hidden\":%.17g,\"emb\":%.17g,\"pred\":%.17g,"
            "\"w_att\":%.17g,\"w_hidden\":%.17g,\"w_pred\":%.17g,\"temperature\":%.17g,\"dropout\":%s,"
            "\"step\":%lld}\n",
            tb_distill_mode_name(o->loss.mode), r->loss, r->parts.att, r->parts.hidden, r->parts.emb, r->parts.pred,
            o->loss.w_att, o->loss.w_hidden, o->loss.w_pred, o->loss.temperature, o->loss.dropout ? "true" : "false",
            (long long)s->adam.step);
    int closed = fclose(f);
    f = NULL;
    TB_CHECK(closed == 0, TB_EIO, "writing %s failed", path);
    TB_INFO("check: losses and gradients written to %s", o->check_dir);
error:
    if (f) fclose(f);
    if (names)
        for (int i = 0; i < p->count; i++) free(names[i]);
    free(names);
    free(items);
    return rc;
}

/* One training step on `msg`: validation, forward/backward, update, metrics, periodic work. */
static int train_one(run_state *s, const tb_msg *msg, uint64_t seq)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    tb_features_view v;
    memset(&v, 0, sizeof v);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    TB_CHECK(seq == (uint64_t)s->res->messages, TB_EPEER,
             "expected message %lld, got %llu: the stream skipped or repeated a message", (long long)s->res->messages,
             (unsigned long long)seq);
    rc = view_message(s, msg, &v);
    if (rc) {
        tb_err_wrap(rc, "message %llu from %s: ", (unsigned long long)seq, o->input);
        goto error;
    }
    if (!s->have_model) TB_TRY(build_model(s, &v.meta));
    if (!s->have_adam) TB_TRY(setup_optimizer(s, v.B, v.T));
    tb_distill_step_result r;
    TB_TRY(tb_distill_step(&s->m, &o->loss, msg, &v, seq, &r));
    TB_CHECK(isfinite(r.loss), TB_EINVAL,
             "the loss of message %llu is %g: training diverged (lower the learning rate or check the data)",
             (unsigned long long)seq, r.loss);
    if (o->check_dir) {
        TB_TRY(write_check(s, msg, &r));
        s->res->last_loss = r.loss;
        goto error;
    }
    double lr = tb_adam_lr(&s->adam);
    TB_TRY(tb_adam_step(&s->adam, &s->m.params));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    s->res->messages = (int64_t)seq + 1;
    s->res->steps = s->adam.step;
    s->res->last_loss = r.loss;
    tb_metric f[10];
    int n = 0;
    f[n++] = TB_MF("loss", r.loss);
    f[n++] = TB_MF("lr", lr);
    f[n++] = TB_MI("samples", r.samples);
    f[n++] = TB_MF("samples_per_s", dt > 0 ? (double)r.samples / dt : 0.0);
    f[n++] = TB_MI("seq", seq);
    if (o->loss.mode == TB_DISTILL_TASK_STAGE2) {
        f[n++] = TB_MF("pred", r.parts.pred);
    } else {
        f[n++] = TB_MF("att", r.parts.att);
        f[n++] = TB_MF("hidden", r.parts.hidden);
        f[n++] = TB_MF("emb", r.parts.emb);
    }
    TB_TRY(write_event(s, "step", s->adam.step, f, n));
    if (s->have_prog) tb_progress_update(&s->prog, s->adam.step, -1, r.loss, lr);
    if (o->save_every > 0 && s->adam.step % o->save_every == 0) TB_TRY(save(s, "interval"));
    if (o->eval_every > 0 && s->adam.step % o->eval_every == 0) TB_TRY(evaluate(s));
error:
    tb_features_view_free(&v);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The emitter is gone (status `why`): with emitter_wait_ms, re-opens the stream at the next
 * message, until the deadline of this outage passes. */
static int reconnect(run_state *s, int why, double *deadline)
{
    int rc = why;
    const tb_distill_opts *o = s->o;
    if (o->emitter_wait_ms <= 0 || o->check_dir || (why != TB_EPEER && why != TB_ETIMEOUT)) return why;
    double now = now_s();
    if (*deadline == 0) {
        *deadline = now + o->emitter_wait_ms / 1000.0;
        TB_WARN("the emitter is gone (%s); waiting up to %d ms for one at %s to serve message %lld on", tb_err_msg(),
                o->emitter_wait_ms, o->input, (long long)s->res->messages);
    }
    if (now >= *deadline) {
        tb_err_wrap(why, "no emitter came back within %d ms: ", o->emitter_wait_ms);
        return why;
    }
    tb_err_clear();
    tb_stream_close(s->in);
    s->in = NULL;
    TB_TRY(open_stream(s, (uint64_t)s->res->messages));
error:
    return rc;
}

/* A producer that started after this student's checkpoint (a restarted emitter) refuses to resume
 * beyond what it has produced. The student then re-opens the stream from message 0 and skips
 * (acknowledges without training) the messages its checkpoint already holds: the emitter
 * recomputes them - teacher forwards spent, results unchanged. Returns TB_OK when it re-opened. */
static int replay_from_start(run_state *s, int why, int *replaying)
{
    int rc = why;
    if (why != TB_EPEER || *replaying || s->res->messages == 0 || !strstr(tb_err_msg(), "were produced so far"))
        return why;
    TB_WARN("%s; the emitter started after this student's checkpoint: reading from message 0 and skipping the "
            "%lld messages the checkpoint holds", tb_err_msg(), (long long)s->res->messages);
    tb_err_clear();
    *replaying = 1;
    tb_stream_close(s->in);
    s->in = NULL;
    TB_TRY(open_stream(s, 0));
error:
    return rc;
}

static int loop(run_state *s)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    tb_msg msg;
    tb_msg_init(&msg);
    int done_check = 0;
    double outage = 0; /* deadline of the current emitter outage (0: none) */
    int replaying = 0;  /* re-reading from message 0 after a producer restart */
    for (;;) {
        if (!o->check_dir && o->max_steps > 0 && s->res->steps >= o->max_steps) break;
        if (tb_signals_pending()) {
            rc = TB_EINTR;
            break;
        }
        tb_msg_free(&msg);
        rc = tb_stream_recv(s->in, &msg, o->recv_timeout_ms > 0 ? o->recv_timeout_ms : -1);
        if (rc == TB_EEND) {
            rc = TB_OK;
            break;
        }
        if (rc == TB_EPEER && replay_from_start(s, rc, &replaying) == TB_OK) continue;
        if ((rc == TB_EPEER || rc == TB_ETIMEOUT) && reconnect(s, rc, &outage) == TB_OK) {
            replaying = 0;
            continue;
        }
        if (rc != TB_OK) {
            if (rc != TB_EINTR) tb_err_wrap(rc, "reading teacher features from %s: ", o->input);
            break;
        }
        outage = 0;
        if (done_check) continue; /* check mode: drain to the end so the producer finishes */
        uint64_t seq = 0;
        TB_TRY(msg_seq(&msg, &seq));
        if (replaying && seq < (uint64_t)s->res->messages) {
            /* trained on already; acknowledged once a checkpoint holds it */
            if (seq < (uint64_t)s->saved_messages) TB_TRY(tb_stream_ack(s->in, seq));
            continue;
        }
        TB_TRY(train_one(s, &msg, seq));
        if (o->check_dir) {
            done_check = 1;
            TB_TRY(tb_stream_ack(s->in, seq));
        }
    }
    if (o->check_dir && !done_check && rc == TB_OK)
        rc = TB_ERR(TB_EINVAL, "check mode: %s holds no message", o->input);
error:
    tb_msg_free(&msg);
    return rc;
}

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

static int setup_outputs(run_state *s)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    char src[PATH_N] = "";
    if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST)
        TB_CHECK(0, TB_EIO, "cannot create the output folder %s: %s", o->out_dir, strerror(errno));
    TB_TRY(tb_checkpoint_clean_tmp(o->out_dir));
    if (o->vocab_path) {
        snprintf(src, sizeof src, "%s", o->vocab_path);
    } else if (o->init_path) {
        char dir[PATH_N];
        if (tb_checkpoint_resolve(o->init_path, dir, sizeof dir) == TB_OK) {
            TB_TRY(pathf(src, sizeof src, "%s/%s", dir, TB_CKPT_VOCAB));
            if (!file_exists(src)) src[0] = 0;
        } else {
            tb_err_clear();
        }
    }
    TB_TRY(pathf(s->vocab, sizeof s->vocab, "%s/%s", o->out_dir, TB_CKPT_VOCAB));
    if (src[0]) TB_TRY(copy_file(src, s->vocab));
    if (!file_exists(s->vocab)) s->vocab[0] = 0;
    TB_TRY(pathf(s->metrics_file, sizeof s->metrics_file, "%s/metrics.jsonl", o->out_dir));
    TB_TRY(tb_metrics_open(&s->metrics, "tb-distill", s->metrics_file));
    TB_TRY(tb_metrics_open(&s->extra_metrics, "tb-distill", o->metrics_path));
error:
    return rc;
}

static void draw_plot(run_state *s)
{
    const char *out = s->o->plot_path;
    char def[PATH_N];
    if (out && !*out) return;
    if (!out) {
        if (pathf(def, sizeof def, "%s/loss.png", s->o->out_dir) != TB_OK) return;
        out = def;
    }
    tb_plot_opts po;
    memset(&po, 0, sizeof po);
    po.stage = "tb-distill";
    po.title = tb_distill_mode_name(s->o->loss.mode);
    if (tb_plot_metrics(s->metrics_file, out, &po) != TB_OK)
        TB_WARN("no loss plot: %s", tb_err_msg());
    else
        TB_INFO("loss plot %s", out);
}

static int run_stage(run_state *s)
{
    int rc = TB_OK;
    const tb_distill_opts *o = s->o;
    char cfg_hash[TB_FEATURES_HASH_MAX] = "", vocab_hash[TB_FEATURES_HASH_MAX] = "";
    if (o->expect_config_hash) snprintf(cfg_hash, sizeof cfg_hash, "%s", o->expect_config_hash);
    if (o->expect_vocab_hash) snprintf(vocab_hash, sizeof vocab_hash, "%s", o->expect_vocab_hash);
    if (!o->check_dir) {
        TB_TRY(setup_outputs(s));
        TB_TRY(find_resume(s, cfg_hash, vocab_hash));
    }
    TB_TRY(load_config(s));
    TB_TRY(tb_distill_request(o->loss.mode, &s->cfg, cfg_hash, vocab_hash, &s->req));
    s->t_total = o->total_steps > 0 ? o->total_steps : (o->max_steps > 0 ? o->max_steps : -1);
    TB_CHECK(o->check_dir || s->t_total > 0 || o->adam.schedule == TB_SCHEDULE_CONSTANT, TB_EINVAL,
             "the %s schedule needs the number of steps: give --total-steps (or --max-steps)",
             tb_lr_schedule_name(o->adam.schedule));
    TB_TRY(open_stream(s, (uint64_t)s->res->messages));
    if (!o->check_dir) {
        TB_TRY(tb_progress_init(&s->prog, stderr, o->progress, "tb-distill", s->t_total, 0));
        s->have_prog = 1;
    }
    int lrc = loop(s);
    if (o->check_dir || !s->have_adam) {
        rc = lrc;
        if (rc == TB_OK && !s->have_adam && !o->check_dir)
            rc = TB_ERR(TB_EINVAL, "%s held no message to train on", o->input);
        goto error;
    }
    if (lrc == TB_EPEER || lrc == TB_ETIMEOUT) {
        /* the emitter is gone: keep what was learnt since the last checkpoint (no stream left to
         * acknowledge to; a resumed run continues from here) */
        char why[1024];
        snprintf(why, sizeof why, "%s", tb_err_msg());
        tb_stream_close(s->in);
        s->in = NULL;
        if (save(s, "error") != TB_OK) TB_WARN("no checkpoint after the stream failed: %s", tb_err_msg());
        rc = TB_ERR(lrc, "%s", why);
        goto error;
    }
    if (lrc != TB_OK && lrc != TB_EINTR) {
        rc = lrc;
        goto error;
    }
    TB_TRY(save(s, lrc == TB_EINTR ? "signal" : "end"));
    if (lrc == TB_EINTR) {
        s->res->interrupted = 1;
        rc = TB_ERR(TB_EINTR, "interrupted at step %lld; the checkpoint %s resumes it (--resume)",
                    (long long)s->adam.step, s->res->last_checkpoint);
        goto error;
    }
    TB_TRY(evaluate(s));
    if (s->have_prog) tb_progress_finish(&s->prog);
    draw_plot(s);
error:
    return rc;
}

int tb_distill_run(const tb_distill_opts *o, tb_distill_result *res)
{
    int rc = TB_OK;
    run_state s;
    memset(&s, 0, sizeof s);
    TB_CHECK(o && res, TB_EINVAL, "tb_distill_run: options and result are required");
    memset(res, 0, sizeof *res);
    res->best_metric = NAN;
    res->best_step = -1;
    s.o = o;
    s.res = res;
    s.saved_step = -1;
    s.evaluated_step = -1;
    TB_TRY(check_opts(o));
    rc = run_stage(&s);
error:
    if (s.have_prog) tb_progress_free(&s.prog);
    tb_stream_close(s.in);
    tb_msg_free(&s.hello);
    tb_metrics_close(&s.metrics);
    tb_metrics_close(&s.extra_metrics);
    if (s.have_adam) tb_adam_free(&s.adam);
    if (s.have_model) tb_bert_free(&s.m);
    return rc;
}
