/* Training losses (tb/model/loss.h): values accumulated in double, gradients accumulated (+=). */
#include "tb/model/loss.h"

#include "tb/base/error.h"

#include <math.h>

#include "ops_math.h"

#define ATT_MASKED (-100.0f) /* attention entries <= this are masked and replaced by 0 */

/* Sums run in LOSS_BLOCKS fixed blocks (OpenMP threads take whole blocks) whose partial sums
 * are added in block order: the value is bit-identical whatever the thread count. */
#define LOSS_BLOCKS 64

static double sum_blocks(const double *part)
{
    double s = 0.0;
    for (int k = 0; k < LOSS_BLOCKS; k++) s += part[k];
    return s;
}

int tb_loss_mse(double *loss, float *dstudent, const float *student, const float *target,
                size_t n, float grad_scale)
{
    if (!loss || !student || !target) return TB_ERR(TB_EINVAL, "tb_loss_mse: NULL loss, student or target");
    if (n == 0) return TB_ERR(TB_EINVAL, "tb_loss_mse: empty tensors (n = 0)");
    double part[LOSS_BLOCKS];
    const float g = (float)(2.0 * grad_scale / (double)n);
#pragma omp parallel for schedule(static)
    for (int k = 0; k < LOSS_BLOCKS; k++) {
        const size_t i0 = n * (size_t)k / LOSS_BLOCKS, i1 = n * (size_t)(k + 1) / LOSS_BLOCKS;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (size_t i = i0; i < i1; i++) {
            double d = (double)student[i] - (double)target[i];
            acc += d * d;
        }
        if (dstudent) {
#pragma omp simd
            for (size_t i = i0; i < i1; i++) dstudent[i] += g * (student[i] - target[i]);
        }
        part[k] = acc;
    }
    *loss = sum_blocks(part) / (double)n;
    return TB_OK;
}

/* Elements [0, m) of the attention MSE: returns the sum of squared differences after replacing
 * entries <= -100 by 0 in both tensors; adds g (s' - t') to d where the student was not replaced. */
OPS_CLONES static double att_mse_block(float *d, const float *restrict s, const float *restrict t,
                                       size_t m, float g)
{
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (size_t i = 0; i < m; i++) {
        float sv = s[i], tv = t[i];
        float a = sv <= ATT_MASKED ? 0.0f : sv;
        float b = tv <= ATT_MASKED ? 0.0f : tv;
        double diff = (double)a - (double)b;
        acc += diff * diff;
    }
    if (d) {
#pragma omp simd
        for (size_t i = 0; i < m; i++) {
            float sv = s[i], tv = t[i];
            float b = tv <= ATT_MASKED ? 0.0f : tv;
            d[i] += sv <= ATT_MASKED ? 0.0f : g * (sv - b);
        }
    }
    return acc;
}

int tb_loss_att_mse(double *loss, float *dstudent, const float *student, const float *teacher,
                    size_t n, float grad_scale)
{
    if (!loss || !student || !teacher)
        return TB_ERR(TB_EINVAL, "tb_loss_att_mse: NULL loss, student or teacher");
    if (n == 0) return TB_ERR(TB_EINVAL, "tb_loss_att_mse: empty tensors (n = 0)");
    double part[LOSS_BLOCKS];
    const float g = (float)(2.0 * grad_scale / (double)n);
#pragma omp parallel for schedule(static)
    for (int k = 0; k < LOSS_BLOCKS; k++) {
        const size_t i0 = n * (size_t)k / LOSS_BLOCKS, i1 = n * (size_t)(k + 1) / LOSS_BLOCKS;
        double acc = att_mse_block(dstudent ? dstudent + i0 : NULL, student + i0, teacher + i0, i1 - i0, g);
        part[k] = acc;
    }
    *loss = sum_blocks(part) / (double)n;
    return TB_OK;
}

/* One row of the soft cross-entropy: returns sum_k -p_k log q_k and adds g (q - p) to d. */
static double soft_ce_row(float *d, const float *s, const float *t, int K, double it, double g)
{
    double ms = s[0] * it, mt = t[0] * it;
    for (int j = 1; j < K; j++) {
        ms = fmax(ms, s[j] * it);
        mt = fmax(mt, t[j] * it);
    }
    double zs = 0.0, zt = 0.0;
    for (int j = 0; j < K; j++) {
        zs += exp(s[j] * it - ms);
        zt += exp(t[j] * it - mt);
    }
    const double lzs = log(zs);
    double acc = 0.0;
    for (int j = 0; j < K; j++) {
        double pt = exp(t[j] * it - mt) / zt;
        double logq = s[j] * it - ms - lzs;
        acc -= pt * logq;
        if (d) d[j] += (float)(g * (exp(logq) - pt));
    }
    return acc;
}

