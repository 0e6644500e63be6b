/* Unit tests: config.json <-> tb_bert_config, validation messages, the shipped configs/. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/store/config.h"
#include "tb/base/error.h"

/* bert-base-uncased's config.json as Hugging Face publishes it (keys as in the hub file). */
static const char *HF_BERT_BASE =
    "{\n  \"architectures\": [\"BertForMaskedLM\"],\n  \"attention_probs_dropout_prob\": 0.1,\n"
    "  \"gradient_checkpointing\": false,\n  \"hidden_act\": \"gelu\",\n  \"hidden_dropout_prob\": 0.1,\n"
    "  \"hidden_size\": 768,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": 3072,\n"
    "  \"layer_norm_eps\": 1e-12,\n  \"max_position_embeddings\": 512,\n  \"model_type\": \"bert\",\n"
    "  \"num_attention_heads\": 12,\n  \"num_hidden_layers\": 12,\n  \"pad_token_id\": 0,\n"
    "  \"position_embedding_type\": \"absolute\",\n  \"transformers_version\": \"4.6.0.dev0\",\n"
    "  \"type_vocab_size\": 2,\n  \"use_cache\": true,\n  \"vocab_size\": 30522\n}\n";

/* A TinyBERT general student config as released by the reference (no layer_norm_eps, no
 * pad_token_id: the defaults apply). */
static const char *TINYBERT_RELEASE =
    "{\"attention_probs_dropout_prob\": 0.1, \"cell\": {}, \"model_type\": \"tiny_bert\", \"emb_size\": 312,"
    " \"hidden_act\": \"gelu\", \"hidden_dropout_prob\": 0.1, \"hidden_size\": 312, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 1200, \"max_position_embeddings\": 512, \"num_attention_heads\": 12,"
    " \"num_hidden_layers\": 4, \"pre_trained\": \"\", \"structure\": [], \"training\": \"\","
    " \"type_vocab_size\": 2, \"vocab_size\": 30522}";

