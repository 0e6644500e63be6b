/* tb-predict's logits against PyTorch: text lines on stdin (SST-2 sentences, MRPC pairs cut to a
 * short max_seq_length, a regression model) through tb-predict --logits, and the same lines
 * tokenized by google-research/bert's tokenizer (bench/bert_tokenization.py) and run one at a
 * time through the float64 torch BERT of tests/reference/py/tbref.py (predict_ref.py). */
#include "ckpt.h"
#include "proc.h"
#include "repodata.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define PREDICT TB_BIN_DIR "/tb-predict"
#define REF TB_SOURCE_DIR "/tests/reference/py/predict_ref.py"

static char dir[256];

static void setup(void) { cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir)); }

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(predict_torch, .init = setup, .fini = teardown, .timeout = 300);

/* Lines of a test.tsv without its header: columns `cols` (awk list, e.g. "$2" or "$4\"\\t\"$5"). */
static void lines_of(const char *tsv, const char *cols, const char *out)
{
    cr_assert_eq(tb_proc_sh("tail -n +2 %s | awk -F '\\t' '{print %s}' > %s", tsv, cols, out), 0);
}

/* tb-predict --logits on stdin from `lines`, then the torch reference; both must agree. */
static void check(const tb_test_ckpt *spec, const char *lines, const char *extra, int max_seq)
{
    static int n;
    char sub[600], model[600];
    snprintf(sub, sizeof sub, "%s/model%d", dir, n++);
    tb_test_write_ckpt(sub, spec, model, sizeof model);
    cr_assert_eq(tb_proc_sh("%s --model %s --logits --max-seq-length %d %s --log-level warn < %s > %s/logits.txt", PREDICT, model,
                    max_seq, extra, lines, dir),
                 0);
    cr_assert_eq(tb_proc_sh("%s %s %s %s %s/logits.txt %d 1e-4", TB_PYTHON, REF, model, lines, dir, max_seq), 0,
                 "tb-predict's logits differ from the PyTorch reference (see above)");
}

Test(predict_torch, sst2_sentences_relu_and_hf_heads)
{
    char lines[600];
    snprintf(lines, sizeof lines, "%s/sst2.txt", dir);
    lines_of(tb_test_data("sst2/test.tsv"), "$2", lines);
    check(&(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 2, .seed = 3}, lines, "--task sst-2 --batch-size 7", 128);
    check(&(tb_test_ckpt){.head = TB_HEAD_TINYBERT, .num_labels = 2, .seed = 4, .fit_size = 48, .mlm_head = 1}, lines,
          "--chunk 5", 128);
}

Test(predict_torch, mrpc_pairs_truncated_longest_first)
{
    char lines[600];
    snprintf(lines, sizeof lines, "%s/mrpc.txt", dir);
    lines_of(tb_test_data("mrpc/test.tsv"), "$4\"\\t\"$5", lines);
    check(&(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 3, .seed = 5}, lines, "--batch-size 4", 24);
}

Test(predict_torch, regression_scores_of_pairs)
{
    char lines[600];
    snprintf(lines, sizeof lines, "%s/mrpc.txt", dir);
    lines_of(tb_test_data("mrpc/test.tsv"), "$4\"\\t\"$5", lines);
    check(&(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 1, .seed = 6}, lines, "--task sts-b", 128);
}
