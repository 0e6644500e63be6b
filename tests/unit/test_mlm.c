/* MLM masking: hand-worked counts and positions, the 80/10/10 split and uniform choice within
 * statistical bounds, keyed determinism, in-place use and bad input. */
#include "tb/base/error.h"
#include "tb/model/loss.h"
#include "tb/train/mlm.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PAD = 0, UNK = 1, CLS = 2, SEP = 3, MASK = 4 };

static tb_mlm_opts opts(int vocab)
{
    tb_mlm_opts o = tb_mlm_opts_default(MASK, vocab);
    int32_t sp[] = {PAD, UNK, CLS, SEP, MASK};
    for (int i = 0; i < 5; i++) cr_assert_eq(tb_mlm_add_special(&o, sp[i]), TB_OK, "%s", tb_err_msg());
    return o;
}

/* Row 0: [CLS] 10 words [SEP]            -> 10 candidates, k = floor(1.5 + 0.5) = 2
 * Row 1: [CLS] 3 words [SEP] [PAD] x 7   -> 3 candidates,  k = max(1, floor(0.45 + 0.5)) = 1
 * Row 2: [CLS] [UNK] [MASK] [SEP] [PAD]..-> 0 candidates,  k = 0 */
static void make_rows(int32_t ids[3][12], int32_t mask[3][12])
{
    memset(ids, 0, sizeof(int32_t) * 36);
    memset(mask, 0, sizeof(int32_t) * 36);
    ids[0][0] = CLS;
    for (int t = 1; t <= 10; t++) ids[0][t] = 10 + t;
    ids[0][11] = SEP;
    for (int t = 0; t < 12; t++) mask[0][t] = 1;
    ids[1][0] = CLS;
    ids[1][1] = 30, ids[1][2] = 31, ids[1][3] = 32, ids[1][4] = SEP;
    for (int t = 0; t < 5; t++) mask[1][t] = 1;
    ids[2][0] = CLS, ids[2][1] = UNK, ids[2][2] = MASK, ids[2][3] = SEP;
    for (int t = 0; t < 4; t++) mask[2][t] = 1;
}

Test(mlm, hand_worked_counts_and_positions)
{
    tb_mlm_opts o = opts(50);
    int32_t ids[3][12], mask[3][12], out[3][12], lab[3][12];
    make_rows(ids, mask);
    for (uint64_t seq = 0; seq < 200; seq++) {
        int64_t chosen = -1;
        cr_assert_eq(tb_mlm_mask(&o, 7, seq, 3, 12, &ids[0][0], &mask[0][0], &out[0][0], &lab[0][0], &chosen), TB_OK,
                     "%s", tb_err_msg());
        cr_assert_eq(chosen, 3);
        int per_row[3] = {0, 0, 0};
        for (int b = 0; b < 3; b++)
            for (int t = 0; t < 12; t++) {
                int candidate = mask[b][t] && ids[b][t] > MASK;
                if (lab[b][t] == TB_IGNORE_INDEX) {
                    cr_assert_eq(out[b][t], ids[b][t], "unchosen token changed at (%d, %d)", b, t);
                    continue;
                }
                cr_assert(candidate, "special, padding or [UNK] token chosen at (%d, %d)", b, t);
                cr_assert_eq(lab[b][t], ids[b][t], "label is not the original id at (%d, %d)", b, t);
                cr_assert(out[b][t] == MASK || (out[b][t] >= 0 && out[b][t] < 50));
                per_row[b]++;
            }
        cr_assert_eq(per_row[0], 2);
        cr_assert_eq(per_row[1], 1);
        cr_assert_eq(per_row[2], 0);
    }
}

