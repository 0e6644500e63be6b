/* bert_distill.c - the TinyBERT stage losses of a student against teacher features. */
#include "bert_internal.h"

#include "tb/base/error.h"
#include "tb/model/loss.h"

#include <string.h>

static int intermediate_loss(tb_bert_model *m, const tb_bert_teacher *t, tb_bert_distill_losses *out)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const int B = a->B, T = a->T, N = B * T, C = cf->hidden_size, M = cf->num_hidden_layers;
    const int NH = cf->num_attention_heads, k = t->num_layers / M;
    const size_t S = (size_t)B * NH * T * T, ND = (size_t)N * cf->fit_size;
    TB_CHECK(t->hidden && t->scores, TB_EINVAL,
             "tb_bert_distill_loss: intermediate distillation needs teacher hidden states and scores");
    TB_CHECK(t->hidden_size == cf->fit_size, TB_ESHAPE,
             "tb_bert_distill_loss: teacher hidden size %d differs from the student's fit_size %d",
             t->hidden_size, cf->fit_size);
    for (int i = 0; i < M; i++) {
        const float *ts = t->scores[i * k + k - 1];
        TB_CHECK(ts, TB_EINVAL, "tb_bert_distill_loss: teacher scores of layer %d (for student layer %d) are missing",
                 i * k + k - 1, i);
        double l = 0;
        memset(a->dscores[i], 0, S * sizeof(float));
        TB_TRY(tb_loss_att_mse(&l, a->dscores[i], a->layer[i].scores, ts, S, 1.0f));
        out->att += l;
    }
    for (int j = 0; j <= M; j++) {
        const float *th = t->hidden[j * k];
        TB_CHECK(th, TB_EINVAL, "tb_bert_distill_loss: teacher hidden state %d (for student state %d) is missing",
                 j * k, j);
        double l = 0;
        TB_TRY(tb_bert_fit_forward(m, a->fit_out, a->hidden[j], N));
        memset(a->fit_grad, 0, ND * sizeof(float));
        TB_TRY(tb_loss_mse(&l, a->fit_grad, a->fit_out, th, ND, 1.0f));
        memset(a->dhidden[j], 0, (size_t)N * C * sizeof(float));
        TB_TRY(tb_bert_fit_backward(m, a->dhidden[j], a->fit_grad, a->hidden[j], N));
        out->hidden += l;
        if (j == 0) out->emb = l;
    }
error:
    return rc;
}

int tb_bert_distill_loss(tb_bert_model *m, const tb_bert_teacher *t, tb_distill_kind kind,
                         float temperature, const float *gold, tb_bert_distill_losses *out,
                         tb_bert_grads *g)
{
    int rc = TB_OK;
    TB_CHECK(m && t && out && g, TB_EINVAL, "tb_bert_distill_loss: NULL argument");
    tb_bert_arena *a = m->arena;
    const tb_bert_config *cf = &m->config;
    TB_CHECK(a && a->mode == TB_BERT_TRAIN && a->have_forward, TB_EINVAL,
             "tb_bert_distill_loss: needs a forward pass in a TB_BERT_TRAIN arena");
    TB_CHECK(t->num_layers > 0 && t->num_layers % cf->num_hidden_layers == 0, TB_EINVAL,
             "tb_bert_distill_loss: teacher layers %d are not a multiple of student layers %d",
             t->num_layers, cf->num_hidden_layers);
    memset(out, 0, sizeof *out);
    memset(g, 0, sizeof *g);
    if (kind == TB_DISTILL_INTERMEDIATE) {
        TB_CHECK(cf->fit_size > 0 && a->fit_out, TB_EINVAL,
                 "tb_bert_distill_loss: intermediate distillation needs a student with fit_dense (fit_size > 0)");
        TB_TRY(intermediate_loss(m, t, out));
        g->dhidden = (const float *const *)a->dhidden;
        g->dscores = (const float *const *)a->dscores;
        out->total = out->att + out->hidden;
    } else if (kind == TB_DISTILL_PREDICTION) {
        TB_CHECK(a->run.logits && a->dlogits, TB_EINVAL,
                 "tb_bert_distill_loss: prediction distillation needs a forward with logits");
        const int B = a->B, NL = cf->num_labels;
        memset(a->dlogits, 0, (size_t)B * NL * sizeof(float));
        if (NL == 1) {
            TB_CHECK(gold, TB_EINVAL, "tb_bert_distill_loss: regression (num_labels = 1) needs gold values");
            TB_TRY(tb_loss_mse(&out->pred, a->dlogits, a->logits, gold, (size_t)B, 1.0f));
        } else {
            TB_CHECK(t->logits, TB_EINVAL, "tb_bert_distill_loss: teacher logits are missing");
            TB_CHECK(temperature > 0, TB_EINVAL, "tb_bert_distill_loss: temperature must be > 0, got %g",
                     (double)temperature);
            TB_TRY(tb_loss_soft_ce(&out->pred, a->dlogits, a->logits, t->logits, B, NL, temperature, 1.0f));
        }
        g->dlogits = a->dlogits;
        out->total = out->pred;
    } else {
        TB_CHECK(0, TB_EINVAL, "tb_bert_distill_loss: unknown loss kind %d", (int)kind);
    }
error:
    return rc;
}
