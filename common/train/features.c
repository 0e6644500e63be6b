/* features.c - teacher-feature messages and student requests (tb/train/features.h). */
#include "tb/train/features.h"

#include "tb/base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a64(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

const char *tb_features_hash_str(const void *p, size_t n, char *buf, size_t bufn)
{
    if (!buf || bufn == 0) return "";
    snprintf(buf, bufn, "fnv1a64:%016llx", (unsigned long long)fnv1a64(p, n));
    return buf;
}

const char *tb_features_config_hash(const tb_bert_config *c, char *buf, size_t n)
{
    char text[512];
    int len = snprintf(text, sizeof text,
                       "tinybert-c-config-v1 vocab_size=%d hidden_size=%d num_hidden_layers=%d "
                       "num_attention_heads=%d intermediate_size=%d max_position_embeddings=%d "
                       "type_vocab_size=%d layer_norm_eps=%.9g pad_token_id=%d head=%d num_labels=%d",
                       c->vocab_size, c->hidden_size, c->num_hidden_layers, c->num_attention_heads,
                       c->intermediate_size, c->max_position_embeddings, c->type_vocab_size,
                       (double)c->layer_norm_eps, c->pad_token_id, (int)c->head,
                       c->head == TB_HEAD_NONE ? 0 : c->num_labels);
    if (len < 0) len = 0;
    if ((size_t)len >= sizeof text) len = (int)sizeof text - 1;
    return tb_features_hash_str(text, (size_t)len, buf, n);
}

void tb_features_meta_from_model(tb_features_meta *meta, const tb_bert_model *teacher)
{
    memset(meta, 0, sizeof *meta);
    const tb_bert_config *c = &teacher->config;
    meta->layers = c->num_hidden_layers;
    meta->heads = c->num_attention_heads;
    meta->hidden_size = c->hidden_size;
    meta->num_labels = c->head == TB_HEAD_NONE ? 0 : c->num_labels;
    meta->dtype = TB_F32;
    tb_features_config_hash(c, meta->config_hash, sizeof meta->config_hash);
}

int tb_features_mask_parse(const char *s, const char *what, uint64_t *out)
{
    int rc = TB_OK;
    uint64_t mask = 0;
    const char *p = s;
    TB_CHECK(s, TB_EINVAL, "%s: no index list", what);
    while (*p) {
        TB_CHECK(*p >= '0' && *p <= '9', TB_EFORMAT,
                 "%s: '%s' is not a comma-separated list of indices (at byte %d); write e.g. \"0,3,6\"", what, s,
                 (int)(p - s));
        long v = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p - '0');
            if (++digits > 3) break;
            p++;
        }
        TB_CHECK(digits <= 3 && v < 64, TB_EFORMAT, "%s: index in '%s' is not below 64", what, s);
        mask |= 1ull << v;
        if (*p == ',') {
            p++;
            TB_CHECK(*p, TB_EFORMAT, "%s: '%s' ends with a comma", what, s);
        } else {
            TB_CHECK(*p == '\0', TB_EFORMAT,
                     "%s: '%s' is not a comma-separated list of indices (at byte %d); write e.g. \"0,3,6\"", what, s,
                     (int)(p - s));
        }
    }
    *out = mask;
error:
    return rc;
}

const char *tb_features_mask_format(uint64_t mask, char *buf, size_t n)
{
    size_t used = 0;
    if (!buf || n == 0) return "";
    buf[0] = '\0';
    for (int i = 0; i < 64 && used < n; i++)
        if (mask >> i & 1) used += (size_t)snprintf(buf + used, n - used, "%s%d", used ? "," : "", i);
    return buf;
}

