/* Integration tests of tb-augment (the executable): SST-2 rows with a random Hugging Face
 * BertForMaskedLM written by tests/reference/py/augment_ref.py; output identical at 1 and 2
 * threads and on the one-at-a-time path, read unchanged by tb-tokenize, labels carried over;
 * a bert-base-shaped checkpoint; and the errors for a model without an MLM head. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "proc.h"
#include "tb/base/error.h"
#include "tb/model/bert.h"
#include "tb/store/checkpoint.h"
#include "tb/text/dataset.h"

#define AUGMENT TB_BIN_DIR "/tb-augment"
#define TOKENIZE TB_BIN_DIR "/tb-tokenize"
#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"
#define REF TB_PYTHON " " TB_SOURCE_DIR "/tests/reference/py/augment_ref.py"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    return b;
}

Test(augment_cli, sst2_rows_deterministic_and_tokenizable, .timeout = 600)
{
    char d[256];
    tb_proc_tmpdir(d, sizeof d);
    cr_assert_eq(tb_proc_sh(REF " make-model %s/m --vocab " VOCAB " --layers 2 --hidden 32 --heads 2 --inter 64 --seed 3", d),
                 0);
    cr_assert_eq(tb_proc_sh("head -n 121 " TB_SOURCE_DIR "/data/sst2/train.tsv > %s/in.tsv", d), 0);
    const char *common = "--format sst-2 --progress none --log-level warn --seed 11 --n 6";
    cr_assert_eq(tb_proc_sh(AUGMENT " --input %s/in.tsv --output %s/t1.tsv --model %s/m --threads 1 %s", d, d, d, common), 0);
    cr_assert_eq(tb_proc_sh(AUGMENT " --input %s/in.tsv --output %s/t2.tsv --model %s/m --threads 2 --chunk 7 %s", d, d, d,
                    common),
                 0);
    cr_assert_eq(tb_proc_sh(AUGMENT " --input %s/in.tsv --output %s/t3.tsv --model %s/m --threads 2 --one-at-a-time %s", d, d,
                    d, common),
                 0);
    char p1[300], p2[300], p3[300];
    snprintf(p1, sizeof p1, "%s/t1.tsv", d);
    snprintf(p2, sizeof p2, "%s/t2.tsv", d);
    snprintf(p3, sizeof p3, "%s/t3.tsv", d);
    char *a = slurp(p1), *b = slurp(p2), *c = slurp(p3);
    cr_assert_str_eq(a, b, "1 and 2 threads (and chunk sizes) differ");
    cr_assert_str_eq(a, c, "batched and one-at-a-time differ");

    /* every original row appears in order, followed by its new rows with the same label */
    tb_dataset in = {0}, out = {0};
    char pin[300];
    snprintf(pin, sizeof pin, "%s/in.tsv", d);
    cr_assert_eq(tb_dataset_read_format(&in, "sst-2", pin, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_dataset_read_format(&out, "sst-2", p1, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(in.count, 120);
    cr_assert_gt(out.count, 3 * in.count, "only %lld rows out", (long long)out.count);
    cr_assert_leq(out.count, 7 * in.count);
    int64_t j = 0;
    for (int64_t i = 0; i < in.count; i++) {
        cr_assert_lt(j, out.count);
        cr_assert_str_eq(out.ex[j].text_a, in.ex[i].text_a, "original row %lld not at output row %lld", (long long)i,
                         (long long)j);
        int32_t label = in.ex[i].label;
        j++;
        int64_t next_orig = i + 1 < in.count ? i + 1 : -1;
        for (int k = 0; k < 6 && j < out.count; k++) {
            if (next_orig >= 0 && strcmp(out.ex[j].text_a, in.ex[next_orig].text_a) == 0) break;
            cr_assert_eq(out.ex[j].label, label, "row %lld: label not carried over", (long long)j);
            j++;
        }
    }
    cr_assert_eq(j, out.count);
    tb_dataset_free(&in);
    tb_dataset_free(&out);
    /* tb-tokenize reads it unchanged */
    cr_assert_eq(tb_proc_sh(TOKENIZE " --input %s --format sst-2 --vocab " VOCAB
                    " --output %s/t.tbm --progress none --log-level warn --max-batches 3",
                    p1, d),
                 0);
    free(a);
    free(b);
    free(c);
    tb_proc_rmdir(d);
}

/* --n 0 is the flow without augmentation: the input file, byte for byte (CRLF-free SST-2 rows with
 * their trailing blanks and the header kept), with no MLM pass. */
Test(augment_cli, n_zero_writes_the_input_unchanged, .timeout = 300)
{
    char d[256];
    tb_proc_tmpdir(d, sizeof d);
    cr_assert_eq(tb_proc_sh(REF " make-model %s/m --vocab " VOCAB " --layers 2 --hidden 32 --heads 2 --inter 64 --seed 3", d),
                 0);
    cr_assert_eq(tb_proc_sh("head -n 301 " TB_SOURCE_DIR "/data/sst2/train.tsv > %s/in.tsv", d), 0);
    cr_assert_eq(tb_proc_sh(AUGMENT " --input %s/in.tsv --output %s/out.tsv --model %s/m --format sst-2 --n 0 --progress none"
                    " --log-level warn",
                    d, d, d),
                 0);
    cr_assert_eq(tb_proc_sh("cmp -s %s/in.tsv %s/out.tsv", d, d), 0, "--n 0 changed the rows");
    tb_proc_rmdir(d);
}

Test(augment_cli, model_without_mlm_head, .timeout = 120)
{
    char d[256], ck[300];
    tb_proc_tmpdir(d, sizeof d);
    tb_bert_config cfg = {0};
    cfg.vocab_size = 30522, cfg.hidden_size = 16, cfg.num_hidden_layers = 1, cfg.num_attention_heads = 2;
    cfg.intermediate_size = 32, cfg.max_position_embeddings = 64, cfg.type_vocab_size = 2;
    cfg.layer_norm_eps = 1e-12f, cfg.initializer_range = 0.02f, cfg.head = TB_HEAD_TINYBERT, cfg.num_labels = 2;
    tb_bert_model m;
    cr_assert_eq(tb_bert_init(&m, &cfg), TB_OK);
    tb_bert_init_random(&m, 1);
    cr_assert_eq(tb_checkpoint_save(d, 0, &cfg, &m.params, NULL, NULL, VOCAB, ck, sizeof ck), TB_OK, "%s",
                 tb_err_msg());
    tb_bert_free(&m);
    cr_assert_eq(tb_proc_sh("printf 'sentence\\tlabel\\ngood film\\t1\\n' > %s/in.tsv", d), 0);
    int code = tb_proc_sh(AUGMENT " --input %s/in.tsv --format sst-2 --output %s/o.tsv --model %s --progress none 2> %s/err",
                  d, d, ck, d);
    cr_assert_eq(code, 1);
    char pe[300], po[300];
    snprintf(pe, sizeof pe, "%s/err", d);
    snprintf(po, sizeof po, "%s/o.tsv", d);
    char *err = slurp(pe);
    cr_assert(strstr(err, "no MLM head") && strstr(err, ck), "%s", err);
    free(err);
    FILE *f = fopen(po, "r");
    cr_assert_null(f, "no output after a failure");
    tb_proc_rmdir(d);
}

/* A random Hugging Face BertForMaskedLM of bert-base shape (12 x 768, 110M parameters + head). */
Test(augment_cli, bert_base_shaped_hf_checkpoint, .timeout = 600)
{
    char d[256];
    tb_proc_tmpdir(d, sizeof d);
    cr_assert_eq(tb_proc_sh(REF " make-model %s/m --vocab " VOCAB " --layers 12 --hidden 768 --heads 12 --inter 3072 --seed 5",
                    d),
                 0);
    cr_assert_eq(tb_proc_sh("printf 'sentence\\tlabel\\na gorgeous , witty , seductive movie . \\t1\\n"
                    "the greatest musicians \\t1\\n' > %s/in.tsv",
                    d),
                 0);
    cr_assert_eq(tb_proc_sh(AUGMENT " --input %s/in.tsv --format sst-2 --output %s/o.tsv --model %s/m --n 5 --p 1 "
                            "--vectors teacher --progress none --log-level warn",
                    d, d, d),
                 0);
    char po[300];
    snprintf(po, sizeof po, "%s/o.tsv", d);
    char *o = slurp(po);
    cr_assert(strncmp(o, "sentence\tlabel\na gorgeous , witty , seductive movie . \t1\n", 56) == 0, "%s", o);
    int lines = 0;
    for (char *p = o; *p; p++) lines += *p == '\n';
    cr_assert_gt(lines, 3 + 2, "p = 1 with 15 candidates: new rows expected\n%s", o);
    free(o);
    cr_assert_eq(tb_proc_sh("rm -rf %s/m", d), 0);
    tb_proc_rmdir(d);
}
