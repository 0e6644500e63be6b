/* optim.c - BertAdam (tb/model/optim.h). */
#include "tb/model/optim.h"

#include "tb/base/error.h"

#include <math.h>
#ifdef __SSE2__
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

/* Elements per chunk of the norm reduction; fixed so the sum order never depends on threads. */
#define NORM_CHUNK 8192

void tb_adam_options_default(tb_adam_options *o)
{
    o->lr = 5e-5;
    o->b1 = 0.9;
    o->b2 = 0.999;
    o->eps = 1e-6;
    o->weight_decay = 0.01;
    o->max_grad_norm = 1.0;
    o->schedule = TB_SCHEDULE_WARMUP_LINEAR;
    o->warmup = 0.1;
    o->t_total = -1;
}

int tb_lr_schedule_parse(const char *s, tb_lr_schedule *out)
{
    if (!s) return TB_ERR(TB_EINVAL, "no learning-rate schedule given");
    if (strcmp(s, "none") == 0 || strcmp(s, "constant") == 0) *out = TB_SCHEDULE_CONSTANT;
    else if (strcmp(s, "warmup_linear") == 0) *out = TB_SCHEDULE_WARMUP_LINEAR;
    else if (strcmp(s, "warmup_constant") == 0) *out = TB_SCHEDULE_WARMUP_CONSTANT;
    else
        return TB_ERR(TB_EINVAL, "unknown learning-rate schedule '%s': use none, constant, warmup_linear or warmup_constant", s);
    return TB_OK;
}

const char *tb_lr_schedule_name(tb_lr_schedule s)
{
    switch (s) {
    case TB_SCHEDULE_CONSTANT: return "none";
    case TB_SCHEDULE_WARMUP_LINEAR: return "warmup_linear";
    case TB_SCHEDULE_WARMUP_CONSTANT: return "warmup_constant";
    }
    return "?";
}

double tb_lr_multiplier(tb_lr_schedule s, double warmup, int64_t t_total, int64_t step)
{
    if (s == TB_SCHEDULE_CONSTANT || t_total < 0) return 1.0;
    if (warmup < 0.0) warmup = 0.0;  /* the reference maps warmup -1 to 0 */
    double x = (double)step / (double)t_total;
    if (x < warmup) return x / warmup;
    if (s == TB_SCHEDULE_WARMUP_CONSTANT) return 1.0;
    double r = (x - 1.0) / (warmup - 1.0);
    return r > 0.0 ? r : 0.0;
}

static int check_options(const tb_adam_options *o)
{
    int rc = TB_OK;
    TB_CHECK(o->lr >= 0.0 && isfinite(o->lr), TB_EINVAL, "Adam learning rate must be >= 0, got %g", o->lr);
    TB_CHECK(o->b1 >= 0.0 && o->b1 < 1.0, TB_EINVAL, "Adam b1 must be in [0, 1), got %g", o->b1);
    TB_CHECK(o->b2 >= 0.0 && o->b2 < 1.0, TB_EINVAL, "Adam b2 must be in [0, 1), got %g", o->b2);
    TB_CHECK(o->eps >= 0.0, TB_EINVAL, "Adam epsilon must be >= 0, got %g", o->eps);
    TB_CHECK(o->weight_decay >= 0.0, TB_EINVAL, "weight decay must be >= 0, got %g", o->weight_decay);
    TB_CHECK(o->schedule >= TB_SCHEDULE_CONSTANT && o->schedule <= TB_SCHEDULE_WARMUP_CONSTANT, TB_EINVAL,
             "unknown learning-rate schedule %d", (int)o->schedule);
    TB_CHECK((o->warmup >= 0.0 && o->warmup < 1.0) || o->warmup == -1.0, TB_EINVAL,
             "warm-up proportion must be in [0, 1) or -1, got %g", o->warmup);
    TB_CHECK(o->schedule == TB_SCHEDULE_CONSTANT || o->t_total != 0, TB_EINVAL,
             "schedule %s needs t_total > 0 (planned updates) or < 0 (no schedule), got 0",
             tb_lr_schedule_name(o->schedule));
error:
    return rc;
}

