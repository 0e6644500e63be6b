/* stream_consumer.c - the consumer's I/O thread: a DEALER that says hello, grants credit,
 * checks that sequence numbers arrive exactly once and in order, acknowledges, heartbeats, and
 * notices a dead producer. docs/protocol.md. */
#include "stream_internal.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/protocol.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef struct cons {
    tb_stream *s;
    void *sock, *pipe;
    uint64_t expected;   /* next sequence number to deliver */
    int in_app;          /* delivered to the application thread, not yet taken */
    int resync;          /* a gap was seen; a new hello asked to resume from `expected` */
    int ended, failed, heard;
    int has_acked;       /* an ack was sent; acked = its seq */
    uint64_t acked;
    int64_t last_seen, last_hb, t_open;
} cons;

__attribute__((format(printf, 3, 4))) static void cons_fail(cons *c, int status, const char *fmt, ...)
{
    if (c->failed) return;
    tb_pipe_cmd cmd = {.cmd = CMD_FAIL, .status = status};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd.text, sizeof cmd.text, fmt, ap);
    va_end(ap);
    c->failed = 1;
    TB_ERROR("stream %s: %s", c->s->stream_id, cmd.text);
    tb_stream_pipe_send(c->pipe, &cmd, NULL);
}

static void send_ctl(cons *c, tb_wire_hdr *h)
{
    uint8_t buf[TB_WIRE_CTL_MAX];
    h->stream = c->s->stream_id;
    h->stream_len = strlen(c->s->stream_id);
    h->consumer = c->s->consumer_id;
    h->consumer_len = strlen(c->s->consumer_id);
    size_t n = tb_wire_ctl(buf, h);
    if (zmq_send(c->sock, buf, n, ZMQ_DONTWAIT) < 0 && zmq_errno() != EAGAIN)
        TB_WARN("stream %s: cannot send %s to the producer: %s", c->s->stream_id, tb_wire_kind_name(h->kind),
                zmq_strerror(zmq_errno()));
    c->last_hb = tb_stream_now_ms();
}

__attribute__((format(printf, 3, 4))) static void send_error(cons *c, int fatal, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    TB_WARN("stream %s: to the producer: %s", c->s->stream_id, text);
    tb_wire_hdr h = {.kind = TB_WIRE_ERROR, .error = text, .error_len = strlen(text), .fatal = fatal};
    send_ctl(c, &h);
    pthread_mutex_lock(&c->s->mu);
    c->s->stats.errors_sent++;
    pthread_mutex_unlock(&c->s->mu);
}

static void send_credit(cons *c, int64_t n)
{
    tb_wire_hdr h = {.kind = TB_WIRE_CREDIT, .has_credit = 1, .credit = n};
    send_ctl(c, &h);
}

static int send_hello(cons *c)
{
    int rc = TB_OK;
    tb_stream *s = c->s;
    tb_buf b;
    tb_buf_init(&b);
    int credit = s->o.credit - c->in_app;
    if (credit < 0) credit = 0;
    TB_TRY(tb_msg_set_str(&s->hello, "msg", "hello"));
    TB_TRY(tb_msg_set_str(&s->hello, "stream", s->stream_id));
    TB_TRY(tb_msg_set_str(&s->hello, "consumer", s->consumer_id));
    TB_TRY(tb_msg_set_int(&s->hello, "resume", (int64_t)c->expected));
    TB_TRY(tb_msg_set_int(&s->hello, "credit", credit));
    TB_TRY(tb_msg_set_int(&s->hello, "protocol", TB_PROTOCOL_VERSION));
    TB_TRY(tb_codec_encode(&s->hello, &b));
    TB_CHECK(zmq_send(c->sock, b.data, b.len, ZMQ_DONTWAIT) >= 0, TB_EIO, "cannot send hello to %s: %s",
             s->endpoint, zmq_strerror(zmq_errno()));
    c->last_hb = tb_stream_now_ms();
error:
    tb_buf_free(&b);
    return rc;
}

static void send_heartbeat(cons *c);

static void resync(cons *c, const char *what, uint64_t got)
{
    if (c->resync) return;
    send_error(c, 0, "expected message %llu, got %s %llu: resuming from %llu", (unsigned long long)c->expected,
               what, (unsigned long long)got, (unsigned long long)c->expected);
    c->resync = 1;
    if (send_hello(c) != TB_OK) cons_fail(c, TB_EIO, "%s", tb_err_msg());
}

