/* test_safetensors.c — the safetensors reader and writer.
 *
 * Round trip through the writer; a file assembled byte by byte here (so the
 * reader is checked against the format, not against our own writer) holding
 * F16/BF16 values whose decoded floats are worked out by hand; a catalogue of
 * malformed files that must be refused with a message naming the problem;
 * and a write that hits the file-size limit mid-way and must leave the old
 * file intact. Each test gets its own temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "testutil.h"

static char errbuf[512];

static int make_dir(void **state) {
    char *d = strdup("/tmp/aflo_st_XXXXXX");
    if (!d || !mkdtemp(d)) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int remove_dir(void **state) {
    char *d = *state;
    DIR *dh = opendir(d);
    if (dh) {
        struct dirent *e;
        while ((e = readdir(dh))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", d, e->d_name);
            unlink(p);
        }
        closedir(dh);
    }
    rmdir(d);
    free(d);
    return 0;
}

static void write_bytes(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static size_t file_bytes(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* A file: u64 header length, the header text padded with spaces to pad_len
 * (if larger), then data. Built without any help from safetensors.c. */
static size_t assemble(unsigned char *out, size_t cap, const char *header, size_t pad_len,
                       const void *data, size_t data_len) {
    size_t hl = strlen(header);
    size_t n = hl > pad_len ? hl : pad_len;
    assert_true(8 + n + data_len <= cap);
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)((uint64_t)n >> (8 * i)); /* little-endian */
    memcpy(out + 8, header, hl);
    memset(out + 8 + hl, ' ', n - hl);
    if (data_len) memcpy(out + 8 + n, data, data_len);
    return 8 + n + data_len;
}

static void expect_open_fail_bytes(void **state, const void *bytes, size_t n, const char *want) {
    char path[512];
    path_in(path, sizeof path, state, "bad.safetensors");
    write_bytes(path, bytes, n);
    errbuf[0] = '\0';
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (f) {
        st_close(f);
        fail_msg("malformed file accepted (want error <%s>)", want);
    }
    if (!strstr(errbuf, want)) fail_msg("error <%s> lacks <%s>", errbuf, want);
    /* every message names the file */
    assert_non_null(strstr(errbuf, path));
}

