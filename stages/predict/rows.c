/* rows.c - GLUE test.tsv rows and plain lines of tb-predict (rows.h). */
#include "rows.h"

#include "tb/base/error.h"

#include <string.h>

static const pr_test_layout LAYOUTS[TB_TASK_COUNT] = {
    [TB_TASK_COLA] = {2, 1, -1, "index, sentence"},
    [TB_TASK_SST2] = {2, 1, -1, "index, sentence"},
    [TB_TASK_MRPC] = {5, 3, 4, "index, #1 ID, #2 ID, #1 String, #2 String"},
    [TB_TASK_STSB] = {9, 7, 8, "index, genre, filename, year, old_index, source1, source2, sentence1, sentence2"},
    [TB_TASK_QQP] = {3, 1, 2, "id, question1, question2"},
    [TB_TASK_MNLI] = {10, 8, 9,
                      "index, promptID, pairID, genre, sentence1_binary_parse, sentence2_binary_parse, "
                      "sentence1_parse, sentence2_parse, sentence1, sentence2"},
    [TB_TASK_MNLI_MM] = {10, 8, 9,
                         "index, promptID, pairID, genre, sentence1_binary_parse, sentence2_binary_parse, "
                         "sentence1_parse, sentence2_parse, sentence1, sentence2"},
    [TB_TASK_QNLI] = {3, 1, 2, "index, question, sentence"},
    [TB_TASK_RTE] = {3, 1, 2, "index, sentence1, sentence2"},
    [TB_TASK_WNLI] = {3, 1, 2, "index, sentence1, sentence2"},
};

const pr_test_layout *pr_test_layout_of(tb_task task)
{
    if ((int)task < 0 || task >= TB_TASK_COUNT || LAYOUTS[task].n_cols == 0) return NULL;
    return &LAYOUTS[task];
}

/* Field starts of s[0..n) split on tabs: up to `cap` into f[]/fn[]; returns the field count. */
static int split(const char *s, size_t n, const char **f, size_t *fn, int cap)
{
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '\t') continue;
        if (k < cap) {
            f[k] = s + start;
            fn[k] = i - start;
        }
        k++;
        start = i + 1;
    }
    return k;
}

int pr_test_header(const char *where, tb_task task, const char *s, size_t n)
{
    int rc = TB_OK;
    const pr_test_layout *L = pr_test_layout_of(task);
    const tb_task_info *ti = tb_task_get(task);
    const char *f[1] = {s};
    size_t fn[1] = {0};
    TB_CHECK(L, TB_EINVAL, "task %s has no GLUE test.tsv layout", ti ? ti->name : "?");
    int k = split(s, n, f, fn, 1);
    int idcol = (fn[0] == 5 && memcmp(f[0], "index", 5) == 0) || (fn[0] == 2 && memcmp(f[0], "id", 2) == 0);
    TB_CHECK(k == L->n_cols && idcol, TB_EFORMAT,
             "%s:1: the header has %d tab-separated field(s) starting with '%.*s'; a %s test.tsv has %d: %s. "
             "Is this the test file of another task, or a train/dev file (those have labels)?",
             where, k, (int)(fn[0] > 40 ? 40 : fn[0]), f[0], ti->name, L->n_cols, L->header);
error:
    return rc;
}

int pr_test_row(const char *where, long long line, tb_task task, const char *s, size_t n, pr_row *out)
{
    int rc = TB_OK;
    const pr_test_layout *L = pr_test_layout_of(task);
    const char *f[16] = {0};
    size_t fn[16] = {0};
    TB_CHECK(L, TB_EINVAL, "task %d has no GLUE test.tsv layout", (int)task);
    int k = split(s, n, f, fn, 16);
    TB_CHECK(k >= L->n_cols, TB_EFORMAT,
             "%s:%lld: the row has %d tab-separated field(s), a %s test.tsv row has %d (%s): column %d is missing",
             where, line, k, tb_task_get(task)->name, L->n_cols, L->header, k + 1);
    TB_CHECK(fn[0] > 0, TB_EFORMAT, "%s:%lld: the id (column 1) is empty", where, line);
    memset(out, 0, sizeof *out);
    out->id = f[0];
    out->id_n = fn[0];
    out->a = f[L->col_a];
    out->a_n = fn[L->col_a];
    if (L->col_b >= 0) {
        out->b = f[L->col_b];
        out->b_n = fn[L->col_b];
    }
error:
    return rc;
}

int pr_plain_row(const char *where, long long line, int pair, const char *s, size_t n, pr_row *out)
{
    int rc = TB_OK;
    const char *f[3] = {0};
    size_t fn[3] = {0};
    int k = split(s, n, f, fn, 3);
    memset(out, 0, sizeof *out);
    TB_CHECK(k <= 2, TB_EFORMAT, "%s:%lld: the line has %d tabs; a line is a text or a pair text<TAB>text_b", where,
             line, k - 1);
    TB_CHECK(pair != 1 || k == 2, TB_EFORMAT,
             "%s:%lld: the task takes sentence pairs but the line has no tab (write text<TAB>text_b)", where, line);
    TB_CHECK(pair != 0 || k == 1, TB_EFORMAT,
             "%s:%lld: the task takes single sentences but the line has a tab (a labelled file? give the text only)",
             where, line);
    out->a = f[0];
    out->a_n = fn[0];
    if (k == 2) {
        out->b = f[1];
        out->b_n = fn[1];
    }
error:
    return rc;
}
