/* trainer.c - the training loop of tb-finetune and tb-distill; see tb/train/trainer.h. */
#include "tb/train/trainer.h"

#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/store/runfolder.h"
#include "tb/text/dataset.h"
#include "tb/train/evaluate.h"
#include "tb/model/loss.h"
#include "tb/base/clock.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/plot.h"
#include "tb/base/signals.h"
#include "tb/wire/stream.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_N 4096

void tb_trainer_opts_default(tb_trainer_opts *o)
{
    memset(o, 0, sizeof *o);
    o->stage = "tb-trainer";
    o->epochs = 1;
    tb_adam_options_default(&o->adam);
    o->keep = 2;
    o->progress = TB_PROGRESS_AUTO;
}

static int is_live_stream(const char *endpoint)
{
    return strncmp(endpoint, "tcp://", 6) == 0 || strncmp(endpoint, "ipc://", 6) == 0 ||
           strncmp(endpoint, "inproc://", 9) == 0;
}

int tb_trainer_is_live(const char *endpoint)
{
    return endpoint && is_live_stream(endpoint);
}

int tb_trainer_count_messages(const char *endpoint, int64_t *out)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    TB_CHECK(endpoint && out, TB_EINVAL, "tb_trainer_count_messages: endpoint and out are required");
    TB_CHECK(!is_live_stream(endpoint), TB_EINVAL,
             "cannot count the messages of the live stream %s ahead; give the schedule length (total steps)", endpoint);
    TB_TRY(tb_stream_open(&s, endpoint, TB_STREAM_READ, NULL));
    int64_t n = 0;
    for (;;) {
        tb_msg m;
        rc = tb_stream_recv(s, &m, -1);
        if (rc == TB_EEND) break;
        if (rc != TB_OK) goto error;
        tb_msg_free(&m);
        n++;
    }
    rc = TB_OK;
    *out = n;
error:
    tb_stream_close(s);
    return rc;
}

int tb_trainer_latest(const char *out_dir, char *path, size_t n)
{
    int rc = TB_OK;
    char link[PATH_N];
    struct stat st;
    snprintf(link, sizeof link, "%s/%s", out_dir, TB_CKPT_LATEST);
    TB_CHECK(lstat(link, &st) == 0, TB_ENOTFOUND, "no checkpoint in %s (no %s link)", out_dir, TB_CKPT_LATEST);
    TB_TRY(tb_checkpoint_resolve(out_dir, path, n));
error:
    return rc;
}

/* ---- the loop's state ----------------------------------------------------------------------- */

typedef struct trainer {
    const tb_trainer_opts *o;
    const tb_trainer_hooks *h;
    tb_bert_model *m;
    tb_trainer_result *res;
    tb_adam adam;
    int adam_ready;         /* model built, optimiser set up (and the resumed state loaded) */
    tb_metrics own, user;
    tb_progress prog;
    int prog_ready;
    tb_stream *in;
    int live;
    int manual_ack;         /* the input was opened with manual acks: ack after each checkpoint */
    int64_t per_epoch;      /* messages per pass over a file; -1 for a live stream */
    int epoch;
    int64_t t_total;
    int size_pending;       /* live input without a given length: sized from the producer's count */
    int64_t saved_step;     /* step of the last checkpoint written or loaded (-1: none) */
    int64_t saved_messages; /* messages that checkpoint holds */
    int64_t evaluated_step; /* step of the last evaluation (-1: none) */
    int64_t samples_run;    /* examples trained on by this process (progress rate) */
    int64_t received;       /* messages received since the input was (re)opened */
    int64_t skip;           /* messages to drop after a re-open before the position ... */
    uint64_t skip_pos;      /* ... and the stream position of the next one dropped */
    char resume_path[PATH_N]; /* the checkpoint resumed from ("" when none) */
    char dir[PATH_N - 256]; /* where the run writes: out_dir, or OUT/overwrite.new when replacing */
    int replacing;          /* dir is OUT/overwrite.new: the old run is replaced at the end */
    tb_runfolder_lock lock; /* out_dir's, held for the whole run */
    int64_t skipped;        /* batches skipped as non-finite */
    char vocab[PATH_N];     /* OUT/vocab.txt, copied into every checkpoint ("" when none) */
    char metrics_file[PATH_N];
    char best_dir[PATH_N];
} trainer;

static int write_metrics(trainer *t, const char *event, int64_t step, const tb_metric *f, int n)
{
    int rc = TB_OK;
    TB_TRY(tb_metrics_write(&t->own, event, step, f, n));
    TB_TRY(tb_metrics_write(&t->user, event, step, f, n));
error:
    return rc;
}

static int make_dir(const char *dir)
{
    int rc = TB_OK;
    TB_CHECK(mkdir(dir, 0777) == 0 || errno == EEXIST, TB_EIO, "cannot create directory %s: %s", dir, strerror(errno));
error:
    return rc;
}

static int path_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Copies file `from` to `to` (through a temporary name, so `to` appears only when complete). */
static int copy_file(const char *from, const char *to)
{
    int rc = TB_OK;
    char tmp[PATH_N + 8];
    FILE *in = NULL, *out = NULL;
    char buf[65536];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
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

/* vocab_path is copied to OUT/vocab.txt, which every checkpoint then copies: a resumed run
 * keeps the vocabulary without being given it again. */
static int setup_vocab(trainer *t)
{
    int rc = TB_OK;
    snprintf(t->vocab, sizeof t->vocab, "%s/%s", t->dir, TB_CKPT_VOCAB);
    if (t->o->vocab_path) TB_TRY(copy_file(t->o->vocab_path, t->vocab));
    if (!path_exists(t->vocab)) t->vocab[0] = 0;
error:
    return rc;
}

/* Removes a checkpoint folder (files one level deep, then the folder). */
static int remove_checkpoint_dir(const char *path)
{
    int rc = TB_OK;
    DIR *d = opendir(path);
    TB_CHECK(d, TB_EIO, "cannot open %s to remove it: %s", path, strerror(errno));
    struct dirent *e;
    char f[PATH_N];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        if (unlink(f) != 0) TB_WARN("cannot remove %s: %s", f, strerror(errno));
    }
    closedir(d);
    TB_CHECK(rmdir(path) == 0, TB_EIO, "cannot remove %s: %s", path, strerror(errno));
error:
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The highest N of the step-N folders of `dir`, or -1 when there are none. */
static int64_t newest_step(const char *dir)
{
    int64_t top = -1;
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "step-", 5) != 0) continue;
        long long v = strtoll(e->d_name + 5, &end, 10);
        if (*end || end == e->d_name + 5 || v < 0) continue;
        if (v > top) top = v;
    }
    closedir(d);
    return top;
}