static void on_batch(cons *c, const tb_wire_hdr *h, zmq_msg_t *m)
{
    if (h->seq == c->expected) {
        tb_pipe_cmd cmd = {.cmd = CMD_BATCH, .a = h->seq};
        if (tb_stream_pipe_send(c->pipe, &cmd, m) != TB_OK) {
            cons_fail(c, TB_EIO, "%s", tb_err_msg());
            return;
        }
        c->expected++;
        c->in_app++;
        c->resync = 0;
    } else if (h->seq < c->expected) {
        TB_DEBUG("stream %s: duplicate message %llu dropped", c->s->stream_id, (unsigned long long)h->seq);
        send_credit(c, 1);
    } else {
        resync(c, "message", h->seq);
    }
}

static void on_message(cons *c, zmq_msg_t *m)
{
    tb_wire_hdr h;
    const void *data = zmq_msg_data(m);
    size_t len = zmq_msg_size(m);
    c->last_seen = tb_stream_now_ms();
    c->heard = 1;
    if (tb_wire_peek(data, len, &h) != TB_OK) {
        send_error(c, 0, "malformed message (%zu bytes): %s", len, tb_err_msg());
        return;
    }
    const char *sid = c->s->stream_id;
    if (h.stream_len != strlen(sid) || memcmp(h.stream, sid, h.stream_len) != 0) {
        send_error(c, 0, "this consumer reads stream '%s', not '%.*s'", sid,
                   (int)(h.stream_len > 64 ? 64 : h.stream_len), h.stream);
        return;
    }
    switch (h.kind) {
    case TB_WIRE_BATCH: on_batch(c, &h, m); break;
    case TB_WIRE_HEARTBEAT:
        if (h.has_protocol && h.protocol != TB_PROTOCOL_VERSION) {
            send_error(c, 1, "this consumer speaks protocol %d, the producer protocol %llu", TB_PROTOCOL_VERSION,
                       (unsigned long long)h.protocol);
            cons_fail(c, TB_EPEER, "the producer at %s speaks protocol %llu, this consumer protocol %d",
                      c->s->endpoint, (unsigned long long)h.protocol, TB_PROTOCOL_VERSION);
        } else if (h.has_total) {
            atomic_store(&c->s->announced, (unsigned long long)h.total + 1);
        }
        break;
    case TB_WIRE_END:
        if (h.count == c->expected) {
            if (!c->ended) {
                tb_pipe_cmd cmd = {.cmd = CMD_END, .a = h.count};
                tb_stream_pipe_send(c->pipe, &cmd, NULL);
            }
            c->ended = 1;
            send_heartbeat(c); /* confirms the END at once */
        } else if (h.count > c->expected) {
            resync(c, "end after", h.count);
        } else {
            send_error(c, 1, "end says %llu messages, but %llu were received", (unsigned long long)h.count,
                       (unsigned long long)c->expected);
            cons_fail(c, TB_EPEER, "the producer's end says %llu messages, but %llu were received",
                      (unsigned long long)h.count, (unsigned long long)c->expected);
        }
        break;
    case TB_WIRE_ERROR:
        TB_WARN("stream %s: the producer reports: %.*s", sid, (int)(h.error_len > 512 ? 512 : h.error_len),
                h.error ? h.error : "");
        if (h.fatal)
            cons_fail(c, TB_EPEER, "the producer at %s reports: %.*s", c->s->endpoint,
                      (int)(h.error_len > 512 ? 512 : h.error_len), h.error ? h.error : "");
        break;
    default:
        send_error(c, 0, "message kind '%s' is not valid from a producer", tb_wire_kind_name(h.kind));
        break;
    }
}

static void drain_socket(cons *c)
{
    for (int n = 0; n < 1024 && !c->failed; n++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (zmq_msg_more(&m)) {
            int frames = 1;
            while (zmq_msg_more(&m)) {
                zmq_msg_close(&m);
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, c->sock, 0) < 0) break;
                frames++;
            }
            send_error(c, 0, "message has %d frames; the protocol sends one msgpack map", frames);
        } else {
            on_message(c, &m);
        }
        zmq_msg_close(&m);
    }
}

static void send_ack(cons *c, uint64_t seq)
{
    tb_wire_hdr h = {.kind = TB_WIRE_ACK, .has_seq = 1, .seq = seq};
    send_ctl(c, &h);
    if (!c->has_acked || seq > c->acked) c->acked = seq;
    c->has_acked = 1;
}

