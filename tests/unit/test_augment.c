/* tb-augment on hand-made cases: stop words and eligibility, candidates of a tiny model whose
 * MLM predictions are known (word embeddings zero, so the logits are the decoder bias), "##"
 * filtering, M, word-vector neighbours, p, N, uniqueness, determinism, batched = one at a time,
 * rows and label carry-over, and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment/augment.h"
#include "augment/cands.h"
#include "augment/rows.h"
#include "augment/stopwords.h"
#include "augment/vectors.h"
#include "tb/base/error.h"

#define STOPWORDS TB_SOURCE_DIR "/data/augment/stopwords-en.txt"

/* ---- helpers ------------------------------------------------------------------------------------ */

static char tmpdir[64];

static void mk_tmp(void)
{
    strcpy(tmpdir, "/tmp/tb-augunit-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
}

static void rm_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text)
{
    static char path[8][256];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    return p;
}

static char *read_file(const char *path)
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

static const char *TOKS[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the",  "movie", "was", "good",
                             "great", "##ly",  "fun",   "bad",   "film",   "plot", "!",     "dull", "##est",
                             "play",  "##ing", "a",     "very",  "fine",   "show", "\xe4\xb8\xad", "\xe5\xa5\xbd"};
enum { V_TINY = sizeof TOKS / sizeof TOKS[0] };

static int tok_id(const char *t)
{
    for (int i = 0; i < V_TINY; i++)
        if (strcmp(TOKS[i], t) == 0) return i;
    cr_assert_fail("no token %s", t);
    return -1;
}

typedef struct tiny {
    tb_tokenizer tok;
    tb_bert_model model;
    tb_stopwords stop;
    tb_vectors vec;
    tb_cands c;
} tiny;

static tb_bert_config tiny_config(int mlm)
{
    tb_bert_config c = {0};
    c.vocab_size = V_TINY;
    c.hidden_size = 8;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.intermediate_size = 16;
    c.max_position_embeddings = 64;
    c.type_vocab_size = 2;
    c.layer_norm_eps = 1e-12f;
    c.initializer_range = 0.5f;
    c.head = TB_HEAD_NONE;
    c.mlm_head = mlm;
    return c;
}

/* known: word embeddings zero, so every MLM logit is the decoder bias, whatever the input */
static void tiny_open(tiny *t, int M, int known, int one_at_a_time, int batch)
{
    memset(t, 0, sizeof *t);
    tb_vocab v;
    cr_assert_eq(tb_vocab_from_tokens(&v, TOKS, V_TINY), TB_OK);
    cr_assert_eq(tb_tokenizer_init_vocab(&t->tok, &v, NULL), TB_OK, "%s", tb_err_msg());
    tb_bert_config cfg = tiny_config(1);
    cr_assert_eq(tb_bert_init(&t->model, &cfg), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&t->model, 3);
    float *bias = t->model.params.items[t->model.mlm_dec_b].value.data;
    if (known) {
        float *emb = t->model.params.items[t->model.word_w].value.data;
        memset(emb, 0, sizeof(float) * V_TINY * 8);
        /* order: fun 5, ##ly 4.5, dull 4, film 3, plot 2, bad 1, others 0 */
        for (int i = 0; i < V_TINY; i++) bias[i] = 0;
        bias[tok_id("fun")] = 5, bias[tok_id("##ly")] = 4.5f, bias[tok_id("dull")] = 4;
        bias[tok_id("film")] = 3, bias[tok_id("plot")] = 2, bias[tok_id("bad")] = 1;
    }
    cr_assert_eq(tb_stopwords_load(&t->stop, STOPWORDS), TB_OK, "%s", tb_err_msg());
    const char *words[] = {"playing", "play", "plot", "fun", "<unk>", "show"};
    const float mat[] = {1, 0, 0, 0.9f, 0.1f, 0, 0, 1, 0, 0.5f, 0.5f, 0, 0, 0, 0, 0.6f, -0.8f, 0};
    cr_assert_eq(tb_vectors_from_rows(&t->vec, words, 6, mat, 3), TB_OK, "%s", tb_err_msg());
    tb_cands_opts o = {.M = M, .batch = batch, .tokens = 4096, .one_at_a_time = one_at_a_time};
    cr_assert_eq(tb_cands_init(&t->c, &t->tok, &t->model, &t->stop, &t->vec, &o), TB_OK, "%s", tb_err_msg());
}

