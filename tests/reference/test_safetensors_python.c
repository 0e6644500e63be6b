/* Reference test: safetensors and checkpoint interoperability with Python/torch.
 * - a file written by C is accepted by scripts/check-safetensors (written from the format's
 *   specification) and read bit for bit by a numpy reader; a file written by the Python writer is
 *   read bit for bit by C (tests/reference/py/safetensors_check.py);
 * - a torch.save'd pytorch_model.bin with old names (gamma/beta, no "bert.", tied decoder, NSP
 *   head) converted by scripts/convert-pytorch-bin loads in C with the right values and head kind;
 * - a checkpoint saved by C loads with strict=True into a torch module tree with the Hugging Face
 *   BERT names and shapes derived (in Python) from its config.json.
 * Values are formulas exact in binary floating point, computed independently on each side. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/store/safetensors.h"

static char dir[128];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    snprintf(dir, sizeof dir, "/tmp/tb-stpy-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static int run(const char *fmt, const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, TB_PYTHON, TB_SOURCE_DIR, a, b);
    return system(cmd);
}

#define PY "%s %s/tests/reference/py/safetensors_check.py "

/* The same tensors as reference_tensors() in safetensors_check.py. */
typedef struct ref_set {
    tb_tensor t[10];
    const char *names[10];
} ref_set;

static void ref_make(ref_set *r)
{
    static const char *names[10] = {"f32", "f64", "i32", "i64", "u8", "bool", "f16", "bf16", "scalar", "empty"};
    memcpy(r->names, names, sizeof names);
    int64_t s0[3] = {2, 3, 4}, s1[1] = {3}, s2[1] = {5}, s3[2] = {2, 2}, s4[1] = {6}, s5[1] = {4}, s6[1] = {3},
            s7[1] = {2}, s9[2] = {0, 5};
    cr_assert_eq(tb_tensor_alloc(&r->t[0], TB_F32, 3, s0), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[1], TB_F64, 1, s1), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[2], TB_I32, 1, s2), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[3], TB_I64, 2, s3), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[4], TB_U8, 1, s4), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[5], TB_BOOL, 1, s5), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[6], TB_F16, 1, s6), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[7], TB_BF16, 1, s7), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[8], TB_F32, 0, s1), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&r->t[9], TB_F32, 2, s9), TB_OK);
    for (int i = 0; i < 24; i++) ((float *)r->t[0].data)[i] = (float)((i - 7) * 0.375);
    for (int i = 0; i < 3; i++) ((double *)r->t[1].data)[i] = i * 1e300 - 2.5;
    for (int i = 0; i < 5; i++) ((int32_t *)r->t[2].data)[i] = i * -100000 + 7;
    for (int i = 0; i < 4; i++) ((int64_t *)r->t[3].data)[i] = i * INT64_C(1000000000000) - 5;
    for (int i = 0; i < 6; i++) ((uint8_t *)r->t[4].data)[i] = (uint8_t)(i * 51);
    const uint8_t bools[4] = {1, 0, 0, 1};
    memcpy(r->t[5].data, bools, 4);
    for (int i = 0; i < 3; i++) ((uint16_t *)r->t[6].data)[i] = (uint16_t)(i * 31 + 0x3c00);
    ((uint16_t *)r->t[7].data)[0] = 0x3f80;
    ((uint16_t *)r->t[7].data)[1] = 0xc040;
    *(float *)r->t[8].data = -0.75f;
}

static void ref_free(ref_set *r)
{
    for (int i = 0; i < 10; i++) tb_tensor_free(&r->t[i]);
}

