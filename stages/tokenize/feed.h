/* stages/tokenize/feed.h - token batches from a text file, as a stream of messages (the tb-tokenize stage).
 *
 * A feed reads a task file or corpus once, tokenizes it once, and then makes any batch on
 * demand: stream sequence number g is batch (epoch = g / per_epoch, index = g % per_epoch) of
 * the addressable batcher (tb/text/dataset.h), so the same (seed, g) always gives the same message.
 * That is also the stream's regenerate callback: a consumer that restarts from its checkpoint at
 * batch K gets K, K+1, ... recomputed, whether or not the producer still holds them.
 *
 * Message fields (tb_batch_to_msg): input_ids, token_type_ids, attention_mask (i32 [B, T]),
 * labels (i32 or f32 [B]), example_ids (i64 [B]), epoch, index, vocab_hash, label_order; the
 * stream adds msg, stream and seq.
 */
#ifndef TB_FEED_H
#define TB_FEED_H

#include "tb/text/dataset.h"
#include "tb/base/metrics.h"
#include "tb/base/progress.h"
#include "tb/wire/stream.h"
#include "tb/text/tokenizer.h"

#include <stdint.h>

typedef struct tb_feed_opts {
    const char *input;       /* the text file */
    const char *format;      /* corpus | wikitext | simple | a GLUE task name (tb_task_parse) */
    const char *vocab;       /* vocab.txt */
    int cased;               /* keep case and accents (cased vocabularies) */
    int lenient;             /* skip and count malformed rows */
    int first_field;         /* corpus: only the text before the first tab */
    int max_seq_length;      /* >= 2 (128) */
    int pack;                /* corpus: pack sentences into full sequences (MLM pre-training) */
    tb_batch_opts batch;     /* batch size, data seed, shuffle, drop_last, pad_to_longest */
    int64_t epochs;          /* >= 1 */
    int64_t max_batches;     /* > 0: stop after this many batches in all (0: every epoch in full) */
} tb_feed_opts;

typedef struct tb_feed {
    tb_feed_opts opts;
    tb_tokenizer tok;
    tb_dataset ds;
    tb_encoded enc;
    tb_batcher batcher;
    char vocab_hash[32];
    char label_order[1024];
    int64_t per_epoch;       /* batches in one epoch */
    int64_t total;           /* batches the feed sends */
} tb_feed;

/* Reads and tokenizes the input; checks the options (each error names the option). */
int tb_feed_open(tb_feed *f, const tb_feed_opts *o);
void tb_feed_close(tb_feed *f);

/* Builds the message of stream sequence number `seq` (< f->total) into `out`, which the
 * function initialises; the message owns its tensors. */
int tb_feed_message(tb_feed *f, uint64_t seq, tb_msg *out);

/* Sends every batch to the stream at `endpoint`, registering tb_feed_message as the stream's
 * regenerate callback, then finishes the stream. `progress` and `metrics` may be NULL. */
int tb_feed_run(tb_feed *f, const char *endpoint, const tb_stream_opts *so, tb_progress *progress,
                tb_metrics *metrics);

#endif
