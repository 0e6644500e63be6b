/* libFuzzer target for tb_pipeline_parse (pipeline files: sections, keys, ${VAR} expansion, quoting,
 * `after` graphs), built and run by scripts/fuzz pipeline SECONDS.
 *
 * A pipeline that parses has stages with a name, a non-empty NULL-terminated argv, and `after`
 * indices that name other stages; a failure must leave a message that names the origin. */
#include "fuzz_common.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "pipeline/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tb_log_set_level(TB_LOG_QUIET);
    char *text = fuzz_as_text(data, size);
    char *overrides[] = {"RUN=/tmp/fuzz-run"};
    tb_pipeline p;
    memset(&p, 0, sizeof p);
    tb_err_clear();
    int rc = tb_pipeline_parse(&p, text, "fuzz.pipeline", overrides, 1);
    free(text);
    if (rc != TB_OK) {
        fuzz_require(strstr(tb_err_msg(), "fuzz.pipeline") != NULL);
    } else {
        for (int i = 0; i < p.count; i++) {
            const tb_pipeline_stage *s = &p.stages[i];
            fuzz_require(s->name && s->name[0] && s->argv && s->argc >= 1 && s->argv[s->argc] == NULL);
            for (int k = 0; k < s->argc; k++) fuzz_require(s->argv[k] != NULL);
            for (int k = 0; k < s->nafter; k++)
                fuzz_require(s->after_idx[k] >= 0 && s->after_idx[k] < p.count && s->after_idx[k] != i);
            fuzz_require(tb_pipeline_find(&p, s->name) == i);
        }
    }
    tb_pipeline_free(&p);
    return 0;
}