Test(safetensors_python, c_file_is_valid_and_read_bit_for_bit_by_python, .init = setup, .fini = teardown)
{
    ref_set r;
    ref_make(&r);
    tb_st_item items[10];
    for (int i = 0; i < 10; i++) items[i] = (tb_st_item){r.names[i], &r.t[i]};
    tb_st_meta meta[] = {{"writer", "tinybert-c"}};
    char p[256];
    snprintf(p, sizeof p, "%s/c.safetensors", dir);
    cr_assert_eq(tb_st_write(p, items, 10, meta, 1), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(run(PY "verify-c %s", p, ""), 0, "the Python reader/checker rejected the C file");
    ref_free(&r);
}

Test(safetensors_python, python_file_read_bit_for_bit_by_c, .init = setup, .fini = teardown)
{
    char p[256];
    snprintf(p, sizeof p, "%s/py.safetensors", dir);
    cr_assert_eq(run(PY "write %s", p, ""), 0);
    ref_set r;
    ref_make(&r);
    tb_st_file f;
    cr_assert_eq(tb_st_open(&f, p), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(f.count, 10);
    cr_assert_str_eq(tb_st_meta_get(&f, "writer"), "python");
    for (int i = 0; i < 10; i++) {
        const tb_st_entry *e = tb_st_find(&f, r.names[i]);
        cr_assert_not_null(e, "%s missing", r.names[i]);
        cr_assert_eq(e->dtype, r.t[i].dtype, "%s dtype", r.names[i]);
        cr_assert_eq(e->ndim, r.t[i].ndim, "%s rank", r.names[i]);
        for (int d = 0; d < e->ndim; d++) cr_assert_eq(e->shape[d], r.t[i].shape[d]);
        tb_tensor got;
        cr_assert_eq(tb_st_read_tensor(&f, e, &got), TB_OK);
        cr_assert_eq(memcmp(got.data, r.t[i].data, tb_tensor_nbytes(&got)), 0, "%s bytes differ", r.names[i]);
        tb_tensor_free(&got);
    }
    tb_st_close(&f);
    ref_free(&r);
}

Test(safetensors_python, checker_rejects_what_the_spec_forbids, .init = setup, .fini = teardown)
{
    /* an overlap, and a header without the 8-byte padding: both must fail the checker */
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    char p[256];
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
    FILE *f = fopen(p, "wb");
    uint64_t n = strlen(hdr);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(hdr, 1, n, f);
    fwrite("\0\0\0\0\0\0\0\0", 1, 8, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/scripts/check-safetensors %s >/dev/null 2>&1", TB_PYTHON, TB_SOURCE_DIR, p);
    cr_assert_neq(system(cmd), 0, "check-safetensors accepted overlapping tensors");
    tb_st_file st;
    cr_assert_neq(tb_st_open(&st, p), TB_OK);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

/* Hugging Face names of a BERT with the heads `c` declares (as bert_names() in Python). */
typedef struct name_list {
    char names[256][TB_PARAM_NAME_MAX];
    tb_param_spec specs[256];
    int n;
} name_list;

static void add(name_list *l, const char *name, int ndim, int64_t d0, int64_t d1)
{
    cr_assert(l->n < 256);
    snprintf(l->names[l->n], TB_PARAM_NAME_MAX, "%s", name);
    size_t len = strlen(name);
    int no_decay = (len > 5 && strcmp(name + len - 5, ".bias") == 0) || strstr(name, "LayerNorm") != NULL;
    l->specs[l->n] = (tb_param_spec){l->names[l->n], ndim, {d0, d1}, no_decay, 1};
    l->n++;
}

static void bert_names(const tb_bert_config *c, name_list *l)
{
    int64_t V = c->vocab_size, H = c->hidden_size, I = c->intermediate_size;
    char b[160];
    l->n = 0;
    add(l, "bert.embeddings.word_embeddings.weight", 2, V, H);
    add(l, "bert.embeddings.position_embeddings.weight", 2, c->max_position_embeddings, H);
    add(l, "bert.embeddings.token_type_embeddings.weight", 2, c->type_vocab_size, H);
    add(l, "bert.embeddings.LayerNorm.weight", 1, H, 0);
    add(l, "bert.embeddings.LayerNorm.bias", 1, H, 0);
    for (int i = 0; i < c->num_hidden_layers; i++) {
        const char *qkv[3] = {"query", "key", "value"};
        for (int k = 0; k < 3; k++) {
            snprintf(b, sizeof b, "bert.encoder.layer.%d.attention.self.%s.weight", i, qkv[k]);
            add(l, b, 2, H, H);
            snprintf(b, sizeof b, "bert.encoder.layer.%d.attention.self.%s.bias", i, qkv[k]);
            add(l, b, 1, H, 0);
        }
        const struct { const char *s; int nd; int64_t d0, d1; } rest[] = {
            {"attention.output.dense.weight", 2, H, H}, {"attention.output.dense.bias", 1, H, 0},
            {"attention.output.LayerNorm.weight", 1, H, 0}, {"attention.output.LayerNorm.bias", 1, H, 0},
            {"intermediate.dense.weight", 2, I, H}, {"intermediate.dense.bias", 1, I, 0},
            {"output.dense.weight", 2, H, I}, {"output.dense.bias", 1, H, 0},
            {"output.LayerNorm.weight", 1, H, 0}, {"output.LayerNorm.bias", 1, H, 0}};
        for (size_t k = 0; k < sizeof rest / sizeof rest[0]; k++) {
            snprintf(b, sizeof b, "bert.encoder.layer.%d.%s", i, rest[k].s);
            add(l, b, rest[k].nd, rest[k].d0, rest[k].d1);
        }
    }
    add(l, "bert.pooler.dense.weight", 2, H, H);
    add(l, "bert.pooler.dense.bias", 1, H, 0);
    if (c->head != TB_HEAD_NONE) {
        add(l, "classifier.weight", 2, c->num_labels, H);
        add(l, "classifier.bias", 1, c->num_labels, 0);
    }
    if (c->mlm_head) {
        add(l, "cls.predictions.transform.dense.weight", 2, H, H);
        add(l, "cls.predictions.transform.dense.bias", 1, H, 0);
        add(l, "cls.predictions.transform.LayerNorm.weight", 1, H, 0);
        add(l, "cls.predictions.transform.LayerNorm.bias", 1, H, 0);
        add(l, "cls.predictions.bias", 1, V, 0);
    }
    if (c->fit_size) {
        add(l, "fit_dense.weight", 2, c->fit_size, H);
        add(l, "fit_dense.bias", 1, c->fit_size, 0);
    }
}

/* bert_value() of the Python side: ((7k + strlen(name)) mod 29 - 14) / 16. */
static float bert_value(const char *name, int64_t k)
{
    return (float)(((7 * k + (int64_t)strlen(name)) % 29 - 14) / 16.0);
}

Test(safetensors_python, torch_bin_converted_loads_in_c, .init = setup, .fini = teardown)
{
    char src[256], conv[256];
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(conv, sizeof conv, "%s/conv", dir);
    cr_assert_eq(run(PY "make-torch-bin %s", src, ""), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/scripts/convert-pytorch-bin %s %s --head relu --num-labels 3 2>/dev/null",
             TB_PYTHON, TB_SOURCE_DIR, src, conv);
    cr_assert_eq(system(cmd), 0, "convert-pytorch-bin failed");
    tb_bert_config c;
    cr_assert_eq(tb_checkpoint_load_config(conv, TB_HEAD_TINYBERT, &c), TB_OK, "%s", tb_err_msg());
    cr_assert(c.hidden_size == 8 && c.num_hidden_layers == 2 && c.num_labels == 3 && c.mlm_head && c.fit_size == 16);
    cr_assert_eq(c.layer_norm_eps, 1e-12f);
    cr_assert_eq(tb_checkpoint_load_config(conv, TB_HEAD_HF, &c), TB_EFORMAT); /* head kind checked */
    static name_list l;
    bert_names(&c, &l);
    tb_param_table t;
    cr_assert_eq(tb_params_alloc(&t, l.specs, l.n), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_checkpoint_load_params(conv, &t, NULL), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < t.count; i++) {
        const float *v = t.items[i].value.data;
        for (int64_t k = 0; k < tb_tensor_numel(&t.items[i].value); k++)
            cr_assert_eq(v[k], bert_value(t.items[i].name, k), "%s[%lld]", t.items[i].name, (long long)k);
    }
    /* the int64 position_ids buffer was skipped, not converted */
    tb_st_file stf;
    char mp[512];
    snprintf(mp, sizeof mp, "%s/model.safetensors", conv);
    cr_assert_eq(tb_st_open(&stf, mp), TB_OK, "%s", tb_err_msg());
    cr_assert_null(tb_st_find(&stf, "bert.embeddings.position_ids"), "position_ids should not be converted");
    tb_st_close(&stf);
    /* the converted folder keeps vocab.txt; without --head the converter refuses to guess */
    snprintf(cmd, sizeof cmd, "test -s %s/vocab.txt", conv);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s %s/scripts/convert-pytorch-bin %s %s/x 2>/dev/null", TB_PYTHON, TB_SOURCE_DIR, src,
             dir);
    cr_assert_neq(system(cmd), 0, "converter guessed a head kind");
    tb_params_free(&t);
}

Test(safetensors_python, c_checkpoint_loads_in_torch, .init = setup, .fini = teardown)
{
    tb_bert_config c = {.vocab_size = 13, .hidden_size = 8, .num_hidden_layers = 2, .num_attention_heads = 2,
                        .intermediate_size = 12, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f, .attention_probs_dropout_prob = 0.1f,
                        .initializer_range = 0.02f, .head = TB_HEAD_HF, .num_labels = 2, .classifier_dropout = 0.1f,
                        .mlm_head = 1, .fit_size = 24};
    static name_list l;
    bert_names(&c, &l);
    tb_param_table t;
    cr_assert_eq(tb_params_alloc(&t, l.specs, l.n), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < t.count; i++) {
        float *v = t.items[i].value.data;
        for (int64_t k = 0; k < tb_tensor_numel(&t.items[i].value); k++) v[k] = bert_value(t.items[i].name, k);
    }
    char ck[256], latest[300];
    snprintf(ck, sizeof ck, "%s/run", dir);
    cr_assert_eq(tb_checkpoint_save(ck, 3, &c, &t, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    snprintf(latest, sizeof latest, "%s/latest", ck);
    cr_assert_eq(run(PY "verify-ckpt %s", latest, ""), 0, "torch could not load the C checkpoint");
    tb_params_free(&t);
}

/* The model's own parameter table (tb/model/bert.h) has exactly the Hugging Face names and shapes. */
Test(safetensors_python, bert_model_checkpoint_loads_in_torch, .init = setup, .fini = teardown)
{
    tb_bert_config c = {.vocab_size = 13, .hidden_size = 8, .num_hidden_layers = 2, .num_attention_heads = 2,
                        .intermediate_size = 12, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f, .attention_probs_dropout_prob = 0.1f,
                        .initializer_range = 0.02f, .head = TB_HEAD_TINYBERT, .num_labels = 3,
                        .classifier_dropout = 0.1f, .mlm_head = 1, .fit_size = 24};
    tb_bert_model m;
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < m.params.count; i++) {
        float *v = m.params.items[i].value.data;
        for (int64_t k = 0; k < tb_tensor_numel(&m.params.items[i].value); k++) v[k] = bert_value(m.params.items[i].name, k);
    }
    char ck[256];
    snprintf(ck, sizeof ck, "%s/model", dir);
    cr_assert_eq(tb_checkpoint_save(ck, 0, &c, &m.params, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    char p[300];
    snprintf(p, sizeof p, "%s/step-0", ck);
    cr_assert_eq(run(PY "verify-ckpt %s", p, ""), 0, "torch could not load the model's checkpoint");
    tb_bert_free(&m);
}
