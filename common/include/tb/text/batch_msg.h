/* tb/text/batch_msg.h - the token batch message: what tb-tokenize sends and every stage that
 * reads token batches receives (batch_msg.c).
 */
#ifndef TB_BATCH_MSG_H
#define TB_BATCH_MSG_H

#include "tb/base/cli.h"
#include "tb/text/batches.h"
#include "tb/text/examples.h"
#include "tb/wire/msg.h"

#include <stddef.h>

/* The label order of a dataset as text, for batch metadata: the labels in id order joined by
 * ",", e.g. "0,1" or "contradiction,entailment,neutral"; "regression" for STS-B; "0,...,n-1"
 * for the simple format (n = n_labels); "none" for a corpus. */
int tb_dataset_label_order(const tb_dataset *ds, char *buf, size_t n);

/* Puts a batch into a message: tensors input_ids, token_type_ids, attention_mask, labels,
 * example_ids (borrowed: keep `b` alive while `m` is used), ints epoch and index, strings
 * vocab_hash and label_order (either may be NULL to leave it out). The stream layer adds
 * "msg", the stream id and the sequence number. */
int tb_batch_to_msg(const tb_batch *b, const char *vocab_hash, const char *label_order, tb_msg *m);
/* Reads a batch back (tensors copied), checking names, dtypes and shapes: TB_ENOTFOUND for a
 * missing field, TB_ESHAPE for a wrong dtype or shape, TB_EFORMAT for an attention mask that is
 * not 0/1 or negative ids; each message names the field. */
int tb_batch_from_msg(tb_batch *b, const tb_msg *m);

/* Where token ids meet a model: checks that batch `seq` of `source` (an endpoint or file, for
 * the message) was made with the vocabulary whose hash is `expect` ("fnv1a64:..."), which comes
 * from `expect_from` (e.g. "checkpoint out/step-9's vocab.txt"). TB_OK when `expect` is NULL or
 * "" (nothing to check against) or the batch carries no vocab_hash; TB_EFORMAT naming both
 * hashes, the source, the batch and what to do when they differ. */
int tb_batch_check_vocab(const tb_msg *m, const char *expect, const char *expect_from, const char *source,
                         uint64_t seq);

/* tb_batch_check_vocab on the first batch of the message file `path` (before a long run reads
 * it, e.g. a dev set evaluated only at the end). TB_OK for an empty file or nothing to check. */
int tb_batch_file_check_vocab(const char *path, const char *expect, const char *expect_from);

/* The tensor fields of a token batch message, as a port description for --describe
 * (tb/base/cli.h): every stage that reads or writes token batches declares these. */
extern const tb_port_field tb_batch_port_fields[];

#endif
