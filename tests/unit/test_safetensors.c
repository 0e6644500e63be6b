/* Unit tests: safetensors writer/reader round trip, byte layout, and hostile files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/base/error.h"
#include "tb/store/safetensors.h"

static char dir[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tb-st-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* Writes an 8-byte little-endian length `declared` + `header` + `data_len` bytes of data. */
static void write_raw(const char *path, uint64_t declared, const char *header, size_t data_len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(declared >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xff), f);
    fclose(f);
}

static void expect_reject(const char *header, size_t data_len, const char *needle)
{
    char p[256];
    path_of(p, sizeof p, "bad.safetensors");
    write_raw(p, strlen(header), header, data_len);
    tb_st_file f;
    int rc = tb_st_open(&f, p);
    cr_assert_neq(rc, TB_OK, "accepted hostile header %s", header);
    cr_assert(strstr(tb_err_msg(), needle) != NULL, "error for %s was '%s', expected it to mention '%s'", header,
              tb_err_msg(), needle);
    cr_assert(strstr(tb_err_msg(), "bad.safetensors") != NULL, "error does not name the file: %s", tb_err_msg());
    cr_assert_null(f.map);
}

Test(safetensors, round_trip_all_dtypes_scalars_empty_and_strided, .init = setup, .fini = teardown)
{
    tb_tensor a, b, c, d, e, tr;
    int64_t sa[2] = {3, 4}, sb[1] = {5}, sc[0] = {}, sd[2] = {0, 7}, se[3] = {2, 1, 3};
    cr_assert_eq(tb_tensor_alloc(&a, TB_F32, 2, sa), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&b, TB_I32, 1, sb), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&c, TB_F64, 0, sc), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&d, TB_U8, 2, sd), TB_OK);
    cr_assert_eq(tb_tensor_alloc(&e, TB_BF16, 3, se), TB_OK);
    for (int i = 0; i < 12; i++) ((float *)a.data)[i] = (float)i * 0.5f - 1.0f;
    for (int i = 0; i < 5; i++) ((int32_t *)b.data)[i] = -2 + 1000000 * i;
    *(double *)c.data = 3.141592653589793;
    for (int i = 0; i < 6; i++) ((uint16_t *)e.data)[i] = (uint16_t)(0x3f80 + i);
    /* a transposed (strided) view of a: [4, 3] */
    tr = a;
    tr.owned = 0;
    tr.shape[0] = 4;
    tr.shape[1] = 3;
    tr.stride[0] = 1;
    tr.stride[1] = 4;
    tb_st_item items[] = {{"a.weight", &a}, {"b", &b}, {"scalar", &c}, {"empty", &d}, {"bf", &e}, {"a.T", &tr}};
    tb_st_meta meta[] = {{"note", "quote \" and backslash \\"}};
    char p[256];
    path_of(p, sizeof p, "ok.safetensors");
    cr_assert_eq(tb_st_write(p, items, 6, meta, 1), TB_OK, "%s", tb_err_msg());

    /* byte layout: header length, header starting with the metadata, 8-byte alignment */
    FILE *fp = fopen(p, "rb");
    uint8_t buf[64];
    cr_assert_eq(fread(buf, 1, 64, fp), 64);
    fclose(fp);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
    cr_assert_eq((8 + n) % 8, 0);
    cr_assert(memcmp(buf + 8, "{\"__metadata__\":{\"format\":\"pt\",\"note\":", 38) == 0, "%.50s", buf + 8);

    tb_st_file f;
    cr_assert_eq(tb_st_open(&f, p), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(f.count, 6);
    cr_assert_str_eq(f.entries[0].name, "a.weight"); /* header order kept */
    cr_assert_str_eq(tb_st_meta_get(&f, "format"), "pt");
    cr_assert_str_eq(tb_st_meta_get(&f, "note"), "quote \" and backslash \\");
    cr_assert_eq(f.data_size, 48 + 20 + 8 + 0 + 12 + 48);

    tb_tensor r;
    cr_assert_eq(tb_st_read_tensor(&f, tb_st_find(&f, "a.weight"), &r), TB_OK);
    cr_assert_eq(r.dtype, TB_F32);
    cr_assert_eq(memcmp(r.data, a.data, 48), 0);
    tb_tensor_free(&r);
    cr_assert_eq(tb_st_read_tensor(&f, tb_st_find(&f, "a.T"), &r), TB_OK);
    cr_assert_eq(r.shape[0], 4);
    cr_assert_eq(((float *)r.data)[1], ((float *)a.data)[4]); /* T[0][1] = a[1][0] */
    cr_assert_eq(((float *)r.data)[3 * 3 + 2], ((float *)a.data)[2 * 4 + 3]);
    tb_tensor_free(&r);
    cr_assert_eq(tb_st_read_tensor(&f, tb_st_find(&f, "b"), &r), TB_OK);
    cr_assert_eq(((int32_t *)r.data)[4], 3999998);
    tb_tensor_free(&r);
    const tb_st_entry *sc_e = tb_st_find(&f, "scalar");
    cr_assert_eq(sc_e->ndim, 0);
    double pi;
    cr_assert_eq(tb_st_read(&f, sc_e, &pi, 8), TB_OK);
    cr_assert_eq(pi, 3.141592653589793);
    cr_assert_eq(tb_st_read(&f, sc_e, &pi, 4), TB_ESHAPE);
    const tb_st_entry *em = tb_st_find(&f, "empty");
    cr_assert_eq(em->dtype, TB_U8);
    cr_assert_eq(em->end - em->begin, 0);
    cr_assert_eq(tb_st_find(&f, "bf")->dtype, TB_BF16);
    cr_assert_null(tb_st_find(&f, "missing"));
    tb_st_close(&f);
    tb_tensor_free(&a);
    tb_tensor_free(&b);
    tb_tensor_free(&c);
    tb_tensor_free(&d);
    tb_tensor_free(&e);
}