static void tiny_close(tiny *t)
{
    tb_cands_free(&t->c);
    tb_vectors_free(&t->vec);
    tb_stopwords_free(&t->stop);
    tb_bert_free(&t->model);
    tb_tokenizer_free(&t->tok);
}

/* "cands of word k" as "a b c" (for assertions). */
static const char *cands_of(const tb_aug_sentence *s, int32_t k)
{
    static char buf[512];
    buf[0] = 0;
    for (int32_t e = 0; e < s->n_elig; e++) {
        if (s->elig[e] != k) continue;
        for (int32_t i = s->cand_off[e]; i < s->cand_off[e + 1]; i++) {
            if (i > s->cand_off[e]) strcat(buf, " ");
            strcat(buf, s->cand[i]);
        }
        return buf;
    }
    return "(not eligible)";
}

static void analyse(tiny *t, tb_aug_sentence *s, const char *text)
{
    tb_aug_sentence_init(s);
    cr_assert_eq(tb_cands_prepare(&t->c, s, text, strlen(text)), TB_OK, "%s", tb_err_msg());
    tb_aug_sentence *p = s;
    cr_assert_eq(tb_cands_compute(&t->c, &p, 1), TB_OK, "%s", tb_err_msg());
}

/* ---- stop words and eligibility ---------------------------------------------------------------- */

Test(augment, stopword_list_is_nltk_plus_two)
{
    tb_stopwords s;
    cr_assert_eq(tb_stopwords_load(&s, STOPWORDS), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(s.count, 181, "NLTK's 179 + 's + 're, got %d", s.count);
    const char *in[] = {"i", "the", "'s", "'re", "mightn't", "wouldn", "y", "ourselves", "should've"};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) cr_assert(tb_stopwords_has(&s, in[i], strlen(in[i])), "%s", in[i]);
    const char *out[] = {"film", "movie", "th", "thee", "'", "", "z"};
    for (size_t i = 0; i < sizeof out / sizeof *out; i++)
        cr_assert(!tb_stopwords_has(&s, out[i], strlen(out[i])), "%s", out[i]);
    tb_stopwords_free(&s);
}

Test(augment, eligibility)
{
    tb_stopwords s;
    cr_assert_eq(tb_stopwords_load(&s, STOPWORDS), TB_OK, "%s", tb_err_msg());
    struct {
        const char *w;
        int latin, cjk;
    } cases[] = {
        {"film", 1, 1}, {"the", 0, 0},   {"very", 0, 0},   {"Film", 0, 0}, {"x1", 0, 0},     {"don't", 0, 0},
        {"caf\xc3\xa9", 0, 0}, {"-", 0, 0}, {"", 0, 0},   {"a", 0, 0},    {"zz", 1, 1},     {"\xe4\xb8\xad", 0, 1},
        {"\xe4\xb8\xad\xe6\x96\x87", 0, 0}, {"\xe3\x81\x82", 0, 0}, /* hiragana is not an ideograph */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = strlen(cases[i].w);
        cr_assert_eq(tb_augment_eligible(&s, cases[i].w, n, 0), cases[i].latin, "'%s'", cases[i].w);
        cr_assert_eq(tb_augment_eligible(&s, cases[i].w, n, 1), cases[i].cjk, "'%s' (cjk)", cases[i].w);
    }
    tb_stopwords_free(&s);
}

Test(augment, stopword_file_errors)
{
    mk_tmp();
    tb_stopwords s;
    cr_assert_eq(tb_stopwords_load(&s, write_file("sw1", "# only a comment\n\n")), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "no words"), "%s", tb_err_msg());
    cr_assert_eq(tb_stopwords_load(&s, write_file("sw2", "a\nb c\n")), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "sw2:2"), "%s", tb_err_msg());
    rm_tmp();
}

/* ---- candidates --------------------------------------------------------------------------------- */

