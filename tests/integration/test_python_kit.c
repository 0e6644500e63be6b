/* Integration tests: the Python stage kit (python/tinybert_stage) against the C streams, in both
 * roles, over the scenarios of the C stream tests: the END count, a slow consumer, resume after a
 * kill, a peer without hello or of another protocol version, a malformed peer. The Python side is
 * python/tests/kit_peer.py (pattern messages: x = full((2, 3), seq) as <f4, tag = "m<seq>").
 * Every producer announces its count ("total") and every consumer checks it at its first message.
 * Also: the kit's field tables (python/tinybert_stage/protocol.py) list exactly the fields of the
 * tables in docs/protocol.md and docs/emit.md. */
#include "proc.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/wire/stream.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KIT_PEER TB_SOURCE_DIR "/python/tests/kit_peer.py"
#define DOC_CHECK TB_SOURCE_DIR "/python/tests/check_docs.py"

static pid_t py(const char *a0, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5,
                const char *a6, const char *a7)
{
    char *argv[] = {(char *)TB_PYTHON, (char *)KIT_PEER, (char *)a0, (char *)a1, (char *)a2, (char *)a3,
                    (char *)a4, (char *)a5, (char *)a6, (char *)a7, NULL};
    pid_t p = tb_proc_spawn(argv);
    cr_assert_gt(p, 0, "cannot start %s", KIT_PEER);
    return p;
}

static void wait_ok(pid_t pid, int timeout_ms, int want, const char *who)
{
    int code = -1;
    int r = tb_proc_wait(pid, timeout_ms, &code);
    if (r != 0) tb_proc_reap(pid);
    cr_assert_eq(r, 0, "%s did not finish within %d ms", who, timeout_ms);
    cr_assert_eq(code, want, "%s exited with %d, expected %d", who, code, want);
}

/* ---- C peers (forked before any thread exists) ------------------------------------------------ */

static int make_msg(tb_msg *m, uint64_t seq)
{
    tb_msg_init(m);
    tb_tensor t;
    int64_t shape[2] = {2, 3};
    if (tb_tensor_alloc(&t, TB_F32, 2, shape)) return 1;
    for (int i = 0; i < 6; i++) ((float *)t.data)[i] = (float)seq;
    char tag[32];
    snprintf(tag, sizeof tag, "m%llu", (unsigned long long)seq);
    return tb_msg_set_tensor_move(m, "x", &t) || tb_msg_set_str(m, "tag", tag);
}

static int check_msg(const tb_msg *m, uint64_t seq)
{
    const tb_tensor *x;
    const char *tag;
    char want[32];
    snprintf(want, sizeof want, "m%llu", (unsigned long long)seq);
    if (tb_msg_get_tensor(m, "x", &x) || x->dtype != TB_F32 || x->ndim != 2 || x->shape[0] != 2 || x->shape[1] != 3)
        return 0;
    for (int i = 0; i < 6; i++)
        if (((const float *)x->data)[i] != (float)seq) return 0;
    return tb_msg_get_str(m, "tag", &tag) == TB_OK && strcmp(tag, want) == 0;
}

typedef struct pcfg {
    const char *ep;
    int consumers, count;
    tb_peer_policy policy;
} pcfg;

static int c_producer(void *arg)
{
    const pcfg *c = arg;
    tb_log_set_name("c-producer");
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumers = c->consumers;
    o.heartbeat_ms = 200;
    o.peer_timeout_ms = 2000;
    o.policy = c->policy;
    o.dead_wait_ms = 30000;
    o.announce_count = (uint64_t)c->count;
    tb_stream *s;
    int rc = tb_stream_open(&s, c->ep, TB_STREAM_WRITE, &o);
    for (int q = 0; rc == TB_OK && q < c->count; q++) {
        tb_msg m;
        rc = make_msg(&m, (uint64_t)q) ? TB_ENOMEM : tb_stream_send(s, &m, NULL);
        tb_msg_free(&m);
    }
    if (rc == TB_OK) rc = tb_stream_finish(s);
    if (rc) fprintf(stderr, "c-producer: %s\n", tb_err_msg());
    tb_stream_close(s);
    return rc ? 1 : 0;
}

typedef struct ccfg {
    const char *ep, *id;
    int resume, count, die_at, sleep_ms;
} ccfg;

