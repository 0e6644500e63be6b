/* fdcheck.h - central finite-difference gradient checks for the fp32 operations of libtb.
 *
 * An operation out = f(x) is turned into a scalar objective L(x) = sum_i r_i out_i (r a fixed
 * random projection, computed in double), whose analytic gradient is the operation's backward
 * with dout = r. tb_fdcheck compares that gradient with
 *   (L(x + h e_i) - L(x - h e_i)) / ((x + h) - (x - h))        (the step as actually stored in fp32)
 * element by element and reports the relative error of the whole tensor:
 *   ||g_fd - g|| / max(||g_fd||, ||g||, 1e-30) over the checked elements.
 */
#ifndef TB_FDCHECK_H
#define TB_FDCHECK_H

#include <stddef.h>
#include <stdint.h>

/* Runs the forward pass (reading the perturbed inputs) and returns the objective. */
typedef double (*tb_fd_objective)(void *ctx);

typedef struct tb_fd_result {
    double rel_err;   /* ||g_fd - g|| / max(||g_fd||, ||g||) */
    double max_abs;   /* max |g_fd - g| */
    double norm_ref;  /* ||g_fd|| */
    size_t checked;   /* elements compared */
} tb_fd_result;

/* Checks grad[0..n) = dL/dx against central differences with step h, on every element when
 * n <= max_checks, else on max_checks elements spread deterministically over the tensor.
 * x is restored exactly afterwards. */
tb_fd_result tb_fdcheck(tb_fd_objective f, void *ctx, float *x, const float *grad, size_t n,
                        float h, size_t max_checks);

/* sum_i r[i] * out[i] in double. */
double tb_fd_dot(const float *r, const float *out, size_t n);

/* Deterministic test data: uniform in [lo, hi) from a 64-bit seed (splitmix64). */
void tb_fd_fill(float *x, size_t n, uint64_t seed, float lo, float hi);

/* ||a - b|| / ||b|| and max |a - b| (double accumulation); ||b|| == 0 gives ||a - b||. */
double tb_rel_err(const float *a, const float *b, size_t n, double *max_abs);

#endif
