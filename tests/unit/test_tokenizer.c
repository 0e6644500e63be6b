/* Unit tests of the BERT tokenizer: cases computed by hand from tokenization.py's rules, a tiny
 * hand-made vocabulary for WordPiece and encoding, and two comparisons with Python (every code
 * point through Python's unicodedata / str.lower(), and random mixed-script text through a
 * line-for-line port of tokenization.py in bench/bert_tokenization.py). */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "tb/base/error.h"
#include "tb/text/tokenizer.h"

#define VOCAB TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt"

/* Basic-tokenizes `text` and checks the words against the NULL-terminated list. */
static void expect_words_opts(const tb_tokenizer_opts *o, const char *text, ...)
{
    tb_words w;
    tb_words_init(&w);
    int rc = tb_basic_tokenize(o, text, strlen(text), &w);
    cr_assert_eq(rc, TB_OK, "[%s]: %s", text, tb_err_msg());
    va_list ap;
    va_start(ap, text);
    int i = 0;
    for (const char *e; (e = va_arg(ap, const char *)) != NULL; i++) {
        cr_assert_lt(i, w.count, "[%s]: only %d words, expected more (next: [%s])", text, w.count, e);
        cr_expect_str_eq(w.buf + w.off[i], e, "[%s]: word %d", text, i);
    }
    va_end(ap);
    cr_expect_eq(w.count, i, "[%s]: %d words, expected %d", text, w.count, i);
    tb_words_free(&w);
}

#define EXPECT_WORDS(text, ...) expect_words_opts(NULL, text, __VA_ARGS__, (const char *)NULL)

Test(basic, accents_and_case)
{
    EXPECT_WORDS("Héllo, WÖRLD!", "hello", ",", "world", "!");
    EXPECT_WORDS("Crème Brûlée", "creme", "brulee");
    /* NFD, not NFKD: sharp s and the fi ligature survive. */
    EXPECT_WORDS("Straße ﬁne", "straße", "ﬁne");
    /* Python 'İ'.lower() is 'i' + U+0307 (a Mn mark, then stripped). */
    EXPECT_WORDS("İstanbul", "istanbul");
    /* Hangul syllables decompose canonically into conjoining jamo (Lo, kept). */
    EXPECT_WORDS("한", "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab");
    /* A word of marks only vanishes. */
    EXPECT_WORDS("a \xcc\x81\xcc\x81 b", "a", "b");
}

Test(basic, final_sigma)
{
    EXPECT_WORDS("ΟΔΟΣ", "οδος");             /* final: ς then stripped of nothing */
    EXPECT_WORDS("ΣΑΣ.", "σας", ".");        /* '.' is case-ignorable: still final */
    EXPECT_WORDS("Σ", "σ");                  /* nothing cased before */
    EXPECT_WORDS("ΑΣΑ", "ασα");              /* cased after: not final */
    EXPECT_WORDS("ΑΣ'Α", "ασ", "'", "α");    /* ignorable then cased: not final */
    EXPECT_WORDS("Α'Σ", "α", "'", "ς");      /* cased, ignorable, Σ at the end: final */
}

Test(basic, cjk_and_mixed_scripts)
{
    EXPECT_WORDS("ab你好cd", "ab", "你", "好", "cd");
    EXPECT_WORDS("Привет мир Ελλάδα العربية", "привет", "мир", "ελλαδα", "العربية");
    /* Hiragana is not in the CJK blocks: stays one word. */
    EXPECT_WORDS("ひらがな漢字", "ひらかな", "漢", "字"); /* が = か + U+3099 (Mn) */
}

Test(basic, punctuation)
{
    EXPECT_WORDS("don't-stop...now", "don", "'", "t", "-", "stop", ".", ".", ".", "now");
    EXPECT_WORDS("«quoted»—dash¿", "«", "quoted", "»", "—", "dash", "¿");
    /* ASCII symbols count as punctuation, non-ASCII symbols (Sc, Sm) do not. */
    EXPECT_WORDS("$5^2`x 5€ a+b a±b", "$", "5", "^", "2", "`", "x", "5€", "a", "+", "b", "a±b");
}