static int c_consumer(void *arg)
{
    const ccfg *c = arg;
    tb_log_set_name(c->id);
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumer_id = c->id;
    o.heartbeat_ms = 200;
    o.peer_timeout_ms = 5000;
    o.resume_from = (uint64_t)c->resume;
    o.manual_ack = 1;
    tb_stream *s;
    int rc = tb_stream_open(&s, c->ep, TB_STREAM_READ, &o);
    uint64_t want = (uint64_t)c->resume;
    tb_msg m;
    while (rc == TB_OK && (rc = tb_stream_recv(s, &m, -1)) == TB_OK) {
        int64_t seq = -1;
        tb_msg_get_int(&m, "seq", &seq);
        int ok = seq == (int64_t)want && check_msg(&m, want);
        tb_msg_free(&m);
        uint64_t announced = 0;
        if (want == (uint64_t)c->resume && (tb_stream_count(s, &announced) != TB_OK || announced != (uint64_t)c->count)) {
            fprintf(stderr, "%s: the producer's announced count is %llu, expected %d (%s)\n", c->id,
                    (unsigned long long)announced, c->count, tb_err_msg());
            return 4;
        }
        if (!ok) {
            fprintf(stderr, "%s: message %lld is not the expected %llu\n", c->id, (long long)seq,
                    (unsigned long long)want);
            return 3;
        }
        if (c->die_at > 0 && want == (uint64_t)c->die_at) raise(SIGKILL);
        if (c->die_at <= 0 || want < (uint64_t)c->die_at) rc = tb_stream_ack(s, want);
        want++;
        if (c->sleep_ms) usleep((useconds_t)c->sleep_ms * 1000);
    }
    int ok = rc == TB_EEND && want == (uint64_t)c->count;
    if (!ok) fprintf(stderr, "%s: stopped at %llu of %d: %s\n", c->id, (unsigned long long)want, c->count, tb_err_msg());
    tb_stream_close(s);
    return ok ? 0 : 1;
}

/* ---- Python producer, C consumers -------------------------------------------------------------- */

/* END count and a slow consumer: a kit producer with retain_max 8 feeds a fast and a slow C
 * consumer; both receive 0..199 once, in order, with the right content, and END 200. */
Test(python_kit, py_producer_c_consumers_end_count_and_slow_consumer, .timeout = 180)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    ccfg fast = {.ep = ep, .id = "fast", .count = 200}, slow = {.ep = ep, .id = "slow", .count = 200, .sleep_ms = 5};
    pid_t a = tb_proc_fork(c_consumer, &fast), b = tb_proc_fork(c_consumer, &slow);
    pid_t p = py("produce", ep, "200", "2", "fail", "8", NULL, NULL);
    wait_ok(a, 120000, 0, "fast C consumer");
    wait_ok(b, 120000, 0, "slow C consumer");
    wait_ok(p, 60000, 0, "Python producer");
}

/* Resume after a kill: the C consumer acknowledges 0..29 and is killed on receiving 30; restarted
 * with resume_from 30 and the same id, it gets 30..79 from the kit producer (policy 'wait'). */
Test(python_kit, py_producer_serves_a_killed_c_consumer_that_resumes, .timeout = 180)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t p = py("produce", ep, "80", "1", "wait", "64", NULL, NULL);
    ccfg first = {.ep = ep, .id = "phoenix", .count = 80, .die_at = 30};
    pid_t a = tb_proc_fork(c_consumer, &first);
    wait_ok(a, 60000, -SIGKILL, "C consumer (killed at 30)");
    ccfg again = {.ep = ep, .id = "phoenix", .resume = 30, .count = 80};
    pid_t b = tb_proc_fork(c_consumer, &again);
    wait_ok(b, 60000, 0, "restarted C consumer");
    wait_ok(p, 60000, 0, "Python producer");
}

/* A peer without hello, of another protocol version, with a consumer id that differs from its
 * routing id, or sending bytes that are not a message map gets the documented error from the kit
 * producer, and the stream goes on for the real consumer. */
