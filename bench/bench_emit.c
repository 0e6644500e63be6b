/* bench_emit.c - the emitter's send path with 1 and with 4 sink students, and bytes per batch.
 *
 * The emitter (a forked process) runs a random teacher once, then for every batch builds the
 * feature message from the teacher's arena (tb_features_add: borrowed f32 tensors, or the f16
 * conversion) and sends it with tb_stream_send over ipc:// to S sink students (forked
 * processes: tb_stream_recv, tb_features_view_init, discard). Two CPU times per batch:
 *   send_path   the emitter's application thread (CLOCK_THREAD_CPUTIME_ID) in tb_features_add +
 *               tb_stream_send: building the message, encoding it once, handing the one buffer
 *               to the stream's I/O thread. This is the work the emitter does per batch; fan-out
 *               by zmq_msg_copy shares the buffer, so it must not grow with S: the values for
 *               S = 1 and S = 4 must stay within 10 %.
 *   process     the whole emitter process (getrusage: every thread, user + system) from the
 *               first send to the end of tb_stream_finish. It also holds what the transport
 *               does per receiver: ZeroMQ writes the bytes into each peer's socket (a kernel
 *               copy per student over ipc:// and tcp://), so it grows with S by design.
 * The teacher forward is not timed (it does not depend on S).
 * Retain depth (--retain, default 4): the emitter's stream keeps every message some student has
 * not acknowledged; each is a separately allocated encode buffer, and a deeper buffer means more
 * fresh pages to fault in per batch (reported as page_faults_per_batch), more so with 4 students,
 * whose slowest one holds buffers longer. With BERT-base features (~160 MB per batch) the stream's
 * byte bound (512 MiB) keeps at most 3 messages, so 4 models that regime at this smaller size;
 * --retain 64 shows the page-fault cost of a deep buffer.
 * Runs alternate S = 1 and S = 4, repeated --reps times; medians are reported. The main process
 * never creates a thread (every run is forked). One JSON object per line on stdout.
 *
 * Usage: bench_emit [--quick] [--reps N] [--batches N] [--dtype f32|f16|both] [--retain N]
 */
#include "tb/model/bert.h"
#include "tb/wire/codec.h"
#include "tb/base/error.h"
#include "tb/train/features.h"
#include "tb/base/log.h"
#include "tb/wire/stream.h"
#include "tb/base/threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Teacher and batch: 4 layers, hidden 256, 4 heads; B 8 x T 128. A 2-layer student's request
 * plus logits, and a 4-layer one's: the union is every hidden state and attention map. */
enum { L = 4, C = 256, NH = 4, FF = 512, V = 1000, B = 8, T = 128 };

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int g_retain = 4; /* --retain: messages the emitter's stream may hold */
static int32_t g_ids[B * T], g_types[B * T], g_mask[B * T];

static void make_tokens(void)
{
    for (int i = 0; i < B * T; i++) {
        int len = 64 + (i / T) * 8;
        g_ids[i] = i % T < len ? 5 + (i * 37) % (V - 5) : 0;
        g_mask[i] = i % T < len;
        g_types[i] = 0;
    }
}

static tb_features_request request(void)
{
    tb_features_request r = {.hidden = (1u << (L + 1)) - 1, .attn = (1u << L) - 1, .logits = 1};
    return r;
}

/* ---- sink ---------------------------------------------------------------------------------- */

static int sink(const char *ep, int idx, int batches)
{
    char id[32];
    snprintf(id, sizeof id, "sink%d", idx);
    tb_features_request r = {.student_layers = idx % 2 ? 2 : 4, .logits = 1};
    tb_msg hello;
    tb_msg_init(&hello);
    if (tb_features_request_to_hello(&r, &hello)) return 2;
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumer_id = id;
    o.hello = &hello;
    tb_stream *s;
    if (tb_stream_open(&s, ep, TB_STREAM_READ, &o)) return 3;
    int n = 0, rc = 0;
    for (;;) {
        tb_msg m;
        int k = tb_stream_recv(s, &m, 60000);
        if (k == TB_EEND) break;
        if (k) {
            fprintf(stderr, "sink %d: %s\n", idx, tb_err_msg());
            rc = 4;
            break;
        }
        tb_features_view v;
        if (tb_features_view_init(&v, &m, &r)) {
            fprintf(stderr, "sink %d: %s\n", idx, tb_err_msg());
            rc = 5;
        }
        tb_features_view_free(&v);
        tb_msg_free(&m);
        if (rc) break;
        n++;
    }
    tb_stream_close(s);
    tb_msg_free(&hello);
    return rc ? rc : n == batches ? 0 : 6;
}

/* ---- emitter ------------------------------------------------------------------------------- */

