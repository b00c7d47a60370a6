/* test_tokenizer_deberta.c — DeBERTa-v3's SentencePiece Unigram tokenizer:
 * a folder with spm.model (and tokenizer_config.json), and the same model
 * as a converted tokenizer.json, against SentencePiece itself.
 *
 * tests/tokenizer_fixtures/make_deberta_fixtures.py trained a tiny Unigram
 * model with DeBERTa-v3's settings (nmt_nfkc charsmap, extra whitespace
 * removed, dummy prefix, no byte fallback, [PAD] [CLS] [SEP] [UNK] as
 * pieces 0-3) and wrote deberta_expected.tsv: the ids SentencePiece gives
 * for tricky strings (kind "sp", with decode() where it is defined), for
 * lower-cased text ("lower"), DebertaV2Tokenizer's [CLS] a [SEP] (b [SEP])
 * input ("single", "pair") and text holding [MASK] / [SEP] ("added"). Both
 * loaders must give every row's ids. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer/tokenizer.h"

#define FIXTURES "tests/tokenizer_fixtures"
#define PIECES 320 /* the model's pieces; [MASK] is added after them */

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static void write_file(void **state, const char *name, const char *data, size_t len) {
    char path[512];
    path_in(path, sizeof path, state, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void copy_fixture(void **state, const char *from, const char *name) {
    size_t len;
    char *b = read_test_file(from, &len);
    write_file(state, name, b, len);
    free(b);
}

static tokenizer *load_fixture(const char *sub) {
    char dir[256], err[256];
    snprintf(dir, sizeof dir, FIXTURES "/%s", sub);
    tokenizer *t = tokenizer_load_dir(dir, err, sizeof err);
    if (!t) fail_msg("load %s: %s", dir, err);
    return t;
}

static tokenizer *load_state_dir(void **state) {
    char err[256];
    tokenizer *t = tokenizer_load_dir((const char *)*state, err, sizeof err);
    if (!t) fail_msg("load: %s", err);
    return t;
}

/* The error loading the test folder gives (the load must fail). */
static void expect_load_error(void **state, const char *want) {
    char err[512];
    tokenizer *t = tokenizer_load_dir((const char *)*state, err, sizeof err);
    if (t) fail_msg("loaded, want an error with \"%s\"", want);
    if (!strstr(err, want)) fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void fmt_ids(char *buf, size_t cap, const int32_t *ids, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o + 16 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? "," : "", (int)ids[i]);
}

static void expect_ids(const int32_t *got, size_t ngot, const int32_t *want, size_t nwant,
                       const char *what, const char *text, size_t tlen) {
    if (ngot == nwant && (ngot == 0 || memcmp(got, want, ngot * sizeof *got) == 0)) return;
    char g[2048], w[2048];
    fmt_ids(g, sizeof g, got, ngot);
    fmt_ids(w, sizeof w, want, nwant);
    fail_msg("%s: \"%.*s\": got [%s], want [%s]", what, (int)(tlen > 80 ? 80 : tlen), text, g, w);
}

/* ------------------------------------------------------------------ */
/* Expectations                                                         */

typedef struct {
    char kind[8];
    char a[1024], b[256];
    size_t a_len, b_len;
    bool has_b, has_decoded;
    char decoded[1024];
    size_t decoded_len;
    int32_t ids[512];
    size_t n_ids;
} row;

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static size_t unhex(const char *h, char *out, size_t cap) {
    size_t hl = strlen(h);
    assert_true(hl % 2 == 0 && hl / 2 < cap);
    for (size_t i = 0; i < hl / 2; i++) {
        assert_true(hexval(h[2 * i]) >= 0 && hexval(h[2 * i + 1]) >= 0);
        out[i] = (char)(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
    }
    return hl / 2;
}

/* deberta_expected.tsv: kind \t a hex \t b hex or - \t ids \t decoded hex
 * or -; '#' lines are comments. Empty fields are kept (strtok would not). */
static row *read_rows(size_t *count) {
    size_t len;
    char *buf = read_test_file(FIXTURES "/deberta_expected.tsv", &len);
    row *rs = calloc(128, sizeof *rs);
    assert_non_null(rs);
    size_t n = 0;
    for (char *line = buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (line[0] == '#') continue;
        assert_true(n < 128);
        row *r = &rs[n++];
        char *f[5] = {line, NULL, NULL, NULL, NULL};
        for (int k = 1; k < 5; k++) {
            f[k] = strchr(f[k - 1], '\t');
            assert_non_null(f[k]);
            *f[k]++ = '\0';
        }
        snprintf(r->kind, sizeof r->kind, "%s", f[0]);
        r->a_len = unhex(f[1], r->a, sizeof r->a);
        r->has_b = strcmp(f[2], "-") != 0;
        if (r->has_b) r->b_len = unhex(f[2], r->b, sizeof r->b);
        r->has_decoded = strcmp(f[4], "-") != 0;
        if (r->has_decoded) r->decoded_len = unhex(f[4], r->decoded, sizeof r->decoded);
        for (char *p = f[3]; *p;) {
            assert_true(r->n_ids < 512);
            r->ids[r->n_ids++] = (int32_t)strtol(p, &p, 10);
            if (*p == ',') p++;
        }
    }
    free(buf);
    *count = n;
    assert_true(n >= 90); /* the file is what the script writes */
    return rs;
}

static void check_plain(const tokenizer *t, const row *r, const char *what) {
    int32_t *ids;
    size_t n;
    char err[256];
    if (tokenizer_tokenize(t, r->a, r->a_len, &ids, &n, err, sizeof err))
        fail_msg("%s: tokenize: %s", what, err);
    expect_ids(ids, n, r->ids, r->n_ids, what, r->a, r->a_len);
    free(ids);
}

/* decode(ids) as SentencePiece decodes them (rows without [UNK]). */
static void check_decode(const tokenizer *t, const row *r, const char *what) {
    char *text, err[256];
    size_t len;
    if (tokenizer_decode(t, r->ids, r->n_ids, 0, &text, &len, err, sizeof err))
        fail_msg("%s: decode: %s", what, err);
    if (len != r->decoded_len || memcmp(text, r->decoded, len) != 0)
        fail_msg("%s: decoded \"%s\", want \"%.*s\"", what, text, (int)r->decoded_len, r->decoded);
    free(text);
}

/* [CLS] a [SEP] (b [SEP]) with token types 0 up to the first [SEP], 1
 * after it. */
static void check_input(const tokenizer *t, const row *r, const char *what) {
    int32_t ids[600], types[600];
    int len;
    char err[256];
    if (tokenizer_encode_n(t, r->a, r->a_len, r->has_b ? r->b : NULL, r->b_len, 600, ids, types,
                           &len, err, sizeof err))
        fail_msg("%s: encode: %s", what, err);
    expect_ids(ids, (size_t)len, r->ids, r->n_ids, what, r->a, r->a_len);
    int first_sep = -1;
    for (int i = 0; i < len && first_sep < 0; i++)
        if (ids[i] == tokenizer_sep_id(t)) first_sep = i;
    assert_true(first_sep > 0);
    for (int i = 0; i < len; i++) assert_int_equal(types[i], i <= first_sep ? 0 : 1);
}

/* Every row of the given kinds. */
static int check_rows(const tokenizer *t, const char *kinds, const char *what) {
    size_t n;
    row *rs = read_rows(&n);
    int checked = 0, decoded = 0;
    for (size_t i = 0; i < n; i++) {
        const row *r = &rs[i];
        if (!strstr(kinds, r->kind)) continue;
        if (strcmp(r->kind, "single") == 0 || strcmp(r->kind, "pair") == 0) {
            check_input(t, r, what);
        } else {
            check_plain(t, r, what);
            if (r->has_decoded) {
                check_decode(t, r, what);
                decoded++;
            }
        }
        checked++;
    }
    free(rs);
    if (strstr(kinds, "sp")) assert_true(decoded >= 10);
    return checked;
}

static void check_specials(const tokenizer *t) {
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_SPM_UNIGRAM);
    assert_int_equal(tokenizer_pad_id(t), 0);
    assert_int_equal(tokenizer_cls_id(t), 1);
    assert_int_equal(tokenizer_sep_id(t), 2);
    assert_int_equal(tokenizer_unk_id(t), 3);
    assert_string_equal(tokenizer_id_to_token(t, 3), "[UNK]");
    /* [MASK] is not a piece: it comes after them, as transformers adds it. */
    assert_string_equal(tokenizer_id_to_token(t, PIECES), "[MASK]");
    assert_int_equal(tokenizer_vocab_size(t), PIECES + 1);
    /* An encoder's input, not a causal LM's. */
    assert_false(tokenizer_adds_bos(t));
    assert_false(tokenizer_adds_eos(t));
    assert_int_equal(tokenizer_num_special_tokens(t, 0), 2);
    assert_int_equal(tokenizer_num_special_tokens(t, 1), 3);
}

/* ------------------------------------------------------------------ */
/* Tests                                                                */

static void test_spm_model(void **state) {
    (void)state;
    tokenizer *t = load_fixture("deberta_spm");
    check_specials(t);
    assert_true(check_rows(t, "sp single pair added", "spm.model") >= 85);
    tokenizer_free(t);
}

static void test_tokenizer_json(void **state) {
    (void)state;
    tokenizer *t = load_fixture("deberta_json");
    check_specials(t);
    assert_true(check_rows(t, "sp single pair added", "tokenizer.json") >= 85);
    tokenizer_free(t);
}

/* A folder with spm.model alone: the same tokenizer (DeBERTa's defaults:
 * do_lower_case false, [CLS]/[SEP] by name), and the folder probes fine. */
static void test_spm_model_alone(void **state) {
    copy_fixture(state, FIXTURES "/deberta_spm/spm.model", "spm.model");
    char err[256];
    assert_int_equal(tokenizer_probe_dir((const char *)*state, err, sizeof err), 0);
    tokenizer *t = load_state_dir(state);
    check_specials(t);
    check_rows(t, "sp pair", "spm.model alone");
    tokenizer_free(t);
}

/* do_lower_case true: tokenizer_config.json for spm.model, a Lowercase
 * normalizer first in tokenizer.json. */
static void test_lower_case(void **state) {
    copy_fixture(state, FIXTURES "/deberta_spm/spm.model", "spm.model");
    const char cfg[] = "{\"do_lower_case\": true, \"vocab_type\": \"spm\"}";
    write_file(state, "tokenizer_config.json", cfg, sizeof cfg - 1);
    tokenizer *t = load_state_dir(state);
    assert_int_equal(check_rows(t, "lower", "spm.model lower-cased"), 4);
    tokenizer_free(t);

    size_t len;
    char *tj = read_test_file(FIXTURES "/deberta_json/tokenizer.json", &len);
    const char *strip = strstr(tj, "{\"type\": \"Strip\"");
    assert_non_null(strip);
    const char lower[] = "{\"type\": \"Lowercase\"}, ";
    char *with = malloc(len + sizeof lower);
    assert_non_null(with);
    size_t at = (size_t)(strip - tj);
    memcpy(with, tj, at);
    memcpy(with + at, lower, sizeof lower - 1);
    memcpy(with + at + sizeof lower - 1, strip, len - at);
    char path[512];
    path_in(path, sizeof path, state, "spm.model");
    assert_int_equal(remove(path), 0);
    path_in(path, sizeof path, state, "tokenizer_config.json");
    assert_int_equal(remove(path), 0);
    write_file(state, "tokenizer.json", with, len + sizeof lower - 1);
    t = load_state_dir(state);
    assert_int_equal(check_rows(t, "lower", "tokenizer.json lower-cased"), 4);
    tokenizer_free(t);
    free(with);
    free(tj);
}

/* Longest-first truncation of a pair: a = [166 90], b = [57 168 18]. */
static void test_truncation(void **state) {
    (void)state;
    tokenizer *t = load_fixture("deberta_spm");
    int32_t ids[16], types[16];
    int len;
    char err[256];
    /* Budget 4 for 5 tokens: b, the longer, loses one. */
    assert_int_equal(tokenizer_encode(t, "hello world", "the second sentence", 7, ids, types, &len,
                                      err, sizeof err),
                     0);
    const int32_t want7[] = {1, 166, 90, 2, 57, 168, 2};
    expect_ids(ids, (size_t)len, want7, 7, "max_len 7", "hello world", 11);
    /* Budget 1: b to 2, then ties take from b, then a goes to 1, b to 0. */
    assert_int_equal(tokenizer_encode(t, "hello world", "the second sentence", 4, ids, types, &len,
                                      err, sizeof err),
                     0);
    const int32_t want4[] = {1, 166, 2, 2};
    expect_ids(ids, (size_t)len, want4, 4, "max_len 4", "hello world", 11);
    assert_int_equal(types[3], 1);
    /* A single sequence cut to max_len - 2 pieces. */
    assert_int_equal(tokenizer_encode(t, "hello world", NULL, 3, ids, types, &len, err, sizeof err),
                     0);
    const int32_t want3[] = {1, 166, 2};
    expect_ids(ids, (size_t)len, want3, 3, "max_len 3", "hello world", 11);
    /* No room for the special tokens. */
    assert_int_equal(tokenizer_encode(t, "hello", "world", 2, ids, types, &len, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "special tokens"));
    tokenizer_free(t);
}

/* A damaged spm.model is an error naming the file, never a crash; so is a
 * tokenizer.json we cannot follow, with what it is. */
static void test_malformed(void **state) {
    size_t len;
    char *m = read_test_file(FIXTURES "/deberta_spm/spm.model", &len);
    write_file(state, "spm.model", m, 1000); /* cut inside a piece list */
    expect_load_error(state, "/spm.model: ");
    write_file(state, "spm.model", "", 0);
    expect_load_error(state, "spm.model: no pieces");
    write_file(state, "spm.model", m, len);
    const char punct[] = "{\"split_by_punct\": true}";
    write_file(state, "tokenizer_config.json", punct, sizeof punct - 1);
    expect_load_error(state, "split_by_punct");
    char path[512];
    path_in(path, sizeof path, state, "spm.model");
    assert_int_equal(remove(path), 0);
    path_in(path, sizeof path, state, "tokenizer_config.json");
    assert_int_equal(remove(path), 0);
    free(m);

    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"@@@@\"}, "
         "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\"}, "
         "\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0]]}}",
         "not base64"},
        {"{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"AAAA\"}, "
         "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\"}, "
         "\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0]]}}",
         "precompiled_charsmap"},
        {"{\"normalizer\": {\"type\": \"NFKD\"}, \"pre_tokenizer\": {\"type\": \"Metaspace\", "
         "\"replacement\": \"\xe2\x96\x81\"}, \"model\": {\"type\": \"Unigram\", \"unk_id\": 0, "
         "\"vocab\": [[\"<unk>\", 0]]}}",
         "normalizer \"NFKD\""},
        {"{\"normalizer\": {\"type\": \"Strip\", \"strip_left\": false, \"strip_right\": "
         "true}, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\"}, "
         "\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0]]}}",
         "normalizer \"Strip\""},
        {"{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
         "\"Punctuation\"}, {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\"}]}, "
         "\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0]]}}",
         "pre-tokenizer \"Punctuation\""},
        {"{\"pre_tokenizer\": null, \"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0]]}}",
         "pre-tokenizer"},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\"}, "
         "\"model\": {\"type\": \"Unigram\", \"unk_id\": 5, \"vocab\": [[\"a\", 0]]}}",
         "unk_id"},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\"}, "
         "\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", \"x\"]]}}",
         "entry 0 is not [piece, score]"},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\"}, "
         "\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
         "non-empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(state, "tokenizer.json", bad[i].json, strlen(bad[i].json));
        expect_load_error(state, bad[i].want);
    }
}