int tb_features_request_to_hello(const tb_features_request *r, tb_msg *hello)
{
    int rc = TB_OK;
    char buf[256];
    TB_TRY(tb_msg_set_int(hello, "features.student_layers", r->student_layers));
    TB_TRY(tb_msg_set_str(hello, "features.hidden", tb_features_mask_format(r->hidden, buf, sizeof buf)));
    TB_TRY(tb_msg_set_str(hello, "features.attn", tb_features_mask_format(r->attn, buf, sizeof buf)));
    TB_TRY(tb_msg_set_bool(hello, "features.logits", r->logits != 0));
    TB_TRY(tb_msg_set_int(hello, "features.student_heads", r->student_heads));
    if (r->expect_hidden_size) TB_TRY(tb_msg_set_int(hello, "expect.hidden_size", r->expect_hidden_size));
    if (r->expect_config_hash[0]) TB_TRY(tb_msg_set_str(hello, "expect.config_hash", r->expect_config_hash));
    if (r->expect_vocab_hash[0]) TB_TRY(tb_msg_set_str(hello, "expect.vocab_hash", r->expect_vocab_hash));
    if (r->expect_label_order_hash[0])
        TB_TRY(tb_msg_set_str(hello, "expect.label_order_hash", r->expect_label_order_hash));
error:
    return rc;
}

/* Reads an optional int field in [lo, hi]. */
static int opt_int(const tb_msg *m, const char *key, int64_t lo, int64_t hi, int *out)
{
    int rc = TB_OK;
    const tb_field *f = tb_msg_find(m, key);
    if (!f) return TB_OK;
    TB_CHECK(f->kind == TB_VAL_INT, TB_EFORMAT, "hello field %s must be an integer", key);
    TB_CHECK(f->v.i >= lo && f->v.i <= hi, TB_EFORMAT, "hello field %s = %lld is outside [%lld, %lld]", key,
             (long long)f->v.i, (long long)lo, (long long)hi);
    *out = (int)f->v.i;
error:
    return rc;
}

static int opt_hash(const tb_msg *m, const char *key, char *out)
{
    int rc = TB_OK;
    const tb_field *f = tb_msg_find(m, key);
    if (!f) return TB_OK;
    TB_CHECK(f->kind == TB_VAL_STR, TB_EFORMAT, "hello field %s must be a string", key);
    TB_CHECK(f->v.str.len < TB_FEATURES_HASH_MAX && f->v.str.len > 0, TB_EFORMAT,
             "hello field %s has %zu bytes; a hash is 1 to %d bytes", key, f->v.str.len, TB_FEATURES_HASH_MAX - 1);
    memcpy(out, f->v.str.ptr, f->v.str.len + 1);
error:
    return rc;
}

int tb_features_request_from_hello(const tb_msg *hello, tb_features_request *r)
{
    int rc = TB_OK;
    memset(r, 0, sizeof *r);
    TB_TRY(opt_int(hello, "features.student_layers", 0, TB_FEATURES_MAX_LAYERS, &r->student_layers));
    TB_TRY(opt_int(hello, "features.student_heads", 0, 1 << 20, &r->student_heads));
    TB_TRY(opt_int(hello, "expect.hidden_size", 0, 1 << 24, &r->expect_hidden_size));
    static const char *const lists[2] = {"features.hidden", "features.attn"};
    for (int i = 0; i < 2; i++) {
        const tb_field *f = tb_msg_find(hello, lists[i]);
        if (!f) continue;
        TB_CHECK(f->kind == TB_VAL_STR, TB_EFORMAT, "hello field %s must be a string such as \"0,3,6\"", lists[i]);
        TB_TRY(tb_features_mask_parse(f->v.str.ptr, lists[i], i == 0 ? &r->hidden : &r->attn));
    }
    const tb_field *f = tb_msg_find(hello, "features.logits");
    if (f) {
        TB_CHECK(f->kind == TB_VAL_BOOL || f->kind == TB_VAL_INT, TB_EFORMAT, "hello field features.logits must be a bool");
        r->logits = f->kind == TB_VAL_BOOL ? f->v.b != 0 : f->v.i != 0;
    }
    TB_TRY(opt_hash(hello, "expect.config_hash", r->expect_config_hash));
    TB_TRY(opt_hash(hello, "expect.vocab_hash", r->expect_vocab_hash));
    TB_TRY(opt_hash(hello, "expect.label_order_hash", r->expect_label_order_hash));
    return TB_OK;
error:
    memset(r, 0, sizeof *r);
    return rc;
}

