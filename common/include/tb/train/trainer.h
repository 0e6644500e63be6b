/* tb/train/trainer.h - the training loop shared by tb-finetune and tb-distill.
 *
 * The loop reads one message per optimiser step from the input stream, asks the stage's loss
 * function to run forward + loss + backward on it (gradients accumulated into zeroed parameter
 * gradients), applies BertAdam, and around that:
 *   - progress (tb/base/progress.h: bar on a terminal, plain lines otherwise) with step, loss, lr,
 *     samples/s, ETA;
 *   - JSON lines (tb/base/metrics.h), always to OUT/metrics.jsonl and also to opts.metrics_path:
 *       {"event":"step","step":S,"loss":..,"lr":..,"samples":..,"samples_per_s":.., <loss parts>}
 *       {"event":"eval","step":S,"examples":..,<task metrics>,"main":..}
 *       {"event":"checkpoint","step":S,"path":..,"reason":"interval|end|signal|best"}
 *     "step" is the number of updates done, the logged loss the one of the batch of that update;
 *   - checkpoints OUT/step-N (model + BertAdam state + tb_train_state) every save_every steps, at
 *     the end and on SIGINT/SIGTERM (then tb_trainer_run returns TB_EINTR), keeping the newest
 *     `keep` of them, or all with keep_all (OUT/latest points at the newest; an initial
 *     OUT/step-0 and the checkpoint just written are never pruned). A step-N folder left by a run
 *     that died before it moved OUT/latest is replaced, with a warning. When the producer of a
 *     live input is gone (TB_EPEER, TB_ETIMEOUT, and the input_failed hook does not reconnect) a
 *     last checkpoint (reason "error") keeps what was learnt, unacknowledged, then the run fails;
 *   - the output folder belongs to the run: its lock (tb/store/runfolder.h) is held from start to
 *     end, so a second writer is refused naming the holder; a folder holding another run's
 *     checkpoints or metrics is refused unless resuming it (opts.resume) or replacing it
 *     (opts.overwrite: the new run writes into OUT/overwrite.new, the old one is replaced only
 *     when the new one ends, OUT/latest naming a complete checkpoint throughout). Resuming a
 *     missing or empty folder starts from the beginning; a broken OUT/latest (dangling, or a
 *     checkpoint that cannot be read) or step-N folders without OUT/latest are errors;
 *   - a batch with a non-finite loss or gradient stops the run (naming the step, message and
 *     tensor) before any update; with opts.skip_nonfinite N the first N such batches are skipped
 *     instead: no update, weights and optimiser state as before, a warning and a "skip" metrics
 *     line each; the count is kept in the checkpoints;
 *   - evaluation every eval_every steps and at the end through the stage's eval function (before
 *     the checkpoint of the same step, so the checkpoint holds the best so far); the best model by
 *     the task's main metric is saved as OUT/best/step-N (OUT/best/latest), older best folders
 *     removed (the first evaluation always makes one, even of an undefined metric such as the
 *     correlation of constant predictions; any finite value replaces an undefined one);
 *   - exact resume: with opts.resume the newest checkpoint of OUT is loaded (parameters, moments,
 *     step, best so far) and the input is re-opened at the saved data position, so the losses
 *     from there on are bit-identical to an uninterrupted run with the same seed and threads;
 *   - at the end the loss curve and the dev metric are drawn from OUT/metrics.jsonl into
 *     opts.plot_path (tb/base/plot.h; a missing gnuplot is a warning, not a failure).
 *
 * Data position and randomness. Messages are numbered globally across epochs: message g is the
 * g-th the loop has taken (0-based). A message file is read `epochs` times (epoch e holds
 * messages e * per_epoch .. ); a ZeroMQ stream is read once (its producer sends every epoch).
 * The loss function receives g as `seq`: dropout masks and MLM masking key on (seed, g), so
 * batch g is the same computation after a restart. data_position and rng_position in the
 * checkpoint are the number of messages taken.
 *
 * Stage hooks (tb_trainer_hooks, all optional) adapt the one loop to a stage without a second
 * loop: tb-distill asks for its features in the stream's hello (open_input), builds the student
 * from the teacher's first message (first_message), pins the teacher's hashes in its checkpoints
 * (state_extra, resumed) and reconnects to a restarted emitter (input_failed).
 */
