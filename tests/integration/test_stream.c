/* test_stream.c - lossless ZeroMQ streams between real processes over ipc://.
 *
 * Producers and consumers run in forked children (forked before the test process creates any
 * thread); each consumer recomputes every payload from its sequence number with its own copy
 * of the generator and proves it got every message exactly once, in order. Child exit codes:
 * 0 ok, 1 wrong data / order, 2 other error, 3 TB_EINTR, 4 TB_EPEER, 5 TB_ETIMEOUT. */
#include "proc.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/protocol.h"
#include "tb/base/signals.h"
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#else
#define UNDER_ASAN 0
#endif

/* ---- payloads --------------------------------------------------------------------------------- */

/* Message `seq`: x = f32[n], n = 1 + (7 seq) % 64, values hashed from (seq, i), plus "n";
 * with big > 0, b = u8[big] with b[i] = (31 seq + 7 i) & 0xff instead. */
static int64_t len_of(uint64_t seq) { return 1 + (int64_t)((seq * 7) % 64); }
static float val_of(uint64_t seq, int64_t i)
{
    return (float)((seq * 2654435761u + (uint64_t)i * 40503u) % 10007u) / 7.0f - 700.0f;
}
static uint8_t byte_of(uint64_t seq, int64_t i) { return (uint8_t)((31 * seq + 7 * (uint64_t)i) & 0xff); }

static int make_msg(tb_msg *m, uint64_t seq, int64_t big)
{
    tb_msg_init(m);
    tb_tensor t;
    int64_t n = big > 0 ? big : len_of(seq);
    if (tb_tensor_alloc(&t, big > 0 ? TB_U8 : TB_F32, 1, &n)) return 2;
    for (int64_t i = 0; i < n; i++) {
        if (big > 0) ((uint8_t *)t.data)[i] = byte_of(seq, i);
        else ((float *)t.data)[i] = val_of(seq, i);
    }
    if (tb_msg_set_tensor_move(m, big > 0 ? "b" : "x", &t) || tb_msg_set_int(m, "n", n)) return 2;
    return 0;
}

/* 0 when `m` is exactly message `seq`. */
static int check_msg(const tb_msg *m, uint64_t seq, int64_t big)
{
    int64_t s = -1, n = -1;
    const tb_tensor *x;
    if (tb_msg_get_int(m, "seq", &s) || (uint64_t)s != seq) {
        fprintf(stderr, "got seq %lld, expected %llu\n", (long long)s, (unsigned long long)seq);
        return 1;
    }
    int64_t want = big > 0 ? big : len_of(seq);
    if (tb_msg_get_int(m, "n", &n) || n != want || tb_msg_get_tensor(m, big > 0 ? "b" : "x", &x) ||
        x->ndim != 1 || x->shape[0] != want || x->dtype != (big > 0 ? TB_U8 : TB_F32)) {
        fprintf(stderr, "message %llu has the wrong fields or shape\n", (unsigned long long)seq);
        return 1;
    }
    for (int64_t i = 0; i < n; i++) {
        int ok = big > 0 ? ((const uint8_t *)x->data)[i] == byte_of(seq, i)
                         : ((const float *)x->data)[i] == val_of(seq, i);
        if (!ok) {
            fprintf(stderr, "message %llu element %lld differs\n", (unsigned long long)seq, (long long)i);
            return 1;
        }
    }
    return 0;
}

static int code_of(int rc)
{
    switch (rc) {
    case TB_OK: return 0;
    case TB_EINTR: return 3;
    case TB_EPEER: return 4;
    case TB_ETIMEOUT: return 5;
    default: return 2;
    }
}

static void sleep_us(long us)
{
    struct timespec d = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&d, NULL);
}

/* ---- producer child --------------------------------------------------------------------------- */

typedef struct report {
    tb_stream_stats st;
    long rss_start_kb, rss_end_kb;
    int rc;
} report;

typedef struct pcfg {
    const char *ep;
    int consumers;
    uint64_t count;
    int64_t big;
    int retain_max, policy, peer_timeout_ms, dead_wait_ms, regen, signals;
    int check_hello;        /* 1: every consumer's hello must carry layers = "3,7,11" */
    long send_sleep_us;
    int report_fd;
} pcfg;

static int regen_cb(void *ctx, uint64_t seq, tb_msg *out)
{
    const pcfg *c = ctx;
    tb_msg_free(out);
    return make_msg(out, seq, c->big) ? TB_ENOMEM : TB_OK;
}

