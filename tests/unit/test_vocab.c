/* Unit tests of vocab.txt loading and of vocabulary learning: a hand-computed BPE example, and
 * Chinese text (a vocabulary learned on 3,000 Tang poems in data/zh covers 1,000 other poems
 * with <= 1 % [UNK]). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tb/text/dataset.h"
#include "tb/base/error.h"
#include "tb/text/tokenizer.h"
#include "tb/text/vocab.h"

#include "repodata.h"

#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"

static char tmpdir[64];
static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/tb-vocab-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
}
static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(vocab, .init = make_tmpdir, .fini = remove_tmpdir);

static const char *tmp_path(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

Test(vocab, bert_base_uncased_facts)
{
    tb_vocab v;
    cr_assert_eq(tb_vocab_load(&v, VOCAB), TB_OK, "%s", tb_err_msg());
    /* data/README.md: 30522 lines, [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103,
     * '!' 999, 'the' 1996, last '##～' 30521 */
    cr_expect_eq(v.count, 30522);
    cr_expect_eq(v.pad_id, 0);
    cr_expect_eq(v.unk_id, 100);
    cr_expect_eq(v.cls_id, 101);
    cr_expect_eq(v.sep_id, 102);
    cr_expect_eq(v.mask_id, 103);
    cr_expect_eq(tb_vocab_find(&v, "!", 1), 999);
    cr_expect_eq(tb_vocab_find(&v, "the", 3), 1996);
    cr_expect_str_eq(tb_vocab_token(&v, 30521), "##～");
    cr_expect_eq(tb_vocab_find_cont(&v, "～", strlen("～")), 30521);
    cr_expect_eq(tb_vocab_find(&v, "notaword", 8), -1);
    cr_expect_null(tb_vocab_token(&v, 30522));
    cr_expect_null(tb_vocab_token(&v, -1));
    tb_vocab_free(&v);
}

Test(vocab, load_rules_and_hash)
{
    /* CRLF and surrounding spaces stripped (load_vocab's strip()); a duplicate: the later id wins. */
    FILE *f = fopen(tmp_path("v.txt"), "wb");
    fputs("[PAD]\r\n [UNK] \r\nab\r\nab\n##c", f);
    fclose(f);
    tb_vocab v;
    cr_assert_eq(tb_vocab_load(&v, tmp_path("v.txt")), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(v.count, 5);
    cr_expect_eq(v.unk_id, 1);
    cr_expect_eq(tb_vocab_find(&v, "ab", 2), 3);
    cr_expect_eq(tb_vocab_find_cont(&v, "c", 1), 4);
    /* hash: FNV-1a 64 of "[PAD]\n[UNK]\nab\nab\n##c\n", computed independently in Python */
    char cmd[512], want[64], got[32];
    snprintf(cmd, sizeof cmd,
             "%s -c \"h=0xcbf29ce484222325\nfor b in b'[PAD]\\n[UNK]\\nab\\nab\\n##c\\n':\n h=((h^b)*0x100000001b3)%%2**64\n"
             "print('fnv1a64:%%016x'%%h)\"", TB_PYTHON);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    cr_assert(fgets(want, sizeof want, p));
    pclose(p);
    want[strcspn(want, "\n")] = '\0';
    cr_expect_str_eq(tb_vocab_hash_str(&v, got, sizeof got), want);
    /* save + load gives the same tokens and hash */
    cr_assert_eq(tb_vocab_save(&v, tmp_path("w.txt")), TB_OK);
    tb_vocab w;
    cr_assert_eq(tb_vocab_load(&w, tmp_path("w.txt")), TB_OK);
    cr_expect_eq(w.hash, v.hash);
    tb_vocab_free(&w);
    tb_vocab_free(&v);
    /* bad files */
    f = fopen(tmp_path("bad.txt"), "wb");
    fputs("[PAD]\n[UNK]\nab\xff\n", f);
    fclose(f);
    cr_expect_eq(tb_vocab_load(&v, tmp_path("bad.txt")), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "bad.txt:3:"), "%s", tb_err_msg());
    f = fopen(tmp_path("empty.txt"), "wb");
    fclose(f);
    cr_expect_eq(tb_vocab_load(&v, tmp_path("empty.txt")), TB_EFORMAT);
    cr_expect_eq(tb_vocab_load(&v, tmp_path("missing.txt")), TB_EIO);
}

