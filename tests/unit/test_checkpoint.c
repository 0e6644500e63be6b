/* Unit tests: checkpoint folders - bit-identical round trip, atomic layout and crash leftovers,
 * name aliases of real checkpoints, and precise errors. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/store/safetensors.h"

static char dir[128];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    snprintf(dir, sizeof dir, "/tmp/tb-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* A tiny BERT-like table: H = 4, 1 layer (a subset of the real names is enough here). */
static const tb_param_spec SPECS[] = {
    {"bert.embeddings.word_embeddings.weight", 2, {10, 4}, 0, 1},
    {"bert.embeddings.LayerNorm.weight", 1, {4}, 1, 1},
    {"bert.embeddings.LayerNorm.bias", 1, {4}, 1, 1},
    {"bert.encoder.layer.0.attention.self.query.weight", 2, {4, 4}, 0, 1},
    {"bert.encoder.layer.0.output.LayerNorm.weight", 1, {4}, 1, 1},
    {"bert.pooler.dense.weight", 2, {4, 4}, 0, 0},
    {"classifier.weight", 2, {2, 4}, 0, 0},
    {"cls.predictions.bias", 1, {10}, 1, 1},
};
#define NSPEC ((int)(sizeof SPECS / sizeof SPECS[0]))

static tb_bert_config config(void)
{
    tb_bert_config c = {.vocab_size = 10, .hidden_size = 4, .num_hidden_layers = 1, .num_attention_heads = 2,
                        .intermediate_size = 8, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f, .attention_probs_dropout_prob = 0.1f,
                        .initializer_range = 0.02f, .head = TB_HEAD_TINYBERT, .num_labels = 2,
                        .classifier_dropout = 0.1f, .mlm_head = 1};
    return c;
}

static void fill(tb_param_table *t, float base)
{
    for (int i = 0; i < t->count; i++) {
        float *v = t->items[i].value.data;
        for (int64_t k = 0; k < tb_tensor_numel(&t->items[i].value); k++) v[k] = base + (float)i + (float)k / 1024.0f;
    }
}

static void make(tb_param_table *t, float base)
{
    cr_assert_eq(tb_params_alloc(t, SPECS, NSPEC), TB_OK, "%s", tb_err_msg());
    fill(t, base);
}

static void sub(char *out, size_t n, const char *a)
{
    snprintf(out, n, "%s/%s", dir, a);
}

