/* libFuzzer target for tb_config_parse (config.json of a BERT model), built and run by
 * scripts/fuzz config SECONDS.
 *
 * A config that parses must pass tb_config_validate, and formatting it then parsing the text again
 * must give the same config (a fixed point of format). A failure must leave a message. */
#include "fuzz_common.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/store/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tb_log_set_level(TB_LOG_QUIET);
    char *text = fuzz_as_text(data, size);
    tb_bert_config c, again;
    memset(&c, 0, sizeof c);
    tb_err_clear();
    int rc = tb_config_parse(text, "fuzz config.json", &c);
    free(text);
    if (rc != TB_OK) {
        fuzz_require(tb_err_msg()[0] != '\0');
        return 0;
    }
    fuzz_require(tb_config_validate(&c, "fuzz config.json") == TB_OK);
    char *json = NULL, *json2 = NULL;
    fuzz_require(tb_config_format(&c, &json) == TB_OK);
    memset(&again, 0, sizeof again);
    fuzz_require(tb_config_parse(json, "formatted", &again) == TB_OK);
    fuzz_require(tb_config_format(&again, &json2) == TB_OK);
    fuzz_require(strcmp(json, json2) == 0);
    free(json);
    free(json2);
    return 0;
}
