/* Reference tests of tb/model/ops.h and tb/model/loss.h against a float64 PyTorch run of the same formulas
 * (tests/reference/py/ops_ref.py, Debian python3-torch) on the same inputs.
 *
 * The test writes every case's inputs as raw little-endian .bin files plus a manifest.json into
 * a fresh mkdtemp directory, runs the script once, reads back the float64 outputs and gradients
 * and requires per tensor ||C - ref|| / ||ref|| <= 1e-4 (fp32 kernels against float64), printing
 * the relative and max absolute error of each. Dropout masks are drawn here from tb/base/rng.h by the
 * documented convention (keep = uniform >= p) and handed to torch as inputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdcheck.h"
#include "tb/base/error.h"
#include "tb/model/loss.h"
#include "tb/model/ops.h"
#include "tb/base/rng.h"

#define REL_TOL 1e-4
#define MAX_RESULTS 256

typedef struct { char key[128]; float *c; size_t n; } result;

static char g_dir[64];
static FILE *g_man;
static int g_ncases, g_ninputs;
static result g_res[MAX_RESULTS];
static int g_nres;

static float *fa(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    cr_assert_not_null(p);
    return p;
}

static void case_begin(const char *name, const char *op, const char *params_json)
{
    fprintf(g_man, "%s{\"name\": \"%s\", \"op\": \"%s\", \"params\": {%s}, \"inputs\": {",
            g_ncases++ ? ",\n" : "", name, op, params_json ? params_json : "");
    g_ninputs = 0;
}

static void case_input(const char *cs, const char *name, int is_int, const void *data, int ndim, const int64_t *shape)
{
    size_t n = 1;
    fprintf(g_man, "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [", g_ninputs++ ? ", " : "", name, is_int ? "i32" : "f32");
    for (int i = 0; i < ndim; i++) {
        fprintf(g_man, "%s%lld", i ? ", " : "", (long long)shape[i]);
        n *= (size_t)shape[i];
    }
    fprintf(g_man, "]}");
    char path[256];
    snprintf(path, sizeof path, "%s/%s__%s.bin", g_dir, cs, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 4, n, f), n);
    fclose(f);
}

static void case_end(void) { fprintf(g_man, "}}"); }

#define IN_F(cs, name, data, ...) case_input(cs, name, 0, data, (int)(sizeof((int64_t[]){__VA_ARGS__}) / 8), (int64_t[]){__VA_ARGS__})
#define IN_I(cs, name, data, ...) case_input(cs, name, 1, data, (int)(sizeof((int64_t[]){__VA_ARGS__}) / 8), (int64_t[]){__VA_ARGS__})

/* Records a C result to compare with <case>__<name>.ref; takes ownership of `c`. */
static void expect(const char *cs, const char *name, float *c, size_t n)
{
    cr_assert_lt(g_nres, MAX_RESULTS);
    result *r = &g_res[g_nres++];
    snprintf(r->key, sizeof r->key, "%s__%s", cs, name);
    r->c = c;
    r->n = n;
}

static int32_t *keep_mask(const tb_dropout *d, size_t n)
{
    int32_t *k = calloc(n, sizeof(int32_t));
    float *u = fa(n);
    tb_rng_uniform(d->key, d->batch_seq, d->site, 0, u, n);
    for (size_t i = 0; i < n; i++) k[i] = u[i] >= d->p;
    free(u);
    return k;
}

/* ---- cases --------------------------------------------------------------------------------- */
static void case_linear(const char *cs, int N, int I, int O, int bias, uint64_t seed)
{
    float *x = fa((size_t)N * I), *w = fa((size_t)O * I), *b = fa(O), *dout = fa((size_t)N * O);
    tb_fd_fill(x, (size_t)N * I, seed, -1, 1);
    tb_fd_fill(w, (size_t)O * I, seed + 1, -0.5f, 0.5f);
    tb_fd_fill(b, O, seed + 2, -1, 1);
    tb_fd_fill(dout, (size_t)N * O, seed + 3, -1, 1);
    case_begin(cs, "linear", NULL);
    IN_F(cs, "x", x, N, I);
    IN_F(cs, "w", w, O, I);
    if (bias) IN_F(cs, "b", b, O);
    IN_F(cs, "dout", dout, N, O);
    case_end();
    float *out = fa((size_t)N * O), *dx = fa((size_t)N * I), *dw = fa((size_t)O * I), *db = fa(O);
    cr_assert_eq(tb_linear_forward(out, x, w, bias ? b : NULL, N, I, O), TB_OK);
    cr_assert_eq(tb_linear_backward(dx, dw, bias ? db : NULL, dout, x, w, N, I, O), TB_OK);
    expect(cs, "out", out, (size_t)N * O);
    expect(cs, "dx", dx, (size_t)N * I);
    expect(cs, "dw", dw, (size_t)O * I);
    if (bias) expect(cs, "db", db, O); else free(db);
    free(x); free(w); free(b); free(dout);
}

