/* checkpoint.c - atomic checkpoint folders (tb/store/checkpoint.h). */
#include "tb/store/checkpoint.h"

#include "tb/store/config.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/store/safetensors.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_JSON_MAX (64u << 20)

void tb_train_state_free(tb_train_state *s)
{
    if (!s) return;
    free(s->extra_json);
    memset(s, 0, sizeof *s);
}

/* ---- file system helpers ------------------------------------------------------------------- */

static int join(char *out, size_t n, const char *a, const char *b)
{
    int k = snprintf(out, n, "%s/%s", a, b);
    if (k < 0 || (size_t)k >= n) return TB_ERR(TB_EINVAL, "path '%s/%s' is longer than %zu bytes", a, b, n - 1);
    return TB_OK;
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return TB_ERR(TB_EIO, "cannot open %s to sync it: %s", path, strerror(errno));
    int ok = fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok) return TB_ERR(TB_EIO, "cannot fsync %s: %s", path, strerror(e));
    return TB_OK;
}

static int write_file(const char *path, const char *data, size_t n)
{
    int rc = TB_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TB_CHECK(fd >= 0, TB_EIO, "cannot create %s: %s", path, strerror(errno));
    while (n) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        TB_CHECK(w > 0, TB_EIO, "cannot write %s: %s", path, strerror(errno));
        data += w;
        n -= (size_t)w;
    }
    TB_CHECK(fsync(fd) == 0, TB_EIO, "cannot fsync %s: %s", path, strerror(errno));
error:
    if (fd >= 0 && close(fd) != 0 && rc == TB_OK) rc = TB_ERR(TB_EIO, "cannot close %s: %s", path, strerror(errno));
    return rc;
}

static int copy_file(const char *src, const char *dst)
{
    int rc = TB_OK, in = -1, out = -1;
    char buf[1 << 16];
    in = open(src, O_RDONLY | O_CLOEXEC);
    TB_CHECK(in >= 0, TB_EIO, "cannot open vocabulary %s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TB_CHECK(out >= 0, TB_EIO, "cannot create %s: %s", dst, strerror(errno));
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        TB_CHECK(r >= 0, TB_EIO, "cannot read %s: %s", src, strerror(errno));
        if (r == 0) break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            TB_CHECK(w > 0, TB_EIO, "cannot write %s: %s", dst, strerror(errno));
            off += w;
        }
    }
    TB_CHECK(fsync(out) == 0, TB_EIO, "cannot fsync %s: %s", dst, strerror(errno));
error:
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0 && rc == TB_OK) rc = TB_ERR(TB_EIO, "cannot close %s: %s", dst, strerror(errno));
    return rc;
}

static int read_file(const char *path, size_t max, char **out)
{
    int rc = TB_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    TB_CHECK(f, errno == ENOENT ? TB_ENOTFOUND : TB_EIO, "cannot open %s: %s", path, strerror(errno));
    TB_CHECK(fseek(f, 0, SEEK_END) == 0, TB_EIO, "cannot seek %s", path);
    long n = ftell(f);
    TB_CHECK(n >= 0 && (size_t)n <= max, TB_EFORMAT, "%s: size %ld is outside 0..%zu bytes", path, n, max);
    rewind(f);
    buf = malloc((size_t)n + 1);
    TB_CHECK(buf, TB_ENOMEM, "cannot allocate %ld bytes for %s", n, path);
    TB_CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n, TB_EIO, "cannot read %s", path);
    buf[n] = 0;
    *out = buf;
    buf = NULL;
error:
    free(buf);
    if (f) fclose(f);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? TB_OK : TB_ERR(TB_EIO, "cannot stat %s: %s", path, strerror(errno));
    int r = S_ISDIR(st.st_mode) ? nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) : unlink(path);
    if (r != 0) return TB_ERR(TB_EIO, "cannot remove %s: %s", path, strerror(errno));
    return TB_OK;
}

int tb_checkpoint_clean_tmp(const char *dir)
{
    int rc = TB_OK;
    char path[PATH_MAX];
    DIR *d = opendir(dir);
    TB_CHECK(d, TB_EIO, "cannot list checkpoint folder %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".tmp") != 0) continue;
        TB_TRY(join(path, sizeof path, dir, e->d_name));
        TB_INFO("removing %s left over from an interrupted checkpoint save", path);
        TB_TRY(remove_tree(path));
    }
error:
    if (d) closedir(d);
    return rc;
}