int tb_loss_soft_ce(double *loss, float *dstudent, const float *student, const float *teacher,
                    int N, int K, float temp, float grad_scale)
{
    if (!loss || !student || !teacher)
        return TB_ERR(TB_EINVAL, "tb_loss_soft_ce: NULL loss, student or teacher");
    if (N <= 0 || K <= 0)
        return TB_ERR(TB_EINVAL, "tb_loss_soft_ce: N and K must be > 0, got N=%d K=%d", N, K);
    if (!(temp > 0.0f) || !isfinite(temp))
        return TB_ERR(TB_EINVAL, "tb_loss_soft_ce: temperature must be finite and > 0, got %g", (double)temp);
    const double it = 1.0 / (double)temp;
    const double g = (double)grad_scale / ((double)temp * (double)N * (double)K);
    double part[LOSS_BLOCKS];
#pragma omp parallel for schedule(static)
    for (int k = 0; k < LOSS_BLOCKS; k++) {
        const int r0 = (int)((long long)N * k / LOSS_BLOCKS), r1 = (int)((long long)N * (k + 1) / LOSS_BLOCKS);
        double acc = 0.0;
        for (int r = r0; r < r1; r++) {
            const size_t o = (size_t)r * K;
            acc += soft_ce_row(dstudent ? dstudent + o : NULL, student + o, teacher + o, K, it, g);
        }
        part[k] = acc;
    }
    *loss = sum_blocks(part) / ((double)N * (double)K);
    return TB_OK;
}

/* One row of the cross-entropy: returns -log softmax(z)[label] and adds g (softmax - onehot) to d.
 * The exponentials are fp32 (vectorised, rows can be a 30522-word vocabulary), their sum and the
 * log-sum-exp are double. */
static double ce_row(float *restrict d, const float *restrict z, int K, int label, double g)
{
    float m = z[0];
#pragma omp simd reduction(max : m)
    for (int j = 1; j < K; j++) m = z[j] > m ? z[j] : m;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < K; j++) sum += (double)ops_expf(z[j] - m);
    const double lse = (double)m + log(sum);
    if (d) {
        const float gf = (float)(g / sum);
#pragma omp simd
        for (int j = 0; j < K; j++) d[j] += gf * ops_expf(z[j] - m);
        d[label] -= (float)g;
    }
    return lse - (double)z[label];
}

int tb_loss_ce(double *loss, float *dlogits, const float *logits, const int32_t *labels,
               int N, int K, int ignore_index, float grad_scale, int *count)
{
    if (!loss || !logits || !labels) return TB_ERR(TB_EINVAL, "tb_loss_ce: NULL loss, logits or labels");
    if (N <= 0 || K <= 0) return TB_ERR(TB_EINVAL, "tb_loss_ce: N and K must be > 0, got N=%d K=%d", N, K);
    int used = 0;
    for (int r = 0; r < N; r++) {
        if (labels[r] == ignore_index) continue;
        if (labels[r] < 0 || labels[r] >= K)
            return TB_ERR(TB_EINVAL, "tb_loss_ce: label %d of row %d is outside [0, %d) and is not the "
                          "ignore index %d", (int)labels[r], r, K, ignore_index);
        used++;
    }
    if (count) *count = used;
    if (used == 0) {
        *loss = 0.0;
        return TB_OK;
    }
    const double g = (double)grad_scale / (double)used;
    double part[LOSS_BLOCKS];
#pragma omp parallel for schedule(static)
    for (int k = 0; k < LOSS_BLOCKS; k++) {
        const int r0 = (int)((long long)N * k / LOSS_BLOCKS), r1 = (int)((long long)N * (k + 1) / LOSS_BLOCKS);
        double acc = 0.0;
        for (int r = r0; r < r1; r++) {
            if (labels[r] == ignore_index) continue;
            const size_t o = (size_t)r * K;
            acc += ce_row(dlogits ? dlogits + o : NULL, logits + o, K, labels[r], g);
        }
        part[k] = acc;
    }
    *loss = sum_blocks(part) / (double)used;
    return TB_OK;
}
