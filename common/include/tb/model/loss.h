/* tb/model/loss.h - training losses: the TinyBERT distillation losses and the fine-tuning losses.
 *
 * Each function computes its value (accumulated in double) into *loss and, when `dstudent`
 * (or `dlogits`) is not NULL, ACCUMULATES (+=) grad_scale * d loss / d input into it, like
 * every backward in tb/model/ops.h. grad_scale is the weight of this loss in the total (usually 1).
 * Shapes are row-major fp32; labels are int32 (classes) or f32 (regression).
 * Bad arguments (NULL, sizes <= 0, labels out of range) return TB_EINVAL with a message and
 * leave *loss and the gradient untouched.
 */
#ifndef TB_LOSS_H
#define TB_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* The ignore index of Hugging Face / torch cross-entropy (MLM labels of unmasked tokens). */
#define TB_IGNORE_INDEX (-100)

/* Mean squared error: loss = mean_i (student[i] - target[i])^2 over n elements.
 * Hidden-state loss (student already mapped by fit_dense, target = teacher hidden state;
 * [B,T,d_teacher]) and regression loss (student = predictions [B], target = gold values [B]).
 * d/dstudent[i] = 2 (student[i] - target[i]) / n. */
int tb_loss_mse(double *loss, float *dstudent, const float *student, const float *target,
                size_t n, float grad_scale);

/* TinyBERT attention loss on PRE-softmax scores [B,NH,T,T] (n = B*NH*T*T elements):
 * entries <= -100 (the masked ones) are replaced by 0 in BOTH tensors, then the MSE is the mean
 * over all n elements (padding rows included). The gradient is 0 where the student entry was
 * replaced, 2 (s' - t') / n elsewhere. */
int tb_loss_att_mse(double *loss, float *dstudent, const float *student, const float *teacher,
                    size_t n, float grad_scale);

/* TinyBERT prediction loss (soft cross-entropy) on logits [N,K] with temperature temp > 0:
 *   loss = mean over N*K elements of  -softmax(teacher/temp) * log_softmax(student/temp)
 * (the per-example cross-entropy divided by K; no temp^2 factor).
 * d/dstudent[n,k] = (softmax(student/temp) - softmax(teacher/temp))[n,k] / (temp * N * K). */
int tb_loss_soft_ce(double *loss, float *dstudent, const float *student, const float *teacher,
                    int N, int K, float temp, float grad_scale);

/* Cross-entropy with integer labels (fine-tuning, MLM): logits [N,K], labels [N] in [0, K) or
 * ignore_index (usually TB_IGNORE_INDEX). loss = mean over the non-ignored rows of
 * -log_softmax(logits)[label]; d/dlogits = (softmax - onehot) / count on those rows, 0 on
 * ignored rows. When every row is ignored the loss is 0 with no gradient (torch gives NaN).
 * *count (may be NULL) receives the number of non-ignored rows. */
int tb_loss_ce(double *loss, float *dlogits, const float *logits, const int32_t *labels,
               int N, int K, int ignore_index, float grad_scale, int *count);

#endif