/* ---- finiteness --------------------------------------------------------------------------- */

/* Index of the first NaN or infinity in x[0..n), or n when every element is finite. */
static size_t first_non_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

/* TB_OK when the loaded tensor `name` of `file` is finite; else TB_EFORMAT naming its first bad element. */
static int check_loaded_finite(const float *x, size_t n, const char *name, const char *file)
{
    size_t i = first_non_finite(x, n);
    if (i == n) return TB_OK;
    return TB_ERR(TB_EFORMAT, "%s: tensor '%s' holds %s at element %zu (of %zu): the checkpoint is damaged or the "
                  "training that wrote it diverged; use an earlier checkpoint", file, name,
                  isnan(x[i]) ? "NaN" : "an infinity", i, n);
}

/* TB_OK when x[0..n), the `what` of parameter `name`, is finite; else TB_EFORMAT naming the tensor, its first
 * bad element and the checkpoint `final` that is not written. */
static int check_saved_finite(const char *final, const char *what, const char *name, const float *x, size_t n)
{
    size_t i = first_non_finite(x, n);
    if (i == n) return TB_OK;
    return TB_ERR(TB_EFORMAT, "not saving checkpoint %s: %s '%s' holds %s at element %zu (of %zu): training diverged "
                  "(try a lower learning rate, or resume from an earlier checkpoint)", final, what, name,
                  isnan(x[i]) ? "NaN" : "an infinity", i, n);
}

/* Checks every parameter and, when given, every optimiser moment before a checkpoint is written. */
static int check_save_finite(const char *final, const tb_param_table *p, const tb_adam *a)
{
    int rc = TB_OK;
    int moments = a && a->m && a->v && a->total == p->total;
    for (int i = 0; i < p->count; i++) {
        const tb_param *it = &p->items[i];
        if (it->value.dtype != TB_F32 || !it->value.data) continue;
        size_t n = (size_t)tb_tensor_numel(&it->value), off = tb_params_offset(p, it);
        TB_TRY(check_saved_finite(final, "parameter", it->name, it->value.data, n));
        if (!moments || !it->trainable) continue;
        TB_TRY(check_saved_finite(final, "the optimiser moment next_m of", it->name, a->m + off, n));
        TB_TRY(check_saved_finite(final, "the optimiser moment next_v of", it->name, a->v + off, n));
    }
error:
    return rc;
}

/* ---- saving ------------------------------------------------------------------------------- */

static int write_model(const char *path, const tb_param_table *p)
{
    int rc = TB_OK;
    tb_st_item *items = calloc((size_t)p->count, sizeof *items);
    TB_CHECK(items, TB_ENOMEM, "out of memory listing %d parameters", p->count);
    for (int i = 0; i < p->count; i++) {
        items[i].name = p->items[i].name;
        items[i].tensor = &p->items[i].value;
    }
    TB_TRY(tb_st_write(path, items, p->count, NULL, 0));
error:
    free(items);
    return rc;
}

static int write_moments(const char *path, const tb_param_table *p, const tb_adam *a)
{
    int rc = TB_OK, n = 0;
    tb_st_item *items = calloc((size_t)p->count * 2 + 1, sizeof *items);
    tb_tensor *views = calloc((size_t)p->count * 2 + 1, sizeof *views);
    char(*names)[TB_PARAM_NAME_MAX + 8] = calloc((size_t)p->count * 2 + 1, sizeof *names);
    TB_CHECK(items && views && names, TB_ENOMEM, "out of memory listing optimiser moments");
    TB_CHECK(a->m && a->count == p->count && a->total == p->total, TB_EINVAL,
             "BertAdam state was not made for this parameter table (%d/%zu vs %d/%zu)", a->count, a->total, p->count,
             p->total);
    for (int i = 0; i < p->count; i++) {
        const tb_param *it = &p->items[i];
        if (!it->trainable) continue;
        size_t off = tb_params_offset(p, it);
        for (int k = 0; k < 2; k++) {
            snprintf(names[n], sizeof names[n], "%s.%s", k ? "next_v" : "next_m", it->name);
            TB_TRY(tb_tensor_borrow(&views[n], TB_F32, it->value.ndim, it->value.shape, (k ? a->v : a->m) + off));
            items[n].name = names[n];
            items[n].tensor = &views[n];
            n++;
        }
    }
    tb_st_meta meta[] = {{"format", "pt"}, {"content", "tinybert-c BertAdam moments"}};
    TB_TRY(tb_st_write(path, items, n, meta, 2));
error:
    free(items);
    free(views);
    free(names);
    return rc;
}