Test(basic, control_and_whitespace)
{
    /* \x01 (Cc) and U+200B (Cf) and U+FFFD dropped, tab and U+00A0 (Zs) split, U+2028 splits. */
    EXPECT_WORDS("a\x01" "b\xe2\x80\x8b" "c\td\xc2\xa0" "e\xef\xbf\xbd" "f\xe2\x80\xa8g", "abc", "d", "ef", "g");
    EXPECT_WORDS("\r\n  \t ", NULL);
    EXPECT_WORDS("", NULL);
}

Test(basic, emoji)
{
    /* U+2764 U+FE0F: the variation selector is Mn and goes with the accents. */
    EXPECT_WORDS("I \xe2\x9d\xa4\xef\xb8\x8f \xf0\x9f\x98\x80!", "i", "\xe2\x9d\xa4", "\xf0\x9f\x98\x80", "!");
}

Test(basic, cased_mode_keeps_case_and_accents)
{
    tb_tokenizer_opts o = tb_tokenizer_opts_default();
    o.do_lower_case = 0;
    expect_words_opts(&o, "Héllo, İ ΟΔΟΣ", "Héllo", ",", "İ", "ΟΔΟΣ", (const char *)NULL);
}

Test(basic, invalid_utf8_is_an_error_with_offset)
{
    const char *bad[] = {"ab\xff" "cd", "x\xe4\xbd", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80"};
    size_t where[] = {2, 1, 0, 0, 0, 0};
    tb_words w;
    tb_words_init(&w);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = tb_basic_tokenize(NULL, bad[i], strlen(bad[i]), &w);
        cr_expect_eq(rc, TB_EFORMAT, "case %zu accepted", i);
        char want[64];
        snprintf(want, sizeof want, "at byte %zu", where[i]);
        cr_expect(strstr(tb_err_msg(), want), "case %zu: message [%s] lacks [%s]", i, tb_err_msg(), want);
        size_t off = 99;
        cr_expect_eq(tb_utf8_check(bad[i], strlen(bad[i]), &off), TB_EFORMAT);
        cr_expect_eq(off, where[i]);
    }
    tb_words_free(&w);
}

/* ---- WordPiece and encoding with a hand-made vocabulary ------------------------------------- */

static const char *TINY[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able",
                             "a", "##b", "##bc", "abc", "##c", "b", "c", "é", "##é", ",", "##ff"};

static void tiny_init(tb_tokenizer *t, int max_chars, int lower)
{
    tb_vocab v;
    cr_assert_eq(tb_vocab_from_tokens(&v, TINY, (int32_t)(sizeof TINY / sizeof TINY[0])), TB_OK);
    tb_tokenizer_opts o = tb_tokenizer_opts_default();
    o.max_input_chars_per_word = max_chars;
    o.do_lower_case = lower;
    cr_assert_eq(tb_tokenizer_init_vocab(t, &v, &o), TB_OK, "%s", tb_err_msg());
}