Test(augment, known_mlm_candidates_drop_hash_pieces_and_keep_top_m)
{
    tiny t;
    tiny_open(&t, 3, 1, 0, 64);
    tb_aug_sentence s;
    /* basic tokens: the movie was playing great ! ; pieces: the movie was play ##ing great ! */
    analyse(&t, &s, "The movie was playing GREAT!");
    cr_assert_eq(s.words.count, 6);
    cr_assert_eq(s.n_elig, 3, "movie, playing, great");
    cr_assert_str_eq(cands_of(&s, 0), "(not eligible)");
    cr_assert_str_eq(cands_of(&s, 2), "(not eligible)", "'was' is a stop word");
    /* top 3 by logit: fun, ##ly, dull -> ##ly dropped */
    cr_assert_str_eq(cands_of(&s, 1), "fun dull");
    cr_assert_str_eq(cands_of(&s, 4), "fun dull");
    /* playing = play ##ing: cosine neighbours, itself excluded: play .994, fun .707, (plot 0, show .6) */
    cr_assert_str_eq(cands_of(&s, 3), "play fun show");
    cr_assert_eq(s.kind[0], TB_CAND_MLM);
    cr_assert_eq(s.kind[1], TB_CAND_VECTOR);
    tb_aug_sentence_free(&s);
    tiny_close(&t);

    tiny_open(&t, 5, 1, 0, 64);
    analyse(&t, &s, "a fine show, the dullest!");
    cr_assert_str_eq(cands_of(&s, 1), "fun dull film plot");
    cr_assert_str_eq(cands_of(&s, 2), "fun dull film plot");
    cr_assert_str_eq(cands_of(&s, 5), "dullest", "no vector: the word is its own candidate");
    cr_assert_eq(t.c.no_candidate, 1);
    tb_aug_sentence_free(&s);
    tiny_close(&t);
}

Test(augment, cjk_characters_are_words_with_the_option)
{
    tiny t;
    tiny_open(&t, 3, 1, 0, 64);
    tb_aug_sentence s;
    analyse(&t, &s, "\xe5\xa5\xbd\xe4\xb8\xad film"); /* two ideographs, split by the tokenizer */
    cr_assert_eq(s.words.count, 3);
    cr_assert_eq(s.n_elig, 1, "without --cjk only 'film'");
    tb_aug_sentence_free(&s);
    t.c.opts.cjk = 1;
    analyse(&t, &s, "\xe5\xa5\xbd\xe4\xb8\xad film");
    cr_assert_eq(s.n_elig, 3);
    /* top 3: fun, ##ly, dull; a CJK word keeps only CJK ideographs of them: none, so itself */
    cr_assert_str_eq(cands_of(&s, 0), "\xe5\xa5\xbd");
    cr_assert_str_eq(cands_of(&s, 1), "\xe4\xb8\xad");
    cr_assert_str_eq(cands_of(&s, 2), "fun dull");
    tb_aug_sentence_free(&s);
    tiny_close(&t);
}

/* 中 4.8 and 好 4.2 among the known logits: top 4 = fun 5, 中 4.8, ##ly 4.5, 好 4.2. */
static void tiny_open_cjk(tiny *t)
{
    tiny_open(t, 4, 1, 0, 64);
    float *bias = t->model.params.items[t->model.mlm_dec_b].value.data;
    bias[tok_id("\xe4\xb8\xad")] = 4.8f;
    bias[tok_id("\xe5\xa5\xbd")] = 4.2f;
    t->c.opts.cjk = 1;
}

Test(augment, cjk_words_get_cjk_candidates_and_sentences_without_spaces)
{
    tiny t;
    tiny_open_cjk(&t);
    tb_aug_sentence s;
    const char *text = "\xe5\xa5\xbd\xe4\xb8\xad film"; /* 好中 film */
    analyse(&t, &s, text);
    cr_assert_str_eq(cands_of(&s, 0), "\xe4\xb8\xad \xe5\xa5\xbd", "CJK word: 中 好 (fun, ##ly dropped)");
    cr_assert_str_eq(cands_of(&s, 1), "\xe4\xb8\xad \xe5\xa5\xbd");
    cr_assert_str_eq(cands_of(&s, 2), "fun \xe4\xb8\xad \xe5\xa5\xbd", "other words: as the reference (## dropped)");
    /* p = 1 and many draws: every combination (film always replaced, so none is the original),
     * written without a space beside a CJK character (so "中中fun"): 2 x 2 x 3 = 12 sentences */
    const char *cjk[] = {"\xe4\xb8\xad", "\xe5\xa5\xbd"};
    const char *third[] = {"fun", "\xe4\xb8\xad", "\xe5\xa5\xbd"};
    char want[12][32];
    int nw = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 3; c++) {
                snprintf(want[nw++], sizeof want[0], "%s%s%s", cjk[a], cjk[b], third[c]);
            }
    tb_strs out = {0};
    cr_assert_eq(tb_augment_draw(&s, text, 7, 0, 0, 400, 1.0, &out), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(out.n, 12, "got %d sentences", out.n);
    for (int i = 0; i < out.n; i++) {
        const char *got = out.buf + out.off[i];
        int found = 0;
        for (int k = 0; k < nw && !found; k++) found = strcmp(got, want[k]) == 0;
        cr_expect(found, "unexpected sentence '%s'", got);
        cr_expect_str_neq(got, "\xe5\xa5\xbd\xe4\xb8\xad film");
    }
    tb_strs_free(&out);
    tb_aug_sentence_free(&s);
    tiny_close(&t);
}

