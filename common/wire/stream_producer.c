/* stream_producer.c - the producer's I/O thread: a ROUTER that fans every message out to every
 * registered consumer under credit, keeps unacknowledged messages (or asks the application to
 * regenerate them), heartbeats, and applies the dead-consumer policy. docs/protocol.md. */
#include "stream_internal.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/protocol.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define PEERS_MAX 256

enum { PS_LIVE = 1, PS_DEAD, PS_DROPPED };

typedef struct peer {
    char id[TB_STREAM_ID_MAX];
    size_t id_len;
    int state;
    int64_t credit;
    uint64_t next;   /* next sequence number to send */
    uint64_t acked;  /* every message < acked is acknowledged */
    int end_sent;
    int end_seen;    /* its heartbeat confirmed the END */
    int64_t last_seen, last_hb, dead_since;
    int64_t window;  /* the credit it granted in its hello */
    uint64_t stall_at;  /* heartbeats keep saying "next is stall_at" although more was sent */
    int64_t stall_since, end_sent_at;
    int admitted;    /* 0 while the application checks its hello (opts.admit) */
} peer;

typedef struct prod {
    tb_stream *s;
    void *sock, *pipe;
    peer *peers;
    int npeers;
    zmq_msg_t *ring;      /* messages [base, head), slot seq % retain_max */
    uint64_t base, head;
    size_t ring_bytes;
    int ready;
    int have_pending;     /* a batch from the application waiting for room */
    zmq_msg_t pending;
    int ended;
    uint64_t end_count;
    int64_t t_open, t_end;
    int regen_out;        /* a regeneration request is outstanding */
    int64_t ack_stall_since; /* the retain buffer is full only for want of acknowledgements */
    int failed, done_sent;
    char anon[16][8];     /* generated routing ids already warned about (their 5 bytes) */
    int nanon;
} prod;

static void send_app(prod *p, int cmd, int status, uint64_t a, const char *text)
{
    tb_pipe_cmd c = {.cmd = cmd, .status = status, .a = a};
    if (text) snprintf(c.text, sizeof c.text, "%s", text);
    tb_stream_pipe_send(p->pipe, &c, NULL);
}

__attribute__((format(printf, 3, 4))) static void prod_fail(prod *p, int status, const char *fmt, ...)
{
    if (p->failed) return;
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    p->failed = 1;
    TB_ERROR("stream %s: %s", p->s->stream_id, text);
    send_app(p, CMD_FAIL, status, 0, text);
}