/* Keeps the newest `keep` step-N folders of `dir` (N > 0: step-0 is never removed, nor step
 * `protect`, the checkpoint just written). */
static int prune_checkpoints(const char *dir, int keep, int64_t protect)
{
    int rc = TB_OK;
    int64_t *steps = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(dir);
    TB_CHECK(d, TB_EIO, "cannot list %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "step-", 5) != 0) continue;
        long long v = strtoll(e->d_name + 5, &end, 10);
        if (*end || end == e->d_name + 5) continue; /* step-N.tmp and others */
        if (v == 0) continue;                        /* the initial point (save_initial) stays */
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *ns = realloc(steps, cap * sizeof *ns);
            if (!ns) {
                closedir(d);
                TB_CHECK(0, TB_ENOMEM, "out of memory listing %s", dir);
            }
            steps = ns;
        }
        steps[n++] = v;
    }
    closedir(d);
    if (n > 1) qsort(steps, n, sizeof *steps, cmp_i64); /* steps is NULL when n == 0 */
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        if (steps[i] == protect) continue;
        char p[PATH_N];
        snprintf(p, sizeof p, "%s/step-%lld", dir, (long long)steps[i]);
        TB_TRY(remove_checkpoint_dir(p));
    }
error:
    free(steps);
    return rc;
}

/* The checkpoint's extra object: the stage's fields (hooks.state_extra), then the loop's. */
static int state_extra(trainer *t, char **out)
{
    int rc = TB_OK;
    char *stage = NULL;
    cJSON *j = NULL;
    if (t->h->state_extra) {
        TB_TRY(t->h->state_extra(t->h->ctx, &stage));
        j = stage ? cJSON_Parse(stage) : NULL;
        TB_CHECK(cJSON_IsObject(j), TB_EINVAL, "the stage's checkpoint fields are not a JSON object: %s",
                 stage ? stage : "(none)");
    } else {
        j = cJSON_CreateObject();
        TB_CHECK(j, TB_ENOMEM, "out of memory");
    }
    cJSON_AddNumberToObject(j, "epoch", t->epoch);
    if (isfinite(t->res->best_metric))
        cJSON_AddNumberToObject(j, "best", t->res->best_metric);
    else
        cJSON_AddNullToObject(j, "best");
    cJSON_AddNumberToObject(j, "best_step", (double)t->res->best_step);
    cJSON_AddStringToObject(j, "best_metric", t->res->best_metric_name);
    cJSON_AddNumberToObject(j, "skipped_nonfinite", (double)t->skipped);
    *out = cJSON_PrintUnformatted(j);
    TB_CHECK(*out, TB_ENOMEM, "out of memory");
error:
    free(stage);
    cJSON_Delete(j);
    return rc;
}

/* Where checkpoint `path` (under t->dir) ends up: the same path, or, when the run replaces another,
 * the path in out_dir it is moved to at the end (what the metrics lines and results say). */
static void final_path(const trainer *t, const char *path, char *out, size_t n)
{
    size_t k = strlen(t->dir);
    if (t->replacing && strncmp(path, t->dir, k) == 0)
        snprintf(out, n, "%s%s", t->o->out_dir, path + k);
    else
        snprintf(out, n, "%s", path);
}

static int save(trainer *t, const char *reason)
{
    int rc = TB_OK;
    char shown[PATH_N];
    tb_train_state st = {.step = t->res->steps, .seed = t->o->seed, .rng_position = (uint64_t)t->res->messages,
                         .data_position = (uint64_t)t->res->messages};
    char old[PATH_N + 32];
    if (t->saved_step == t->res->steps) return TB_OK;
    TB_TRY(state_extra(t, &st.extra_json));
    /* a step-N folder newer than the checkpoint this run resumed from was written by a run that
     * died before it moved OUT/latest: nothing acknowledged it, so it is replaced */
    snprintf(old, sizeof old, "%s/step-%lld", t->dir, (long long)t->res->steps);
    if (path_exists(old)) {
        TB_WARN("replacing %s, left by an interrupted run after its last checkpoint", old);
        TB_TRY(remove_checkpoint_dir(old));
    }
    TB_TRY(tb_checkpoint_save(t->dir, t->res->steps, &t->m->config, &t->m->params, &t->adam, &st,
                              t->vocab[0] ? t->vocab : NULL, t->res->last_checkpoint, sizeof t->res->last_checkpoint));
    t->saved_step = t->res->steps;
    t->saved_messages = t->res->messages;
    /* the updates fed by every message up to messages - 1 are now safe */
    if (t->manual_ack && t->in && t->res->messages > 0) TB_TRY(tb_stream_ack(t->in, (uint64_t)t->res->messages - 1));
    if (!t->o->keep_all) TB_TRY(prune_checkpoints(t->dir, t->o->keep, t->res->steps));
    final_path(t, t->res->last_checkpoint, shown, sizeof shown);
    TB_TRY(write_metrics(t, "checkpoint", t->res->steps,
                         (tb_metric[]){TB_MS("path", shown), TB_MS("reason", reason)}, 2));
    TB_INFO("checkpoint %s (%s)", t->res->last_checkpoint, reason);
error:
    tb_train_state_free(&st);
    return rc;
}

static int save_best(trainer *t)
{
    int rc = TB_OK;
    TB_TRY(make_dir(t->best_dir));
    TB_TRY(tb_checkpoint_clean_tmp(t->best_dir));
    char sp[PATH_N + 32];
    snprintf(sp, sizeof sp, "%s/step-%lld", t->best_dir, (long long)t->res->steps);
    if (path_exists(sp)) TB_TRY(remove_checkpoint_dir(sp)); /* a resumed run re-evaluating this step */
    TB_TRY(tb_checkpoint_save(t->best_dir, t->res->steps, &t->m->config, &t->m->params, NULL, NULL,
                              t->vocab[0] ? t->vocab : NULL, t->res->best_checkpoint, sizeof t->res->best_checkpoint));
    TB_TRY(prune_checkpoints(t->best_dir, 1, t->res->steps));
    char shown[PATH_N];
    final_path(t, t->res->best_checkpoint, shown, sizeof shown);
    TB_TRY(write_metrics(t, "checkpoint", t->res->steps,
                         (tb_metric[]){TB_MS("path", shown), TB_MS("reason", "best")}, 2));
error:
    return rc;
}

