/* Integration tests of tb-augment on the seed project's Chinese data (data/seed/): --cjk with a
 * Chinese vocabulary learned by tb-vocab and a random Hugging Face BertForMaskedLM over it
 * (tests/reference/py/augment_ref.py make-model); --lenient on the real malformed line 9088 of
 * train.txt; and the shipped defaults of --stopwords and --glove, found beside the executable
 * (EXEDIR/../share/tinybert-c/) and nowhere else.
 *
 * The expectations are computed here from the input text alone: which characters are CJK
 * ideographs (the Unicode blocks of the BERT tokenizer's _is_chinese_char, decoded by this file's
 * own UTF-8 reader), so how many eligible words there are, and the shape every new row must have. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "proc.h"
#include "repodata.h"

#define AUGMENT TB_BIN_DIR "/tb-augment"
#define VOCAB_BIN TB_BIN_DIR "/tb-vocab"
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

static int exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* ---- this file's own UTF-8 reading and CJK test --------------------------------------------- */

/* Decodes the code point at s; returns its byte length (valid UTF-8 assumed: the data is). */
static int utf8_next(const char *s, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) return *cp = u[0], 1;
    if (u[0] < 0xE0) return *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F), 2;
    if (u[0] < 0xF0) return *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F), 3;
    *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
          (u[3] & 0x3F);
    return 4;
}

/* The CJK Unified Ideographs blocks of google-research/bert tokenization.py _is_chinese_char. */
static int is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* The code points of text[0..len), white space dropped and ASCII lower-cased, into cps. */
static int codepoints(const char *text, size_t len, uint32_t *cps, int max)
{
    int n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)utf8_next(text + i, &cp);
        if (cp == ' ' || cp == '\t') continue;
        cr_assert_lt(n, max);
        cps[n++] = cp < 0x80 ? (uint32_t)tolower((int)cp) : cp;
    }
    return n;
}

static int64_t count_cjk(const char *text, size_t len, uint32_t skip)
{
    int64_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)utf8_next(text + i, &cp);
        n += is_cjk(cp) && cp != skip;
    }
    return n;
}

/* ---- the fixture: a Chinese vocabulary, a random MLM over it, seed rows ---------------------- */

static char dir[256];

/* The test input: lines 1-5 of train-3000.txt, then lines 9086-9090 of train.txt, whose third
 * line (9088) is a continuation fragment without a label: it is line 8 here. */
#define BAD_LINE 8
#define GOOD_ROWS 9

static void setup(void)
{
    tb_proc_tmpdir(dir, sizeof dir);
    cr_assert_eq(tb_proc_sh(VOCAB_BIN " --input '%s' --format simple --vocab-size 3000 --output %s/vocab.txt --log-level warn",
                    tb_test_data("seed/train-3000.txt"), dir),
                 0);
    cr_assert_eq(tb_proc_sh(REF " make-model %s/m --vocab %s/vocab.txt --layers 1 --hidden 32 --heads 2 --inter 64 "
                        "--max-pos 512 --seed 5",
                    dir, dir),
                 0);
    cr_assert_eq(tb_proc_sh("head -n 5 '%s' > %s/in.txt && sed -n 9086,9090p '%s' >> %s/in.txt",
                    tb_test_data("seed/train-3000.txt"), dir, tb_test_data("seed/train.txt"), dir),
                 0);
}

static void teardown(void)
{
    tb_proc_sh("rm -rf %s", dir);
}

TestSuite(augment_seed, .init = setup, .fini = teardown, .timeout = 600);