static int producer_main(void *arg)
{
    const pcfg *c = arg;
    tb_log_set_name("test-producer");
    if (c->signals && tb_signals_install(0)) return 2;
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumers = c->consumers;
    o.heartbeat_ms = 100;
    o.peer_timeout_ms = c->peer_timeout_ms ? c->peer_timeout_ms : 5000;
    o.hello_timeout_ms = 10000;
    o.finish_timeout_ms = 15000;
    o.dead_wait_ms = c->dead_wait_ms ? c->dead_wait_ms : 10000;
    o.policy = (tb_peer_policy)c->policy;
    if (c->retain_max) o.retain_max = c->retain_max;
    if (c->regen) {
        o.regen = regen_cb;
        o.regen_ctx = (void *)c;
    }
    report r;
    memset(&r, 0, sizeof r);
    tb_stream *s;
    int rc = tb_stream_open(&s, c->ep, TB_STREAM_WRITE, &o);
    r.rss_start_kb = tb_proc_peak_rss_kb();
    if (rc == TB_OK && c->check_hello) {
        rc = tb_stream_wait_consumers(s);
        int n = rc ? 0 : tb_stream_consumer_count(s);
        if (rc == TB_OK && n != c->consumers) {
            fprintf(stderr, "producer: %d consumers registered, expected %d\n", n, c->consumers);
            return 1;
        }
        for (int i = 0; rc == TB_OK && i < n; i++) {
            tb_msg h;
            const char *layers = NULL, *id = NULL;
            rc = tb_stream_consumer_hello(s, i, &h);
            if (rc == TB_OK && (tb_msg_get_str(&h, "layers", &layers) || strcmp(layers, "3,7,11") != 0 ||
                                tb_msg_get_str(&h, "consumer", &id) || id[0] != 's')) {
                fprintf(stderr, "producer: hello %d lacks the consumer's fields\n", i);
                tb_msg_free(&h);
                return 1;
            }
            tb_msg_free(&h);
        }
    }
    for (uint64_t q = 0; rc == TB_OK && q < c->count; q++) {
        tb_msg m;
        if (make_msg(&m, q, c->big)) rc = TB_ENOMEM;
        else rc = tb_stream_send(s, &m, NULL);
        tb_msg_free(&m);
        if (c->send_sleep_us) sleep_us(c->send_sleep_us);
    }
    if (rc == TB_OK) rc = tb_stream_finish(s);
    if (rc) fprintf(stderr, "producer: %s: %s\n", tb_status_name(rc), tb_err_msg());
    if (s) tb_stream_stats_get(s, &r.st);
    tb_stream_close(s);
    r.rss_end_kb = tb_proc_peak_rss_kb();
    r.rc = rc;
    if (c->report_fd > 0 && write(c->report_fd, &r, sizeof r) != (ssize_t)sizeof r) return 2;
    return code_of(rc);
}

/* ---- consumer child --------------------------------------------------------------------------- */

typedef struct ccfg {
    const char *ep, *id;
    uint64_t resume, count; /* expects messages [resume, count) */
    int64_t big;
    int credit;
    long sleep_us;
    int64_t die_at;         /* raise SIGKILL on receiving this seq (-1: never) */
    int ack_every;          /* > 0: manual acks every N messages, position saved to ckpt */
    const char *ckpt;
    int peer_timeout_ms;
    int signals;
} ccfg;

static int consumer_main(void *arg)
{
    const ccfg *c = arg;
    tb_log_set_name(c->id);
    if (c->signals && tb_signals_install(0)) return 2;
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumer_id = c->id;
    o.heartbeat_ms = 100;
    o.peer_timeout_ms = c->peer_timeout_ms ? c->peer_timeout_ms : 5000;
    o.resume_from = c->resume;
    o.manual_ack = c->ack_every > 0;
    if (c->credit) o.credit = c->credit;
    tb_msg need;
    tb_msg_init(&need);
    tb_msg_set_str(&need, "layers", "3,7,11");
    o.hello = &need;
    tb_stream *s;
    int rc = tb_stream_open(&s, c->ep, TB_STREAM_READ, &o);
    tb_msg_free(&need);
    uint64_t next = c->resume;
    while (rc == TB_OK) {
        tb_msg m;
        rc = tb_stream_recv(s, &m, -1);
        if (rc) break;
        if (check_msg(&m, next, c->big)) {
            tb_msg_free(&m);
            tb_stream_close(s);
            return 1;
        }
        tb_msg_free(&m);
        if ((int64_t)next == c->die_at) raise(SIGKILL);
        if (c->ack_every > 0 && (next + 1) % (uint64_t)c->ack_every == 0) {
            FILE *f = fopen(c->ckpt, "w"); /* the "checkpoint": the next message to ask for */
            if (!f) return 2;
            fprintf(f, "%llu\n", (unsigned long long)(next + 1));
            fclose(f);
            rc = tb_stream_ack(s, next);
        }
        next++;
        if (c->sleep_us) sleep_us(c->sleep_us);
    }
    if (rc == TB_EEND && next == c->count) rc = TB_OK;
    else if (rc == TB_EEND) {
        fprintf(stderr, "%s: end after %llu messages, expected %llu\n", c->id, (unsigned long long)next,
                (unsigned long long)c->count);
        tb_stream_close(s);
        return 1;
    }
    if (rc) fprintf(stderr, "%s: %s: %s\n", c->id, tb_status_name(rc), tb_err_msg());
    tb_stream_close(s);
    return code_of(rc);
}

static void wait_ok(pid_t pid, int timeout_ms, int want, const char *who)
{
    int code = -1;
    int r = tb_proc_wait(pid, timeout_ms, &code);
    if (r != 0) tb_proc_reap(pid);
    cr_assert_eq(r, 0, "%s did not finish within %d ms", who, timeout_ms);
    cr_assert_eq(code, want, "%s exited with %d, expected %d", who, code, want);
}

static report read_report(int fd)
{
    report r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(read(fd, &r, sizeof r), (ssize_t)sizeof r, "no report from the producer");
    return r;
}

