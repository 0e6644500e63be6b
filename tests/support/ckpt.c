/* ckpt.c - small random checkpoints for tests (ckpt.h). */
#include "ckpt.h"

#include "repodata.h"
#include "tb/base/error.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"

#include <criterion/criterion.h>
#include <string.h>

void tb_test_write_ckpt(const char *dir, const tb_test_ckpt *spec, char *out, size_t n)
{
    tb_bert_config c = {.vocab_size = 30522, .hidden_size = 32, .num_hidden_layers = 2, .num_attention_heads = 4,
                        .intermediate_size = 64, .max_position_embeddings = 128, .type_vocab_size = 2,
                        .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f, .attention_probs_dropout_prob = 0.1f,
                        .classifier_dropout = 0.1f, .initializer_range = 0.5f, .head = spec->head,
                        .num_labels = spec->head == TB_HEAD_NONE ? 0 : spec->num_labels, .mlm_head = spec->mlm_head,
                        .fit_size = spec->fit_size};
    tb_bert_model m = {0};
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&m, spec->seed);
    for (int i = 0; i < m.params.count; i++) {
        tb_param *p = &m.params.items[i];
        float *v = p->value.data;
        int64_t k = tb_tensor_numel(&p->value);
        if (strstr(p->name, "LayerNorm.weight"))
            for (int64_t j = 0; j < k; j++) v[j] = 1.0f;
        else if (strstr(p->name, "bias")) /* random biases too, so every tensor's mapping shows */
            for (int64_t j = 0; j < k; j++) v[j] = 0.05f * (float)((j * 7 + i) % 11 - 5);
    }
    cr_assert_eq(tb_checkpoint_save(dir, 1, &m.config, &m.params, NULL, NULL, tb_test_data("vocab/bert-base-uncased-vocab.txt"),
                                    out, n),
                 TB_OK, "%s", tb_err_msg());
    tb_bert_free(&m);
}