static int add_u64_string(cJSON *o, const char *key, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_AddStringToObject(o, key, buf) != NULL;
}

static int write_state_json(const char *path, const tb_adam *a, const tb_train_state *s)
{
    int rc = TB_OK, ok = 1;
    char *text = NULL;
    cJSON *o = cJSON_CreateObject(), *extra = NULL;
    TB_CHECK(o, TB_ENOMEM, "out of memory formatting %s", path);
    ok &= cJSON_AddStringToObject(o, "format", "tinybert-c training state") != NULL;
    ok &= cJSON_AddNumberToObject(o, "version", 1) != NULL;
    ok &= cJSON_AddNumberToObject(o, "step", (double)(a ? a->step : s ? s->step : 0)) != NULL;
    if (a) {
        cJSON *opt = cJSON_AddObjectToObject(o, "optimizer");
        ok &= opt != NULL;
        if (opt) {
            ok &= cJSON_AddStringToObject(opt, "name", "BertAdam") != NULL;
            ok &= cJSON_AddNumberToObject(opt, "lr", a->opt.lr) != NULL;
            ok &= cJSON_AddNumberToObject(opt, "b1", a->opt.b1) != NULL;
            ok &= cJSON_AddNumberToObject(opt, "b2", a->opt.b2) != NULL;
            ok &= cJSON_AddNumberToObject(opt, "e", a->opt.eps) != NULL;
            ok &= cJSON_AddNumberToObject(opt, "weight_decay", a->opt.weight_decay) != NULL;
            ok &= cJSON_AddNumberToObject(opt, "max_grad_norm", a->opt.max_grad_norm) != NULL;
            ok &= cJSON_AddStringToObject(opt, "schedule", tb_lr_schedule_name(a->opt.schedule)) != NULL;
            ok &= cJSON_AddNumberToObject(opt, "warmup", a->opt.warmup) != NULL;
            ok &= cJSON_AddNumberToObject(opt, "t_total", (double)a->opt.t_total) != NULL;
        }
    }
    ok &= add_u64_string(o, "seed", s ? s->seed : 0);
    ok &= add_u64_string(o, "rng_position", s ? s->rng_position : 0);
    ok &= add_u64_string(o, "data_position", s ? s->data_position : 0);
    if (s && s->extra_json) {
        extra = cJSON_Parse(s->extra_json);
        TB_CHECK(extra && cJSON_IsObject(extra), TB_EINVAL, "training state: extra JSON is not a JSON object");
        cJSON_AddItemToObject(o, "extra", extra);
        extra = NULL;
    }
    TB_CHECK(ok, TB_ENOMEM, "out of memory formatting %s", path);
    text = cJSON_Print(o);
    TB_CHECK(text, TB_ENOMEM, "out of memory formatting %s", path);
    size_t n = strlen(text);
    text[n] = '\n';
    TB_TRY(write_file(path, text, n + 1));
error:
    cJSON_Delete(extra);
    cJSON_Delete(o);
    free(text);
    return rc;
}

static int write_folder(const char *tmp, const tb_bert_config *config, const tb_param_table *params,
                        const tb_adam *adam, const tb_train_state *state, const char *vocab_path)
{
    int rc = TB_OK;
    char path[PATH_MAX];
    TB_TRY(join(path, sizeof path, tmp, TB_CKPT_CONFIG));
    TB_TRY(tb_config_save(path, config));
    TB_TRY(join(path, sizeof path, tmp, TB_CKPT_MODEL));
    TB_TRY(write_model(path, params));
    if (vocab_path) {
        TB_TRY(join(path, sizeof path, tmp, TB_CKPT_VOCAB));
        TB_TRY(copy_file(vocab_path, path));
    }
    if (adam) {
        TB_TRY(join(path, sizeof path, tmp, TB_CKPT_STATE));
        TB_TRY(write_moments(path, params, adam));
    }
    if (adam || state) {
        TB_TRY(join(path, sizeof path, tmp, TB_CKPT_STATE_JSON));
        TB_TRY(write_state_json(path, adam, state));
    }
    TB_TRY(fsync_path(tmp, 1));
error:
    return rc;
}