static int evaluate(trainer *t)
{
    int rc = TB_OK;
    if (!t->o->eval || t->evaluated_step == t->res->steps) return TB_OK;
    tb_taskmetrics_result r;
    rc = t->o->eval(t->o->eval_ctx, t->m, &r);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "evaluating at step %lld", (long long)t->res->steps);
        goto error;
    }
    t->evaluated_step = t->res->steps;
    tb_metric f[TB_TM_MAX_FIELDS];
    int n = 0;
    TB_TRY(tb_taskmetrics_fields(&r, f, TB_TM_MAX_FIELDS, &n));
    TB_TRY(write_metrics(t, "eval", t->res->steps, f, n));
    const char *name = NULL;
    double v = tb_taskmetrics_main(&r, &name);
    if (isfinite(t->res->best_metric))
        TB_INFO("step %lld: dev %s %.4f (best %.4f at step %lld)", (long long)t->res->steps, name ? name : "?", v,
                t->res->best_metric, (long long)t->res->best_step);
    else
        TB_INFO("step %lld: dev %s %.4f (first evaluation)", (long long)t->res->steps, name ? name : "?", v);
    /* the first evaluation always gives a best/ (an undefined metric, e.g. the correlation of
     * constant predictions, included), so a run always ends with one; later a finite better value */
    if (t->res->best_step < 0 || (isfinite(v) && (!isfinite(t->res->best_metric) || v > t->res->best_metric))) {
        t->res->best_metric = v;
        t->res->best_step = t->res->steps;
        snprintf(t->res->best_metric_name, sizeof t->res->best_metric_name, "%s", name ? name : "");
        TB_TRY(save_best(t));
    }
error:
    return rc;
}

static int open_input(trainer *t, uint64_t from)
{
    int rc = TB_OK;
    tb_stream_opts so;
    tb_stream_opts_default(&so);
    so.resume_from = from;
    if (t->live && t->o->consumer_id) so.consumer_id = t->o->consumer_id;
    so.manual_ack = t->live && t->o->consumer_id;
    if (t->h->open_input) TB_TRY(t->h->open_input(t->h->ctx, from, &so));
    t->manual_ack = so.manual_ack;
    tb_stream_close(t->in);
    t->in = NULL;
    t->received = 0;
    TB_TRY(tb_stream_open(&t->in, t->o->input, TB_STREAM_READ, &so));
error:
    return rc;
}

/* The input failed with `why`: re-opens it where the input_failed hook says (skipping what was
 * trained on already), or returns the failure. */
static int recover_input(trainer *t, int why)
{
    if (!t->h->input_failed || (why != TB_EPEER && why != TB_ETIMEOUT)) return why;
    tb_trainer_input_failure f = {.why = why, .position = t->res->messages, .received = t->received};
    uint64_t at = 0;
    int rc = t->h->input_failed(t->h->ctx, &f, &at);
    if (rc != TB_OK) return rc;
    TB_CHECK(at <= (uint64_t)t->res->messages, TB_EINVAL,
             "re-opening %s at message %llu would skip messages %lld to %llu", t->o->input, (unsigned long long)at,
             (long long)t->res->messages, (unsigned long long)at - 1);
    TB_TRY(open_input(t, at));
    t->skip = t->res->messages - (int64_t)at;
    t->skip_pos = at;
error:
    return rc;
}

/* Next training message into *msg: TB_OK, TB_EEND after the last epoch, TB_EINTR on a signal. */
static int next_message(trainer *t, tb_msg *msg)
{
    int rc = TB_OK;
    for (;;) {
        rc = tb_stream_recv(t->in, msg, t->o->recv_timeout_ms > 0 ? t->o->recv_timeout_ms : -1);
        if (rc == TB_OK) {
            t->received++;
            if (t->skip == 0) return TB_OK;
            /* trained on already (re-read after a re-open); acknowledged once a checkpoint holds it */
            uint64_t pos = t->skip_pos++;
            t->skip--;
            tb_msg_free(msg);
            if (t->manual_ack && pos < (uint64_t)t->saved_messages) TB_TRY(tb_stream_ack(t->in, pos));
            continue;
        }
        if (rc == TB_EEND && !t->live && t->epoch + 1 < t->o->epochs) {
            t->epoch++;
            TB_TRY(open_input(t, 0));
            continue;
        }
        if (rc == TB_EEND || rc == TB_EINTR) return rc;
        if (recover_input(t, rc) == TB_OK) continue;
        rc = tb_err_wrap(rc, "reading %s from %s", t->o->input_what ? t->o->input_what : "training batches",
                         t->o->input);
        goto error;
    }
error:
    return rc;
}

/* Finds the checkpoint to resume from (the newest of OUT) and takes its position and best so far;
 * its weights and optimiser state are loaded once the model exists (model_ready). */
static int find_resume(trainer *t)
{
    int rc = TB_OK;
    tb_train_state st = {0};
    cJSON *extra = NULL;
    char *path = t->resume_path;
    char link[PATH_N + 16];
    struct stat lst;
    path[0] = 0;
    snprintf(link, sizeof link, "%s/%s", t->dir, TB_CKPT_LATEST);
    if (lstat(link, &lst) != 0) {
        TB_CHECK(errno == ENOENT, TB_EIO, "cannot read %s: %s", link, strerror(errno));
        int64_t newest = newest_step(t->dir);
        TB_CHECK(newest < 0, TB_EINVAL,
                 "%s holds step-%lld but no '%s' link, so which checkpoint to continue is unknown: point it at the "
                 "newest complete one (ln -s step-%lld %s), or start over with --overwrite",
                 t->dir, (long long)newest, TB_CKPT_LATEST, (long long)newest, link);
        TB_INFO("resume: no checkpoint in %s yet, starting from the beginning", t->dir);
        return TB_OK;
    }
    rc = tb_checkpoint_resolve(t->dir, path, sizeof t->resume_path);
    if (rc == TB_OK) rc = tb_checkpoint_load_state(path, NULL, NULL, &st);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "cannot resume from %s (it is broken: not a complete checkpoint); point it at a complete "
                    "step-N folder, or start over with --overwrite", link);
        path[0] = 0;
        goto error;
    }
    TB_CHECK(st.seed == t->o->seed, TB_EINVAL,
             "%s was trained with seed %llu, this run has seed %llu; resume with the same seed", path,
             (unsigned long long)st.seed, (unsigned long long)t->o->seed);
    t->res->steps = st.step;
    t->res->messages = (int64_t)st.data_position;
    t->saved_step = st.step;
    t->saved_messages = t->res->messages;
    if (st.extra_json && (extra = cJSON_Parse(st.extra_json))) {
        const cJSON *b = cJSON_GetObjectItem(extra, "best"), *bs = cJSON_GetObjectItem(extra, "best_step"),
                    *bn = cJSON_GetObjectItem(extra, "best_metric");
        if (cJSON_IsNumber(b)) t->res->best_metric = b->valuedouble;
        if (cJSON_IsNumber(bs)) t->res->best_step = (int64_t)bs->valuedouble;
        if (cJSON_IsString(bn)) snprintf(t->res->best_metric_name, sizeof t->res->best_metric_name, "%s", bn->valuestring);
        const cJSON *sk = cJSON_GetObjectItem(extra, "skipped_nonfinite");
        if (cJSON_IsNumber(sk)) t->skipped = t->res->skipped = (int64_t)sk->valuedouble;
    }
    if (t->h->resumed) TB_TRY(t->h->resumed(t->h->ctx, path, st.extra_json));
    TB_INFO("resuming from %s: step %lld, message %lld", path, (long long)st.step, (long long)st.data_position);
    snprintf(t->res->last_checkpoint, sizeof t->res->last_checkpoint, "%s", path);
