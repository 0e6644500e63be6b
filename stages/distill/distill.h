/* stages/distill/distill.h - the student side of TinyBERT distillation (tb-distill).
 *
 * A student reads teacher-feature messages (tb/train/features.h) from a stream, runs its own forward
 * pass, the TinyBERT loss of its mode (tb_bert_distill_loss), the backward pass and a BertAdam
 * update, once per message:
 *
 *   mode          loss                                       trainable         schedule (default)
 *   general       w_att * attention + w_hidden * hidden      all but the head  warmup_linear, 5e-5
 *   task-stage1   w_att * attention + w_hidden * hidden      all but the head  constant,      5e-5
 *   task-stage2   w_pred * prediction (soft CE at            all but fit_dense warmup_linear, 3e-5
 *                 `temperature`; MSE to gold for 1 output)
 *
 * "hidden" includes the embedding term (j = 0). Layer mapping (SPEC.md): with N teacher layers and
 * M student layers, k = N / M must be an integer; student layer i (0-based) learns the scores of
 * teacher layer i*k + k - 1, student hidden state j the teacher's state j*k, through the shared
 * fit_dense. The attention loss needs the student's head count to equal the teacher's.
 * "The head" is bert.pooler.*, classifier.* and an MLM head (cls.*): frozen (trainable = 0, no
 * optimiser state) in general distillation and stage 1; fit_dense is frozen in stage 2.
 *
 * The request a student sends in its hello (tb_distill_request): its layer count M (the emitter
 * maps it onto the teacher) and head count for general / stage 1; teacher logits for stage 2;
 * the teacher hidden size when the student already has fit_dense; and the teacher config and
 * vocabulary hashes it expects (given, or pinned from the first message of the run and kept in
 * its checkpoints). Every incoming message is validated against that request
 * (tb_features_view_init): a wrong name, shape, dtype or hash stops the run with an error naming
 * the field.
 *
 * Student initialisation: from a checkpoint (init_path; a general student for stage 1, a stage 1
 * student for stage 2) or at random from a config.json (config_path, seeded by `seed`); fit_dense
 * is sized from the teacher hidden size the stream announces (a checkpoint without fit_dense gets
 * a random one; one with a fit_dense of another size is an error). A task-mode student without a
 * classification head gets one (`head`, teacher's num_labels), randomly initialised.
 *
 * The run is the training loop of tb/train/trainer.h, shared with tb-finetune; this stage gives
 * it hooks: the hello with the request (open_input), the student built from the teacher's first
 * message with the mode's frozen parameters (first_message), the mode and pinned hashes in every
 * checkpoint (state_extra, resumed), and the emitter-gone handling below (input_failed).
 *
 * Checkpoints (tb/store/checkpoint.h, Hugging Face folders with fit_dense) go to OUT/step-N every
 * save_every steps, at the end and on SIGINT/SIGTERM. General and stage 1 keep every interval
 * checkpoint (as the reference does); stage 2 keeps the newest `keep` and, with a dev stream,
 * evaluates every eval_every steps and at the end (tb/train/evaluate.h, metric dev_kind; before
 * the checkpoint of the same step) and keeps the best as OUT/best/step-N. An output folder that
 * holds checkpoints is refused unless resuming. Metrics go to OUT/metrics.jsonl (and
 * metrics_path), a loss plot to OUT/loss.png.
 *
 * Exact resume. The stream is opened with manual acknowledgements: the student acknowledges
 * message `seq` only once a checkpoint holds the update it fed. With `resume`, the newest
 * checkpoint of OUT is loaded (weights, BertAdam moments, step, position) and the stream is
 * re-opened with resume_from = the next message, so the run ends with every message used
 * exactly once and weights bit-identical to an uninterrupted run (same seed and threads).
 * Dropout masks of the student key on (seed, message sequence number).
 *
 * The emitter gone. A restarted emitter that has not produced the student's position yet makes
 * the student re-read from message 0, skipping (acknowledging) what its checkpoint holds; with
 * emitter_wait_ms the student re-connects at the next message until an emitter answers; otherwise
 * (or after the wait) it writes a last checkpoint (reason "error", unacknowledged) and fails.
 *
 * Check mode (check_dir): the first message only, no update: the losses go to
 * CHECK/losses.json and the gradients of every trainable parameter (as "grad/<name>") plus the
 * batch's input tensors to CHECK/grads.safetensors, for comparison with other implementations.
 */
#ifndef TB_DISTILL_H
#define TB_DISTILL_H

#include "tb/model/bert.h"
#include "tb/train/features.h"
#include "tb/wire/msg.h"
#include "tb/model/optim.h"
#include "tb/base/progress.h"
#include "tb/train/taskmetrics.h"

#include <stdint.h>

typedef enum tb_distill_mode {
    TB_DISTILL_GENERAL = 0,
    TB_DISTILL_TASK_STAGE1,
    TB_DISTILL_TASK_STAGE2,
} tb_distill_mode;

/* "general", "task-stage1", "task-stage2". */
int tb_distill_mode_parse(const char *s, tb_distill_mode *out);
const char *tb_distill_mode_name(tb_distill_mode mode);

/* What one distillation step computes (the part of the options that affects numbers). */
typedef struct tb_distill_loss_opts {
    tb_distill_mode mode;
    double w_att, w_hidden, w_pred; /* loss weights (1, 1, 1) */
    double temperature;             /* soft cross-entropy temperature (1) */
    int dropout;                    /* student dropout on (1: training) */
    uint64_t seed;                  /* student dropout key */
} tb_distill_loss_opts;

