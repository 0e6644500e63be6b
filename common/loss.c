/* Training losses (tb/loss.h): values accumulated in double, gradients accumulated (+=). */
#include "tb/loss.h"

#include "tb/error.h"

#include <math.h>

#define ATT_MASKED (-100.0f) /* attention entries <= this are masked and replaced by 0 */

int tb_loss_mse(double *loss, float *dstudent, const float *student, const float *target,
                size_t n, float grad_scale)
{
    if (!loss || !student || !target) return TB_ERR(TB_EINVAL, "tb_loss_mse: NULL loss, student or target");
    if (n == 0) return TB_ERR(TB_EINVAL, "tb_loss_mse: empty tensors (n = 0)");
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)student[i] - (double)target[i];
        acc += d * d;
    }
    if (dstudent) {
        const float g = (float)(2.0 * grad_scale / (double)n);
        for (size_t i = 0; i < n; i++) dstudent[i] += g * (student[i] - target[i]);
    }
    *loss = acc / (double)n;
    return TB_OK;
}

int tb_loss_att_mse(double *loss, float *dstudent, const float *student, const float *teacher,
                    size_t n, float grad_scale)
{
    if (!loss || !student || !teacher)
        return TB_ERR(TB_EINVAL, "tb_loss_att_mse: NULL loss, student or teacher");
    if (n == 0) return TB_ERR(TB_EINVAL, "tb_loss_att_mse: empty tensors (n = 0)");
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        double s = student[i] <= ATT_MASKED ? 0.0 : (double)student[i];
        double t = teacher[i] <= ATT_MASKED ? 0.0 : (double)teacher[i];
        acc += (s - t) * (s - t);
    }
    if (dstudent) {
        const float g = (float)(2.0 * grad_scale / (double)n);
        for (size_t i = 0; i < n; i++) {
            float t = teacher[i] <= ATT_MASKED ? 0.0f : teacher[i];
            dstudent[i] += student[i] <= ATT_MASKED ? 0.0f : g * (student[i] - t);
        }
    }
    *loss = acc / (double)n;
    return TB_OK;
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
    double acc = 0.0;
    for (int r = 0; r < N; r++) {
        const float *s = student + (size_t)r * K, *t = teacher + (size_t)r * K;
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
        for (int j = 0; j < K; j++) {
            double pt = exp(t[j] * it - mt) / zt;
            double logq = s[j] * it - ms - lzs;
            acc -= pt * logq;
            if (dstudent) dstudent[(size_t)r * K + j] += (float)(g * (exp(logq) - pt));
        }
    }
    *loss = acc / ((double)N * (double)K);
    return TB_OK;
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
    double acc = 0.0;
    for (int r = 0; r < N; r++) {
        if (labels[r] == ignore_index) continue;
        const float *z = logits + (size_t)r * K;
        double m = z[0];
        for (int j = 1; j < K; j++) m = fmax(m, z[j]);
        double sum = 0.0;
        for (int j = 0; j < K; j++) sum += exp(z[j] - m);
        const double lse = m + log(sum);
        acc += lse - z[labels[r]];
        if (dlogits) {
            float *d = dlogits + (size_t)r * K;
            for (int j = 0; j < K; j++) {
                double p = exp(z[j] - lse);
                d[j] += (float)(g * (p - (j == labels[r] ? 1.0 : 0.0)));
            }
        }
    }
    *loss = acc / (double)used;
    return TB_OK;
}