Test(config, reads_hugging_face_bert_base)
{
    tb_bert_config c;
    cr_assert_eq(tb_config_parse(HF_BERT_BASE, "bert-base", &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(c.vocab_size, 30522);
    cr_assert_eq(c.hidden_size, 768);
    cr_assert_eq(c.num_hidden_layers, 12);
    cr_assert_eq(c.num_attention_heads, 12);
    cr_assert_eq(c.intermediate_size, 3072);
    cr_assert_eq(c.max_position_embeddings, 512);
    cr_assert_eq(c.type_vocab_size, 2);
    cr_assert_eq(c.layer_norm_eps, 1e-12f);
    cr_assert_eq(c.hidden_dropout_prob, 0.1f);
    cr_assert_eq(c.classifier_dropout, 0.1f); /* null/absent: hidden_dropout_prob */
    cr_assert_eq(c.initializer_range, 0.02f);
    cr_assert_eq(c.head, TB_HEAD_NONE);  /* not recorded: no head, never guessed */
    cr_assert_eq(c.mlm_head, 1);         /* BertForMaskedLM */
    cr_assert_eq(c.fit_size, 0);
}

Test(config, reads_reference_tinybert_release_with_defaults)
{
    tb_bert_config c;
    cr_assert_eq(tb_config_parse(TINYBERT_RELEASE, "tinybert", &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(c.hidden_size, 312);
    cr_assert_eq(c.intermediate_size, 1200);
    cr_assert_eq(c.layer_norm_eps, 1e-12f);
    cr_assert_eq(c.pad_token_id, 0);
    cr_assert_eq(c.mlm_head, 0);
}

Test(config, round_trip_every_field)
{
    tb_bert_config c = {.vocab_size = 1000, .hidden_size = 64, .num_hidden_layers = 3, .num_attention_heads = 4,
                        .intermediate_size = 96, .max_position_embeddings = 128, .type_vocab_size = 3,
                        .layer_norm_eps = 1e-5f, .hidden_dropout_prob = 0.15f, .attention_probs_dropout_prob = 0.05f,
                        .initializer_range = 0.03f, .pad_token_id = 7, .head = TB_HEAD_HF, .num_labels = 3,
                        .classifier_dropout = 0.2f, .mlm_head = 1, .fit_size = 128, .pooler = 1};
    char path[] = "/tmp/tb-config-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(tb_config_save(path, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_config d;
    cr_assert_eq(tb_config_load(path, &d), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0, "round trip changed the config");
    /* floats are written in their shortest form, keys as Hugging Face expects */
    FILE *f = fopen(path, "r");
    char text[4096] = {0};
    cr_assert(fread(text, 1, sizeof text - 1, f) > 0);
    fclose(f);
    unlink(path);
    cr_assert(strstr(text, "\"layer_norm_eps\":\t1e-05") != NULL, "%s", text);
    cr_assert(strstr(text, "\"hidden_dropout_prob\":\t0.15") != NULL, "%s", text);
    cr_assert(strstr(text, "\"tinybert_head\":\t\"hf\"") != NULL, "%s", text);
    cr_assert(strstr(text, "\"tinybert_pooler\":\ttrue") != NULL, "%s", text);
    cr_assert(strstr(text, "\"2\":\t\"LABEL_2\"") != NULL, "%s", text);
    cr_assert(strstr(text, "\"architectures\"") != NULL, "%s", text);
}

Test(config, regression_head)
{
    tb_bert_config c;
    const char *j = "{\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                    "\"intermediate_size\":16,\"tinybert_head\":\"relu\",\"problem_type\":\"regression\"}";
    cr_assert_eq(tb_config_parse(j, "reg", &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(c.head, TB_HEAD_TINYBERT);
    cr_assert_eq(c.num_labels, 1);
    const char *k = "{\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                    "\"intermediate_size\":16,\"tinybert_head\":\"relu\",\"problem_type\":\"regression\","
                    "\"id2label\":{\"0\":\"a\",\"1\":\"b\"}}";
    cr_assert_eq(tb_config_parse(k, "reg2", &c), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "regression") != NULL, "%s", tb_err_msg());
}

static void expect_error(const char *json, int status, const char *needle)
{
    tb_bert_config c;
    cr_assert_eq(tb_config_parse(json, "cfg.json", &c), status, "accepted %s", json);
    cr_assert(strstr(tb_err_msg(), needle) != NULL, "message '%s' lacks '%s'", tb_err_msg(), needle);
    cr_assert(strstr(tb_err_msg(), "cfg.json") != NULL, "message '%s' does not name the file", tb_err_msg());
}

#define BASE "\"vocab_size\":10,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16"

Test(config, errors_name_file_and_key)
{
    expect_error("{" BASE "}", TB_ENOTFOUND, "\"hidden_size\"");
    expect_error("{" BASE ",\"hidden_size\":9}", TB_EFORMAT, "not a multiple");
    expect_error("{" BASE ",\"hidden_size\":8,\"hidden_act\":\"relu\"}", TB_EUNSUPPORTED, "hidden_act");
    expect_error("{" BASE ",\"hidden_size\":\"8\"}", TB_EFORMAT, "\"hidden_size\" must be an integer");
    expect_error("{" BASE ",\"hidden_size\":8.5}", TB_EFORMAT, "\"hidden_size\" must be an integer");
    expect_error("{" BASE ",\"hidden_size\":8,\"tinybert_head\":\"tanh\"}", TB_EINVAL, "tinybert_head");
    expect_error("{" BASE ",\"hidden_size\":8,\"tinybert_head\":\"relu\"}", TB_ENOTFOUND, "num_labels");
    expect_error("{" BASE ",\"hidden_size\":8,\"hidden_dropout_prob\":1.5}", TB_EFORMAT, "hidden_dropout_prob");
    expect_error("{" BASE ",\"hidden_size\":8,\"pad_token_id\":10}", TB_EFORMAT, "pad_token_id");
    expect_error("{" BASE ",\"hidden_size\":8,\"id2label\":{\"0\":\"a\",\"5\":\"b\"}}", TB_EFORMAT, "id2label");
    expect_error("{" BASE ",\"hidden_size\":8,\"num_labels\":3,\"id2label\":{\"0\":\"a\"}}", TB_EFORMAT, "disagrees");
    expect_error("{" BASE ",\"hidden_size\":8,\"tinybert_mlm_head\":1}", TB_EFORMAT, "tinybert_mlm_head");
    expect_error("{" BASE ",\"hidden_size\":8,\"tinybert_pooler\":1}", TB_EFORMAT, "tinybert_pooler");
    expect_error("[1]", TB_EFORMAT, "object");
    expect_error("{" BASE ",", TB_EFORMAT, "not valid JSON");
    tb_bert_config c;
    cr_assert_eq(tb_config_load("/nonexistent/config.json", &c), TB_EIO);
    cr_assert(strstr(tb_err_msg(), "/nonexistent/config.json") != NULL, "%s", tb_err_msg());
}

static void load_shipped(const char *name, tb_bert_config *c)
{
    char path[512];
    snprintf(path, sizeof path, "%s/configs/%s", TB_SOURCE_DIR, name);
    cr_assert_eq(tb_config_load(path, c), TB_OK, "%s", tb_err_msg());
}

Test(config, shipped_configs)
{
    tb_bert_config c;
    load_shipped("bert-base.json", &c);
    cr_assert(c.hidden_size == 768 && c.num_hidden_layers == 12 && c.intermediate_size == 3072 && c.mlm_head);
    load_shipped("tinybert-4l-312.json", &c);
    cr_assert(c.hidden_size == 312 && c.num_hidden_layers == 4 && c.num_attention_heads == 12 &&
              c.intermediate_size == 1200 && c.fit_size == 768);
    load_shipped("tinybert-6l-768.json", &c);
    cr_assert(c.hidden_size == 768 && c.num_hidden_layers == 6 && c.fit_size == 768);
    load_shipped("demo-teacher.json", &c);
    cr_assert(c.hidden_size == 256 && c.num_hidden_layers == 4 && c.num_attention_heads == 4 &&
              c.intermediate_size == 1024 && c.vocab_size == 30522 && c.head == TB_HEAD_TINYBERT && c.num_labels == 2);
    load_shipped("demo-student.json", &c);
    cr_assert(c.hidden_size == 128 && c.num_hidden_layers == 2 && c.num_attention_heads == 4 &&
              c.intermediate_size == 512 && c.fit_size == 256 && c.head == TB_HEAD_TINYBERT);
}
