/* Integration tests of text rows as a message stream (docs/protocol.md, "Text rows"):
 * tb-augment --output ipc:// (and file:) -> tb-tokenize --input gives token batches byte-identical
 * to tb-augment -> task file -> tb-tokenize, on 100 SST-2 rows and on 40 MRPC pairs; a message file
 * of text rows written by the Python kit is read by tb-tokenize as the same rows in a file; a
 * malformed text message fails with an error naming it; tb-pipeline --check links the two stages.
 * The MLM model is a random Hugging Face BertForMaskedLM (tests/reference/py/augment_ref.py). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "proc.h"

#define AUGMENT TB_BIN_DIR "/tb-augment"
#define TOKENIZE TB_BIN_DIR "/tb-tokenize"
#define PIPELINE TB_BIN_DIR "/tb-pipeline"
#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"
#define REF TB_PYTHON " " TB_SOURCE_DIR "/tests/reference/py/augment_ref.py"
#define KIT TB_PYTHON " " TB_SOURCE_DIR "/python/tests/text_rows.py"
#define QUIET "--progress none --log-level warn"

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

static void assert_same_file(const char *dir, const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(dir, a, &na), *y = slurp(dir, b, &nb);
    cr_assert_gt(na, 16, "%s is empty", a);
    cr_assert(na == nb && memcmp(x, y, na) == 0, "%s (%zu bytes) and %s (%zu bytes) differ", a, na, b, nb);
    free(x);
    free(y);
}

/* Entries of $TMPDIR (or /tmp) named tb-tokenize-*: tb-tokenize must leave none behind. */
static int tokenize_tmp_dirs(void)
{
    const char *t = getenv("TMPDIR");
    DIR *d = opendir(t && *t ? t : "/tmp");
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, "tb-tokenize-", 12) == 0;
    closedir(d);
    return n;
}

static char g_dir[256];

static void setup(void)
{
    tb_proc_tmpdir(g_dir, sizeof g_dir);
    cr_assert_eq(setenv("TMPDIR", g_dir, 1), 0);
    cr_assert_eq(tb_proc_sh(REF " make-model %s/m --vocab " VOCAB " --layers 2 --hidden 32 --heads 2 --inter 64 --seed 3",
                    g_dir),
                 0);
}

static void teardown(void)
{
    tb_proc_sh("rm -rf %s/m", g_dir);
    tb_proc_rmdir(g_dir);
}

/* The same augmentation three ways: task file, ipc stream, message file; tokenized each time. */
static void three_ways(const char *format, const char *aug_extra, int messages)
{
    const char *d = g_dir;
    char aug[2048], tok[1024], ep[128];
    snprintf(aug, sizeof aug, AUGMENT " --input %s/in.tsv --format %s --model %s/m --seed 5 --chunk 7 %s " QUIET, d,
             format, d, aug_extra);
    snprintf(tok, sizeof tok, TOKENIZE " --format %s --vocab " VOCAB " --batch-size 8 --seed 9 " QUIET, format);
    tb_proc_ipc_endpoint(ep, sizeof ep);

    cr_assert_eq(tb_proc_sh("%s --output %s/aug.tsv", aug, d), 0);
    cr_assert_eq(tb_proc_sh("%s --input %s/aug.tsv --output %s/file.tbm", tok, d, d), 0);
    /* tokenize (consumer) and augment (producer) side by side over ipc */
    cr_assert_eq(tb_proc_sh("(%s --input %s --output %s/ipc.tbm) & t=$!; %s --output %s; a=$?; wait $t; s=$?; "
                    "test $a -eq 0 && test $s -eq 0",
                    tok, ep, d, aug, ep),
                 0, "augment -> %s -> tokenize failed", ep);
    assert_same_file(d, "file.tbm", "ipc.tbm");
    /* a message file of text rows */
    cr_assert_eq(tb_proc_sh("%s --output file:%s/rows.tbm", aug, d), 0);
    cr_assert_eq(tb_proc_sh("%s --input file:%s/rows.tbm --output %s/msgfile.tbm", tok, d, d), 0);
    assert_same_file(d, "file.tbm", "msgfile.tbm");
    /* one text message per chunk of 7 input rows */
    cr_assert_eq(tb_proc_sh(TB_BIN_DIR "/tb-cat --input file:%s/rows.tbm > %s/cat.txt 2>&1", d, d), 0);
    char *cat = slurp(d, "cat.txt", NULL), want[64];
    snprintf(want, sizeof want, "end after %d messages,", messages);
    cr_assert(strstr(cat, want), "expected \"%s\" from tb-cat:\n%s", want, cat);
    free(cat);
    cr_assert_eq(tokenize_tmp_dirs(), 0, "tb-tokenize left its temporary folder behind");
}