static void expect_ids(const tb_tokenizer *t, const char *text, int n, const int32_t *want)
{
    tb_ids ids;
    tb_ids_init(&ids);
    cr_assert_eq(tb_tokenizer_tokenize(t, text, strlen(text), &ids), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(ids.count, n, "[%s]: %d ids, expected %d", text, ids.count, n);
    for (int i = 0; i < n && i < ids.count; i++) cr_expect_eq(ids.ids[i], want[i], "[%s] id %d", text, i);
    tb_ids_free(&ids);
}

#define IDS(t, text, ...)                                                                    \
    do {                                                                                     \
        const int32_t w_[] = {__VA_ARGS__};                                                  \
        expect_ids(t, text, (int)(sizeof w_ / sizeof w_[0]), w_);                            \
    } while (0)

Test(wordpiece, greedy_longest_match)
{
    tb_tokenizer t;
    tiny_init(&t, 100, 1);
    IDS(&t, "unaffable", 5, 6, 7);      /* un ##aff ##able */
    IDS(&t, "abcbc", 11, 10);           /* abc ##bc, not a ##b ##c ##b ##c */
    IDS(&t, "abcc", 11, 12);            /* abc ##c */
    IDS(&t, "ab", 8, 9);                /* a ##b */
    IDS(&t, "unx a", 1, 8);             /* x uncoverable: the whole word is [UNK] */
    IDS(&t, "UNAFF, b", 5, 6, 17, 13);  /* lower-cased, comma split off */
    IDS(&t, "ÉÉ", 1);                   /* lower + strip: "ee" -> [UNK] */
    tb_tokenizer_free(&t);
}

Test(wordpiece, max_chars_counts_code_points)
{
    tb_tokenizer t;
    tiny_init(&t, 5, 0);
    IDS(&t, "abcbc", 11, 10);     /* exactly 5: fine */
    IDS(&t, "abcbcc", 1);         /* 6: [UNK] */
    IDS(&t, "ééééé", 15, 16, 16, 16, 16); /* 5 code points, 10 bytes: fine */
    IDS(&t, "éééééé", 1);
    tb_tokenizer_free(&t);
}

Test(wordpiece, vocab_without_unk_is_refused)
{
    const char *toks[] = {"a", "b"};
    tb_vocab v;
    cr_assert_eq(tb_vocab_from_tokens(&v, toks, 2), TB_OK);
    tb_tokenizer t;
    cr_expect_eq(tb_tokenizer_init_vocab(&t, &v, NULL), TB_EFORMAT);
    cr_expect(strstr(tb_err_msg(), "[UNK]"));
    tb_vocab_free(&v);
}

static void expect_encoding(const tb_encoding *e, int n, const int32_t *ids, const int32_t *types)
{
    cr_expect_eq(e->len, n, "length %d, expected %d", e->len, n);
    for (int i = 0; i < n && i < e->len; i++) {
        cr_expect_eq(e->input_ids[i], ids[i], "id %d", i);
        cr_expect_eq(e->token_type_ids[i], types[i], "type %d", i);
    }
}

Test(encode, pair_longest_first_truncation)
{
    tb_tokenizer t;
    tiny_init(&t, 100, 1);
    tb_encoding e;
    tb_encoding_init(&e);
    /* a: 5 tokens (a b c a b), b: 2 tokens (c c); max 6 -> 3 tokens for a + b.
     * _truncate_seq_pair: 7: a>b pop a (4); 6: pop a (3); 5: pop a (2); 4: a==b pop b (1). */
    cr_assert_eq(tb_tokenizer_encode(&t, "a b c a b", 9, "c c", 3, 6, &e), TB_OK, "%s", tb_err_msg());
    const int32_t ids[] = {2, 8, 13, 3, 14, 3}, types[] = {0, 0, 0, 0, 1, 1};
    expect_encoding(&e, 6, ids, types);
    cr_expect_eq(e.n_a, 2);
    cr_expect_eq(e.n_b, 1);
    cr_expect_eq(e.full_a, 5);
    cr_expect_eq(e.full_b, 2);
    int32_t pid[8], ptt[8], pm[8];
    cr_assert_eq(tb_encoding_pad(&e, 0, 8, pid, ptt, pm), TB_OK);
    const int32_t wid[] = {2, 8, 13, 3, 14, 3, 0, 0}, wtt[] = {0, 0, 0, 0, 1, 1, 0, 0}, wm[] = {1, 1, 1, 1, 1, 1, 0, 0};
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(pid[i], wid[i]);
        cr_expect_eq(ptt[i], wtt[i]);
        cr_expect_eq(pm[i], wm[i]);
    }
    cr_expect_eq(tb_encoding_pad(&e, 0, 5, pid, ptt, pm), TB_EINVAL);
    tb_encoding_free(&e);
    tb_tokenizer_free(&t);
}

