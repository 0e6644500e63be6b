/* stages/tokenize/textin.h - task rows received as a stream of text messages (docs/protocol.md,
 * "Text rows"), e.g. from tb-augment --output ipc://...
 *
 * The stream is read to its END and its rows are written, in order, to a file in a fresh
 * temporary folder: the header line (when the messages carry one), then every message's rows.
 * That file is byte for byte the task file the producer would have written, so the task readers
 * (tb/text/dataset.h) read it exactly as they read a file, and the token batches are the same.
 */
#ifndef TB_TEXTIN_H
#define TB_TEXTIN_H

#include "tb/wire/stream.h"

#include <stddef.h>

/* 1 when `input` names a message stream: tcp://, ipc:// or file:PATH (a plain path is a file). */
int tb_textin_is_stream(const char *input);

/* Receives every text message of the stream at `endpoint` (consumer options `so`, NULL for the
 * defaults) and writes their rows to a new file in a fresh folder under $TMPDIR (or /tmp), whose
 * path goes to path[0..n). Every message must carry `format` equal to `format`, the same `header`
 * (or none) and `rows`; a malformed one is TB_EFORMAT naming the endpoint, the message's sequence
 * number and the field. On failure nothing is left behind. */
int tb_textin_fetch(const char *endpoint, const char *format, const tb_stream_opts *so, char *path, size_t n);

/* Removes the file made by tb_textin_fetch and its folder. Safe on "". */
void tb_textin_remove(const char *path);

#endif
