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

/* The tensor fields of a token batch message, as a port description for --describe
 * (tb/base/cli.h): every stage that reads or writes token batches declares these. */
extern const tb_port_field tb_batch_port_fields[];

#endif