static int swap_latest(const char *dir, const char *target)
{
    int rc = TB_OK;
    char link_tmp[PATH_MAX], link[PATH_MAX];
    TB_TRY(join(link_tmp, sizeof link_tmp, dir, TB_CKPT_LATEST ".tmp"));
    TB_TRY(join(link, sizeof link, dir, TB_CKPT_LATEST));
    TB_CHECK(unlink(link_tmp) == 0 || errno == ENOENT, TB_EIO, "cannot remove %s: %s", link_tmp, strerror(errno));
    TB_CHECK(symlink(target, link_tmp) == 0, TB_EIO, "cannot create symlink %s: %s", link_tmp, strerror(errno));
    TB_CHECK(rename(link_tmp, link) == 0, TB_EIO, "cannot rename %s to %s: %s", link_tmp, link, strerror(errno));
    TB_TRY(fsync_path(dir, 1));
error:
    return rc;
}

int tb_checkpoint_save(const char *dir, int64_t step, const tb_bert_config *config, const tb_param_table *params,
                       const tb_adam *adam, const tb_train_state *state, const char *vocab_path, char *out_path,
                       size_t out_n)
{
    int rc = TB_OK;
    char name[64], tmp_name[72], final[PATH_MAX], tmp[PATH_MAX];
    TB_CHECK(dir && config && params && params->count > 0, TB_EINVAL,
             "tb_checkpoint_save needs a folder, a config and a non-empty parameter table");
    TB_CHECK(step >= 0, TB_EINVAL, "checkpoint step must be >= 0, got %lld", (long long)step);
    TB_CHECK(!adam || !state || state->step == adam->step, TB_EINVAL,
             "training state step %lld differs from the optimiser's step %lld", (long long)(state ? state->step : 0),
             (long long)(adam ? adam->step : 0));
    snprintf(name, sizeof name, "step-%lld", (long long)step);
    snprintf(tmp_name, sizeof tmp_name, "%s.tmp", name);
    TB_CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST, TB_EIO, "cannot create checkpoint folder %s: %s", dir,
             strerror(errno));
    TB_TRY(tb_checkpoint_clean_tmp(dir));
    TB_TRY(join(final, sizeof final, dir, name));
    TB_TRY(join(tmp, sizeof tmp, dir, tmp_name));
    TB_TRY(check_save_finite(final, params, adam));
    struct stat st;
    TB_CHECK(lstat(final, &st) != 0, TB_EINVAL, "checkpoint %s already exists: remove it or save another step", final);
    TB_CHECK(mkdir(tmp, 0755) == 0, TB_EIO, "cannot create %s: %s", tmp, strerror(errno));
    rc = write_folder(tmp, config, params, adam, state, vocab_path);
    if (rc) {
        tb_err_wrap(rc, "saving checkpoint %s", final);
        goto error;
    }
    TB_CHECK(rename(tmp, final) == 0, TB_EIO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    TB_TRY(fsync_path(dir, 1));
    TB_TRY(swap_latest(dir, name));
    if (out_path) {
        int k = snprintf(out_path, out_n, "%s", final);
        TB_CHECK(k >= 0 && (size_t)k < out_n, TB_EINVAL, "checkpoint path %s does not fit in %zu bytes", final, out_n);
    }
error:
    return rc;
}

/* ---- loading ------------------------------------------------------------------------------ */

int tb_checkpoint_resolve(const char *path, char *out, size_t out_n)
{
    int rc = TB_OK;
    char p[PATH_MAX], resolved[PATH_MAX];
    struct stat st;
    TB_CHECK(path && path[0], TB_EINVAL, "no checkpoint path given");
    TB_TRY(join(p, sizeof p, path, TB_CKPT_CONFIG));
    if (stat(p, &st) == 0) {
        TB_CHECK(realpath(path, resolved), TB_EIO, "cannot resolve %s: %s", path, strerror(errno));
    } else {
        TB_TRY(join(p, sizeof p, path, TB_CKPT_LATEST));
        TB_CHECK(realpath(p, resolved), TB_ENOTFOUND,
                 "no checkpoint at %s: it has neither %s nor a '%s' link to a checkpoint folder", path, TB_CKPT_CONFIG,
                 TB_CKPT_LATEST);
        TB_TRY(join(p, sizeof p, resolved, TB_CKPT_CONFIG));
        TB_CHECK(stat(p, &st) == 0, TB_ENOTFOUND, "checkpoint %s (from %s/%s) has no %s", resolved, path,
                 TB_CKPT_LATEST, TB_CKPT_CONFIG);
    }
    int k = snprintf(out, out_n, "%s", resolved);
    TB_CHECK(k >= 0 && (size_t)k < out_n, TB_EINVAL, "checkpoint path %s does not fit in %zu bytes", resolved, out_n);
error:
    return rc;
}