static ccfg consumer_cfg(const char *ep, const char *id, uint64_t count)
{
    ccfg c = {.ep = ep, .id = id, .count = count, .die_at = -1};
    return c;
}

/* ---- tests ------------------------------------------------------------------------------------ */

TestSuite(stream, .timeout = 60);

Test(stream, one_to_one_thousands_exactly_once)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pcfg p = {.ep = ep, .consumers = 1, .count = 3000, .report_fd = fds[1]};
    ccfg c = consumer_cfg(ep, "only", 3000);
    pid_t cp = tb_proc_fork(consumer_main, &c);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(cp, 30000, 0, "consumer");
    wait_ok(pp, 30000, 0, "producer");
    report r = read_report(fds[0]);
    cr_assert_eq(r.st.sent, 3000);
    cr_assert_eq(r.st.errors_sent, 0);
}

Test(stream, one_to_one_over_tcp)
{
    char ep[128];
    tb_proc_tcp_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 1000};
    ccfg c = consumer_cfg(ep, "tcp-reader", 1000);
    pid_t cp = tb_proc_fork(consumer_main, &c);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(cp, 30000, 0, "consumer");
    wait_ok(pp, 30000, 0, "producer");
}

Test(stream, fan_out_one_to_four_each_gets_everything)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pcfg p = {.ep = ep, .consumers = 4, .count = 2000, .report_fd = fds[1], .check_hello = 1};
    const char *ids[4] = {"s0", "s1", "s2", "s3"};
    pid_t cp[4];
    ccfg c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = consumer_cfg(ep, ids[i], 2000);
        c[i].credit = 1 + i * 3; /* different windows */
        cp[i] = tb_proc_fork(consumer_main, &c[i]);
    }
    pid_t pp = tb_proc_fork(producer_main, &p);
    for (int i = 0; i < 4; i++) wait_ok(cp[i], 40000, 0, ids[i]);
    wait_ok(pp, 40000, 0, "producer");
    report r = read_report(fds[0]);
    cr_assert_eq(r.st.sent, 2000);
    cr_assert_eq(r.st.dropped, 0);
}

Test(stream, slow_consumer_bounds_producer_memory)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    const int64_t big = 256 * 1024;
    /* 200 messages of 256 KiB = 50 MiB in total; the producer may hold 8. */
    pcfg p = {.ep = ep, .consumers = 2, .count = 200, .big = big, .retain_max = 8, .report_fd = fds[1]};
    ccfg fast = consumer_cfg(ep, "fast", 200), slow = consumer_cfg(ep, "slow", 200);
    fast.big = slow.big = big;
    slow.credit = 2;
    slow.sleep_us = 8000;
    pid_t a = tb_proc_fork(consumer_main, &fast);
    pid_t b = tb_proc_fork(consumer_main, &slow);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(a, 40000, 0, "fast consumer");
    wait_ok(b, 40000, 0, "slow consumer");
    wait_ok(pp, 40000, 0, "producer");
    report r = read_report(fds[0]);
    cr_assert_leq(r.st.retained_peak, 8, "retained %d messages", r.st.retained_peak);
    cr_assert_geq(r.st.retained_peak, 2, "the slow consumer never made the producer hold messages");
    cr_assert_leq(r.st.retained_bytes_peak, (size_t)8 * (size_t)(big + 4096));
    long grew = r.rss_end_kb - r.rss_start_kb;
    /* The resident peak grows by the retained buffers, a message being encoded and ZeroMQ's
     * queues, far below the 50 MiB sent. (ASan's quarantine keeps freed buffers resident, so
     * there only the counts above measure the bound.) */
    if (!UNDER_ASAN) cr_assert_lt(grew, 20 * 1024, "producer peak RSS grew by %ld KiB", grew);
    fprintf(stderr, "slow consumer: retained peak %d messages, %zu bytes; producer peak RSS +%ld KiB\n",
            r.st.retained_peak, r.st.retained_bytes_peak, grew);
}

/* Application threads busy for longer than the peer timeout (a long training step, a slow
 * teacher forward) must not look dead: the I/O threads keep heartbeating. */
Test(stream, busy_applications_do_not_look_dead)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 3, .peer_timeout_ms = 800, .send_sleep_us = 1300 * 1000};
    ccfg c = consumer_cfg(ep, "sleepy", 3);
    c.peer_timeout_ms = 800;
    c.sleep_us = 1300 * 1000;
    c.credit = 1;
    pid_t cp = tb_proc_fork(consumer_main, &c);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(cp, 20000, 0, "consumer");
    wait_ok(pp, 20000, 0, "producer");
}

Test(stream, killed_consumer_is_dropped_and_others_finish)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pcfg p = {.ep = ep, .consumers = 3, .count = 1500, .policy = TB_PEER_DROP, .peer_timeout_ms = 1500,
              .report_fd = fds[1]};
    ccfg c0 = consumer_cfg(ep, "keep0", 1500), c1 = consumer_cfg(ep, "keep1", 1500),
         dead = consumer_cfg(ep, "doomed", 1500);
    dead.die_at = 200;
    pid_t a = tb_proc_fork(consumer_main, &c0);
    pid_t b = tb_proc_fork(consumer_main, &c1);
    pid_t d = tb_proc_fork(consumer_main, &dead);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(d, 30000, -SIGKILL, "doomed consumer");
    wait_ok(a, 30000, 0, "consumer 0");
    wait_ok(b, 30000, 0, "consumer 1");
    wait_ok(pp, 30000, 0, "producer");
    report r = read_report(fds[0]);
    cr_assert_eq(r.st.dropped, 1);
    cr_assert_eq(r.st.sent, 1500);
}