Test(safetensors, writer_rejects_bad_items, .init = setup, .fini = teardown)
{
    tb_tensor a;
    int64_t s[1] = {2};
    cr_assert_eq(tb_tensor_alloc(&a, TB_F32, 1, s), TB_OK);
    char p[256];
    path_of(p, sizeof p, "w.safetensors");
    tb_st_item dup[] = {{"x", &a}, {"x", &a}};
    cr_assert_eq(tb_st_write(p, dup, 2, NULL, 0), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "twice") != NULL, "%s", tb_err_msg());
    tb_st_item meta_name[] = {{"__metadata__", &a}};
    cr_assert_eq(tb_st_write(p, meta_name, 1, NULL, 0), TB_EINVAL);
    tb_tensor_free(&a);
}

/* A writer that fails part-way (here: a tensor without data, found after the header is built)
 * leaves an existing file byte for byte and no temporary beside it. */
Test(safetensors, failed_write_keeps_the_old_file_and_leaves_no_temporary, .init = setup, .fini = teardown)
{
    tb_tensor a;
    int64_t s[1] = {3};
    cr_assert_eq(tb_tensor_alloc(&a, TB_F32, 1, s), TB_OK);
    float *d = a.data;
    d[0] = 1.0f, d[1] = 2.0f, d[2] = 3.0f;
    char p[256];
    path_of(p, sizeof p, "keep.safetensors");
    tb_st_item one[] = {{"a", &a}};
    cr_assert_eq(tb_st_write(p, one, 1, NULL, 0), TB_OK, "%s", tb_err_msg());
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f);
    char before[4096];
    size_t nb = fread(before, 1, sizeof before, f);
    fclose(f);
    cr_assert_gt(nb, 8);

    tb_tensor hollow = a;
    hollow.data = NULL;
    tb_st_item two[] = {{"a", &a}, {"b", &hollow}};
    cr_assert_neq(tb_st_write(p, two, 2, NULL, 0), TB_OK);
    cr_expect(strstr(tb_err_msg(), "'b'") != NULL, "%s", tb_err_msg());

    f = fopen(p, "rb");
    cr_assert_not_null(f);
    char after[4096];
    size_t na = fread(after, 1, sizeof after, f);
    fclose(f);
    cr_expect_eq(na, nb, "the old file changed size: %zu bytes, was %zu", na, nb);
    cr_expect(na == nb && memcmp(before, after, nb) == 0, "the old file's bytes changed");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", dir);
    cr_expect_neq(system(cmd), 0, "a temporary was left in %s", dir);
    tb_tensor_free(&a);
}

#define ENTRY(name, dt, shape, b, e) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