/* Splits text into its lines (in place); returns the count. */
static int lines_of(char *text, char **line, int max)
{
    int n = 0;
    for (char *p = text; *p && n < max;) {
        line[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        p = nl + 1;
    }
    return n;
}

/* "key":N in a JSON line. */
static long long json_int(const char *text, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(text, k);
    cr_assert(p, "no %s in %s", key, text);
    return atoll(p + strlen(k));
}

Test(augment_seed, cjk_rows_on_seed_data_with_lenient)
{
    char cmd_common[1024];
    snprintf(cmd_common, sizeof cmd_common,
             "--input %s/in.txt --model %s/m --vectors none --cjk --n 4 --p 0.4 --seed 3 --progress none", dir, dir);

    /* strict: the malformed line stops the run, named with its file and line; no output */
    cr_assert_eq(tb_proc_sh(AUGMENT " %s --output %s/strict.txt 2> %s/strict.err", cmd_common, dir, dir), 1);
    char p[512];
    snprintf(p, sizeof p, "%s/strict.err", dir);
    char *err = slurp(p);
    char want[512];
    snprintf(want, sizeof want, "%s/in.txt:%d:", dir, BAD_LINE);
    cr_assert(strstr(err, want), "strict error does not name %s: %s", want, err);
    free(err);
    snprintf(p, sizeof p, "%s/strict.txt", dir);
    cr_assert(!exists(p), "a failed run left %s", p);

    /* lenient: skipped, named, counted; every good row augmented */
    cr_assert_eq(tb_proc_sh(AUGMENT " %s --lenient --output %s/out.txt --metrics %s/m.jsonl 2> %s/lenient.err", cmd_common, dir,
                    dir, dir),
                 0);
    snprintf(p, sizeof p, "%s/lenient.err", dir);
    err = slurp(p);
    cr_assert(strstr(err, want), "the skipped line is not named (%s): %s", want, err);
    cr_assert(strstr(err, "skipped 1 malformed rows"), "%s", err);
    free(err);

    /* expected counts from the input: eligible words = the CJK ideographs of the good rows */
    snprintf(p, sizeof p, "%s/in.txt", dir);
    char *in = slurp(p);
    char *in_line[32];
    int n_in = lines_of(in, in_line, 32);
    cr_assert_eq(n_in, GOOD_ROWS + 1);
    char *good[GOOD_ROWS];
    int ng = 0;
    int64_t cjk_total = 0;
    for (int i = 0; i < n_in; i++) {
        if (i + 1 == BAD_LINE) {
            cr_assert_eq(in_line[i][0], '\t', "line %d is the continuation fragment", BAD_LINE);
            continue;
        }
        good[ng++] = in_line[i];
        cjk_total += count_cjk(in_line[i], (size_t)(strrchr(in_line[i], '\t') - in_line[i]), 0);
    }
    cr_assert_eq(ng, GOOD_ROWS);
    cr_assert_gt(cjk_total, 300);
    snprintf(p, sizeof p, "%s/m.jsonl", dir);
    char *metrics = slurp(p);
    cr_assert_eq(json_int(metrics, "rows"), GOOD_ROWS);
    cr_assert_eq(json_int(metrics, "skipped"), 1);
    cr_assert_eq(json_int(metrics, "eligible"), cjk_total, "every CJK character is a word");
    cr_assert_eq(json_int(metrics, "mlm_words"), cjk_total, "with a Chinese vocabulary each is one piece");
    long long rows_out = json_int(metrics, "rows_out");
    free(metrics);

    /* rows: each original verbatim, then its new rows: same label, the same characters except
     * CJK ideographs replaced by CJK ideographs, no space beside a CJK character */
    snprintf(p, sizeof p, "%s/out.txt", dir);
    char *out = slurp(p);
    char *out_line[256];
    int n_out = lines_of(out, out_line, 256);
    cr_assert_eq(n_out, rows_out);
    cr_assert_gt(n_out, 3 * GOOD_ROWS, "4 draws at p = 0.4 over ~90 characters: new rows expected");
    int g = -1, new_rows = 0;
    static uint32_t a[4096], b[4096];
    int na = 0;
    for (int i = 0; i < n_out; i++) {
        if (g + 1 < GOOD_ROWS && strcmp(out_line[i], good[g + 1]) == 0) {
            g++;
            const char *tab = strrchr(good[g], '\t');
            na = codepoints(good[g], (size_t)(tab - good[g]), a, 4096);
            continue;
        }
        cr_assert_geq(g, 0, "row %d before any original: %s", i + 1, out_line[i]);
        const char *tab = strrchr(out_line[i], '\t');
        cr_assert(tab, "row %d has no label", i + 1);
        cr_assert_str_eq(tab, strrchr(good[g], '\t'), "row %d: the label is carried over", i + 1);
        int nb = codepoints(out_line[i], (size_t)(tab - out_line[i]), b, 4096);
        cr_assert_eq(nb, na, "row %d: one character for one character", i + 1);
        int changed = 0;
        for (int k = 0; k < na; k++) {
            if (is_cjk(a[k])) {
                cr_assert(is_cjk(b[k]), "row %d, character %d: U+%04X replaced by U+%04X, not an ideograph", i + 1, k,
                          a[k], b[k]);
                changed += a[k] != b[k];
            } else {
                cr_assert_eq(b[k], a[k], "row %d, character %d: only ideographs change", i + 1, k);
            }
        }
        cr_assert_gt(changed, 0, "row %d equals its original", i + 1);
        for (const char *s = out_line[i]; s < tab;) {
            uint32_t cp, next;
            int l = utf8_next(s, &cp);
            if (cp == ' ' && s + 1 < tab) {
                utf8_next(s + 1, &next);
                cr_assert(!is_cjk(next), "row %d: a space before an ideograph", i + 1);
            } else if (is_cjk(cp) && s + l < tab) {
                utf8_next(s + l, &next);
                cr_assert_neq(next, ' ', "row %d: a space after an ideograph", i + 1);
            }
            s += l;
        }
        new_rows++;
    }
    cr_assert_eq(g, GOOD_ROWS - 1, "every original row is written, in order");
    cr_assert_eq(new_rows, n_out - GOOD_ROWS);
    free(out);
    free(in);
}

/* The executable alone in a folder: the shipped files are looked for in ../share/tinybert-c/ and
 * nowhere else (not in the source tree it was built from). */
Test(augment_seed, shipped_defaults_beside_the_executable)
{
    char lone[512], p[600];
    snprintf(lone, sizeof lone, "%s/prefix", dir);
    cr_assert_eq(tb_proc_sh("mkdir -p %s/bin && cp " AUGMENT " %s/bin/", lone, lone), 0);
    char run[2048];
    snprintf(run, sizeof run, "%s/bin/tb-augment --input %s/in.txt --model %s/m --cjk --n 2 --lenient --progress none",
             lone, dir, dir);

    /* no --stopwords, nothing shipped: a clear error naming the option and the place looked at */
    cr_assert_eq(tb_proc_sh("%s --vectors none --output %s/o1.txt 2> %s/e1.txt", run, dir, dir), 1);
    snprintf(p, sizeof p, "%s/e1.txt", dir);
    char *err = slurp(p);
    cr_assert(strstr(err, "--stopwords"), "%s", err);
    cr_assert(strstr(err, "share/tinybert-c/augment/stopwords-en.txt"), "%s", err);
    free(err);
    snprintf(p, sizeof p, "%s/o1.txt", dir);
    cr_assert(!exists(p));

    /* an explicit --stopwords works from anywhere */
    cr_assert_eq(tb_proc_sh("%s --vectors none --stopwords '%s' --output %s/o2.txt --log-level warn", run,
                    tb_test_data("augment/stopwords-en.txt"), dir),
                 0);

    /* --vectors glove without --glove and without a shipped GloVe file: a clear error too */
    cr_assert_eq(tb_proc_sh("%s --vectors glove --stopwords '%s' --output %s/o3.txt 2> %s/e3.txt", run,
                    tb_test_data("augment/stopwords-en.txt"), dir, dir),
                 1);
    snprintf(p, sizeof p, "%s/e3.txt", dir);
    err = slurp(p);
    cr_assert(strstr(err, "--glove"), "%s", err);
    cr_assert(strstr(err, "share/tinybert-c/glove/glove.6B.100d.first2604.txt"), "%s", err);
    free(err);

    /* a list shipped in ../share/tinybert-c/ is the one read: one that makes 旁 a stop word takes
     * exactly its occurrences out of the eligible words */
    cr_assert_eq(tb_proc_sh("mkdir -p %s/share/tinybert-c/augment && printf '# test list\\nthe\\n\\346\\227\\201\\n' > "
                    "%s/share/tinybert-c/augment/stopwords-en.txt",
                    lone, lone),
                 0);
    cr_assert_eq(tb_proc_sh("%s --vectors none --output %s/o4.txt --metrics %s/m4.jsonl --log-level error", run, dir, dir), 0);
    snprintf(p, sizeof p, "%s/in.txt", dir);
    char *in = slurp(p);
    char *line[32];
    int n = lines_of(in, line, 32);
    int64_t want = 0;
    for (int i = 0; i < n; i++) {
        const char *tab = strrchr(line[i], '\t');
        if (line[i][0] == '\t') continue; /* the skipped fragment */
        want += count_cjk(line[i], (size_t)(tab - line[i]), 0x65C1 /* 旁 */);
    }
    free(in);
    snprintf(p, sizeof p, "%s/m4.jsonl", dir);
    char *m = slurp(p);
    cr_assert_eq(json_int(m, "eligible"), want, "%s", m);
    free(m);

    /* and the GloVe file shipped there is found too */
    cr_assert_eq(tb_proc_sh("mkdir -p %s/share/tinybert-c/glove && cp '%s' %s/share/tinybert-c/glove/", lone,
                    tb_test_data("glove/glove.6B.100d.first2604.txt"), lone),
                 0);
    cr_assert_eq(tb_proc_sh("%s --vectors glove --output %s/o5.txt --log-level error", run, dir), 0);

    /* the build tree's own executable finds build/share/tinybert-c/ (CMake copies the files) */
    cr_assert_eq(tb_proc_sh(AUGMENT " --input %s/in.txt --model %s/m --cjk --n 2 --lenient --vectors glove --progress none "
                            "--log-level error --output %s/o6.txt",
                    dir, dir, dir),
                 0);
}