Test(checkpoint, save_load_bit_identical_with_state, .init = setup, .fini = teardown)
{
    tb_param_table t, u;
    make(&t, 0.25f);
    tb_adam a, b;
    tb_adam_options o;
    tb_adam_options_default(&o);
    o.t_total = 100;
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK);
    for (size_t i = 0; i < t.total; i++) {
        a.m[i] = (float)i * 1e-3f;
        a.v[i] = (float)i * 1e-6f;
    }
    a.step = 42;
    char vocab[300];
    sub(vocab, sizeof vocab, "vocab-src.txt");
    FILE *f = fopen(vocab, "w");
    fputs("[PAD]\n[UNK]\nthe\n", f);
    fclose(f);
    tb_bert_config c = config();
    tb_train_state s = {.step = 42, .seed = UINT64_MAX, .rng_position = 43, .data_position = (UINT64_C(1) << 60) + 1,
                        .extra_json = "{\"stage\":\"distill-1\",\"lr\":5e-05}"};
    char ck[300], out[PATH_MAX];
    sub(ck, sizeof ck, "run");
    cr_assert_eq(tb_checkpoint_save(ck, 42, &c, &t, &a, &s, vocab, out, sizeof out), TB_OK, "%s", tb_err_msg());
    cr_assert(strstr(out, "/run/step-42") != NULL, "%s", out);

    /* layout: step-42/{config.json,model.safetensors,vocab.txt,training_state.*}, latest -> step-42 */
    char p[PATH_MAX], link[64] = {0};
    snprintf(p, sizeof p, "%s/latest", ck);
    cr_assert(readlink(p, link, sizeof link - 1) > 0);
    cr_assert_str_eq(link, "step-42");
    const char *files[] = {"config.json", "model.safetensors", "vocab.txt", "training_state.safetensors",
                           "training_state.json"};
    for (int i = 0; i < 5; i++) {
        struct stat st;
        snprintf(p, sizeof p, "%s/step-42/%s", ck, files[i]);
        cr_assert_eq(stat(p, &st), 0, "missing %s", p);
    }
    snprintf(p, sizeof p, "%s/step-42/vocab.txt", ck);
    f = fopen(p, "r");
    char vb[64] = {0};
    cr_assert(fread(vb, 1, sizeof vb - 1, f) > 0);
    fclose(f);
    cr_assert_str_eq(vb, "[PAD]\n[UNK]\nthe\n");

    tb_bert_config d;
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_HEAD_TINYBERT, &d), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
    make(&u, -7.0f);
    cr_assert_eq(tb_adam_init(&b, &u, &o), TB_OK);
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(memcmp(t.values, u.values, t.total * sizeof(float)), 0);
    tb_train_state r = {0};
    cr_assert_eq(tb_checkpoint_load_state(ck, &u, &b, &r), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(b.step, 42);
    cr_assert_eq(r.step, 42);
    cr_assert_eq(r.seed, UINT64_MAX);
    cr_assert_eq(r.rng_position, 43);
    cr_assert_eq(r.data_position, (UINT64_C(1) << 60) + 1);
    cr_assert_str_eq(r.extra_json, "{\"stage\":\"distill-1\",\"lr\":5e-05}");
    /* the state alone (where a stream resumes), without an optimiser */
    tb_train_state r2 = {0};
    cr_assert_eq(tb_checkpoint_load_state(ck, NULL, NULL, &r2), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(r2.data_position, (UINT64_C(1) << 60) + 1);
    tb_train_state_free(&r2);
    cr_assert_eq(tb_checkpoint_load_state(ck, NULL, NULL, NULL), TB_EINVAL);
    /* moments of trainable tensors restored bit for bit; frozen ones have none (stay zero) */
    for (int i = 0; i < t.count; i++) {
        size_t off = tb_params_offset(&t, &t.items[i]), n = (size_t)tb_tensor_numel(&t.items[i].value);
        if (t.items[i].trainable) {
            cr_assert_eq(memcmp(a.m + off, b.m + off, n * 4), 0, "%s", t.items[i].name);
            cr_assert_eq(memcmp(a.v + off, b.v + off, n * 4), 0, "%s", t.items[i].name);
        } else {
            for (size_t k = 0; k < n; k++) cr_assert_eq(b.m[off + k], 0.0f);
        }
    }
    /* the model file carries exactly the table's names; the frozen state is not in the moments */
    tb_st_file sf;
    snprintf(p, sizeof p, "%s/step-42/model.safetensors", ck);
    cr_assert_eq(tb_st_open(&sf, p), TB_OK);
    cr_assert_eq(sf.count, NSPEC);
    cr_assert_str_eq(tb_st_meta_get(&sf, "format"), "pt");
    tb_st_close(&sf);
    snprintf(p, sizeof p, "%s/step-42/training_state.safetensors", ck);
    cr_assert_eq(tb_st_open(&sf, p), TB_OK);
    cr_assert_eq(sf.count, 2 * 6);
    cr_assert_null(tb_st_find(&sf, "next_m.classifier.weight"));
    cr_assert_not_null(tb_st_find(&sf, "next_v.cls.predictions.bias"));
    tb_st_close(&sf);

    /* the same step cannot be saved twice; the head kind is checked */
    cr_assert_eq(tb_checkpoint_save(ck, 42, &c, &t, NULL, NULL, NULL, NULL, 0), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "already exists") != NULL, "%s", tb_err_msg());
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_HEAD_HF, &d), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "\"relu\"") && strstr(tb_err_msg(), "\"hf\""), "%s", tb_err_msg());

    tb_train_state_free(&r);
    tb_adam_free(&a);
    tb_adam_free(&b);
    tb_params_free(&t);
    tb_params_free(&u);
}

