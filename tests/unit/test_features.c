/* Unit tests of teacher-feature messages (tb/train/features.h): the TinyBERT layer mapping and the
 * union of requests against hand-computed index sets, hello round trips through the codec,
 * every validation error, sizes against hand-computed byte counts, and f16 transport against
 * the round-to-nearest error bound. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tb/model/bert.h"
#include "tb/wire/codec.h"
#include "tb/base/error.h"
#include "tb/train/features.h"

static uint64_t bits(const int *idx, int n)
{
    uint64_t m = 0;
    for (int i = 0; i < n; i++) m |= 1ull << idx[i];
    return m;
}

static tb_features_meta meta12(void)
{
    tb_features_meta m = {.layers = 12, .heads = 12, .hidden_size = 768, .num_labels = 2, .dtype = TB_F32};
    strcpy(m.config_hash, "fnv1a64:00000000000000aa");
    return m;
}

/* ---- mapping and union ------------------------------------------------------------------- */

Test(features, mapping_tinybert4_on_bert_base)
{
    tb_features_meta mt = meta12();
    tb_features_request r = {.student_layers = 4}, out;
    cr_assert_eq(tb_features_request_resolve(&r, &mt, "s4", &out), TB_OK, "%s", tb_err_msg());
    /* SPEC: k = 3, hidden j*k for j = 0..4, attention i*k + k - 1 for i = 0..3 */
    int h[] = {0, 3, 6, 9, 12}, a[] = {2, 5, 8, 11};
    cr_assert_eq(out.hidden, bits(h, 5));
    cr_assert_eq(out.attn, bits(a, 4));
    cr_assert_eq(out.logits, 0);
    cr_assert_eq(out.student_layers, 0);
}