Test(augment, mask_beyond_the_model_positions_gets_no_candidates)
{
    tiny t;
    tiny_open(&t, 3, 1, 0, 64);
    /* max_position_embeddings 64: a mask at position >= 64 keeps the word */
    char text[1024] = "";
    for (int i = 0; i < 70; i++) strcat(text, "film ");
    tb_aug_sentence s;
    analyse(&t, &s, text);
    cr_assert_eq(s.n_elig, 70);
    cr_assert_str_eq(cands_of(&s, 0), "fun dull");
    cr_assert_str_eq(cands_of(&s, 62), "fun dull", "mask at position 63");
    cr_assert_str_eq(cands_of(&s, 63), "film", "mask at position 64");
    cr_assert_str_eq(cands_of(&s, 69), "film");
    tb_aug_sentence_free(&s);
    tiny_close(&t);
}

Test(augment, batched_equals_one_at_a_time)
{
    const char *texts[] = {"good film , bad plot", "a very fine show", "great", "the movie was playing great fun",
                           "dull dull film play bad good fine show movie plot", "nothing here is known"};
    enum { NT = sizeof texts / sizeof *texts };
    tiny a, b;
    tiny_open(&a, 6, 0, 0, 4); /* random model: real forward passes, batches of up to 4 */
    tiny_open(&b, 6, 0, 1, 4);
    tb_aug_sentence sa[NT], sb[NT], *pa[NT], *pb[NT];
    for (int i = 0; i < NT; i++) {
        tb_aug_sentence_init(&sa[i]);
        tb_aug_sentence_init(&sb[i]);
        cr_assert_eq(tb_cands_prepare(&a.c, &sa[i], texts[i], strlen(texts[i])), TB_OK);
        cr_assert_eq(tb_cands_prepare(&b.c, &sb[i], texts[i], strlen(texts[i])), TB_OK);
        pa[i] = &sa[i];
        pb[i] = &sb[i];
    }
    cr_assert_eq(tb_cands_compute(&a.c, pa, NT), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_cands_compute(&b.c, pb, NT), TB_OK, "%s", tb_err_msg());
    cr_assert_lt(a.c.mlm_forwards, b.c.mlm_forwards);
    int differs_between_words = 0;
    for (int i = 0; i < NT; i++) {
        cr_assert_eq(sa[i].n_elig, sb[i].n_elig);
        for (int e = 0; e < sa[i].n_elig; e++) {
            char x[512];
            strcpy(x, cands_of(&sa[i], sa[i].elig[e]));
            cr_assert_str_eq(x, cands_of(&sb[i], sb[i].elig[e]), "sentence %d word %d", i, sa[i].elig[e]);
            if (e > 0 && strcmp(x, cands_of(&sa[i], sa[i].elig[0])) != 0) differs_between_words = 1;
        }
    }
    cr_assert(differs_between_words, "a random model should predict differently at different masks");
    for (int i = 0; i < NT; i++) {
        tb_aug_sentence_free(&sa[i]);
        tb_aug_sentence_free(&sb[i]);
    }
    tiny_close(&a);
    tiny_close(&b);
}

Test(augment, model_without_mlm_head_is_refused)
{
    tiny t;
    tiny_open(&t, 3, 1, 0, 8);
    tb_bert_model m;
    tb_bert_config cfg = tiny_config(0);
    cr_assert_eq(tb_bert_init(&m, &cfg), TB_OK);
    tb_cands c;
    tb_cands_opts o = {.M = 3, .batch = 8, .tokens = 512};
    cr_assert_eq(tb_cands_init(&c, &t.tok, &m, &t.stop, NULL, &o), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "no MLM head"), "%s", tb_err_msg());
    tb_bert_free(&m);
    tiny_close(&t);
}

/* ---- draws -------------------------------------------------------------------------------------- */

static int count_words_changed(const char *out, const char *base)
{
    char a[1024], b[1024];
    strcpy(a, out);
    strcpy(b, base);
    int n = 0;
    char *sa, *sb;
    char *x = strtok_r(a, " ", &sa), *y = strtok_r(b, " ", &sb);
    while (x && y) {
        n += strcmp(x, y) != 0;
        x = strtok_r(NULL, " ", &sa);
        y = strtok_r(NULL, " ", &sb);
    }
    cr_assert(!x && !y, "word counts differ: '%s' vs '%s'", out, base);
    return n;
}