Test(python_kit, py_producer_answers_rogue_peers_and_goes_on, .timeout = 120)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t p = py("produce", ep, "20", "1", "fail", "64", NULL, NULL);
    pid_t r = py("rogue", ep, NULL, NULL, NULL, NULL, NULL, NULL);
    wait_ok(r, 60000, 0, "rogue peer");
    ccfg c = {.ep = ep, .id = "honest", .count = 20};
    pid_t a = tb_proc_fork(c_consumer, &c);
    wait_ok(a, 60000, 0, "C consumer");
    wait_ok(p, 60000, 0, "Python producer");
}

/* ---- C producer, Python consumers -------------------------------------------------------------- */

Test(python_kit, c_producer_py_consumers_end_count_and_slow_consumer, .timeout = 180)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg pc = {.ep = ep, .consumers = 2, .count = 150, .policy = TB_PEER_FAIL};
    pid_t p = tb_proc_fork(c_producer, &pc);
    pid_t a = py("consume", ep, "py-fast", "150", "0", "0", "0", NULL);
    pid_t b = py("consume", ep, "py-slow", "150", "0", "0", "5", NULL);
    wait_ok(a, 120000, 0, "fast Python consumer");
    wait_ok(b, 120000, 0, "slow Python consumer");
    wait_ok(p, 60000, 0, "C producer");
}

Test(python_kit, c_producer_serves_a_killed_py_consumer_that_resumes, .timeout = 180)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg pc = {.ep = ep, .consumers = 1, .count = 80, .policy = TB_PEER_WAIT};
    pid_t p = tb_proc_fork(c_producer, &pc);
    pid_t a = py("consume", ep, "py-phoenix", "80", "0", "30", "0", NULL);
    wait_ok(a, 60000, -SIGKILL, "Python consumer (killed at 30)");
    pid_t b = py("consume", ep, "py-phoenix", "80", "30", "0", "0", NULL);
    wait_ok(b, 60000, 0, "restarted Python consumer");
    wait_ok(p, 60000, 0, "C producer");
}

/* The C producer gives the same answers to the same rogue peer. */
Test(python_kit, c_producer_answers_rogue_peers_and_goes_on, .timeout = 120)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pcfg pc = {.ep = ep, .consumers = 1, .count = 20, .policy = TB_PEER_FAIL};
    pid_t p = tb_proc_fork(c_producer, &pc);
    pid_t r = py("rogue", ep, NULL, NULL, NULL, NULL, NULL, NULL);
    wait_ok(r, 60000, 0, "rogue peer");
    pid_t a = py("consume", ep, "py-honest", "20", "0", "0", "0", NULL);
    wait_ok(a, 60000, 0, "Python consumer");
    wait_ok(p, 60000, 0, "C producer");
}

/* ---- a malformed producer -------------------------------------------------------------------- */

/* Bytes that are not msgpack, a gap in the sequence and the END: the C consumer and the kit
 * consumer give the same documented answers (python/tests/kit_peer.py rogue-producer checks them)
 * and both end with messages 0, 1, 2 exactly once. */
Test(python_kit, c_consumer_answers_a_rogue_producer, .timeout = 120)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t r = py("rogue-producer", ep, NULL, NULL, NULL, NULL, NULL, NULL);
    usleep(300000);
    ccfg c = {.ep = ep, .id = "target", .count = 3};
    pid_t a = tb_proc_fork(c_consumer, &c);
    wait_ok(r, 60000, 0, "rogue producer");
    wait_ok(a, 60000, 0, "C consumer");
}

Test(python_kit, py_consumer_answers_a_rogue_producer, .timeout = 120)
{
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    pid_t r = py("rogue-producer", ep, NULL, NULL, NULL, NULL, NULL, NULL);
    usleep(300000);
    pid_t a = py("consume", ep, "py-target", "3", "0", "0", "0", NULL);
    wait_ok(r, 60000, 0, "rogue producer");
    wait_ok(a, 60000, 0, "Python consumer");
}

/* ---- the kit's tables and the docs -------------------------------------------------------------- */

Test(python_kit, field_tables_agree_with_the_docs, .timeout = 60)
{
    char *argv[] = {(char *)TB_PYTHON, (char *)DOC_CHECK, (char *)TB_SOURCE_DIR, NULL};
    pid_t p = tb_proc_spawn(argv);
    cr_assert_gt(p, 0);
    wait_ok(p, 30000, 0, "check_docs.py (python/tinybert_stage/protocol.py vs docs/protocol.md, docs/emit.md)");
}