Test(mlm, split_80_10_10_and_uniform_choice)
{
    enum { B = 64, T = 34, V = 1000, ROUNDS = 60 };
    tb_mlm_opts o = opts(V);
    static int32_t ids[B * T], out[B * T], lab[B * T];
    /* every row: [CLS] 32 words [SEP] -> k = floor(4.8 + 0.5) = 5 per row */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) ids[b * T + t] = t == 0 ? CLS : t == T - 1 ? SEP : 100 + (b * 7 + t) % 800;
    long masked = 0, random = 0, kept = 0, total = 0, pos_count[T] = {0};
    for (uint64_t seq = 0; seq < ROUNDS; seq++) {
        int64_t chosen;
        cr_assert_eq(tb_mlm_mask(&o, 11, seq, B, T, ids, NULL, out, lab, &chosen), TB_OK, "%s", tb_err_msg());
        cr_assert_eq(chosen, 5 * B);
        for (int i = 0; i < B * T; i++) {
            if (lab[i] == TB_IGNORE_INDEX) continue;
            total++;
            pos_count[i % T]++;
            if (out[i] == MASK) masked++;
            else if (out[i] == ids[i]) kept++;
            else random++;
        }
    }
    cr_assert_eq(total, 5L * B * ROUNDS);
    /* binomial bounds at 5 standard deviations; a random id equal to the original or to [MASK]
     * (probability 2 / 1000) counts as kept / masked, which shifts 0.1 by at most 2e-4 */
    double n = (double)total, fm = masked / n, fr = random / n, fk = kept / n;
    cr_expect(fabs(fm - 0.8) < 5 * sqrt(0.8 * 0.2 / n), "[MASK] fraction %.4f", fm);
    cr_expect(fabs(fr - 0.1) < 5 * sqrt(0.1 * 0.9 / n) + 2e-4, "random fraction %.4f", fr);
    cr_expect(fabs(fk - 0.1) < 5 * sqrt(0.1 * 0.9 / n) + 2e-4, "kept fraction %.4f", fk);
    /* each of the 32 word positions is chosen with probability 5 / 32 */
    cr_expect_eq(pos_count[0], 0);
    cr_expect_eq(pos_count[T - 1], 0);
    double trials = (double)B * ROUNDS, p = 5.0 / 32.0;
    for (int t = 1; t < T - 1; t++)
        cr_expect(fabs(pos_count[t] / trials - p) < 5 * sqrt(p * (1 - p) / trials), "position %d chosen %.4f of rows",
                  t, pos_count[t] / trials);
}

Test(mlm, keyed_by_seed_and_sequence_number)
{
    tb_mlm_opts o = opts(50);
    int32_t ids[3][12], mask[3][12], a[3][12], la[3][12], b[3][12], lb[3][12];
    make_rows(ids, mask);
    cr_assert_eq(tb_mlm_mask(&o, 5, 123, 3, 12, &ids[0][0], &mask[0][0], &a[0][0], &la[0][0], NULL), TB_OK);
    /* other calls in between change nothing: no hidden state */
    for (uint64_t s = 0; s < 10; s++)
        cr_assert_eq(tb_mlm_mask(&o, 6, s, 3, 12, &ids[0][0], &mask[0][0], &b[0][0], &lb[0][0], NULL), TB_OK);
    cr_assert_eq(tb_mlm_mask(&o, 5, 123, 3, 12, &ids[0][0], &mask[0][0], &b[0][0], &lb[0][0], NULL), TB_OK);
    cr_expect_arr_eq(a, b, sizeof a);
    cr_expect_arr_eq(la, lb, sizeof la);
    /* another sequence number or seed gives another masking (of 45 choices of 2 positions in
     * row 0 plus the fates, a repeat over 20 tries would be a bug, not chance) */
    int differ_seq = 0, differ_seed = 0;
    for (uint64_t s = 0; s < 20; s++) {
        cr_assert_eq(tb_mlm_mask(&o, 5, 1000 + s, 3, 12, &ids[0][0], &mask[0][0], &b[0][0], &lb[0][0], NULL), TB_OK);
        differ_seq += memcmp(la, lb, sizeof la) != 0 || memcmp(a, b, sizeof a) != 0;
        cr_assert_eq(tb_mlm_mask(&o, 900 + s, 123, 3, 12, &ids[0][0], &mask[0][0], &b[0][0], &lb[0][0], NULL), TB_OK);
        differ_seed += memcmp(la, lb, sizeof la) != 0 || memcmp(a, b, sizeof a) != 0;
    }
    cr_expect_geq(differ_seq, 15);
    cr_expect_geq(differ_seed, 15);
}

