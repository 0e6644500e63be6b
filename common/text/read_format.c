/* read_format.c - reading a file in a format named on the command line (tb/text/readers.h). */
#include "tb/text/readers.h"

#include "tb/base/error.h"

#include <string.h>

int tb_dataset_read_format(tb_dataset *ds, const char *format, const char *path, const tb_read_opts *opts)
{
    tb_read_opts ro = opts ? *opts : (tb_read_opts){0};
    if (strcmp(format, "corpus") == 0) return tb_dataset_read_corpus(ds, path, &ro);
    if (strcmp(format, "wikitext") == 0) {
        ro.wikitext = 1;
        return tb_dataset_read_corpus(ds, path, &ro);
    }
    if (strcmp(format, "simple") == 0) return tb_dataset_read_simple(ds, path, &ro);
    tb_task task;
    int rc = tb_task_parse(format, &task);
    if (rc) return tb_err_wrap(rc, "--format");
    return tb_dataset_read_glue(ds, task, path, &ro);
}