typedef struct result {
    double app_cpu_per_batch;   /* application thread: build + encode + hand over (tb_stream_send) */
    double build_cpu_per_batch; /* of which tb_features_add */
    double minflt_per_batch;    /* minor page faults of the process */
    double cpu_per_batch, wall_per_batch;
    double bytes_per_batch;
    int ok;
} result;

static int emitter(const char *ep, int sinks, int batches, tb_dtype dt, result *res)
{
    int rc = TB_OK;
    tb_bert_model m = {0};
    tb_stream *s = NULL;
    tb_buf buf;
    tb_buf_init(&buf);
    tb_threads_setup(1);
    tb_bert_config c = {.vocab_size = V, .hidden_size = C, .num_hidden_layers = L, .num_attention_heads = NH,
                        .intermediate_size = FF, .max_position_embeddings = T, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .initializer_range = 0.02f, .head = TB_HEAD_TINYBERT,
                        .num_labels = 2};
    TB_TRY(tb_bert_init(&m, &c));
    tb_bert_init_random(&m, 1);
    tb_bert_set_threads(&m, 1);
    tb_features_request r = request();
    TB_TRY(tb_bert_arena_reserve(&m, B, T, TB_BERT_INFER, r.attn, 0));
    tb_bert_batch bb = {.B = B, .T = T, .input_ids = g_ids, .token_type_ids = g_types, .attention_mask = g_mask};
    tb_bert_run run = {0};
    tb_features_run_flags(&r, &run);
    TB_TRY(tb_bert_forward(&m, &bb, &run));
    tb_features_meta meta;
    tb_features_meta_from_model(&meta, &m);
    meta.dtype = dt;
    int64_t s2[2] = {B, T};
    tb_tensor ids, types, mask;
    TB_TRY(tb_tensor_borrow(&ids, TB_I32, 2, s2, g_ids));
    TB_TRY(tb_tensor_borrow(&types, TB_I32, 2, s2, g_types));
    TB_TRY(tb_tensor_borrow(&mask, TB_I32, 2, s2, g_mask));

    tb_stream_opts o;
    tb_stream_opts_default(&o);
    o.consumers = sinks;
    o.retain_max = g_retain;
    TB_TRY(tb_stream_open(&s, ep, TB_STREAM_WRITE, &o));
    TB_TRY(tb_stream_wait_consumers(s));
    {   /* bytes on the wire: one encoded message (outside the timed part) */
        tb_msg msg;
        tb_msg_init(&msg);
        rc = tb_msg_set_tensor_ref(&msg, "input_ids", &ids);
        if (!rc) rc = tb_msg_set_tensor_ref(&msg, "token_type_ids", &types);
        if (!rc) rc = tb_msg_set_tensor_ref(&msg, "attention_mask", &mask);
        if (!rc) rc = tb_features_add(&msg, &m, &r, &meta, B, T, "0,1");
        if (!rc) rc = tb_codec_encode(&msg, &buf);
        res->bytes_per_batch = (double)buf.len;
        tb_msg_free(&msg);
        if (rc) goto error;
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double c0 = cpu_s(), w0 = now_s(), app = 0, build = 0;
    for (int i = 0; i < batches; i++) {
        double a0 = thread_cpu_s();
        tb_msg msg;
        tb_msg_init(&msg);
        rc = tb_msg_set_tensor_ref(&msg, "input_ids", &ids);
        if (!rc) rc = tb_msg_set_tensor_ref(&msg, "token_type_ids", &types);
        if (!rc) rc = tb_msg_set_tensor_ref(&msg, "attention_mask", &mask);
        if (!rc) rc = tb_features_add(&msg, &m, &r, &meta, B, T, "0,1");
        build += thread_cpu_s() - a0;
        if (!rc) rc = tb_stream_send(s, &msg, NULL);
        tb_msg_free(&msg);
        app += thread_cpu_s() - a0;
        if (rc) goto error;
    }
    TB_TRY(tb_stream_finish(s));
    double c1 = cpu_s(), w1 = now_s();
    res->cpu_per_batch = (c1 - c0) / batches;
    res->app_cpu_per_batch = app / batches;
    res->build_cpu_per_batch = build / batches;
    getrusage(RUSAGE_SELF, &ru1);
    res->minflt_per_batch = (double)(ru1.ru_minflt - ru0.ru_minflt) / batches;
    res->wall_per_batch = (w1 - w0) / batches;
    res->ok = 1;
error:
    tb_stream_close(s);
    tb_buf_free(&buf);
    tb_bert_free(&m);
    return rc;
}

static int run_once(int sinks, int batches, tb_dtype dt, int rep, result *out)
{
    char ep[128];
    snprintf(ep, sizeof ep, "ipc:///tmp/tb-bench-emit-%d-%d-%d", (int)getpid(), sinks, rep);
    int fd[2];
    if (pipe(fd)) return 1;
    pid_t pe = fork();
    if (pe == 0) {
        close(fd[0]);
        result r = {0};
        int rc = emitter(ep, sinks, batches, dt, &r);
        if (rc) fprintf(stderr, "bench_emit: emitter: %s\n", tb_err_msg());
        if (write(fd[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(3);
        _exit(rc ? 1 : 0);
    }
    close(fd[1]);
    pid_t ps[8];
    for (int i = 0; i < sinks; i++) {
        ps[i] = fork();
        if (ps[i] == 0) _exit(sink(ep, i, batches));
    }
    int bad = 0, st;
    for (int i = 0; i < sinks; i++) {
        waitpid(ps[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) bad = 1;
    }
    waitpid(pe, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) bad = 1;
    if (read(fd[0], out, sizeof *out) != (ssize_t)sizeof *out) bad = 1;
    close(fd[0]);
    return bad;
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

static double loadavg1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

int main(int argc, char **argv)
{
    int reps = 3, batches = 40, quick = 0;
    const char *dts = "both";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dts = argv[++i];
        else if (!strcmp(argv[i], "--retain") && i + 1 < argc) g_retain = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_emit [--quick] [--reps N] [--batches N] [--dtype f32|f16|both] [--retain N]\n");
            return 2;
        }
    }
    if (quick) {
        reps = 1;
        batches = 10;
    }
    if (reps < 1 || reps > 50 || batches < 2 || g_retain < 1) return 2;
    tb_log_set_level(TB_LOG_WARN);
    make_tokens();
    tb_dtype list[2];
    int nd = 0;
    if (strcmp(dts, "f16")) list[nd++] = TB_F32;
    if (strcmp(dts, "f32")) list[nd++] = TB_F16;
    int fail = 0;
    for (int d = 0; d < nd; d++) {
        double cpu[2][50], app[2][50], bld[2][50], flt[2][50], wall[2][50], bytes = 0;
        const int S[2] = {1, 4};
        for (int rep = 0; rep < reps; rep++)
            for (int k = 0; k < 2; k++) {
                result r = {0};
                if (run_once(S[k], batches, list[d], rep, &r) || !r.ok) {
                    fprintf(stderr, "bench_emit: run with %d sinks failed\n", S[k]);
                    fail = 1;
                    continue;
                }
                cpu[k][rep] = r.cpu_per_batch;
                app[k][rep] = r.app_cpu_per_batch;
                bld[k][rep] = r.build_cpu_per_batch;
                flt[k][rep] = r.minflt_per_batch;
                wall[k][rep] = r.wall_per_batch;
                bytes = r.bytes_per_batch;
            }
        if (fail) break;
        const char *dn = list[d] == TB_F16 ? "f16" : "f32";
        double cm[2], am[2], wm[2];
        for (int k = 0; k < 2; k++) {
            cm[k] = median(cpu[k], reps);
            am[k] = median(app[k], reps);
            wm[k] = median(wall[k], reps);
            printf("{\"bench\":\"emit_send\",\"dtype\":\"%s\",\"sinks\":%d,\"batches\":%d,\"reps\":%d,"
                   "\"send_path_cpu_ms_per_batch\":%.3f,\"build_cpu_ms_per_batch\":%.3f,"
                   "\"process_cpu_ms_per_batch\":%.3f,\"page_faults_per_batch\":%.0f,"
                   "\"wall_ms_per_batch\":%.3f,\"bytes_per_batch\":%.0f,"
                   "\"batch\":[%d,%d],\"teacher\":{\"layers\":%d,\"hidden\":%d,\"heads\":%d},\"retain\":%d,"
                   "\"load1\":%.2f}\n",
                   dn, S[k], batches, reps, am[k] * 1e3, median(bld[k], reps) * 1e3, cm[k] * 1e3,
                   median(flt[k], reps), wm[k] * 1e3, bytes, B, T, L, C, NH, g_retain, loadavg1());
        }
        double ratio = am[1] / am[0], pratio = cm[1] / cm[0];
        printf("{\"bench\":\"emit_send_ratio\",\"dtype\":\"%s\",\"send_path_4_over_1\":%.3f,\"within_10pct\":%s,"
               "\"process_cpu_4_over_1\":%.3f,\"bytes_per_batch\":%.0f}\n",
               dn, ratio, ratio <= 1.10 && ratio >= 0.90 ? "true" : "false", pratio, bytes);
        fflush(stdout);
    }
    return fail;
}