Test(stream, killed_consumer_fails_the_stream_under_fail_policy)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 2, .count = 100000, .policy = TB_PEER_FAIL, .peer_timeout_ms = 1500};
    ccfg c0 = consumer_cfg(ep, "ok", 100000), dead = consumer_cfg(ep, "doomed", 100000);
    dead.die_at = 100;
    pid_t a = tb_proc_fork(consumer_main, &c0);
    pid_t d = tb_proc_fork(consumer_main, &dead);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(d, 30000, -SIGKILL, "doomed consumer");
    wait_ok(pp, 30000, 4, "producer (TB_EPEER)");
    wait_ok(a, 30000, 4, "surviving consumer (told the producer stopped)");
}

/* A consumer acknowledges every 50 messages (its checkpoint), dies at message 230, and comes
 * back from its checkpoint (200): it gets 200..N-1 exactly once, the other consumer everything. */
static void wait_and_resume(int regen)
{
    char ep[128], dir[64], ckpt[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    cr_assert(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    const uint64_t n = 1000;
    pcfg p = {.ep = ep, .consumers = 2, .count = n, .policy = TB_PEER_WAIT, .peer_timeout_ms = 1500,
              .retain_max = regen ? 8 : 128, .regen = regen, .report_fd = fds[1]};
    ccfg other = consumer_cfg(ep, "other", n), a = consumer_cfg(ep, "phoenix", n);
    a.ack_every = 50;
    a.ckpt = ckpt;
    a.die_at = 230;
    pid_t o = tb_proc_fork(consumer_main, &other);
    pid_t pa = tb_proc_fork(consumer_main, &a);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(pa, 30000, -SIGKILL, "consumer before its death");
    FILE *f = fopen(ckpt, "r");
    cr_assert(f, "no checkpoint written");
    unsigned long long pos = 0;
    cr_assert_eq(fscanf(f, "%llu", &pos), 1);
    fclose(f);
    cr_assert_eq(pos, 200);
    sleep_us(2000 * 1000); /* past peer_timeout: the producer notices the death and waits */
    ccfg back = a;
    back.resume = pos;
    back.die_at = -1;
    pid_t pb = tb_proc_fork(consumer_main, &back);
    wait_ok(pb, 30000, 0, "restarted consumer");
    wait_ok(o, 30000, 0, "other consumer");
    wait_ok(pp, 30000, 0, "producer");
    report r = read_report(fds[0]);
    cr_assert_eq(r.st.dropped, 0);
    if (regen) cr_assert_gt(r.st.regenerated, 0, "the regenerate callback was never used");
    else cr_assert_eq(r.st.regenerated, 0);
    cr_assert_leq(r.st.retained_peak, regen ? 8 : 128);
    tb_proc_rmdir(dir);
}

Test(stream, killed_consumer_waited_for_resumes_exactly_once_from_retained) { wait_and_resume(0); }
Test(stream, killed_consumer_waited_for_resumes_exactly_once_by_regeneration) { wait_and_resume(1); }

Test(stream, sigterm_to_producer_shuts_down_cleanly)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 1000000, .signals = 1, .send_sleep_us = 1000};
    ccfg c = consumer_cfg(ep, "reader", 1000000);
    pid_t cp = tb_proc_fork(consumer_main, &c);
    pid_t pp = tb_proc_fork(producer_main, &p);
    sleep_us(600 * 1000);
    tb_proc_kill(pp, SIGTERM);
    wait_ok(pp, 5000, 3, "producer (TB_EINTR)");
    wait_ok(cp, 5000, 4, "consumer (TB_EPEER: the producer stopped)");
}

Test(stream, sigterm_to_consumer_shuts_down_cleanly)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 1000000};
    ccfg c = consumer_cfg(ep, "reader", 1000000);
    c.signals = 1;
    c.sleep_us = 1000;
    pid_t cp = tb_proc_fork(consumer_main, &c);
    pid_t pp = tb_proc_fork(producer_main, &p);
    sleep_us(600 * 1000);
    tb_proc_kill(cp, SIGTERM);
    wait_ok(cp, 5000, 3, "consumer (TB_EINTR)");
    wait_ok(pp, 5000, 4, "producer (TB_EPEER: its only consumer left, policy 'fail')");
}

Test(stream, consumer_that_never_acknowledges_is_an_error_not_a_hang)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 100, .retain_max = 8, .peer_timeout_ms = 1500};
    ccfg c = consumer_cfg(ep, "hoarder", 100);
    c.ack_every = 1000000; /* manual acks, never given */
    c.peer_timeout_ms = 5000;
    pid_t cp = tb_proc_fork(consumer_main, &c);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(pp, 10000, 5, "producer (TB_ETIMEOUT: retain buffer full of unacknowledged messages)");
    wait_ok(cp, 10000, 4, "consumer (TB_EPEER: the producer gave up)");
}

