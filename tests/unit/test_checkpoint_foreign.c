/* Unit tests: a foreign checkpoint (config.json without "tinybert_head", "num_labels"/"id2label",
 * "fit_size", as Hugging Face writes it) gets those keys from its tensors, so classifier.*,
 * pooler.* and fit_dense.* are loaded instead of ignored. */
#include <criterion/criterion.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"

static char dir[128];

static void setup(void)
{
    tb_log_set_level(TB_LOG_QUIET);
    snprintf(dir, sizeof dir, "/tmp/tb-foreign-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static tb_bert_config cfg(tb_head_kind head, int labels, int fit)
{
    tb_bert_config c = {.vocab_size = 20, .hidden_size = 8, .num_hidden_layers = 2, .num_attention_heads = 2,
                        .intermediate_size = 16, .max_position_embeddings = 16, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f, .attention_probs_dropout_prob = 0.1f,
                        .initializer_range = 0.5f, .head = head, .num_labels = labels, .classifier_dropout = 0.1f,
                        .fit_size = fit};
    return c;
}

/* Saves a random model as dir/step-<step> and removes `drop` keys from its config.json. */
static void save_foreign(const tb_bert_config *c, tb_bert_model *m, char *path, size_t n, const char *const *drop,
                         int step)
{
    memset(m, 0, sizeof *m);
    cr_assert_eq(tb_bert_init(m, c), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(m, 11);
    cr_assert_eq(tb_checkpoint_save(dir, step, c, &m->params, NULL, NULL, NULL, path, n), TB_OK, "%s", tb_err_msg());
    char cp[512];
    snprintf(cp, sizeof cp, "%s/config.json", path);
    FILE *f = fopen(cp, "rb");
    cr_assert_not_null(f);
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    cJSON *o = cJSON_Parse(buf);
    cr_assert_not_null(o);
    for (int i = 0; drop[i]; i++) cJSON_DeleteItemFromObjectCaseSensitive(o, drop[i]);
    char *text = cJSON_Print(o);
    f = fopen(cp, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(o);
}

static const tb_tensor *param(const tb_bert_model *m, const char *name)
{
    for (int i = 0; i < m->params.count; i++)
        if (!strcmp(m->params.items[i].name, name)) return &m->params.items[i].value;
    cr_assert_fail("model has no %s", name);
    return NULL;
}

static void expect_same(const tb_bert_model *a, const tb_bert_model *b, const char *name)
{
    const tb_tensor *x = param(a, name), *y = param(b, name);
    cr_assert_eq(tb_tensor_nbytes(x), tb_tensor_nbytes(y), "%s: sizes differ", name);
    cr_assert_eq(memcmp(x->data, y->data, tb_tensor_nbytes(x)), 0, "%s was not loaded from the checkpoint", name);
}

static const char *const FOREIGN_KEYS[] = {"tinybert_head", "num_labels", "id2label", "label2id", "problem_type",
                                           "fit_size", "architectures", NULL};

Test(checkpoint_foreign, classifier_and_fit_dense_are_inferred_and_loaded, .init = setup, .fini = teardown)
{
    tb_bert_config c = cfg(TB_HEAD_HF, 3, 12);
    tb_bert_model saved, loaded;
    char path[512];
    save_foreign(&c, &saved, path, sizeof path, FOREIGN_KEYS, 0);
    tb_bert_config got;
    cr_assert_eq(tb_checkpoint_load_config(path, TB_CKPT_ANY_HEAD, &got), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(got.head, TB_HEAD_HF, "head %d", (int)got.head);
    cr_expect_eq(got.num_labels, 3);
    cr_expect_eq(got.fit_size, 12);
    memset(&loaded, 0, sizeof loaded);
    cr_assert_eq(tb_bert_init(&loaded, &got), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_checkpoint_load_params(path, &loaded.params, NULL), TB_OK, "%s", tb_err_msg());
    expect_same(&saved, &loaded, "classifier.weight");
    expect_same(&saved, &loaded, "classifier.bias");
    expect_same(&saved, &loaded, "bert.pooler.dense.weight");
    expect_same(&saved, &loaded, "fit_dense.weight");
    tb_bert_free(&saved);
    tb_bert_free(&loaded);
}

/* id2label of Hugging Face's default 2 labels next to a 3-row classifier: the tensor wins. */
Test(checkpoint_foreign, classifier_rows_win_over_a_default_id2label, .init = setup, .fini = teardown)
{
    tb_bert_config c = cfg(TB_HEAD_HF, 3, 0);
    tb_bert_model saved;
    char path[512], cp[600];
    static const char *const keys[] = {"tinybert_head", "num_labels", "label2id", "id2label", "problem_type", NULL};
    save_foreign(&c, &saved, path, sizeof path, keys, 0);
    snprintf(cp, sizeof cp, "%s/config.json", path);
    char *text = NULL;
    FILE *f = fopen(cp, "rb");
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    cJSON *o = cJSON_Parse(buf);
    cJSON *map = cJSON_AddObjectToObject(o, "id2label");
    cJSON_AddStringToObject(map, "0", "LABEL_0");
    cJSON_AddStringToObject(map, "1", "LABEL_1");
    text = cJSON_Print(o);
    f = fopen(cp, "wb");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(o);
    tb_bert_config got;
    cr_assert_eq(tb_checkpoint_load_config(path, TB_CKPT_ANY_HEAD, &got), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(got.head, TB_HEAD_HF);
    cr_expect_eq(got.num_labels, 3);
    tb_bert_free(&saved);
}

/* An encoder-only foreign checkpoint stays encoder-only; a recorded "tinybert_head" is respected. */
Test(checkpoint_foreign, nothing_is_invented, .init = setup, .fini = teardown)
{
    tb_bert_config c = cfg(TB_HEAD_NONE, 0, 0);
    tb_bert_model saved;
    char path[512];
    save_foreign(&c, &saved, path, sizeof path, FOREIGN_KEYS, 0);
    tb_bert_config got;
    cr_assert_eq(tb_checkpoint_load_config(path, TB_CKPT_ANY_HEAD, &got), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(got.head, TB_HEAD_NONE);
    cr_expect_eq(got.fit_size, 0);
    tb_bert_free(&saved);

    tb_bert_config r = cfg(TB_HEAD_TINYBERT, 2, 0);
    static const char *const none[] = {NULL};
    save_foreign(&r, &saved, path, sizeof path, none, 1);
    cr_assert_eq(tb_checkpoint_load_config(path, TB_CKPT_ANY_HEAD, &got), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(got.head, TB_HEAD_TINYBERT);
    tb_bert_free(&saved);
}
