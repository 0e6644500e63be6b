/* scripts/export-hf against Debian's python3-torch: the exported folder holds exactly the tensors
 * of BertForSequenceClassification (tbref.param_names of a model with a head and nothing else; a
 * student's fit_dense and the MLM head are left out), Hugging Face config keys with the task's
 * label names, and logits - computed by the float64 torch BERT of tests/reference/py/tbref.py
 * from the exported files alone (predict_ref.py) - equal to tb-predict's on the original
 * checkpoint. A model with the reference's relu head is refused as no Hugging Face class. */
#include "ckpt.h"
#include "proc.h"
#include "repodata.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PREDICT TB_BIN_DIR "/tb-predict"
#define EXPORT TB_SOURCE_DIR "/scripts/export-hf"
#define PY TB_SOURCE_DIR "/tests/reference/py"

static char dir[256];

static void setup(void) { cr_assert_not_null(tb_proc_tmpdir(dir, sizeof dir)); }

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(export_hf, .init = setup, .fini = teardown, .timeout = 300);

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[4][1 << 16];
    static int slot;
    char *b = buf[slot++ % 4];
    size_t n = fread(b, 1, sizeof buf[0] - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

Test(export_hf, hf_head_student_exports_to_bert_for_sequence_classification)
{
    char sub[600], model[600];
    snprintf(sub, sizeof sub, "%s/student", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 3, .mlm_head = 1, .fit_size = 48, .seed = 11},
                       model, sizeof model);
    /* the training folder (its `latest` link) is accepted as the checkpoint */
    cr_assert_eq(tb_proc_sh("%s %s %s/hf --task mnli 2> %s/export.err", EXPORT, sub, dir, dir), 0, "%s",
                 slurp(strcat(strcpy(sub, dir), "/export.err")));
    char err[600];
    snprintf(err, sizeof err, "%s/export.err", dir);
    const char *e = slurp(err);
    cr_expect(strstr(e, "fit_dense.weight") && strstr(e, "cls.predictions.bias"), "dropped tensors not listed: %s", e);

    /* tensor names: exactly BertForSequenceClassification's (bytes unchanged: see the logits) */
    cr_assert_eq(tb_proc_sh("%s -c \"import json, sys; sys.path.insert(0, '%s'); import tbref; "
                    "c = json.load(open('%s/hf/config.json')); c['head'] = 'hf'; "
                    "t, m = tbref.read_safetensors('%s/hf/model.safetensors'); "
                    "want = set(tbref.param_names(c)); got = set(t); "
                    "print('missing', sorted(want - got), 'extra', sorted(got - want)); "
                    "assert want == got and m == {'format': 'pt'}; "
                    "assert c['architectures'] == ['BertForSequenceClassification'] and c['model_type'] == 'bert'; "
                    "assert c['id2label'] == {'0': 'contradiction', '1': 'entailment', '2': 'neutral'}; "
                    "assert c['label2id']['neutral'] == 2 and c['num_labels'] == 3; "
                    "assert not [k for k in c if k.startswith('tinybert') or k == 'fit_size']; "
                    "tc = json.load(open('%s/hf/tokenizer_config.json')); "
                    "assert tc['tokenizer_class'] == 'BertTokenizer' and tc['do_lower_case'] is True\"",
                    TB_PYTHON, PY, dir, dir, dir),
                 0);
    cr_expect_eq(tb_proc_sh("cmp -s %s/vocab.txt %s/hf/vocab.txt", model, dir), 0, "vocab.txt not copied byte for byte");

    /* logits: torch on the exported files vs tb-predict on the original checkpoint */
    cr_assert_eq(tb_proc_sh("tail -n +2 %s | cut -f4,5 > %s/pairs.txt", tb_test_data("mrpc/test.tsv"), dir), 0);
    cr_assert_eq(tb_proc_sh("%s --model %s --logits --log-level warn < %s/pairs.txt > %s/logits.txt", PREDICT, model, dir, dir),
                 0);
    cr_assert_eq(tb_proc_sh("%s %s/predict_ref.py %s/hf %s/pairs.txt %s/logits.txt 128 1e-4", TB_PYTHON, PY, dir, dir, dir), 0,
                 "logits of the exported model differ from tb-predict's");
    /* and tb-predict reads the exported folder back (a foreign config.json) to the same output */
    cr_assert_eq(tb_proc_sh("%s --model %s/hf --logits --log-level error < %s/pairs.txt > %s/logits-hf.txt", PREDICT, dir, dir,
                    dir),
                 0);
    cr_expect_eq(tb_proc_sh("cmp -s %s/logits.txt %s/logits-hf.txt", dir, dir), 0, "tb-predict on the export differs");
}

Test(export_hf, relu_head_is_refused_as_no_hugging_face_class)
{
    char sub[600], model[600], err[600];
    snprintf(sub, sizeof sub, "%s/relu", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_TINYBERT, .num_labels = 2, .seed = 12}, model, sizeof model);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    cr_assert_eq(tb_proc_sh("%s %s %s/out 2> %s", EXPORT, model, dir, err), 1);
    const char *e = slurp(err);
    cr_expect(strstr(e, "not a Hugging Face class") && strstr(e, "\"relu\""), "%s", e);
    char out[600];
    snprintf(out, sizeof out, "%s/out", dir);
    cr_expect_neq(access(out, F_OK), 0, "an output folder was made for a refused model");
}

Test(export_hf, an_existing_output_is_replaced_only_with_force)
{
    char sub[600], model[600], err[600];
    snprintf(sub, sizeof sub, "%s/m", dir);
    tb_test_write_ckpt(sub, &(tb_test_ckpt){.head = TB_HEAD_HF, .num_labels = 2, .seed = 13}, model, sizeof model);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    cr_assert_eq(tb_proc_sh("mkdir %s/out && echo keep > %s/out/mine", dir, dir), 0);
    cr_assert_eq(tb_proc_sh("%s %s %s/out 2> %s", EXPORT, model, dir, err), 1);
    cr_expect(strstr(slurp(err), "exists: give --force"), "%s", slurp(err));
    cr_expect_eq(tb_proc_sh("test -f %s/out/mine", dir), 0);
    cr_assert_eq(tb_proc_sh("%s %s %s/out --force --labels neg,pos 2> %s", EXPORT, model, dir, err), 0, "%s", slurp(err));
    cr_expect_neq(tb_proc_sh("test -f %s/out/mine", dir), 0);
    cr_expect(strstr(slurp(strcat(strcpy(err, dir), "/out/config.json")), "\"pos\""));
    cr_expect_eq(tb_proc_sh("ls -d %s/out.* 2>/dev/null | grep -q .", dir), 1, "temporary folders left behind");
}