Test(stream, producer_waits_for_all_hellos_with_timeout)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumers = 2;
    o.hello_timeout_ms = 400;
    tb_stream *s;
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_WRITE, &o), TB_OK, "%s", tb_err_msg());
    tb_msg m;
    cr_assert_eq(make_msg(&m, 0, 0), 0);
    cr_assert_eq(tb_stream_send(s, &m, NULL), TB_ETIMEOUT);
    cr_assert(strstr(tb_err_msg(), "0 of 2 consumers"), "%s", tb_err_msg());
    tb_msg_free(&m);
    tb_stream_close(s);
}

Test(stream, consumer_notices_missing_and_dead_producer)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 1000000, .send_sleep_us = 1000};
    pid_t pp = tb_proc_fork(producer_main, &p);
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.heartbeat_ms = 100;
    o.peer_timeout_ms = 1500;
    o.consumer_id = "watcher";
    tb_stream *s;
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_READ, &o), TB_OK, "%s", tb_err_msg());
    for (uint64_t q = 0; q < 50; q++) {
        tb_msg m;
        int rc = tb_stream_recv(s, &m, 5000);
        cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
        cr_assert_eq(check_msg(&m, q, 0), 0);
        tb_msg_free(&m);
    }
    tb_proc_kill(pp, SIGKILL);
    wait_ok(pp, 5000, -SIGKILL, "producer");
    int rc = TB_OK;
    for (int i = 0; i < 100 && rc == TB_OK; i++) {
        tb_msg m;
        rc = tb_stream_recv(s, &m, 5000);
        tb_msg_free(&m);
    }
    cr_assert_eq(rc, TB_EPEER, "%s: %s", tb_status_name(rc), tb_err_msg());
    cr_assert(strstr(tb_err_msg(), "silent"), "%s", tb_err_msg());
    tb_stream_close(s);

    /* Nobody at all at the endpoint. */
    tb_proc_ipc_endpoint(ep, sizeof ep);
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_READ, &o), TB_OK, "%s", tb_err_msg());
    tb_msg m;
    rc = tb_stream_recv(s, &m, -1);
    cr_assert_eq(rc, TB_ETIMEOUT, "%s", tb_err_msg());
    cr_assert(strstr(tb_err_msg(), "no producer answered"), "%s", tb_err_msg());
    tb_stream_close(s);
}

/* ---- malformed peers (the test process speaks raw ZeroMQ + msgpack-c) -------------------------- */

/* Packs {"msg": kind, "stream": "main", extra int fields...} with msgpack-c. */
static void pack_map(msgpack_sbuffer *sb, const char *kind, int nint, const char *const *keys,
                     const int64_t *vals)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + (size_t)nint);
    msgpack_pack_str_with_body(&pk, "msg", 3);
    msgpack_pack_str_with_body(&pk, kind, strlen(kind));
    msgpack_pack_str_with_body(&pk, "stream", 6);
    msgpack_pack_str_with_body(&pk, "main", 4);
    for (int i = 0; i < nint; i++) {
        msgpack_pack_str_with_body(&pk, keys[i], strlen(keys[i]));
        msgpack_pack_int64(&pk, vals[i]);
    }
}

/* A hello of protocol TB_PROTOCOL_VERSION from `consumer` (NULL: without the field). */
static void pack_hello(msgpack_sbuffer *sb, const char *consumer, int64_t resume, int64_t credit)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, consumer ? 6 : 5);
    msgpack_pack_str_with_body(&pk, "msg", 3);
    msgpack_pack_str_with_body(&pk, "hello", 5);
    msgpack_pack_str_with_body(&pk, "stream", 6);
    msgpack_pack_str_with_body(&pk, "main", 4);
    msgpack_pack_str_with_body(&pk, "resume", 6);
    msgpack_pack_int64(&pk, resume);
    msgpack_pack_str_with_body(&pk, "credit", 6);
    msgpack_pack_int64(&pk, credit);
    msgpack_pack_str_with_body(&pk, "protocol", 8);
    msgpack_pack_int64(&pk, TB_PROTOCOL_VERSION);
    if (consumer) {
        msgpack_pack_str_with_body(&pk, "consumer", 8);
        msgpack_pack_str_with_body(&pk, consumer, strlen(consumer));
    }
}

/* Reads the string field `key` of a msgpack map into out ("" when absent); 0 if not a map. */
static int map_str(const void *data, size_t len, const char *key, char *out, size_t n)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    out[0] = '\0';
    int ok = msgpack_unpack_next(&u, data, len, NULL) == MSGPACK_UNPACK_SUCCESS && u.data.type == MSGPACK_OBJECT_MAP;
    for (uint32_t i = 0; ok && i < u.data.via.map.size; i++) {
        msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0) {
            if (v->type == MSGPACK_OBJECT_STR)
                snprintf(out, n, "%.*s", (int)v->via.str.size, v->via.str.ptr);
            else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                snprintf(out, n, "%llu", (unsigned long long)v->via.u64);
        }
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

/* Receives on `sock` (skipping a routing-id frame when `router`) until a message whose "msg" is
 * `kind` arrives; copies it into buf. Returns its length, or -1 after timeout_ms. */