static void case_layernorm(const char *cs, int N, int C)
{
    float *x = fa((size_t)N * C), *w = fa(C), *b = fa(C), *dout = fa((size_t)N * C);
    tb_fd_fill(x, (size_t)N * C, 200, -3, 5);
    tb_fd_fill(w, C, 201, 0.5f, 1.5f);
    tb_fd_fill(b, C, 202, -1, 1);
    tb_fd_fill(dout, (size_t)N * C, 203, -1, 1);
    case_begin(cs, "layernorm", "\"eps\": 1e-12");
    IN_F(cs, "x", x, N, C);
    IN_F(cs, "w", w, C);
    IN_F(cs, "b", b, C);
    IN_F(cs, "dout", dout, N, C);
    case_end();
    float *out = fa((size_t)N * C), *mean = fa(N), *rstd = fa(N), *dx = fa((size_t)N * C), *dw = fa(C), *db = fa(C);
    cr_assert_eq(tb_layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-12f), TB_OK);
    cr_assert_eq(tb_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, C), TB_OK);
    expect(cs, "out", out, (size_t)N * C);
    expect(cs, "dx", dx, (size_t)N * C);
    expect(cs, "dw", dw, C);
    expect(cs, "db", db, C);
    free(x); free(w); free(b); free(dout); free(mean); free(rstd);
}

static void case_elementwise(const char *cs, const char *op, size_t n)
{
    float *x = fa(n), *dout = fa(n), *out = fa(n), *dx = fa(n);
    tb_fd_fill(x, n, 300, -6, 6);
    tb_fd_fill(dout, n, 301, -1, 1);
    case_begin(cs, op, NULL);
    IN_F(cs, "x", x, (int64_t)n);
    IN_F(cs, "dout", dout, (int64_t)n);
    case_end();
    if (!strcmp(op, "gelu")) {
        cr_assert_eq(tb_gelu_forward(out, x, n), TB_OK);
        cr_assert_eq(tb_gelu_backward(dx, x, dout, n), TB_OK);
    } else if (!strcmp(op, "tanh")) {
        cr_assert_eq(tb_tanh_forward(out, x, n), TB_OK);
        cr_assert_eq(tb_tanh_backward(dx, out, dout, n), TB_OK);
    } else {
        cr_assert_eq(tb_relu_forward(out, x, n), TB_OK);
        cr_assert_eq(tb_relu_backward(dx, out, dout, n), TB_OK);
    }
    expect(cs, "out", out, n);
    expect(cs, "dx", dx, n);
    free(x); free(dout);
}

static void case_dropout(const char *cs, size_t n, float p)
{
    tb_dropout d = {p, tb_rng_key_make(1234, TB_RNG_DROPOUT), 99, 2 * 16 + 3};
    float *x = fa(n), *dout = fa(n), *out = fa(n), *dx = fa(n);
    tb_fd_fill(x, n, 400, -1, 1);
    tb_fd_fill(dout, n, 401, -1, 1);
    int32_t *keep = keep_mask(&d, n);
    char params[64];
    snprintf(params, sizeof params, "\"p\": %.9g", (double)p);
    case_begin(cs, "dropout", params);
    IN_F(cs, "x", x, (int64_t)n);
    IN_I(cs, "keep", keep, (int64_t)n);
    IN_F(cs, "dout", dout, (int64_t)n);
    case_end();
    cr_assert_eq(tb_dropout_forward(out, x, n, &d), TB_OK);
    cr_assert_eq(tb_dropout_backward(dx, dout, n, &d), TB_OK);
    expect(cs, "out", out, n);
    expect(cs, "dx", dx, n);
    free(x); free(dout); free(keep);
}

