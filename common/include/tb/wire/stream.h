/* tb/wire/stream.h - lossless message streams: ZeroMQ (tcp://, ipc://) or a message file.
 *
 * One API for a stage to send and receive tb_msg messages; the endpoint string picks the
 * transport:
 *   "tcp://host:port", "ipc:///path"   ZeroMQ: the writer binds a ROUTER, readers connect DEALERs
 *   "file:PATH" or a plain path        a message file (record/replay), see docs/protocol.md
 *
 * Writer (producer): tb_stream_open(.., TB_STREAM_WRITE, ..), tb_stream_send() for each message,
 * tb_stream_finish() (sends END with the total count and waits until every consumer has
 * acknowledged everything), tb_stream_close(). Each message goes to EVERY registered consumer
 * (fan-out), as each consumer's credit allows: the slowest consumer sets the pace and the
 * producer keeps at most `retain_max` messages in memory.
 *
 * Reader (consumer): tb_stream_open(.., TB_STREAM_READ, ..), tb_stream_recv() until it returns
 * TB_EEND, tb_stream_close(). The stream checks that sequence numbers arrive exactly once and
 * in order, and that END's count matches.
 *
 * Every ZeroMQ stream runs an I/O thread that owns the socket and sends heartbeats, so an
 * application thread busy for a long step never looks dead. docs/protocol.md is the
 * authoritative description of the wire protocol, the dead-peer policies and the timeouts.
 *
 * Blocking calls return TB_EINTR once SIGINT/SIGTERM was received (tb/base/signals.h handlers must
 * be installed for that; the stream wakes up at once through the signal pipe).
 * A tb_stream is used by one application thread.
 */
#ifndef TB_STREAM_H
#define TB_STREAM_H

#include "tb/wire/msg.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tb_stream tb_stream;

typedef enum tb_stream_mode {
    TB_STREAM_WRITE = 1, /* producer */
    TB_STREAM_READ = 2,  /* consumer */
} tb_stream_mode;

/* What a producer does when a consumer stops answering (no message for peer_timeout_ms), or
 * leaves before the end. */
typedef enum tb_peer_policy {
    TB_PEER_FAIL = 0, /* fail the stream: the next producer call returns TB_EPEER */
    TB_PEER_DROP,     /* drop the consumer (logged) and go on with the others */
    TB_PEER_WAIT,     /* keep its place and wait up to dead_wait_ms for it to come back with a
                         hello (resume); then fail with TB_ETIMEOUT */
} tb_peer_policy;

/* Regenerates the application content of message `seq` into `out` (initialised, empty).
 * Called on the producer's application thread, inside tb_stream_send/tb_stream_finish, when a
 * consumer resumes from a message the producer no longer retains. Returns a tb_status. */
typedef int (*tb_stream_regen_fn)(void *ctx, uint64_t seq, tb_msg *out);

/* Admits consumer i, whose hello is `hello` (the application fields plus "consumer", "resume",
 * ...): returns TB_OK to admit it, or an error status with the reason in tb_err_msg(), which
 * refuses it (as tb_stream_refuse_consumer). Called on the producer's application thread, inside
 * tb_stream_wait_consumers / tb_stream_send / tb_stream_finish, for every hello (a re-hello too);
 * until it returns, the consumer is sent nothing. */
typedef int (*tb_stream_admit_fn)(void *ctx, int i, const tb_msg *hello);

typedef struct tb_stream_opts {
    const char *stream_id;   /* stream name carried by every message ("main") */
    int heartbeat_ms;        /* heartbeat interval of the I/O thread (500) */
    int peer_timeout_ms;     /* silence after which a peer counts as dead (10000) */
    int linger_ms;           /* ZMQ_LINGER on close (1000) */
    int hwm;                 /* ZMQ send/receive high-water marks, in messages (32) */

    /* producer */
    int consumers;           /* hellos awaited before the first message is sent (1) */
    int hello_timeout_ms;    /* how long to wait for them (30000) */
    int retain_max;          /* messages kept for consumers that lag or resume (64) */
    size_t retain_max_bytes; /* and at most this many bytes of them (512 MiB; 0: no limit);
                                one message is always accepted, whatever its size */
    tb_peer_policy policy;   /* dead-consumer policy (TB_PEER_FAIL) */
    int dead_wait_ms;        /* TB_PEER_WAIT: how long a dead consumer may stay away (60000) */
    int finish_timeout_ms;   /* tb_stream_finish: wait for the final acks (60000) */
    tb_stream_regen_fn regen;/* optional: regenerate message N instead of retaining it */
    void *regen_ctx;
    tb_stream_admit_fn admit;/* optional: check each consumer's hello before it is sent anything */
    void *admit_ctx;
    uint64_t announce_count; /* > 0: the messages the stream will hold, announced to every consumer
                                in its welcome ("total", docs/protocol.md) so that it can size its
                                work before the END; 0: not announced (the default) */

    /* consumer */
    const char *consumer_id; /* routing id, unique among the stream's consumers ("c<pid>") */
    int credit;              /* messages the producer may send ahead (4) */
    uint64_t resume_from;    /* first sequence number wanted (0; a restart passes its position) */
    const tb_msg *hello;     /* optional application fields sent in the hello (what it needs) */
    int manual_ack;          /* 0: a message is acknowledged when tb_stream_recv returns it;
                                1: only by tb_stream_ack (after a checkpoint) */
} tb_stream_opts;