/* A heartbeat states the consumer's whole position, so that credit, acks or an END lost with a
 * broken connection are repaired: resume = next seq expected, credit = room left for messages
 * from `resume` on, seq = highest acknowledged, count = the END count once seen. */
static void send_heartbeat(cons *c)
{
    int64_t room = c->s->o.credit - c->in_app;
    tb_wire_hdr h = {.kind = TB_WIRE_HEARTBEAT, .has_resume = 1, .resume = c->expected, .has_credit = 1,
                     .credit = room > 0 ? room : 0, .has_seq = c->has_acked, .seq = c->acked,
                     .has_count = c->ended, .count = c->expected};
    send_ctl(c, &h);
}

static void drain_pipe(cons *c)
{
    for (;;) {
        tb_pipe_cmd cmd;
        zmq_msg_t m;
        int fr = tb_stream_pipe_recv(c->pipe, &cmd, &m);
        if (fr < 0) return;
        if (fr == 1) zmq_msg_close(&m);
        if (cmd.cmd == CMD_TOOK) {
            c->in_app--;
            send_credit(c, 1);
            if (!c->s->o.manual_ack) send_ack(c, cmd.a);
        } else if (cmd.cmd == CMD_ACK) {
            send_ack(c, cmd.a);
        } else if (cmd.cmd == CMD_BAD) {
            send_error(c, 0, "message %llu does not decode: %s", (unsigned long long)cmd.a, cmd.text);
        }
    }
}

static void timers(cons *c)
{
    tb_stream_opts *o = &c->s->o;
    int64_t now = tb_stream_now_ms();
    if (c->failed) return;
    int64_t silent = now - (c->heard ? c->last_seen : c->t_open);
    if (silent > o->peer_timeout_ms && !c->ended) {
        if (c->heard)
            cons_fail(c, TB_EPEER,
                      "the producer at %s was silent for %lld ms after message %llu: it died or hangs",
                      c->s->endpoint, (long long)silent, (unsigned long long)c->expected);
        else
            cons_fail(c, TB_ETIMEOUT, "no producer answered at %s within %d ms: is it running?",
                      c->s->endpoint, o->peer_timeout_ms);
        return;
    }
    if (now - c->last_hb >= o->heartbeat_ms) send_heartbeat(c);
}

static int open_dealer(cons *c)
{
    tb_stream_opts *o = &c->s->o;
    int big = 10000;
    c->sock = zmq_socket(c->s->ctx, ZMQ_DEALER);
    if (!c->sock) return TB_ERR(TB_EIO, "cannot create a DEALER socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(c->sock, ZMQ_ROUTING_ID, c->s->consumer_id, strlen(c->s->consumer_id));
    zmq_setsockopt(c->sock, ZMQ_SNDHWM, &big, sizeof big); /* control messages only: tiny */
    zmq_setsockopt(c->sock, ZMQ_RCVHWM, &o->hwm, sizeof o->hwm);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &o->linger_ms, sizeof o->linger_ms);
    if (zmq_connect(c->sock, c->s->endpoint) != 0)
        return TB_ERR(TB_EIO, "cannot connect stream %s to %s: %s", c->s->stream_id, c->s->endpoint,
                      zmq_strerror(zmq_errno()));
    return send_hello(c);
}

void *tb_stream_consumer_main(void *arg)
{
    tb_stream *s = arg;
    cons C, *c = &C;
    memset(c, 0, sizeof *c);
    c->s = s;
    c->pipe = s->io_sock;
    c->expected = s->o.resume_from;
    c->t_open = c->last_seen = tb_stream_now_ms();
    if (open_dealer(c) != TB_OK) cons_fail(c, TB_EIO, "%s", tb_err_msg());
    while (!atomic_load(&s->quit)) {
        zmq_pollitem_t it[2] = {{c->pipe, 0, ZMQ_POLLIN, 0}, {c->sock, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, c->sock ? 2 : 1, 20);
        if (!c->sock) continue;
        drain_pipe(c);
        if (c->failed) continue;
        drain_socket(c);
        timers(c);
    }
    if (c->sock) {
        drain_pipe(c); /* acknowledgements the application queued just before closing */
        int st = atomic_load(&s->quit_status);
        if (st != TB_OK && !c->ended)
            send_error(c, 1, "consumer '%s' left at message %llu before the end (%s)", s->consumer_id,
                       (unsigned long long)c->expected, tb_status_name(st));
        zmq_close(c->sock);
    }
    zmq_close(c->pipe);
    return NULL;
}
