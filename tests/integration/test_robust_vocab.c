/* The stages as processes: the vocabulary hash is checked wherever token ids meet a model. Batches
 * made with another vocabulary than the model's vocab.txt are refused by tb-eval, by tb-finetune
 * (training input and --dev) and by tb-distill --dev, with an error naming both hashes, the file
 * and the batch; tb-finetune --init X without --vocab copies X's vocab.txt into its checkpoints,
 * and --vocab must agree with it. The expected hashes are computed here from the tokens
 * (FNV-1a 64 over "token\n", docs/data.md) by Python, not by the code under test. */
#include "proc.h"
#include "test_finetune_data.h"

#include "tb/base/error.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/store/config.h"
#include "tb/text/batch_msg.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FT TB_BIN_DIR "/tb-finetune"
#define EVAL TB_BIN_DIR "/tb-eval"
#define EMIT TB_BIN_DIR "/tb-emit"
#define DISTILL TB_BIN_DIR "/tb-distill"
#define QUIET " --threads 1 --progress none --plot ''"

static char dir[256], cfg[512], vocab[512], other[512], train[512], same_ck[512], other_ck[512], errpath[512];
static char hash_same[64], hash_other[64];

/* FNV-1a 64 of every line of `path` followed by "\n", by Python. */
static void python_hash(const char *path, char *out, size_t n)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s -c \"import sys\nh=0xcbf29ce484222325\nfor t in open(sys.argv[1],'rb').read().split(b'\\\\n')[:-1]:\n"
             "  for c in t.strip()+b'\\\\n':\n    h=((h^c)*0x100000001b3)%%(1<<64)\nprint('fnv1a64:%%016x'%%h)\" '%s'",
             TB_PYTHON, path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(out, (int)n, p));
    out[strcspn(out, "\n")] = 0;
    cr_assert_eq(pclose(p), 0, "%s", cmd);
    cr_assert_eq(strncmp(out, "fnv1a64:", 8), 0, "%s", out);
}

/* A classifier checkpoint of the test config in `out` carrying `vocab_path` (NULL: none). */
static void write_checkpoint(const char *out, const char *vocab_path)
{
    tb_bert_config c;
    cr_assert_eq(tb_config_load(cfg, &c), TB_OK, "%s", tb_err_msg());
    c.head = TB_HEAD_TINYBERT;
    c.num_labels = 2;
    tb_bert_model m = {0};
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_checkpoint_save(out, 1, &m.config, &m.params, NULL, NULL, vocab_path, NULL, 0), TB_OK, "%s",
                 tb_err_msg());
    tb_bert_free(&m);
}

static void setup(void)
{
    cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir));
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    snprintf(other, sizeof other, "%s/other-vocab.txt", dir);
    snprintf(train, sizeof train, "%s/train.tbm", dir);
    snprintf(same_ck, sizeof same_ck, "%s/same", dir);
    snprintf(other_ck, sizeof other_ck, "%s/other", dir);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    cr_assert_eq(ft_write_config(cfg, 0), 0);
    cr_assert_eq(ft_write_vocab(vocab), 0);
    /* the same 40 tokens with two of them swapped: same size, another vocabulary */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sed -e 's/^w5$/w6x/' -e 's/^w6$/w5/' -e 's/^w6x$/w6/' '%s' > '%s'", vocab, other);
    cr_assert_eq(system(cmd), 0);
    python_hash(vocab, hash_same, sizeof hash_same);
    python_hash(other, hash_other, sizeof hash_other);
    cr_assert_str_neq(hash_same, hash_other);
    cr_assert_eq(ft_write_batches(train, 4, 4, 8, 1, 0), TB_OK, "%s", tb_err_msg());
    write_checkpoint(same_ck, vocab);
    write_checkpoint(other_ck, other);
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(robust_vocab, .init = setup, .fini = teardown, .timeout = 180);

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    cr_assert_not_null(p);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = 0;
    fclose(f);
    return p;
}

static char *err_text(void)
{
    char *e = slurp(errpath);
    cr_assert_not_null(e);
    fprintf(stderr, "%s", e);
    return e;
}

/* The error names both hashes, the batch file and batch number, and what to do. */
static void expect_mismatch(const char *file, const char *batch)
{
    char *e = err_text();
    cr_expect(strstr(e, hash_same) && strstr(e, hash_other), "both hashes (%s, %s) not named: %s", hash_same,
              hash_other, e);
    cr_expect(strstr(e, file) && strstr(e, batch), "the file and '%s' not named: %s", batch, e);
    cr_expect(strstr(e, "tokenize"), "no advice: %s", e);
    free(e);
}

