/* tb/store/safetensors.h - reading and writing the safetensors format (Hugging Face).
 *
 * File layout (https://github.com/huggingface/safetensors, "Format"):
 *   8 bytes   N, little-endian u64: size of the header
 *   N bytes   UTF-8 JSON object {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..],
 *             "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8 bytes
 *   rest      the byte buffer; offsets are relative to its start, little-endian, C order
 *
 * The reader maps the file read-only and validates it completely before anything is used:
 * header size (<= 100 MB, inside the file), JSON syntax, every entry's dtype / shape /
 * data_offsets, shape x dtype size == byte range, ranges in bounds, no duplicate names, and
 * ranges that tile the byte buffer exactly (no gap, no overlap, nothing after the last one),
 * as the reference implementation requires. Entries keep header order.
 * The writer puts "__metadata__" first, then the tensors in the order given, with contiguous
 * increasing offsets.
 */
#ifndef TB_SAFETENSORS_H
#define TB_SAFETENSORS_H

#include "tb/base/tensor.h"

#include <stddef.h>
#include <stdint.h>

/* Largest header the reader accepts (the reference implementation's limit). */
#define TB_ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct tb_st_entry {
    char *name;
    tb_dtype dtype;
    int ndim;
    int64_t shape[TB_MAX_DIMS];
    uint64_t begin, end;   /* byte range inside the data buffer */
} tb_st_entry;

typedef struct tb_st_meta {
    char *key, *value;
} tb_st_meta;

typedef struct tb_st_file {
    char *path;
    void *map;             /* whole file, read-only */
    size_t size;
    const uint8_t *data;   /* start of the byte buffer */
    size_t data_size;
    tb_st_entry *entries;  /* header order */
    int count;
    tb_st_meta *meta;      /* "__metadata__" pairs */
    int meta_count;
} tb_st_file;

/* Maps and validates `path`. On error nothing stays open and the message names the file,
 * the tensor and the problem. */
int tb_st_open(tb_st_file *f, const char *path);
void tb_st_close(tb_st_file *f);

/* Entry by exact name, or NULL. */
const tb_st_entry *tb_st_find(const tb_st_file *f, const char *name);
/* "__metadata__" value for `key`, or NULL. */
const char *tb_st_meta_get(const tb_st_file *f, const char *key);

/* Copies an entry's bytes into `dst` (`dst_bytes` must equal the entry's size). */
int tb_st_read(const tb_st_file *f, const tb_st_entry *e, void *dst, size_t dst_bytes);
/* Copies an entry into a new owned tensor with its dtype and shape. */
int tb_st_read_tensor(const tb_st_file *f, const tb_st_entry *e, tb_tensor *out);

/* One tensor to write: any dtype, contiguous or strided (strided ones are packed). */
typedef struct tb_st_item {
    const char *name;
    const tb_tensor *tensor;
} tb_st_item;

/* Writes `items` (names unique and not "__metadata__") with metadata pairs `meta` (may be NULL
 * when meta_count is 0; "format": "pt" is added first unless present) to `path`, then fsyncs
 * the file. It is written as PATH.tmp-<pid> and renamed to PATH when complete: an existing PATH is
 * replaced whole or not at all, and a failure leaves no temporary behind. */
int tb_st_write(const char *path, const tb_st_item *items, int count, const tb_st_meta *meta, int meta_count);

#endif
