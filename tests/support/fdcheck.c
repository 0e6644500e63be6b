/* Central finite-difference gradient checks (see fdcheck.h). */
#include "fdcheck.h"

#include <math.h>

tb_fd_result tb_fdcheck(tb_fd_objective f, void *ctx, float *x, const float *grad, size_t n,
                        float h, size_t max_checks)
{
    tb_fd_result res = {0};
    double num2 = 0.0, ref2 = 0.0, ana2 = 0.0;
    size_t count = n <= max_checks ? n : max_checks;
    for (size_t c = 0; c < count; c++) {
        /* Spread the checked elements over the tensor, offset so they are not all row starts. */
        size_t i = count == n ? c : (size_t)(((unsigned long long)c * n) / count + (c * 7919u) % (n / count));
        if (i >= n) i = n - 1;
        const float x0 = x[i];
        const float xp = x0 + h, xm = x0 - h;
        x[i] = xp;
        double lp = f(ctx);
        x[i] = xm;
        double lm = f(ctx);
        x[i] = x0;
        double g_fd = (lp - lm) / ((double)xp - (double)xm);
        double d = g_fd - (double)grad[i];
        num2 += d * d;
        ref2 += g_fd * g_fd;
        ana2 += (double)grad[i] * grad[i];
        if (fabs(d) > res.max_abs) res.max_abs = fabs(d);
    }
    f(ctx); /* leave the outputs of the unperturbed input behind */
    double den = fmax(sqrt(ref2), sqrt(ana2));
    res.rel_err = sqrt(num2) / fmax(den, 1e-30);
    res.norm_ref = sqrt(ref2);
    res.checked = count;
    return res;
}

double tb_fd_dot(const float *r, const float *out, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * (double)out[i];
    return s;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void tb_fd_fill(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(&s) >> 11) * 0x1.0p-53;
        x[i] = (float)(lo + (hi - lo) * u);
    }
}

double tb_rel_err(const float *a, const float *b, size_t n, double *max_abs)
{
    double d2 = 0.0, b2 = 0.0, mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        d2 += d * d;
        b2 += (double)b[i] * b[i];
        if (fabs(d) > mx) mx = fabs(d);
    }
    if (max_abs) *max_abs = mx;
    return b2 > 0.0 ? sqrt(d2 / b2) : sqrt(d2);
}