error:
    cJSON_Delete(extra);
    tb_train_state_free(&st);
    return rc;
}

/* The model exists: the resumed weights over it, the optimiser and its resumed state. */
static int model_ready(trainer *t)
{
    int rc = TB_OK;
    tb_train_state st = {0};
    if (t->resume_path[0]) TB_TRY(tb_checkpoint_load_params(t->resume_path, &t->m->params, NULL));
    tb_adam_options ao = t->o->adam;
    ao.t_total = t->t_total;
    TB_TRY(tb_adam_init(&t->adam, &t->m->params, &ao));
    t->adam_ready = 1;
    if (t->resume_path[0]) {
        TB_TRY(tb_checkpoint_load_state(t->resume_path, &t->m->params, &t->adam, &st));
        TB_CHECK(t->adam.step == t->res->steps, TB_EFORMAT, "%s: the optimiser is at step %lld, the checkpoint at %lld",
                 t->resume_path, (long long)t->adam.step, (long long)t->res->steps);
    }
error:
    tb_train_state_free(&st);
    return rc;
}

static int plan(trainer *t)
{
    int rc = TB_OK;
    const tb_trainer_opts *o = t->o;
    t->live = is_live_stream(o->input);
    t->per_epoch = -1;
    TB_CHECK(!t->live || o->epochs == 1, TB_EINVAL,
             "%d epochs over the live stream %s: a stream is read once; let its producer send every epoch", o->epochs,
             o->input);
    if (!t->live) {
        TB_TRY(tb_trainer_count_messages(o->input, &t->per_epoch));
        TB_CHECK(t->per_epoch > 0, TB_EINVAL, "%s holds no training batches", o->input);
    }
    TB_CHECK(!(t->live && o->consumer_id) || o->save_every > 0, TB_EINVAL,
             "a consumer id on %s acknowledges batches only at checkpoints: give a checkpoint interval (at most the "
             "producer's retain buffer)", o->input);
    t->t_total = o->total_steps;
    if (t->t_total == 0) {
        if (!t->live) t->t_total = t->per_epoch * o->epochs;
        if (o->max_steps > 0 && (t->t_total <= 0 || o->max_steps < t->t_total)) t->t_total = o->max_steps;
        /* a live stream's length comes with its first message (the producer's announced count) */
        t->size_pending = t->live;
    }
    if (t->t_total <= 0) t->t_total = -1; /* no schedule length: a constant learning rate only */
error:
    return rc;
}

/* The schedule length is known (plan) or, for a live stream, was just announced: a schedule that
 * needs a length and has none is refused. */
static int check_schedule(const trainer *t)
{
    int rc = TB_OK;
    TB_CHECK(t->t_total > 0 || t->o->adam.schedule == TB_SCHEDULE_CONSTANT, TB_EINVAL,
             "the %s schedule needs its length, and the producer of %s announced no message count: give the total "
             "or the maximum steps",
             tb_lr_schedule_name(t->o->adam.schedule), t->o->input);
error:
    return rc;
}

/* A live input's first message is in: the schedule length is the count its producer announced
 * (capped by max_steps), else max_steps as planned. Sets the optimiser's and the progress total. */
static int size_from_stream(trainer *t)
{
    int rc = TB_OK;
    const tb_trainer_opts *o = t->o;
    uint64_t n = 0;
    t->size_pending = 0;
    if (tb_stream_count(t->in, &n) == TB_OK && n > 0) {
        int64_t total = (int64_t)n;
        if (o->max_steps > 0 && o->max_steps < total) total = o->max_steps;
        TB_INFO("%s announced %llu messages: schedule length %lld", o->input, (unsigned long long)n, (long long)total);
        t->t_total = total;
    } else {
        tb_err_clear();
    }
    TB_TRY(check_schedule(t));
    if (t->adam_ready) t->adam.opt.t_total = t->t_total;
    if (t->prog_ready) t->prog.total = o->max_steps > 0 && o->max_steps < t->t_total ? o->max_steps : t->t_total;
    TB_TRY(write_metrics(t, "schedule", t->res->steps,
                         (tb_metric[]){TB_MI("t_total", t->t_total), TB_MI("announced", (int64_t)n)}, 2));
error:
    return rc;
}

static int check_opts(const tb_trainer_opts *o, tb_bert_model *m, tb_trainer_result *res)
{
    int rc = TB_OK;
    TB_CHECK(o && m && res, TB_EINVAL, "tb_trainer_run: options, model and result are required");
    TB_CHECK(o->input && o->out_dir && o->loss, TB_EINVAL, "tb_trainer_run: input, out_dir and loss are required");
    TB_CHECK(o->epochs >= 1, TB_EINVAL, "epochs must be >= 1, got %d", o->epochs);
    TB_CHECK(o->keep_all || o->keep >= 1, TB_EINVAL, "checkpoints to keep must be >= 1, got %d", o->keep);
    TB_CHECK(o->save_every >= 0 && o->eval_every >= 0, TB_EINVAL, "save and eval intervals must be >= 0");
    TB_CHECK(!o->save_initial || !o->hooks.first_message, TB_EINVAL,
             "tb_trainer_run: no initial checkpoint of a model built at the first message");
error:
    return rc;
}

/* Decides where the run writes (t->dir), with out_dir locked: out_dir itself, or OUT/overwrite.new
 * when it replaces another run; refuses a folder holding another run unless resuming or replacing
 * it. A replacement cut short by a crash is completed first. */