int tb_features_request_resolve(const tb_features_request *r, const tb_features_meta *meta, const char *who,
                                tb_features_request *out)
{
    int rc = TB_OK;
    tb_features_request res = *r;
    const int N = meta->layers;
    if (!who) who = "student";
    TB_CHECK(N >= 1 && N <= TB_FEATURES_MAX_LAYERS, TB_EINVAL, "%s: the teacher has %d layers; 1 to %d supported",
             who, N, TB_FEATURES_MAX_LAYERS);
    if (r->student_layers > 0) {
        const int M = r->student_layers;
        TB_CHECK(M <= N && N % M == 0, TB_EINVAL,
                 "%s: a %d-layer student cannot be mapped onto a %d-layer teacher (the teacher's depth must be a "
                 "multiple of the student's); give explicit features.hidden / features.attn lists instead",
                 who, M, N);
        const int k = N / M;
        for (int j = 0; j <= M; j++) res.hidden |= 1ull << (j * k);
        for (int i = 0; i < M; i++) res.attn |= 1ull << (i * k + k - 1);
    }
    res.student_layers = 0;
    uint64_t hid_ok = N >= 63 ? ~0ull : (1ull << (N + 1)) - 1, att_ok = (1ull << N) - 1;
    char buf[256];
    TB_CHECK(!(res.hidden & ~hid_ok), TB_EINVAL, "%s asks for teacher hidden states %s; the teacher has 0..%d", who,
             tb_features_mask_format(res.hidden & ~hid_ok, buf, sizeof buf), N);
    TB_CHECK(!(res.attn & ~att_ok), TB_EINVAL, "%s asks for attention scores of teacher layers %s; the teacher has "
             "layers 0..%d", who, tb_features_mask_format(res.attn & ~att_ok, buf, sizeof buf), N - 1);
    TB_CHECK(!res.logits || meta->num_labels > 0, TB_EINVAL,
             "%s asks for teacher logits but the teacher has no classification head; use a fine-tuned teacher", who);
    TB_CHECK(!res.attn || !r->student_heads || r->student_heads == meta->heads, TB_ESHAPE,
             "%s has %d attention heads, the teacher %d: the attention loss compares scores head by head; give the "
             "student %d heads or do not ask for attention scores", who, r->student_heads, meta->heads, meta->heads);
    TB_CHECK(!r->expect_hidden_size || r->expect_hidden_size == meta->hidden_size, TB_ESHAPE,
             "%s expects a teacher of hidden size %d (its fit_dense size), the teacher has %d", who,
             r->expect_hidden_size, meta->hidden_size);
    TB_CHECK(!r->expect_config_hash[0] || !strcmp(r->expect_config_hash, meta->config_hash), TB_EFORMAT,
             "%s expects teacher config %s, the emitter's teacher is %s: start it with the teacher the student was "
             "set up for", who, r->expect_config_hash, meta->config_hash);
    TB_CHECK(!r->expect_vocab_hash[0] || !meta->vocab_hash[0] || !strcmp(r->expect_vocab_hash, meta->vocab_hash),
             TB_EFORMAT, "%s expects vocabulary %s, the emitter's teacher uses %s", who, r->expect_vocab_hash,
             meta->vocab_hash);
    *out = res;
error:
    return rc;
}

void tb_features_request_union(tb_features_request *acc, const tb_features_request *r)
{
    acc->hidden |= r->hidden;
    acc->attn |= r->attn;
    acc->logits |= r->logits != 0;
}

static int popcount64(uint64_t x)
{
    return __builtin_popcountll(x);
}

uint64_t tb_features_bytes(const tb_features_request *r, const tb_features_meta *meta, int64_t B, int64_t T)
{
    uint64_t es = meta->dtype == TB_F16 ? 2 : 4;
    uint64_t b = (uint64_t)B, t = (uint64_t)T;
    uint64_t n = (uint64_t)popcount64(r->hidden) * b * t * (uint64_t)meta->hidden_size +
                 (uint64_t)popcount64(r->attn) * b * (uint64_t)meta->heads * t * t +
                 (r->logits ? b * (uint64_t)meta->num_labels : 0);
    return n * es;
}