/* Dev batches made with the other vocabulary (their vocab_hash is its hash). */
static void write_other_batches(const char *path, int n)
{
    tb_stream *s = NULL;
    char ep[700];
    snprintf(ep, sizeof ep, "file:%s", path);
    cr_assert_eq(tb_stream_open(&s, ep, TB_STREAM_WRITE, NULL), TB_OK, "%s", tb_err_msg());
    uint64_t rng = 7;
    for (int k = 0; k < n; k++) {
        tb_batch b = {0};
        tb_msg m;
        tb_msg_init(&m);
        cr_assert_eq(ft_make_batch(&b, 4, 8, &rng, 0, (int64_t)k * 4), TB_OK);
        cr_assert_eq(tb_batch_to_msg(&b, hash_other, "0,1", &m), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(tb_stream_send(s, &m, NULL), TB_OK, "%s", tb_err_msg());
        tb_msg_free(&m);
        tb_batch_free(&b);
    }
    cr_assert_eq(tb_stream_finish(s), TB_OK, "%s", tb_err_msg());
    tb_stream_close(s);
}

Test(robust_vocab, eval_refuses_batches_of_another_vocabulary)
{
    cr_expect_eq(tb_proc_sh_err(errpath, EVAL " --model %s --input %s --json '' --threads 1", same_ck, train), 0);
    cr_assert_eq(tb_proc_sh_err(errpath, EVAL " --model %s --input %s --json '' --threads 1", other_ck, train), 1);
    expect_mismatch(train, "batch 0");
    char dev[600];
    snprintf(dev, sizeof dev, "%s/dev-other.tbm", dir);
    write_other_batches(dev, 2);
    cr_expect_eq(tb_proc_sh_err(errpath, EVAL " --model %s --input %s --json '' --threads 1", other_ck, dev), 0);
}

Test(robust_vocab, finetune_init_without_vocab_carries_the_checkpoints_vocab)
{
    char out[600], path[700];
    snprintf(out, sizeof out, "%s/ft", dir);
    cr_assert_eq(tb_proc_sh_err(errpath, FT " --init %s --input %s --output %s --max-steps 2" QUIET, same_ck, train, out), 0);
    snprintf(path, sizeof path, "%s/latest/vocab.txt", out);
    char *got = slurp(path), *want = slurp(vocab);
    cr_assert_not_null(got, "%s has no vocab.txt", path);
    cr_expect_str_eq(got, want);
    free(got);
    free(want);
    /* and that checkpoint is then checked like any other */
    cr_expect_eq(tb_proc_sh_err(errpath, EVAL " --model %s --input %s --json '' --threads 1", out, train), 0);
}

Test(robust_vocab, finetune_refuses_training_batches_of_another_vocabulary)
{
    char out[600];
    snprintf(out, sizeof out, "%s/ft", dir);
    cr_assert_eq(tb_proc_sh_err(errpath, FT " --init %s --input %s --output %s --max-steps 2" QUIET, other_ck, train, out), 1);
    expect_mismatch(train, "batch 0");
    /* --vocab that is not the vocabulary of --init */
    snprintf(out, sizeof out, "%s/ft2", dir);
    cr_assert_eq(tb_proc_sh_err(errpath, FT " --init %s --vocab %s --input %s --output %s --max-steps 2" QUIET, other_ck, vocab, train, out),
                 1);
    char *e = err_text();
    cr_expect(strstr(e, "--vocab") && strstr(e, hash_same) && strstr(e, hash_other), "%s", e);
    free(e);
    /* a random model with --vocab: the batches are checked against it */
    snprintf(out, sizeof out, "%s/ft3", dir);
    cr_assert_eq(tb_proc_sh_err(errpath, FT " --config %s --num-labels 2 --vocab %s --input %s --output %s --max-steps 2" QUIET, cfg, other,
                    train, out),
                 1);
    expect_mismatch(train, "batch 0");
}

Test(robust_vocab, finetune_refuses_dev_batches_of_another_vocabulary)
{
    char out[600], dev[600];
    snprintf(out, sizeof out, "%s/ft", dir);
    snprintf(dev, sizeof dev, "%s/dev-other.tbm", dir);
    write_other_batches(dev, 2);
    cr_assert_eq(tb_proc_sh_err(errpath, FT " --init %s --input %s --dev %s --output %s --max-steps 2" QUIET, same_ck, train, dev, out), 1);
    expect_mismatch(dev, "batch 0");
}

Test(robust_vocab, distill_refuses_dev_batches_of_another_vocabulary)
{
    char feats[600], out[600], dev[600];
    snprintf(feats, sizeof feats, "%s/features.tbm", dir);
    snprintf(out, sizeof out, "%s/student", dir);
    snprintf(dev, sizeof dev, "%s/dev-other.tbm", dir);
    write_other_batches(dev, 2);
    cr_assert_eq(tb_proc_sh_err(errpath, EMIT " --teacher %s --input %s --output file:%s --logits --threads 1", same_ck, train, feats), 0);
    cr_assert_eq(tb_proc_sh_err(errpath, DISTILL " --mode task-stage2 --init %s --input %s --dev %s --output %s --max-steps 2 --no-dropout" QUIET,
                    same_ck, feats, dev, out),
                 1);
    expect_mismatch(dev, "batch 0");
    /* the same run with dev batches of its own vocabulary goes through */
    snprintf(out, sizeof out, "%s/student2", dir);
    cr_expect_eq(tb_proc_sh_err(errpath, DISTILL " --mode task-stage2 --init %s --input %s --dev %s --output %s --max-steps 2 --no-dropout" QUIET,
                    same_ck, feats, train, out),
                 0);
}