static int prepare_dir(trainer *t)
{
    int rc = TB_OK;
    const tb_trainer_opts *o = t->o;
    char what[512], nw[sizeof t->dir], old[sizeof t->dir];
    TB_CHECK(strlen(o->out_dir) + sizeof TB_RUNFOLDER_NEW + 1 < sizeof t->dir, TB_EINVAL,
             "the output folder path %s is too long (at most %zu bytes)", o->out_dir,
             sizeof t->dir - sizeof TB_RUNFOLDER_NEW - 2);
    memcpy(t->dir, o->out_dir, strlen(o->out_dir) + 1);
    memcpy(nw, t->dir, sizeof nw);
    memcpy(old, t->dir, sizeof old);
    strcat(strcat(nw, "/"), TB_RUNFOLDER_NEW);
    strcat(strcat(old, "/"), TB_RUNFOLDER_OLD);
    if (tb_runfolder_replace_pending(o->out_dir)) {
        TB_WARN("%s: completing the replacement of an old run that was cut short", o->out_dir);
        TB_TRY(tb_runfolder_replace(o->out_dir));
    }
    int used = tb_runfolder_used(o->out_dir, what, sizeof what);
    TB_CHECK(used >= 0, TB_EIO, "%s", tb_err_msg());
    if (o->overwrite && used) {
        if (!o->resume) TB_TRY(tb_runfolder_remove_tree(nw)); /* an interrupted replacement's new run */
        TB_TRY(tb_runfolder_remove_tree(old));
        TB_TRY(make_dir(nw));
        memcpy(t->dir, nw, sizeof t->dir);
        t->replacing = 1;
        TB_INFO("%s holds another run (%s): this run writes into %s and replaces it when it ends", o->out_dir, what,
                nw);
        return TB_OK;
    }
    if (o->overwrite) {
        TB_TRY(tb_runfolder_remove_tree(nw)); /* left over from an interrupted replacement */
        TB_TRY(tb_runfolder_remove_tree(old));
    }
    TB_CHECK(o->resume || used != TB_RUNFOLDER_CHECKPOINTS, TB_EINVAL,
             "%s already holds checkpoints of another run (%s): continue that run with --resume, replace it with "
             "--overwrite, or write to another folder",
             o->out_dir, what);
    if (used == TB_RUNFOLDER_OUTPUT && !o->resume)
        TB_INFO("%s holds the output of a run that ended before its first checkpoint (%s): this run's metrics "
                "follow its lines in metrics.jsonl", o->out_dir, what);
error:
    return rc;
}

/* The first trainable tensor whose gradient norm (tb_adam_measure) is not finite, or -1. */
static int bad_gradient(const trainer *t)
{
    const tb_param_table *p = &t->m->params;
    for (int i = 0; i < p->count; i++)
        if (p->items[i].trainable && !isfinite(t->adam.norms[i])) return i;
    return -1;
}

/* The batch of this step has a non-finite loss or gradient (`what`): it is skipped (no update,
 * counted, logged) while opts.skip_nonfinite allows, else the run fails. */
static int non_finite(trainer *t, const char *what)
{
    int rc = TB_OK;
    const int64_t step = t->adam.step + 1, msg = t->res->messages, limit = t->o->skip_nonfinite;
    if (t->skipped >= limit) {
        char more[160] = "";
        if (limit > 0)
            snprintf(more, sizeof more, "; %lld non-finite batches were skipped already, the most allowed",
                     (long long)t->skipped);
        return TB_ERR(TB_EINVAL,
                      "step %lld (message %lld): %s: no update applied and no further checkpoint written%s; training "
                      "diverged (lower the learning rate or check the data and the weights)",
                      (long long)step, (long long)msg, what, more);
    }
    t->skipped++;
    t->res->skipped = t->skipped;
    t->res->messages++; /* the batch is used up: the next one keeps its own number (dropout, masks) */
    TB_WARN("step %lld (message %lld): %s: batch skipped, no update applied (%lld of at most %lld skipped)",
            (long long)step, (long long)msg, what, (long long)t->skipped, (long long)limit);
    TB_TRY(write_metrics(t, "skip", t->res->steps,
                         (tb_metric[]){TB_MI("message", msg), TB_MS("reason", what), TB_MI("skipped", t->skipped),
                                       TB_MI("skip_limit", limit)},
                         4));
error:
    return rc;
}

static int do_step(trainer *t, const tb_msg *msg)
{
    int rc = TB_OK;
    tb_trainer_loss l;
    memset(&l, 0, sizeof l);
    double t0 = tb_now_s();
    tb_bert_zero_grad(t->m);
    TB_TRY(t->o->loss(t->o->loss_ctx, t->m, msg, (uint64_t)t->res->messages, &l));
    TB_CHECK(l.n_parts >= 0 && l.n_parts <= TB_TRAINER_MAX_PARTS, TB_EINVAL, "loss function reported %d parts", l.n_parts);
    char what[TB_PARAM_NAME_MAX + 96];
    if (!isfinite(l.loss)) {
        snprintf(what, sizeof what, "the %s%sloss is %g", l.nonfinite_part ? l.nonfinite_part : "",
                 l.nonfinite_part ? " " : "", l.loss);
        return non_finite(t, what);
    }
    double lr = tb_adam_lr(&t->adam);
    TB_TRY(tb_adam_measure(&t->adam, &t->m->params));
    int bad = bad_gradient(t);
    if (bad >= 0) {
        snprintf(what, sizeof what, "the gradient of '%s' is not finite (norm %g)", t->m->params.items[bad].name,
                 t->adam.norms[bad]);
        return non_finite(t, what);
    }
    TB_TRY(tb_adam_apply(&t->adam, &t->m->params));
    double dt = tb_now_s() - t0;
    t->res->messages++;
    t->res->steps = t->adam.step;
    t->res->last_loss = l.loss;
    tb_metric f[5 + TB_TRAINER_MAX_PARTS];
    int n = 0;
    f[n++] = TB_MF("loss", l.loss);
    f[n++] = TB_MF("lr", lr);
    f[n++] = TB_MI("samples", l.samples);
    f[n++] = TB_MF("samples_per_s", dt > 0 ? (double)l.samples / dt : 0.0);
    f[n++] = TB_MI("epoch", t->epoch);
    for (int i = 0; i < l.n_parts; i++) f[n++] = l.parts[i];
    TB_TRY(write_metrics(t, "step", t->res->steps, f, n));
    t->samples_run += l.samples;
    tb_progress_update(&t->prog, t->res->steps, t->samples_run, l.loss, lr);
error:
    return rc;
}