/* Which of the project's own keys config.json at `path` has (a foreign checkpoint lacks them). */
static int own_keys(const char *path, int *head, int *labels, int *fit, int *pooler, int *hf_arch)
{
    int rc = TB_OK;
    char *text = NULL;
    TB_TRY(read_file(path, 1 << 20, &text));
    cJSON *o = cJSON_Parse(text);
    TB_CHECK(o, TB_EFORMAT, "%s: not valid JSON", path);
    *head = cJSON_GetObjectItemCaseSensitive(o, "tinybert_head") != NULL;
    *labels = cJSON_GetObjectItemCaseSensitive(o, "num_labels") || cJSON_GetObjectItemCaseSensitive(o, "id2label");
    *fit = cJSON_GetObjectItemCaseSensitive(o, "fit_size") != NULL;
    *pooler = cJSON_GetObjectItemCaseSensitive(o, "tinybert_pooler") != NULL;
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(o, "architectures"), *a;
    *hf_arch = 0;
    cJSON_ArrayForEach(a, arch) *hf_arch |= cJSON_IsString(a) && !strcmp(a->valuestring, "BertForSequenceClassification");
    cJSON_Delete(o);
error:
    free(text);
    return rc;
}

/* A checkpoint whose config.json lacks "tinybert_head", "fit_size" or "tinybert_pooler"
 * gets them from the tensors of its model.safetensors: classifier.weight [NL, C] means a head with
 * NL labels (kind "hf" — what a Hugging Face BertForSequenceClassification is; a TinyBERT reference
 * head needs "tinybert_head": "relu" in config.json, said in a warning), fit_dense.weight [F, C]
 * means fit_size F, (bert.)pooler.dense.weight without a head means a pooler. Without this,
 * classifier.*, pooler.* and fit_dense.* would be ignored. */
static int infer_missing_keys(const char *dir, const char *cfg_path, tb_bert_config *c)
{
    int rc = TB_OK, has_head = 0, has_labels = 0, has_fit = 0, has_pooler = 0, hf_arch = 0;
    char p[PATH_MAX];
    struct stat sb;
    tb_st_file f = {0};
    TB_TRY(own_keys(cfg_path, &has_head, &has_labels, &has_fit, &has_pooler, &hf_arch));
    TB_TRY(join(p, sizeof p, dir, TB_CKPT_MODEL));
    if ((has_head && has_fit && has_pooler) || stat(p, &sb) != 0) return TB_OK;
    TB_TRY(tb_st_open(&f, p));
    const tb_st_entry *cls = tb_st_find(&f, "classifier.weight"), *fit = tb_st_find(&f, "fit_dense.weight");
    if (!has_fit && fit && fit->ndim == 2 && c->fit_size == 0) {
        c->fit_size = (int)fit->shape[0];
        TB_INFO("%s: no \"fit_size\"; fit_dense.weight is [%" PRId64 ", %" PRId64 "]: fit_size %d", cfg_path,
                fit->shape[0], fit->shape[1], c->fit_size);
    }
    if (!has_head && cls && cls->ndim == 2) {
        int rows = (int)cls->shape[0];
        if (has_labels && c->num_labels != rows && c->num_labels != 0)
            TB_WARN("%s: \"num_labels\"/\"id2label\" say %d labels, classifier.weight has %d rows: using %d", cfg_path,
                    c->num_labels, rows, rows);
        c->head = TB_HEAD_HF;
        c->num_labels = rows;
        TB_WARN("%s: no \"tinybert_head\", but a classifier of %d labels: loaded as a Hugging Face head (\"hf\": "
                "pooler, dropout, classifier)%s; a checkpoint trained with the TinyBERT reference head needs "
                "\"tinybert_head\": \"relu\" in its config.json (scripts/convert-pytorch-bin --head relu)",
                cfg_path, rows, hf_arch ? ", as its architectures say" : "");
    }
    if (!has_pooler && c->head == TB_HEAD_NONE && !c->pooler &&
        (tb_st_find(&f, "bert.pooler.dense.weight") || tb_st_find(&f, "pooler.dense.weight"))) {
        c->pooler = 1;
        TB_INFO("%s: no \"tinybert_pooler\"; the model has pooler tensors and no head: loading them", cfg_path);
    }
    TB_TRY(tb_config_validate(c, cfg_path));
error:
    tb_st_close(&f);
    return rc;
}