static int recv_kind(void *sock, int router, const char *kind, char *buf, size_t n, int timeout_ms)
{
    int64_t t_end = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t_end = ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t left = t_end - (ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        if (left <= 0) return -1;
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)left) <= 0) continue;
        if (router) {
            char id[256];
            if (zmq_recv(sock, id, sizeof id, 0) < 0) continue;
        }
        int len = zmq_recv(sock, buf, n, 0);
        if (len < 0 || (size_t)len > n) continue;
        char k[32];
        if (map_str(buf, (size_t)len, "msg", k, sizeof k) && strcmp(k, kind) == 0) return len;
    }
}

Test(stream, malformed_messages_to_producer_get_error_replies)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 400, .send_sleep_us = 2000};
    ccfg c = consumer_cfg(ep, "honest", 400);
    pid_t cp = tb_proc_fork(consumer_main, &c);
    pid_t pp = tb_proc_fork(producer_main, &p);

    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(d, ZMQ_ROUTING_ID, "mallory", 7);
    cr_assert_eq(zmq_connect(d, ep), 0);
    msgpack_sbuffer sb[4];
    const char *seqk[1] = {"seq"};
    int64_t seqv[1] = {3};
    pack_map(&sb[0], "bogus", 0, NULL, NULL);        /* unknown kind */
    pack_map(&sb[1], "ack", 1, seqk, seqv);          /* from a consumer that never said hello */
    pack_map(&sb[2], "batch", 1, seqk, seqv);        /* out of protocol */
    const char garbage[] = "\xc1\xff\x00 this is not msgpack \xdf\xff\xff\xff\xff";
    struct { const void *p; size_t n; const char *expect; } cases[] = {
        {garbage, sizeof garbage, "malformed"},
        {"\xdf\xff\xff\xff\xff", 5, "malformed"}, /* a map that declares 4 billion entries */
        {sb[0].data, sb[0].size, "unknown message kind"},
        {sb[1].data, sb[1].size, "send hello first"},
        {sb[2].data, sb[2].size, "send hello first"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_geq(zmq_send(d, cases[i].p, cases[i].n, 0), 0);
        char buf[2048], text[512];
        int len = recv_kind(d, 0, "error", buf, sizeof buf, 5000);
        cr_assert_gt(len, 0, "no error reply to case %zu", i);
        cr_assert(map_str(buf, (size_t)len, "error", text, sizeof text));
        cr_assert(strstr(text, cases[i].expect), "case %zu: reply '%s' lacks '%s'", i, text, cases[i].expect);
    }
    for (int i = 0; i < 3; i++) msgpack_sbuffer_destroy(&sb[i]);
    zmq_close(d);
    zmq_ctx_term(ctx);
    wait_ok(cp, 30000, 0, "honest consumer");
    wait_ok(pp, 30000, 0, "producer (survived the malformed peer)");
}

/* A consumer that reconnects with the same id before its old connection is seen to close takes
 * the id over (ROUTER_HANDOVER), and ZeroMQ gives the old connection a generated id (a zero byte
 * first). Whatever arrives under such an id must not register a consumer: here a connection
 * without a routing id of its own says hello, gets an error, and the stream finishes with the one
 * real consumer (registered, the silent peer would fail the stream under the 'fail' policy). */
Test(stream, connection_without_its_own_routing_id_is_not_a_consumer)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 300, .send_sleep_us = 2000, .peer_timeout_ms = 1500};
    pid_t pp = tb_proc_fork(producer_main, &p);

    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER); /* no ZMQ_ROUTING_ID: the producer sees a generated one */
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_connect(d, ep), 0);
    msgpack_sbuffer sb;
    pack_hello(&sb, NULL, 0, 2);
    cr_assert_geq(zmq_send(d, sb.data, sb.size, 0), 0);
    msgpack_sbuffer_destroy(&sb);
    char buf[65536], text[512];
    int len = recv_kind(d, 0, "error", buf, sizeof buf, 10000);
    cr_assert_gt(len, 0, "the connection without an id got no error");
    cr_assert(map_str(buf, (size_t)len, "error", text, sizeof text));
    cr_assert(strstr(text, "ZMQ_ROUTING_ID"), "error '%s' should say the connection has no id of its own", text);

    ccfg c = consumer_cfg(ep, "honest", 300);
    pid_t cp = tb_proc_fork(consumer_main, &c);
    wait_ok(cp, 30000, 0, "honest consumer");
    wait_ok(pp, 30000, 0, "producer (one consumer, the silent peer was never one)");
    zmq_close(d);
    zmq_ctx_term(ctx);
}

typedef struct fake_cfg {
    const char *ep;
} fake_cfg;

