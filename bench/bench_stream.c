/* bench_stream.c - throughput of lossless streams against raw ZeroMQ PUSH/PULL, same run.
 *
 * For 4 MB and 40 MB tensor messages, over ipc:// and tcp://127.0.0.1, with 1 and 4 consumers:
 *   raw       one PUSH/PULL pair per consumer; the producer encodes each message once and
 *             zmq_msg_copy's it to every PUSH; each consumer decodes it
 *   lossless  tb_stream (ROUTER/DEALER, credit, seq, acks, heartbeats): tb_stream_send encodes,
 *             tb_stream_recv decodes
 * Every process is a fork of this one (forked before any thread exists). A consumer times from
 * its first message to its last: GB/s = (n - 1) * bytes / elapsed. Finally the producer's peak
 * RSS while one of two consumers stalls. One JSON object per line on stdout.
 *
 * Usage: bench_stream [--quick] [--reps N] [--transport ipc|tcp] [--size-mb 4|40]
 *                     [--consumers 1|4] [--messages N] [--no-stall]
 * TB_BENCH_CREDIT=n sets the lossless consumers' credit window (default 4), TB_BENCH_RAW_HWM=n
 * the raw sockets' high-water marks (default 8, as the lossless sockets').
 */
#include "tb/wire/codec.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/wire/stream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define MAXC 4

typedef struct result {
    double secs;
    uint64_t msgs;
    int ok;
} result;

typedef struct run {
    const char *ep[MAXC]; /* raw: one endpoint per consumer; lossless: ep[0] */
    int consumers, lossless, stall;
    size_t bytes;
    uint64_t count;
    int fd;               /* consumer: result pipe */
    int index;
} run;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

static int make_payload(tb_msg *m, size_t bytes)
{
    tb_msg_init(m);
    tb_tensor t;
    int64_t n = (int64_t)(bytes / 4);
    if (tb_tensor_alloc(&t, TB_F32, 1, &n)) return TB_ENOMEM;
    for (int64_t i = 0; i < n; i++) ((float *)t.data)[i] = (float)(i % 1000) * 0.5f;
    int rc = tb_msg_set_tensor_move(m, "teacher.hidden.3", &t);
    tb_tensor_free(&t);
    return rc;
}

/* ---- raw PUSH/PULL ------------------------------------------------------------------------- */

static void buf_release(void *data, void *hint)
{
    (void)hint;
    tb_aligned_free(data);
}

/* Raw high-water mark: TB_BENCH_RAW_HWM, default 8 (the lossless sockets' hwm). */
static int raw_hwm(void)
{
    const char *e = getenv("TB_BENCH_RAW_HWM");
    return e && atoi(e) > 0 ? atoi(e) : 8;
}

