/* stream.c - the stream API: transport choice, application-side calls of ZeroMQ streams
 * (talking to the I/O thread over an inproc pipe), stats. */
#include "stream_internal.h"

#include "tb/base/endpoint.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/signals.h"

#include <errno.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

void tb_stream_opts_default(tb_stream_opts *o)
{
    memset(o, 0, sizeof *o);
    o->stream_id = "main";
    o->heartbeat_ms = 500;
    o->peer_timeout_ms = 10000;
    o->linger_ms = 1000;
    o->hwm = 32;
    o->consumers = 1;
    o->hello_timeout_ms = 30000;
    o->retain_max = 64;
    o->retain_max_bytes = (size_t)512 << 20;
    o->policy = TB_PEER_FAIL;
    o->dead_wait_ms = 60000;
    o->finish_timeout_ms = 60000;
    o->credit = 4;
}

int64_t tb_stream_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the inproc pipe ------------------------------------------------------------------------- */

int tb_stream_pipe_send(void *sock, const tb_pipe_cmd *c, void *zmsg)
{
    size_t n = offsetof(tb_pipe_cmd, text) + strnlen(c->text, sizeof c->text - 1) + 1;
    if (zmq_send(sock, c, n, zmsg ? ZMQ_SNDMORE : 0) < 0)
        return TB_ERR(TB_EIO, "internal stream pipe: send failed: %s", zmq_strerror(zmq_errno()));
    if (zmsg && zmq_msg_send(zmsg, sock, 0) < 0)
        return TB_ERR(TB_EIO, "internal stream pipe: send failed: %s", zmq_strerror(zmq_errno()));
    return TB_OK;
}

