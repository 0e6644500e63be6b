/* task.c - the task table: columns and label sets of the GLUE tasks, the simple format and a
 * corpus (tb/text/task.h). */
#include "tb/text/task.h"

#include "tb/base/error.h"

#include <stddef.h>
#include <strings.h>

static const char *const LABELS_01[] = {"0", "1"};
static const char *const LABELS_MNLI[] = {"contradiction", "entailment", "neutral"};
static const char *const LABELS_ENT[] = {"entailment", "not_entailment"};

/* Columns and label orders of the TinyBERT reference (task_distill.py processors). */
static const tb_task_info TASKS[TB_TASK_COUNT] = {
    [TB_TASK_COLA] = {"cola", 0, 3, -1, 1, 4, 0, 2, LABELS_01},
    [TB_TASK_SST2] = {"sst-2", 1, 0, -1, 1, 2, 0, 2, LABELS_01, "sentence", NULL, "label"},
    [TB_TASK_MRPC] = {"mrpc", 1, 3, 4, 0, 5, 0, 2, LABELS_01, "#1 String", "#2 String", "Quality"},
    [TB_TASK_STSB] = {"sts-b", 1, 7, 8, -1, 10, 1, 0, NULL, "sentence1", "sentence2", "score"},
    [TB_TASK_QQP] = {"qqp", 1, 3, 4, 5, 6, 0, 2, LABELS_01, "question1", "question2", "is_duplicate"},
    [TB_TASK_MNLI] = {"mnli", 1, 8, 9, -1, 11, 0, 3, LABELS_MNLI, "sentence1", "sentence2", "gold_label"},
    [TB_TASK_MNLI_MM] = {"mnli-mm", 1, 8, 9, -1, 11, 0, 3, LABELS_MNLI, "sentence1", "sentence2", "gold_label"},
    [TB_TASK_QNLI] = {"qnli", 1, 1, 2, -1, 4, 0, 2, LABELS_ENT, "question", "sentence", "label"},
    [TB_TASK_RTE] = {"rte", 1, 1, 2, -1, 4, 0, 2, LABELS_ENT, "sentence1", "sentence2", "label"},
    [TB_TASK_WNLI] = {"wnli", 1, 1, 2, -1, 4, 0, 2, LABELS_01, "sentence1", "sentence2", "label"},
    [TB_TASK_SIMPLE] = {"simple", 0, 0, 1, -1, 2, 0, 0, NULL},
    [TB_TASK_CORPUS] = {"corpus", 0, 0, -1, 0, 1, 0, 0, NULL},
};

const tb_task_info *tb_task_get(tb_task task)
{
    if ((int)task < 0 || task >= TB_TASK_COUNT) return NULL;
    return &TASKS[task];
}

int tb_task_parse(const char *name, tb_task *out)
{
    static const struct { const char *alias; tb_task task; } ALIASES[] = {
        {"sst2", TB_TASK_SST2}, {"stsb", TB_TASK_STSB}, {"mnli-m", TB_TASK_MNLI}, {"mnli_mm", TB_TASK_MNLI_MM},
        {"mnlimm", TB_TASK_MNLI_MM}, {"text", TB_TASK_SIMPLE},
    };
    if (!name) return TB_ERR(TB_EINVAL, "no task name given");
    for (int t = 0; t < TB_TASK_COUNT; t++) {
        if (strcasecmp(name, TASKS[t].name) == 0) {
            *out = (tb_task)t;
            return TB_OK;
        }
    }
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        if (strcasecmp(name, ALIASES[i].alias) == 0) {
            *out = ALIASES[i].task;
            return TB_OK;
        }
    }
    return TB_ERR(TB_EINVAL,
                  "unknown task '%s'; use one of cola, sst-2, mrpc, sts-b, qqp, mnli, mnli-mm, qnli, rte, "
                  "wnli, simple, corpus", name);
}