Test(mlm, in_place_equals_out_of_place)
{
    tb_mlm_opts o = opts(50);
    int32_t ids[3][12], mask[3][12], out[3][12], lab[3][12], lab2[3][12];
    make_rows(ids, mask);
    cr_assert_eq(tb_mlm_mask(&o, 3, 9, 3, 12, &ids[0][0], &mask[0][0], &out[0][0], &lab[0][0], NULL), TB_OK);
    cr_assert_eq(tb_mlm_mask(&o, 3, 9, 3, 12, &ids[0][0], &mask[0][0], &ids[0][0], &lab2[0][0], NULL), TB_OK);
    cr_expect_arr_eq(ids, out, sizeof out);
    cr_expect_arr_eq(lab, lab2, sizeof lab);
}

Test(mlm, bad_input_is_rejected_and_nothing_written)
{
    tb_mlm_opts o = opts(50);
    int32_t ids[3][12], mask[3][12], out[3][12], lab[3][12];
    make_rows(ids, mask);
    memset(out, 0x7f, sizeof out);
    ids[1][5] = 50;
    cr_expect_eq(tb_mlm_mask(&o, 1, 0, 3, 12, &ids[0][0], &mask[0][0], &out[0][0], &lab[0][0], NULL), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "row 1, position 5") != NULL, "%s", tb_err_msg());
    cr_expect_eq(out[0][0], 0x7f7f7f7f, "output written despite the error");
    ids[1][5] = -1;
    cr_expect_eq(tb_mlm_mask(&o, 1, 0, 3, 12, &ids[0][0], &mask[0][0], &out[0][0], &lab[0][0], NULL), TB_EINVAL);
    make_rows(ids, mask);
    mask[2][7] = 2;
    cr_expect_eq(tb_mlm_mask(&o, 1, 0, 3, 12, &ids[0][0], &mask[0][0], &out[0][0], &lab[0][0], NULL), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "attention mask") != NULL, "%s", tb_err_msg());
    make_rows(ids, mask);
    cr_expect_eq(tb_mlm_mask(&o, 1, 0, 0, 12, &ids[0][0], &mask[0][0], &out[0][0], &lab[0][0], NULL), TB_EINVAL);
    cr_expect_eq(tb_mlm_mask(&o, 1, 0, 3, 12, NULL, &mask[0][0], &out[0][0], &lab[0][0], NULL), TB_EINVAL);
    tb_mlm_opts bad = o;
    bad.prob = 0;
    cr_expect_eq(tb_mlm_opts_check(&bad), TB_EINVAL);
    bad = o;
    bad.mask_frac = 0.95;
    cr_expect_eq(tb_mlm_opts_check(&bad), TB_EINVAL, "fractions summing to 1.05");
    bad = o;
    bad.mask_id = 50;
    cr_expect_eq(tb_mlm_opts_check(&bad), TB_EINVAL);
    cr_expect_eq(tb_mlm_add_special(&o, 77), TB_EINVAL, "special id outside the vocabulary");
    for (int i = o.n_special; i < TB_MLM_MAX_SPECIAL; i++) cr_assert_eq(tb_mlm_add_special(&o, 10 + i), TB_OK);
    cr_expect_eq(tb_mlm_add_special(&o, 5), TB_EINVAL, "special list full");
}