int tb_adam_init(tb_adam *a, const tb_param_table *p, const tb_adam_options *o)
{
    int rc = TB_OK;
    memset(a, 0, sizeof *a);
    TB_CHECK(p && p->count > 0 && p->values, TB_EINVAL, "BertAdam needs a non-empty parameter table");
    TB_TRY(check_options(o));
    a->opt = *o;
    a->total = p->total;
    a->count = p->count;
    for (int i = 0; i < p->count; i++) {
        const tb_param *it = &p->items[i];
        TB_CHECK(it->value.dtype == TB_F32 && it->grad.dtype == TB_F32, TB_EINVAL,
                 "parameter '%s' is not f32", it->name);
        size_t n = (size_t)tb_tensor_numel(&it->value);
        size_t off = tb_params_offset(p, it);
        TB_CHECK(off + n <= p->total && (float *)it->grad.data == p->grads + off, TB_EINVAL,
                 "parameter '%s' does not lie in the table's value/gradient buffers at the same offset", it->name);
        size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
        if (chunks > a->max_chunks) a->max_chunks = chunks;
    }
    a->m = tb_aligned_alloc(a->total * sizeof(float));
    a->v = tb_aligned_alloc(a->total * sizeof(float));
    a->partial = malloc((a->max_chunks ? a->max_chunks : 1) * sizeof(double));
    a->norms = calloc((size_t)a->count, sizeof(double));
    TB_CHECK(a->m && a->v && a->partial && a->norms, TB_ENOMEM, "cannot allocate BertAdam moments (2 x %zu floats)",
             a->total);
    memset(a->m, 0, a->total * sizeof(float));
    memset(a->v, 0, a->total * sizeof(float));
    return TB_OK;
error:
    tb_adam_free(a);
    return rc;
}

void tb_adam_free(tb_adam *a)
{
    if (!a) return;
    tb_aligned_free(a->m);
    tb_aligned_free(a->v);
    free(a->partial);
    free(a->norms);
    memset(a, 0, sizeof *a);
}

double tb_adam_lr(const tb_adam *a)
{
    return a->opt.lr * tb_lr_multiplier(a->opt.schedule, a->opt.warmup, a->opt.t_total, a->step);
}

/* Sum of g[i]^2 in double, in a fixed order (four lanes, then the tail). */
static double sum_squares(const float *g, size_t n)
{
    size_t i = 0;
    double s = 0.0;
#ifdef __SSE2__
    __m128d a0 = _mm_setzero_pd(), a1 = _mm_setzero_pd();
    for (; i + 4 <= n; i += 4) {
        __m128 x = _mm_loadu_ps(g + i);
        __m128d lo = _mm_cvtps_pd(x), hi = _mm_cvtps_pd(_mm_movehl_ps(x, x));
        a0 = _mm_add_pd(a0, _mm_mul_pd(lo, lo));
        a1 = _mm_add_pd(a1, _mm_mul_pd(hi, hi));
    }
    double lanes[4];
    _mm_storeu_pd(lanes, a0);
    _mm_storeu_pd(lanes + 2, a1);
    s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    for (; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

/* ||g||_2 in double: chunk sums in parallel, then added in chunk order. */
static double grad_norm(const float *g, size_t n, double *partial)
{
    long chunks = (long)((n + NORM_CHUNK - 1) / NORM_CHUNK);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * NORM_CHUNK, hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
        partial[c] = sum_squares(g + lo, hi - lo);
    }
    double s = 0.0;
    for (long c = 0; c < chunks; c++) s += partial[c];
    return sqrt(s);
}

/* m, v, w updated in place for elements [0, n) (scale: the clipping factor of g). The SSE path
 * does the same IEEE operations in the same order as the scalar one (sqrtps and divps are
 * correctly rounded), so both give identical bits; it exists because gcc will not vectorise a
 * sqrtf loop without -fno-math-errno. */
static void adam_chunk(float *restrict w, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                       float scale, float b1, float b2, float c1, float c2, float eps, float wd, float lr)
{
    size_t i = 0;
#ifdef __SSE2__
    const __m128 vs = _mm_set1_ps(scale), vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vc1 = _mm_set1_ps(c1),
                 vc2 = _mm_set1_ps(c2), veps = _mm_set1_ps(eps), vwd = _mm_set1_ps(wd), vlr = _mm_set1_ps(lr);
    for (; i + 4 <= n; i += 4) {
        __m128 gi = _mm_mul_ps(_mm_loadu_ps(g + i), vs);
        __m128 mi = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vc1, gi));
        __m128 vi = _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)), _mm_mul_ps(_mm_mul_ps(vc2, gi), gi));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 wi = _mm_loadu_ps(w + i);
        __m128 u = _mm_add_ps(_mm_div_ps(mi, _mm_add_ps(_mm_sqrt_ps(vi), veps)), _mm_mul_ps(vwd, wi));
        _mm_storeu_ps(w + i, _mm_sub_ps(wi, _mm_mul_ps(vlr, u)));
    }
