/* feed.c - token batches from a text file as an addressable message stream. */
#include "feed.h"

#include "tb/base/error.h"
#include "tb/base/log.h"

#include <math.h>
#include <string.h>

static int check_opts(const tb_feed_opts *o)
{
    if (!o->input || !*o->input) return TB_ERR(TB_EINVAL, "--input: a text file is required");
    if (!o->vocab || !*o->vocab) return TB_ERR(TB_EINVAL, "--vocab: a vocab.txt is required");
    if (o->max_seq_length < 2 || o->max_seq_length > 1 << 16)
        return TB_ERR(TB_EINVAL, "--max-seq-length: %d is outside 2..65536", o->max_seq_length);
    if (o->batch.batch_size < 1) return TB_ERR(TB_EINVAL, "--batch-size: must be >= 1, got %d", o->batch.batch_size);
    if (o->epochs < 1) return TB_ERR(TB_EINVAL, "--epochs: must be >= 1, got %lld", (long long)o->epochs);
    if (o->max_batches < 0) return TB_ERR(TB_EINVAL, "--max-batches: must be >= 0");
    int corpus = strcmp(o->format, "corpus") == 0 || strcmp(o->format, "wikitext") == 0;
    if (o->pack && !corpus) return TB_ERR(TB_EINVAL, "--pack: only a corpus can be packed (--format %s)", o->format);
    return TB_OK;
}

int tb_feed_open(tb_feed *f, const tb_feed_opts *o)
{
    int rc = TB_OK;
    memset(f, 0, sizeof *f);
    TB_TRY(check_opts(o));
    f->opts = *o;
    tb_tokenizer_opts to = tb_tokenizer_opts_default();
    to.do_lower_case = !o->cased;
    if (strcmp(o->format, "wikitext") == 0) to.unk_literal = "<unk>";
    TB_TRY(tb_tokenizer_init(&f->tok, o->vocab, &to));
    tb_read_opts ro = {.lenient = o->lenient, .first_field = o->first_field};
    TB_TRY(tb_dataset_read_format(&f->ds, o->format, o->input, &ro));
    if (f->ds.skipped)
        TB_WARN("%s: skipped %lld malformed rows (first at line %lld)", o->input, (long long)f->ds.skipped,
                (long long)f->ds.skipped_first_line);
    TB_CHECK(f->ds.count > 0, TB_EFORMAT, "%s: no examples", o->input);
    if (o->pack)
        TB_TRY(tb_encoded_build_packed(&f->enc, &f->ds, &f->tok, o->max_seq_length));
    else
        TB_TRY(tb_encoded_build(&f->enc, &f->ds, &f->tok, o->max_seq_length));
    TB_TRY(tb_batcher_init(&f->batcher, &f->enc, &o->batch));
    tb_vocab_hash_str(&f->tok.vocab, f->vocab_hash, sizeof f->vocab_hash);
    TB_TRY(tb_dataset_label_order(&f->ds, f->label_order, sizeof f->label_order));
    f->per_epoch = tb_batcher_count(&f->batcher);
    TB_CHECK(f->per_epoch > 0, TB_EINVAL,
             "%s: %lld examples make no full batch of %d (drop_last); lower --batch-size", o->input,
             (long long)f->enc.count, o->batch.batch_size);
    f->total = f->per_epoch * o->epochs;
    if (o->max_batches > 0 && o->max_batches < f->total) f->total = o->max_batches;
    if (f->enc.truncated)
        TB_INFO("%s: %lld of %lld examples truncated to %d tokens", o->input, (long long)f->enc.truncated,
                (long long)f->enc.count, o->max_seq_length);
    return TB_OK;
error:
    tb_feed_close(f);
    return rc;
}

void tb_feed_close(tb_feed *f)
{
    tb_batcher_free(&f->batcher);
    tb_encoded_free(&f->enc);
    tb_dataset_free(&f->ds);
    tb_tokenizer_free(&f->tok);
    memset(f, 0, sizeof *f);
}

int tb_feed_message(tb_feed *f, uint64_t seq, tb_msg *out)
{
    int rc = TB_OK;
    tb_batch b = {0};
    tb_msg_init(out);
    TB_CHECK(seq < (uint64_t)f->total, TB_EINVAL, "batch %llu requested, the feed has %lld",
             (unsigned long long)seq, (long long)f->total);
    TB_TRY(tb_batcher_get(&f->batcher, seq / (uint64_t)f->per_epoch, (int64_t)(seq % (uint64_t)f->per_epoch), &b));
    TB_TRY(tb_batch_to_msg(&b, f->vocab_hash, f->label_order, out));
    if (f->ds.task != TB_TASK_CORPUS) TB_TRY(tb_msg_set_str(out, "task", tb_task_get(f->ds.task)->name));
    /* tb_batch_to_msg borrows; the message must own its tensors (it may outlive `b`). */
    TB_TRY(tb_msg_set_tensor_move(out, "input_ids", &b.input_ids));
    TB_TRY(tb_msg_set_tensor_move(out, "token_type_ids", &b.token_type_ids));
    TB_TRY(tb_msg_set_tensor_move(out, "attention_mask", &b.attention_mask));
    TB_TRY(tb_msg_set_tensor_move(out, "labels", &b.labels));
    TB_TRY(tb_msg_set_tensor_move(out, "example_ids", &b.example_ids));
    tb_batch_free(&b);
    return TB_OK;
error:
    tb_batch_free(&b);
    tb_msg_free(out);
    return rc;
}

static int regen(void *ctx, uint64_t seq, tb_msg *out)
{
    tb_msg_free(out); /* initialised by the stream; tb_feed_message initialises it again */
    return tb_feed_message(ctx, seq, out);
}

int tb_feed_run(tb_feed *f, const char *endpoint, const tb_stream_opts *so, tb_progress *progress,
                tb_metrics *metrics)
{
    int rc = TB_OK;
    tb_stream *s = NULL;
    tb_msg m;
    tb_msg_init(&m);
    tb_stream_opts o = *so;
    o.regen = regen;
    o.regen_ctx = f;
    o.announce_count = (uint64_t)f->total; /* a trainer sizes its schedule by it */
    TB_TRY(tb_stream_open(&s, endpoint, TB_STREAM_WRITE, &o));
    int64_t samples = 0;
    for (int64_t g = 0; g < f->total; g++) {
        TB_TRY(tb_feed_message(f, (uint64_t)g, &m));
        const tb_tensor *ids;
        TB_TRY(tb_msg_get_tensor(&m, "input_ids", &ids));
        samples += ids->shape[0];
        TB_TRY(tb_stream_send(s, &m, NULL));
        tb_msg_free(&m);
        if (progress) tb_progress_update(progress, g + 1, samples, NAN, NAN);
    }
    TB_TRY(tb_stream_finish(s));
    if (progress) tb_progress_finish(progress);
    tb_metric fields[] = {TB_MI("batches", f->total), TB_MI("examples", samples), TB_MI("per_epoch", f->per_epoch),
                          TB_MI("truncated", f->enc.truncated), TB_MS("vocab_hash", f->vocab_hash)};
    if (metrics) TB_TRY(tb_metrics_write(metrics, "end", f->total, fields, 5));
error:
    tb_msg_free(&m);
    tb_stream_close(s);
    return rc;
}