void tb_stream_opts_default(tb_stream_opts *o);

/* Opens a stream. `opts` may be NULL for the defaults. */
int tb_stream_open(tb_stream **out, const char *endpoint, tb_stream_mode mode,
                   const tb_stream_opts *opts);
/* Closes the stream (a producer that did not finish tells its consumers it stopped; a consumer
 * that did not reach END tells the producer it left). Safe on NULL. */
void tb_stream_close(tb_stream *s);
/* Closes a producer that stops on an error, telling every consumer why: each gets a fatal error
 * "producer stopped before the end (<status>): <reason>", so a student refused by an emitter
 * reports the emitter's reason, not only that it stopped. `reason` may be NULL; a reading stream,
 * a file stream or a producer that finished is closed as by tb_stream_close. Safe on NULL. */
void tb_stream_close_failed(tb_stream *s, int status, const char *reason);

/* Producer: waits until `consumers` hellos have arrived (done by the first tb_stream_send too).
 * TB_ETIMEOUT after hello_timeout_ms. */
int tb_stream_wait_consumers(tb_stream *s);
/* Producer: number of consumers registered so far, and a copy of consumer i's hello (the
 * application fields plus "msg", "stream", "consumer", "resume", "credit"). */
int tb_stream_consumer_count(tb_stream *s);
int tb_stream_consumer_hello(tb_stream *s, int i, tb_msg *out);
/* Producer: 1 when consumer i is registered and was neither refused nor dropped since its last
 * hello (a consumer that says hello again is active again). */
int tb_stream_consumer_active(tb_stream *s, int i);
/* Producer: refuses consumer i (e.g. its hello asks for what the producer cannot serve): it gets
 * a fatal error "refused: <reason>" and is dropped, whatever the dead-peer policy; the stream
 * goes on with the others (and fails once nobody is left). */
int tb_stream_refuse_consumer(tb_stream *s, int i, const char *reason);

/* Producer: sends `m` as the next message. Sets the fields "msg" = "batch", "stream" and
 * "seq" in `m` (the rest is the application's). Blocks while the slowest consumer has no
 * credit and the retain buffer is full. Returns the sequence number in *seq if not NULL. */
int tb_stream_send(tb_stream *s, tb_msg *m, uint64_t *seq);
/* Producer: sends END with the total count and waits (finish_timeout_ms) until every consumer
 * has acknowledged every message. */
int tb_stream_finish(tb_stream *s);

/* Consumer: receives the next message into `out` (initialised by the call; free it with
 * tb_msg_free). Returns TB_EEND after the last one, TB_ETIMEOUT when nothing arrived within
 * timeout_ms (< 0: wait; the dead-producer check still applies), TB_EPEER when the producer
 * is gone or reported an error. The message's "seq" field is its sequence number. */
int tb_stream_recv(tb_stream *s, tb_msg *out, int timeout_ms);
/* Consumer: the number of messages the stream holds, before its END: a message file's END
 * count, or the count a ZeroMQ producer announced (opts.announce_count). A producer's announcement
 * arrives before its first message: ask after tb_stream_recv returned one. TB_ENOTFOUND when
 * there is none (a producer that does not know its count). The END count stays authoritative. */
int tb_stream_count(tb_stream *s, uint64_t *out);
/* Consumer (manual_ack): everything up to and including `seq` is safe in a checkpoint. */
int tb_stream_ack(tb_stream *s, uint64_t seq);

typedef struct tb_stream_stats {
    uint64_t sent;           /* producer: messages accepted from the application */
    uint64_t received;       /* consumer: messages delivered to the application */
    int retained;            /* producer: messages held now */
    int retained_peak;       /* producer: most messages held at once */
    size_t retained_bytes_peak;
    int consumers;           /* producer: consumers registered and alive */
    int dropped;             /* producer: consumers dropped by policy */
    uint64_t errors_sent;    /* error replies sent to misbehaving peers */
    uint64_t regenerated;    /* producer: messages rebuilt by the regen callback */
} tb_stream_stats;

int tb_stream_stats_get(tb_stream *s, tb_stream_stats *out);

/* CRC-32C (Castagnoli) of p[0..n), continuing from `crc` (0 to start). Used by message files. */
uint32_t tb_crc32c(uint32_t crc, const void *p, size_t n);

#endif