Test(encode, single_truncation_and_empty_b)
{
    tb_tokenizer t;
    tiny_init(&t, 100, 1);
    tb_encoding e;
    tb_encoding_init(&e);
    cr_assert_eq(tb_tokenizer_encode(&t, "a b c", 5, NULL, 0, 4, &e), TB_OK);
    const int32_t ids[] = {2, 8, 13, 3}, zeros[] = {0, 0, 0, 0};
    expect_encoding(&e, 4, ids, zeros);
    /* An empty text_b is no text_b (the reference's `if example.text_b`). */
    cr_assert_eq(tb_tokenizer_encode(&t, "a b c", 5, "", 0, 4, &e), TB_OK);
    expect_encoding(&e, 4, ids, zeros);
    /* A text_b that tokenizes to nothing: pair truncation (max - 3) but no second [SEP]. */
    cr_assert_eq(tb_tokenizer_encode(&t, "a b c", 5, "\x01", 1, 5, &e), TB_OK);
    const int32_t ids2[] = {2, 8, 13, 3};
    expect_encoding(&e, 4, ids2, zeros);
    cr_expect_eq(tb_tokenizer_encode(&t, "a", 1, "b", 1, 2, &e), TB_EINVAL);
    cr_expect_eq(tb_tokenizer_encode(&t, "a", 1, NULL, 0, 1, &e), TB_EINVAL);
    tb_encoding_free(&e);
    tb_tokenizer_free(&t);
}

Test(encode, unk_literal)
{
    tb_tokenizer t;
    tb_tokenizer_opts o = tb_tokenizer_opts_default();
    o.unk_literal = "<unk>";
    cr_assert_eq(tb_tokenizer_init(&t, VOCAB, &o), TB_OK, "%s", tb_err_msg());
    /* "the <unk> of" -> the [UNK] of; "<unk>s" is not the literal -> < unk > s */
    IDS(&t, "the <unk> of <unk>s", 1996, 100, 1997, 1026, 4895, 2243, 1028, 1055);
    tb_tokenizer_free(&t);
}

/* ---- comparisons with Python ----------------------------------------------------------------- */

