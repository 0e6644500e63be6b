/* Unit tests of the readers (the real GLUE subsets, WikiText-2 and en_data.txt shipped in data/,
 * checked against the counts documented in data/README.md and against a Python parse; crafted bad
 * files) and of encoding and addressable batches. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/text/dataset.h"
#include "tb/base/error.h"
#include "tb/base/rng.h"

#include "repodata.h"

#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/tb-ds-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(readers, .init = make_tmpdir, .fini = remove_tmpdir);
TestSuite(batches, .init = make_tmpdir, .fini = remove_tmpdir);

static const char *write_file(const char *name, const char *content)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fputs(content, f);
    fclose(f);
    return path;
}

static void count_labels(const tb_dataset *ds, int64_t *c0, int64_t *c1)
{
    *c0 = *c1 = 0;
    for (int64_t i = 0; i < ds->count; i++) {
        if (ds->ex[i].label == 0) (*c0)++;
        if (ds->ex[i].label == 1) (*c1)++;
    }
}

/* Python's own parse of a TSV: prints rows, label counts and the first row's columns. */
static void python_tsv_summary(const char *path, int header, int col_a, int col_label, char *out, size_t n)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s -c \"import sys; rows=open('%s',encoding='utf-8-sig').read().split('\\n'); "
             "rows=[r.rstrip('\\r').split('\\t') for r in rows if r][%d:]; "
             "print(len(rows), sum(r[%d]=='0' for r in rows), sum(r[%d]=='1' for r in rows), len(rows[0][%d]), "
             "len(rows[-1][%d]))\"",
             TB_PYTHON, path, header, col_label, col_label, col_a, col_a);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    cr_assert(fgets(out, (int)n, p));
    cr_assert_eq(pclose(p), 0);
}

static void check_against_python(const tb_dataset *ds, const char *path, int header, int col_a, int col_label)
{
    char py[256], mine[256];
    python_tsv_summary(path, header, col_a, col_label, py, sizeof py);
    int64_t c0, c1;
    count_labels(ds, &c0, &c1);
    /* Python counts characters, we count bytes: compare via a Python-free char count. */
    size_t ch_first = 0, ch_last = 0;
    for (const char *s = ds->ex[0].text_a; *s; s++) ch_first += ((unsigned char)*s & 0xC0) != 0x80;
    for (const char *s = ds->ex[ds->count - 1].text_a; *s; s++) ch_last += ((unsigned char)*s & 0xC0) != 0x80;
    snprintf(mine, sizeof mine, "%lld %lld %lld %zu %zu\n", (long long)ds->count, (long long)c0, (long long)c1,
             ch_first, ch_last);
    cr_expect_str_eq(mine, py, "%s: tb [%s] python [%s]", path, mine, py);
}

/* data/sst2/train.tsv: the header and first 8,000 rows of SST-2 train (4,438 x 1, 3,562 x 0). */
Test(readers, sst2_train_and_dev)
{
    const char *p = tb_test_data("sst2/train.tsv");
    tb_dataset ds;
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_SST2, p, NULL), TB_OK, "%s", tb_err_msg());
    int64_t c0, c1;
    count_labels(&ds, &c0, &c1);
    cr_expect_eq(ds.count, 8000);
    cr_expect_eq(c1, 4438);
    cr_expect_eq(c0, 3562);
    cr_expect_str_eq(ds.ex[0].text_a, "hide new secretions from the parental units ");
    cr_expect_eq(ds.ex[0].label, 0);
    cr_expect_null(ds.ex[0].text_b);
    cr_expect_eq(ds.ex[0].line, 2);
    cr_expect_eq(ds.n_labels, 2);
    check_against_python(&ds, p, 1, 0, 1);
    tb_dataset_free(&ds);
    p = tb_test_data("sst2/dev.tsv");
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_SST2, p, NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.count, 872);
    check_against_python(&ds, p, 1, 0, 1);
    tb_dataset_free(&ds);
}

/* data/cola/train.tsv: the first 4,000 rows of CoLA train (2,695 x 1, 1,305 x 0); dev whole. */
Test(readers, cola_no_header)
{
    const char *p = tb_test_data("cola/train.tsv");
    tb_dataset ds;
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_COLA, p, NULL), TB_OK, "%s", tb_err_msg());
    int64_t c0, c1;
    count_labels(&ds, &c0, &c1);
    cr_expect_eq(ds.count, 4000);
    cr_expect_eq(c1, 2695);
    cr_expect_eq(c0, 1305);
    cr_expect_eq(ds.ex[0].line, 1, "CoLA has no header: the first example is line 1");
    check_against_python(&ds, p, 0, 3, 1);
    tb_dataset_free(&ds);
    /* dev: last line without a newline */
    p = tb_test_data("cola/dev.tsv");
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_COLA, p, NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.count, 1043);
    check_against_python(&ds, p, 0, 3, 1);
    tb_dataset_free(&ds);
}

/* data/mrpc/train.tsv: the BOM, header and first 2,000 rows of MRPC train (1,326 x 1, 674 x 0);
 * dev whole (408 rows, also with a BOM). */
Test(readers, mrpc_with_bom)
{
    const char *p = tb_test_data("mrpc/train.tsv");
    tb_dataset ds;
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_MRPC, p, NULL), TB_OK, "%s", tb_err_msg());
    int64_t c0, c1;
    count_labels(&ds, &c0, &c1);
    cr_expect_eq(ds.count, 2000);
    cr_expect_eq(c1, 1326);
    cr_expect_eq(c0, 674);
    cr_expect_not_null(ds.ex[0].text_b);
    check_against_python(&ds, p, 1, 3, 0);
    tb_dataset_free(&ds);
    p = tb_test_data("mrpc/dev.tsv");
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_MRPC, p, NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.count, 408);
    check_against_python(&ds, p, 1, 3, 0);
    tb_dataset_free(&ds);
}