Test(augment_stream, sst2_ipc_and_message_file_equal_the_task_file, .init = setup, .fini = teardown, .timeout = 600)
{
    cr_assert_eq(tb_proc_sh("head -n 101 " TB_SOURCE_DIR "/data/sst2/train.tsv > %s/in.tsv", g_dir), 0);
    three_ways("sst-2", "--n 4", 15); /* 100 rows in chunks of 7 */
    /* the stream held as many rows as the file: original + new */
    size_t n;
    char *tsv = slurp(g_dir, "aug.tsv", &n);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += tsv[i] == '\n';
    cr_assert_gt(lines, 101 + 100, "only %d lines: the model made too few new rows to test anything", lines);
    free(tsv);
}

Test(augment_stream, mrpc_pairs_ipc_and_message_file_equal_the_task_file, .init = setup, .fini = teardown,
     .timeout = 600)
{
    /* the header (with its BOM) and 40 pairs; both columns augmented, the reference's row order */
    cr_assert_eq(tb_proc_sh("head -n 41 " TB_SOURCE_DIR "/data/mrpc/train.tsv > %s/in.tsv", g_dir), 0);
    three_ways("mrpc", "--n 3 --pair-quirk", 6); /* 40 rows in chunks of 7 */
}

Test(augment_stream, python_kit_message_file_reads_as_the_rows, .init = setup, .fini = teardown, .timeout = 300)
{
    const char *d = g_dir;
    cr_assert_eq(tb_proc_sh("head -n 201 " TB_SOURCE_DIR "/data/sst2/train.tsv > %s/in.tsv", d), 0);
    cr_assert_eq(tb_proc_sh(KIT " rows %s/py.tbm sst-2 %s/in.tsv 33", d, d), 0);
    const char *tok = TOKENIZE " --format sst-2 --vocab " VOCAB " --batch-size 16 --epochs 2 " QUIET;
    cr_assert_eq(tb_proc_sh("%s --input %s/in.tsv --output %s/file.tbm", tok, d, d), 0);
    cr_assert_eq(tb_proc_sh("%s --input file:%s/py.tbm --output %s/py-out.tbm", tok, d, d), 0);
    assert_same_file(d, "file.tbm", "py-out.tbm");
    /* "simple" has no header: no header field, every line a row */
    cr_assert_eq(tb_proc_sh("printf 'a fine film\\t1\\na dull one\\t0\\nnot bad at all\\t1\\nawful\\t0\\n' > %s/s.txt", d), 0);
    cr_assert_eq(tb_proc_sh(KIT " rows %s/s.tbm simple %s/s.txt 3 --no-header", d, d), 0);
    const char *toks = TOKENIZE " --format simple --vocab " VOCAB " --batch-size 2 " QUIET;
    cr_assert_eq(tb_proc_sh("%s --input %s/s.txt --output %s/s1.tbm", toks, d, d), 0);
    cr_assert_eq(tb_proc_sh("%s --input file:%s/s.tbm --output %s/s2.tbm", toks, d, d), 0);
    assert_same_file(d, "s1.tbm", "s2.tbm");
    cr_assert_eq(tokenize_tmp_dirs(), 0, "tb-tokenize left its temporary folder behind");
}

static void expect_error(const char *kind, const char *what)
{
    const char *d = g_dir;
    cr_assert_eq(tb_proc_sh(KIT " bad %s/bad.tbm %s", d, kind), 0);
    int code = tb_proc_sh(TOKENIZE " --input file:%s/bad.tbm --format sst-2 --vocab " VOCAB " --output %s/o.tbm " QUIET
                           " 2> %s/err",
                  d, d, d);
    cr_assert_eq(code, 1, "%s: exit code %d", kind, code);
    char *err = slurp(d, "err", NULL);
    char want[512];
    snprintf(want, sizeof want, "file:%s/bad.tbm: text message 0: %s", d, what);
    cr_assert(strstr(err, want), "%s: expected \"%s\" in:\n%s", kind, want, err);
    free(err);
    char po[300];
    snprintf(po, sizeof po, "%s/o.tbm", d);
    cr_assert_null(fopen(po, "rb"), "%s: no output after a failure", kind);
    cr_assert_eq(tokenize_tmp_dirs(), 0, "%s: tb-tokenize left its temporary folder behind", kind);
}