int tb_stream_pipe_recv(void *sock, tb_pipe_cmd *c, void *zmsg)
{
    memset(c, 0, offsetof(tb_pipe_cmd, text) + 1);
    int n = zmq_recv(sock, c, sizeof *c, ZMQ_DONTWAIT);
    if (n < 0) return -1;
    c->text[sizeof c->text - 1] = '\0';
    int more = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
    if (!more) return 0;
    zmq_msg_init(zmsg);
    if (zmq_msg_recv(zmsg, sock, 0) < 0) {
        zmq_msg_close(zmsg);
        return -1;
    }
    return 1;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static int copy_id(char *dst, const char *src, const char *what)
{
    size_t n = strlen(src);
    if (n == 0 || n >= TB_STREAM_ID_MAX)
        return TB_ERR(TB_EINVAL, "%s '%s' must have 1..%d bytes", what, src, TB_STREAM_ID_MAX - 1);
    memcpy(dst, src, n + 1);
    return TB_OK;
}

static int check_opts(const tb_stream_opts *o)
{
    int rc = TB_OK;
    TB_CHECK(o->heartbeat_ms > 0 && o->peer_timeout_ms > o->heartbeat_ms, TB_EINVAL,
             "stream options: need 0 < heartbeat_ms (%d) < peer_timeout_ms (%d)", o->heartbeat_ms,
             o->peer_timeout_ms);
    TB_CHECK(o->hwm > 0 && o->credit > 0 && o->retain_max > 0 && o->consumers >= 0, TB_EINVAL,
             "stream options: hwm (%d), credit (%d), retain_max (%d) must be > 0 and consumers (%d) >= 0",
             o->hwm, o->credit, o->retain_max, o->consumers);
    TB_CHECK(o->policy >= TB_PEER_FAIL && o->policy <= TB_PEER_WAIT, TB_EINVAL,
             "stream options: unknown dead-peer policy %d", (int)o->policy);
    TB_CHECK(o->hello_timeout_ms > 0 && o->finish_timeout_ms > 0 && o->dead_wait_ms >= 0 &&
                 o->linger_ms >= 0,
             TB_EINVAL, "stream options: timeouts must be > 0");
error:
    return rc;
}

static int hello_copy(tb_msg *dst, const tb_msg *src)
{
    int rc = TB_OK;
    for (int i = 0; src && i < src->count; i++) {
        const tb_field *f = &src->fields[i];
        switch (f->kind) {
        case TB_VAL_NIL: TB_TRY(tb_msg_set_nil(dst, f->key)); break;
        case TB_VAL_BOOL: TB_TRY(tb_msg_set_bool(dst, f->key, f->v.b)); break;
        case TB_VAL_INT: TB_TRY(tb_msg_set_int(dst, f->key, f->v.i)); break;
        case TB_VAL_FLOAT: TB_TRY(tb_msg_set_float(dst, f->key, f->v.f)); break;
        case TB_VAL_STR: TB_TRY(tb_msg_set_strn(dst, f->key, f->v.str.ptr, f->v.str.len)); break;
        case TB_VAL_TENSOR: TB_TRY(tb_msg_set_tensor_copy(dst, f->key, &f->v.tensor)); break;
        }
    }
error:
    return rc;
}

static int zmq_open_stream(tb_stream *s)
{
    int rc = TB_OK;
    char pipe_ep[64];
    void *io = NULL;
    s->ctx = zmq_ctx_new();
    TB_CHECK(s->ctx, TB_EIO, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
    snprintf(pipe_ep, sizeof pipe_ep, "inproc://tb-stream-pipe");
    s->app = zmq_socket(s->ctx, ZMQ_PAIR);
    io = zmq_socket(s->ctx, ZMQ_PAIR);
    TB_CHECK(s->app && io, TB_EIO, "cannot create the stream's inproc pipe: %s", zmq_strerror(zmq_errno()));
    int zero = 0, big = 100000;
    zmq_setsockopt(s->app, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(io, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->app, ZMQ_SNDHWM, &big, sizeof big);
    zmq_setsockopt(s->app, ZMQ_RCVHWM, &big, sizeof big);
    zmq_setsockopt(io, ZMQ_SNDHWM, &big, sizeof big);
    zmq_setsockopt(io, ZMQ_RCVHWM, &big, sizeof big);
    TB_CHECK(zmq_bind(io, pipe_ep) == 0 && zmq_connect(s->app, pipe_ep) == 0, TB_EIO,
             "cannot connect the stream's inproc pipe: %s", zmq_strerror(zmq_errno()));
    if (s->mode == TB_STREAM_READ) {
        TB_TRY(hello_copy(&s->hello, s->o.hello));
        s->o.hello = NULL;
    }
    /* The I/O thread must not take SIGINT/SIGTERM: the application thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    void *(*fn)(void *) = s->mode == TB_STREAM_WRITE ? tb_stream_producer_main : tb_stream_consumer_main;
    s->io_sock = io;
    int e = pthread_create(&s->thread, NULL, fn, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    TB_CHECK(e == 0, TB_EIO, "cannot start the stream's I/O thread: %s", strerror(e));
    s->thread_started = 1;
    return TB_OK;
error:
    if (io && !s->thread_started) zmq_close(io);
    s->io_sock = NULL;
    return rc;
}

int tb_stream_open(tb_stream **out, const char *endpoint, tb_stream_mode mode,
                   const tb_stream_opts *opts)
{
    int rc = TB_OK;
    *out = NULL;
    TB_CHECK(endpoint && *endpoint, TB_EINVAL, "stream endpoint is empty");
    TB_CHECK(mode == TB_STREAM_WRITE || mode == TB_STREAM_READ, TB_EINVAL,
             "stream mode must be TB_STREAM_WRITE or TB_STREAM_READ, got %d", (int)mode);
    tb_stream *s = calloc(1, sizeof *s);
    TB_CHECK(s, TB_ENOMEM, "out of memory opening stream %s", endpoint);
    pthread_mutex_init(&s->mu, NULL);
    tb_msg_init(&s->hello);
    tb_buf_init(&s->buf);
    *out = s;
    s->mode = mode;
    if (opts) s->o = *opts;
    else tb_stream_opts_default(&s->o);
    TB_TRY(check_opts(&s->o));
    TB_TRY(copy_id(s->stream_id, s->o.stream_id ? s->o.stream_id : "main", "stream id"));
    s->o.stream_id = s->stream_id;
    if (s->o.consumer_id) {
        TB_TRY(copy_id(s->consumer_id, s->o.consumer_id, "consumer id"));
    } else {
        snprintf(s->consumer_id, sizeof s->consumer_id, "c%ld", (long)getpid());
    }
    s->o.consumer_id = s->consumer_id;
    s->next_seq = mode == TB_STREAM_READ ? s->o.resume_from : 0;
    TB_CHECK(strlen(endpoint) < sizeof s->endpoint, TB_EINVAL, "stream endpoint is longer than %zu bytes",
             sizeof s->endpoint - 1);
    snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    if (strncmp(endpoint, "tcp://", 6) == 0 || strncmp(endpoint, "ipc://", 6) == 0) {
        TB_TRY(tb_endpoint_check(endpoint)); /* port 1..65535, the socket path limit: before binding */
        TB_TRY(zmq_open_stream(s));
    } else if (strncmp(endpoint, "file:", 5) == 0) {
        s->is_file = 1;
        TB_TRY(tb_stream_file_open(s, endpoint + (strncmp(endpoint, "file://", 7) == 0 ? 7 : 5)));
    } else {
        TB_CHECK(!strstr(endpoint, "://"), TB_EUNSUPPORTED,
                 "stream endpoint '%s': unknown transport (use tcp://, ipc://, file:PATH or a path)", endpoint);
        s->is_file = 1;
        TB_TRY(tb_stream_file_open(s, endpoint));
    }
    return TB_OK;
error:
    tb_stream_close(*out);
    *out = NULL;
    return rc;
}

/* Closes s; a producer that did not finish stops with `status` (0: its own failure or TB_EINTR). */
static void close_stream(tb_stream *s, int status)
{
    if (!s) return;
    if (s->is_file) tb_stream_file_close(s);
    if (s->thread_started) {
        int st = TB_OK;
        if (s->mode == TB_STREAM_WRITE && !s->finished) st = status ? status : s->failed ? s->failed : TB_EINTR;
        if (s->mode == TB_STREAM_READ && !s->ended) st = s->failed ? s->failed : TB_EINTR;
        atomic_store(&s->quit_status, st);
        atomic_store(&s->quit, 1);
        pthread_join(s->thread, NULL);
    }
    if (s->app) zmq_close(s->app);
    if (s->ctx) zmq_ctx_term(s->ctx);
    for (int i = 0; i < s->npeers; i++) tb_buf_free(&s->peer_hellos[i]);
    free(s->peer_hellos);
    free(s->peer_ids);
    free(s->peer_active);
    tb_msg_free(&s->hello);
    tb_buf_free(&s->buf);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void tb_stream_close(tb_stream *s) { close_stream(s, TB_OK); }

void tb_stream_close_failed(tb_stream *s, int status, const char *reason)
{
    if (!s) return;
    if (s->mode == TB_STREAM_WRITE && !s->is_file && !s->finished)
        snprintf(s->quit_reason, sizeof s->quit_reason, "%s", reason ? reason : "");
    close_stream(s, status);
}

/* ---- application side of a ZeroMQ stream ----------------------------------------------------- */

static int interrupted(void)
{
    int sig = tb_signals_pending();
    if (!sig) return TB_OK;
    return TB_ERR(TB_EINTR, "interrupted by signal %d (%s)", sig, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static int fail(tb_stream *s)
{
    return TB_ERR(s->failed, "stream %s (%s): %s", s->stream_id, s->endpoint, s->fail_text);
}

static void free_zmsg(void *hold, void *ctx)
{
    (void)ctx;
    zmq_msg_close(hold);
    free(hold);
}

static int encode_batch(tb_stream *s, tb_msg *m, uint64_t seq, tb_buf *out)
{
    int rc = TB_OK;
    TB_TRY(tb_msg_set_str(m, "msg", "batch"));
    TB_TRY(tb_msg_set_str(m, "stream", s->stream_id));
    TB_TRY(tb_msg_set_int(m, "seq", (int64_t)seq));
    TB_TRY(tb_codec_encode(m, out));
error:
    return rc;
}

static void buf_release(void *data, void *hint)
{
    (void)hint;
    tb_aligned_free(data);
}

/* Moves an encoded buffer into a zmq message without copying. */
static int buf_to_zmsg(tb_buf *b, zmq_msg_t *zm)
{
    if (zmq_msg_init_data(zm, b->data, b->len, buf_release, NULL) != 0)
        return TB_ERR(TB_ENOMEM, "cannot wrap a %zu-byte message: %s", b->len, zmq_strerror(zmq_errno()));
    tb_buf_init(b);
    return TB_OK;
}

static int do_regen(tb_stream *s, uint64_t seq)
{
    int rc = TB_OK;
    tb_msg m;
    tb_buf b;
    tb_msg_init(&m);
    tb_buf_init(&b);
    TB_CHECK(s->o.regen, TB_EINVAL, "internal: regeneration of message %llu asked without a callback",
             (unsigned long long)seq);
    rc = s->o.regen(s->o.regen_ctx, seq, &m);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "regenerating message %llu for a resuming consumer: ", (unsigned long long)seq);
        goto error;
    }
    TB_TRY(encode_batch(s, &m, seq, &b));
    zmq_msg_t zm;
    TB_TRY(buf_to_zmsg(&b, &zm));
    tb_pipe_cmd c = {.cmd = CMD_REGEN, .a = seq};
    rc = tb_stream_pipe_send(s->app, &c, &zm);
    if (rc) zmq_msg_close(&zm);
    pthread_mutex_lock(&s->mu);
    s->stats.regenerated++;
    pthread_mutex_unlock(&s->mu);
error:
    tb_msg_free(&m);
    tb_buf_free(&b);
    return rc;
}

/* Handles one command from the I/O thread; returns a status (TB_OK to go on). */
static int handle_cmd(tb_stream *s, const tb_pipe_cmd *c, int has_frame, zmq_msg_t *zm, tb_msg *out,
                      int *got)
{
    switch (c->cmd) {
    case CMD_READY: s->ready = 1; break;
    case CMD_ACCEPTED: s->inflight = 0; break;
    case CMD_DONE: s->done = 1; break;
    case CMD_HELLO: {
        if (!s->o.admit) break;
        tb_msg h;
        int i = (int)c->a, rc = tb_stream_consumer_hello(s, i, &h);
        if (rc == TB_OK) rc = s->o.admit(s->o.admit_ctx, i, &h);
        tb_msg_free(&h);
        if (rc == TB_OK) {
            tb_pipe_cmd ok = {.cmd = CMD_ADMIT, .a = c->a};
            return tb_stream_pipe_send(s->app, &ok, NULL);
        }
        char why[768];
        snprintf(why, sizeof why, "%s", tb_err_msg());
        return tb_stream_refuse_consumer(s, i, why);
    }
    case CMD_NEED: {
        int rc = do_regen(s, c->a);
        if (rc) {
            s->failed = rc;
            snprintf(s->fail_text, sizeof s->fail_text, "%s", tb_err_msg());
            return fail(s);
        }
        break;
    }
    case CMD_FAIL:
        s->failed = c->status ? c->status : TB_EPEER;
        snprintf(s->fail_text, sizeof s->fail_text, "%s", c->text);
        return fail(s);
    case CMD_END:
        s->ended = 1;
        *got = 1;
        break;
    case CMD_BATCH: {
        if (!has_frame || !out) break;
        zmq_msg_t *held = malloc(sizeof *held);
        if (!held) return TB_ERR(TB_ENOMEM, "out of memory receiving message %llu", (unsigned long long)c->a);
        zmq_msg_init(held);
        zmq_msg_move(held, zm);
        int rc = tb_codec_decode(zmq_msg_data(held), zmq_msg_size(held), out, 0, NULL);
        if (rc) {
            free_zmsg(held, NULL);
            tb_pipe_cmd bad = {.cmd = CMD_BAD, .a = c->a};
            snprintf(bad.text, sizeof bad.text, "%s", tb_err_msg());
            tb_stream_pipe_send(s->app, &bad, NULL);
            s->failed = TB_EPEER;
            snprintf(s->fail_text, sizeof s->fail_text, "message %llu from the producer does not decode: %.600s",
                     (unsigned long long)c->a, bad.text);
            return fail(s);
        }
        tb_msg_hold(out, held, free_zmsg, NULL);
        tb_pipe_cmd took = {.cmd = CMD_TOOK, .a = c->a};
        rc = tb_stream_pipe_send(s->app, &took, NULL);
        if (rc) return rc;
        s->next_seq = c->a + 1;
        pthread_mutex_lock(&s->mu);
        s->stats.received++;
        pthread_mutex_unlock(&s->mu);
        *got = 1;
        break;
    }
    default: break;
    }
    return TB_OK;
}

/* Processes commands from the I/O thread until *flag becomes `want` (or, for a consumer, a
 * message arrives into `out`), an error, a signal or the deadline (timeout_ms < 0: none). */
static int app_wait(tb_stream *s, int *flag, int want, tb_msg *out, int timeout_ms, const char *what)
{
    int64_t deadline = timeout_ms < 0 ? -1 : tb_stream_now_ms() + timeout_ms;
    int got = 0;
    for (;;) {
        if (s->failed) return fail(s);
        if (flag && *flag == want) return TB_OK;
        if (got) return s->ended && out ? TB_EEND : TB_OK;
        int rc = interrupted();
        if (rc) return rc;
        zmq_pollitem_t it[2] = {{s->app, 0, ZMQ_POLLIN, 0}, {NULL, tb_signals_fd(), ZMQ_POLLIN, 0}};
        int nit = it[1].fd >= 0 ? 2 : 1;
        long wait = 100;
        if (deadline >= 0) {
            int64_t left = deadline - tb_stream_now_ms();
            if (left <= 0)
                return TB_ERR(TB_ETIMEOUT, "stream %s (%s): %s: nothing within %d ms", s->stream_id,
                              s->endpoint, what, timeout_ms);
            if (left < wait) wait = (long)left;
        }
        if (zmq_poll(it, nit, wait) < 0) {
            if (zmq_errno() == EINTR) continue;
            return TB_ERR(TB_EIO, "stream %s: poll failed: %s", s->stream_id, zmq_strerror(zmq_errno()));
        }
        if (!(it[0].revents & ZMQ_POLLIN)) continue;
        tb_pipe_cmd c;
        zmq_msg_t zm;
        int fr = tb_stream_pipe_recv(s->app, &c, &zm);
        if (fr < 0) continue;
        rc = handle_cmd(s, &c, fr == 1, &zm, out, &got);
        if (fr == 1) zmq_msg_close(&zm);
        if (rc) return rc;
    }
}

int tb_stream_wait_consumers(tb_stream *s)
{
    if (!s || s->mode != TB_STREAM_WRITE) return TB_ERR(TB_EINVAL, "tb_stream_wait_consumers needs a producer stream");
    if (s->is_file) return TB_OK;
    return app_wait(s, &s->ready, 1, NULL, -1, "waiting for consumers");
}

int tb_stream_consumer_count(tb_stream *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->npeers;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int tb_stream_consumer_hello(tb_stream *s, int i, tb_msg *out)
{
    int rc = TB_OK;
    tb_msg_init(out);
    pthread_mutex_lock(&s->mu);
    if (i < 0 || i >= s->npeers) {
        rc = TB_ERR(TB_ENOTFOUND, "stream %s has %d consumers; no consumer %d", s->stream_id, s->npeers, i);
    } else {
        tb_buf *h = &s->peer_hellos[i];
        rc = tb_codec_decode(h->data, h->len, out, TB_DECODE_COPY, NULL);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int tb_stream_consumer_active(tb_stream *s, int i)
{
    pthread_mutex_lock(&s->mu);
    int on = i >= 0 && i < s->npeers && s->peer_active[i];
    pthread_mutex_unlock(&s->mu);
    return on;
}

int tb_stream_refuse_consumer(tb_stream *s, int i, const char *reason)
{
    int rc = TB_OK;
    TB_CHECK(s && s->mode == TB_STREAM_WRITE && !s->is_file, TB_EINVAL,
             "tb_stream_refuse_consumer needs a ZeroMQ producer stream");
    pthread_mutex_lock(&s->mu);
    int n = s->npeers;
    if (i >= 0 && i < n) s->peer_active[i] = 0;
    pthread_mutex_unlock(&s->mu);
    TB_CHECK(i >= 0 && i < n, TB_ENOTFOUND, "stream %s has %d consumers; no consumer %d", s->stream_id, n, i);
    tb_pipe_cmd c = {.cmd = CMD_REFUSE, .a = (uint64_t)i};
    snprintf(c.text, sizeof c.text, "%s", reason ? reason : "refused by the producer");
    TB_TRY(tb_stream_pipe_send(s->app, &c, NULL));
error:
    return rc;
}

int tb_stream_send(tb_stream *s, tb_msg *m, uint64_t *seq)
{
    int rc = TB_OK;
    TB_CHECK(s && m && s->mode == TB_STREAM_WRITE, TB_EINVAL, "tb_stream_send needs a producer stream and a message");
    TB_CHECK(!s->ended, TB_EINVAL, "stream %s: send after finish", s->stream_id);
    if (s->failed) return fail(s);
    if (s->is_file) return tb_stream_file_send(s, m, seq);
    TB_TRY(app_wait(s, &s->ready, 1, NULL, -1, "waiting for consumers"));
    TB_TRY(app_wait(s, &s->inflight, 0, NULL, -1, "waiting for credit"));
    uint64_t q = s->next_seq;
    TB_TRY(encode_batch(s, m, q, &s->buf));
    zmq_msg_t zm;
    TB_TRY(buf_to_zmsg(&s->buf, &zm));
    tb_pipe_cmd c = {.cmd = CMD_BATCH, .a = q};
    rc = tb_stream_pipe_send(s->app, &c, &zm);
    if (rc) {
        zmq_msg_close(&zm);
        goto error;
    }
    s->inflight = 1;
    s->next_seq++;
    pthread_mutex_lock(&s->mu);
    s->stats.sent++;
    pthread_mutex_unlock(&s->mu);
    if (seq) *seq = q;
error:
    return rc;
}

int tb_stream_finish(tb_stream *s)
{
    int rc = TB_OK;
    TB_CHECK(s && s->mode == TB_STREAM_WRITE, TB_EINVAL, "tb_stream_finish needs a producer stream");
    if (s->failed) return fail(s);
    if (s->finished) return TB_OK;
    if (s->o.announce_count > 0 && s->next_seq != s->o.announce_count)
        TB_WARN("stream %s: %llu messages sent, %llu were announced", s->endpoint, (unsigned long long)s->next_seq,
                (unsigned long long)s->o.announce_count);
    if (s->is_file) return tb_stream_file_finish(s);
    TB_TRY(app_wait(s, &s->ready, 1, NULL, -1, "waiting for consumers"));
    TB_TRY(app_wait(s, &s->inflight, 0, NULL, -1, "waiting for credit"));
    if (!s->ended) {
        tb_pipe_cmd c = {.cmd = CMD_END, .a = s->next_seq};
        TB_TRY(tb_stream_pipe_send(s->app, &c, NULL));
        s->ended = 1;
    }
    TB_TRY(app_wait(s, &s->done, 1, NULL, -1, "waiting for the final acknowledgements"));
    s->finished = 1;
error:
    return rc;
}

int tb_stream_recv(tb_stream *s, tb_msg *out, int timeout_ms)
{
    int rc = TB_OK;
    TB_CHECK(s && out && s->mode == TB_STREAM_READ, TB_EINVAL, "tb_stream_recv needs a consumer stream");
    tb_msg_init(out);
    if (s->failed) return fail(s);
    if (s->ended)
        return TB_ERR(TB_EEND, "stream %s: end reached after %llu messages", s->stream_id,
                      (unsigned long long)s->next_seq);
    if (s->is_file) return tb_stream_file_recv(s, out);
    rc = app_wait(s, NULL, 0, out, timeout_ms, "receiving");
    if (rc == TB_EEND)
        return TB_ERR(TB_EEND, "stream %s: end reached after %llu messages", s->stream_id,
                      (unsigned long long)s->next_seq);
error:
    return rc;
}

int tb_stream_ack(tb_stream *s, uint64_t seq)
{
    if (!s || s->mode != TB_STREAM_READ) return TB_ERR(TB_EINVAL, "tb_stream_ack needs a consumer stream");
    if (seq >= s->next_seq)
        return TB_ERR(TB_EINVAL, "stream %s: cannot acknowledge message %llu: only messages < %llu were received",
                      s->stream_id, (unsigned long long)seq, (unsigned long long)s->next_seq);
    if (s->is_file) return TB_OK;
    if (s->failed) return fail(s);
    tb_pipe_cmd c = {.cmd = CMD_ACK, .a = seq};
    return tb_stream_pipe_send(s->app, &c, NULL);
}

int tb_stream_count(tb_stream *s, uint64_t *out)
{
    if (!s || !out || s->mode != TB_STREAM_READ) return TB_ERR(TB_EINVAL, "tb_stream_count needs a consumer stream");
    if (s->is_file) return tb_stream_file_count(s, out);
    unsigned long long a = atomic_load(&s->announced);
    if (!a)
        return TB_ERR(TB_ENOTFOUND, "the producer at %s announced no message count%s", s->endpoint,
                      s->next_seq ? "" : " (none yet: ask after the first message)");
    *out = (uint64_t)(a - 1);
    return TB_OK;
}

int tb_stream_stats_get(tb_stream *s, tb_stream_stats *out)
{
    if (!s || !out) return TB_ERR(TB_EINVAL, "tb_stream_stats_get: NULL argument");
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
    return TB_OK;
}