Test(mlm, unigram_counts_and_bias_hand_worked)
{
    tb_mlm_opts o = opts(40);
    int32_t ids[3][12], mask[3][12];
    make_rows(ids, mask);
    ids[1][2] = 30; /* row 1 words: 30 30 32 */
    int64_t counts[40] = {0};
    counts[11] = 5; /* counts add up */
    cr_assert_eq(tb_mlm_count_candidates(&o, 3, 12, &ids[0][0], &mask[0][0], counts), TB_OK, "%s", tb_err_msg());
    /* row 0: ids 11..20 once each; row 1: 30 twice, 32 once; row 2: only specials; padding never */
    for (int v = 0; v < 40; v++) {
        int64_t expect = v == 11 ? 6 : (v >= 12 && v <= 20) ? 1 : v == 30 ? 2 : v == 32 ? 1 : 0;
        cr_expect_eq(counts[v], expect, "counts[%d] = %lld, expected %lld", v, (long long)counts[v], (long long)expect);
    }
    /* total 6 + 9 + 2 + 1 = 18; bias = log((c + 1) / (18 + 40)) */
    float bias[40];
    cr_assert_eq(tb_mlm_unigram_bias(&o, counts, bias), TB_OK, "%s", tb_err_msg());
    cr_expect(fabsf(bias[11] - logf(7.0f / 58.0f)) < 1e-6f, "bias[11] = %g", bias[11]);
    cr_expect(fabsf(bias[30] - logf(3.0f / 58.0f)) < 1e-6f, "bias[30] = %g", bias[30]);
    cr_expect(fabsf(bias[0] - logf(1.0f / 58.0f)) < 1e-6f, "bias[0] = %g", bias[0]);
    double sum = 0;
    for (int v = 0; v < 40; v++) sum += exp(bias[v]);
    cr_expect(fabs(sum - 1.0) < 1e-6, "the biases are log-probabilities: sum of exp = %.9f", sum);
}

Test(mlm, unigram_bad_input_leaves_counts_untouched)
{
    tb_mlm_opts o = opts(40);
    int32_t ids[3][12], mask[3][12];
    make_rows(ids, mask);
    ids[2][5] = 40;
    int64_t counts[40] = {0};
    cr_expect_eq(tb_mlm_count_candidates(&o, 3, 12, &ids[0][0], &mask[0][0], counts), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "row 2, position 5"), "%s", tb_err_msg());
    for (int v = 0; v < 40; v++) cr_expect_eq(counts[v], 0);
    counts[7] = -1;
    float bias[40];
    cr_expect_eq(tb_mlm_unigram_bias(&o, counts, bias), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "id 7"), "%s", tb_err_msg());
}

/* tb_mlm_max_chosen by hand, and as a bound: rows whose every position is a candidate reach it. */
Test(mlm, max_chosen_hand_worked_and_reached)
{
    tb_mlm_opts o = tb_mlm_opts_default(1, 50);
    cr_assert_eq(tb_mlm_max_chosen(&o, 32, 64), 32 * 10);  /* floor(0.15 * 64 + 0.5) = floor(10.1) */
    cr_assert_eq(tb_mlm_max_chosen(&o, 32, 128), 32 * 19); /* floor(19.7) */
    cr_assert_eq(tb_mlm_max_chosen(&o, 5, 3), 5);          /* floor(0.95) = 0, at least 1 */
    cr_assert_eq(tb_mlm_max_chosen(&o, 0, 8), 0);
    cr_assert_eq(tb_mlm_max_chosen(&o, 4, 0), 0);
    o.prob = 1.0;
    cr_assert_eq(tb_mlm_max_chosen(&o, 3, 7), 21);
    o.prob = 0.15;
    enum { B = 4, T = 23 };
    int32_t ids[B * T], out[B * T], lab[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = 2 + i % 40; /* no special id, no padding: T candidates a row */
    int64_t chosen = -1;
    cr_assert_eq(tb_mlm_mask(&o, 3, 9, B, T, ids, NULL, out, lab, &chosen), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(chosen, tb_mlm_max_chosen(&o, B, T), "chosen %lld", (long long)chosen);
}