static char *run_python(const char *script, size_t *len)
{
    char dir[] = "/tmp/tb-tok-XXXXXX";
    cr_assert(mkdtemp(dir));
    char spath[256], opath[256], cmd[1024];
    snprintf(spath, sizeof spath, "%s/probe.py", dir);
    snprintf(opath, sizeof opath, "%s/out.txt", dir);
    FILE *f = fopen(spath, "w");
    cr_assert(f);
    fputs(script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s > %s", TB_PYTHON, spath, opath);
    cr_assert_eq(system(cmd), 0, "python failed: %s", cmd);
    f = fopen(opath, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    unlink(spath);
    unlink(opath);
    rmdir(dir);
    *len = (size_t)n;
    return buf;
}

/* Every code point c assigned in both Python's Unicode and utf8proc's (no surrogates, no private
 * use), in four probes: "c", c + "Σ", "A" + c + "Σ", "AΣ" + c. Python prints each probe's basic
 * tokens joined by spaces. This checks cleaning, control, whitespace, punctuation, CJK, lower()
 * (including the final-sigma context: Cased and Case_Ignorable) and NFD + Mn stripping. */
Test(python, every_code_point_basic_tokens, .timeout = 120)
{
    const char *script =
        "import sys, unicodedata\n"
        "sys.path.insert(0, '" TB_SOURCE_DIR "/bench')\n"
        "import bert_tokenization as b\n"
        "bt = b.BasicTokenizer(True)\n"
        "out = []\n"
        "for c in range(0x110000):\n"
        "    ch = chr(c)\n"
        "    cat = unicodedata.category(ch)\n"
        "    if cat in ('Cn', 'Cs', 'Co'):\n"
        "        continue\n"
        "    for p in (ch, ch + '\\u03a3', 'A' + ch + '\\u03a3', 'A\\u03a3' + ch):\n"
        "        out.append('%x %s' % (c, ' '.join(bt.tokenize(p))))\n"
        "sys.stdout.buffer.write('\\n'.join(out).encode('utf-8'))\n";
    size_t len;
    char *py = run_python(script, &len);
    tb_words w;
    tb_words_init(&w);
    char probe[16], got[256];
    long lines = 0, bad = 0, skipped = 0;
    char *p = py, *end = py + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        char *sp;
        unsigned long c = strtoul(p, &sp, 16);
        const char *want = sp + 1;
        size_t wantlen = (size_t)(nl - want);
        int k = (int)(lines % 4);
        lines++;
        char cb[5];
        int cl;
        if (c < 0x80) { cb[0] = (char)c; cl = 1; }
        else if (c < 0x800) { cb[0] = (char)(0xC0 | (c >> 6)); cb[1] = (char)(0x80 | (c & 0x3F)); cl = 2; }
        else if (c < 0x10000) {
            cb[0] = (char)(0xE0 | (c >> 12)); cb[1] = (char)(0x80 | ((c >> 6) & 0x3F));
            cb[2] = (char)(0x80 | (c & 0x3F)); cl = 3;
        } else {
            cb[0] = (char)(0xF0 | (c >> 18)); cb[1] = (char)(0x80 | ((c >> 12) & 0x3F));
            cb[2] = (char)(0x80 | ((c >> 6) & 0x3F)); cb[3] = (char)(0x80 | (c & 0x3F)); cl = 4;
        }
        size_t pl = 0;
        if (k == 2) probe[pl++] = 'A';
        if (k == 3) { memcpy(probe, "A\xce\xa3", 3); pl = 3; }
        memcpy(probe + pl, cb, (size_t)cl);
        pl += (size_t)cl;
        if (k == 1 || k == 2) { memcpy(probe + pl, "\xce\xa3", 2); pl += 2; }
        if (utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_CN) {
            skipped++; /* assigned only in Python's Unicode version */
            p = nl + 1;
            continue;
        }
        cr_assert_eq(tb_basic_tokenize(NULL, probe, pl, &w), TB_OK, "U+%04lX: %s", c, tb_err_msg());
        size_t gl = 0;
        for (int i = 0; i < w.count; i++) {
            size_t l = strlen(w.buf + w.off[i]);
            if (gl + l + 2 > sizeof got) break;
            if (i) got[gl++] = ' ';
            memcpy(got + gl, w.buf + w.off[i], l);
            gl += l;
        }
        if (gl != wantlen || memcmp(got, want, gl) != 0) {
            if (bad++ < 20)
                cr_log_error("U+%04lX probe %d: python [%.*s] tb [%.*s]", c, k, (int)wantlen, want, (int)gl, got);
        }
        p = nl + 1;
    }
    cr_expect_gt(lines, 4 * 100000L, "too few probes (%ld): is Python's unicodedata complete?", lines);
    cr_expect_lt(skipped, 100, "%ld probes skipped", skipped);
    cr_expect_eq(bad, 0, "%ld of %ld probes differ from Python", bad, lines);
    tb_words_free(&w);
    free(py);
}

/* 3000 random strings of words from many scripts, accents, CJK, emoji, controls and odd spaces,
 * through the Python port of tokenization.py with bert-base-uncased (ids compared), lower-cased
 * and cased. Python side: %s is the do_lower_case flag. */
static const char RANDOM_SCRIPT[] =
        "import sys, random\n"
        "sys.path.insert(0, '" TB_SOURCE_DIR "/bench')\n"
        "import bert_tokenization as b\n"
        "tok = b.FullTokenizer('" VOCAB "', do_lower_case=%s)\n"
        "rnd = random.Random(1234)\n"
        "pool = ['the', 'Hello', 'WORLD', 'unaffable', 'na\\u00efve', 'Caf\\u00e9', '\\u00c9COLE', 'stra\\u00dfe',\n"
        "  '\\ufb01ne', '\\u0130stanbul', '\\u039f\\u0394\\u039f\\u03a3', '\\u03a3\\u03b1\\u03c2', 'M\\u00fcnchen',\n"
        "  '\\u4f60\\u597d', '\\u65e5\\u672c\\u8a9e', '\\u3072\\u3089\\u304c\\u306a', '\\ud55c\\uad6d\\uc5b4',\n"
        "  '\\u041f\\u0440\\u0438\\u0432\\u0435\\u0442', '\\u0627\\u0644\\u0639\\u0631\\u0628\\u064a\\u0629',\n"
        "  '\\u05e9\\u05dc\\u05d5\\u05dd', '\\u0928\\u092e\\u0938\\u094d\\u0924\\u0947', '\\u0e2a\\u0e27\\u0e31\\u0e2a\\u0e14\\u0e35',\n"
        "  '\\U0001f600', '\\u2764\\ufe0f', '\\U0001f44d\\U0001f3fd', '\\U0001f468\\u200d\\U0001f469', '...', '--', \"'s\",\n"
        "  '\"', '(', ')', '$', '\\u20ac5', '\\u00bf', '\\u00ab', '\\u2014', '\\t', '\\r', '\\x01', '\\x7f', '\\u200b',\n"
        "  '\\u00a0', '\\u2028', '\\u3000', '\\u00ad', '\\ufeff', '\\ufffd', '\\u0301', 'a\\u0308', 'x' * 99, 'y' * 101,\n"
        "  'supercalifragilisticexpialidocious', 'e\\u0301\\u0327', '1,234.5', 'C++', 'http://x.org/a?b=c',\n"
        "  '\\u2160', '\\u24b6', '\\U0001f130', '\\u00aa', '\\u1e9e', '\\u0149', '\\u01c5', 'AI\\u03a3\\u0301']\n"
        "out = []\n"
        "for i in range(3000):\n"
        "    n = rnd.randint(0, 12)\n"
        "    s = ''.join(rnd.choice(pool) + rnd.choice(['', ' ', ' ', '  ', '.']) for _ in range(n))\n"
        "    ids = tok.convert_tokens_to_ids(tok.tokenize(s))\n"
        "    out.append(s.encode('utf-8').hex() + ' ' + ','.join(map(str, ids)))\n"
        "sys.stdout.write('\\n'.join(out))\n";

static void random_text_vs_reference(int lower)
{
    char script[8192];
    snprintf(script, sizeof script, RANDOM_SCRIPT, lower ? "True" : "False");
    size_t len;
    char *py = run_python(script, &len);
    tb_tokenizer t;
    tb_tokenizer_opts topts = tb_tokenizer_opts_default();
    topts.do_lower_case = lower;
    cr_assert_eq(tb_tokenizer_init(&t, VOCAB, &topts), TB_OK, "%s", tb_err_msg());
    tb_ids ids;
    tb_ids_init(&ids);
    char *text = malloc(len + 1);
    cr_assert(text);
    long lines = 0, bad = 0;
    char *p = py, *end = py + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        char *sp = memchr(p, ' ', (size_t)(nl - p));
        cr_assert(sp);
        size_t tl = 0;
        for (char *h = p; h + 1 < sp; h += 2) {
            unsigned v;
            sscanf(h, "%2x", &v);
            text[tl++] = (char)v;
        }
        lines++;
        cr_assert_eq(tb_tokenizer_tokenize(&t, text, tl, &ids), TB_OK, "%s", tb_err_msg());
        char *q = sp + 1;
        int32_t k = 0;
        int ok = 1;
        while (q < nl) {
            long v = strtol(q, &q, 10);
            if (k >= ids.count || ids.ids[k] != v) ok = 0;
            k++;
            if (q < nl && *q == ',') q++;
        }
        if (k != ids.count) ok = 0;
        if (!ok && bad++ < 10) cr_log_error("line %ld [%.*s] differs: python [%.*s]", lines, (int)tl, text,
                                            (int)(nl - sp - 1), sp + 1);
        p = nl + 1;
    }
    cr_expect_eq(lines, 3000);
    cr_expect_eq(bad, 0, "%ld of %ld random texts differ from the reference", bad, lines);
    free(text);
    tb_ids_free(&ids);
    tb_tokenizer_free(&t);
    free(py);
}

