/* Reference test: scripts/convert-pytorch-bin on a safetensors source, as newer Hugging Face and
 * sentence-transformers packages ship BERT (model.safetensors with BertModel names without the
 * "bert." prefix, an int64 position_ids buffer, a pooler, no heads). The source is written by
 * tests/reference/py/st_source.py with the spec-written safetensors writer; values are formulas
 * exact in binary floating point, computed again here. Checked: every tensor arrives under its
 * Hugging Face name with the same shape and value, the int64 buffer is skipped, config.json says
 * no classification and no MLM head, and a folder with both a .bin and a .safetensors is refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/safetensors.h"

static char dir[128];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    snprintf(dir, sizeof dir, "/tmp/tb-convst-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static int sh(const char *fmt, const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, TB_PYTHON, TB_SOURCE_DIR, a, b);
    return system(cmd);
}

#define SOURCE "%s %s/tests/reference/py/st_source.py "
#define CONVERT "%s %s/scripts/convert-pytorch-bin "

/* safetensors_check.bert_value: element k of tensor `name` is ((7k + strlen(name)) mod 29 - 14) / 16,
 * where `name` is the Hugging Face name (with "bert."). */
static float value(const char *name, int64_t k)
{
    return (float)(((7 * k + (int64_t)strlen(name)) % 29 - 14) / 16.0);
}

static void expect_tensor(const tb_st_file *f, const char *name, int64_t d0, int64_t d1)
{
    const tb_st_entry *e = tb_st_find(f, name);
    cr_assert_not_null(e, "%s missing from the converted file", name);
    cr_assert_eq(e->dtype, TB_F32, "%s", name);
    cr_assert_eq(e->ndim, d1 ? 2 : 1, "%s", name);
    cr_assert(e->shape[0] == d0 && (!d1 || e->shape[1] == d1), "%s: shape", name);
    const float *v = (const float *)(f->data + e->begin);
    for (int64_t k = 0; k < (d1 ? d0 * d1 : d0); k++)
        cr_assert_eq(v[k], value(name, k), "%s[%lld]", name, (long long)k);
}

Test(convert_st, safetensors_source_converts_with_hf_names, .init = setup, .fini = teardown)
{
    char src[256], conv[256];
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(conv, sizeof conv, "%s/conv", dir);
    cr_assert_eq(sh(SOURCE "make %s", src, ""), 0);
    cr_assert_eq(sh(CONVERT "%s %s --head none 2>/dev/null", src, conv), 0, "convert-pytorch-bin failed");

    tb_bert_config c;
    cr_assert_eq(tb_checkpoint_load_config(conv, TB_HEAD_NONE, &c), TB_OK, "%s", tb_err_msg());
    cr_assert(c.hidden_size == 8 && c.num_hidden_layers == 2 && c.intermediate_size == 12 && c.vocab_size == 11);
    cr_assert_eq(c.mlm_head, 0);
    cr_assert_eq(c.fit_size, 0);

    tb_st_file f;
    char mp[512], b[160];
    snprintf(mp, sizeof mp, "%s/model.safetensors", conv);
    cr_assert_eq(tb_st_open(&f, mp), TB_OK, "%s", tb_err_msg());
    /* 5 embedding tensors, 16 per layer, the pooler's 2; position_ids skipped */
    cr_assert_eq(f.count, 5 + 16 * 2 + 2, "%d tensors", f.count);
    cr_assert_null(tb_st_find(&f, "bert.embeddings.position_ids"));
    cr_assert_null(tb_st_find(&f, "embeddings.position_ids"));
    expect_tensor(&f, "bert.embeddings.word_embeddings.weight", 11, 8);
    expect_tensor(&f, "bert.embeddings.position_embeddings.weight", 16, 8);
    expect_tensor(&f, "bert.embeddings.token_type_embeddings.weight", 2, 8);
    expect_tensor(&f, "bert.embeddings.LayerNorm.weight", 8, 0);
    expect_tensor(&f, "bert.embeddings.LayerNorm.bias", 8, 0);
    for (int l = 0; l < 2; l++) {
        const char *qkv[3] = {"query", "key", "value"};
        for (int k = 0; k < 3; k++) {
            snprintf(b, sizeof b, "bert.encoder.layer.%d.attention.self.%s.weight", l, qkv[k]);
            expect_tensor(&f, b, 8, 8);
            snprintf(b, sizeof b, "bert.encoder.layer.%d.attention.self.%s.bias", l, qkv[k]);
            expect_tensor(&f, b, 8, 0);
        }
        const struct { const char *s; int64_t d0, d1; } rest[] = {
            {"attention.output.dense.weight", 8, 8}, {"attention.output.dense.bias", 8, 0},
            {"attention.output.LayerNorm.weight", 8, 0}, {"attention.output.LayerNorm.bias", 8, 0},
            {"intermediate.dense.weight", 12, 8}, {"intermediate.dense.bias", 12, 0},
            {"output.dense.weight", 8, 12}, {"output.dense.bias", 8, 0},
            {"output.LayerNorm.weight", 8, 0}, {"output.LayerNorm.bias", 8, 0}};
        for (size_t k = 0; k < sizeof rest / sizeof rest[0]; k++) {
            snprintf(b, sizeof b, "bert.encoder.layer.%d.%s", l, rest[k].s);
            expect_tensor(&f, b, rest[k].d0, rest[k].d1);
        }
    }
    expect_tensor(&f, "bert.pooler.dense.weight", 8, 8);
    expect_tensor(&f, "bert.pooler.dense.bias", 8, 0);
    tb_st_close(&f);

    /* the source's vocab.txt comes along */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cmp -s %s/vocab.txt %s/vocab.txt", src, conv);
    cr_assert_eq(system(cmd), 0, "vocab.txt not copied");
    /* the .safetensors file itself is a valid SRC too (config.json and vocab.txt from its folder) */
    char conv2[256], cmd2[1200];
    snprintf(conv2, sizeof conv2, "%s/conv2", dir);
    snprintf(cmd2, sizeof cmd2, "%s %s/scripts/convert-pytorch-bin %s/model.safetensors %s --head none 2>/dev/null",
             TB_PYTHON, TB_SOURCE_DIR, src, conv2);
    cr_assert_eq(system(cmd2), 0, "converting the file failed");
    snprintf(cmd, sizeof cmd, "cmp -s %s/model.safetensors %s/model.safetensors", conv, conv2);
    cr_assert_eq(system(cmd), 0, "the file and its folder converted differently");
}

Test(convert_st, folder_with_both_weight_files_is_refused, .init = setup, .fini = teardown)
{
    char src[256], conv[256];
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(conv, sizeof conv, "%s/conv", dir);
    cr_assert_eq(sh(SOURCE "both %s", src, ""), 0);
    cr_assert_neq(sh(CONVERT "%s %s --head none 2>/dev/null", src, conv), 0, "an ambiguous folder was converted");
    cr_assert_neq(access(conv, F_OK), 0, "the refused conversion left %s behind", conv);
}