#ifndef TB_TRAINER_H
#define TB_TRAINER_H

#include "tb/model/bert.h"
#include "tb/base/metrics.h"
#include "tb/train/mlm.h"
#include "tb/wire/msg.h"
#include "tb/wire/stream.h"
#include "tb/model/optim.h"
#include "tb/base/progress.h"
#include "tb/train/taskmetrics.h"

#include <stddef.h>
#include <stdint.h>

#define TB_TRAINER_MAX_PARTS 8

/* What a loss function reports for one step. */
typedef struct tb_trainer_loss {
    double loss;                               /* the value minimised */
    int64_t samples;                           /* examples in the batch */
    int n_parts;                               /* extra values logged with the step */
    tb_metric parts[TB_TRAINER_MAX_PARTS];     /* TB_MF("att", x), ... (static key strings) */
    const char *nonfinite_part;                /* with a non-finite loss: the term that is not finite
                                                  ("attention"; static), or NULL (the loss itself);
                                                  the function then returns TB_OK and the loop skips
                                                  or refuses the batch (skip_nonfinite) */
} tb_trainer_loss;

/* Runs forward, loss and backward for message `msg` (gradients are zero on entry; accumulate
 * into them). `seq` is the global message number (dropout / masking key). */
typedef int (*tb_trainer_loss_fn)(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out);

/* Evaluates the model (dropout off); fills `out`. */
typedef int (*tb_trainer_eval_fn)(void *ctx, tb_bert_model *m, tb_taskmetrics_result *out);

/* What the loop knows when its input fails (see input_failed). */
typedef struct tb_trainer_input_failure {
    int why;                      /* TB_EPEER (producer gone or refusing) or TB_ETIMEOUT */
    int64_t position;             /* messages trained on: the next one wanted is this one */
    int64_t received;             /* messages received since the input was last (re)opened */
} tb_trainer_input_failure;

typedef struct tb_trainer_hooks {
    void *ctx;                    /* passed to every hook */
    /* Before every (re)open of the input at message `from`: completes the stream options (a
     * hello, consumer id, credit, peer timeout, manual_ack). With so->manual_ack set, messages
     * are acknowledged only once a checkpoint holds them. */
    int (*open_input)(void *ctx, uint64_t from, tb_stream_opts *so);
    /* With this hook tb_trainer_run gets a zeroed model and builds it at the first message:
     * the hook initialises *m (tb_bert_init, weights, trainable flags, arena) from that message;
     * `resume_path` is the checkpoint being resumed ("" when none: the loop then loads its
     * weights and optimiser state over the model). Called once. The caller frees *m. */
    int (*first_message)(void *ctx, const tb_msg *msg, const char *resume_path, tb_bert_model *m);
    /* Resuming from checkpoint `path`, before the input opens: `extra_json` is the checkpoint's
     * extra object (NULL when none), e.g. to check and restore the stage's own fields. */
    int (*resumed)(void *ctx, const char *path, const char *extra_json);
    /* The stage's fields of every checkpoint's extra object: *json gets a malloc'd JSON object
     * (the loop adds "epoch", "best", "best_step", "best_metric" to it). */
    int (*state_extra)(void *ctx, char **json);
    /* A receive failed with f->why: TB_OK with *reopen_at <= f->position re-opens the input there
     * (the messages before f->position are then skipped; those a checkpoint holds acknowledged);
     * any other status (with its message set) ends the run. */
    int (*input_failed)(void *ctx, const tb_trainer_input_failure *f, uint64_t *reopen_at);
} tb_trainer_hooks;