int tb_checkpoint_load_config(const char *path, int expect_head, tb_bert_config *out)
{
    int rc = TB_OK;
    char dir[PATH_MAX], p[PATH_MAX];
    TB_TRY(tb_checkpoint_resolve(path, dir, sizeof dir));
    TB_TRY(join(p, sizeof p, dir, TB_CKPT_CONFIG));
    TB_TRY(tb_config_load(p, out));
    TB_TRY(infer_missing_keys(dir, p, out));
    TB_CHECK(expect_head == TB_CKPT_ANY_HEAD || (int)out->head == expect_head, TB_EFORMAT,
             "%s: checkpoint has head \"%s\" but \"%s\" is expected: load a checkpoint of the right kind "
             "(\"tinybert_head\" records it)",
             p, tb_head_kind_name(out->head), tb_head_kind_name((tb_head_kind)expect_head));
error:
    return rc;
}

/* A bounded list of problems for one combined error message. */
typedef struct problems {
    char text[3072];
    size_t len;
    int count, shown;
} problems;

static void problem_add(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem_add(problems *p, const char *fmt, ...)
{
    p->count++;
    if (p->len + 200 > sizeof p->text) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(p->text + p->len, sizeof p->text - p->len, fmt, ap);
    va_end(ap);
    if (k > 0) p->len += (size_t)k < sizeof p->text - p->len ? (size_t)k : sizeof p->text - p->len - 1;
    p->shown++;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Maps a file's tensor name to the table's; returns NULL (and logs) when it is to be ignored. */
static tb_param *map_name(const tb_param_table *t, const char *file_name, char *buf, size_t n)
{
    if (strcmp(file_name, "cls.predictions.decoder.weight") == 0) {
        TB_INFO("ignoring %s: the MLM decoder is tied to the word embeddings", file_name);
        return NULL;
    }
    if (strlen(file_name) + 8 >= n) return NULL;
    strcpy(buf, file_name);
    if (ends_with(buf, "LayerNorm.gamma")) strcpy(buf + strlen(buf) - 5, "weight");
    else if (ends_with(buf, "LayerNorm.beta")) strcpy(buf + strlen(buf) - 4, "bias");
    if (strcmp(buf, "cls.predictions.decoder.bias") == 0) strcpy(buf, "cls.predictions.bias");
    tb_param *p = tb_params_find(t, buf);
    if (!p && (starts_with(buf, "embeddings.") || starts_with(buf, "encoder.") || starts_with(buf, "pooler."))) {
        memmove(buf + 5, buf, strlen(buf) + 1);
        memcpy(buf, "bert.", 5);
        p = tb_params_find(t, buf);
    }
    return p;
}

static int is_optional(const char *name, const char *const *prefixes)
{
    for (int i = 0; prefixes && prefixes[i]; i++)
        if (starts_with(name, prefixes[i])) return 1;
    return 0;
}

static int load_entries(const tb_st_file *f, tb_param_table *params, const char **loaded_from)
{
    int rc = TB_OK, ignored = 0;
    problems bad = {0};
    char canon[TB_PARAM_NAME_MAX + 16], desc[64];
    for (int i = 0; i < f->count; i++) {
        const tb_st_entry *e = &f->entries[i];
        tb_param *p = map_name(params, e->name, canon, sizeof canon);
        if (!p) {
            if (strcmp(e->name, "cls.predictions.decoder.weight") != 0) {
                TB_INFO("%s: ignoring tensor '%s' (the model has no such parameter)", f->path, e->name);
                ignored++;
            }
            continue;
        }
        int idx = (int)(p - params->items);
        if (loaded_from[idx]) {
            problem_add(&bad, "\n  '%s' and '%s' both map to parameter '%s'", loaded_from[idx], e->name, p->name);
            continue;
        }
        loaded_from[idx] = e->name;
        int same_shape = e->ndim == p->value.ndim;
        for (int d = 0; same_shape && d < e->ndim; d++) same_shape = e->shape[d] == p->value.shape[d];
        if (e->dtype != TB_F32 || !same_shape) {
            tb_tensor fake = {.dtype = e->dtype, .ndim = e->ndim};
            memcpy(fake.shape, e->shape, sizeof fake.shape);
            char want[64];
            problem_add(&bad, "\n  '%s': file has %s, model needs %s", e->name, tb_tensor_describe(&fake, desc, sizeof desc),
                        tb_tensor_describe(&p->value, want, sizeof want));
            continue;
        }
        if (!tb_tensor_is_contiguous(&p->value)) {
            problem_add(&bad, "\n  parameter '%s' is not contiguous in the table", p->name);
            continue;
        }
        TB_TRY(tb_st_read(f, e, p->value.data, tb_tensor_nbytes(&p->value)));
        TB_TRY(check_loaded_finite(p->value.data, (size_t)tb_tensor_numel(&p->value), e->name, f->path));
    }
    if (ignored) TB_INFO("%s: %d tensor(s) not used by this model were ignored", f->path, ignored);
    TB_CHECK(bad.count == 0, TB_ESHAPE, "%s: %d tensor(s) do not fit the model:%s%s", f->path, bad.count, bad.text,
             bad.shown < bad.count ? "\n  ..." : "");
error:
    return rc;
}

int tb_checkpoint_load_params(const char *path, tb_param_table *params, const char *const *optional_prefixes)
{
    int rc = TB_OK;
    char dir[PATH_MAX], p[PATH_MAX];
    tb_st_file f = {0};
    const char **loaded_from = NULL;
    problems missing = {0};
    TB_CHECK(params && params->count > 0, TB_EINVAL, "no parameter table to load into");
    TB_TRY(tb_checkpoint_resolve(path, dir, sizeof dir));
    TB_TRY(join(p, sizeof p, dir, TB_CKPT_MODEL));
    TB_TRY(tb_st_open(&f, p));
    loaded_from = calloc((size_t)params->count, sizeof *loaded_from);
    TB_CHECK(loaded_from, TB_ENOMEM, "out of memory");
    TB_TRY(load_entries(&f, params, loaded_from));
    for (int i = 0; i < params->count; i++) {
        if (loaded_from[i]) continue;
        if (is_optional(params->items[i].name, optional_prefixes)) {
            TB_INFO("%s: no '%s'; it keeps its initial values", p, params->items[i].name);
            continue;
        }
        problem_add(&missing, "\n  %s", params->items[i].name);
    }
    TB_CHECK(missing.count == 0, TB_ENOTFOUND, "%s: %d parameter(s) of the model are missing:%s%s", p, missing.count,
             missing.text, missing.shown < missing.count ? "\n  ..." : "");
error:
    free(loaded_from);
    tb_st_close(&f);
    return rc;
}

/* A u64 stored as a decimal string (or a small JSON number). */
static int json_u64(const cJSON *o, const char *what, const char *key, uint64_t *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(j) && j->valuedouble >= 0 && j->valuedouble <= 9007199254740992.0 &&
        (double)(uint64_t)j->valuedouble == j->valuedouble) {
        *out = (uint64_t)j->valuedouble;
        return TB_OK;
    }
    if (cJSON_IsString(j) && j->valuestring[0] >= '0' && j->valuestring[0] <= '9') {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(j->valuestring, &end, 10);
        if (!*end && errno == 0) {
            *out = v;
            return TB_OK;
        }
    }
    return TB_ERR(TB_EFORMAT, "%s: key \"%s\" is missing or not an unsigned integer", what, key);
}

static int load_state_json(const char *path, int64_t *step, tb_train_state *s)
{
    int rc = TB_OK;
    char *text = NULL;
    cJSON *o = NULL;
    uint64_t v;
    TB_TRY(read_file(path, STATE_JSON_MAX, &text));
    o = cJSON_Parse(text);
    TB_CHECK(o && cJSON_IsObject(o), TB_EFORMAT, "%s: not a JSON object", path);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    TB_CHECK(cJSON_IsString(fmt) && strcmp(fmt->valuestring, "tinybert-c training state") == 0, TB_EFORMAT,
             "%s: key \"format\" is not \"tinybert-c training state\"", path);
    TB_TRY(json_u64(o, path, "step", &v));
    TB_CHECK(v <= INT64_MAX, TB_EFORMAT, "%s: step out of range", path);
    *step = (int64_t)v;
    if (s) {
        memset(s, 0, sizeof *s);
        s->step = *step;
        TB_TRY(json_u64(o, path, "seed", &s->seed));
        TB_TRY(json_u64(o, path, "rng_position", &s->rng_position));
        TB_TRY(json_u64(o, path, "data_position", &s->data_position));
        const cJSON *extra = cJSON_GetObjectItemCaseSensitive(o, "extra");
        if (extra) {
            TB_CHECK(cJSON_IsObject(extra), TB_EFORMAT, "%s: key \"extra\" must be an object", path);
            s->extra_json = cJSON_PrintUnformatted(extra);
            TB_CHECK(s->extra_json, TB_ENOMEM, "out of memory");
        }
    }
error:
    cJSON_Delete(o);
    free(text);
    return rc;
}

static int load_moments(const tb_st_file *f, const tb_param_table *params, tb_adam *a)
{
    int rc = TB_OK;
    problems bad = {0};
    char name[TB_PARAM_NAME_MAX + 8];
    for (int i = 0; i < params->count; i++) {
        const tb_param *it = &params->items[i];
        if (!it->trainable) continue;
        size_t off = tb_params_offset(params, it);
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%s.%s", k ? "next_v" : "next_m", it->name);
            const tb_st_entry *e = tb_st_find(f, name);
            if (!e) {
                problem_add(&bad, "\n  '%s' is missing", name);
                continue;
            }
            int same = e->dtype == TB_F32 && e->ndim == it->value.ndim;
            for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == it->value.shape[d];
            if (!same) {
                problem_add(&bad, "\n  '%s' has the wrong dtype or shape", name);
                continue;
            }
            TB_TRY(tb_st_read(f, e, (k ? a->v : a->m) + off, tb_tensor_nbytes(&it->value)));
            TB_TRY(check_loaded_finite((k ? a->v : a->m) + off, (size_t)tb_tensor_numel(&it->value), name, f->path));
        }
    }
    TB_CHECK(bad.count == 0, TB_ESHAPE, "%s: optimiser moments do not fit the model (%d problems):%s%s", f->path,
             bad.count, bad.text, bad.shown < bad.count ? "\n  ..." : "");
error:
    return rc;
}