/* Hand-made files in each task's layout: columns, label order, header. */
Test(readers, crafted_tasks_columns_and_labels)
{
    struct {
        tb_task task;
        const char *content;
        const char *a, *b;
        int32_t label;
        float target;
    } cases[] = {
        {TB_TASK_STSB, "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                       "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\tAn air plane.\t4.750\n",
         "A plane.", "An air plane.", -1, 4.75f},
        {TB_TASK_QQP, "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tHow?\tWhy?\t1\n", "How?", "Why?", 1, 0},
        {TB_TASK_MNLI, "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
                       "0\t1\t2\tgov\tx\tx\tx\tx\tPremise.\tHypothesis.\tneutral\tneutral\n",
         "Premise.", "Hypothesis.", 2, 0},
        {TB_TASK_MNLI_MM, "h\th\th\th\th\th\th\th\th\th\th\th\n0\t1\t2\tg\tx\tx\tx\tx\tP.\tH.\tx\tcontradiction\n",
         "P.", "H.", 0, 0},
        {TB_TASK_QNLI, "index\tquestion\tsentence\tlabel\n0\tWho?\tHe did.\tnot_entailment\n", "Who?", "He did.", 1, 0},
        {TB_TASK_RTE, "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n", "A.", "B.", 0, 0},
        {TB_TASK_WNLI, "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n", "A.", "B.", 1, 0},
        {TB_TASK_SST2, "sentence\tlabel\r\nit 's fine \t1\r\n", "it 's fine ", NULL, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = write_file("task.tsv", cases[i].content);
        tb_dataset ds;
        cr_assert_eq(tb_dataset_read_glue(&ds, cases[i].task, p, NULL), TB_OK, "case %zu: %s", i, tb_err_msg());
        cr_assert_eq(ds.count, 1, "case %zu", i);
        cr_expect_str_eq(ds.ex[0].text_a, cases[i].a, "case %zu", i);
        if (cases[i].b) cr_expect_str_eq(ds.ex[0].text_b, cases[i].b, "case %zu", i);
        else cr_expect_null(ds.ex[0].text_b);
        cr_expect_eq(ds.ex[0].label, cases[i].label, "case %zu", i);
        cr_expect_eq(ds.ex[0].target, cases[i].target, "case %zu", i);
        cr_expect_eq(ds.ex[0].line, 2);
        tb_dataset_free(&ds);
    }
}

static void expect_bad(tb_task task, const char *content, const char *want1, const char *want2)
{
    const char *p = write_file("bad.tsv", content);
    char path[256];
    snprintf(path, sizeof path, "%s", p);
    tb_dataset ds;
    int rc = task == TB_TASK_SIMPLE ? tb_dataset_read_simple(&ds, path, NULL) : tb_dataset_read_glue(&ds, task, path, NULL);
    cr_expect_eq(rc, TB_EFORMAT, "[%s] accepted", content);
    cr_expect(strstr(tb_err_msg(), want1), "message [%s] lacks [%s]", tb_err_msg(), want1);
    if (want2) cr_expect(strstr(tb_err_msg(), want2), "message [%s] lacks [%s]", tb_err_msg(), want2);
    /* lenient: skipped and counted */
    tb_read_opts o = {.lenient = 1};
    rc = task == TB_TASK_SIMPLE ? tb_dataset_read_simple(&ds, path, &o) : tb_dataset_read_glue(&ds, task, path, &o);
    cr_expect_eq(rc, TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.skipped, 1);
    cr_expect_eq(ds.count, 1);
    tb_dataset_free(&ds);
}

Test(readers, malformed_rows_name_file_and_line)
{
    expect_bad(TB_TASK_COLA, "src\t1\t\tGood.\nsrc\t0\tBad row.\n", "bad.tsv:2:", "3 tab-separated fields");
    expect_bad(TB_TASK_SST2, "sentence\tlabel\ngood\t1\nbad\t2\n", "bad.tsv:3:", "unknown sst-2 label '2'");
    expect_bad(TB_TASK_STSB, "h\th\th\th\th\th\th\th\th\th\n0\tg\tf\ty\to\tn\tn\tA\tB\t4.0\n0\tg\tf\ty\to\tn\tn\tA\tB\tfour\n",
               "bad.tsv:3:", "not a finite number");
    expect_bad(TB_TASK_RTE, "h\th\th\th\n0\tA\tB\tentailment\n0\tA\tB\tneutral\n", "bad.tsv:3:", "'not_entailment'");
    expect_bad(TB_TASK_SST2, "sentence\tlabel\nbad \xff\t1\ngood\t0\n", "bad.tsv:2:", "invalid UTF-8 at byte 4");
    expect_bad(TB_TASK_SIMPLE, "text\t1\nfragment\tx\n", "bad.tsv:2:", "not an integer");
    expect_bad(TB_TASK_SIMPLE, "no tab here\ntext\t1\n", "bad.tsv:1:", "no tab");
}

Test(readers, missing_file_is_a_clear_error)
{
    tb_dataset ds;
    cr_expect_eq(tb_dataset_read_glue(&ds, TB_TASK_SST2, "/nonexistent/train.tsv", NULL), TB_EIO);
    cr_expect(strstr(tb_err_msg(), "/nonexistent/train.tsv"));
    cr_expect_eq(tb_dataset_read_glue(&ds, TB_TASK_SIMPLE, "/nonexistent", NULL), TB_EINVAL);
}

/* text<TAB>label. The seed project's Chinese dialogue files are not shipped (they carry no licence,
 * see data/NOTICE.md); their quirk is rebuilt here: a text with a line break, whose second part
 * starts with a tab and has no label, is an error, or a skipped row when lenient. The real-data
 * check reads the SST-2 rows in this format and compares with Python. */
Test(readers, simple_format_strict_and_lenient)
{
    const char *p = write_file("seed.txt", "旁白：门开了。||甲：谁？\t1\n乙：是我。\t0\n\t丙：不是||旁白：他走了\n"
                                           "甲：好。\t1\n\t又一段||旁白：完\n丁：嗯。\t0\n");
    tb_dataset ds;
    cr_expect_eq(tb_dataset_read_simple(&ds, p, NULL), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "seed.txt:3:"), "%s", tb_err_msg());
    cr_expect(strstr(tb_err_msg(), "not an integer"), "%s", tb_err_msg());
    tb_read_opts o = {.lenient = 1};
    cr_assert_eq(tb_dataset_read_simple(&ds, p, &o), TB_OK, "%s", tb_err_msg());
    int64_t c0, c1;
    count_labels(&ds, &c0, &c1);
    cr_expect_eq(ds.count, 4);
    cr_expect_eq(ds.skipped, 2);
    cr_expect_eq(ds.skipped_first_line, 3);
    cr_expect_eq(c1, 2);
    cr_expect_eq(c0, 2);
    cr_expect_eq(ds.n_labels, 2);
    cr_expect_str_eq(ds.ex[0].text_a, "旁白：门开了。||甲：谁？");
    cr_expect_null(ds.ex[0].text_b);
    cr_expect_eq(ds.ex[3].line, 6);
    tb_dataset_free(&ds);
    /* real rows: SST-2 train without its header is text<TAB>label */
    char cmd[1024], rows[256];
    snprintf(rows, sizeof rows, "%s/sst2-simple.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "tail -n +2 '%s' > '%s'", tb_test_data("sst2/train.tsv"), rows);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    cr_assert_eq(tb_dataset_read_simple(&ds, rows, NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.count, 8000);
    check_against_python(&ds, rows, 0, 0, 1);
    tb_dataset_free(&ds);
    /* three fields: text_a, text_b, label */
    p = write_file("pair.txt", "first\tsecond\t3\n\nonly\t0\n");
    cr_assert_eq(tb_dataset_read_simple(&ds, p, NULL), TB_OK);
    cr_assert_eq(ds.count, 2);
    cr_expect_str_eq(ds.ex[0].text_b, "second");
    cr_expect_eq(ds.ex[0].label, 3);
    cr_expect_eq(ds.ex[1].line, 3);
    cr_expect_eq(ds.n_labels, 4);
    tb_dataset_free(&ds);
}

/* Issue 15, item 7: a label above the simple format's largest class id (255) is a bad row naming
 * file:line and the label, not a failure later ("label order does not fit in 1024 bytes"). The
 * largest allowed label gives 256 classes whose label order "0,1,...,255" (913 bytes, counted by
 * hand: 10 x 1 + 90 x 2 + 156 x 3 digits and 255 commas) fits a batch. */
Test(readers, simple_label_above_the_largest_class_names_file_and_line)
{
    const char *p = write_file("big.txt", "a\t1\nb\t0\n\nc\t300\n");
    tb_dataset ds;
    cr_expect_eq(tb_dataset_read_simple(&ds, p, NULL), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "big.txt:4:") && strstr(tb_err_msg(), "label 300") &&
                  strstr(tb_err_msg(), "255"),
              "%s", tb_err_msg());
    p = write_file("huge.txt", "a\t1\nc\t99999999999999999999\n");
    cr_expect_eq(tb_dataset_read_simple(&ds, p, NULL), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "huge.txt:2:") && strstr(tb_err_msg(), "above 255"), "%s", tb_err_msg());
    tb_read_opts o = {.lenient = 1};
    p = write_file("big.txt", "a\t1\nb\t0\n\nc\t300\n");
    cr_assert_eq(tb_dataset_read_simple(&ds, p, &o), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.skipped, 1);
    cr_expect_eq(ds.skipped_first_line, 4);
    cr_expect_eq(ds.n_labels, 2);
    tb_dataset_free(&ds);
    p = write_file("max.txt", "a\t255\nb\t0\n");
    cr_assert_eq(tb_dataset_read_simple(&ds, p, NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.n_labels, 256);
    char order[1024];
    cr_assert_eq(tb_dataset_label_order(&ds, order, sizeof order), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(strlen(order), 913u);
    cr_expect(strncmp(order, "0,1,2,", 6) == 0 && strcmp(order + strlen(order) - 8, ",254,255") == 0, "%s", order);
    char small[64];
    cr_expect_eq(tb_dataset_label_order(&ds, small, sizeof small), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "max.txt") && strstr(tb_err_msg(), "256 classes"), "%s", tb_err_msg());
    tb_dataset_free(&ds);
}