static void draw_plot(trainer *t)
{
    const char *out = t->o->plot_path;
    char def[PATH_N];
    if (out && !*out) return;
    if (!out) {
        snprintf(def, sizeof def, "%s/loss.png", t->dir);
        out = def;
    }
    tb_plot_opts po;
    memset(&po, 0, sizeof po);
    po.stage = t->o->stage;
    po.title = t->o->plot_title ? t->o->plot_title : t->o->stage;
    if (tb_plot_metrics(t->metrics_file, out, &po) != TB_OK)
        TB_WARN("no loss plot: %s", tb_err_msg());
    else
        TB_INFO("loss plot %s", out);
}

/* The first message builds the model (hooks.first_message), then the optimiser is set up. */
static int first_message(trainer *t, const tb_msg *msg)
{
    int rc = TB_OK;
    rc = t->h->first_message(t->h->ctx, msg, t->resume_path, t->m);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "message %lld from %s", (long long)t->res->messages, t->o->input);
        goto error;
    }
    TB_TRY(model_ready(t));
error:
    return rc;
}

static int loop(trainer *t)
{
    int rc = TB_OK;
    const tb_trainer_opts *o = t->o;
    tb_msg msg;
    tb_msg_init(&msg);
    while (o->max_steps <= 0 || t->res->steps < o->max_steps) {
        if (tb_signals_pending()) {
            t->res->interrupted = 1;
            break;
        }
        rc = next_message(t, &msg);
        if (rc == TB_EEND) {
            rc = TB_OK;
            break;
        }
        if (rc == TB_EINTR) {
            rc = TB_OK;
            t->res->interrupted = 1;
            break;
        }
        if (rc != TB_OK) goto error;
        if (t->size_pending) TB_TRY(size_from_stream(t));
        if (!t->adam_ready) TB_TRY(first_message(t, &msg));
        TB_TRY(do_step(t, &msg));
        tb_msg_free(&msg);
        if (o->eval_every > 0 && t->res->steps % o->eval_every == 0) TB_TRY(evaluate(t));
        if (o->save_every > 0 && t->res->steps % o->save_every == 0) TB_TRY(save(t, "interval"));
    }
error:
    tb_msg_free(&msg);
    return rc;
}

/* The producer of the input is gone: keeps what was learnt since the last checkpoint (with the
 * stream closed, so nothing is acknowledged; a resumed run continues from there). */
static int save_after_input_failure(trainer *t, int why)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", tb_err_msg());
    tb_stream_close(t->in);
    t->in = NULL;
    if (!t->adam_ready) return why;
    if (save(t, "error") != TB_OK) TB_WARN("no checkpoint after the input failed: %s", tb_err_msg());
    if (strcmp(tb_err_msg(), msg) != 0) TB_ERR(why, "%s", msg);
    return why;
}

/* Sets up the run: output folder, plan, resume point, metrics, input, progress. */
static int start(trainer *t)
{
    int rc = TB_OK;
    const tb_trainer_opts *o = t->o;
    tb_trainer_result *res = t->res;
    TB_TRY(tb_runfolder_lock_take(&t->lock, o->out_dir, o->stage));
    TB_TRY(prepare_dir(t));
    TB_TRY(tb_checkpoint_clean_tmp(t->dir));
    TB_TRY(setup_vocab(t));
    snprintf(t->metrics_file, sizeof t->metrics_file, "%s/metrics.jsonl", t->dir);
    snprintf(t->best_dir, sizeof t->best_dir, "%s/best", t->dir);
    TB_TRY(plan(t));
    if (!t->size_pending) TB_TRY(check_schedule(t));
    if (o->resume) TB_TRY(find_resume(t));
    if (!t->h->first_message) TB_TRY(model_ready(t));
    TB_TRY(tb_metrics_open(&t->own, o->stage, t->metrics_file));
    TB_TRY(tb_metrics_open(&t->user, o->stage, o->metrics_path));
    if (!t->live) {
        t->epoch = (int)(res->messages / t->per_epoch);
        TB_CHECK(t->epoch < o->epochs || res->messages == t->per_epoch * o->epochs, TB_EINVAL,
                 "the checkpoint is at message %lld, beyond %d epochs of %lld messages", (long long)res->messages,
                 o->epochs, (long long)t->per_epoch);
        if (t->epoch >= o->epochs) t->epoch = o->epochs - 1;
        TB_TRY(open_input(t, (uint64_t)(res->messages - (int64_t)t->epoch * t->per_epoch)));
    } else {
        TB_TRY(open_input(t, (uint64_t)res->messages));
    }
    TB_TRY(write_metrics(t, "start", res->steps,
                         (tb_metric[]){TB_MI("t_total", t->t_total), TB_MI("messages_per_epoch", t->per_epoch),
                                       TB_MI("epochs", o->epochs), TB_MB("resumed", res->steps > 0)},
                         4));
    if (o->save_initial && res->steps == 0) TB_TRY(save(t, "initial"));
    TB_TRY(tb_progress_init(&t->prog, stderr, o->progress, o->stage,
                            o->max_steps > 0 && (t->t_total <= 0 || o->max_steps < t->t_total) ? o->max_steps : t->t_total,
                            o->progress_interval));
    t->prog_ready = 1;
error:
    return rc;
}

/* The run wrote into OUT/overwrite.new: it takes the old run's place; the results name the final paths. */
static int replace_old_run(trainer *t)
{
    int rc = TB_OK;
    char p[PATH_N];
    tb_metrics_close(&t->own);
    TB_TRY(tb_runfolder_replace(t->o->out_dir));
    final_path(t, t->res->last_checkpoint, p, sizeof p);
    snprintf(t->res->last_checkpoint, sizeof t->res->last_checkpoint, "%s", p);
    final_path(t, t->res->best_checkpoint, p, sizeof p);
    snprintf(t->res->best_checkpoint, sizeof t->res->best_checkpoint, "%s", p);
    t->replacing = 0;
    TB_INFO("%s: the old run was replaced by this one", t->o->out_dir);
error:
    return rc;
}