Test(checkpoint, latest_follows_saves_and_crash_leftovers_are_ignored, .init = setup, .fini = teardown)
{
    tb_param_table t, u;
    make(&t, 1.0f);
    make(&u, 0.0f);
    tb_bert_config c = config();
    char ck[300], p[PATH_MAX];
    sub(ck, sizeof ck, "run");
    cr_assert_eq(tb_checkpoint_save(ck, 5, &c, &t, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    fill(&t, 2.0f);
    cr_assert_eq(tb_checkpoint_save(ck, 10, &c, &t, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(((float *)u.items[0].value.data)[0], 2.0f); /* latest = step-10 */

    /* a crash while writing step 15: a half-written step-15.tmp (truncated model) and a stale
     * latest.tmp link; `latest` still points at step-10, whose data is loaded */
    snprintf(p, sizeof p, "%s/step-15.tmp", ck);
    cr_assert_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/step-15.tmp/model.safetensors", ck);
    FILE *f = fopen(p, "w");
    fputs("\x10\0\0", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/latest.tmp", ck);
    cr_assert_eq(symlink("step-15.tmp", p), 0);
    fill(&u, 0.0f);
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(((float *)u.items[0].value.data)[0], 2.0f);
    /* a save of step 15 cleans the leftovers and completes */
    fill(&t, 3.0f);
    cr_assert_eq(tb_checkpoint_save(ck, 15, &c, &t, NULL, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    struct stat st;
    snprintf(p, sizeof p, "%s/step-15.tmp", ck);
    cr_assert_neq(lstat(p, &st), 0, "leftover not removed");
    snprintf(p, sizeof p, "%s/latest.tmp", ck);
    cr_assert_neq(lstat(p, &st), 0, "stale link not removed");
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(((float *)u.items[0].value.data)[0], 3.0f);
    /* an explicit step folder still loads */
    snprintf(p, sizeof p, "%s/step-5", ck);
    cr_assert_eq(tb_checkpoint_load_params(p, &u, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(((float *)u.items[0].value.data)[0], 1.0f);
    /* no state saved: resuming says so */
    tb_adam a;
    tb_adam_options o;
    tb_adam_options_default(&o);
    cr_assert_eq(tb_adam_init(&a, &u, &o), TB_OK);
    cr_assert_eq(tb_checkpoint_load_state(ck, &u, &a, NULL), TB_ENOTFOUND);
    cr_assert(strstr(tb_err_msg(), "no training state") != NULL, "%s", tb_err_msg());
    sub(p, sizeof p, "nothing-here");
    cr_assert_eq(tb_checkpoint_load_params(p, &u, NULL), TB_ENOTFOUND);
    cr_assert(strstr(tb_err_msg(), "nothing-here") != NULL, "%s", tb_err_msg());
    tb_adam_free(&a);
    tb_params_free(&t);
    tb_params_free(&u);
}

/* Writes DIR/<name>/{config.json, model.safetensors} with `n` tensors. */
static void write_foreign(const char *name, const tb_st_item *items, int n, char *out, size_t out_n)
{
    snprintf(out, out_n, "%s/%s", dir, name);
    cr_assert_eq(mkdir(out, 0755), 0);
    char p[PATH_MAX + 32];
    tb_bert_config c = config();
    snprintf(p, sizeof p, "%s/config.json", out);
    cr_assert_eq(tb_config_save(p, &c), TB_OK);
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    cr_assert_eq(tb_st_write(p, items, n, NULL, 0), TB_OK, "%s", tb_err_msg());
}

Test(checkpoint, accepts_real_checkpoint_names, .init = setup, .fini = teardown)
{
    tb_param_table t, u;
    make(&t, 0.5f);
    make(&u, 0.0f);
    tb_tensor extra;
    int64_t es[2] = {2, 4};
    cr_assert_eq(tb_tensor_alloc(&extra, TB_F32, 2, es), TB_OK);
    /* old/TF-converted names: no "bert." prefix, LayerNorm gamma/beta, decoder bias, extra heads */
    tb_st_item items[] = {
        {"embeddings.word_embeddings.weight", &t.items[0].value},
        {"embeddings.LayerNorm.gamma", &t.items[1].value},
        {"bert.embeddings.LayerNorm.beta", &t.items[2].value},
        {"encoder.layer.0.attention.self.query.weight", &t.items[3].value},
        {"bert.encoder.layer.0.output.LayerNorm.gamma", &t.items[4].value},
        {"pooler.dense.weight", &t.items[5].value},
        {"classifier.weight", &t.items[6].value},
        {"cls.predictions.decoder.bias", &t.items[7].value},
        {"cls.predictions.decoder.weight", &t.items[0].value},
        {"cls.seq_relationship.weight", &extra},
    };
    char ck[PATH_MAX];
    write_foreign("hf", items, 10, ck, sizeof ck);
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(memcmp(t.values, u.values, t.total * sizeof(float)), 0);
    tb_tensor_free(&extra);
    tb_params_free(&t);
    tb_params_free(&u);
}

Test(checkpoint, reports_every_missing_wrong_and_duplicate_tensor, .init = setup, .fini = teardown)
{
    tb_param_table t, u;
    make(&t, 0.5f);
    make(&u, 0.0f);
    tb_tensor wrong, half;
    int64_t ws[2] = {4, 5};
    cr_assert_eq(tb_tensor_alloc(&wrong, TB_F32, 2, ws), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&half, TB_F16, 1, t.items[4].value.shape), TB_OK);
    char ck[PATH_MAX];
    /* missing: pooler, classifier, cls.predictions.bias */
    tb_st_item missing[] = {{"bert.embeddings.word_embeddings.weight", &t.items[0].value},
                            {"bert.embeddings.LayerNorm.weight", &t.items[1].value},
                            {"bert.embeddings.LayerNorm.bias", &t.items[2].value},
                            {"bert.encoder.layer.0.attention.self.query.weight", &t.items[3].value},
                            {"bert.encoder.layer.0.output.LayerNorm.weight", &t.items[4].value}};
    write_foreign("missing", missing, 5, ck, sizeof ck);
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, NULL), TB_ENOTFOUND);
    const char *m = tb_err_msg();
    cr_assert(strstr(m, "3 parameter(s)") && strstr(m, "bert.pooler.dense.weight") && strstr(m, "classifier.weight") &&
                  strstr(m, "cls.predictions.bias"),
              "%s", m);
    /* optional prefixes: the stage-1 student takes its head from initialisation */
    const char *optional[] = {"bert.pooler.", "classifier.", "cls.", NULL};
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, optional), TB_OK, "%s", tb_err_msg());

    tb_st_item bad[] = {{"bert.embeddings.word_embeddings.weight", &t.items[0].value},
                        {"bert.embeddings.LayerNorm.weight", &t.items[1].value},
                        {"bert.embeddings.LayerNorm.gamma", &t.items[1].value},
                        {"bert.embeddings.LayerNorm.bias", &t.items[2].value},
                        {"bert.encoder.layer.0.attention.self.query.weight", &wrong},
                        {"bert.encoder.layer.0.output.LayerNorm.weight", &half}};
    write_foreign("bad", bad, 6, ck, sizeof ck);
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, optional), TB_ESHAPE);
    m = tb_err_msg();
    cr_assert(strstr(m, "3 tensor(s)"), "%s", m);
    cr_assert(strstr(m, "both map to parameter 'bert.embeddings.LayerNorm.weight'"), "%s", m);
    cr_assert(strstr(m, "query.weight': file has f32[4,5], model needs f32[4,4]"), "%s", m);
    cr_assert(strstr(m, "LayerNorm.weight': file has f16[4]"), "%s", m);

    /* a hostile model file inside a checkpoint folder is rejected by the reader */
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/model.safetensors", ck);
    FILE *f = fopen(p, "wb");
    fwrite("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 1, 10, f);
    fclose(f);
    cr_assert_eq(tb_checkpoint_load_params(ck, &u, optional), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "exceeds"), "%s", tb_err_msg());
    tb_tensor_free(&wrong);
    tb_tensor_free(&half);
    tb_params_free(&t);
    tb_params_free(&u);
}

Test(checkpoint, state_for_a_different_table_is_rejected, .init = setup, .fini = teardown)
{
    tb_param_table t;
    make(&t, 0.5f);
    tb_adam a;
    tb_adam_options o;
    tb_adam_options_default(&o);
    cr_assert_eq(tb_adam_init(&a, &t, &o), TB_OK);
    tb_bert_config c = config();
    char ck[300];
    sub(ck, sizeof ck, "run");
    cr_assert_eq(tb_checkpoint_save(ck, 1, &c, &t, &a, NULL, NULL, NULL, 0), TB_OK, "%s", tb_err_msg());
    /* the same names, but classifier now trainable: its moments are not in the file */
    tb_param_spec specs[NSPEC];
    memcpy(specs, SPECS, sizeof specs);
    specs[6].trainable = 1;
    tb_param_table u;
    cr_assert_eq(tb_params_alloc(&u, specs, NSPEC), TB_OK);
    tb_adam b;
    cr_assert_eq(tb_adam_init(&b, &u, &o), TB_OK);
    cr_assert_eq(tb_checkpoint_load_state(ck, &u, &b, NULL), TB_ESHAPE);
    cr_assert(strstr(tb_err_msg(), "'next_m.classifier.weight' is missing"), "%s", tb_err_msg());
    /* a training state step that disagrees with the optimiser is refused at save time */
    tb_train_state s = {.step = 99};
    cr_assert_eq(tb_checkpoint_save(ck, 2, &c, &t, &a, &s, NULL, NULL, 0), TB_EINVAL);
    tb_adam_free(&a);
    tb_adam_free(&b);
    tb_params_free(&t);
    tb_params_free(&u);
}

/* DIR/<name>/config.json from `json`, model.safetensors holding one [4, 4] tensor `tensor` (or none). */
static void write_bare(const char *name, const char *json, const char *tensor, char *out, size_t out_n)
{
    snprintf(out, out_n, "%s/%s", dir, name);
    cr_assert_eq(mkdir(out, 0755), 0);
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/config.json", out);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    cr_assert(fputs(json, f) >= 0);
    cr_assert_eq(fclose(f), 0);
    tb_tensor w;
    int64_t s[2] = {4, 4};
    cr_assert_eq(tb_tensor_alloc(&w, TB_F32, 2, s), TB_OK);
    memset(w.data, 0, 16 * sizeof(float));
    tb_st_item items[] = {{tensor ? tensor : "bert.embeddings.LayerNorm.weight", &w}};
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    cr_assert_eq(tb_st_write(p, items, 1, NULL, 0), TB_OK, "%s", tb_err_msg());
    tb_tensor_free(&w);
}

Test(checkpoint, pooler_tensors_without_a_head_mean_a_pooler_unless_config_says, .init = setup, .fini = teardown)
{
#define BARE "\"vocab_size\": 10, \"hidden_size\": 4, \"num_hidden_layers\": 1, \"num_attention_heads\": 1, " \
             "\"intermediate_size\": 8, \"architectures\": [\"BertModel\"]"
    char ck[PATH_MAX];
    tb_bert_config c;
    write_bare("hf", "{" BARE "}", "pooler.dense.weight", ck, sizeof ck);
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_CKPT_ANY_HEAD, &c), TB_OK, "%s", tb_err_msg());
    cr_assert(c.pooler == 1 && c.head == TB_HEAD_NONE, "pooler %d head %d", c.pooler, (int)c.head);
    write_bare("own", "{" BARE "}", "bert.pooler.dense.weight", ck, sizeof ck);
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_CKPT_ANY_HEAD, &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(c.pooler, 1, "bert.pooler.dense.weight counts too");
    write_bare("said", "{" BARE ", \"tinybert_pooler\": false}", "bert.pooler.dense.weight", ck, sizeof ck);
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_CKPT_ANY_HEAD, &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(c.pooler, 0, "\"tinybert_pooler\": false is kept");
    write_bare("none", "{" BARE "}", NULL, ck, sizeof ck);
    cr_assert_eq(tb_checkpoint_load_config(ck, TB_CKPT_ANY_HEAD, &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(c.pooler, 0, "no pooler tensor, no pooler");
#undef BARE
}
