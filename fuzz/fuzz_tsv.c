/* libFuzzer target for the TSV readers through tb/text/dataset.h (GLUE tasks, the simple
 * text<TAB>label format, plain and WikiText corpora), built and run by scripts/fuzz tsv SECONDS.
 *
 * The first input byte picks the format (and strict or lenient reading); the rest is the file.
 * A dataset that reads has count examples with text_a set, 1-based increasing line numbers and
 * labels within n_labels (or -1 for regression and corpora); a failure must leave a message that
 * names the file. */
#include "fuzz_common.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/text/dataset.h"

static const char *const formats[] = {"corpus", "wikitext", "simple", "cola",  "sst-2", "mrpc", "sts-b",
                                      "qqp",    "mnli",     "mnli-mm", "qnli", "rte",   "wnli"};
#define NFORMATS ((int)(sizeof formats / sizeof formats[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    tb_log_set_level(TB_LOG_QUIET);
    const char *format = formats[(data[0] & 0x7f) % NFORMATS];
    tb_read_opts ro = {.lenient = data[0] >> 7};
    const char *path = fuzz_as_file(data + 1, size - 1);
    tb_dataset ds;
    memset(&ds, 0, sizeof ds);
    tb_err_clear();
    int rc = tb_dataset_read_format(&ds, format, path, &ro);
    if (rc != TB_OK) {
        fuzz_require(strstr(tb_err_msg(), path) != NULL);
    } else {
        int64_t last = 0;
        for (int64_t i = 0; i < ds.count; i++) {
            const tb_example *e = &ds.ex[i];
            fuzz_require(e->text_a != NULL && e->line > last);
            last = e->line;
            fuzz_require(e->label == -1 || (e->label >= 0 && e->label < ds.n_labels));
        }
    }
    tb_dataset_free(&ds);
    return 0;
}