Test(features, mapping_equal_depth_and_one_layer)
{
    tb_features_meta mt = meta12();
    mt.layers = 4;
    tb_features_request r = {.student_layers = 4}, out;
    cr_assert_eq(tb_features_request_resolve(&r, &mt, "s", &out), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(out.hidden, 0x1full);
    cr_assert_eq(out.attn, 0xfull);
    r.student_layers = 1;
    cr_assert_eq(tb_features_request_resolve(&r, &mt, "s", &out), TB_OK, "%s", tb_err_msg());
    int h[] = {0, 4}, a[] = {3};
    cr_assert_eq(out.hidden, bits(h, 2));
    cr_assert_eq(out.attn, bits(a, 1));
}

Test(features, union_of_three_students)
{
    tb_features_meta mt = meta12();
    tb_features_request r4 = {.student_layers = 4}, r6 = {.student_layers = 6, .logits = 1},
                        rx = {.hidden = 1ull << 1}, o, acc = {0};
    cr_assert_eq(tb_features_request_resolve(&r4, &mt, "a", &o), TB_OK);
    tb_features_request_union(&acc, &o);
    cr_assert_eq(tb_features_request_resolve(&r6, &mt, "b", &o), TB_OK);
    tb_features_request_union(&acc, &o);
    cr_assert_eq(tb_features_request_resolve(&rx, &mt, "c", &o), TB_OK);
    tb_features_request_union(&acc, &o);
    /* 4 layers: hidden 0,3,6,9,12 attn 2,5,8,11; 6 layers: hidden 0,2,..,12 attn 1,3,..,11; + hidden 1 */
    int h[] = {0, 1, 2, 3, 4, 6, 8, 9, 10, 12}, a[] = {1, 2, 3, 5, 7, 8, 9, 11};
    cr_assert_eq(acc.hidden, bits(h, 10));
    cr_assert_eq(acc.attn, bits(a, 8));
    cr_assert_eq(acc.logits, 1);
}

/* ---- hello round trip -------------------------------------------------------------------- */

Test(features, hello_round_trip_through_codec)
{
    tb_features_request r = {.student_layers = 4, .hidden = 0x5, .attn = 1ull << 40, .logits = 1, .student_heads = 12,
                             .expect_hidden_size = 768},
                        back;
    strcpy(r.expect_config_hash, "fnv1a64:0123456789abcdef");
    strcpy(r.expect_vocab_hash, "fnv1a64:fedcba9876543210");
    strcpy(r.expect_label_order_hash, "fnv1a64:1111111111111111");
    tb_msg m, d;
    tb_msg_init(&m);
    cr_assert_eq(tb_features_request_to_hello(&r, &m), TB_OK, "%s", tb_err_msg());
    const char *s;
    cr_assert_eq(tb_msg_get_str(&m, "features.hidden", &s), TB_OK);
    cr_assert_str_eq(s, "0,2");
    cr_assert_eq(tb_msg_get_str(&m, "features.attn", &s), TB_OK);
    cr_assert_str_eq(s, "40");
    tb_buf b;
    tb_buf_init(&b);
    cr_assert_eq(tb_codec_encode(&m, &b), TB_OK);
    cr_assert_eq(tb_codec_decode(b.data, b.len, &d, TB_DECODE_COPY, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_features_request_from_hello(&d, &back), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(memcmp(&r, &back, sizeof r), 0);
    tb_msg_free(&d);
    tb_msg_free(&m);
    tb_buf_free(&b);
}

Test(features, hello_without_fields_is_empty_request)
{
    tb_msg m;
    tb_msg_init(&m);
    tb_msg_set_str(&m, "consumer", "x");
    tb_features_request r;
    cr_assert_eq(tb_features_request_from_hello(&m, &r), TB_OK);
    cr_assert_eq(r.hidden | r.attn, 0);
    cr_assert_eq(r.student_layers + r.logits, 0);
    tb_msg_free(&m);
}

Test(features, hello_bad_fields)
{
    static const char *bad_lists[] = {"0,,3", "a", "64", "1,", ",1", "3 ,4", "1000000000000", "-1"};
    for (size_t i = 0; i < sizeof bad_lists / sizeof *bad_lists; i++) {
        tb_msg m;
        tb_msg_init(&m);
        tb_msg_set_str(&m, "features.hidden", bad_lists[i]);
        tb_features_request r;
        cr_assert_eq(tb_features_request_from_hello(&m, &r), TB_EFORMAT, "'%s' accepted", bad_lists[i]);
        cr_assert(strstr(tb_err_msg(), "features.hidden"), "%s", tb_err_msg());
        tb_msg_free(&m);
    }
    tb_msg m;
    tb_features_request r;
    tb_msg_init(&m);
    tb_msg_set_int(&m, "features.hidden", 3);
    cr_assert_eq(tb_features_request_from_hello(&m, &r), TB_EFORMAT);
    tb_msg_free(&m);
    tb_msg_init(&m);
    tb_msg_set_int(&m, "features.student_layers", -2);
    cr_assert_eq(tb_features_request_from_hello(&m, &r), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "features.student_layers"), "%s", tb_err_msg());
    tb_msg_free(&m);
    tb_msg_init(&m);
    tb_msg_set_str(&m, "features.logits", "yes");
    cr_assert_eq(tb_features_request_from_hello(&m, &r), TB_EFORMAT);
    tb_msg_free(&m);
    tb_msg_init(&m);
    tb_msg_set_str(&m, "expect.config_hash", "fnv1a64:0123456789abcdef0123456789abcdef0123");
    cr_assert_eq(tb_features_request_from_hello(&m, &r), TB_EFORMAT);
    tb_msg_free(&m);
}

/* ---- resolve errors ---------------------------------------------------------------------- */

static void expect_resolve_error(tb_features_request r, tb_features_meta mt, int status, const char *needle)
{
    tb_features_request out;
    int rc = tb_features_request_resolve(&r, &mt, "student-x", &out);
    cr_assert_eq(rc, status, "status %d (%s)", rc, tb_err_msg());
    cr_assert(strstr(tb_err_msg(), needle), "'%s' not in: %s", needle, tb_err_msg());
    cr_assert(strstr(tb_err_msg(), "student-x"), "%s", tb_err_msg());
}

Test(features, resolve_errors)
{
    tb_features_meta mt = meta12();
    expect_resolve_error((tb_features_request){.student_layers = 5}, mt, TB_EINVAL, "multiple");
    expect_resolve_error((tb_features_request){.student_layers = 13}, mt, TB_EINVAL, "13-layer");
    expect_resolve_error((tb_features_request){.hidden = 1ull << 13}, mt, TB_EINVAL, "hidden states 13");
    expect_resolve_error((tb_features_request){.attn = 1ull << 12}, mt, TB_EINVAL, "layers 12");
    expect_resolve_error((tb_features_request){.student_layers = 4, .student_heads = 4}, mt, TB_ESHAPE, "4 attention heads");
    expect_resolve_error((tb_features_request){.expect_hidden_size = 312}, mt, TB_ESHAPE, "312");
    tb_features_request r = {.student_layers = 4};
    strcpy(r.expect_config_hash, "fnv1a64:00000000000000bb");
    expect_resolve_error(r, mt, TB_EFORMAT, "00000000000000bb");
    memset(&r, 0, sizeof r);
    strcpy(r.expect_vocab_hash, "fnv1a64:1");
    strcpy(mt.vocab_hash, "fnv1a64:2");
    expect_resolve_error(r, mt, TB_EFORMAT, "vocabulary");
    mt = meta12();
    mt.num_labels = 0;
    expect_resolve_error((tb_features_request){.logits = 1}, mt, TB_EINVAL, "no classification head");
    /* heads unchecked when no attention is asked for */
    tb_features_request ok = {.hidden = 1, .student_heads = 4}, out;
    cr_assert_eq(tb_features_request_resolve(&ok, &mt, "s", &out), TB_OK);
}

/* ---- sizes ------------------------------------------------------------------------------- */

Test(features, bytes_match_hand_computed)
{
    tb_features_meta mt = meta12();
    tb_features_request r = {.student_layers = 4}, out;
    cr_assert_eq(tb_features_request_resolve(&r, &mt, "s", &out), TB_OK);
    /* 5 x 32 x 128 x 768 x 4 + 4 x 32 x 12 x 128 x 128 x 4 = 62914560 + 100663296 */
    cr_assert_eq(tb_features_bytes(&out, &mt, 32, 128), 163577856ull);
    mt.dtype = TB_F16;
    cr_assert_eq(tb_features_bytes(&out, &mt, 32, 128), 163577856ull / 2);
    out.logits = 1;
    cr_assert_eq(tb_features_bytes(&out, &mt, 32, 128), 163577856ull / 2 + 32 * 2 * 2);
}

Test(features, mask_format_and_hash)
{
    char buf[64];
    cr_assert_str_eq(tb_features_mask_format(0, buf, sizeof buf), "");
    cr_assert_str_eq(tb_features_mask_format(1ull | 1ull << 63, buf, sizeof buf), "0,63");
    /* FNV-1a 64 of "a" (published test vector): af63dc4c8601ec8c */
    cr_assert_str_eq(tb_features_hash_str("a", 1, buf, sizeof buf), "fnv1a64:af63dc4c8601ec8c");
    cr_assert_str_eq(tb_features_hash_str("", 0, buf, sizeof buf), "fnv1a64:cbf29ce484222325");
}

Test(features, config_hash_sees_shape_fields_only)
{
    tb_bert_config a = {.vocab_size = 50, .hidden_size = 16, .num_hidden_layers = 2, .num_attention_heads = 4,
                        .intermediate_size = 32, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f, .head = TB_HEAD_TINYBERT,
                        .num_labels = 2};
    tb_bert_config b = a;
    char ha[TB_FEATURES_HASH_MAX], hb[TB_FEATURES_HASH_MAX];
    b.hidden_dropout_prob = 0.3f;
    cr_assert_str_eq(tb_features_config_hash(&a, ha, sizeof ha), tb_features_config_hash(&b, hb, sizeof hb));
    b = a;
    b.num_labels = 3;
    cr_assert_str_neq(tb_features_config_hash(&a, ha, sizeof ha), tb_features_config_hash(&b, hb, sizeof hb));
    b = a;
    b.num_hidden_layers = 3;
    cr_assert_str_neq(tb_features_config_hash(&a, ha, sizeof ha), tb_features_config_hash(&b, hb, sizeof hb));
}

/* ---- messages from a teacher forward ----------------------------------------------------- */

enum { B_ = 2, T_ = 5 };

typedef struct fx {
    tb_bert_model m;
    int32_t ids[B_ * T_], types[B_ * T_], mask[B_ * T_];
    tb_features_meta meta;
    tb_features_request req; /* resolved */
} fx;

static void fx_init(fx *x, tb_dtype dt)
{
    tb_bert_config c = {.vocab_size = 40, .hidden_size = 16, .num_hidden_layers = 4, .num_attention_heads = 2,
                        .intermediate_size = 24, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .initializer_range = 0.5f, .head = TB_HEAD_TINYBERT,
                        .num_labels = 3};
    memset(x, 0, sizeof *x);
    cr_assert_eq(tb_bert_init(&x->m, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&x->m, 7);
    tb_features_meta_from_model(&x->meta, &x->m);
    x->meta.dtype = dt;
    tb_features_request r = {.student_layers = 2, .logits = 1};
    cr_assert_eq(tb_features_request_resolve(&r, &x->meta, "s", &x->req), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_bert_arena_reserve(&x->m, B_, T_, TB_BERT_INFER, x->req.attn, 0), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < B_ * T_; i++) {
        x->ids[i] = (i * 7 + 3) % 40;
        x->types[i] = i % T_ >= 3;
        x->mask[i] = !(i / T_ == 1 && i % T_ == 4);
    }
    tb_bert_batch b = {.B = B_, .T = T_, .input_ids = x->ids, .token_type_ids = x->types, .attention_mask = x->mask};
    tb_bert_run run = {0};
    tb_features_run_flags(&x->req, &run);
    cr_assert_eq(tb_bert_forward(&x->m, &b, &run), TB_OK, "%s", tb_err_msg());
}

/* Builds the message with input_ids and features, encodes and decodes it (as a receiver sees it). */
static void fx_message(fx *x, tb_msg *out, tb_buf *wire)
{
    tb_msg m;
    tb_msg_init(&m);
    int64_t shape[2] = {B_, T_};
    tb_tensor ids;
    cr_assert_eq(tb_tensor_borrow(&ids, TB_I32, 2, shape, x->ids), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "input_ids", &ids), TB_OK);
    cr_assert_eq(tb_msg_set_str(&m, "vocab_hash", "fnv1a64:00000000000000cc"), TB_OK);
    cr_assert_eq(tb_features_add(&m, &x->m, &x->req, &x->meta, B_, T_, "0,1,2"), TB_OK, "%s", tb_err_msg());
    tb_buf_init(wire);
    cr_assert_eq(tb_codec_encode(&m, wire), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_codec_decode(wire->data, wire->len, out, 0, NULL), TB_OK, "%s", tb_err_msg());
    tb_msg_free(&m);
}

Test(features, f32_message_is_bit_identical_to_forward)
{
    fx x;
    fx_init(&x, TB_F32);
    tb_msg m;
    tb_buf w;
    fx_message(&x, &m, &w);
    tb_features_request r = {.student_layers = 2, .logits = 1, .student_heads = 2, .expect_hidden_size = 16};
    strcpy(r.expect_vocab_hash, "fnv1a64:00000000000000cc");
    /* FNV-1a 64 of "0,1,2" computed with Python: see the expected constant below */
    tb_features_view v;
    cr_assert_eq(tb_features_view_init(&v, &m, &r), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(v.B, B_);
    cr_assert_eq(v.T, T_);
    cr_assert_eq(v.meta.layers, 4);
    size_t hb = (size_t)B_ * T_ * 16 * 4, ab = (size_t)B_ * 2 * T_ * T_ * 4;
    int h[] = {0, 2, 4}, a[] = {1, 3};
    for (int i = 0; i < 3; i++) {
        cr_assert(v.hidden[h[i]]);
        cr_assert_eq(memcmp(v.hidden[h[i]], tb_bert_hidden(&x.m, h[i]), hb), 0, "hidden %d differs", h[i]);
    }
    cr_assert_null(v.hidden[1]);
    cr_assert_null(v.hidden[3]);
    for (int i = 0; i < 2; i++) {
        cr_assert(v.scores[a[i]]);
        cr_assert_eq(memcmp(v.scores[a[i]], tb_bert_scores(&x.m, a[i]), ab), 0, "attn %d differs", a[i]);
    }
    cr_assert_null(v.scores[0]);
    cr_assert_eq(memcmp(v.logits, tb_bert_logits(&x.m), B_ * 3 * 4), 0);
    cr_assert_eq(v.teacher.hidden, v.hidden);
    cr_assert_eq(v.teacher.num_layers, 4);
    cr_assert_eq(v.teacher.hidden_size, 16);
    const char *s;
    cr_assert_eq(tb_msg_get_str(&m, "label_order_hash", &s), TB_OK);
    cr_assert_str_eq(s, "fnv1a64:1c2c3ac2c828864a"); /* FNV-1a 64 of "0,1,2", from Python */
    tb_features_view_free(&v);
    tb_msg_free(&m);
    tb_buf_free(&w);
    tb_bert_free(&x.m);
}

Test(features, f16_transport_within_half_ulp)
{
    fx x;
    fx_init(&x, TB_F16);
    tb_msg m;
    tb_buf w;
    fx_message(&x, &m, &w);
    const tb_tensor *t;
    cr_assert_eq(tb_msg_get_tensor(&m, "teacher.hidden.2", &t), TB_OK);
    cr_assert_eq(t->dtype, TB_F16);
    tb_features_request r = {.student_layers = 2, .logits = 1};
    tb_features_view v;
    cr_assert_eq(tb_features_view_init(&v, &m, &r), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(v.meta.dtype, TB_F16);
    /* round to nearest: |x - f16(x)| <= 2^-11 |x| for normal values, <= 2^-25 below 2^-14 */
    int64_t n = (int64_t)B_ * T_ * 16;
    const float *ref = tb_bert_hidden(&x.m, 2);
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)v.hidden[2][i] - ref[i]);
        double bound = fmax(fabs(ref[i]) * ldexp(1, -11), ldexp(1, -25));
        cr_assert(err <= bound, "element %lld: %.9g vs %.9g", (long long)i, v.hidden[2][i], ref[i]);
    }
    /* the masked scores (-10000 + s) stay finite and near -10000 */
    const float *sc = tb_bert_scores(&x.m, 3);
    n = (int64_t)B_ * 2 * T_ * T_;
    for (int64_t i = 0; i < n; i++) {
        double bound = fmax(fabs(sc[i]) * ldexp(1, -11), ldexp(1, -25));
        cr_assert(fabs((double)v.scores[3][i] - sc[i]) <= bound, "score %lld", (long long)i);
    }
    /* the wire carries half the f32 payload */
    uint64_t f16b = tb_features_bytes(&x.req, &x.meta, B_, T_);
    x.meta.dtype = TB_F32;
    cr_assert_eq(tb_features_bytes(&x.req, &x.meta, B_, T_), 2 * f16b);
    tb_features_view_free(&v);
    tb_msg_free(&m);
    tb_buf_free(&w);
    tb_bert_free(&x.m);
}

/* ---- validation errors --------------------------------------------------------------------- */

static void expect_view_error(tb_msg *m, const tb_features_request *r, int status, const char *needle)
{
    tb_features_view v;
    int rc = tb_features_view_init(&v, m, r);
    cr_assert_eq(rc, status, "status %d (%s)", rc, tb_err_msg());
    cr_assert(strstr(tb_err_msg(), needle), "'%s' not in: %s", needle, tb_err_msg());
    cr_assert_eq(v.n_owned, 0);
    cr_assert_null(v.owned);
}

Test(features, validation_errors)
{
    fx x;
    fx_init(&x, TB_F32);
    tb_features_request r = {.student_layers = 2, .logits = 1};
    tb_msg m;
    tb_buf w;

    fx_message(&x, &m, &w);
    tb_msg_remove(&m, "teacher.attn.3");
    expect_view_error(&m, &r, TB_ENOTFOUND, "teacher.attn.3");
    tb_msg_free(&m);
    tb_buf_free(&w);

    /* wrong shape */
    fx_message(&x, &m, &w);
    float junk[B_ * T_ * 8] = {0};
    int64_t bad[3] = {B_, T_, 8};
    tb_tensor t;
    tb_tensor_borrow(&t, TB_F32, 3, bad, junk);
    tb_msg_set_tensor_copy(&m, "teacher.hidden.2", &t);
    expect_view_error(&m, &r, TB_ESHAPE, "teacher.hidden.2");
    tb_msg_free(&m);
    tb_buf_free(&w);

    /* wrong dtype: f16 where the metadata says f32 */
    fx_message(&x, &m, &w);
    uint16_t h16[B_ * 3] = {0};
    int64_t ls[2] = {B_, 3};
    tb_tensor_borrow(&t, TB_F16, 2, ls, h16);
    tb_msg_set_tensor_copy(&m, "teacher.logits", &t);
    expect_view_error(&m, &r, TB_ESHAPE, "teacher.logits");
    tb_msg_free(&m);
    tb_buf_free(&w);

    /* metadata */
    fx_message(&x, &m, &w);
    tb_msg_set_str(&m, "features.dtype", "f64");
    expect_view_error(&m, &r, TB_EFORMAT, "features.dtype");
    tb_msg_free(&m);
    tb_buf_free(&w);
    fx_message(&x, &m, &w);
    tb_msg_remove(&m, "teacher.layers");
    expect_view_error(&m, &r, TB_ENOTFOUND, "teacher.layers");
    tb_msg_free(&m);
    tb_buf_free(&w);
    fx_message(&x, &m, &w);
    tb_msg_set_int(&m, "teacher.layers", 0);
    expect_view_error(&m, &r, TB_EFORMAT, "teacher.layers");
    tb_msg_free(&m);
    tb_buf_free(&w);
    fx_message(&x, &m, &w);
    tb_msg_set_str(&m, "teacher.heads", "2");
    expect_view_error(&m, &r, TB_EFORMAT, "teacher.heads");
    tb_msg_free(&m);
    tb_buf_free(&w);
    fx_message(&x, &m, &w);
    tb_msg_remove(&m, "input_ids");
    expect_view_error(&m, &r, TB_ENOTFOUND, "input_ids");
    tb_msg_free(&m);
    tb_buf_free(&w);

    /* expectations */
    fx_message(&x, &m, &w);
    tb_features_request e = r;
    strcpy(e.expect_config_hash, "fnv1a64:0000000000000000");
    expect_view_error(&m, &e, TB_EFORMAT, "teacher config");
    e = r;
    strcpy(e.expect_vocab_hash, "fnv1a64:00000000000000dd");
    expect_view_error(&m, &e, TB_EFORMAT, "vocab");
    e = r;
    strcpy(e.expect_label_order_hash, "fnv1a64:00000000000000dd");
    expect_view_error(&m, &e, TB_EFORMAT, "label_order_hash");
    e = r;
    e.student_heads = 3;
    expect_view_error(&m, &e, TB_ESHAPE, "3 attention heads");
    e = r;
    e.student_layers = 3;
    expect_view_error(&m, &e, TB_EINVAL, "3-layer");
    e = r;
    e.hidden = 1ull << 1; /* not in the message: the emitter sent 0, 2, 4 */
    expect_view_error(&m, &e, TB_ENOTFOUND, "teacher.hidden.1");
    tb_msg_remove(&m, "label_order_hash");
    e = r;
    strcpy(e.expect_label_order_hash, "fnv1a64:1c2c3ac2c828864a");
    expect_view_error(&m, &e, TB_EFORMAT, "carries no label_order_hash");
    tb_msg_free(&m);
    tb_buf_free(&w);
    tb_bert_free(&x.m);
}

Test(features, add_refuses_missing_forward_outputs)
{
    fx x;
    fx_init(&x, TB_F32);
    tb_features_request r = x.req;
    r.attn |= 1; /* layer 0's scores were not kept by the INFER arena */
    tb_msg m;
    tb_msg_init(&m);
    int rc = tb_features_add(&m, &x.m, &r, &x.meta, B_, T_, NULL);
    cr_assert_eq(rc, TB_EINVAL, "%s", tb_err_msg());
    cr_assert(strstr(tb_err_msg(), "teacher.attn.0"), "%s", tb_err_msg());
    tb_msg_free(&m);
    tb_bert_free(&x.m);
}

/* ---- f16 conversion ---------------------------------------------------------------------------- */

Test(features, f16_conversion_known_values)
{
    /* IEEE 754 binary16 encodings, worked out by hand */
    const float in[] = {1.0f, -2.0f, 0.0f, -0.0f, 65504.0f, 65520.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f,
                        0x1p-14f, 0.1f, 1.0f + 0x1p-11f, 1.0f + 0x1.8p-11f, -INFINITY, 3.0f};
    const uint16_t want[] = {0x3c00, 0xc000, 0x0000, 0x8000, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x0001,
                             0x0400, 0x2e66, 0x3c00, 0x3c01, 0xfc00, 0x4200};
    enum { N = sizeof in / sizeof *in };
    uint16_t h[N];
    float back[N];
    tb_features_f32_to_f16(h, in, N);
    for (int i = 0; i < N; i++) cr_expect_eq(h[i], want[i], "%a -> %04x, expected %04x", (double)in[i], h[i], want[i]);
    tb_features_f16_to_f32(back, want, N);
    cr_expect_eq(back[0], 1.0f);
    cr_expect_eq(back[4], 65504.0f);
    cr_expect_eq(back[6], 0x1p-24f);
    cr_expect_eq(back[10], 0x1.998p-4f); /* 0x2e66 = 1.599609375 x 2^-4 */
    cr_expect(isinf(back[13]) && back[13] < 0);
    /* NaN stays NaN */
    float nan_in[9];
    for (int i = 0; i < 9; i++) nan_in[i] = i == 4 ? NAN : 1.0f;
    uint16_t nh[9];
    tb_features_f32_to_f16(nh, nan_in, 9);
    cr_expect((nh[4] & 0x7c00) == 0x7c00 && (nh[4] & 0x3ff), "NaN became %04x", nh[4]);
}

Test(features, f16_conversion_matches_scalar_on_every_class)
{
    /* every f16 value back to f32 */
    enum { H = 65536 + 3 };
    uint16_t *hv = malloc(H * sizeof *hv);
    float *fv = malloc(H * sizeof *fv);
    for (int i = 0; i < H; i++) hv[i] = (uint16_t)i;
    tb_features_f16_to_f32(fv, hv, H);
    for (int i = 0; i < H; i++) {
        float want = tb_f16_to_f32(hv[i]);
        if (isnan(want)) cr_assert(isnan(fv[i]), "%04x", hv[i]);
        else cr_assert_eq(memcmp(&want, &fv[i], 4), 0, "%04x: %a vs %a", hv[i], (double)fv[i], (double)want);
    }
    /* random f32 bit patterns of every exponent (an odd count: the vector tail too) */
    enum { F = 1 << 20 | 5 };
    float *src = malloc(F * sizeof *src);
    uint16_t *dst = malloc(F * sizeof *dst);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < F; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t b = (uint32_t)(x >> 16);
        if (i % 4 == 1) b = (b & 0x807fffffu) | (uint32_t)(100 + (int)(x % 60)) << 23; /* near the f16 range */
        if (i % 4 == 2) b = (b & 0x80001fffu) | 0x3f800000u | 0x1000u;                 /* ties */
        memcpy(&src[i], &b, 4);
    }
    tb_features_f32_to_f16(dst, src, F);
    for (int i = 0; i < F; i++) {
        uint16_t want = tb_f32_to_f16(src[i]);
        if (isnan(src[i])) cr_assert((dst[i] & 0x7c00) == 0x7c00 && (dst[i] & 0x3ff), "NaN %08x", (unsigned)i);
        else cr_assert_eq(dst[i], want, "%a -> %04x, scalar %04x", (double)src[i], dst[i], want);
    }
    free(hv);
    free(fv);
    free(src);
    free(dst);
}