Test(readers, plain_corpus_documents)
{
    const char *p = write_file("c.txt", "First sentence.\r\n  Second one.  \n\n\nDoc two.\n \nDoc three\n");
    tb_dataset ds;
    cr_assert_eq(tb_dataset_read_corpus(&ds, p, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(ds.count, 4);
    cr_expect_str_eq(ds.ex[0].text_a, "First sentence.");
    cr_expect_str_eq(ds.ex[1].text_a, "Second one.");
    const int64_t docs[] = {0, 0, 1, 2};
    for (int i = 0; i < 4; i++) cr_expect_eq(ds.ex[i].doc, docs[i], "example %d", i);
    cr_expect_eq(ds.documents, 3);
    cr_expect_eq(ds.ex[2].line, 5);
    tb_dataset_free(&ds);
    /* first_field: text<TAB>label read as a corpus, as general_distill.py does */
    p = write_file("tl.txt", "some text\t1\nmore text\t0\textra\n");
    tb_read_opts ff = {.first_field = 1};
    cr_assert_eq(tb_dataset_read_corpus(&ds, p, &ff), TB_OK);
    cr_assert_eq(ds.count, 2);
    cr_expect_str_eq(ds.ex[0].text_a, "some text");
    cr_expect_str_eq(ds.ex[1].text_a, "more text");
    tb_dataset_free(&ds);
    /* en_data.txt: CRLF, blank " " lines */
    p = tb_test_data("corpus/en_data.txt");
    cr_assert_eq(tb_dataset_read_corpus(&ds, p, NULL), TB_OK, "%s", tb_err_msg());
    for (int64_t i = 0; i < ds.count; i++) {
        size_t n = strlen(ds.ex[i].text_a);
        cr_assert(n > 0 && ds.ex[i].text_a[n - 1] != '\r' && ds.ex[i].text_a[0] != ' ');
    }
    tb_dataset_free(&ds);
}

Test(readers, wikitext_headings_and_separators)
{
    const char *p = write_file("w.txt", " \n = Alpha = \n \n = = History = = \n \n The 1 @,@ 000 <unk> in A @-@ B , 2 @.@ 5 . \n"
                                        " \n = Beta = \n \n Text two . <unk> @-@ based \n");
    tb_dataset ds;
    tb_read_opts o = {.wikitext = 1};
    cr_assert_eq(tb_dataset_read_corpus(&ds, p, &o), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(ds.count, 2);
    cr_expect_str_eq(ds.ex[0].text_a, "The 1,000 <unk> in A-B , 2.5 .");
    cr_expect_str_eq(ds.ex[1].text_a, "Text two . <unk> - based");
    cr_expect_eq(ds.ex[0].doc, 0);
    cr_expect_eq(ds.ex[1].doc, 1);
    cr_expect_eq(ds.documents, 2);
    tb_dataset_free(&ds);
    /* the real file: documents = top-level headings (counted by Python), no heading or @x@ left */
    p = tb_test_data("corpus/wikitext-2.valid.txt");
    cr_assert_eq(tb_dataset_read_corpus(&ds, p, &o), TB_OK, "%s", tb_err_msg());
    char cmd[512], buf[64];
    snprintf(cmd, sizeof cmd,
             "%s -c \"import re; L=[l.strip() for l in open('%s', encoding='utf-8')]; "
             "print(sum(1 for l in L if re.fullmatch(r'= [^=].*[^=] =', l)), "
             "sum(1 for l in L if l and not l.startswith('=')))\"",
             TB_PYTHON, p);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    cr_assert(fgets(buf, sizeof buf, f));
    pclose(f);
    long want_docs, want_lines;
    cr_assert_eq(sscanf(buf, "%ld %ld", &want_docs, &want_lines), 2);
    cr_expect_eq(ds.documents, want_docs);
    cr_expect_eq(ds.count, want_lines);
    for (int64_t i = 0; i < ds.count; i++) {
        cr_assert_neq(ds.ex[i].text_a[0], '=', "line %lld", (long long)ds.ex[i].line);
        cr_assert_null(strstr(ds.ex[i].text_a, " @-@ "));
    }
    tb_dataset_free(&ds);
}

/* ---- encoding and batches -------------------------------------------------------------------- */

static void load_small(tb_dataset *ds, tb_tokenizer *t, tb_encoded *e, int max_len)
{
    const char *p = write_file("small.txt",
                               "the cat sat\t0\nhello world\t1\na much longer sentence that will be cut short\t1\n"
                               "one\ttwo\t0\nx\t1\ny\t0\nz\t1\n");
    cr_assert_eq(tb_dataset_read_simple(ds, p, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_tokenizer_init(t, VOCAB, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_encoded_build(e, ds, t, max_len), TB_OK, "%s", tb_err_msg());
}

Test(batches, rows_match_direct_encoding)
{
    tb_dataset ds;
    tb_tokenizer t;
    tb_encoded e;
    load_small(&ds, &t, &e, 8);
    cr_expect_eq(e.count, 7);
    cr_expect_eq(e.truncated, 1);
    tb_batch_opts o = {.batch_size = 3, .seed = 42, .shuffle = 1};
    tb_batcher b;
    cr_assert_eq(tb_batcher_init(&b, &e, &o), TB_OK);
    cr_expect_eq(tb_batcher_count(&b), 3);
    tb_batch batch = {0};
    tb_encoding enc;
    tb_encoding_init(&enc);
    int seen[7] = {0};
    for (int64_t bi = 0; bi < 3; bi++) {
        cr_assert_eq(tb_batcher_get(&b, 5, bi, &batch), TB_OK, "%s", tb_err_msg());
        int64_t rows = batch.input_ids.shape[0];
        cr_expect_eq(rows, bi < 2 ? 3 : 1);
        cr_expect_eq(batch.input_ids.shape[1], 8);
        cr_expect_eq(batch.input_ids.dtype, TB_I32);
        cr_expect_eq(batch.labels.dtype, TB_I32);
        cr_expect_eq(batch.example_ids.dtype, TB_I64);
        for (int64_t r = 0; r < rows; r++) {
            int64_t ex = ((int64_t *)batch.example_ids.data)[r];
            seen[ex]++;
            const tb_example *x = &ds.ex[ex];
            cr_assert_eq(tb_tokenizer_encode(&t, x->text_a, strlen(x->text_a), x->text_b,
                                             x->text_b ? strlen(x->text_b) : 0, 8, &enc), TB_OK);
            int32_t ids[8], tt[8], m[8];
            cr_assert_eq(tb_encoding_pad(&enc, 0, 8, ids, tt, m), TB_OK);
            for (int c = 0; c < 8; c++) {
                cr_expect_eq(((int32_t *)batch.input_ids.data)[r * 8 + c], ids[c]);
                cr_expect_eq(((int32_t *)batch.token_type_ids.data)[r * 8 + c], tt[c]);
                cr_expect_eq(((int32_t *)batch.attention_mask.data)[r * 8 + c], m[c]);
            }
            cr_expect_eq(((int32_t *)batch.labels.data)[r], x->label);
        }
    }
    for (int i = 0; i < 7; i++) cr_expect_eq(seen[i], 1, "example %d seen %d times in one epoch", i, seen[i]);
    /* hand check of one row: "hello world" -> [CLS] hello world [SEP] pad... (ids 101 7592 2088 102) */
    tb_batch_opts o2 = {.batch_size = 7, .shuffle = 0};
    tb_batcher b2;
    cr_assert_eq(tb_batcher_init(&b2, &e, &o2), TB_OK);
    cr_assert_eq(tb_batcher_get(&b2, 0, 0, &batch), TB_OK);
    const int32_t want[8] = {101, 7592, 2088, 102, 0, 0, 0, 0};
    for (int c = 0; c < 8; c++) cr_expect_eq(((int32_t *)batch.input_ids.data)[8 + c], want[c]);
    /* pair row "one" / "two": [CLS] one [SEP] two [SEP], types 0 0 0 1 1 */
    const int32_t want_p[5] = {101, 2028, 102, 2048, 102}, want_t[5] = {0, 0, 0, 1, 1};
    for (int c = 0; c < 5; c++) {
        cr_expect_eq(((int32_t *)batch.input_ids.data)[3 * 8 + c], want_p[c]);
        cr_expect_eq(((int32_t *)batch.token_type_ids.data)[3 * 8 + c], want_t[c]);
    }
    tb_batch_free(&batch);
    tb_batcher_free(&b2);
    tb_encoding_free(&enc);
    tb_batcher_free(&b);
    tb_encoded_free(&e);
    tb_tokenizer_free(&t);
    tb_dataset_free(&ds);
}

Test(batches, addressable_and_documented_shuffle)
{
    tb_dataset ds;
    tb_tokenizer t;
    tb_encoded e;
    load_small(&ds, &t, &e, 16);
    tb_batch_opts o = {.batch_size = 2, .seed = 7, .shuffle = 1, .drop_last = 1};
    tb_batcher b1, b2;
    cr_assert_eq(tb_batcher_init(&b1, &e, &o), TB_OK);
    cr_assert_eq(tb_batcher_init(&b2, &e, &o), TB_OK);
    cr_expect_eq(tb_batcher_count(&b1), 3, "7 examples, batch 2, drop_last: 3 batches");
    /* Independent re-implementation of the documented Fisher-Yates over Philox. */
    for (uint64_t epoch = 0; epoch < 4; epoch++) {
        int64_t want[7], got[7];
        for (int i = 0; i < 7; i++) want[i] = i;
        tb_rng_key key = tb_rng_key_make(7, TB_RNG_SHUFFLE);
        for (int i = 6; i >= 1; i--) {
            uint64_t k = (uint64_t)(6 - i);
            uint64_t r = ((uint64_t)tb_rng_u32(key, 0, (uint32_t)epoch, 2 * k) << 32) |
                         tb_rng_u32(key, 0, (uint32_t)epoch, 2 * k + 1);
            int j = (int)(r % (uint64_t)(i + 1));
            int64_t tmp = want[i];
            want[i] = want[j];
            want[j] = tmp;
        }
        cr_assert_eq(tb_batcher_order(&b1, epoch, got), TB_OK);
        for (int i = 0; i < 7; i++) cr_expect_eq(got[i], want[i], "epoch %llu position %d", (unsigned long long)epoch, i);
    }
    /* (seed, epoch, index) fixes the content, whatever was asked before. */
    tb_batch x = {0}, y = {0};
    cr_assert_eq(tb_batcher_get(&b1, 0, 0, &x), TB_OK);
    cr_assert_eq(tb_batcher_get(&b1, 3, 2, &x), TB_OK);
    cr_assert_eq(tb_batcher_get(&b2, 3, 2, &y), TB_OK);
    cr_assert_eq(tb_tensor_nbytes(&x.input_ids), tb_tensor_nbytes(&y.input_ids));
    cr_expect_eq(memcmp(x.input_ids.data, y.input_ids.data, tb_tensor_nbytes(&x.input_ids)), 0);
    cr_expect_eq(memcmp(x.example_ids.data, y.example_ids.data, tb_tensor_nbytes(&x.example_ids)), 0);
    cr_expect_eq(x.epoch, 3);
    cr_expect_eq(x.index, 2);
    /* epochs differ */
    int64_t o0[7], o1[7];
    tb_batcher_order(&b1, 0, o0);
    tb_batcher_order(&b1, 1, o1);
    cr_expect_neq(memcmp(o0, o1, sizeof o0), 0);
    cr_expect_eq(tb_batcher_get(&b1, 0, 3, &x), TB_EINVAL, "batch 3 does not exist with drop_last");
    tb_batch_free(&x);
    tb_batch_free(&y);
    tb_batcher_free(&b1);
    tb_batcher_free(&b2);
    tb_encoded_free(&e);
    tb_tokenizer_free(&t);
    tb_dataset_free(&ds);
}

Test(batches, pad_to_longest_and_regression_labels)
{
    const char *p = write_file("stsb.tsv", "h\th\th\th\th\th\th\th\th\th\n"
                                           "0\tg\tf\ty\to\tn\tn\tthe cat\ta dog\t3.5\n"
                                           "1\tg\tf\ty\to\tn\tn\thello\tworld\t0.25\n");
    tb_dataset ds;
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_STSB, p, NULL), TB_OK, "%s", tb_err_msg());
    tb_tokenizer t;
    cr_assert_eq(tb_tokenizer_init(&t, VOCAB, NULL), TB_OK);
    tb_encoded e;
    cr_assert_eq(tb_encoded_build(&e, &ds, &t, 128), TB_OK);
    tb_batch_opts o = {.batch_size = 4, .pad_to_longest = 1};
    tb_batcher b;
    cr_assert_eq(tb_batcher_init(&b, &e, &o), TB_OK);
    tb_batch x = {0};
    cr_assert_eq(tb_batcher_get(&b, 0, 0, &x), TB_OK);
    /* [CLS] the cat [SEP] a dog [SEP] = 7 tokens, the longest of the batch */
    cr_expect_eq(x.input_ids.shape[1], 7);
    cr_expect_eq(x.labels.dtype, TB_F32);
    cr_expect_eq(((float *)x.labels.data)[0], 3.5f);
    cr_expect_eq(((float *)x.labels.data)[1], 0.25f);
    /* row 1: [CLS] hello [SEP] world [SEP] + 2 pads, mask 1 1 1 1 1 0 0 */
    const int32_t m[7] = {1, 1, 1, 1, 1, 0, 0};
    for (int c = 0; c < 7; c++) cr_expect_eq(((int32_t *)x.attention_mask.data)[7 + c], m[c]);
    tb_batch_free(&x);
    tb_batcher_free(&b);
    tb_encoded_free(&e);
    tb_tokenizer_free(&t);
    tb_dataset_free(&ds);
}

/* MLM packing with a hand-made vocabulary: every word is one token, so the packing is worked out
 * by hand. max_seq_length 6 -> room for 4 tokens per sequence. */
Test(batches, mlm_packing_by_hand)
{
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "e", "f", "g"};
    FILE *f = fopen(write_file("v.txt", ""), "wb");
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) fprintf(f, "%s\n", toks[i]);
    fclose(f);
    char vpath[256];
    snprintf(vpath, sizeof vpath, "%s/v.txt", tmpdir);
    /* doc 0: "a b" (2) + "c" (1) fit together (3); "d e" (2) does not fit (5 > 4): new sequence;
     * doc 1: "a b c d e f g" (7) alone: chunks "a b c d" and "e f g". */
    const char *p = write_file("c.txt", "a b\nc\nd e\n\na b c d e f g\n");
    tb_dataset ds;
    cr_assert_eq(tb_dataset_read_corpus(&ds, p, NULL), TB_OK);
    tb_tokenizer t;
    cr_assert_eq(tb_tokenizer_init(&t, vpath, NULL), TB_OK, "%s", tb_err_msg());
    tb_encoded e;
    cr_assert_eq(tb_encoded_build_packed(&e, &ds, &t, 6), TB_OK, "%s", tb_err_msg());
    const int32_t want[][6] = {{2, 5, 6, 7, 3, -1}, {2, 8, 9, 3, -1, -1}, {2, 5, 6, 7, 8, 3}, {2, 9, 10, 11, 3, -1}};
    cr_assert_eq(e.count, 4);
    for (int s = 0; s < 4; s++) {
        int64_t len = e.off[s + 1] - e.off[s];
        int n = 0;
        while (n < 6 && want[s][n] >= 0) n++;
        cr_expect_eq(len, n, "sequence %d", s);
        for (int k = 0; k < n && k < len; k++) cr_expect_eq(e.ids[e.off[s] + k], want[s][k], "sequence %d token %d", s, k);
        cr_expect_eq(e.labels[s], -1);
    }
    /* general distillation instead: one line, one example, truncated to 6 - 2 */
    tb_encoded g;
    cr_assert_eq(tb_encoded_build(&g, &ds, &t, 6), TB_OK);
    cr_expect_eq(g.count, 4);
    cr_expect_eq(g.off[4] - g.off[3], 6);
    cr_expect_eq(g.truncated, 1);
    tb_encoded_free(&g);
    tb_encoded_free(&e);
    tb_tokenizer_free(&t);
    tb_dataset_free(&ds);
}

/* Random bytes as every kind of file: a clear error or a lenient read, never a crash (ASan). */
Test(readers, random_garbage_files)
{
    uint64_t s = 12345;
    char buf[2048];
    for (int it = 0; it < 60; it++) {
        size_t n = (size_t)(it * 31 % 2000);
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            uint8_t b = (uint8_t)(s >> 56);
            /* many tabs and newlines so rows and fields exist */
            buf[i] = (char)(b < 40 ? '\t' : b < 70 ? '\n' : b < 200 ? 'a' + b % 26 : b);
        }
        char path[256];
        snprintf(path, sizeof path, "%s/g.tsv", tmpdir);
        FILE *f = fopen(path, "wb");
        cr_assert(f);
        fwrite(buf, 1, n, f);
        fclose(f);
        for (int task = TB_TASK_COLA; task <= TB_TASK_CORPUS; task++) {
            for (int lenient = 0; lenient < 2; lenient++) {
                tb_read_opts o = {.lenient = lenient, .wikitext = it % 2};
                tb_dataset ds;
                int rc = task == TB_TASK_SIMPLE   ? tb_dataset_read_simple(&ds, path, &o)
                         : task == TB_TASK_CORPUS ? tb_dataset_read_corpus(&ds, path, &o)
                                                  : tb_dataset_read_glue(&ds, (tb_task)task, path, &o);
                cr_assert(rc == TB_OK || (rc == TB_EFORMAT && !lenient), "task %d lenient %d: rc %d %s", task, lenient, rc,
                          tb_err_msg());
                if (rc == TB_EFORMAT) cr_assert(strstr(tb_err_msg(), "g.tsv:"), "%s", tb_err_msg());
                if (rc == TB_OK) tb_dataset_free(&ds);
            }
        }
    }
}