/* The converters before DebertaV2Converter had Strip wrote [Precompiled,
 * Replace " {2,}"]: runs of spaces still become one, but a trailing one
 * stays, a last ▁ after Metaspace (the fast tokenizer's ids, not
 * SentencePiece's); a leading one is the ▁ Metaspace would prepend. */
static void test_json_without_strip(void **state) {
    size_t len;
    char *tj = read_test_file(FIXTURES "/deberta_json/tokenizer.json", &len);
    const char strip[] = "{\"type\": \"Strip\", \"strip_left\": true, \"strip_right\": true}, ";
    char *at = strstr(tj, strip);
    assert_non_null(at);
    memmove(at, at + sizeof strip - 1, len - (size_t)(at - tj) - (sizeof strip - 1) + 1);
    write_file(state, "tokenizer.json", tj, strlen(tj));
    free(tj);
    tokenizer *t = load_state_dir(state);
    tokenizer *ref = load_fixture("deberta_spm");
    assert_string_equal(tokenizer_id_to_token(t, 4), "\xe2\x96\x81");
    static const struct {
        const char *text, *ref_text; /* ref_text's spm.model ids, then a ▁ when last */
        bool last_space;
    } cases[] = {
        {"hello world", "hello world", false},
        {"  hello   world", "hello world", false},
        {"hello ", "hello", true},
        {"  hello  world \t", "hello world", true},
        {" ", "", true},
        {"\xe3\x80\x80", "", true},
        {"", "", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t *got = NULL, *want = NULL;
        size_t ng = 0, nw = 0;
        char err[256];
        if (tokenizer_tokenize(t, cases[i].text, strlen(cases[i].text), &got, &ng, err, sizeof err))
            fail_msg("tokenizer.json: %s", err);
        if (tokenizer_tokenize(ref, cases[i].ref_text, strlen(cases[i].ref_text), &want, &nw, err,
                               sizeof err))
            fail_msg("spm.model: %s", err);
        int32_t exp[32];
        assert_true(nw < 31);
        if (nw) memcpy(exp, want, nw * sizeof *want);
        if (cases[i].last_space) exp[nw++] = 4;
        expect_ids(got, ng, exp, nw, "without Strip", cases[i].text, strlen(cases[i].text));
        free(got);
        free(want);
    }
    tokenizer_free(ref);
    tokenizer_free(t);
}

/* A minimal Unigram tokenizer.json without a charsmap (identity), with
 * WhitespaceSplit before Metaspace (older converters) and no unk: unknown
 * characters are an error; whitespace runs go; no [CLS] makes it a
 * causal-LM tokenizer (whose BOS the config turns off: it has none). */
static void test_minimal_json(void **state) {
    static const char tj[] =
        "{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
        "[{\"type\": \"WhitespaceSplit\"}, {\"type\": \"Metaspace\", \"replacement\": "
        "\"\xe2\x96\x81\", \"prepend_scheme\": \"always\"}]}, \"model\": {\"type\": \"Unigram\", "
        "\"unk_id\": null, \"vocab\": [[\"\xe2\x96\x81\", -2.0], [\"a\", -1.0], [\"b\", -1.0], "
        "[\"\xe2\x96\x81"
        "ab\", -1.5], [\"\xe2\x96\x81"
        "a\", -1.2]]}}";
    write_file(state, "tokenizer.json", tj, sizeof tj - 1);
    expect_load_error(state, "adds a BOS token");
    const char cfg[] = "{\"add_bos_token\": false}";
    write_file(state, "tokenizer_config.json", cfg, sizeof cfg - 1);
    tokenizer *t = load_state_dir(state);
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_SPM_UNIGRAM);
    assert_int_equal(tokenizer_cls_id(t), -1);
    assert_false(tokenizer_adds_bos(t));
    int32_t *ids;
    size_t n;
    char err[256];
    /* "▁ab ▁a b": ▁ab (-1.5) beats ▁a b (-2.2) and ▁ a b (-4). */
    assert_int_equal(tokenizer_tokenize(t, "  ab   ab a", 11, &ids, &n, err, sizeof err), 0);
    const int32_t want[] = {3, 3, 4};
    expect_ids(ids, n, want, 3, "minimal", "  ab   ab a", 11);
    free(ids);
    assert_int_equal(tokenizer_tokenize(t, "abc", 3, &ids, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "no unknown token"));
    tokenizer_free(t);
}