Test(safetensors, rejects_hostile_headers, .init = setup, .fini = teardown)
{
    expect_reject("{" ENTRY("a", "F7", "[2]", 0, 8) "}", 8, "unknown safetensors dtype");
    expect_reject("{" ENTRY("a", "F32", "[3]", 0, 8) "}", 8, "shape x dtype");
    expect_reject("{" ENTRY("a", "F32", "[2]", 0, 8) "}", 4, "past the end of the data");
    expect_reject("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 4, 12) "}", 12, "overlap");
    expect_reject("{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("b", "F32", "[1]", 8, 12) "}", 12, "gap");
    expect_reject("{" ENTRY("a", "F32", "[1]", 8, 4) "}", 8, "out of order");
    expect_reject("{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("a", "F32", "[1]", 4, 8) "}", 8, "appears twice");
    expect_reject("{" ENTRY("a", "F32", "[-1]", 0, 4) "}", 4, "shape[0]");
    expect_reject("{" ENTRY("a", "F32", "[1.5]", 0, 4) "}", 4, "shape[0]");
    expect_reject("{" ENTRY("a", "F32", "[1]", 0, 4) "}", 12, "data section has 12");
    expect_reject("{" ENTRY("a", "F32", "[1]", 0, 4) "}xx", 4, "after the JSON header");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    expect_reject("{\"a\":[1,2]}", 4, "not an object");
    expect_reject("{\"__metadata__\":{\"format\":1}}", 0, "not a string");
    expect_reject("{\"a\": ", 0, "not valid JSON");
    expect_reject("[1,2,3]", 0, "start with '{'");
    expect_reject("{" ENTRY("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, "rank 9");
    expect_reject("{" ENTRY("a", "F32", "[4294967296,4294967296]", 0, 4) "}", 4, "overflows");
}

Test(safetensors, rejects_bad_sizes, .init = setup, .fini = teardown)
{
    char p[256];
    path_of(p, sizeof p, "bad.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite("\x02\0\0", 1, 3, f);
    fclose(f);
    tb_st_file st;
    cr_assert_eq(tb_st_open(&st, p), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "too short") != NULL, "%s", tb_err_msg());
    write_raw(p, 200000000, "{}", 0);
    cr_assert_eq(tb_st_open(&st, p), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "exceeds") != NULL, "%s", tb_err_msg());
    write_raw(p, 4000, "{}      ", 0);
    cr_assert_eq(tb_st_open(&st, p), TB_EFORMAT);
    cr_assert(strstr(tb_err_msg(), "past the end of the file") != NULL, "%s", tb_err_msg());
    path_of(p, sizeof p, "nonexistent.safetensors");
    cr_assert_eq(tb_st_open(&st, p), TB_EIO);
    cr_assert(strstr(tb_err_msg(), "nonexistent") != NULL, "%s", tb_err_msg());
    cr_assert_eq(tb_st_open(&st, dir), TB_EFORMAT); /* a folder */
}

/* Every truncation and every single-byte corruption of a valid file is either rejected or read
 * consistently - never a crash or an out-of-bounds read (run under ASan). */
Test(safetensors, truncations_and_corruptions_never_crash, .init = setup, .fini = teardown)
{
    tb_tensor a;
    int64_t s[2] = {2, 3};
    cr_assert_eq(tb_tensor_alloc(&a, TB_F32, 2, s), TB_OK);
    tb_st_item items[] = {{"x", &a}, {"y", &a}};
    char p[256], q[256];
    path_of(p, sizeof p, "v.safetensors");
    path_of(q, sizeof q, "c.safetensors");
    cr_assert_eq(tb_st_write(p, items, 2, NULL, 0), TB_OK);
    FILE *f = fopen(p, "rb");
    uint8_t buf[512];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cr_assert(n > 48 && n < sizeof buf);
    for (size_t len = 0; len < n; len++) {
        f = fopen(q, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        tb_st_file st;
        cr_assert_neq(tb_st_open(&st, q), TB_OK, "truncation to %zu bytes accepted", len);
    }
    const uint8_t repl[] = {0x00, '"', '}', '9', '-', 0xff, ' '};
    for (size_t pos = 0; pos < n - 48; pos++) {
        for (size_t r = 0; r < sizeof repl; r++) {
            uint8_t c[512];
            memcpy(c, buf, n);
            c[pos] = repl[r];
            f = fopen(q, "wb");
            fwrite(c, 1, n, f);
            fclose(f);
            tb_st_file st;
            if (tb_st_open(&st, q) == TB_OK) {
                for (int i = 0; i < st.count; i++) cr_assert(st.entries[i].end <= st.data_size);
                tb_st_close(&st);
            }
        }
    }
    tb_tensor_free(&a);
}