/* Losses of one step: the weighted total and its (unweighted) parts. */
typedef struct tb_distill_step_result {
    double loss;               /* the value minimised (weighted) */
    tb_bert_distill_losses parts;
    int64_t samples;           /* B */
} tb_distill_step_result;

/* The request of a student with `cfg` (its layers, heads and fit_size) in `mode`, with the
 * expectations given (expect_* may be NULL or ""). */
int tb_distill_request(tb_distill_mode mode, const tb_bert_config *cfg, const char *expect_config_hash,
                       const char *expect_vocab_hash, tb_features_request *out);

/* Checks that a student with `cfg` can learn from a teacher described by `meta` in `mode`: depth
 * ratio integer, same head count (attention loss), fit_size == teacher hidden size, the same
 * number of labels (stage 2). TB_EINVAL / TB_ESHAPE with a message saying what to change. */
int tb_distill_check_compat(tb_distill_mode mode, const tb_bert_config *cfg, const tb_features_meta *meta);

/* Sets trainable flags for `mode` (see the table above) and reserves the training arena for
 * B x T. */
int tb_distill_prepare(tb_bert_model *m, tb_distill_mode mode, int B, int T);

/* One step on a validated feature view `v` of message `msg`: forward (dropout keyed by
 * (lo->seed, seq)), loss, weighting and backward. The model's gradients are zeroed first and hold
 * this step's gradients afterwards (frozen parameters' included: the optimiser skips them);
 * nothing is updated. */
int tb_distill_step(tb_bert_model *m, const tb_distill_loss_opts *lo, const tb_msg *msg,
                    const tb_features_view *v, uint64_t seq, tb_distill_step_result *out);

/* The whole stage. */
typedef struct tb_distill_opts {
    tb_distill_loss_opts loss;
    const char *input;            /* endpoint of feature messages */
    const char *out_dir;
    const char *init_path;        /* student checkpoint; or NULL ... */
    const char *config_path;      /* ... config.json of a random student */
    tb_head_kind head;            /* head added to a task student that has none (TB_HEAD_TINYBERT) */
    const char *expect_config_hash, *expect_vocab_hash; /* NULL: pinned from the first message */
    tb_adam_options adam;         /* lr, schedule, warm-up; t_total from total_steps */
    int64_t total_steps;          /* schedule length (a live stream has no count): required when
                                     the schedule is not constant, else max_steps is used */
    int64_t max_steps;            /* > 0: stop after this many updates */
    int64_t save_every;           /* 0: checkpoints only at the end / on a signal */
    int keep;                     /* stage 2: periodic checkpoints kept (>= 1) */
    const char *dev_input;        /* stage 2: dev token batches (NULL: no evaluation) */
    int64_t eval_every;           /* stage 2: 0: evaluate only at the end */
    tb_taskmetrics_kind dev_kind; /* stage 2: TB_TM_KIND_COUNT: correlation for one output,
                                     accuracy otherwise (tb/train/evaluate.h) */
    int resume;                   /* continue from the newest checkpoint of out_dir */
    int overwrite;                /* replace the run in out_dir at the end (tb_trainer_opts.overwrite) */
    int64_t skip_nonfinite;       /* messages with a non-finite loss or gradient skipped before failing */
    const char *consumer_id;      /* stream consumer id (NULL: "student-<pid>") */
    int credit;                   /* stream credit (4) */
    int recv_timeout_ms;          /* per message; <= 0: wait (the dead-producer check applies) */
    int peer_timeout_ms;          /* producer silent this long counts as dead (0: stream default) */
    int emitter_wait_ms;          /* 0: a dead emitter fails the run; > 0: reconnect (same consumer
                                     id, resume_from = the next message) until one answers, for up
                                     to this long - a restarted emitter that can regenerate batches
                                     serves the student from where it stands */
    const char *metrics_path;     /* extra JSON-lines destination (NULL: none, "-": stdout) */
    tb_progress_mode progress;
    const char *plot_path;        /* NULL: OUT/loss.png; "": none */
    const char *vocab_path;       /* copied into checkpoints (NULL: the init checkpoint's, if any) */
    const char *check_dir;        /* check mode (see above) */
    int threads;                  /* model threads (0: default) */
} tb_distill_opts;

typedef struct tb_distill_result {
    int64_t steps;                /* updates in total (including those before a resume) */
    int64_t messages;             /* next sequence number */
    double last_loss;
    int interrupted;              /* stopped by a signal (a checkpoint was written) */
    double best_metric;           /* stage 2 with a dev stream; NaN otherwise */
    int64_t best_step;
    int64_t skipped;              /* messages skipped as non-finite */
    char last_checkpoint[4096];
} tb_distill_result;

/* Defaults: general mode, weights 1, temperature 1, dropout on, seed 42, BertAdam defaults with
 * the mode's schedule/lr applied by tb_distill_opts_for_mode, keep 2, credit 4, progress auto. */
void tb_distill_opts_default(tb_distill_opts *o);
/* Sets the mode and its SPEC.md defaults: lr 5e-5 (stage 2: 3e-5), schedule constant for stage 1,
 * warmup_linear otherwise. Call before overriding lr / schedule. */
void tb_distill_opts_for_mode(tb_distill_opts *o, tb_distill_mode mode);

/* Runs the stage (or the check mode). TB_EINTR after a signal (checkpoint written). */
int tb_distill_run(const tb_distill_opts *o, tb_distill_result *res);

#endif
