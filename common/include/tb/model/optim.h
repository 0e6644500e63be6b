/* tb/model/optim.h - BertAdam, the optimiser of the TinyBERT reference.
 *
 * Source of the formulas: huawei-noah/Pretrained-Language-Model, TinyBERT/transformer/
 * optimization.py (the pytorch-pretrained-bert 0.6 version with _LRSchedule classes; read in the
 * copies carried by the TinyBERT forks freshman-qwh/TinyBert-KnowledgeDistill and S1mKu/BiBERT,
 * identical in BertAdam and WarmupLinearSchedule; task_distill.py selects "none" for stage 1 and
 * "warmup_linear" otherwise), BertAdam.step:
 *
 *   g      = grad, clipped per parameter tensor: if max_norm / (||g||_2 + 1e-6) < 1, g *= that factor
 *            (torch.nn.utils.clip_grad_norm_(p, max_grad_norm) on each tensor separately)
 *   m      = b1 * m + (1 - b1) * g
 *   v      = b2 * v + (1 - b2) * g * g
 *   update = m / (sqrt(v) + eps) + weight_decay * p          (weight_decay = 0 for no_decay tensors)
 *   p     -= lr * schedule(step) * update,   then step += 1   (no bias correction)
 *
 * schedule(step), progress x = step / t_total (t_total < 0: always 1):
 *   constant ("none"):     1
 *   warmup_linear:         x < w ? x / w : max((x - 1) / (w - 1), 0)    (WarmupLinearSchedule)
 *   warmup_constant:       x < w ? x / w : 1                             (WarmupConstantSchedule)
 * With warm-up the first update (step 0) has learning rate 0 and leaves the weights unchanged.
 *
 * Parameters with trainable == 0 are skipped entirely (no decay, no moments, no update), as the
 * reference skips a parameter whose .grad is None. All trainable tensors share one step counter.
 * The moments live in two buffers with the table's layout (no allocation in tb_adam_step). The
 * per-tensor norm is summed in double over fixed-size chunks in a fixed order, so results are
 * bit-identical for any thread count. Element updates are fp32 (as the reference's torch fp32
 * tensors), with 1 - b1 and 1 - b2 formed in double and rounded once, as torch does.
 */
#ifndef TB_OPTIM_H
#define TB_OPTIM_H

#include "tb/model/params.h"

#include <stdint.h>

typedef enum tb_lr_schedule {
    TB_SCHEDULE_CONSTANT = 0,   /* "none" in the reference */
    TB_SCHEDULE_WARMUP_LINEAR,  /* "warmup_linear" (the reference's default) */
    TB_SCHEDULE_WARMUP_CONSTANT /* "warmup_constant" */
} tb_lr_schedule;

typedef struct tb_adam_options {
    double lr;             /* 5e-5 */
    double b1, b2;         /* 0.9, 0.999 */
    double eps;            /* 1e-6, added outside the square root */
    double weight_decay;   /* 0.01, decoupled; never on no_decay tensors */
    double max_grad_norm;  /* 1.0 per tensor; <= 0 disables clipping */
    tb_lr_schedule schedule;
    double warmup;         /* fraction of t_total, in [0, 1) */
    int64_t t_total;       /* planned number of updates; < 0: multiplier always 1 */
} tb_adam_options;

typedef struct tb_adam {
    tb_adam_options opt;
    int64_t step;       /* updates done so far */
    float *m, *v;       /* moments, same layout (and size) as the table's value buffer */
    size_t total;       /* floats in m and v */
    int count;          /* parameters in the table this state was made for */
    double *partial;    /* per-chunk squared sums for the deterministic norm */
    double *norms;      /* per tensor: ||grad||_2 from the last tb_adam_measure (0 when frozen) */
    size_t max_chunks;
} tb_adam;

/* The reference's defaults: lr 5e-5, b1 0.9, b2 0.999, eps 1e-6, wd 0.01, clip 1.0,
 * warmup_linear with warmup 0.1, t_total -1 (set it before use). */
void tb_adam_options_default(tb_adam_options *o);

/* Parses "none"/"constant", "warmup_linear", "warmup_constant". */
int tb_lr_schedule_parse(const char *s, tb_lr_schedule *out);
const char *tb_lr_schedule_name(tb_lr_schedule s);

/* The schedule's learning-rate multiplier at `step` (updates done before this one). */
double tb_lr_multiplier(tb_lr_schedule s, double warmup, int64_t t_total, int64_t step);

/* Validates options and allocates zeroed moments for table `p` (step 0). */
int tb_adam_init(tb_adam *a, const tb_param_table *p, const tb_adam_options *o);
void tb_adam_free(tb_adam *a);

/* The learning rate the next tb_adam_step will use (lr * multiplier at the current step). */
double tb_adam_lr(const tb_adam *a);

/* One BertAdam update of every trainable parameter of `p` from its gradient (gradients are read,
 * not modified). `p` must be the table (same layout) that `a` was made for. */
int tb_adam_step(tb_adam *a, tb_param_table *p);
/* tb_adam_step in two halves, so a caller can look at the gradients in between:
 * tb_adam_measure stores each trainable tensor's gradient norm in a->norms (index as in `p`;
 * computed even when clipping is off, +inf/NaN when the gradient is not finite);
 * tb_adam_apply then updates with those norms (they give the clipping factor). */
int tb_adam_measure(tb_adam *a, const tb_param_table *p);
int tb_adam_apply(tb_adam *a, tb_param_table *p);

#endif
