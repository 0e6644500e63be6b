/* unigram.c - tb-finetune: the initial MLM output bias from the token frequencies of the input. */
#include "unigram.h"

#include "tb/text/dataset.h"
#include "tb/base/error.h"
#include "tb/wire/msg.h"
#include "tb/wire/stream.h"

#include <stdlib.h>
#include <string.h>

/* Adds the candidate counts of every batch of the first epoch of `path` to counts. */
static int count_first_epoch(const char *path, const tb_mlm_opts *o, int64_t *counts)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    tb_msg msg;
    tb_msg_init(&msg);
    tb_batch b;
    memset(&b, 0, sizeof b);
    uint64_t first_epoch = 0;
    int64_t batches = 0;
    TB_TRY(tb_stream_open(&s, path, TB_STREAM_READ, NULL));
    for (;;) {
        tb_msg_free(&msg);
        tb_msg_init(&msg);
        rc = tb_stream_recv(s, &msg, -1);
        if (rc == TB_EEND) {
            rc = TB_OK;
            break;
        }
        if (rc != TB_OK) goto error;
        tb_batch_free(&b);
        rc = tb_batch_from_msg(&b, &msg);
        if (rc != TB_OK) {
            tb_err_wrap(rc, "%s, batch %lld: ", path, (long long)batches);
            goto error;
        }
        if (batches == 0) first_epoch = b.epoch;
        if (b.epoch != first_epoch) break;
        rc = tb_mlm_count_candidates(o, (int)b.input_ids.shape[0], (int)b.input_ids.shape[1], b.input_ids.data,
                                     b.attention_mask.data, counts);
        if (rc != TB_OK) {
            tb_err_wrap(rc, "%s, batch %lld: ", path, (long long)batches);
            goto error;
        }
        batches++;
    }
    TB_CHECK(batches > 0, TB_EINVAL, "%s holds no batches to count tokens in", path);
error:
    tb_batch_free(&b);
    tb_msg_free(&msg);
    tb_stream_close(s);
    return rc;
}

int ft_unigram_bias(tb_bert_model *m, const tb_mlm_opts *o, const char *path, int64_t *tokens)
{
    int rc = TB_OK;
    int64_t *counts = NULL;
    float *bias = NULL;
    TB_CHECK(m && o && path, TB_EINVAL, "ft_unigram_bias: bad arguments");
    tb_param *p = tb_params_find(&m->params, "cls.predictions.bias");
    TB_CHECK(p, TB_EINVAL, "the model has no MLM head (cls.predictions.bias)");
    TB_CHECK(p->value.shape[0] == o->vocab_size, TB_EINVAL, "cls.predictions.bias has %lld entries, the vocabulary %d",
             (long long)p->value.shape[0], (int)o->vocab_size);
    counts = calloc((size_t)o->vocab_size, sizeof *counts);
    bias = malloc((size_t)o->vocab_size * sizeof *bias);
    TB_CHECK(counts && bias, TB_ENOMEM, "out of memory for %d unigram counts", (int)o->vocab_size);
    TB_TRY(count_first_epoch(path, o, counts));
    TB_TRY(tb_mlm_unigram_bias(o, counts, bias));
    int64_t total = 0;
    for (int v = 0; v < o->vocab_size; v++) total += counts[v];
    memcpy(p->value.data, bias, (size_t)o->vocab_size * sizeof *bias);
    if (tokens) *tokens = total;
error:
    free(counts);
    free(bias);
    return rc;
}