static int raw_producer(const run *r)
{
    void *ctx = zmq_ctx_new();
    void *push[MAXC];
    int hwm = raw_hwm(), linger = 10000;
    for (int i = 0; i < r->consumers; i++) {
        push[i] = zmq_socket(ctx, ZMQ_PUSH);
        zmq_setsockopt(push[i], ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(push[i], ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_bind(push[i], r->ep[i])) return 2;
    }
    tb_msg m;
    if (make_payload(&m, r->bytes)) return 2;
    for (uint64_t q = 0; q < r->count; q++) {
        tb_buf b;
        tb_buf_init(&b);
        tb_msg_set_int(&m, "seq", (int64_t)q);
        if (tb_codec_encode(&m, &b)) return 2;
        zmq_msg_t one; /* one buffer, shared by every PUSH without a copy */
        zmq_msg_init_data(&one, b.data, b.len, buf_release, NULL);
        for (int i = 0; i < r->consumers; i++) {
            zmq_msg_t cp;
            zmq_msg_init(&cp);
            zmq_msg_copy(&cp, &one);
            if (zmq_msg_send(&cp, push[i], 0) < 0) return 2;
        }
        zmq_msg_close(&one);
    }
    tb_msg_free(&m);
    for (int i = 0; i < r->consumers; i++) zmq_close(push[i]);
    zmq_ctx_term(ctx); /* waits (LINGER) until everything queued went out */
    return 0;
}

static int raw_consumer(const run *r)
{
    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    int hwm = raw_hwm();
    zmq_setsockopt(pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_connect(pull, r->ep[r->index])) return 2;
    result res = {0};
    double t0 = 0;
    for (uint64_t q = 0; q < r->count; q++) {
        zmq_msg_t zm;
        zmq_msg_init(&zm);
        if (zmq_msg_recv(&zm, pull, 0) < 0) return 2;
        tb_msg m;
        if (tb_codec_decode(zmq_msg_data(&zm), zmq_msg_size(&zm), &m, 0, NULL)) return 2;
        int64_t seq = -1;
        tb_msg_get_int(&m, "seq", &seq);
        tb_msg_free(&m);
        zmq_msg_close(&zm);
        if (seq != (int64_t)q) return 1;
        if (q == 0) t0 = now_s();
    }
    res.secs = now_s() - t0;
    res.msgs = r->count;
    res.ok = 1;
    zmq_close(pull);
    zmq_ctx_term(ctx);
    return write(r->fd, &res, sizeof res) == (ssize_t)sizeof res ? 0 : 2;
}

/* ---- lossless ------------------------------------------------------------------------------ */

static void opts_for(tb_stream_opts *o, const run *r)
{
    tb_stream_opts_default(o);
    o->consumers = r->consumers;
    o->retain_max = 16;
    o->credit = getenv("TB_BENCH_CREDIT") ? atoi(getenv("TB_BENCH_CREDIT")) : 4;
    o->hwm = 8;
    o->peer_timeout_ms = 60000;
    o->finish_timeout_ms = 120000;
}

static int lossless_producer(const run *r)
{
    tb_stream_opts o;
    opts_for(&o, r);
    tb_stream *s;
    if (tb_stream_open(&s, r->ep[0], TB_STREAM_WRITE, &o)) goto fail;
    tb_msg m;
    if (make_payload(&m, r->bytes)) goto fail;
    for (uint64_t q = 0; q < r->count; q++)
        if (tb_stream_send(s, &m, NULL)) goto fail;
    if (tb_stream_finish(s)) goto fail;
    tb_stream_stats st;
    tb_stream_stats_get(s, &st);
    tb_msg_free(&m);
    tb_stream_close(s);
    if (r->stall) {
        printf("{\"bench\":\"stream_stalled_consumer\",\"msg_bytes\":%zu,\"messages\":%llu,\"retain_max\":%d,"
               "\"credit\":%d,\"retained_peak\":%d,\"retained_bytes_peak\":%zu,\"producer_peak_rss_mb\":%.1f,"
               "\"bytes_sent_mb\":%.1f}\n",
               r->bytes, (unsigned long long)r->count, o.retain_max, o.credit, st.retained_peak,
               st.retained_bytes_peak, peak_rss_kb() / 1024.0, (double)r->bytes * (double)r->count / 1048576.0);
        fflush(stdout);
    }
    return 0;
fail:
    fprintf(stderr, "lossless producer: %s\n", tb_err_msg());
    return 2;
}

static int lossless_consumer(const run *r)
{
    tb_stream_opts o;
    opts_for(&o, r);
    char id[16];
    snprintf(id, sizeof id, "b%d", r->index);
    o.consumer_id = id;
    tb_stream *s;
    if (tb_stream_open(&s, r->ep[0], TB_STREAM_READ, &o)) goto fail;
    result res = {0};
    double t0 = 0;
    for (uint64_t q = 0;; q++) {
        tb_msg m;
        int rc = tb_stream_recv(s, &m, -1);
        if (rc == TB_EEND) {
            if (q != r->count) return 1;
            break;
        }
        if (rc) goto fail;
        tb_msg_free(&m);
        if (q == 0) t0 = now_s();
        if (r->stall && r->index == 1 && q == 0) sleep(3); /* the stalled consumer */
    }
    res.secs = now_s() - t0;
    res.msgs = r->count;
    res.ok = 1;
    tb_stream_close(s);
    return write(r->fd, &res, sizeof res) == (ssize_t)sizeof res ? 0 : 2;
fail:
    fprintf(stderr, "lossless consumer %d: %s\n", r->index, tb_err_msg());
    return 2;
}

/* ---- driver -------------------------------------------------------------------------------- */

static pid_t fork_run(int (*fn)(const run *), const run *r)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(fn(r));
    return pid;
}

/* Runs one configuration once; returns the mean per-consumer GB/s (*slowest: the slowest
 * consumer's, *msgs_s: mean messages/s per consumer), or 0 when a process failed. */