static void case_embedding(const char *cs)
{
    enum { B = 3, T = 11, C = 16, V = 40, P = 64, NT = 2 };
    int32_t ids[B * T], types[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (i * 7 + 3) % V;
        if (i % T >= T - 3 * (i / T)) ids[i] = 0; /* trailing [PAD] (id 0) in rows 1 and 2 */
        types[i] = (i % T) > 5;
    }
    ids[4] = ids[5] = 17; /* a repeated token */
    float *wte = fa(V * C), *wpe = fa(P * C), *wtt = fa(NT * C), *dout = fa(B * T * C);
    tb_fd_fill(wte, V * C, 500, -1, 1);
    tb_fd_fill(wpe, P * C, 501, -1, 1);
    tb_fd_fill(wtt, NT * C, 502, -1, 1);
    tb_fd_fill(dout, B * T * C, 503, -1, 1);
    case_begin(cs, "embedding", "\"pad_id\": 0");
    IN_I(cs, "ids", ids, B, T);
    IN_I(cs, "types", types, B, T);
    IN_F(cs, "wte", wte, V, C);
    IN_F(cs, "wpe", wpe, P, C);
    IN_F(cs, "wtt", wtt, NT, C);
    IN_F(cs, "dout", dout, B, T, C);
    case_end();
    float *out = fa(B * T * C), *dwte = fa(V * C), *dwpe = fa(P * C), *dwtt = fa(NT * C);
    cr_assert_eq(tb_embedding_forward(out, ids, types, wte, wpe, wtt, B, T, C, V, P, NT), TB_OK);
    cr_assert_eq(tb_embedding_backward(dwte, dwpe, dwtt, dout, ids, types, B, T, C, V, P, NT, 0), TB_OK);
    expect(cs, "out", out, B * T * C);
    expect(cs, "dwte", dwte, V * C);
    expect(cs, "dwpe", dwpe, P * C);
    expect(cs, "dwtt", dwtt, NT * C);
    free(wte); free(wpe); free(wtt); free(dout);
}

/* pad[b] trailing padding keys in sequence b (pad[b] == T: a fully masked sequence). */
static void case_attention(const char *cs, int B, int T, int NH, int HS, const int *pad, float p, uint64_t seed)
{
    const int C = NH * HS;
    const size_t nqkv = (size_t)B * T * 3 * C, nctx = (size_t)B * T * C, ns = (size_t)B * NH * T * T;
    tb_dropout d = {p, tb_rng_key_make(77, TB_RNG_DROPOUT), 5, 3 * 16 + 1};
    float *qkv = fa(nqkv), *dctx = fa(nctx), *dsc = fa(ns);
    int32_t *mask = calloc((size_t)B * T, sizeof(int32_t));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = t < T - pad[b];
    tb_fd_fill(qkv, nqkv, seed, -1.5f, 1.5f);
    tb_fd_fill(dctx, nctx, seed + 1, -1, 1);
    tb_fd_fill(dsc, ns, seed + 2, -0.1f, 0.1f);
    char params[96];
    snprintf(params, sizeof params, "\"NH\": %d, \"p\": %.9g", NH, (double)p);
    case_begin(cs, "attention", params);
    IN_F(cs, "qkv", qkv, B, T, 3 * C);
    IN_I(cs, "mask", mask, B, T);
    IN_F(cs, "dctx", dctx, B, T, C);
    IN_F(cs, "dscores", dsc, B, NH, T, T);
    int32_t *keep = NULL;
    if (p > 0) {
        keep = keep_mask(&d, ns);
        IN_I(cs, "keep", keep, B, NH, T, T);
    }
    case_end();
    size_t nsc = tb_attention_scratch_floats(T, HS, tb_ops_threads());
    float *scr = fa(nsc), *ctx = fa(nctx), *sc = fa(ns), *pr = fa(ns), *dqkv = fa(nqkv);
    const tb_dropout *dp = p > 0 ? &d : NULL;
    cr_assert_eq(tb_attention_forward(ctx, sc, pr, qkv, qkv + C, qkv + 2 * C, 3 * C, mask, B, T, NH, HS, dp, scr, nsc), TB_OK);
    cr_assert_eq(tb_attention_backward(dqkv, dqkv + C, dqkv + 2 * C, 3 * C, dctx, dsc, pr, qkv, qkv + C, qkv + 2 * C,
                                       3 * C, B, T, NH, HS, dp, scr, nsc), TB_OK);
    expect(cs, "ctx", ctx, nctx);
    expect(cs, "scores", sc, ns);
    expect(cs, "probs", pr, ns);
    expect(cs, "dqkv", dqkv, nqkv);
    int fully_masked = 0;
    for (int b = 0; b < B; b++) fully_masked |= pad[b] >= T;
    if (!fully_masked) { /* the same gradient with probs recomputed from the saved scores */
        float *dqkv2 = fa(nqkv);
        cr_assert_eq(tb_attention_backward_scores(dqkv2, dqkv2 + C, dqkv2 + 2 * C, 3 * C, dctx, dsc, sc, qkv, qkv + C,
                                                  qkv + 2 * C, 3 * C, B, T, NH, HS, dp, scr, nsc), TB_OK);
        expect(cs, "dqkv", dqkv2, nqkv);
    }
    free(qkv); free(dctx); free(dsc); free(mask); free(keep); free(scr);
}