typedef struct tb_trainer_opts {
    const char *stage;            /* "tb-finetune": metrics "stage", progress label */
    const char *input;            /* endpoint of the training messages */
    const char *input_what;       /* what it holds, for errors ("teacher features"; NULL:
                                     "training batches") */
    int epochs;                   /* passes over a message file (>= 1); ZeroMQ streams: 1 */
    int64_t max_steps;            /* > 0: stop after this many updates in total */
    int64_t total_steps;          /* schedule length t_total; 0: counted (file: messages x
                                     epochs, capped by max_steps; a ZeroMQ stream needs it given
                                     or max_steps); < 0: none (the constant schedule only) */
    tb_adam_options adam;         /* t_total is set by the trainer */
    const char *out_dir;          /* checkpoints, metrics.jsonl, best/ */
    int64_t save_every;           /* 0: checkpoints only at the end / on a signal */
    int keep;                     /* periodic checkpoints kept (>= 1) */
    int keep_all;                 /* 1: no checkpoint is ever removed (keep is ignored) */
    int64_t eval_every;           /* 0: evaluate only at the end (when eval is set) */
    const char *metrics_path;     /* extra JSON-lines destination ("-" stdout; NULL none) */
    tb_progress_mode progress;
    double progress_interval;     /* seconds between plain progress lines (<= 0: 10) */
    const char *plot_path;        /* NULL: OUT/loss.png; "": no plot */
    const char *plot_title;       /* NULL: the stage name */
    const char *vocab_path;       /* copied to OUT/vocab.txt at the start, and from there into every
                                     checkpoint (NULL: OUT/vocab.txt if a previous run of the
                                     folder left one, else none) */
    uint64_t seed;                /* the run's seed (stored in the checkpoints) */
    int resume;                   /* continue from the newest checkpoint in out_dir (none yet: start
                                     from the beginning; a broken OUT/latest is an error) */
    int overwrite;                /* out_dir holds another run: write the new one beside it in
                                     OUT/overwrite.new and replace the old one at the end
                                     (tb/store/runfolder.h); with resume, continue such a run */
    int64_t skip_nonfinite;       /* batches with a non-finite loss or gradient skipped (no update,
                                     counted, a "skip" metrics line) before the run fails */
    int save_initial;             /* a fresh run first saves OUT/step-0 (the exact starting point,
                                     e.g. for a comparison with another implementation) */
    int recv_timeout_ms;          /* per message; <= 0: wait */
    const char *consumer_id;      /* live input: this trainer's consumer id. When given, messages
                                     are acknowledged only once a checkpoint holds them (manual
                                     acks), so a restart with --resume and the same id continues
                                     from the producer's retain buffer; save_every must then be
                                     > 0 and at most the producer's retain_max. NULL: "c<pid>",
                                     acknowledged on receipt. */
    tb_trainer_loss_fn loss;
    void *loss_ctx;
    tb_trainer_eval_fn eval;      /* NULL: no evaluation, no best/ */
    void *eval_ctx;
    tb_trainer_hooks hooks;
} tb_trainer_opts;

typedef struct tb_trainer_result {
    int64_t steps;                /* updates done in total (including those before a resume) */
    int64_t messages;             /* messages taken in total */
    double last_loss;
    int interrupted;              /* stopped by SIGINT/SIGTERM (a checkpoint was written) */
    double best_metric;           /* NaN when never evaluated */
    int64_t best_step;            /* -1 when none */
    char best_metric_name[32];
    char last_checkpoint[4096];   /* "" when none was written */
    char best_checkpoint[4096];
    int64_t skipped;              /* batches skipped as non-finite (including before a resume) */
} tb_trainer_result;

/* Defaults: 1 epoch, BertAdam defaults (tb_adam_options_default), keep 2, progress auto,
 * everything else off / NULL. */
void tb_trainer_opts_default(tb_trainer_opts *o);