/* After the loop: the signal checkpoint, or the last evaluation, checkpoint and plot. */
static int finish(trainer *t)
{
    int rc = TB_OK;
    tb_trainer_result *res = t->res;
    if (res->interrupted) {
        if (t->adam_ready) TB_TRY(save(t, "signal"));
        rc = TB_ERR(TB_EINTR, "training interrupted by a signal at step %lld; checkpoint %s (continue with resume%s)",
                    (long long)res->steps, res->last_checkpoint[0] ? res->last_checkpoint : "none",
                    t->replacing ? " and overwrite: the old run stays in place until this one ends" : "");
        goto error;
    }
    TB_CHECK(t->adam_ready, TB_EINVAL, "%s held no message to train on", t->o->input);
    TB_TRY(evaluate(t));
    TB_TRY(save(t, "end"));
    tb_progress_finish(&t->prog);
    draw_plot(t);
    if (t->skipped > 0) {
        char met[PATH_N];
        final_path(t, t->metrics_file, met, sizeof met);
        TB_WARN("%lld batch(es) with a non-finite loss or gradient were skipped (see the \"skip\" lines of %s)",
                (long long)t->skipped, met);
    }
    if (t->replacing) TB_TRY(replace_old_run(t));
error:
    return rc;
}

int tb_trainer_run(const tb_trainer_opts *o, tb_bert_model *m, tb_trainer_result *res)
{
    int rc = TB_OK;
    trainer t;
    memset(&t, 0, sizeof t);
    t.lock.fd = -1;
    if (res) {
        memset(res, 0, sizeof *res);
        res->best_metric = NAN;
        res->best_step = -1;
    }
    TB_TRY(check_opts(o, m, res));
    t.o = o;
    t.h = &o->hooks;
    t.m = m;
    t.res = res;
    t.saved_step = -1;
    t.evaluated_step = -1;
    TB_TRY(start(&t));
    rc = loop(&t);
    if (rc == TB_EPEER || rc == TB_ETIMEOUT) rc = save_after_input_failure(&t, rc);
    if (rc != TB_OK) goto error;
    TB_TRY(finish(&t));
error:
    if (t.prog_ready) tb_progress_free(&t.prog);
    tb_stream_close(t.in);
    tb_metrics_close(&t.own);
    tb_metrics_close(&t.user);
    if (t.adam_ready) tb_adam_free(&t.adam);
    tb_runfolder_unlock(&t.lock);
    return rc;
}

/* ---- pieces for the stages ------------------------------------------------------------------- */

int tb_trainer_model_open(tb_bert_model *m, const tb_model_source *src)
{
    int rc = TB_OK;
    tb_bert_config cfg;
    char path[PATH_N];
    TB_CHECK(m && src, TB_EINVAL, "tb_trainer_model_open: model and source are required");
    TB_CHECK(src->init_path || src->config_path, TB_EINVAL,
             "no model to train: give a checkpoint folder to start from, or a config.json for a random model");
    if (src->init_path) {
        TB_TRY(tb_checkpoint_resolve(src->init_path, path, sizeof path));
        TB_TRY(tb_checkpoint_load_config(path, TB_CKPT_ANY_HEAD, &cfg));
    } else {
        TB_TRY(tb_config_load(src->config_path, &cfg));
    }
    if (src->head != TB_HEAD_NONE || src->num_labels > 0) {
        TB_CHECK(src->head != TB_HEAD_NONE && src->num_labels >= 1, TB_EINVAL,
                 "a classification/regression head needs a head kind and at least 1 label (got %d)", src->num_labels);
        TB_CHECK(cfg.head == TB_HEAD_NONE || cfg.head == src->head, TB_EINVAL,
                 "%s has a '%s' head, '%s' was asked for; start from a checkpoint without a head or ask for '%s'",
                 src->init_path ? src->init_path : src->config_path, tb_head_kind_name(cfg.head),
                 tb_head_kind_name(src->head), tb_head_kind_name(cfg.head));
        TB_CHECK(cfg.head == TB_HEAD_NONE || cfg.num_labels == src->num_labels, TB_EINVAL,
                 "%s has %d labels, the data has %d; start from a checkpoint without a classification head",
                 src->init_path ? src->init_path : src->config_path, cfg.num_labels, src->num_labels);
        cfg.head = src->head;
        cfg.num_labels = src->num_labels;
    }
    if (src->mlm_head >= 0) cfg.mlm_head = src->mlm_head;
    TB_TRY(tb_config_validate(&cfg, src->init_path ? src->init_path : src->config_path));
    TB_TRY(tb_bert_init(m, &cfg));
    tb_bert_init_random(m, src->seed);
    if (src->init_path) {
        static const char *const optional[] = {"bert.pooler.", "classifier.", "cls.predictions.", "fit_dense.", NULL};
        TB_TRY(tb_checkpoint_load_params(path, &m->params, optional));
    }
    /* A pooler without a head is never run: frozen, it is kept as loaded (no decay, no moments). */
    if (cfg.head == TB_HEAD_NONE && cfg.pooler) tb_bert_set_trainable(m, "bert.pooler.", 0);
error:
    return rc;
}

int tb_trainer_peek_label_order(const char *endpoint, char *out, size_t n)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    tb_msg m;
    tb_msg_init(&m);
    TB_CHECK(endpoint && out && n > 0, TB_EINVAL, "tb_trainer_peek_label_order: bad arguments");
    TB_CHECK(!is_live_stream(endpoint), TB_EINVAL,
             "cannot look at the labels of the live stream %s ahead; give the number of labels", endpoint);
    out[0] = 0;
    TB_TRY(tb_stream_open(&s, endpoint, TB_STREAM_READ, NULL));
    rc = tb_stream_recv(s, &m, -1);
    if (rc == TB_EEND) rc = TB_ERR(TB_EINVAL, "%s holds no batches", endpoint);
    if (rc != TB_OK) goto error;
    const char *order = NULL;
    if (tb_msg_get_str(&m, "label_order", &order) == TB_OK)
        snprintf(out, n, "%s", order);
    else
        tb_err_clear();
error:
    tb_msg_free(&m);
    tb_stream_close(s);
    return rc;
}

void tb_ft_loss_init(tb_ft_loss *l, tb_ft_objective objective, int dropout, uint64_t seed)
{
    memset(l, 0, sizeof *l);
    l->objective = objective;
    l->dropout = dropout;
    l->seed = seed;
}

void tb_ft_loss_free(tb_ft_loss *l)
{
    if (!l) return;
    tb_aligned_free(l->dbuf);
    free(l->ids);
    free(l->labels);
    free(l->rows);
    memset(l, 0, sizeof *l);
}

static int grow_f32(float **buf, size_t *cap, size_t need)
{
    int rc = TB_OK;
    if (need <= *cap) return TB_OK;
    tb_aligned_free(*buf);
    *buf = tb_aligned_alloc(need * sizeof **buf);
    *cap = *buf ? need : 0;
    TB_CHECK(*buf, TB_ENOMEM, "out of memory for a loss gradient of %zu floats", need);
error:
    return rc;
}

