/* stages/augment/augmenter.c - see augmenter.h. */
#include "augmenter.h"
#include "shipped.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/store/checkpoint.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

int tb_augment_load_teacher(tb_bert_model *m, const char *path)
{
    int rc = TB_OK;
    char dir[PATH_MAX];
    tb_bert_config cfg;
    memset(m, 0, sizeof *m);
    TB_TRY(tb_checkpoint_resolve(path, dir, sizeof dir));
    TB_TRY(tb_checkpoint_load_config(dir, TB_CKPT_ANY_HEAD, &cfg));
    TB_CHECK(cfg.mlm_head, TB_EINVAL,
             "%s: the model has no MLM head (config.json: no BertForMaskedLM architecture, tinybert_mlm_head not "
             "true); augmentation needs a masked-LM teacher: tb-finetune --mlm, or a Hugging Face BertForMaskedLM",
             dir);
    TB_TRY(tb_bert_init(m, &cfg));
    TB_TRY(tb_checkpoint_load_params(dir, &m->params, NULL));
error:
    if (rc) tb_bert_free(m);
    return rc;
}

/* `given`, or the shipped file `rel` when it is NULL (shipped.h), into buf[cap]; *path points to it. */
static int data_file(const char *given, const char *rel, const char *option, char *buf, size_t cap, const char **path)
{
    *path = given;
    if (given) return TB_OK;
    int rc = tb_shipped_find(rel, option, buf, cap);
    if (rc == TB_OK) *path = buf;
    return rc;
}

int tb_augmenter_open(tb_augmenter *a, const tb_augmenter_opts *o)
{
    int rc = TB_OK;
    char vocab[PATH_MAX], stop_buf[PATH_MAX], glove_buf[PATH_MAX];
    const char *stopwords, *glove;
    memset(a, 0, sizeof *a);
    TB_TRY(tb_augment_load_teacher(&a->model, o->model));
    if (o->vocab) {
        TB_CHECK(strlen(o->vocab) < sizeof vocab, TB_EINVAL, "vocab path too long");
        strcpy(vocab, o->vocab);
    } else {
        char dir[PATH_MAX];
        TB_TRY(tb_checkpoint_resolve(o->model, dir, sizeof dir));
        TB_CHECK((size_t)snprintf(vocab, sizeof vocab, "%s/" TB_CKPT_VOCAB, dir) < sizeof vocab, TB_EINVAL,
                 "vocab path too long");
    }
    tb_tokenizer_opts to = tb_tokenizer_opts_default();
    to.do_lower_case = !o->cased;
    TB_TRY(tb_tokenizer_init(&a->tok, vocab, &to));
    TB_TRY(data_file(o->stopwords, TB_SHIPPED_STOPWORDS, "stopwords", stop_buf, sizeof stop_buf, &stopwords));
    TB_TRY(tb_stopwords_load(&a->stop, stopwords));
    TB_TRY(tb_cands_init(&a->cands, &a->tok, &a->model, &a->stop, NULL, &o->cands));
    if (o->vectors == TB_VEC_GLOVE) {
        int from_cache = 0;
        TB_TRY(data_file(o->glove, TB_SHIPPED_GLOVE, "glove", glove_buf, sizeof glove_buf, &glove));
        TB_TRY(tb_vectors_open(&a->vec, glove, o->glove_cache, o->glove_max_words, o->cands.threads, &from_cache));
        TB_INFO("word vectors: %lld x %d from %s%s", (long long)a->vec.rows, a->vec.dim, glove,
                from_cache ? " (cache)" : "");
        a->cands.vec = &a->vec;
    } else if (o->vectors == TB_VEC_TEACHER) {
        TB_TRY(tb_cands_teacher_vectors(&a->vec, &a->tok, &a->model));
        TB_INFO("word vectors: the teacher's input embeddings of %lld whole-word entries", (long long)a->vec.rows);
        tb_cands_use_teacher_queries(&a->cands, &a->vec);
    }
error:
    if (rc) tb_augmenter_close(a);
    return rc;
}

void tb_augmenter_close(tb_augmenter *a)
{
    tb_cands_free(&a->cands);
    tb_vectors_free(&a->vec);
    tb_stopwords_free(&a->stop);
    tb_tokenizer_free(&a->tok);
    tb_bert_free(&a->model);
}
