/* stages/emit/emit.h - the teacher-feature emitter behind tb-emit (its check mode: check.h).
 *
 * tb_emit_run: loads a teacher checkpoint, reads token batches (tb_batch_to_msg messages) from a
 * message file or a ZeroMQ stream, runs the teacher once per batch and sends the batch with the
 * teacher features (tb/train/features.h) to an output stream:
 *   - ZeroMQ output (tcp://, ipc://): waits for `students` hellos, computes the union of their
 *     requests (plus opts.extra) and sends every batch with that union to every student through
 *     the lossless fan-out of tb/wire/stream.h (one encoded buffer for all). The hellos are read again
 *     before each batch, so a student that joins or resumes later is served too (the union only
 *     grows). Dead students are handled by opts.policy (fail / drop / wait, tb/wire/stream.h).
 *   - File output: the request is opts.extra alone (nobody says hello). Before anything is
 *     written the size is estimated (batches x bytes per batch: features + tokens + framing) and
 *     reported, and the run is refused (TB_EINVAL) when the file system (statvfs) cannot hold it
 *     or when it exceeds opts.max_output_bytes. With a ZeroMQ input the batch count is unknown:
 *     the limits are then checked before each batch.
 * Output message seq N carries input message N (the input's order, nothing skipped), and the
 * teacher's dropout masks (when opts.teacher_dropout) are keyed by (seed, N): recomputing batch N
 * gives the same bits. With a message-file input the emitter registers a regenerate callback that
 * re-reads input message N and recomputes its features, so a student may resume from any
 * position; with a ZeroMQ input it relies on the stream's retain buffer (opts.retain_max).

 */
#ifndef TB_EMIT_H
#define TB_EMIT_H

#include "tb/model/bert.h"
#include "tb/train/features.h"
#include "tb/base/progress.h"
#include "tb/wire/stream.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tb_emit_opts {
    const char *teacher;          /* checkpoint folder (or a folder with `latest`) */
    const char *input;            /* token batches: message file or ZeroMQ endpoint */
    const char *input_stream_id;  /* stream id of the input ("main") */
    int recv_timeout_ms;          /* per input message; < 0: wait (-1) */
    const char *output;           /* tcp://, ipc:// or a message file (file:PATH or a path) */
    const char *stream_id;        /* stream id of the output ("main") */
    int students;                 /* ZeroMQ output: hellos to wait for (1) */
    tb_features_request extra;    /* features always sent; the whole request for file output */
    tb_dtype dtype;               /* TB_F32 (default) or TB_F16 on the wire */
    int teacher_dropout;          /* 0 (default): teacher in evaluation mode */
    uint64_t seed;                /* dropout key (42) */
    int max_seq;                  /* > 0: cut batches to this many positions (only padding may
                                     be cut: a real token beyond it is an error) */
    uint64_t max_output_bytes;    /* file output: refuse above this estimate (0: disk space only) */
    int64_t max_batches;          /* > 0: stop after this many batches */
    tb_peer_policy policy;        /* dead students (TB_PEER_FAIL) */
    int peer_timeout_ms, hello_timeout_ms, dead_wait_ms, finish_timeout_ms; /* 0: stream defaults */
    int retain_max;               /* 0: stream default */
    size_t retain_max_bytes;      /* 0: stream default */
    int threads;                  /* teacher threads (0: tb_threads default) */
    tb_progress_mode progress;
    const char *metrics_path;     /* JSON lines ("-" stdout, NULL none) */
} tb_emit_opts;

typedef struct tb_emit_result {
    int64_t batches;              /* batches sent */
    uint64_t feature_bytes;       /* feature payload bytes sent (per receiver) */
    uint64_t estimate_bytes;      /* file output: the size estimate (0 when unknown) */
    int students;                 /* students registered at the end */
    int dropped;                  /* students dropped by policy */
    uint64_t regenerated;         /* batches recomputed for resuming students */
    tb_features_request sent;     /* the union that was sent (last batch) */
} tb_emit_result;

void tb_emit_opts_default(tb_emit_opts *o);

/* Runs the emitter as described above. TB_EINTR after SIGINT/SIGTERM. */
int tb_emit_run(const tb_emit_opts *o, tb_emit_result *res);

/* Loads a checkpoint folder into `m` (tb_bert_init + parameters; pair with tb_bert_free) and,
 * when the folder has a vocab.txt, writes its hash into vocab_hash (else ""). */
int tb_emit_load_model(const char *path, tb_bert_model *m, char *vocab_hash, size_t n);

/* Estimated bytes of a feature message file of `batches` batches of B x T for request `r`. */
uint64_t tb_emit_file_estimate(const tb_features_request *r, const tb_features_meta *meta, int64_t batches,
                               int64_t B, int64_t T);

/* 1 when `endpoint` is a ZeroMQ endpoint (tcp://, ipc://, inproc://), 0 for a message file
 * (file:PATH, file://PATH or a path). */
int tb_emit_is_stream(const char *endpoint);

/* Reads message `seq` (0-based) of the message file `input` (stream id `stream_id`) into `out`;
 * TB_EINVAL when the file has fewer messages. */
int tb_emit_read_input_at(const char *input, const char *stream_id, uint64_t seq, tb_msg *out);

#endif