Test(augment, draws_p_n_uniqueness_and_determinism)
{
    tiny t;
    tiny_open(&t, 3, 1, 0, 64);
    tb_aug_sentence s;
    analyse(&t, &s, "Good film, bad plot!");
    const char *base = "good film , bad plot !";
    tb_strs out = {0}, again = {0};
    /* p = 0: every draw is the original */
    cr_assert_eq(tb_augment_draw(&s, "Good film, bad plot!", 1, 0, 0, 30, 0.0, &out), TB_OK);
    cr_assert_eq(out.n, 0);
    /* p = 1: every eligible word replaced by one of {fun, dull}: 4 words -> at most 16 sentences */
    cr_assert_eq(tb_augment_draw(&s, "Good film, bad plot!", 1, 0, 0, 200, 1.0, &out), TB_OK);
    cr_assert_eq(out.n, 16, "all 2^4 combinations in 200 draws, got %d", out.n);
    for (int i = 0; i < out.n; i++) {
        const char *x = out.buf + out.off[i];
        cr_assert_eq(count_words_changed(x, base), 4, "%s", x);
        for (int j = 0; j < i; j++) cr_assert_str_neq(x, out.buf + out.off[j], "repeated draw");
    }
    /* N caps the draws */
    cr_assert_eq(tb_augment_draw(&s, "Good film, bad plot!", 1, 0, 0, 3, 1.0, &out), TB_OK);
    cr_assert_leq(out.n, 3);
    cr_assert_geq(out.n, 1);
    /* the same (seed, column, example) gives the same sentences; another example other ones */
    cr_assert_eq(tb_augment_draw(&s, "x", 9, 1, 5, 10, 0.5, &out), TB_OK);
    cr_assert_eq(tb_augment_draw(&s, "x", 9, 1, 5, 10, 0.5, &again), TB_OK);
    cr_assert_eq(out.n, again.n);
    cr_assert_eq(memcmp(out.buf, again.buf, out.len), 0);
    cr_assert_eq(tb_augment_draw(&s, "x", 9, 1, 6, 10, 0.5, &again), TB_OK);
    cr_assert(out.len != again.len || memcmp(out.buf, again.buf, out.len) != 0);
    /* the unchanged sentence (joined tokens) is never an augmented one */
    for (int i = 0; i < out.n; i++) cr_assert_str_neq(out.buf + out.off[i], base);
    tb_strs_free(&out);
    tb_strs_free(&again);
    tb_aug_sentence_free(&s);
    tiny_close(&t);
}

Test(augment, replacement_rate_is_p)
{
    tiny t;
    tiny_open(&t, 3, 1, 0, 64);
    /* 60 eligible words with candidates {fun, dull}, none equal to the word: a replaced word
     * always changes; 20 draws -> 1200 Bernoulli(p) trials per p */
    char text[1024] = "";
    for (int i = 0; i < 60; i++) strcat(text, i % 2 ? "film " : "plot ");
    tb_aug_sentence s;
    analyse(&t, &s, text);
    cr_assert_eq(s.n_elig, 60);
    char base[1024];
    strcpy(base, text);
    base[strlen(base) - 1] = 0;
    double ps[] = {0.1, 0.4, 0.8};
    for (int k = 0; k < 3; k++) {
        tb_strs out = {0};
        cr_assert_eq(tb_augment_draw(&s, text, 42, 0, 0, 20, ps[k], &out), TB_OK);
        cr_assert_eq(out.n, 20, "60 words: repeats are (nearly) impossible");
        int changed = 0;
        for (int i = 0; i < out.n; i++) changed += count_words_changed(out.buf + out.off[i], base);
        double rate = changed / 1200.0, sd = sqrt(ps[k] * (1 - ps[k]) / 1200.0);
        cr_assert(fabs(rate - ps[k]) < 4 * sd, "p %.1f: rate %.4f (4 sd = %.4f)", ps[k], rate, 4 * sd);
        tb_strs_free(&out);
    }
    tb_aug_sentence_free(&s);
    tiny_close(&t);
}

Test(augment, default_n_per_task)
{
    cr_assert_eq(tb_augment_default_n("sst-2"), 20);
    cr_assert_eq(tb_augment_default_n("qnli"), 20);
    cr_assert_eq(tb_augment_default_n("mnli"), 10);
    cr_assert_eq(tb_augment_default_n("qqp"), 10);
    cr_assert_eq(tb_augment_default_n("cola"), 30);
    cr_assert_eq(tb_augment_default_n("rte"), 30);
    cr_assert_eq(tb_augment_default_n("simple"), 30);
}