/* A batch message encoded by tb/wire/codec.h is read by Python msgpack-numpy with the same arrays;
 * and tb_batch_from_msg refuses malformed batches. */
#include "tb/wire/codec.h"

Test(batches, message_round_trip_and_python)
{
    tb_dataset ds;
    tb_tokenizer t;
    tb_encoded e;
    load_small(&ds, &t, &e, 8);
    tb_batch_opts o = {.batch_size = 4, .seed = 3, .shuffle = 1};
    tb_batcher b;
    cr_assert_eq(tb_batcher_init(&b, &e, &o), TB_OK);
    tb_batch x = {0};
    cr_assert_eq(tb_batcher_get(&b, 2, 1, &x), TB_OK);
    char order[64], hash[32];
    cr_assert_eq(tb_dataset_label_order(&ds, order, sizeof order), TB_OK);
    cr_expect_str_eq(order, "0,1");
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_batch_to_msg(&x, tb_vocab_hash_str(&t.vocab, hash, sizeof hash), order, &m), TB_OK);
    tb_buf buf;
    tb_buf_init(&buf);
    cr_assert_eq(tb_codec_encode(&m, &buf), TB_OK, "%s", tb_err_msg());
    char path[256];
    snprintf(path, sizeof path, "%s/batch.msgpack", tmpdir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(buf.data, 1, buf.len, f);
    fclose(f);
    /* Python: shapes, dtypes, sums, and the metadata */
    char cmd[1024], out[512];
    snprintf(cmd, sizeof cmd,
             "%s -c \"import msgpack, msgpack_numpy as m; d = msgpack.unpackb(open('%s','rb').read(), object_hook=m.decode, raw=False); "
             "g = lambda k: d[k] if k in d else d[k.encode()]; "
             "print(g('input_ids').dtype.str, g('input_ids').shape, int(g('input_ids').sum()), int(g('attention_mask').sum()), "
             "int(g('token_type_ids').sum()), g('labels').dtype.str, list(map(int, g('labels'))), g('example_ids').dtype.str, "
             "list(map(int, g('example_ids'))), g('epoch'), g('index'), g('label_order'))\"",
             TB_PYTHON, path);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    cr_assert(fgets(out, sizeof out, p), "python could not read the batch");
    cr_assert_eq(pclose(p), 0);
    long long s_ids = 0, s_mask = 0, s_tt = 0;
    const int32_t *ids = x.input_ids.data, *mask = x.attention_mask.data, *tt = x.token_type_ids.data;
    for (int64_t i = 0; i < tb_tensor_numel(&x.input_ids); i++) {
        s_ids += ids[i];
        s_mask += mask[i];
        s_tt += tt[i];
    }
    const int32_t *lab = x.labels.data;
    const int64_t *ex = x.example_ids.data;
    char want[512];
    snprintf(want, sizeof want, "<i4 (3, 8) %lld %lld %lld <i4 [%d, %d, %d] <i8 [%lld, %lld, %lld] 2 1 0,1\n", s_ids,
             s_mask, s_tt, lab[0], lab[1], lab[2], (long long)ex[0], (long long)ex[1], (long long)ex[2]);
    cr_expect_str_eq(out, want);
    /* decode and read back */
    tb_msg d;
    cr_assert_eq(tb_codec_decode(buf.data, buf.len, &d, TB_DECODE_COPY, NULL), TB_OK, "%s", tb_err_msg());
    tb_batch y = {0};
    cr_assert_eq(tb_batch_from_msg(&y, &d), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(memcmp(y.input_ids.data, x.input_ids.data, tb_tensor_nbytes(&x.input_ids)), 0);
    cr_expect_eq(y.epoch, 2);
    cr_expect_eq(y.index, 1);
    tb_batch_free(&y);
    /* malformed: a mask value 2, then a missing field, then a wrong dtype */
    ((int32_t *)x.attention_mask.data)[0] = 2;
    cr_expect_eq(tb_batch_from_msg(&y, &m), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "attention_mask"), "%s", tb_err_msg());
    ((int32_t *)x.attention_mask.data)[0] = 1;
    tb_tensor ex32 = {0};
    cr_assert_eq(tb_tensor_alloc(&ex32, TB_F32, 2, x.input_ids.shape), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "token_type_ids", &ex32), TB_OK);
    cr_expect_eq(tb_batch_from_msg(&y, &m), TB_ESHAPE);
    cr_expect(strstr(tb_err_msg(), "token_type_ids"), "%s", tb_err_msg());
    cr_assert_eq(tb_msg_remove(&m, "labels"), TB_OK);
    cr_assert_eq(tb_msg_set_tensor_ref(&m, "token_type_ids", &x.token_type_ids), TB_OK);
    cr_expect_eq(tb_batch_from_msg(&y, &m), TB_ENOTFOUND);
    cr_expect(strstr(tb_err_msg(), "labels"), "%s", tb_err_msg());
    tb_tensor_free(&ex32);
    tb_msg_free(&d);
    tb_msg_free(&m);
    tb_buf_free(&buf);
    tb_batch_free(&x);
    tb_batcher_free(&b);
    tb_encoded_free(&e);
    tb_tokenizer_free(&t);
    tb_dataset_free(&ds);
}