#endif
    for (; i < n; i++) {
        float gi = g[i] * scale;
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float u = mi / (sqrtf(vi) + eps) + wd * w[i];
        w[i] -= lr * u;
    }
}

/* Elements per parallel work item of the update. */
#define UPDATE_CHUNK 16384

static void adam_update(float *w, const float *g, float *m, float *v, size_t n, float scale, double b1d, double b2d,
                        float eps, float wd, float lr)
{
    /* 1 - beta in double, then rounded, as torch does with a Python float coefficient */
    const float b1 = (float)b1d, b2 = (float)b2d, c1 = (float)(1.0 - b1d), c2 = (float)(1.0 - b2d);
    long chunks = (long)((n + UPDATE_CHUNK - 1) / UPDATE_CHUNK);
#pragma omp parallel for schedule(static) if (chunks > 4)
    for (long c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * UPDATE_CHUNK, len = n - lo < UPDATE_CHUNK ? n - lo : UPDATE_CHUNK;
        adam_chunk(w + lo, g + lo, m + lo, v + lo, len, scale, b1, b2, c1, c2, eps, wd, lr);
    }
}

static int check_table(const tb_adam *a, const tb_param_table *p)
{
    int rc = TB_OK;
    TB_CHECK(a && a->m, TB_EINVAL, "BertAdam state is not initialised (call tb_adam_init)");
    TB_CHECK(p && p->count == a->count && p->total == a->total, TB_EINVAL,
             "parameter table (%d tensors, %zu floats) is not the one BertAdam was made for (%d, %zu)",
             p ? p->count : 0, p ? p->total : 0, a->count, a->total);
error:
    return rc;
}

int tb_adam_measure(tb_adam *a, const tb_param_table *p)
{
    int rc = TB_OK;
    TB_TRY(check_table(a, p));
    for (int i = 0; i < p->count; i++) {
        const tb_param *it = &p->items[i];
        a->norms[i] = it->trainable ? grad_norm(p->grads + tb_params_offset(p, it),
                                                (size_t)tb_tensor_numel(&it->value), a->partial)
                                    : 0.0;
    }
error:
    return rc;
}

int tb_adam_apply(tb_adam *a, tb_param_table *p)
{
    int rc = TB_OK;
    TB_TRY(check_table(a, p));
    const float lr = (float)tb_adam_lr(a);
    for (int i = 0; i < p->count; i++) {
        tb_param *it = &p->items[i];
        if (!it->trainable) continue;
        size_t n = (size_t)tb_tensor_numel(&it->value);
        size_t off = tb_params_offset(p, it);
        const float *g = p->grads + off;
        float scale = 1.0f;
        if (a->opt.max_grad_norm > 0.0) {
            /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when < 1 */
            double coef = a->opt.max_grad_norm / (a->norms[i] + 1e-6);
            if (coef < 1.0) scale = (float)coef;
        }
        float wd = it->no_decay ? 0.0f : (float)a->opt.weight_decay;
        adam_update(p->values + off, g, a->m + off, a->v + off, n, scale, a->opt.b1, a->opt.b2,
                    (float)a->opt.eps, wd, lr);
    }
    a->step++;
error:
    return rc;
}

int tb_adam_step(tb_adam *a, tb_param_table *p)
{
    int rc = TB_OK;
    TB_TRY(tb_adam_measure(a, p));
    TB_TRY(tb_adam_apply(a, p));
error:
    return rc;
}