/* Random text from characters the normalizer treats each its own way:
 * the two files give the same ids, and a cut UTF-8 sequence is an error. */
static void test_files_agree(void **state) {
    (void)state;
    static const char *const pool[] = {
        "a",
        "e",
        "h",
        "l",
        "o",
        "t",
        "the",
        " ",
        " ",
        " ",
        "\t",
        "\n",
        "\xc2\xa0",
        "\xe3\x80\x80",
        "\xef\xbd\x86" /* ｆ */,
        "\xc3\xa9",
        "e\xcc\x81",
        "\xef\xac\x81" /* ﬁ */,
        "\xf0\x9f\x98\x80",
        "\xe5\x8c\x97",
        "\xe2\x96\x81",
        "[MASK]",
        "[SEP]",
        "H",
        "E",
        "1",
        "\xe2\x91\xa0" /* ① */,
        ".",
        "\x07",
    };
    const size_t np = sizeof pool / sizeof pool[0];
    tokenizer *a = load_fixture("deberta_spm"), *b = load_fixture("deberta_json");
    uint32_t rng = 2024;
    char text[256], err[256];
    for (int iter = 0; iter < 300; iter++) {
        size_t n = 0;
        rng = rng * 1664525u + 1013904223u;
        int parts = (int)((rng >> 16) % 24);
        for (int k = 0; k < parts; k++) {
            rng = rng * 1664525u + 1013904223u;
            const char *p = pool[(rng >> 8) % np];
            memcpy(text + n, p, strlen(p));
            n += strlen(p);
        }
        int32_t *ia = NULL, *ib = NULL;
        size_t na = 0, nb = 0;
        if (tokenizer_tokenize(a, text, n, &ia, &na, err, sizeof err))
            fail_msg("spm.model: %s", err);
        if (tokenizer_tokenize(b, text, n, &ib, &nb, err, sizeof err))
            fail_msg("tokenizer.json: %s", err);
        expect_ids(ib, nb, ia, na, "tokenizer.json vs spm.model", text, n);
        free(ia);
        free(ib);
    }
    int32_t *ids = NULL;
    size_t n;
    assert_int_equal(tokenizer_tokenize(a, "ok \xe5\x8c", 5, &ids, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "invalid UTF-8"));
    assert_null(ids);
    tokenizer_free(a);
    tokenizer_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_model),
        cmocka_unit_test(test_tokenizer_json),
        cmocka_unit_test_setup_teardown(test_spm_model_alone, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_lower_case, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_files_agree),
        cmocka_unit_test_setup_teardown(test_malformed, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_json_without_strip, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_minimal_json, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