/* The readers' texts equal the golden text files, which were extracted independently from the
 * same GLUE files (SST-2 sentence; CoLA column 4; MRPC #1 String then #2 String, BOM removed).
 * The shipped golden files hold the first 4,000 lines of each: they cover the first `examples`
 * rows of the shipped TSV (all of CoLA's 4,000 and MRPC's 2,000, the first half of SST-2's 8,000). */
static void expect_texts_equal_golden(tb_task task, const char *tsv_name, const char *golden_name, int64_t examples)
{
    char tsv[4096];
    snprintf(tsv, sizeof tsv, "%s", tb_test_data(tsv_name));
    const char *golden = tb_test_data(golden_name);
    tb_dataset ds;
    cr_assert_eq(tb_dataset_read_glue(&ds, task, tsv, NULL), TB_OK, "%s", tb_err_msg());
    FILE *f = fopen(golden, "rb");
    cr_assert(f, "cannot open %s", golden);
    char *line = NULL;
    size_t cap = 0;
    int64_t i = 0, part = 0, bad = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
        cr_assert_lt(i, ds.count, "golden file has more lines than %s has texts", tsv_name);
        const char *mine = part == 0 ? ds.ex[i].text_a : ds.ex[i].text_b;
        if (strcmp(mine, line) != 0 && bad++ < 3)
            cr_log_error("%s example %lld part %lld differs", tsv_name, (long long)i, (long long)part);
        if (ds.ex[i].text_b && part == 0) {
            part = 1;
        } else {
            part = 0;
            i++;
        }
    }
    free(line);
    fclose(f);
    cr_expect_eq(bad, 0);
    cr_expect_eq(part, 0, "%s ends inside a sentence pair", golden_name);
    cr_expect_eq(i, examples, "%s: golden covers %lld examples, expected %lld", tsv_name, (long long)i,
                 (long long)examples);
    tb_dataset_free(&ds);
}