static float *loss_result(double l)
{
    float *v = fa(1);
    v[0] = (float)l;
    return v;
}

static void case_losses(void)
{
    /* attention MSE on [2, 3, 9, 9] scores with masked (-10000) keys, different in the two */
    enum { B = 2, NH = 3, T = 9 };
    const size_t n = (size_t)B * NH * T * T;
    float *s = fa(n), *t = fa(n), *g = fa(n);
    tb_fd_fill(s, n, 600, -4, 4);
    tb_fd_fill(t, n, 601, -4, 4);
    for (size_t i = 0; i < n; i++) {
        int key = (int)(i % T), b = (int)(i / ((size_t)NH * T * T));
        if (key >= T - 2 - b) s[i] -= 10000.0f;
        if (key >= T - 3 + b) t[i] -= 10000.0f;
    }
    double l;
    case_begin("att_mse", "loss_att_mse", NULL);
    IN_F("att_mse", "student", s, B, NH, T, T);
    IN_F("att_mse", "teacher", t, B, NH, T, T);
    case_end();
    cr_assert_eq(tb_loss_att_mse(&l, g, s, t, n, 1.0f), TB_OK);
    expect("att_mse", "loss", loss_result(l), 1);
    expect("att_mse", "dstudent", g, n);

    /* hidden MSE on [3, 7, 20] */
    const size_t nh = 3 * 7 * 20;
    float *hs = fa(nh), *ht = fa(nh), *hg = fa(nh);
    tb_fd_fill(hs, nh, 610, -2, 2);
    tb_fd_fill(ht, nh, 611, -2, 2);
    case_begin("mse", "loss_mse", NULL);
    IN_F("mse", "student", hs, 3, 7, 20);
    IN_F("mse", "target", ht, 3, 7, 20);
    case_end();
    cr_assert_eq(tb_loss_mse(&l, hg, hs, ht, nh, 1.0f), TB_OK);
    expect("mse", "loss", loss_result(l), 1);
    expect("mse", "dstudent", hg, nh);

    /* soft cross-entropy, T = 1 on [8, 3] and T = 2 on [8, 5] */
    const int K[2] = {3, 5};
    const float temp[2] = {1.0f, 2.0f};
    for (int c = 0; c < 2; c++) {
        char cs[32], params[32];
        snprintf(cs, sizeof cs, "soft_ce%d", c);
        snprintf(params, sizeof params, "\"temp\": %g", (double)temp[c]);
        float *zs = fa(8 * K[c]), *zt = fa(8 * K[c]), *zg = fa(8 * K[c]);
        tb_fd_fill(zs, 8 * K[c], 620 + c, -3, 3);
        tb_fd_fill(zt, 8 * K[c], 630 + c, -3, 3);
        case_begin(cs, "loss_soft_ce", params);
        IN_F(cs, "student", zs, 8, K[c]);
        IN_F(cs, "teacher", zt, 8, K[c]);
        case_end();
        cr_assert_eq(tb_loss_soft_ce(&l, zg, zs, zt, 8, K[c], temp[c], 1.0f), TB_OK);
        expect(cs, "loss", loss_result(l), 1);
        expect(cs, "dstudent", zg, 8 * K[c]);
        free(zs); free(zt);
    }

    /* cross-entropy with ignore index (MLM-like) on [12, 50] */
    float *z = fa(12 * 50), *zg = fa(12 * 50);
    int32_t labels[12];
    for (int i = 0; i < 12; i++) labels[i] = i % 3 == 1 ? TB_IGNORE_INDEX : (i * 13) % 50;
    tb_fd_fill(z, 12 * 50, 640, -4, 4);
    case_begin("ce", "loss_ce", NULL);
    IN_F("ce", "logits", z, 12, 50);
    IN_I("ce", "labels", labels, 12);
    case_end();
    cr_assert_eq(tb_loss_ce(&l, zg, z, labels, 12, 50, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK);
    expect("ce", "loss", loss_result(l), 1);
    expect("ce", "dlogits", zg, 12 * 50);
    /* MLM-sized: a 30522-word vocabulary */
    enum { NV = 6, KV = 30522 };
    float *zv = fa((size_t)NV * KV), *zvg = fa((size_t)NV * KV);
    int32_t lv[NV] = {101, TB_IGNORE_INDEX, 30521, 0, 2054, 7592};
    tb_fd_fill(zv, (size_t)NV * KV, 650, -8, 8);
    case_begin("ce_vocab", "loss_ce", NULL);
    IN_F("ce_vocab", "logits", zv, NV, KV);
    IN_I("ce_vocab", "labels", lv, NV);
    case_end();
    cr_assert_eq(tb_loss_ce(&l, zvg, zv, lv, NV, KV, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK);
    expect("ce_vocab", "loss", loss_result(l), 1);
    expect("ce_vocab", "dlogits", zvg, (size_t)NV * KV);
    free(s); free(t); free(hs); free(ht); free(z); free(zv);
}

/* ---- driver ------------------------------------------------------------------------------- */
static double *read_ref(const char *key, size_t *n)
{
    char path[256];
    snprintf(path, sizeof path, "%.63s/%.127s.ref", g_dir, key);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "reference output %s is missing", path);
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    *n = (size_t)bytes / sizeof(double);
    double *d = malloc(bytes > 0 ? (size_t)bytes : 1);
    cr_assert_eq(fread(d, sizeof(double), *n, f), *n);
    fclose(f);
    return d;
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
}

Test(ops_torch, all_ops_and_losses_match_float64_torch, .timeout = 300)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/tb-ops-ref-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    char path[256];
    snprintf(path, sizeof path, "%s/manifest.json", g_dir);
    g_man = fopen(path, "w");
    cr_assert_not_null(g_man);
    fprintf(g_man, "{\"cases\": [\n");

    case_linear("linear", 37, 48, 29, 1, 100);
    case_linear("linear_nobias", 5, 3, 7, 0, 110);
    case_layernorm("layernorm", 19, 312);
    case_elementwise("gelu", "gelu", 1000);
    case_elementwise("tanh", "tanh", 1000);
    case_elementwise("relu", "relu", 1000);
    case_dropout("dropout", 5000, 0.1f);
    case_embedding("embedding");
    const int pad_a[] = {2, 4}, pad_b[] = {0}, pad_c[] = {5, 33}, pad_d[] = {3, 0};
    case_attention("attn_t7_nh3", 2, 7, 3, 4, pad_a, 0.0f, 700);       /* T odd, padding rows */
    case_attention("attn_nh1", 1, 5, 1, 8, pad_b, 0.0f, 710);          /* NH = 1, mask all ones */
    case_attention("attn_tinybert", 2, 33, 12, 26, pad_c, 0.0f, 720);  /* 12 x 26 heads; row 1 fully masked */
    case_attention("attn_dropout", 2, 9, 2, 5, pad_d, 0.1f, 730);      /* attention-probs dropout */
    case_losses();

    fprintf(g_man, "\n]}\n");
    fclose(g_man);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s/tests/reference/py/ops_ref.py %s", TB_PYTHON, TB_SOURCE_DIR, g_dir);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "reference script failed (%d): %s", rc, cmd);

    int failed = 0;
    for (int i = 0; i < g_nres; i++) {
        result *r = &g_res[i];
        size_t n;
        double *ref = read_ref(r->key, &n);
        cr_expect_eq(n, r->n, "%s: reference has %zu elements, C has %zu", r->key, n, r->n);
        double d2 = 0, r2 = 0, mx = 0;
        for (size_t j = 0; j < n && j < r->n; j++) {
            double d = (double)r->c[j] - ref[j];
            d2 += d * d;
            r2 += ref[j] * ref[j];
            mx = fmax(mx, fabs(d));
        }
        double rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
        cr_log_info("%-28s rel %.2e  max_abs %.2e  (%zu elements)", r->key, rel, mx, n);
        cr_expect_leq(rel, REL_TOL, "%s: ||C - ref|| / ||ref|| = %.3e > %.0e (max abs %.3e)", r->key, rel, REL_TOL, mx);
        cr_expect(r2 > 0 || !strstr(r->key, "__d"), "%s: zero reference gradient makes the check vacuous", r->key);
        failed += rel > REL_TOL;
        free(ref);
        free(r->c);
    }
    g_nres = 0;
    remove_dir();
    cr_assert_eq(failed, 0);
}
