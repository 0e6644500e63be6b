/* sink.h - where tb-predict's output goes (sink.c): standard output, flushed after every chunk
 * so that a caller reading line by line gets its answers at once; or a file written under
 * PATH.tmp and renamed to PATH when complete (an existing PATH stays untouched until then, and on
 * failure PATH.tmp is removed).
 */
#ifndef TB_PREDICT_SINK_H
#define TB_PREDICT_SINK_H

#include <stdio.h>

typedef struct pr_sink {
    FILE *f;
    int is_stdout;
    char path[4096], tmp[4100];
} pr_sink;

/* Opens `path` ("-": standard output). */
int pr_sink_open(pr_sink *s, const char *path);
/* Passes what was written on (fflush); errors name the output. */
int pr_sink_flush(pr_sink *s);
/* Flushes, syncs and closes; a file is renamed from PATH.tmp to PATH. */
int pr_sink_commit(pr_sink *s);
/* Closes without committing: a file's PATH.tmp is removed. Safe after commit or on a zeroed sink. */
void pr_sink_abort(pr_sink *s);

#endif