/* A header plus data_len zero bytes of data. */
static void expect_open_fail(void **state, const char *header, size_t data_len, const char *want) {
    unsigned char buf[4096];
    unsigned char zeros[256] = {0};
    assert_true(data_len <= sizeof zeros);
    size_t n = assemble(buf, sizeof buf, header, 0, zeros, data_len);
    expect_open_fail_bytes(state, buf, n, want);
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ---- writer -> reader ------------------------------------------------- */

static void test_round_trip_with_metadata(void **state) {
    char path[512];
    path_in(path, sizeof path, state, "model.safetensors");

    /* values include the float edge cases: -0, inf, NaN, smallest subnormal, max */
    const float bw[6] = {1.5f, -0.0f, INFINITY, NAN, 0x1p-149f, FLT_MAX};
    const float ab[3] = {0.25f, -7.0f, 3.0e-5f};
    const float sc[1] = {42.0f};
    const int64_t bshape[2] = {2, 3}, ashape[1] = {3}, eshape[2] = {0, 4};

    st_writer *w = st_writer_new();
    assert_non_null(w);
    /* added out of name order on purpose */
    assert_int_equal(st_writer_add(w, "b.weight", bshape, 2, bw, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_add(w, "scalar", NULL, 0, sc, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_add(w, "empty", eshape, 2, NULL, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_add(w, "a.bias", ashape, 1, ab, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_set_metadata(w, "format", "np", errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_set_metadata(w, "note", "q\" b\\ \xC3\xA9\n", errbuf, sizeof errbuf),
                     0);
    assert_int_equal(st_writer_set_metadata(w, "format", "pt", errbuf, sizeof errbuf),
                     0); /* replaces */
    if (st_writer_write(w, path, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    assert_int_equal(count_atomic_temps(*state), 0); /* no temp file left */

    /* Layout, checked on the raw bytes: header length a multiple of 8, data
     * 4*(3 + 6 + 0 + 1) = 40 bytes, tensors stored in name order
     * (a.bias, b.weight, empty, scalar). */
    unsigned char raw[4096];
    size_t n = file_bytes(path, raw, sizeof raw);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(n, 8 + hlen + 40);
    assert_int_equal(raw[8], '{');
    assert_memory_equal(raw + 8 + hlen, ab, sizeof ab);
    assert_memory_equal(raw + 8 + hlen + 12, bw, sizeof bw);
    assert_memory_equal(raw + 8 + hlen + 36, sc, sizeof sc);

    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    assert_int_equal(st_count(f), 4);
    assert_string_equal(st_name(f, 0), "a.bias");
    assert_string_equal(st_name(f, 1), "b.weight");
    assert_string_equal(st_name(f, 2), "empty");
    assert_string_equal(st_name(f, 3), "scalar");
    assert_null(st_name(f, 4));
    assert_int_equal(st_find(f, "scalar"), 3);
    assert_int_equal(st_find(f, "a.bias"), 0);
    assert_int_equal(st_find(f, "nope"), -1);
    assert_int_equal(st_find(f, ""), -1);

    long bi = st_find(f, "b.weight");
    assert_int_equal(st_dtype_of(f, (size_t)bi), ST_F32);
    assert_int_equal(st_ndim(f, (size_t)bi), 2);
    assert_true(st_shape(f, (size_t)bi)[0] == 2 && st_shape(f, (size_t)bi)[1] == 3);
    assert_int_equal(st_numel(f, (size_t)bi), 6);
    float got[6];
    assert_int_equal(st_read_f32(f, "b.weight", got, 6, errbuf, sizeof errbuf), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(bits_of(got[i]), bits_of(bw[i])); /* bitwise, NaN too */
    const float *view = st_f32_view(f, (size_t)bi);
    assert_non_null(view);
    assert_memory_equal(view, bw, sizeof bw);

    assert_int_equal(st_ndim(f, 3), 0);
    assert_int_equal(st_numel(f, 3), 1);
    assert_int_equal(st_read_f32_at(f, 3, got, 1, errbuf, sizeof errbuf), 0);
    assert_true(got[0] == 42.0f);
    assert_int_equal(st_numel(f, 2), 0);
    size_t nb = 99;
    assert_non_null(st_data(f, 2, &nb));
    assert_int_equal(nb, 0);
    assert_int_equal(st_read_f32(f, "empty", got, 0, errbuf, sizeof errbuf), 0);

    assert_string_equal(st_metadata(f, "format"), "pt");
    assert_string_equal(st_metadata(f, "note"), "q\" b\\ \xC3\xA9\n");
    assert_null(st_metadata(f, "missing"));
    assert_int_equal(st_metadata_count(f), 2);
    assert_string_equal(st_metadata_key(f, 0), "format");
    assert_string_equal(st_metadata_value(f, 1), "q\" b\\ \xC3\xA9\n");

    /* caller errors */
    assert_int_equal(st_read_f32(f, "b.weight", got, 5, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "has 6 elements, caller expects 5"));
    assert_int_equal(st_read_f32(f, "nope", got, 1, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "no tensor named 'nope'"));
    assert_int_equal(st_read_f32_at(f, 9, got, 1, errbuf, sizeof errbuf), -1);
    st_close(f);

    /* deterministic: writing the same content again gives the same bytes */
    unsigned char raw2[4096];
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    assert_int_equal(file_bytes(path, raw2, sizeof raw2), n);
    assert_memory_equal(raw, raw2, n);
    st_writer_free(w);
}

static void test_overwrite_and_empty(void **state) {
    char path[512];
    path_in(path, sizeof path, state, "x.safetensors");
    const float one[2] = {1, 2}, two[2] = {3, 4};
    const int64_t shape[1] = {2};

    for (int round = 0; round < 2; round++) {
        st_writer *w = st_writer_new();
        assert_non_null(w);
        assert_int_equal(st_writer_add(w, "t", shape, 1, round ? two : one, errbuf, sizeof errbuf),
                         0);
        assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
        st_writer_free(w);
    }
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    assert_non_null(f);
    float got[2];
    assert_int_equal(st_read_f32(f, "t", got, 2, errbuf, sizeof errbuf), 0);
    assert_true(got[0] == 3.0f && got[1] == 4.0f);
    assert_null(st_metadata(f, "any"));
    assert_int_equal(st_metadata_count(f), 0);
    st_close(f);

    /* no tensors at all: header "{}" padded to 8 bytes, and readable */
    st_writer *w = st_writer_new();
    assert_non_null(w);
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    st_writer_free(w);
    unsigned char raw[64];
    assert_int_equal(file_bytes(path, raw, sizeof raw), 16);
    assert_memory_equal(raw, "\x08\0\0\0\0\0\0\0{}      ", 16);
    f = st_open(path, errbuf, sizeof errbuf);
    assert_non_null(f);
    assert_int_equal(st_count(f), 0);
    st_close(f);
}

/* ---- a file built by hand --------------------------------------------- */

static void test_hand_built_f16_bf16(void **state) {
    char path[512];
    path_in(path, sizeof path, state, "hand.safetensors");
    /* Data buffer (little-endian), with a 2-byte gap at 24..26:
     *   [0,4)   f  F32  [1]    1.0f = 0x3F800000
     *   [4,16)  h  F16  [2,3]  1.0, -2.0, 2^-24, 1023*2^-24, 65504, 0.333251953125
     *   [16,24) s  F16  [4]    +inf, -inf, NaN, -0.0
     *   [26,32) b  BF16 [3]    1.0, -3.0, 3.140625
     *   [32,40) i  I64  [1]    7 */
    const unsigned char data[40] = {
        0x00, 0x00, 0x80, 0x3F,                                                 /* f */
        0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0xFF, 0x03, 0xFF, 0x7B, 0x55, 0x35, /* h */
        0x00, 0x7C, 0x00, 0xFC, 0x00, 0x7E, 0x00, 0x80,                         /* s */
        0xEE, 0xEE,                                                             /* gap */
        0x80, 0x3F, 0x40, 0xC0, 0x49, 0x40,                                     /* b */
        7,    0,    0,    0,    0,    0,    0,    0,                            /* i */
    };
    const char *header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[4,16]},"
                         "\"__metadata__\":{\"format\":\"pt\"},"
                         "\"b\":{\"shape\":[3],\"dtype\":\"BF16\",\"data_offsets\":[26,32]},"
                         "\"s\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]},"
                         "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[32,40]},"
                         "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    /* pad the header so the data buffer starts 1 byte past a multiple of 4
     * (the mapping itself is page-aligned): F32 data there cannot be viewed
     * in place, only copied */
    size_t pad = strlen(header);
    while ((8 + pad) % 4 != 1) pad++;
    unsigned char file[1024];
    size_t n = assemble(file, sizeof file, header, pad, data, sizeof data);
    write_bytes(path, file, n);

    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    assert_int_equal(st_count(f), 5);
    /* name order: b f h i s */
    const char *names[5] = {"b", "f", "h", "i", "s"};
    for (size_t i = 0; i < 5; i++) assert_string_equal(st_name(f, i), names[i]);
    assert_string_equal(st_metadata(f, "format"), "pt");

    float h[6];
    assert_int_equal(st_read_f32(f, "h", h, 6, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_dtype_of(f, (size_t)st_find(f, "h")), ST_F16);
    assert_true(h[0] == 1.0f);
    assert_true(h[1] == -2.0f);
    assert_true(h[2] == 5.9604644775390625e-8f);    /* 2^-24, smallest F16 subnormal */
    assert_true(h[3] == 6.0975551605224609375e-5f); /* 1023 * 2^-24, largest subnormal */
    assert_true(h[4] == 65504.0f);                  /* largest finite F16 */
    assert_true(h[5] == 0.333251953125f);           /* (1 + 341/1024) / 4 */

    float s[4];
    assert_int_equal(st_read_f32(f, "s", s, 4, errbuf, sizeof errbuf), 0);
    assert_true(isinf(s[0]) && s[0] > 0);
    assert_true(isinf(s[1]) && s[1] < 0);
    assert_true(isnan(s[2]));
    assert_true(s[3] == 0.0f && signbit(s[3]));

    float b[3];
    assert_int_equal(st_read_f32(f, "b", b, 3, errbuf, sizeof errbuf), 0);
    assert_true(b[0] == 1.0f);
    assert_true(b[1] == -3.0f);
    assert_true(b[2] == 3.140625f);

    long fi = st_find(f, "f");
    float one;
    assert_int_equal(st_read_f32_at(f, (size_t)fi, &one, 1, errbuf, sizeof errbuf), 0);
    assert_true(one == 1.0f);
    assert_null(st_f32_view(f, (size_t)fi));              /* misaligned */
    assert_null(st_f32_view(f, (size_t)st_find(f, "h"))); /* not F32 */

    /* I64: recognised, raw bytes reachable, but not converted */
    long ii = st_find(f, "i");
    assert_int_equal(st_dtype_of(f, (size_t)ii), ST_I64);
    assert_string_equal(st_dtype_name(ST_I64), "I64");
    assert_int_equal(st_dtype_size(ST_I64), 8);
    size_t nb;
    const unsigned char *raw = st_data(f, (size_t)ii, &nb);
    assert_int_equal(nb, 8);
    int64_t seven;
    memcpy(&seven, raw, sizeof seven);
    assert_int_equal(seven, 7);
    float x;
    assert_int_equal(st_read_f32(f, "i", &x, 1, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "dtype I64"));
    st_close(f);
}

static void test_f16_conversion_all_exponents(void **state) {
    (void)state;
    /* Against an independent formula for every finite F16 value:
     * normal (-1)^s * 2^(e-15) * (1 + m/1024), subnormal (-1)^s * 2^-14 * m/1024. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        float got = st_f16_to_f32((uint16_t)h);
        if (e == 31) {
            assert_true(m ? isnan(got) : isinf(got));
            continue;
        }
        double mag = e ? ldexp(1.0 + m / 1024.0, (int)e - 15) : ldexp(m / 1024.0, -14);
        double want = (h & 0x8000) ? -mag : mag;
        if ((double)got != want || !signbit(got) != !signbit(want))
            fail_msg("f16 0x%04X -> %a, want %a", h, (double)got, want);
    }
    /* BF16 is the top half of the f32 bits */
    assert_true(st_bf16_to_f32(0x3F80) == 1.0f);
    assert_int_equal(bits_of(st_bf16_to_f32(0x7FC1)), 0x7FC10000u);
}

/* ---- malformed files -------------------------------------------------- */

static void test_malformed_prefix(void **state) {
    expect_open_fail_bytes(state, "", 0, "shorter than the 8-byte header length");
    expect_open_fail_bytes(state, "\x10\0\0\0", 4, "shorter than the 8-byte header length");

    /* header length 100, only 20 header bytes follow: truncated header */
    unsigned char buf[64] = {100};
    memcpy(buf + 8, "{\"a\":{\"dtype\":\"F32\",", 20);
    expect_open_fail_bytes(state, buf, 28,
                           "header length 100 is larger than the 20 bytes after it");

    /* header length far larger than the file, and above the 100 MB limit */
    uint64_t huge = 200000000;
    memcpy(buf, &huge, 8);
    expect_open_fail_bytes(state, buf, 28, "exceeds the limit of 100000000 bytes");
    memset(buf, 0xFF, 8);
    expect_open_fail_bytes(state, buf, 28, "exceeds the limit");

    /* a valid header, but the data buffer cut short */
    expect_open_fail(state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                     "data_offsets [0, 16) outside the data buffer of 8 bytes");

    char path[512];
    path_in(path, sizeof path, state, "does-not-exist");
    assert_null(st_open(path, errbuf, sizeof errbuf));
    assert_non_null(strstr(errbuf, "cannot open"));
    assert_null(st_open((const char *)*state, errbuf, sizeof errbuf)); /* a directory */
    assert_non_null(strstr(errbuf, "not a regular file"));
}

static void test_malformed_json(void **state) {
    expect_open_fail(state, "{\"a\":", 0, "header is not valid JSON: line 1, column 6");
    expect_open_fail(state, "{\"a\":{}} trailing", 0, "not valid JSON");
    expect_open_fail(state, "{\"\xFF\":{}}", 0, "invalid UTF-8");
    expect_open_fail(state, "", 0, "not valid JSON");
    expect_open_fail(state, "[1,2]", 0, "header must be a JSON object, got array");
    expect_open_fail(state, "\"text\"", 0, "header must be a JSON object, got string");
    expect_open_fail(state,
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                     8, "duplicate key \"a\"");
}

static void test_malformed_entries(void **state) {
    static const struct {
        const char *header;
        size_t data;
        const char *want;
    } cases[] = {
        {"{\"a\":[1]}", 0, "tensor 'a': entry must be an object, got array"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': missing \"dtype\""},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing \"shape\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing \"data_offsets\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4,
         "unexpected key \"extra\""},
        {"{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "unknown dtype \"F128\""},
        {"{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "unknown dtype \"f32\""},
        {"{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "dtype must be a string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}", 12,
         "shape must be an array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
         "non-negative integers"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
         "non-negative integers"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}",
         4, "shape is too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         "shape and dtype F32 need 12 bytes but data_offsets span 8"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16,
         "F16 need 8 bytes but data_offsets span 16"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
         "data_offsets must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
         "data_offsets must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"0\":4}}}", 8,
         "data_offsets must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "begin 8 > end 4"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}", 8,
         "outside the data buffer of 8 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", 8,
         "data_offsets must be"},
        {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL"},
        {"{\"__metadata__\":[],\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "__metadata__ must be an object, got array"},
        {"{\"__metadata__\":{\"k\":1}}", 0,
         "__metadata__ value of \"k\" must be a string, got number"},
        /* overlaps: partial, containment, identical ranges */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "tensors 'a' [0, 8) and 'b' [4, 12) overlap"},
        {"{\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
         "\"in\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         20, "tensors 'big' [0, 16) and 'in' [8, 12) overlap"},
        {"{\"p\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"q\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "overlap"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_open_fail(state, cases[i].header, cases[i].data, cases[i].want);
}

static void test_gaps_and_empty_tensors_allowed(void **state) {
    char path[512];
    path_in(path, sizeof path, state, "ok.safetensors");
    /* empty tensors at offsets inside another tensor occupy no bytes; gaps and
     * trailing bytes after the last tensor are allowed */
    const char *header = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                         "\"e2\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
                         "\"y\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[12,13]}}";
    unsigned char data[20] = {0};
    data[12] = 200;
    unsigned char file[512];
    size_t n = assemble(file, sizeof file, header, 0, data, sizeof data);
    write_bytes(path, file, n);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    assert_int_equal(st_count(f), 4);
    long y = st_find(f, "y");
    assert_int_equal(st_ndim(f, (size_t)y), 0);
    assert_null(st_shape(f, (size_t)y));
    assert_int_equal(st_numel(f, (size_t)y), 1);
    size_t nb;
    assert_int_equal(*(const unsigned char *)st_data(f, (size_t)y, &nb), 200);
    assert_int_equal(nb, 1);
    long e2 = st_find(f, "e2");
    assert_int_equal(st_ndim(f, (size_t)e2), 2);
    assert_int_equal(st_shape(f, (size_t)e2)[1], 5);
    assert_int_equal(st_numel(f, (size_t)e2), 0);
    st_close(f);
}

/* ---- writer errors and atomicity -------------------------------------- */

static void test_writer_rejects_bad_input(void **state) {
    char path[512];
    const float d[2] = {1, 2};
    const int64_t s2[1] = {2}, neg[2] = {2, -1};
    st_writer *w = st_writer_new();
    assert_non_null(w);
    assert_int_equal(st_writer_add(w, "t", s2, 1, d, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_add(w, "t", s2, 1, d, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "duplicate tensor name 't'"));
    assert_int_equal(st_writer_add(w, "__metadata__", s2, 1, d, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "reserved"));
    assert_int_equal(st_writer_add(w, "n", neg, 2, d, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "negative dimension -1"));
    assert_int_equal(st_writer_add(w, "bad\xC3", s2, 1, d, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "UTF-8"));
    assert_int_equal(st_writer_add(w, "nodata", s2, 1, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "NULL data"));
    assert_int_equal(st_writer_set_metadata(w, "k", "\xFF", errbuf, sizeof errbuf), -1);

    /* a name that needs escaping survives the trip */
    assert_int_equal(st_writer_add(w, "q\"\\\x01", s2, 1, d, errbuf, sizeof errbuf), 0);
    path_in(path, sizeof path, state, "w.safetensors");
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    assert_non_null(f);
    assert_int_equal(st_count(f), 2);
    assert_true(st_find(f, "q\"\\\x01") >= 0);
    st_close(f);

    /* a directory that does not exist */
    path_in(path, sizeof path, state, "no/such/dir/w.safetensors");
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "cannot create"));
    st_writer_free(w);
}

static void test_failed_write_keeps_previous_file(void **state) {
    char path[512];
    path_in(path, sizeof path, state, "keep.safetensors");
    const float small[4] = {1, 2, 3, 4};
    const int64_t s4[1] = {4};
    st_writer *w = st_writer_new();
    assert_non_null(w);
    assert_int_equal(st_writer_add(w, "v", s4, 1, small, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    st_writer_free(w);

    /* A file-size limit stands in for a full disk: the 64 KB tensor write
     * fails with EFBIG part-way (SIGXFSZ ignored so write() just fails). */
    enum { BIG = 16384 };
    float *big = calloc(BIG, sizeof *big);
    assert_non_null(big);
    const int64_t sb[1] = {BIG};
    w = st_writer_new();
    assert_non_null(w);
    assert_int_equal(st_writer_add(w, "v", sb, 1, big, errbuf, sizeof errbuf), 0);

    file_size_limit lim;
    assert_int_equal(limit_file_size(&lim, 4096), 0);
    int rc = st_writer_write(w, path, errbuf, sizeof errbuf);
    assert_int_equal(unlimit_file_size(&lim), 0);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(errbuf, "write of tensor 'v' failed"));
    assert_int_equal(count_atomic_temps(*state), 0); /* temp file removed */
    st_writer_free(w);
    free(big);

    /* the old file is intact */
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    float got[4];
    assert_int_equal(st_read_f32(f, "v", got, 4, errbuf, sizeof errbuf), 0);
    assert_memory_equal(got, small, sizeof small);
    st_close(f);
}

static void test_truncations_and_mutations_refused_cleanly(void **state) {
    /* A valid file built by the writer, then every strict prefix of it: each
     * must be refused (the last tensor is non-empty, so some byte is always
     * missing). Then random byte edits in the header: accepted or refused,
     * never a crash or a leak (ASan/valgrind watch). */
    char path[512], bad[512];
    path_in(path, sizeof path, state, "src.safetensors");
    path_in(bad, sizeof bad, state, "cut.safetensors");
    const float a[3] = {1, 2, 3}, b[2] = {4, 5};
    const int64_t s3[1] = {3}, s2[2] = {1, 2};
    st_writer *w = st_writer_new();
    assert_non_null(w);
    assert_int_equal(st_writer_add(w, "a", s3, 1, a, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_add(w, "b", s2, 2, b, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_set_metadata(w, "k", "v", errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    st_writer_free(w);
    unsigned char raw[1024], mut[1024];
    size_t n = file_bytes(path, raw, sizeof raw);
    for (size_t len = 0; len < n; len++) {
        write_bytes(bad, raw, len);
        st_file *f = st_open(bad, errbuf, sizeof errbuf);
        if (f) {
            st_close(f);
            fail_msg("prefix of %zu of %zu bytes accepted", len, n);
        }
        assert_true(errbuf[0] != '\0');
    }

    uint64_t hlen = raw[0] | (uint64_t)raw[1] << 8; /* < 64 KB here */
    uint64_t x = 0x2545F4914F6CDD1DULL;
    static const char alphabet[] = "{}[]\",:0123456789-e. FBI_\xFF";
    int accepted = 0;
    for (int iter = 0; iter < 300; iter++) {
        memcpy(mut, raw, n);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        mut[8 + x % hlen] = (unsigned char)alphabet[(x >> 32) % (sizeof alphabet - 1)];
        write_bytes(bad, mut, n);
        st_file *f = st_open(bad, errbuf, sizeof errbuf);
        if (f) {
            accepted++;
            /* whatever was accepted must be internally consistent */
            for (size_t i = 0; i < st_count(f); i++) {
                size_t nb;
                assert_non_null(st_data(f, i, &nb));
                assert_int_equal(nb, st_numel(f, i) * st_dtype_size(st_dtype_of(f, i)));
            }
            st_close(f);
        } else {
            assert_true(errbuf[0] != '\0');
        }
    }
    assert_true(accepted < 300);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_with_metadata, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_overwrite_and_empty, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_hand_built_f16_bf16, make_dir, remove_dir),
        cmocka_unit_test(test_f16_conversion_all_exponents),
        cmocka_unit_test_setup_teardown(test_malformed_prefix, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_malformed_json, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_malformed_entries, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_gaps_and_empty_tensors_allowed, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_truncations_and_mutations_refused_cleanly, make_dir,
                                        remove_dir),
        cmocka_unit_test_setup_teardown(test_writer_rejects_bad_input, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_previous_file, make_dir,
                                        remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
