/* batch_msg.c - the token batch message schema: a batch to and from a message, the label order
 * text, the port description (tb/text/batch_msg.h). */
#include "tb/text/batch_msg.h"

#include "tb/base/error.h"
#include "tb/wire/stream.h"

#include <stdio.h>
#include <string.h>

int tb_dataset_label_order(const tb_dataset *ds, char *buf, size_t n)
{
    int rc = TB_OK;
    const tb_task_info *ti = tb_task_get(ds->task);
    TB_CHECK(ti && n > 0, TB_EINVAL, "tb_dataset_label_order: bad dataset or buffer");
    size_t used = 0;
    buf[0] = '\0';
    if (ds->task == TB_TASK_CORPUS) {
        used = (size_t)snprintf(buf, n, "none");
    } else if (ds->regression) {
        used = (size_t)snprintf(buf, n, "regression");
    } else if (ti->labels) {
        for (int k = 0; k < ti->n_labels && used < n; k++)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", k ? "," : "", ti->labels[k]);
    } else {
        for (int32_t k = 0; k < ds->n_labels && used < n; k++)
            used += (size_t)snprintf(buf + used, n - used, "%s%d", k ? "," : "", k);
    }
    TB_CHECK(used < n, TB_EINVAL, "%s: the label order of its %d classes is longer than %zu bytes; use fewer classes",
             ds->path ? ds->path : "the data", ti->labels ? ti->n_labels : (int)ds->n_labels, n - 1);
error:
    return rc;
}

int tb_batch_check_vocab(const tb_msg *m, const char *expect, const char *expect_from, const char *source,
                         uint64_t seq)
{
    int rc = TB_OK;
    const char *vh = NULL;
    if (!expect || !expect[0] || !tb_msg_find(m, "vocab_hash")) return TB_OK;
    rc = tb_msg_get_str(m, "vocab_hash", &vh);
    TB_CHECK(rc == TB_OK, TB_EFORMAT, "%s: batch %llu: field 'vocab_hash' is not a string", source,
             (unsigned long long)seq);
    TB_CHECK(strcmp(vh, expect) == 0, TB_EFORMAT,
             "%s: batch %llu was tokenized with vocabulary %s, but %s is %s: tokenize the data with that vocab.txt "
             "(tb-tokenize --vocab), or use a model trained with the batches' vocabulary",
             source, (unsigned long long)seq, vh, expect_from ? expect_from : "the model's vocabulary", expect);
error:
    return rc;
}

int tb_batch_file_check_vocab(const char *path, const char *expect, const char *expect_from)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    tb_msg m;
    tb_msg_init(&m);
    if (!expect || !expect[0]) return TB_OK;
    TB_TRY(tb_stream_open(&s, path, TB_STREAM_READ, NULL));
    rc = tb_stream_recv(s, &m, -1);
    if (rc == TB_EEND) rc = TB_OK;
    else if (rc == TB_OK) rc = tb_batch_check_vocab(&m, expect, expect_from, path, 0);
error:
    tb_msg_free(&m);
    tb_stream_close(s);
    return rc;
}

int tb_batch_to_msg(const tb_batch *b, const char *vocab_hash, const char *label_order, tb_msg *m)
{
    int rc = TB_OK;
    TB_TRY(tb_msg_set_tensor_ref(m, "input_ids", &b->input_ids));
    TB_TRY(tb_msg_set_tensor_ref(m, "token_type_ids", &b->token_type_ids));
    TB_TRY(tb_msg_set_tensor_ref(m, "attention_mask", &b->attention_mask));
    TB_TRY(tb_msg_set_tensor_ref(m, "labels", &b->labels));
    TB_TRY(tb_msg_set_tensor_ref(m, "example_ids", &b->example_ids));
    TB_TRY(tb_msg_set_int(m, "epoch", (int64_t)b->epoch));
    TB_TRY(tb_msg_set_int(m, "index", b->index));
    if (vocab_hash) TB_TRY(tb_msg_set_str(m, "vocab_hash", vocab_hash));
    if (label_order) TB_TRY(tb_msg_set_str(m, "label_order", label_order));
error:
    return rc;
}