/* The classic BPE example in WordPiece form; merges worked out by hand:
 * low x5: l ##o ##w, lower x2: l ##o ##w ##e ##r, newest x6: n ##e ##w ##e ##s ##t,
 * widest x3: w ##i ##d ##e ##s ##t.
 * 1. (##e,##s) 9 ties (##s,##t) 9; ##e was seen before ##s -> "##es"
 * 2. (##es,##t) 9 -> "##est"   3. (l,##o) 7 ties (##o,##w) 7 -> "lo"   4. (lo,##w) 7 -> "low"
 * Pieces are numbered as first seen: l ##l ##o o ##w w (low), ##e e ##r r (lower), n ##n ##s s ...
 * 5. newest is n ##e ##w ##est: (n,##e), (##e,##w), (##w,##est) all 6; ##w was seen first -> "##west"
 * 6. (n,##e) 6 ties (##e,##west) 6; ##e before n -> "##ewest"   7. (n,##ewest) 6 -> "newest" */
Test(vocab, learn_hand_computed_merges)
{
    tb_word_counts wc;
    tb_word_counts_init(&wc);
    cr_assert_eq(tb_word_counts_add(&wc, "low", 3, 5), TB_OK);
    cr_assert_eq(tb_word_counts_add(&wc, "lower", 5, 2), TB_OK);
    cr_assert_eq(tb_word_counts_add(&wc, "newest", 6, 6), TB_OK);
    cr_assert_eq(tb_word_counts_add(&wc, "widest", 6, 3), TB_OK);
    cr_expect_eq(wc.total, 16);
    /* 10 letters x 2 forms = 20 alphabet pieces + 5 special + 7 merges */
    tb_vocab_learn_opts o = {.vocab_size = 32, .min_frequency = 2};
    tb_vocab v;
    cr_assert_eq(tb_vocab_learn(&v, &wc, &o), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(v.count, 32);
    const char *special[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++) cr_expect_str_eq(tb_vocab_token(&v, i), special[i]);
    const char *merges[] = {"##es", "##est", "lo", "low", "##west", "##ewest", "newest"};
    for (int i = 0; i < 7; i++) cr_expect_str_eq(tb_vocab_token(&v, 25 + i), merges[i], "merge %d", i);
    /* alphabet: most frequent first: ##e (2+12+3=17) */
    cr_expect_str_eq(tb_vocab_token(&v, 5), "##e");
    cr_expect_geq(tb_vocab_find(&v, "e", 1), 5, "the unseen word-start form is in the vocabulary too");
    /* the tokenizer uses it: "lowest" -> low ##est, "wider" -> w ##i ##d ##e ##r */
    tb_tokenizer t;
    cr_assert_eq(tb_tokenizer_init_vocab(&t, &v, NULL), TB_OK, "%s", tb_err_msg());
    tb_ids ids;
    tb_ids_init(&ids);
    cr_assert_eq(tb_tokenizer_tokenize(&t, "Lowest wider", 12, &ids), TB_OK);
    const char *want[] = {"low", "##est", "w", "##i", "##d", "##e", "##r"};
    cr_assert_eq(ids.count, 7);
    for (int i = 0; i < 7; i++) cr_expect_str_eq(tb_vocab_token(&t.vocab, ids.ids[i]), want[i]);
    tb_ids_free(&ids);
    tb_tokenizer_free(&t);
    /* min_frequency stops merging: every pair is seen < 100 times */
    o.min_frequency = 100;
    o.vocab_size = 1000;
    cr_assert_eq(tb_vocab_learn(&v, &wc, &o), TB_OK);
    cr_expect_eq(v.count, 25);
    tb_vocab_free(&v);
    /* a budget smaller than the alphabet keeps the most frequent characters */
    o.vocab_size = 7;
    cr_assert_eq(tb_vocab_learn(&v, &wc, &o), TB_OK);
    cr_expect_eq(v.count, 7);
    cr_expect_str_eq(tb_vocab_token(&v, 5), "##e");
    tb_vocab_free(&v);
    o.vocab_size = 5;
    cr_expect_eq(tb_vocab_learn(&v, &wc, &o), TB_EINVAL);
    tb_word_counts_free(&wc);
}

/* data/seed: the first 3,000 / 1,000 lines of the seed project's Chinese dialogue classification
 * files (text<TAB>label, see data/README.md). Characters of eval missing from train can only
 * become [UNK]. */
Test(vocab, chinese_unk_rate_at_most_one_percent, .timeout = 120)
{
    char train[4096], eval[4096];
    snprintf(train, sizeof train, "%s", tb_test_data("seed/train-3000.txt"));
    snprintf(eval, sizeof eval, "%s", tb_test_data("seed/eval-1000.txt"));
    char cmd[10240];
    snprintf(cmd, sizeof cmd, "%s/tb-vocab --input '%s' --format simple --vocab-size 8000 --output %s "
             "--log-level warn 2>/dev/null", TB_BIN_DIR, train, tmp_path("zh.txt"));
    cr_assert_eq(system(cmd), 0, "tb-vocab failed: %s", cmd);
    tb_tokenizer t;
    cr_assert_eq(tb_tokenizer_init(&t, tmp_path("zh.txt"), NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_leq(t.vocab.count, 8000);
    tb_dataset ds;
    cr_assert_eq(tb_dataset_read_simple(&ds, eval, NULL), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ds.count, 1000, "one example per line");
    tb_ids ids;
    tb_ids_init(&ids);
    long total = 0, unk = 0;
    for (int64_t i = 0; i < ds.count; i++) {
        cr_assert_eq(tb_tokenizer_tokenize(&t, ds.ex[i].text_a, strlen(ds.ex[i].text_a), &ids), TB_OK);
        for (int32_t k = 0; k < ids.count; k++) unk += ids.ids[k] == t.vocab.unk_id;
        total += ids.count;
    }
    cr_log_info("seed/eval-1000.txt: %ld tokens, %ld [UNK] (%.3f %%)", total, unk, 100.0 * (double)unk / (double)total);
    cr_expect_gt(total, 80000);
    cr_expect_leq(unk * 100, total, "[UNK] rate %.3f %% > 1 %%", 100.0 * (double)unk / (double)total);
    /* the file is a plain vocab.txt: Python reads the same number of lines */
    snprintf(cmd, sizeof cmd, "%s -c \"print(len(open('%s', encoding='utf-8').read().split('\\n')) - 1)\"", TB_PYTHON,
             tmp_path("zh.txt"));
    FILE *p = popen(cmd, "r");
    char line[64];
    cr_assert(p && fgets(line, sizeof line, p));
    pclose(p);
    cr_expect_eq(atol(line), t.vocab.count);
    tb_ids_free(&ids);
    tb_dataset_free(&ds);
    tb_tokenizer_free(&t);
}

Test(vocab, stage_describe_hash_and_usage)
{
    char cmd[1024], out[256];
    /* --describe is JSON naming the stage and its options */
    snprintf(cmd, sizeof cmd, "%s/tb-vocab --describe | %s -c \"import json,sys; d=json.load(sys.stdin); "
             "print(d['stage'], sorted(p['name'] for p in d['parameters'] if p['name'] in ('vocab-size','format')))\"",
             TB_BIN_DIR, TB_PYTHON);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    cr_assert(fgets(out, sizeof out, p), "no --describe output");
    pclose(p);
    cr_expect_str_eq(out, "tb-vocab ['format', 'vocab-size']\n");
    /* --hash prints the same hash as the library */
    snprintf(cmd, sizeof cmd, "%s/tb-vocab --hash %s", TB_BIN_DIR, TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt");
    p = popen(cmd, "r");
    cr_assert(p && fgets(out, sizeof out, p));
    pclose(p);
    tb_vocab v;
    cr_assert_eq(tb_vocab_load(&v, VOCAB), TB_OK);
    char h[32];
    tb_vocab_hash_str(&v, h, sizeof h);
    strcat(h, "\n");
    cr_expect_str_eq(out, h);
    tb_vocab_free(&v);
    /* no input: usage error (exit 2); a missing file: failure (exit 1) naming it */
    snprintf(cmd, sizeof cmd, "%s/tb-vocab --output %s 2>/dev/null", TB_BIN_DIR, tmp_path("x.txt"));
    int st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d", st);
    snprintf(cmd, sizeof cmd, "%s/tb-vocab --input /nonexistent.txt --output %s 2>&1", TB_BIN_DIR, tmp_path("x.txt"));
    p = popen(cmd, "r");
    cr_assert(p && fgets(out, sizeof out, p));
    st = pclose(p);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
    cr_expect(strstr(out, "/nonexistent.txt"), "%s", out);
}