/* ---- files -------------------------------------------------------------------------------------- */

static int run_file(tiny *t, const char *in, const char *format, int N, int columns, int quirk, int chunk,
                    const char *out)
{
    tb_augment_opts o = {.input = in, .format = format, .output = out, .N = N, .p = 1.0, .seed = 5,
                         .columns = columns, .pair_quirk = quirk, .chunk = chunk};
    tb_augment_stats st;
    return tb_augment_file(&t->c, &o, NULL, &st);
}

/* Splits text into lines (in place); returns the count. */
static int lines_of(char *text, char **line, int max)
{
    int n = 0;
    for (char *p = text; *p && n < max;) {
        char *nl = strchr(p, '\n');
        cr_assert(nl, "unterminated line");
        *nl = 0;
        line[n++] = p;
        p = nl + 1;
    }
    return n;
}

Test(augment, simple_format_rows_and_labels)
{
    mk_tmp();
    tiny t;
    tiny_open(&t, 3, 1, 0, 64);
    const char *in = write_file("in.txt", "Good film!\t1\n\nthe movie was great\t0\r\nthe the the\t2\n");
    char out[256];
    snprintf(out, sizeof out, "%s/out.txt", tmpdir);
    cr_assert_eq(run_file(&t, in, "simple", 10, 3, 0, 2, out), TB_OK, "%s", tb_err_msg());
    char *text = read_file(out), *line[64];
    int n = lines_of(text, line, 64);
    /* row 1: good, film -> {fun, dull}^2 = 4 new; row 2: movie, great -> 4 new; row 3: none */
    cr_assert_str_eq(line[0], "Good film!\t1", "the original line comes first, verbatim");
    int k = 1;
    for (; k < 5; k++) {
        char text_a[256];
        cr_assert_eq(sscanf(line[k], "%255[^\t]", text_a), 1);
        cr_assert(strstr(line[k], " !\t1") && count_words_changed(text_a, "good film !") == 2, "%s", line[k]);
    }
    cr_assert_str_eq(line[5], "the movie was great\t0");
    for (k = 6; k < 10; k++) cr_assert(strstr(line[k], "the ") == line[k] && strstr(line[k], "\t0"), "%s", line[k]);
    cr_assert_str_eq(line[10], "the the the\t2");
    cr_assert_eq(n, 11);
    /* the result reads back as the same task format */
    tb_dataset ds = {0};
    cr_assert_eq(tb_dataset_read_format(&ds, "simple", out, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(ds.count, 11);
    tb_dataset_free(&ds);
    free(text);
    tiny_close(&t);
    rm_tmp();
}

Test(augment, glue_header_and_pair_columns)
{
    mk_tmp();
    tiny t;
    tiny_open(&t, 3, 1, 0, 64);
    /* RTE: index, sentence1, sentence2, label, with a header */
    const char *in = write_file("rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\tgood film\tbad\tentailment\n");
    char out[256];
    snprintf(out, sizeof out, "%s/out.tsv", tmpdir);
    cr_assert_eq(run_file(&t, in, "rte", 10, 3, 0, 16, out), TB_OK, "%s", tb_err_msg());
    char *text = read_file(out), *line[64];
    int n = lines_of(text, line, 64);
    cr_assert_str_eq(line[0], "index\tsentence1\tsentence2\tlabel");
    cr_assert_str_eq(line[1], "0\tgood film\tbad\tentailment");
    /* a: 4 new with b as read; b: 2 new (fun, dull) with a as read */
    cr_assert_eq(n, 2 + 4 + 2);
    for (int k = 2; k < 6; k++) cr_assert(strstr(line[k], "\tbad\tentailment") && strncmp(line[k], "0\t", 2) == 0, "%s", line[k]);
    cr_assert(strcmp(line[6], "0\tgood film\tfun\tentailment") == 0 || strcmp(line[6], "0\tgood film\tdull\tentailment") == 0,
              "%s", line[6]);
    free(text);
    /* the reference's rows: b's list (original first) beside a's last variant */
    cr_assert_eq(run_file(&t, in, "rte", 10, 3, 1, 16, out), TB_OK, "%s", tb_err_msg());
    text = read_file(out);
    n = lines_of(text, line, 64);
    cr_assert_eq(n, 2 + 4 + 1 + 2);
    char a_last[128];
    cr_assert_eq(sscanf(line[5], "0\t%127[^\t]", a_last), 1);
    char want[256];
    snprintf(want, sizeof want, "0\t%s\tbad\tentailment", a_last);
    cr_assert_str_eq(line[6], want);
    for (int k = 7; k < 9; k++) cr_assert(strncmp(line[k], want, strlen(a_last) + 3) == 0, "%s", line[k]);
    free(text);
    /* only column b */
    cr_assert_eq(run_file(&t, in, "rte", 10, 2, 0, 16, out), TB_OK, "%s", tb_err_msg());
    text = read_file(out);
    cr_assert_eq(lines_of(text, line, 64), 2 + 2);
    free(text);
    tiny_close(&t);
    rm_tmp();
}

Test(augment, same_output_for_any_chunk_size)
{
    mk_tmp();
    tiny t;
    tiny_open(&t, 4, 0, 0, 3);
    const char *in = write_file("in.txt", "good film\t1\nbad plot , dull show\t0\na very fine movie\t1\ngreat fun\t0\n"
                                          "play the film\t1\n");
    char o1[256], o2[256];
    snprintf(o1, sizeof o1, "%s/o1", tmpdir);
    snprintf(o2, sizeof o2, "%s/o2", tmpdir);
    cr_assert_eq(run_file(&t, in, "simple", 8, 3, 0, 1, o1), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(run_file(&t, in, "simple", 8, 3, 0, 64, o2), TB_OK, "%s", tb_err_msg());
    char *a = read_file(o1), *b = read_file(o2);
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
    tiny_close(&t);
    rm_tmp();
}

Test(augment, bad_input)
{
    mk_tmp();
    tiny t;
    tiny_open(&t, 3, 1, 0, 64);
    char out[256];
    snprintf(out, sizeof out, "%s/out", tmpdir);
    cr_assert_eq(run_file(&t, write_file("empty.txt", ""), "simple", 5, 3, 0, 8, out), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "empty input"), "%s", tb_err_msg());
    cr_assert_eq(access(out, F_OK), -1, "no output for a failed run");
    cr_assert_eq(run_file(&t, write_file("nolabel.txt", "good film\t1\njust text\n"), "simple", 5, 3, 0, 8, out),
                 TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "nolabel.txt:2"), "%s", tb_err_msg());
    cr_assert_eq(run_file(&t, write_file("badlabel.txt", "good film\tpositive\n"), "simple", 5, 3, 0, 8, out),
                 TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "badlabel.txt:1"), "%s", tb_err_msg());
    cr_assert_eq(run_file(&t, write_file("biglabel.txt", "good film\t1\nbad film\t300\n"), "simple", 5, 3, 0, 8, out),
                 TB_EFORMAT); /* the simple format's class ids end at 255, as its reader's */
    cr_assert(strstr(tb_err_msg(), "biglabel.txt:2") && strstr(tb_err_msg(), "label 300"), "%s", tb_err_msg());
    cr_assert_eq(run_file(&t, write_file("sst.tsv", "sentence\tlabel\ngood film\t7\n"), "sst-2", 5, 3, 0, 8, out),
                 TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "sst.tsv:2") && strstr(tb_err_msg(), "'7'"), "%s", tb_err_msg());
    cr_assert_eq(access(out, F_OK), -1);
    tiny_close(&t);
    rm_tmp();
}