static int batch_field(const tb_msg *m, const char *key, tb_dtype dt, int ndim, const int64_t *shape, tb_tensor *out)
{
    int rc = TB_OK;
    const tb_tensor *t;
    rc = tb_msg_get_tensor(m, key, &t);
    if (rc != TB_OK) return tb_err_wrap(rc, "batch message: ");
    TB_TRY(tb_tensor_expect(t, key, dt, ndim, shape));
    TB_TRY(tb_tensor_copy(out, t));
error:
    return rc;
}

/* Checks the token tensors' values: ids and types >= 0, the attention mask 0 or 1. */
static int batch_check_tokens(const tb_batch *b)
{
    int rc = TB_OK;
    int64_t n = b->input_ids.shape[0] * b->input_ids.shape[1];
    const int32_t *pi = b->input_ids.data, *pm = b->attention_mask.data, *pt = b->token_type_ids.data;
    for (int64_t i = 0; i < n; i++) {
        TB_CHECK(pi[i] >= 0, TB_EFORMAT, "batch message: input_ids[%lld] = %d is negative", (long long)i, pi[i]);
        TB_CHECK(pm[i] == 0 || pm[i] == 1, TB_EFORMAT, "batch message: attention_mask[%lld] = %d is not 0 or 1",
                 (long long)i, pm[i]);
        TB_CHECK(pt[i] >= 0, TB_EFORMAT, "batch message: token_type_ids[%lld] = %d is negative", (long long)i, pt[i]);
    }
error:
    return rc;
}

int tb_batch_from_msg(tb_batch *b, const tb_msg *m)
{
    int rc = TB_OK;
    memset(b, 0, sizeof *b);
    const tb_tensor *ids;
    rc = tb_msg_get_tensor(m, "input_ids", &ids);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "batch message: ");
        goto error;
    }
    int64_t any2[2] = {-1, -1};
    TB_TRY(tb_tensor_expect(ids, "input_ids", TB_I32, 2, any2));
    int64_t shape2[2] = {ids->shape[0], ids->shape[1]}, shape1[1] = {ids->shape[0]};
    TB_TRY(batch_field(m, "input_ids", TB_I32, 2, shape2, &b->input_ids));
    TB_TRY(batch_field(m, "token_type_ids", TB_I32, 2, shape2, &b->token_type_ids));
    TB_TRY(batch_field(m, "attention_mask", TB_I32, 2, shape2, &b->attention_mask));
    TB_TRY(batch_field(m, "example_ids", TB_I64, 1, shape1, &b->example_ids));
    const tb_tensor *lab;
    rc = tb_msg_get_tensor(m, "labels", &lab);
    if (rc != TB_OK) {
        tb_err_wrap(rc, "batch message: ");
        goto error;
    }
    TB_TRY(batch_field(m, "labels", lab->dtype == TB_F32 ? TB_F32 : TB_I32, 1, shape1, &b->labels));
    int64_t v;
    TB_TRY(tb_msg_get_int(m, "epoch", &v));
    TB_CHECK(v >= 0, TB_EFORMAT, "batch message: epoch %lld is negative", (long long)v);
    b->epoch = (uint64_t)v;
    TB_TRY(tb_msg_get_int(m, "index", &b->index));
    TB_CHECK(b->index >= 0, TB_EFORMAT, "batch message: index %lld is negative", (long long)b->index);
    TB_TRY(batch_check_tokens(b));
    return TB_OK;
error:
    tb_batch_free(b);
    return rc;
}

const tb_port_field tb_batch_port_fields[] = {
    {"input_ids", "<i4", "B,T", "WordPiece ids, [CLS] a [SEP] (b [SEP]), padded with [PAD]"},
    {"token_type_ids", "<i4", "B,T", "0 for a, 1 for b"},
    {"attention_mask", "<i4", "B,T", "1 for tokens, 0 for padding"},
    {"labels", "<i4|<f4", "B", "class ids in label_order, f32 targets for regression, -1 for a corpus"},
    {"example_ids", "<i8", "B", "example index in the input file"},
    {0},
};