Test(readers, texts_match_golden_extraction)
{
    expect_texts_equal_golden(TB_TASK_SST2, "sst2/train.tsv", "golden/sst2-train-4000.txt", 4000);
    expect_texts_equal_golden(TB_TASK_COLA, "cola/train.tsv", "golden/cola-train-4000.txt", 4000);
    expect_texts_equal_golden(TB_TASK_MRPC, "mrpc/train.tsv", "golden/mrpc-train-4000.txt", 2000);
}

/* Where ids meet a model: a batch's vocab_hash must equal the model's; nothing to compare (no
 * expected hash, or a batch without the field) passes; a non-string field is malformed. */
Test(batches, vocabulary_check_names_both_hashes_the_source_and_the_batch)
{
    tb_msg m;
    tb_msg_init(&m);
    cr_assert_eq(tb_batch_check_vocab(&m, "fnv1a64:0000000000000001", "model X", "dev.tbm", 3), TB_OK);
    cr_assert_eq(tb_msg_set_str(&m, "vocab_hash", "fnv1a64:0000000000000002"), TB_OK);
    cr_expect_eq(tb_batch_check_vocab(&m, NULL, NULL, "dev.tbm", 3), TB_OK);
    cr_expect_eq(tb_batch_check_vocab(&m, "", NULL, "dev.tbm", 3), TB_OK);
    cr_expect_eq(tb_batch_check_vocab(&m, "fnv1a64:0000000000000002", "model X", "dev.tbm", 3), TB_OK);
    cr_assert_eq(tb_batch_check_vocab(&m, "fnv1a64:0000000000000001", "checkpoint c's vocab.txt", "dev.tbm", 3),
                 TB_EFORMAT);
    const char *e = tb_err_msg();
    cr_expect(strstr(e, "dev.tbm: batch 3") && strstr(e, "fnv1a64:0000000000000002") &&
                  strstr(e, "checkpoint c's vocab.txt is fnv1a64:0000000000000001") && strstr(e, "tb-tokenize --vocab"),
              "%s", e);
    tb_msg_free(&m);
    tb_msg_init(&m);
    cr_assert_eq(tb_msg_set_int(&m, "vocab_hash", 7), TB_OK);
    cr_expect_eq(tb_batch_check_vocab(&m, "fnv1a64:0000000000000001", NULL, "dev.tbm", 0), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "'vocab_hash' is not a string"), "%s", tb_err_msg());
    tb_msg_free(&m);
}