int tb_checkpoint_load_state(const char *path, const tb_param_table *params, tb_adam *adam, tb_train_state *state)
{
    int rc = TB_OK;
    char dir[PATH_MAX], p[PATH_MAX];
    tb_st_file f = {0};
    int64_t step = 0;
    tb_train_state s = {0};
    TB_CHECK(adam || state, TB_EINVAL, "tb_checkpoint_load_state: nothing to load into (adam and state are NULL)");
    TB_CHECK(!adam || (params && adam->m && adam->count == params->count && adam->total == params->total), TB_EINVAL,
             "tb_checkpoint_load_state needs a BertAdam state made by tb_adam_init for this parameter table");
    TB_TRY(tb_checkpoint_resolve(path, dir, sizeof dir));
    TB_TRY(join(p, sizeof p, dir, TB_CKPT_STATE_JSON));
    rc = load_state_json(p, &step, &s);
    if (rc == TB_ENOTFOUND) {
        rc = TB_ERR(TB_ENOTFOUND, "checkpoint %s has no training state (%s): it cannot resume training", dir,
                    TB_CKPT_STATE_JSON);
        goto error;
    }
    if (rc) goto error;
    if (adam) {
        TB_TRY(join(p, sizeof p, dir, TB_CKPT_STATE));
        TB_TRY(tb_st_open(&f, p));
        TB_TRY(load_moments(&f, params, adam));
        adam->step = step;
    }
    if (state) {
        tb_train_state_free(state);
        *state = s;
        memset(&s, 0, sizeof s);
    }
error:
    tb_train_state_free(&s);
    tb_st_close(&f);
    return rc;
}