/* Consumer of the hand-made stream below: values v = 10 seq, 4 messages. */
static int small_consumer_main(void *arg)
{
    const fake_cfg *c = arg;
    tb_log_set_name("victim");
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumer_id = "victim";
    o.heartbeat_ms = 100;
    tb_stream *s;
    int rc = tb_stream_open(&s, c->ep, TB_STREAM_READ, &o);
    uint64_t next = 0;
    while (rc == TB_OK) {
        tb_msg m;
        rc = tb_stream_recv(s, &m, 10000);
        if (rc) break;
        int64_t seq = -1, v = -1;
        tb_msg_get_int(&m, "seq", &seq);
        tb_msg_get_int(&m, "v", &v);
        tb_msg_free(&m);
        if (seq != (int64_t)next || v != 10 * seq) {
            fprintf(stderr, "victim: got seq %lld v %lld, expected seq %llu\n", (long long)seq, (long long)v,
                    (unsigned long long)next);
            tb_stream_close(s);
            return 1;
        }
        next++;
    }
    if (rc) fprintf(stderr, "victim: %s: %s\n", tb_status_name(rc), tb_err_msg());
    tb_stream_close(s);
    return rc == TB_EEND && next == 4 ? 0 : rc == TB_EEND ? 1 : code_of(rc);
}

static void router_send(void *r, const void *p, size_t n)
{
    cr_assert_geq(zmq_send(r, "victim", 6, ZMQ_SNDMORE), 0);
    cr_assert_geq(zmq_send(r, p, n, 0), 0);
}