/* 1 for a ZeroMQ endpoint (tcp://, ipc://, inproc://), 0 for a message file. */
int tb_trainer_is_live(const char *endpoint);

/* Counts the messages of a message file (reads it through once). TB_EINVAL for a ZeroMQ
 * endpoint (a live stream cannot be counted ahead). */
int tb_trainer_count_messages(const char *endpoint, int64_t *out);

/* Runs the loop described above on `m` (initialised, arena reserved by the loss function as
 * needed; zeroed when hooks.first_message builds it). Returns TB_EINTR after a signal (with the
 * checkpoint written), TB_OK at the end. */
int tb_trainer_run(const tb_trainer_opts *o, tb_bert_model *m, tb_trainer_result *res);

/* The newest checkpoint under `out_dir` (its OUT/latest target) into `path`; TB_ENOTFOUND
 * when there is none. */
int tb_trainer_latest(const char *out_dir, char *path, size_t n);

/* ---- Pieces for the stages ---------------------------------------------------------------------
 * Building the model to train: from a checkpoint folder (init_path) or at random from a
 * config.json (config_path, weights seeded by `seed`, tb_bert_init_random). `head` and
 * `num_labels` set the classification/regression head (TB_HEAD_NONE with num_labels 0: keep the
 * checkpoint's); `mlm_head` 1 adds (or keeps) the MLM head, 0 drops it, -1 keeps the source's.
 * Parameters the source lacks (a new head on a pre-trained encoder: bert.pooler.*, classifier.*,
 * cls.predictions.*, fit_dense.*) keep their random initial values, with a note. */
typedef struct tb_model_source {
    const char *init_path;   /* checkpoint folder (or a folder with `latest`); or NULL */
    const char *config_path; /* config.json for a random model; used when init_path is NULL */
    tb_head_kind head;
    int num_labels;
    int mlm_head;
    uint64_t seed;
} tb_model_source;

int tb_trainer_model_open(tb_bert_model *m, const tb_model_source *src);

/* The label order string of the first message of a message file ("" when it has none);
 * TB_EINVAL for a live stream (reading would consume the message). */
int tb_trainer_peek_label_order(const char *endpoint, char *out, size_t n);

/* The fine-tuning loss (tb_trainer_loss_fn): cross-entropy on the gold classes, MSE on the gold
 * values (regression, 1 output) or masked-LM cross-entropy on tb_mlm_mask'ed inputs. */
typedef enum tb_ft_objective { TB_FT_CLASSIFY = 0, TB_FT_REGRESS, TB_FT_MLM } tb_ft_objective;

typedef struct tb_ft_loss {
    tb_ft_objective objective;
    int dropout;             /* 1: dropout on (training); 0: off (exact comparisons) */
    uint64_t seed;           /* dropout and MLM masking key */
    tb_mlm_opts mlm;         /* TB_FT_MLM */
    float *dbuf;             /* loss gradient [B, NL] or [masked, V] (grown, never shrunk) */
    size_t dcap;
    int32_t *ids, *labels;   /* MLM: masked ids and labels [B, T] (labels then compacted to [masked]) */
    int32_t *rows;           /* MLM: the labelled rows (b*T + t), where the MLM head runs */
    size_t icap;
    int64_t masked;          /* MLM: positions with a label in the last batch */
} tb_ft_loss;

void tb_ft_loss_init(tb_ft_loss *l, tb_ft_objective objective, int dropout, uint64_t seed);
void tb_ft_loss_free(tb_ft_loss *l);
int tb_ft_loss_step(void *ctx, tb_bert_model *m, const tb_msg *msg, uint64_t seq, tb_trainer_loss *out);

/* An eval function (tb_trainer_eval_fn) with a tb_eval_opts as its context: tb_evaluate. */
int tb_trainer_eval_stream(void *ctx, tb_bert_model *m, tb_taskmetrics_result *out);

#endif