/* ---- word vectors ------------------------------------------------------------------------------- */

Test(augment, vector_text_cache_and_rules)
{
    mk_tmp();
    tb_vectors v, w;
    /* .vec header; <unk> stays zero; "b" twice: the last vector counts, the first row is dropped */
    const char *p = write_file("v.vec", "5 2\na 1 0\nb 0 1\n<unk> 1 1\nb 3 4\nc -1 0.5\n");
    cr_assert_eq(tb_vectors_load_text(&v, p, 0, 2), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(v.rows, 5);
    cr_assert_eq(v.dim, 2);
    cr_assert_eq(tb_vectors_find(&v, "b", 1), 3);
    cr_assert_eq(v.usable[1], 0);
    cr_assert_eq(v.usable[2], 0, "<unk> row left at zero");
    cr_assert_float_eq(v.unit[3 * 2 + 0], 0.6f, 1e-7);
    cr_assert_float_eq(v.unit[3 * 2 + 1], 0.8f, 1e-7);
    /* nearest to a (1, 0): b (.6), then c (-.894); itself excluded */
    int64_t out[3];
    int count;
    int64_t ex = 0;
    cr_assert_eq(tb_vectors_nearest(&v, v.unit, 1, &ex, 3, out, &count), TB_OK);
    cr_assert_eq(count, 2);
    cr_assert_eq(out[0], 3);
    cr_assert_eq(out[1], 4);
    /* max_rows: first lines only */
    cr_assert_eq(tb_vectors_load_text(&w, p, 2, 1), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(w.rows, 2);
    tb_vectors_free(&w);
    /* the cache gives the same vectors bit for bit, and is used only while it matches */
    char cache[256];
    snprintf(cache, sizeof cache, "%s/v.cache", tmpdir);
    int from = -1;
    cr_assert_eq(tb_vectors_open(&w, p, cache, 0, 1, &from), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(from, 0);
    tb_vectors_free(&w);
    cr_assert_eq(tb_vectors_open(&w, p, cache, 0, 1, &from), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(from, 1);
    cr_assert_eq(w.rows, v.rows);
    cr_assert_eq(memcmp(w.unit, v.unit, sizeof(float) * 10), 0);
    cr_assert_eq(memcmp(w.usable, v.usable, 5), 0);
    cr_assert_eq(tb_vectors_find(&w, "c", 1), 4);
    tb_vectors_free(&w);
    cr_assert_eq(tb_vectors_open(&w, p, cache, 3, 1, &from), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(from, 0, "another max_rows: the cache is rebuilt");
    cr_assert_eq(w.rows, 3);
    tb_vectors_free(&w);
    tb_vectors_free(&v);
    rm_tmp();
}

Test(augment, vector_file_errors_name_the_line)
{
    mk_tmp();
    tb_vectors v;
    cr_assert_eq(tb_vectors_load_text(&v, write_file("r.txt", "a 1 2 3\nb 1 2\nc 1 2 3\n"), 0, 2), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "r.txt:2") && strstr(tb_err_msg(), "3 fields, expected 4"), "%s", tb_err_msg());
    cr_assert_eq(tb_vectors_load_text(&v, write_file("l.txt", "a 1 2\nb 1 2 3\n"), 0, 2), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "l.txt:2"), "%s", tb_err_msg());
    cr_assert_eq(tb_vectors_load_text(&v, write_file("n.txt", "a 1 2\nb 1 2\nc 1 x2\nd 1 y\n"), 0, 2), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "n.txt:3") && strstr(tb_err_msg(), "field 3 is not a number"), "%s",
              tb_err_msg());
    cr_assert_eq(tb_vectors_load_text(&v, write_file("e.txt", ""), 0, 2), TB_EFORMAT);
    cr_assert_eq(tb_vectors_load_text(&v, write_file("b.txt", "a 1 2\n\nc 1 2\n"), 0, 2), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "b.txt:2") && strstr(tb_err_msg(), "empty line"), "%s", tb_err_msg());
    rm_tmp();
}

Test(augment, vector_numbers_parse_like_strtof)
{
    mk_tmp();
    char path[256];
    snprintf(path, sizeof path, "%s/num.txt", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    enum { ROWS = 2000, D = 50 };
    static char text[ROWS][D][32];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    const char *fmts[] = {"%.6f", "%.5g", "%.8e", "%.3f", "%.17g", "%g"};
    for (int r = 0; r < ROWS; r++) {
        fprintf(f, "w%d", r);
        for (int j = 0; j < D; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            double v = ((double)(x >> 11) / 9007199254740992.0 - 0.5) * pow(10.0, (double)((int)(x % 13) - 6));
            snprintf(text[r][j], 32, fmts[(r + j) % 6], v);
            fprintf(f, " %s", text[r][j]);
        }
        fputc('\n', f);
    }
    fclose(f);
    tb_vectors v;
    cr_assert_eq(tb_vectors_load_text(&v, path, 0, 2), TB_OK, "%s", tb_err_msg());
    /* compare the unit rows with rows normalised from strtof's values */
    int64_t off_by_more = 0;
    for (int r = 0; r < ROWS; r++) {
        float raw[D];
        double ss = 0;
        for (int j = 0; j < D; j++) {
            raw[j] = strtof(text[r][j], NULL);
            ss += (double)raw[j] * raw[j];
        }
        for (int j = 0; j < D; j++) {
            float want = (float)(raw[j] / sqrt(ss));
            float got = v.unit[r * D + j];
            if (fabsf(got - want) > 2e-7f * fabsf(want) + 1e-30f) off_by_more++;
        }
    }
    cr_assert_eq(off_by_more, 0, "%lld values differ from strtof by more than rounding", (long long)off_by_more);
    tb_vectors_free(&v);
    rm_tmp();
}