Test(augment_stream, malformed_text_messages_are_named, .init = setup, .fini = teardown, .timeout = 120)
{
    expect_error("no-rows", "field 'rows' is missing");
    expect_error("rows-int", "field 'rows' must be a str");
    expect_error("no-newline", "'rows' must end with a newline");
    /* a format other than --format */
    cr_assert_eq(tb_proc_sh("printf 'sentence\\tlabel\\ngood\\t1\\n' > %s/in.tsv && " KIT " rows %s/cola.tbm sst-2 %s/in.tsv 1",
                    g_dir, g_dir, g_dir),
                 0);
    int code = tb_proc_sh(TOKENIZE " --input file:%s/cola.tbm --format cola --vocab " VOCAB " --output %s/o.tbm " QUIET
                           " 2> %s/err",
                  g_dir, g_dir, g_dir);
    cr_assert_eq(code, 1);
    char *err = slurp(g_dir, "err", NULL);
    cr_assert(strstr(err, "text message 0: format 'sst-2', but --format is cola"), "%s", err);
    free(err);
}

Test(augment_stream, pipeline_check_links_augment_to_tokenize, .init = setup, .fini = teardown, .timeout = 120)
{
    const char *d = g_dir;
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    cr_assert_eq(tb_proc_sh("printf '[aug]\\nrun = " AUGMENT " --input %s/in.tsv --format sst-2 --model %s/m --output %s\\n"
                    "[tok]\\nrun = " TOKENIZE " --input %s --format sst-2 --vocab " VOCAB " --output %s/o.tbm\\n' "
                    "> %s/p.pipe",
                    d, d, ep, ep, d, d),
                 0);
    int code = tb_proc_sh(PIPELINE " --check %s/p.pipe > %s/out 2>&1", d, d);
    char *out = slurp(d, "out", NULL);
    cr_assert_eq(code, 0, "%s", out);
    cr_assert(strstr(out, "ok   [aug] ") && strstr(out, "ok   [tok] "), "%s", out);
    free(out);
    /* the ports declare the text message and its fields */
    cr_assert_eq(tb_proc_sh(AUGMENT " --describe > %s/da.json && " TOKENIZE " --describe > %s/dt.json", d, d), 0);
    cr_assert_eq(tb_proc_sh(TB_PYTHON " -c 'import json, sys; a = json.load(open(sys.argv[1])); t = json.load(open(sys.argv[2]));"
                    " o = [p for p in a[\"outputs\"] if p[\"option\"] == \"output\"][0];"
                    " i = [p for p in t[\"inputs\"] if p[\"option\"] == \"input\"][0];"
                    " assert o[\"message\"] == i[\"message\"] == \"text\", (o, i);"
                    " assert [f[\"name\"] for f in o[\"fields\"]] == [\"format\", \"header\", \"rows\"], o;"
                    " assert [f[\"name\"] for f in i[\"fields\"]] == [\"format\", \"rows\"], i' %s/da.json %s/dt.json",
                    d, d),
                 0);
}

/* A bad row half-way: the message file does not appear (nor its temporary), and a consumer on
 * ipc fails with the producer's reason and writes nothing. */
Test(augment_stream, failed_augment_leaves_no_output, .init = setup, .fini = teardown, .timeout = 300)
{
    const char *d = g_dir;
    char ep[128];
    tb_proc_ipc_endpoint(ep, sizeof ep);
    cr_assert_eq(tb_proc_sh("(head -n 30 " TB_SOURCE_DIR "/data/sst2/train.tsv; printf 'no label here\\n') > %s/in.tsv", d), 0);
    char aug[1024];
    snprintf(aug, sizeof aug, AUGMENT " --input %s/in.tsv --format sst-2 --model %s/m --n 2 --chunk 7 " QUIET, d, d);
    cr_assert_eq(tb_proc_sh("%s --output file:%s/rows.tbm 2> %s/err", aug, d, d), 1);
    cr_assert_eq(tb_proc_sh("test -z \"$(ls %s | grep rows.tbm)\"", d), 0, "a message file (or its temporary) after a failure");
    cr_assert_eq(tb_proc_sh("(" TOKENIZE " --input %s --format sst-2 --vocab " VOCAB " --output %s/o.tbm " QUIET
                    " 2> %s/terr) & t=$!; %s --output %s 2> /dev/null; wait $t",
                    ep, d, d, aug, ep),
                 1);
    char *err = slurp(d, "terr", NULL);
    cr_assert(strstr(err, "in.tsv:31:"), "the consumer does not report the producer's reason:\n%s", err);
    free(err);
    cr_assert_eq(tb_proc_sh("test ! -e %s/o.tbm", d), 0, "tb-tokenize wrote batches after a failed stream");
    cr_assert_eq(tokenize_tmp_dirs(), 0, "tb-tokenize left its temporary folder behind");
}