static int grow_mlm(tb_ft_loss *l, size_t need)
{
    int rc = TB_OK;
    if (need <= l->icap) return TB_OK;
    free(l->ids);
    free(l->labels);
    free(l->rows);
    l->ids = malloc(need * sizeof *l->ids);
    l->labels = malloc(need * sizeof *l->labels);
    l->rows = malloc(need * sizeof *l->rows);
    l->icap = l->ids && l->labels && l->rows ? need : 0;
    TB_CHECK(l->icap, TB_ENOMEM, "out of memory for MLM inputs of %zu tokens", need);
error:
    return rc;
}

static int ft_mlm(tb_ft_loss *l, tb_bert_model *m, const tb_batch *b, uint64_t seq, double *loss)
{
    int rc = TB_OK;
    int B = (int)b->input_ids.shape[0], T = (int)b->input_ids.shape[1], V = m->config.vocab_size;
    TB_CHECK(m->config.mlm_head, TB_EINVAL, "masked-LM training needs a model with the MLM head");
    TB_TRY(grow_mlm(l, (size_t)B * T));
    TB_TRY(tb_mlm_mask(&l->mlm, l->seed, seq, B, T, b->input_ids.data, b->attention_mask.data, l->ids, l->labels,
                       &l->masked));
    /* the MLM head runs on the labelled rows only, so its buffers need room for that many */
    tb_bert_arena_spec spec = {.max_B = B, .max_T = T, .mode = TB_BERT_TRAIN, .keep_scores = 0,
                               .keep_hidden = TB_BERT_ALL_LAYERS, .mlm = 1,
                               .mlm_max_rows = tb_mlm_max_chosen(&l->mlm, B, T)};
    TB_TRY(tb_bert_arena_reserve_ex(m, &spec));
    tb_bert_batch bb = {.B = B, .T = T, .input_ids = l->ids, .token_type_ids = b->token_type_ids.data,
                        .attention_mask = b->attention_mask.data};
    /* the MLM head runs on the labelled rows only: labels compacted in place, in row order */
    int M = 0;
    for (int i = 0; i < B * T; i++)
        if (l->labels[i] != TB_IGNORE_INDEX) l->rows[M] = i, l->labels[M++] = l->labels[i];
    tb_bert_run run = {.dropout = l->dropout, .seed = l->seed, .seq = seq, .mlm = 1, .mlm_rows = l->rows,
                       .mlm_count = M};
    TB_TRY(tb_bert_forward(m, &bb, &run));
    size_t n = (size_t)M * (size_t)V;
    TB_TRY(grow_f32(&l->dbuf, &l->dcap, n > 0 ? n : 1));
    memset(l->dbuf, 0, n * sizeof *l->dbuf);
    *loss = 0.0; /* a batch without a maskable token (every row special or padding) */
    if (M > 0) TB_TRY(tb_loss_ce(loss, l->dbuf, tb_bert_mlm_logits(m), l->labels, M, V, TB_IGNORE_INDEX, 1.0f, NULL));
    tb_bert_grads g = {.dmlm_logits = l->dbuf};
    TB_TRY(tb_bert_backward(m, &g));
error:
    return rc;
}

static int ft_task(tb_ft_loss *l, tb_bert_model *m, const tb_batch *b, uint64_t seq, double *loss)
{
    int rc = TB_OK;
    int B = (int)b->input_ids.shape[0], T = (int)b->input_ids.shape[1], NL = m->config.num_labels;
    TB_CHECK(m->config.head != TB_HEAD_NONE, TB_EINVAL, "fine-tuning needs a model with a classification head");
    int regress = l->objective == TB_FT_REGRESS;
    TB_CHECK(regress == (NL == 1), TB_EINVAL, "%s needs %s output, the model has %d labels",
             regress ? "regression" : "classification", regress ? "1" : ">= 2", NL);
    TB_CHECK(b->labels.dtype == (regress ? TB_F32 : TB_I32), TB_ESHAPE,
             "batch labels are %s, %s needs %s labels", tb_dtype_name(b->labels.dtype),
             regress ? "regression" : "classification", regress ? "f32" : "i32");
    TB_TRY(tb_bert_arena_reserve(m, B, T, TB_BERT_TRAIN, 0, 0));
    tb_bert_batch bb = {.B = B, .T = T, .input_ids = b->input_ids.data, .token_type_ids = b->token_type_ids.data,
                        .attention_mask = b->attention_mask.data};
    tb_bert_run run = {.dropout = l->dropout, .seed = l->seed, .seq = seq, .logits = 1};
    TB_TRY(tb_bert_forward(m, &bb, &run));
    size_t n = (size_t)B * NL;
    TB_TRY(grow_f32(&l->dbuf, &l->dcap, n));
    memset(l->dbuf, 0, n * sizeof *l->dbuf);
    if (regress)
        TB_TRY(tb_loss_mse(loss, l->dbuf, tb_bert_logits(m), b->labels.data, (size_t)B, 1.0f));
    else
        TB_TRY(tb_loss_ce(loss, l->dbuf, tb_bert_logits(m), b->labels.data, B, NL, TB_IGNORE_INDEX, 1.0f, NULL));
    tb_bert_grads g = {.dlogits = l->dbuf};
    TB_TRY(tb_bert_backward(m, &g));
error:
    return rc;
}

int tb_ft_loss_step(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out)
{
    int rc = TB_OK;
    tb_ft_loss *l = ctx;
    tb_batch b = {0};
    TB_TRY(tb_batch_from_msg(&b, msg));
    out->samples = b.input_ids.shape[0];
    out->n_parts = 0;
    if (l->objective == TB_FT_MLM) {
        TB_TRY(ft_mlm(l, m, &b, seq, &out->loss));
        out->parts[out->n_parts++] = TB_MI("masked", l->masked);
    } else {
        TB_TRY(ft_task(l, m, &b, seq, &out->loss));
    }
error:
    if (rc != TB_OK) tb_err_wrap(rc, "training message %llu", (unsigned long long)seq);
    tb_batch_free(&b);
    return rc;
}

int tb_trainer_eval_stream(void *ctx, tb_bert_model *m, tb_taskmetrics_result *out)
{
    int rc = TB_OK;
    tb_eval_result r;
    TB_TRY(tb_evaluate(m, ctx, &r));
    *out = r.metrics;
error:
    return rc;
}