void tb_features_run_flags(const tb_features_request *r, tb_bert_run *run)
{
    run->scores_layers = r->attn;
    run->logits = r->logits != 0;
    run->mlm = 0;
}

/* ---- f16 conversion ------------------------------------------------------------------------- */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TB_HAVE_F16C_PATH 1

__attribute__((target("avx,f16c"))) static void f32_to_f16_f16c(uint16_t *d, const float *s, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(void *)(d + i), h);
    }
    for (; i < n; i++) d[i] = tb_f32_to_f16(s[i]);
}

__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(float *d, const uint16_t *s, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(s + i))));
    for (; i < n; i++) d[i] = tb_f16_to_f32(s[i]);
}

static int have_f16c(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    }
    return known;
}
#endif

void tb_features_f32_to_f16(uint16_t *dst, const float *src, int64_t n)
{
#ifdef TB_HAVE_F16C_PATH
    if (have_f16c()) {
        f32_to_f16_f16c(dst, src, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = tb_f32_to_f16(src[i]);
}

void tb_features_f16_to_f32(float *dst, const uint16_t *src, int64_t n)
{
#ifdef TB_HAVE_F16C_PATH
    if (have_f16c()) {
        f16_to_f32_f16c(dst, src, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = tb_f16_to_f32(src[i]);
}

/* Puts data[ndim, shape] into m under key: borrowed f32, or converted to f16 (owned). */
static int add_tensor(tb_msg *m, const char *key, const float *data, int ndim, const int64_t *shape, tb_dtype dt)
{
    int rc = TB_OK;
    tb_tensor src = {0}, conv = {0};
    TB_CHECK(data, TB_EINVAL, "feature %s: the teacher's last forward did not compute it (run it with "
             "tb_features_run_flags)", key);
    TB_TRY(tb_tensor_borrow(&src, TB_F32, ndim, shape, (void *)data));
    if (dt == TB_F32) {
        TB_TRY(tb_msg_set_tensor_ref(m, key, &src));
    } else {
        TB_TRY(tb_tensor_alloc(&conv, TB_F16, ndim, shape));
        tb_features_f32_to_f16(conv.data, data, tb_tensor_numel(&conv));
        TB_TRY(tb_msg_set_tensor_move(m, key, &conv));
    }
error:
    tb_tensor_free(&conv);
    return rc;
}

int tb_features_add(tb_msg *m, const tb_bert_model *teacher, const tb_features_request *r,
                    const tb_features_meta *meta, int B, int T, const char *label_order)
{
    int rc = TB_OK;
    char key[64], buf[TB_FEATURES_HASH_MAX];
    TB_CHECK(meta->dtype == TB_F32 || meta->dtype == TB_F16, TB_EINVAL,
             "feature dtype must be f32 or f16, got %s", tb_dtype_name(meta->dtype));
    TB_CHECK(B > 0 && T > 0, TB_EINVAL, "feature batch %d x %d is empty", B, T);
    const int N = teacher->config.num_hidden_layers, C = teacher->config.hidden_size,
              NH = teacher->config.num_attention_heads;
    for (int j = 0; j <= N && j < 64; j++) {
        if (!(r->hidden >> j & 1)) continue;
        int64_t shape[3] = {B, T, C};
        snprintf(key, sizeof key, "teacher.hidden.%d", j);
        TB_TRY(add_tensor(m, key, tb_bert_hidden(teacher, j), 3, shape, meta->dtype));
    }
    for (int l = 0; l < N && l < 64; l++) {
        if (!(r->attn >> l & 1)) continue;
        int64_t shape[4] = {B, NH, T, T};
        snprintf(key, sizeof key, "teacher.attn.%d", l);
        TB_TRY(add_tensor(m, key, tb_bert_scores(teacher, l), 4, shape, meta->dtype));
    }
    if (r->logits) {
        int64_t shape[2] = {B, meta->num_labels};
        TB_TRY(add_tensor(m, "teacher.logits", tb_bert_logits(teacher), 2, shape, meta->dtype));
    }
    TB_TRY(tb_msg_set_str(m, "features.dtype", meta->dtype == TB_F16 ? "f16" : "f32"));
    TB_TRY(tb_msg_set_int(m, "teacher.layers", meta->layers));
    TB_TRY(tb_msg_set_int(m, "teacher.heads", meta->heads));
    TB_TRY(tb_msg_set_int(m, "teacher.hidden_size", meta->hidden_size));
    TB_TRY(tb_msg_set_int(m, "teacher.num_labels", meta->num_labels));
    TB_TRY(tb_msg_set_str(m, "teacher.config_hash", meta->config_hash));
    TB_TRY(tb_msg_set_bool(m, "teacher.dropout", meta->dropout != 0));
    if (label_order)
        TB_TRY(tb_msg_set_str(m, "label_order_hash",
                              tb_features_hash_str(label_order, strlen(label_order), buf, sizeof buf)));
error:
    return rc;
}

/* ---- receiving ------------------------------------------------------------------------------- */

static int meta_int(const tb_msg *m, const char *key, int lo, int hi, int *out)
{
    int rc = TB_OK;
    int64_t v;
    rc = tb_msg_get_int(m, key, &v);
    if (rc) return tb_err_wrap(rc, "feature message");
    TB_CHECK(v >= lo && v <= hi, TB_EFORMAT, "feature message: %s = %lld is outside [%d, %d]", key, (long long)v, lo,
             hi);
    *out = (int)v;
error:
    return rc;
}

static int meta_str(const tb_msg *m, const char *key, char *out, int required)
{
    int rc = TB_OK;
    const tb_field *f = tb_msg_find(m, key);
    if (!f && !required) return TB_OK;
    TB_CHECK(f, TB_ENOTFOUND, "feature message: no %s field; is the sender a tinybert-c emitter?", key);
    TB_CHECK(f->kind == TB_VAL_STR && f->v.str.len < TB_FEATURES_HASH_MAX, TB_EFORMAT,
             "feature message: %s must be a string of at most %d bytes", key, TB_FEATURES_HASH_MAX - 1);
    memcpy(out, f->v.str.ptr, f->v.str.len + 1);
error:
    return rc;
}

static int hash_expect(const char *what, const char *want, const char *got, const char *hint)
{
    if (!want[0]) return TB_OK;
    if (!got[0])
        return TB_ERR(TB_EFORMAT, "feature message carries no %s but the student expects %s", what, want);
    if (strcmp(want, got))
        return TB_ERR(TB_EFORMAT, "feature message: %s is %s, the student expects %s; %s", what, got, want, hint);
    return TB_OK;
}

/* Finds `key`, checks dtype and shape, and returns f32 data (converting f16 into v->owned). */
static int view_tensor(tb_features_view *v, const tb_msg *m, const char *key, int ndim, const int64_t *shape,
                       const float **out)
{
    int rc = TB_OK;
    const tb_tensor *t;
    tb_tensor conv = {0};
    rc = tb_msg_get_tensor(m, key, &t);
    if (rc) {
        tb_err_wrap(rc, "feature message lacks a feature the student asked for");
        goto error;
    }
    TB_TRY(tb_tensor_expect(t, key, v->meta.dtype, ndim, shape));
    if (v->meta.dtype == TB_F32 && tb_tensor_is_contiguous(t)) {
        *out = t->data;
    } else {
        if (t->dtype == TB_F32 || !tb_tensor_is_contiguous(t)) {
            TB_TRY(tb_tensor_convert(&conv, t, TB_F32));
        } else {
            TB_TRY(tb_tensor_alloc(&conv, TB_F32, t->ndim, t->shape));
            tb_features_f16_to_f32(conv.data, t->data, tb_tensor_numel(t));
        }
        tb_tensor *grown = realloc(v->owned, (size_t)(v->n_owned + 1) * sizeof *grown);
        TB_CHECK(grown, TB_ENOMEM, "out of memory converting feature %s", key);
        v->owned = grown;
        v->owned[v->n_owned++] = conv;
        *out = conv.data;
        memset(&conv, 0, sizeof conv);
    }
error:
    tb_tensor_free(&conv);
    return rc;
}

int tb_features_view_init(tb_features_view *v, const tb_msg *m, const tb_features_request *r)
{
    int rc = TB_OK;
    char key[64], dt[TB_FEATURES_HASH_MAX] = "", lo_hash[TB_FEATURES_HASH_MAX] = "";
    memset(v, 0, sizeof *v);
    tb_features_meta *mt = &v->meta;
    TB_TRY(meta_str(m, "features.dtype", dt, 1));
    if (!strcmp(dt, "f32")) mt->dtype = TB_F32;
    else if (!strcmp(dt, "f16")) mt->dtype = TB_F16;
    else TB_CHECK(0, TB_EFORMAT, "feature message: features.dtype is '%s'; expected f32 or f16", dt);
    TB_TRY(meta_int(m, "teacher.layers", 1, TB_FEATURES_MAX_LAYERS, &mt->layers));
    TB_TRY(meta_int(m, "teacher.heads", 1, 1 << 16, &mt->heads));
    TB_TRY(meta_int(m, "teacher.hidden_size", 1, 1 << 24, &mt->hidden_size));
    TB_TRY(meta_int(m, "teacher.num_labels", 0, 1 << 24, &mt->num_labels));
    TB_TRY(meta_str(m, "teacher.config_hash", mt->config_hash, 1));
    TB_TRY(meta_str(m, "vocab_hash", mt->vocab_hash, 0));
    TB_TRY(meta_str(m, "label_order_hash", lo_hash, 0));
    const tb_field *fd = tb_msg_find(m, "teacher.dropout");
    if (fd) mt->dropout = fd->kind == TB_VAL_BOOL ? fd->v.b : (fd->kind == TB_VAL_INT ? fd->v.i != 0 : 0);

    tb_features_request res;
    TB_TRY(tb_features_request_resolve(r, mt, "the student", &res));
    TB_TRY(hash_expect("vocab_hash", r->expect_vocab_hash, mt->vocab_hash,
                       "tokenize with the vocabulary the student and teacher were trained with"));
    TB_TRY(hash_expect("label_order_hash", r->expect_label_order_hash, lo_hash,
                       "the data's labels are in another order than the student's"));

    const tb_tensor *ids;
    rc = tb_msg_get_tensor(m, "input_ids", &ids);
    if (rc) {
        tb_err_wrap(rc, "feature message");
        goto error;
    }
    TB_CHECK(ids->ndim == 2 && ids->shape[0] > 0 && ids->shape[1] > 0, TB_ESHAPE,
             "feature message: input_ids must be [B, T] with B, T > 0");
    TB_CHECK(ids->shape[0] <= INT32_MAX && ids->shape[1] <= INT32_MAX, TB_ESHAPE,
             "feature message: input_ids shape too large");
    v->B = (int)ids->shape[0];
    v->T = (int)ids->shape[1];
    const int64_t B = v->B, T = v->T;
    for (int j = 0; j <= mt->layers; j++) {
        if (!(res.hidden >> j & 1)) continue;
        int64_t shape[3] = {B, T, mt->hidden_size};
        snprintf(key, sizeof key, "teacher.hidden.%d", j);
        TB_TRY(view_tensor(v, m, key, 3, shape, &v->hidden[j]));
    }
    for (int l = 0; l < mt->layers; l++) {
        if (!(res.attn >> l & 1)) continue;
        int64_t shape[4] = {B, mt->heads, T, T};
        snprintf(key, sizeof key, "teacher.attn.%d", l);
        TB_TRY(view_tensor(v, m, key, 4, shape, &v->scores[l]));
    }
    if (res.logits) {
        int64_t shape[2] = {B, mt->num_labels};
        TB_TRY(view_tensor(v, m, "teacher.logits", 2, shape, &v->logits));
    }
    v->teacher.num_layers = mt->layers;
    v->teacher.hidden_size = mt->hidden_size;
    v->teacher.hidden = v->hidden;
    v->teacher.scores = v->scores;
    v->teacher.logits = v->logits;
    return TB_OK;
error:
    tb_features_view_free(v);
    return rc;
}

void tb_features_view_free(tb_features_view *v)
{
    if (!v) return;
    for (int i = 0; i < v->n_owned; i++) tb_tensor_free(&v->owned[i]);
    free(v->owned);
    memset(v, 0, sizeof *v);
}