/* Sends [id][m] with ROUTER_MANDATORY; m is consumed on success. -1 with errno otherwise. */
static int route(prod *p, const char *id, size_t idn, zmq_msg_t *m)
{
    if (zmq_send(p->sock, id, idn, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return -1;
    if (zmq_msg_send(m, p->sock, ZMQ_DONTWAIT) < 0) return -1;
    return 0;
}

static int send_ctl(prod *p, const char *id, size_t idn, const tb_wire_hdr *h)
{
    uint8_t buf[TB_WIRE_CTL_MAX];
    size_t n = tb_wire_ctl(buf, h);
    if (zmq_send(p->sock, id, idn, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return -1;
    if (zmq_send(p->sock, buf, n, ZMQ_DONTWAIT) < 0) return -1;
    return 0;
}

static tb_wire_hdr hdr_of(prod *p, tb_wire_kind k)
{
    tb_wire_hdr h = {.kind = k, .stream = p->s->stream_id, .stream_len = strlen(p->s->stream_id)};
    return h;
}

__attribute__((format(printf, 5, 6))) static void send_error(prod *p, const char *id, size_t idn, int fatal,
                                                             const char *fmt, ...)
{
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    tb_wire_hdr h = hdr_of(p, TB_WIRE_ERROR);
    h.error = text;
    h.error_len = strlen(text);
    h.fatal = fatal;
    TB_WARN("stream %s: to consumer '%.*s': %s", p->s->stream_id, (int)idn, id, text);
    send_ctl(p, id, idn, &h);
    pthread_mutex_lock(&p->s->mu);
    p->s->stats.errors_sent++;
    pthread_mutex_unlock(&p->s->mu);
}

static void update_stats(prod *p)
{
    tb_stream_stats *st = &p->s->stats;
    int live = 0, dropped = 0;
    for (int i = 0; i < p->npeers; i++) {
        live += p->peers[i].state == PS_LIVE;
        dropped += p->peers[i].state == PS_DROPPED;
    }
    pthread_mutex_lock(&p->s->mu);
    st->retained = (int)(p->head - p->base);
    if (st->retained > st->retained_peak) st->retained_peak = st->retained;
    if (p->ring_bytes > st->retained_bytes_peak) st->retained_bytes_peak = p->ring_bytes;
    st->consumers = live;
    st->dropped = dropped;
    pthread_mutex_unlock(&p->s->mu);
}

static int peer_is_done(const prod *p, const peer *c)
{
    return p->ended && c->end_seen && c->acked >= p->end_count;
}

/* A peer holds the retain buffer while it may still need a message: live, or dead under the
 * wait policy without a regenerate callback. */
static int peer_holds(const prod *p, const peer *c)
{
    if (c->state == PS_LIVE) return 1;
    return c->state == PS_DEAD && !p->s->o.regen;
}

static void advance_base(prod *p)
{
    uint64_t nb = p->head;
    for (int i = 0; i < p->npeers; i++) {
        const peer *c = &p->peers[i];
        if (!peer_holds(p, c)) continue;
        uint64_t v = p->s->o.regen ? c->next : c->acked;
        if (v < nb) nb = v;
    }
    if (nb < p->base) nb = p->base;
    int r = p->s->o.retain_max;
    while (p->base < nb) {
        zmq_msg_t *m = &p->ring[p->base % (uint64_t)r];
        p->ring_bytes -= zmq_msg_size(m);
        zmq_msg_close(m);
        p->base++;
    }
}

static void accept_pending(prod *p)
{
    if (!p->have_pending || !p->ready || p->failed) return;
    if (p->head - p->base >= (uint64_t)p->s->o.retain_max) return;
    size_t cap = p->s->o.retain_max_bytes;
    if (cap && p->head > p->base && p->ring_bytes + zmq_msg_size(&p->pending) > cap) return;
    zmq_msg_t *slot = &p->ring[p->head % (uint64_t)p->s->o.retain_max];
    zmq_msg_init(slot);
    zmq_msg_move(slot, &p->pending);
    zmq_msg_close(&p->pending);
    p->ring_bytes += zmq_msg_size(slot);
    p->have_pending = 0;
    p->head++;
    send_app(p, CMD_ACCEPTED, 0, p->head - 1, NULL);
}

static void mark_dropped(prod *p, peer *c)
{
    c->state = PS_DROPPED;
    pthread_mutex_lock(&p->s->mu);
    p->s->peer_active[c - p->peers] = 0;
    pthread_mutex_unlock(&p->s->mu);
}

static void peer_gone(prod *p, peer *c, const char *why)
{
    tb_stream_opts *o = &p->s->o;
    if (o->policy == TB_PEER_FAIL) {
        prod_fail(p, TB_EPEER,
                  "consumer '%s' %s at message %llu (acknowledged < %llu); the dead-peer policy is "
                  "'fail' (choose 'drop' or 'wait' to go on without it)",
                  c->id, why, (unsigned long long)c->next, (unsigned long long)c->acked);
        return;
    }
    if (o->policy == TB_PEER_DROP) {
        TB_WARN("stream %s: consumer '%s' %s at message %llu: dropped, going on with the others",
                p->s->stream_id, c->id, why, (unsigned long long)c->next);
        mark_dropped(p, c);
    } else {
        TB_WARN("stream %s: consumer '%s' %s at message %llu: waiting up to %d ms for it to come back",
                p->s->stream_id, c->id, why, (unsigned long long)c->next, o->dead_wait_ms);
        c->state = PS_DEAD;
        c->dead_since = tb_stream_now_ms();
    }
    advance_base(p);
}

static peer *find_peer(prod *p, const char *id, size_t idn)
{
    for (int i = 0; i < p->npeers; i++)
        if (p->peers[i].id_len == idn && memcmp(p->peers[i].id, id, idn) == 0) return &p->peers[i];
    return NULL;
}

static int count_holding(const prod *p)
{
    int n = 0;
    for (int i = 0; i < p->npeers; i++) n += p->peers[i].state == PS_LIVE || p->peers[i].state == PS_DEAD;
    return n;
}

static void store_hello(prod *p, int idx, const char *id, const void *data, size_t len)
{
    tb_stream *s = p->s;
    pthread_mutex_lock(&s->mu);
    if (idx == s->npeers) {
        s->npeers++;
        tb_buf_init(&s->peer_hellos[idx]);
    }
    snprintf(s->peer_ids[idx], TB_STREAM_ID_MAX, "%s", id);
    s->peer_active[idx] = 1;
    tb_buf *b = &s->peer_hellos[idx];
    b->len = 0;
    if (tb_buf_reserve(b, len) == TB_OK) {
        memcpy(b->data, data, len);
        b->len = len;
    }
    pthread_mutex_unlock(&s->mu);
}

static void on_hello(prod *p, const char *id, size_t idn, const tb_wire_hdr *h, const void *data, size_t len)
{
    tb_stream_opts *o = &p->s->o;
    uint64_t resume = h->has_resume ? h->resume : 0;
    int64_t credit = h->has_credit ? h->credit : 1;
    uint64_t limit = p->ended ? p->end_count : p->head;
    if (idn >= TB_STREAM_ID_MAX) {
        send_error(p, id, idn, 1, "consumer id is longer than %d bytes", TB_STREAM_ID_MAX - 1);
        return;
    }
    if (!h->has_protocol) {
        send_error(p, id, idn, 1, "hello without a \"protocol\" field: this producer speaks protocol %d",
                   TB_PROTOCOL_VERSION);
        return;
    }
    if (h->protocol != TB_PROTOCOL_VERSION) {
        send_error(p, id, idn, 1, "consumer speaks protocol %llu, this producer protocol %d",
                   (unsigned long long)h->protocol, TB_PROTOCOL_VERSION);
        return;
    }
    if (!h->consumer || h->consumer_len != idn || memcmp(h->consumer, id, idn) != 0) {
        int cn = h->consumer ? (int)(h->consumer_len > 64 ? 64 : h->consumer_len) : 0;
        send_error(p, id, idn, 1,
                   "hello says consumer '%.*s' but the connection's routing id is '%.*s': set "
                   "ZMQ_ROUTING_ID to the consumer id", cn, h->consumer ? h->consumer : "", (int)idn, id);
        return;
    }
    if (resume > limit) {
        send_error(p, id, idn, 1, "cannot resume from message %llu: only %llu were produced so far",
                   (unsigned long long)resume, (unsigned long long)limit);
        return;
    }
    if (resume < p->base && !o->regen) {
        send_error(p, id, idn, 1,
                   "cannot resume from message %llu: the oldest message kept is %llu (retain_max %d); "
                   "give the producer a regenerate callback or a larger retain_max",
                   (unsigned long long)resume, (unsigned long long)p->base, o->retain_max);
        return;
    }
    peer *c = find_peer(p, id, idn);
    if (!c) {
        if (p->npeers == PEERS_MAX) {
            send_error(p, id, idn, 1, "too many consumers (limit %d)", PEERS_MAX);
            return;
        }
        c = &p->peers[p->npeers];
        memset(c, 0, sizeof *c);
        memcpy(c->id, id, idn);
        c->id[idn] = '\0';
        c->id_len = idn;
        store_hello(p, p->npeers, c->id, data, len);
        p->npeers++;
        TB_INFO("stream %s: consumer '%s' joined (resume from %llu, credit %lld)", p->s->stream_id, c->id,
                (unsigned long long)resume, (long long)credit);
    } else {
        TB_INFO("stream %s: consumer '%s' said hello again (resume from %llu, credit %lld)", p->s->stream_id,
                c->id, (unsigned long long)resume, (long long)credit);
        store_hello(p, (int)(c - p->peers), c->id, data, len);
    }
    c->state = PS_LIVE;
    c->admitted = !o->admit;
    if (o->admit) send_app(p, CMD_HELLO, 0, (uint64_t)(c - p->peers), NULL);
    c->next = resume;
    c->acked = resume;
    c->credit = credit;
    c->window = credit;
    c->end_sent = 0;
    c->end_seen = 0;
    c->stall_since = 0;
    c->last_seen = c->last_hb = tb_stream_now_ms();
    tb_wire_hdr hb = hdr_of(p, TB_WIRE_HEARTBEAT); /* the welcome: it carries the producer's version */
    hb.has_protocol = 1;
    hb.protocol = TB_PROTOCOL_VERSION;
    hb.has_total = o->announce_count > 0;
    hb.total = o->announce_count;
    send_ctl(p, c->id, c->id_len, &hb);
    /* ready once `consumers` consumers said hello, counting one the application refused since (the
     * others are served; the stream fails only when nobody is left) */
    if (!p->ready && p->npeers >= o->consumers) {
        p->ready = 1;
        send_app(p, CMD_READY, 0, 0, NULL);
    }
}

/* A consumer's heartbeat states its position (docs/protocol.md, section 5): it repairs credit
 * and acknowledgements lost with a broken connection, sends messages again that never arrived,
 * and repeats an END that was lost. */
static void on_heartbeat(prod *p, peer *c, const tb_wire_hdr *h)
{
    tb_stream_opts *o = &p->s->o;
    int64_t now = tb_stream_now_ms();
    if (h->has_seq && h->seq < c->next && h->seq + 1 > c->acked) {
        c->acked = h->seq + 1;
        advance_base(p);
    }
    if (!h->has_resume || !h->has_credit || h->resume > c->next) return;
    uint64_t in_flight = c->next - h->resume;
    c->credit = h->credit > (int64_t)in_flight ? h->credit - (int64_t)in_flight : 0;
    if (in_flight == 0) {
        c->stall_since = 0;
    } else if (!c->stall_since || c->stall_at != h->resume) {
        c->stall_at = h->resume;
        c->stall_since = now;
    } else if (now - c->stall_since > o->peer_timeout_ms) {
        if (h->resume < p->base && !o->regen) {
            char why[128];
            snprintf(why, sizeof why, "lost messages from %llu on, which are no longer kept",
                     (unsigned long long)h->resume);
            peer_gone(p, c, why);
            return;
        }
        TB_WARN("stream %s: consumer '%s' still waits for message %llu, sent %lld ms ago: sending "
                "again from there (connection reset?)", p->s->stream_id, c->id, (unsigned long long)h->resume,
                (long long)(now - c->stall_since));
        c->next = h->resume;
        c->credit = h->credit;
        c->end_sent = 0;
        c->stall_since = 0;
    }
    if (p->ended && h->has_count && h->count == p->end_count && h->resume == p->end_count) c->end_seen = 1;
    if (p->ended && c->end_sent && !h->has_count && h->resume == p->end_count &&
        now - c->end_sent_at > o->peer_timeout_ms)
        c->end_sent = 0; /* the END was lost: pump sends it again */
}

/* A routing id that ZeroMQ made up (it starts with a zero byte; a consumer's own id is its consumer
 * id, never empty). ROUTER_HANDOVER gives such an id to the old connection of a consumer that
 * reconnected before the old one was seen to close: what that stale connection still sends is
 * obsolete, and must not register a second consumer. */
static int generated_id(const char *id, size_t idn) { return idn == 0 || id[0] == '\0'; }

/* Warns once per connection about messages under a generated routing id that are not a hello
 * (those get an error): a peer that never said hello with its own id, or a stale connection. */
static void warn_anonymous(prod *p, const char *id, size_t idn, const void *data, size_t len)
{
    char key[8] = {0};
    memcpy(key, id, idn < sizeof key ? idn : sizeof key);
    for (int i = 0; i < p->nanon && i < 16; i++)
        if (memcmp(p->anon[i], key, sizeof key) == 0) return;
    memcpy(p->anon[p->nanon++ % 16], key, sizeof key);
    tb_wire_hdr h;
    const char *kind = tb_wire_peek(data, len, &h) == TB_OK ? tb_wire_kind_name(h.kind) : "malformed message";
    TB_WARN("stream %s: ignoring '%s' from a connection without a consumer id (a peer that did not "
            "set ZMQ_ROUTING_ID and say hello, or a stale connection of a consumer that reconnected)",
            p->s->stream_id, kind);
}

static void on_peer_msg(prod *p, const char *id, size_t idn, const void *data, size_t len)
{
    tb_wire_hdr h;
    if (generated_id(id, idn)) {
        if (tb_wire_peek(data, len, &h) == TB_OK && h.kind == TB_WIRE_HELLO)
            send_error(p, id, idn, 1, "a consumer must connect with its consumer id as ZMQ_ROUTING_ID "
                       "(a stale connection replaced by a newer one with the same id gets this too)");
        else
            warn_anonymous(p, id, idn, data, len);
        return;
    }
    if (tb_wire_peek(data, len, &h) != TB_OK) {
        send_error(p, id, idn, 0, "malformed message (%zu bytes): %s", len, tb_err_msg());
        return;
    }
    const char *sid = p->s->stream_id;
    if (h.stream_len != strlen(sid) || memcmp(h.stream, sid, h.stream_len) != 0) {
        send_error(p, id, idn, 1, "this producer serves stream '%s', not '%.*s'", sid,
                   (int)(h.stream_len > 64 ? 64 : h.stream_len), h.stream);
        return;
    }
    if (h.kind == TB_WIRE_HELLO) {
        on_hello(p, id, idn, &h, data, len);
        return;
    }
    peer *c = find_peer(p, id, idn);
    if (!c) {
        send_error(p, id, idn, 1, "unknown consumer '%.*s' sent '%s': send hello first",
                   (int)(idn > 64 ? 64 : idn), id, tb_wire_kind_name(h.kind));
        return;
    }
    if (c->state == PS_DROPPED) {
        send_error(p, id, idn, 1, "consumer '%s' was dropped by the dead-peer policy", c->id);
        return;
    }
    c->last_seen = tb_stream_now_ms();
    if (c->state == PS_DEAD) {
        TB_INFO("stream %s: consumer '%s' answers again", sid, c->id);
        c->state = PS_LIVE;
    }
    switch (h.kind) {
    case TB_WIRE_CREDIT:
        c->credit += h.credit;
        if (c->credit > (1 << 20)) c->credit = 1 << 20;
        break;
    case TB_WIRE_ACK:
        if (h.seq >= c->next) {
            send_error(p, id, idn, 0, "ack for message %llu, which was not sent yet (next is %llu)",
                       (unsigned long long)h.seq, (unsigned long long)c->next);
        } else if (h.seq + 1 > c->acked) {
            c->acked = h.seq + 1;
            advance_base(p);
        }
        break;
    case TB_WIRE_HEARTBEAT: on_heartbeat(p, c, &h); break;
    case TB_WIRE_ERROR:
        TB_WARN("stream %s: consumer '%s' reports: %.*s", sid, c->id, (int)(h.error_len > 512 ? 512 : h.error_len),
                h.error ? h.error : "");
        if (h.fatal && !peer_is_done(p, c)) peer_gone(p, c, "left");
        break;
    default:
        send_error(p, id, idn, 0, "message kind '%s' is not valid from a consumer", tb_wire_kind_name(h.kind));
        break;
    }
}

static void drain_socket(prod *p)
{
    for (int n = 0; n < 1024; n++) {
        zmq_msg_t idm, body;
        zmq_msg_init(&idm);
        if (zmq_msg_recv(&idm, p->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&idm);
            return;
        }
        zmq_msg_init(&body);
        int frames = 1, ok = zmq_msg_more(&idm) && zmq_msg_recv(&body, p->sock, 0) >= 0;
        if (ok) frames++;
        while (ok && zmq_msg_more(&body)) { /* extra frames are out of protocol: drop them */
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            zmq_msg_recv(&extra, p->sock, 0);
            int more = zmq_msg_more(&extra);
            zmq_msg_close(&extra);
            frames++;
            if (!more) break;
        }
        const char *id = zmq_msg_data(&idm);
        size_t idn = zmq_msg_size(&idm);
        if (!ok) {
            /* nothing to answer: a routing id without a body */
        } else if (frames > 2) {
            send_error(p, id, idn, 0, "message has %d frames; the protocol sends one msgpack map", frames - 1);
        } else {
            on_peer_msg(p, id, idn, zmq_msg_data(&body), zmq_msg_size(&body));
        }
        zmq_msg_close(&body);
        zmq_msg_close(&idm);
    }
}

static void on_regen(prod *p, uint64_t seq, zmq_msg_t *m)
{
    p->regen_out = 0;
    for (int i = 0; i < p->npeers; i++) {
        peer *c = &p->peers[i];
        if (c->state != PS_LIVE || !c->admitted || c->next != seq || c->credit <= 0) continue;
        zmq_msg_t cp;
        zmq_msg_init(&cp);
        zmq_msg_copy(&cp, m);
        if (route(p, c->id, c->id_len, &cp) < 0) {
            zmq_msg_close(&cp);
            continue;
        }
        c->credit--;
        c->next++;
    }
}

/* The application refused consumer `idx` (its request cannot be served): it gets a fatal error
 * with the reason and is dropped whatever the dead-peer policy; the others go on. */
static void refuse(prod *p, uint64_t idx, const char *why)
{
    if (idx >= (uint64_t)p->npeers) return;
    peer *c = &p->peers[idx];
    if (c->state == PS_DROPPED) return;
    send_error(p, c->id, c->id_len, 1, "refused: %s", why);
    TB_WARN("stream %s: consumer '%s' refused and dropped; going on with the others", p->s->stream_id, c->id);
    mark_dropped(p, c);
    advance_base(p);
}

static void drain_pipe(prod *p)
{
    for (;;) {
        tb_pipe_cmd c;
        zmq_msg_t m;
        int fr = tb_stream_pipe_recv(p->pipe, &c, &m);
        if (fr < 0) return;
        if (c.cmd == CMD_BATCH && fr == 1) {
            if (p->have_pending || c.a != p->head) {
                prod_fail(p, TB_EINVAL, "internal: batch %llu out of order (expected %llu)",
                          (unsigned long long)c.a, (unsigned long long)p->head);
                zmq_msg_close(&m);
                continue;
            }
            zmq_msg_init(&p->pending);
            zmq_msg_move(&p->pending, &m);
            p->have_pending = 1;
            accept_pending(p);
        } else if (c.cmd == CMD_REGEN && fr == 1) {
            on_regen(p, c.a, &m);
        } else if (c.cmd == CMD_REFUSE) {
            refuse(p, c.a, c.text);
        } else if (c.cmd == CMD_ADMIT) {
            if (c.a < (uint64_t)p->npeers) p->peers[c.a].admitted = 1;
        } else if (c.cmd == CMD_END) {
            p->ended = 1;
            p->end_count = c.a;
            p->t_end = tb_stream_now_ms();
        }
        if (fr == 1) zmq_msg_close(&m);
    }
}

static void pump(prod *p)
{
    if (!p->ready || p->failed) return;
    int64_t now = tb_stream_now_ms();
    uint64_t r = (uint64_t)p->s->o.retain_max;
    for (int i = 0; i < p->npeers; i++) {
        peer *c = &p->peers[i];
        if (c->state != PS_LIVE || !c->admitted) continue;
        while (c->credit > 0 && c->next < p->head) {
            if (c->next < p->base) {
                if (!p->s->o.regen) { /* cannot happen: hello refuses such a resume */
                    prod_fail(p, TB_EINVAL, "internal: consumer '%s' needs message %llu, no longer kept",
                              c->id, (unsigned long long)c->next);
                    return;
                }
                if (!p->regen_out) {
                    p->regen_out = 1;
                    send_app(p, CMD_NEED, 0, c->next, NULL);
                }
                break;
            }
            zmq_msg_t cp;
            zmq_msg_init(&cp);
            zmq_msg_copy(&cp, &p->ring[c->next % r]);
            if (route(p, c->id, c->id_len, &cp) < 0) {
                zmq_msg_close(&cp);
                break; /* EAGAIN (pipe full) or EHOSTUNREACH (not connected): retry later */
            }
            c->credit--;
            c->next++;
            c->last_hb = now;
        }
        if (p->ended && c->next == p->end_count && !c->end_sent) {
            tb_wire_hdr h = hdr_of(p, TB_WIRE_END);
            h.has_seq = h.has_count = 1;
            h.seq = h.count = p->end_count;
            if (send_ctl(p, c->id, c->id_len, &h) == 0) {
                c->end_sent = 1;
                c->end_sent_at = now;
            }
        }
    }
    advance_base(p);
    accept_pending(p);
}

static void check_done(prod *p)
{
    if (!p->ended || p->done_sent || p->failed || p->have_pending) return;
    int done = 0;
    for (int i = 0; i < p->npeers; i++) {
        peer *c = &p->peers[i];
        if (c->state == PS_DROPPED) continue;
        if (c->state == PS_DEAD || !peer_is_done(p, c)) return;
        done++;
    }
    if (done == 0 && p->s->o.consumers > 0) return;
    p->done_sent = 1;
    send_app(p, CMD_DONE, 0, p->end_count, NULL);
}

/* The retain buffer is full and the message holding it back was delivered: a consumer that has
 * room for more (credit) received everything but does not acknowledge. Waiting longer than
 * peer_timeout_ms for that is an error, not a silent hang. (A consumer whose window is at least
 * retain_max may hold everything unacknowledged in its queue, so it is not judged.) */
static void check_ack_stall(prod *p, int64_t now)
{
    tb_stream_opts *o = &p->s->o;
    peer *culprit = NULL;
    /* With a regenerate callback only unsent messages are kept: a full buffer is flow control. */
    int full = !o->regen && p->have_pending && p->head > p->base &&
               (p->head - p->base >= (uint64_t)o->retain_max ||
                (o->retain_max_bytes && p->ring_bytes + zmq_msg_size(&p->pending) > o->retain_max_bytes));
    for (int i = 0; full && i < p->npeers; i++) {
        peer *c = &p->peers[i];
        if (!peer_holds(p, c) || c->acked > p->base) continue;
        if (c->state != PS_LIVE || c->next != p->head || c->credit <= 0 || c->window >= o->retain_max) {
            culprit = NULL; /* someone else is merely slow or dead: that is flow control */
            break;
        }
        culprit = c;
    }
    if (!culprit) {
        p->ack_stall_since = 0;
        return;
    }
    if (!p->ack_stall_since) p->ack_stall_since = now;
    if (now - p->ack_stall_since > o->peer_timeout_ms)
        prod_fail(p, TB_ETIMEOUT,
                  "the retain buffer is full (%llu messages, retain_max %d) and consumer '%s' has not "
                  "acknowledged message %llu for %lld ms although it has everything: acknowledge "
                  "more often, raise retain_max or give the producer a regenerate callback",
                  (unsigned long long)(p->head - p->base), o->retain_max, culprit->id,
                  (unsigned long long)p->base, (long long)(now - p->ack_stall_since));
}

static void timers(prod *p)
{
    tb_stream_opts *o = &p->s->o;
    int64_t now = tb_stream_now_ms();
    if (p->failed) return;
    if (!p->ready && now - p->t_open > o->hello_timeout_ms) {
        prod_fail(p, TB_ETIMEOUT,
                  "only %d of %d consumers said hello within %d ms on %s; start the consumers or "
                  "raise the hello timeout",
                  count_holding(p), o->consumers, o->hello_timeout_ms, p->s->endpoint);
        return;
    }
    for (int i = 0; i < p->npeers && !p->failed; i++) {
        peer *c = &p->peers[i];
        if (c->state == PS_LIVE && !peer_is_done(p, c) && now - c->last_seen > o->peer_timeout_ms) {
            char why[96];
            snprintf(why, sizeof why, "was silent for %lld ms", (long long)(now - c->last_seen));
            peer_gone(p, c, why);
        } else if (c->state == PS_DEAD && now - c->dead_since > o->dead_wait_ms) {
            prod_fail(p, TB_ETIMEOUT,
                      "consumer '%s' did not come back within %d ms (dead-peer policy 'wait'); it "
                      "stopped at message %llu", c->id, o->dead_wait_ms, (unsigned long long)c->acked);
        }
        if (c->state == PS_LIVE && now - c->last_hb >= o->heartbeat_ms) {
            tb_wire_hdr h = hdr_of(p, TB_WIRE_HEARTBEAT);
            send_ctl(p, c->id, c->id_len, &h);
            c->last_hb = now;
        }
    }
    if (p->failed) return;
    check_ack_stall(p, now);
    if (p->failed) return;
    if (p->ready && o->consumers > 0 && count_holding(p) == 0) {
        prod_fail(p, TB_EPEER, "every consumer of the stream was dropped; nobody receives it");
        return;
    }
    if (p->ended && !p->done_sent && now - p->t_end > o->finish_timeout_ms) {
        char list[512] = "";
        size_t off = 0;
        for (int i = 0; i < p->npeers && off < sizeof list - 64; i++) {
            peer *c = &p->peers[i];
            if (c->state == PS_DROPPED || peer_is_done(p, c)) continue;
            off += (size_t)snprintf(list + off, sizeof list - off, " '%s' acknowledged < %llu;", c->id,
                                    (unsigned long long)c->acked);
        }
        prod_fail(p, TB_ETIMEOUT, "end of %llu messages not acknowledged within %d ms:%s",
                  (unsigned long long)p->end_count, o->finish_timeout_ms, list);
    }
}

static void say_goodbye(prod *p)
{
    int st = atomic_load(&p->s->quit_status);
    if (st == TB_OK) return;
    for (int i = 0; i < p->npeers; i++) {
        peer *c = &p->peers[i];
        if (c->state == PS_DROPPED) continue;
        const char *why = p->s->quit_reason;
        send_error(p, c->id, c->id_len, 1, "producer stopped before the end (%s)%s%s", tb_status_name(st),
                   why[0] ? ": " : "", why);
    }
}

static int open_router(prod *p)
{
    tb_stream_opts *o = &p->s->o;
    int one = 1;
    p->sock = zmq_socket(p->s->ctx, ZMQ_ROUTER);
    if (!p->sock) return TB_ERR(TB_EIO, "cannot create a ROUTER socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(p->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(p->sock, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(p->sock, ZMQ_SNDHWM, &o->hwm, sizeof o->hwm);
    zmq_setsockopt(p->sock, ZMQ_RCVHWM, &o->hwm, sizeof o->hwm);
    zmq_setsockopt(p->sock, ZMQ_LINGER, &o->linger_ms, sizeof o->linger_ms);
    if (zmq_bind(p->sock, p->s->endpoint) != 0)
        return TB_ERR(TB_EIO, "cannot bind stream %s to %s: %s (is another producer there?)", p->s->stream_id,
                      p->s->endpoint, zmq_strerror(zmq_errno()));
    return TB_OK;
}

void *tb_stream_producer_main(void *arg)
{
    tb_stream *s = arg;
    prod P, *p = &P;
    memset(p, 0, sizeof *p);
    p->s = s;
    p->pipe = s->io_sock;
    p->t_open = tb_stream_now_ms();
    p->peers = calloc(PEERS_MAX, sizeof *p->peers);
    p->ring = calloc((size_t)s->o.retain_max, sizeof *p->ring);
    pthread_mutex_lock(&s->mu);
    s->peer_ids = calloc(PEERS_MAX, sizeof *s->peer_ids);
    s->peer_hellos = calloc(PEERS_MAX, sizeof *s->peer_hellos);
    s->peer_active = calloc(PEERS_MAX, 1);
    int oom = !p->peers || !p->ring || !s->peer_ids || !s->peer_hellos || !s->peer_active;
    pthread_mutex_unlock(&s->mu);
    if (oom) {
        prod_fail(p, TB_ENOMEM, "out of memory starting the stream (retain_max %d)", s->o.retain_max);
    } else if (open_router(p) != TB_OK) {
        prod_fail(p, TB_EIO, "%s", tb_err_msg());
    } else if (s->o.consumers == 0) {
        p->ready = 1;
        send_app(p, CMD_READY, 0, 0, NULL);
    }
    while (!atomic_load(&s->quit)) {
        zmq_pollitem_t it[2] = {{p->pipe, 0, ZMQ_POLLIN, 0}, {p->sock, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, p->sock ? 2 : 1, 20);
        drain_pipe(p);
        if (!p->sock || p->failed) continue;
        drain_socket(p);
        pump(p);
        timers(p);
        check_done(p);
        update_stats(p);
    }
    if (p->sock) {
        say_goodbye(p);
        zmq_close(p->sock);
    }
    if (p->have_pending) zmq_msg_close(&p->pending);
    while (p->ring && p->base < p->head) zmq_msg_close(&p->ring[p->base++ % (uint64_t)s->o.retain_max]);
    free(p->ring);
    free(p->peers);
    zmq_close(p->pipe);
    return NULL;
}