/* The first line of a GLUE file of a header task: another task's header, too few fields, or a
 * row (a headerless file) is refused at file:1 saying what was found; the task's own header and
 * an unknown header are passed over; lenient reading warns and goes on. */
Test(readers, a_file_of_another_task_is_refused_at_its_header)
{
    static const struct {
        tb_task task;
        const char *content, *want;
    } cases[] = {
        {TB_TASK_STSB, "sentence\tlabel\nit is good\t1\n", "2 tab-separated fields, sts-b rows have at least 10"},
        {TB_TASK_RTE, "index\tquestion\tsentence\tlabel\n0\tq\ts\tentailment\n", "header of GLUE's qnli"},
        {TB_TASK_SST2, "gj04\t1\t\tOur friends won't buy this analysis.\nx\t0\n", "is a sst-2 row (label '1')"},
        {TB_TASK_MRPC, "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\nx\t1\t2\ta\tb\n", "unknown mrpc label 'x'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = write_file("other.tsv", cases[i].content);
        char path[256];
        snprintf(path, sizeof path, "%s", p);
        tb_dataset ds;
        cr_expect_eq(tb_dataset_read_glue(&ds, cases[i].task, path, NULL), TB_EFORMAT, "case %zu accepted", i);
        cr_expect(strstr(tb_err_msg(), cases[i].want), "case %zu: [%s] lacks [%s]", i, tb_err_msg(), cases[i].want);
        char at[300];
        snprintf(at, sizeof at, "other.tsv:%d:", i == 3 ? 2 : 1);
        cr_expect(strstr(tb_err_msg(), at), "case %zu: [%s] lacks [%s]", i, tb_err_msg(), at);
    }
    /* the task's own header (any case) and an unknown header are fine */
    tb_dataset ds;
    const char *p = write_file("own.tsv", "SENTENCE\tLabel\nit is good\t1\n");
    char path[256];
    snprintf(path, sizeof path, "%s", p);
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_SST2, path, NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.count, 1);
    tb_dataset_free(&ds);
    p = write_file("own.tsv", "text\tgold\nit is good\t1\n");
    snprintf(path, sizeof path, "%s", p);
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_SST2, path, NULL), TB_OK, "%s", tb_err_msg());
    tb_dataset_free(&ds);
    /* lenient: the line is passed over as the header */
    p = write_file("other.tsv", cases[2].content);
    snprintf(path, sizeof path, "%s", p);
    tb_read_opts o = {.lenient = 1};
    cr_assert_eq(tb_dataset_read_glue(&ds, TB_TASK_SST2, path, &o), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.count, 1);
    tb_dataset_free(&ds);
}