Test(python, random_mixed_text_matches_reference, .timeout = 120) { random_text_vs_reference(1); }
Test(python, random_mixed_text_matches_reference_cased, .timeout = 120) { random_text_vs_reference(0); }

/* Random bytes (mostly invalid UTF-8) and random valid code points: the tokenizer either
 * succeeds or reports TB_EFORMAT, never crashes or reads out of bounds (run under ASan). Valid
 * UTF-8 must always succeed. */
Test(robustness, random_bytes_and_code_points)
{
    tb_tokenizer t;
    cr_assert_eq(tb_tokenizer_init(&t, VOCAB, NULL), TB_OK, "%s", tb_err_msg());
    tb_encoding e;
    tb_encoding_init(&e);
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    char buf[512];
    for (int it = 0; it < 4000; it++) {
        size_t n = 0, want = (size_t)(it % 200);
        int valid = it % 2;
        while (n < want) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if (!valid) {
                buf[n++] = (char)(state & 0xFF);
                continue;
            }
            uint32_t c = (uint32_t)(state >> 11) % 0x110000;
            if (state & 0x300) c &= 0x7F; /* plenty of ASCII */
            if (c >= 0xD800 && c <= 0xDFFF) c = 'x';
            if (n + 4 > sizeof buf) break;
            if (c < 0x80) buf[n++] = (char)c;
            else if (c < 0x800) { buf[n++] = (char)(0xC0 | (c >> 6)); buf[n++] = (char)(0x80 | (c & 0x3F)); }
            else if (c < 0x10000) {
                buf[n++] = (char)(0xE0 | (c >> 12)); buf[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
                buf[n++] = (char)(0x80 | (c & 0x3F));
            } else {
                buf[n++] = (char)(0xF0 | (c >> 18)); buf[n++] = (char)(0x80 | ((c >> 12) & 0x3F));
                buf[n++] = (char)(0x80 | ((c >> 6) & 0x3F)); buf[n++] = (char)(0x80 | (c & 0x3F));
            }
        }
        /* exact-size heap copy so ASan sees any read past the end */
        char *text = malloc(n ? n : 1);
        cr_assert(text);
        memcpy(text, buf, n);
        size_t half = n / 2;
        while (valid && half > 0 && half < n && ((unsigned char)text[half] & 0xC0) == 0x80) half--; /* char boundary */
        int rc = tb_tokenizer_encode(&t, text, half, text + half, n - half, 64, &e);
        if (valid) cr_assert_eq(rc, TB_OK, "valid UTF-8 refused: %s", tb_err_msg());
        else cr_assert(rc == TB_OK || rc == TB_EFORMAT, "rc %d", rc);
        if (rc == TB_OK) {
            cr_assert_leq(e.len, 64);
            for (int32_t k = 0; k < e.len; k++) cr_assert(e.input_ids[k] >= 0 && e.input_ids[k] < t.vocab.count);
        }
        free(text);
    }
    tb_encoding_free(&e);
    tb_tokenizer_free(&t);
}