static double measure(run *r, double *slowest, double *msgs_s)
{
    int fds[2];
    if (pipe(fds)) return 0;
    pid_t kids[MAXC];
    for (int i = 0; i < r->consumers; i++) {
        run c = *r;
        c.index = i;
        c.fd = fds[1];
        kids[i] = fork_run(r->lossless ? lossless_consumer : raw_consumer, &c);
    }
    pid_t prod = fork_run(r->lossless ? lossless_producer : raw_producer, r);
    int ok = 1;
    for (int i = 0; i < r->consumers; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    int st;
    waitpid(prod, &st, 0);
    ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    close(fds[1]);
    double sum = 0, mn = 1e30, ms = 0;
    for (int i = 0; ok && i < r->consumers; i++) {
        result res;
        if (read(fds[0], &res, sizeof res) != (ssize_t)sizeof res || !res.ok || res.secs <= 0) {
            ok = 0;
            break;
        }
        double gbs = (double)(res.msgs - 1) * (double)r->bytes / res.secs / 1e9;
        sum += gbs;
        if (gbs < mn) mn = gbs;
        ms += (double)(res.msgs - 1) / res.secs;
    }
    close(fds[0]);
    if (!ok) return 0;
    *slowest = mn;
    *msgs_s = ms / r->consumers;
    return sum / r->consumers;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void print_load(const char *when)
{
    double l[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3) l[0] = l[1] = l[2] = -1;
        fclose(f);
    }
    printf("{\"bench\":\"stream_host\",\"when\":\"%s\",\"cpus\":%ld,\"loadavg_1m\":%.2f,\"loadavg_5m\":%.2f}\n", when,
           sysconf(_SC_NPROCESSORS_ONLN), l[0], l[1]);
    fflush(stdout);
}

#define REPS_MAX 15

static void usage(void)
{
    fprintf(stderr, "usage: bench_stream [--quick] [--reps N] [--transport ipc|tcp] [--size-mb M] "
                    "[--consumers 1|4] [--messages N] [--no-stall]\n");
}

int main(int argc, char **argv)
{
    int quick = 0, REPS = 3, only_t = -1, only_nc = 0, stall = 1;
    long only_mb = 0, msgs = 0;
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--no-stall") == 0) stall = 0;
        else if (more && strcmp(argv[i], "--reps") == 0) REPS = atoi(argv[++i]);
        else if (more && strcmp(argv[i], "--transport") == 0) only_t = strcmp(argv[++i], "tcp") == 0;
        else if (more && strcmp(argv[i], "--size-mb") == 0) only_mb = atol(argv[++i]);
        else if (more && strcmp(argv[i], "--consumers") == 0) only_nc = atoi(argv[++i]);
        else if (more && strcmp(argv[i], "--messages") == 0) msgs = atol(argv[++i]);
        else {
            usage();
            return 2;
        }
    }
    if (REPS < 1 || REPS > REPS_MAX) {
        usage();
        return 2;
    }
    tb_log_set_level(TB_LOG_WARN);
    const size_t sizes[2] = {(size_t)4 << 20, (size_t)40 << 20};
    uint64_t counts[2] = {quick ? 24 : 48, quick ? 8 : 10};
    if (msgs > 1) counts[0] = counts[1] = (uint64_t)msgs;
    const char *transports[2] = {"ipc", "tcp"};
    int port = 20000 + (int)(getpid() % 20000);
    char eps[MAXC][128];
    print_load("start");
    for (int t = 0; t < 2; t++)
        for (int si = 0; si < 2; si++)
            for (int nc = 1; nc <= MAXC; nc += MAXC - 1) {
                if ((only_t >= 0 && only_t != t) || (only_mb && (size_t)only_mb << 20 != sizes[si]) ||
                    (only_nc && only_nc != nc))
                    continue;
                double gb[2][REPS_MAX], slow[2][REPS_MAX], mps[2][REPS_MAX];
                int fails[2] = {0, 0};
                /* raw and lossless alternate, so that load from other processes hits both alike */
                for (int rep = 0; rep < REPS; rep++)
                    for (int mode = 0; mode < 2; mode++) {
                        run r = {.consumers = nc, .bytes = sizes[si], .count = counts[si], .lossless = mode};
                        for (int i = 0; i < MAXC; i++) {
                            if (t == 0)
                                snprintf(eps[i], sizeof eps[i], "ipc:///tmp/tb-bench-%ld-%d", (long)getpid(), port + i);
                            else snprintf(eps[i], sizeof eps[i], "tcp://127.0.0.1:%d", port + i);
                            r.ep[i] = eps[i];
                        }
                        port += MAXC;
                        gb[mode][rep] = measure(&r, &slow[mode][rep], &mps[mode][rep]);
                        if (gb[mode][rep] <= 0) fails[mode]++;
                    }
                double med[2];
                for (int mode = 0; mode < 2; mode++) {
                    med[mode] = median(gb[mode], REPS);
                    double ms = median(mps[mode], REPS), sl = median(slow[mode], REPS);
                    printf("{\"bench\":\"stream\",\"transport\":\"%s\",\"mode\":\"%s\",\"msg_bytes\":%zu,"
                           "\"consumers\":%d,\"messages\":%llu,\"reps\":%d,\"failed_reps\":%d,"
                           "\"msgs_per_s_per_consumer\":%.2f,\"gb_per_s_per_consumer\":%.3f,"
                           "\"gb_per_s_slowest_consumer\":%.3f",
                           transports[t], mode ? "lossless" : "raw", sizes[si], nc,
                           (unsigned long long)counts[si], REPS, fails[mode], ms, med[mode], sl);
                    if (mode == 1 && med[0] > 0) printf(",\"ratio_vs_raw\":%.3f", med[1] / med[0]);
                    printf("}\n");
                    fflush(stdout);
                }
            }
    if (!stall) {
        print_load("end");
        return 0;
    }
    /* Peak RSS of a producer whose second consumer stalls for 3 s after its first message. */
    char ep[128];
    snprintf(ep, sizeof ep, "ipc:///tmp/tb-bench-%ld-stall", (long)getpid());
    run r = {.consumers = 2, .bytes = (size_t)4 << 20, .count = 100, .lossless = 1, .stall = 1};
    r.ep[0] = ep;
    double sl, ms;
    if (measure(&r, &sl, &ms) <= 0) printf("{\"bench\":\"stream_stalled_consumer\",\"error\":\"a process failed\"}\n");
    print_load("end");
    return 0;
}