static void send_batch(void *r, int64_t seq)
{
    msgpack_sbuffer sb;
    const char *k[2] = {"seq", "v"};
    int64_t v[2] = {seq, 10 * seq};
    pack_map(&sb, "batch", 2, k, v);
    router_send(r, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

Test(stream, malformed_and_out_of_order_messages_to_consumer)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    fake_cfg fc = {ep};
    pid_t cp = tb_proc_fork(small_consumer_main, &fc);

    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0, one = 1;
    zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    cr_assert_eq(zmq_bind(r, ep), 0);
    char buf[4096], text[512];
    int len = recv_kind(r, 1, "hello", buf, sizeof buf, 5000);
    cr_assert_gt(len, 0, "no hello from the consumer");
    cr_assert(map_str(buf, (size_t)len, "consumer", text, sizeof text));
    cr_assert_str_eq(text, "victim");
    map_str(buf, (size_t)len, "resume", text, sizeof text);
    cr_assert_str_eq(text, "0");
    map_str(buf, (size_t)len, "layers", text, sizeof text);
    cr_assert_str_eq(text, "", "no application fields were given");

    router_send(r, "\x93\x01\x02", 3); /* an array, not a map */
    len = recv_kind(r, 1, "error", buf, sizeof buf, 5000);
    cr_assert_gt(len, 0, "no error reply to garbage");
    map_str(buf, (size_t)len, "error", text, sizeof text);
    cr_assert(strstr(text, "not a msgpack map"), "%s", text);

    msgpack_sbuffer sb;
    pack_map(&sb, "hello", 0, NULL, NULL); /* a kind a producer never sends */
    router_send(r, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    len = recv_kind(r, 1, "error", buf, sizeof buf, 5000);
    cr_assert_gt(len, 0);
    map_str(buf, (size_t)len, "error", text, sizeof text);
    cr_assert(strstr(text, "not valid from a producer"), "%s", text);

    send_batch(r, 0);
    send_batch(r, 1);
    send_batch(r, 3); /* 2 is missing */
    len = recv_kind(r, 1, "error", buf, sizeof buf, 5000);
    cr_assert_gt(len, 0, "no error reply to a gap");
    map_str(buf, (size_t)len, "error", text, sizeof text);
    cr_assert(strstr(text, "expected message 2"), "%s", text);
    len = recv_kind(r, 1, "hello", buf, sizeof buf, 5000);
    cr_assert_gt(len, 0, "no new hello after the gap");
    map_str(buf, (size_t)len, "resume", text, sizeof text);
    cr_assert_str_eq(text, "2");
    send_batch(r, 1); /* a duplicate: dropped silently */
    send_batch(r, 2);
    send_batch(r, 3);
    const char *ck[2] = {"seq", "count"};
    int64_t cv[2] = {4, 4};
    pack_map(&sb, "end", 2, ck, cv);
    router_send(r, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    wait_ok(cp, 10000, 0, "consumer");
    zmq_close(r);
    zmq_ctx_term(ctx);
}

/* ---- an independent consumer: Python with pyzmq + msgpack-numpy, written from docs/protocol.md */

static const char py_consumer[] =
    "import sys, zmq, msgpack, msgpack_numpy, numpy as np\n"
    "ep, count = sys.argv[1], int(sys.argv[2])\n"
    "ctx = zmq.Context(); d = ctx.socket(zmq.DEALER)\n"
    "d.setsockopt(zmq.ROUTING_ID, b'py'); d.setsockopt(zmq.LINGER, 1000); d.connect(ep)\n"
    "def send(**kw):\n"
    "    kw.update(stream='main'); d.send(msgpack.packb(kw, use_bin_type=True))\n"
    "send(msg='hello', consumer='py', resume=0, credit=8, protocol=1, layers='3,7,11')\n"
    "nxt = 0\n"
    "if not d.poll(10000): sys.exit('no answer from the producer')\n"
    "while True:\n"
    "    if not d.poll(10000): sys.exit('producer went silent at %d' % nxt)\n"
    "    m = msgpack.unpackb(d.recv(), object_hook=msgpack_numpy.decode, raw=False)\n"
    "    assert m['stream'] == 'main', m\n"
    "    if m['msg'] == 'heartbeat': continue\n"
    "    if m['msg'] == 'end':\n"
    "        assert m['count'] == nxt == count, (m, nxt)\n"
    "        send(msg='heartbeat', resume=nxt, credit=8, seq=nxt - 1, count=nxt); break\n"
    "    assert m['msg'] == 'batch' and m['seq'] == nxt, (m['msg'], m.get('seq'), nxt)\n"
    "    n = 1 + (7 * nxt) % 64\n"
    "    want = ((nxt * 2654435761 + np.arange(n, dtype=np.uint64) * 40503) % 10007).astype(np.float32) / np.float32(7) - np.float32(700)\n"
    "    assert m['n'] == n and m['x'].dtype == np.float32 and np.array_equal(m['x'], want), nxt\n"
    "    send(msg='credit', credit=1); send(msg='ack', seq=nxt)\n"
    "    nxt += 1\n"
    "d.close(); ctx.term()\n";

Test(stream, python_consumer_speaks_the_documented_protocol)
{
    char ep[128], dir[64], script[128], count[16] = "700";
    tb_proc_ipc_endpoint(ep, sizeof ep);
    cr_assert(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(script, sizeof script, "%s/consumer.py", dir);
    FILE *f = fopen(script, "w");
    cr_assert(f);
    fputs(py_consumer, f);
    fclose(f);
    pcfg p = {.ep = ep, .consumers = 1, .count = 700};
    char *argv[] = {TB_PYTHON, script, ep, count, NULL};
    pid_t cp = tb_proc_spawn(argv);
    pid_t pp = tb_proc_fork(producer_main, &p);
    wait_ok(cp, 30000, 0, "python consumer");
    wait_ok(pp, 30000, 0, "producer");
    tb_proc_rmdir(dir);
}

/* ---- lost messages: a hand-written consumer drops the first copy of batch 1 and of END, as a
 * broken connection would; its heartbeats (docs/protocol.md, section 5) get both sent again. */

static int64_t map_int(const void *data, size_t len, const char *key)
{
    char s[32];
    if (!map_str(data, len, key, s, sizeof s) || !s[0]) return -1;
    return atoll(s);
}

static void dealer_send(void *d, const char *kind, int n, const char *const *keys, const int64_t *vals)
{
    msgpack_sbuffer sb;
    pack_map(&sb, kind, n, keys, vals);
    cr_assert_geq(zmq_send(d, sb.data, sb.size, 0), 0);
    msgpack_sbuffer_destroy(&sb);
}

Test(stream, heartbeats_repair_lost_batches_and_end)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg p = {.ep = ep, .consumers = 1, .count = 6, .peer_timeout_ms = 800};
    pid_t pp = tb_proc_fork(producer_main, &p);
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(d, ZMQ_ROUTING_ID, "lossy", 5);
    cr_assert_eq(zmq_connect(d, ep), 0);
    msgpack_sbuffer sb;
    pack_hello(&sb, "lossy", 0, 2);
    cr_assert_geq(zmq_send(d, sb.data, sb.size, 0), 0);
    msgpack_sbuffer_destroy(&sb);

    int64_t want = 0, got_twice = 0, dropped_batch = 0, dropped_end = 0, done = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t last_hb = 0;
    while (!done) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        cr_assert_lt(ms, 15000, "stuck at message %lld", (long long)want);
        if (ms - last_hb >= 100) { /* heartbeat: my whole position */
            const char *k[3] = {"resume", "credit", "seq"};
            int64_t v[3] = {want, 2, want - 1};
            dealer_send(d, "heartbeat", want > 0 ? 3 : 2, k, v);
            last_hb = ms;
        }
        zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 20) <= 0) continue;
        char buf[65536], kind[32];
        int len = zmq_recv(d, buf, sizeof buf, 0);
        cr_assert_gt(len, 0);
        cr_assert(map_str(buf, (size_t)len, "msg", kind, sizeof kind));
        if (strcmp(kind, "batch") == 0) {
            int64_t seq = map_int(buf, (size_t)len, "seq");
            if (seq == 1 && !dropped_batch) {
                dropped_batch = 1; /* "lost" */
                continue;
            }
            if (seq == 1) got_twice = 1;
            if (seq != want) continue; /* after the loss: not the one expected, ignored */
            want++;
            const char *ak[1] = {"seq"}, *ck[1] = {"credit"};
            int64_t av[1] = {seq}, cv[1] = {1};
            dealer_send(d, "ack", 1, ak, av);
            dealer_send(d, "credit", 1, ck, cv);
        } else if (strcmp(kind, "end") == 0) {
            if (!dropped_end) {
                dropped_end = 1; /* "lost" */
                continue;
            }
            cr_assert_eq(map_int(buf, (size_t)len, "count"), 6);
            cr_assert_eq(want, 6);
            const char *k[4] = {"resume", "credit", "seq", "count"};
            int64_t v[4] = {6, 2, 5, 6};
            dealer_send(d, "heartbeat", 4, k, v);
            done = 1;
        }
    }
    cr_assert(got_twice, "batch 1 was never sent again");
    wait_ok(pp, 10000, 0, "producer");
    zmq_close(d);
    zmq_ctx_term(ctx);
}
