/* test_tokenizer_spm.c — the causal-LM tokenizers: SentencePiece BPE and
 * Unigram (tokenizer.json and tokenizer.model), LLaMA-3 / Qwen2 byte-level
 * BPE, decoding, and arbitrary bytes.
 *
 * SentencePiece expectations come from SentencePiece itself:
 * tests/tokenizer_fixtures/make_sp_fixtures.py trained the two tiny models
 * there and wrote expected.tsv (model, kind, text as hex, ids). The
 * LLaMA-3 pre-tokenizer splits are worked out by hand from the regex, each
 * next to its string; they are checked through ignore_merges: every
 * expected pre-token is a vocabulary entry, so each comes out as one id only
 * if the split is exactly right (anything else falls apart into byte
 * tokens). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "tokenizer/tokenizer.h"

#define FIXTURES "tests/tokenizer_fixtures"

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static void write_all(const char *dir, const char *name, const char *data, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *make_dir(void) {
    char *d = strdup("/tmp/aflo_tokspm_XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(char *dir) {
    static const char *const names[] = {"tokenizer.json", "tokenizer.model",
                                        "tokenizer_config.json"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* A folder holding only the given files (name, bytes, length; NULL-ended),
 * loaded and removed again. */
static tokenizer *load_files(char *err, size_t errlen, ...) {
    char *dir = make_dir();
    va_list ap;
    va_start(ap, errlen);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *data = va_arg(ap, const char *);
        size_t len = va_arg(ap, size_t);
        write_all(dir, name, data, len);
    }
    va_end(ap);
    tokenizer *t = tokenizer_load_dir(dir, err, errlen);
    remove_dir(dir);
    return t;
}

static tokenizer *load_fixture_dir(const char *sub) {
    char dir[256], err[256];
    snprintf(dir, sizeof dir, FIXTURES "/%s", sub);
    tokenizer *t = tokenizer_load_dir(dir, err, sizeof err);
    if (!t) fail_msg("load %s: %s", dir, err);
    return t;
}

/* The sp_bpe model from tokenizer.model alone (no tokenizer.json). */
static tokenizer *load_sp_bpe_model(void) {
    size_t len;
    char *m = read_test_file(FIXTURES "/sp_bpe/tokenizer.model", &len);
    char err[256];
    tokenizer *t = load_files(err, sizeof err, "tokenizer.model", m, len, NULL);
    free(m);
    if (!t) fail_msg("load tokenizer.model: %s", err);
    return t;
}

static void fmt_ids(char *buf, size_t cap, const int32_t *ids, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o + 16 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? "," : "", (int)ids[i]);
}

static void expect_tokens(const tokenizer *t, const char *text, size_t len, const int32_t *want,
                          size_t nwant, const char *what) {
    int32_t *ids;
    size_t n;
    char err[256];
    if (tokenizer_tokenize(t, text, len, &ids, &n, err, sizeof err))
        fail_msg("%s: tokenize \"%.*s\": %s", what, (int)len, text, err);
    if (n != nwant || (n && memcmp(ids, want, n * sizeof *ids) != 0)) {
        char got[1024], exp[1024];
        fmt_ids(got, sizeof got, ids, n);
        fmt_ids(exp, sizeof exp, want, nwant);
        fail_msg("%s: \"%.*s\": got [%s], want [%s]", what, (int)len, text, got, exp);
    }
    free(ids);
}

static int32_t id_of(const tokenizer *t, const char *tok) {
    for (int32_t i = 0; i < tokenizer_vocab_size(t); i++) {
        const char *s = tokenizer_id_to_token(t, i);
        if (s && strcmp(s, tok) == 0) return i;
    }
    fail_msg("no token %s", tok);
    return -1;
}

static void expect_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip,
                          const char *want, size_t wlen, const char *what) {
    char *text, err[256];
    size_t len;
    if (tokenizer_decode(t, ids, n, skip, &text, &len, err, sizeof err))
        fail_msg("%s: decode: %s", what, err);
    if (len != wlen || memcmp(text, want, wlen) != 0)
        fail_msg("%s: decoded \"%s\" (%zu bytes), want \"%.*s\" (%zu)", what, text, len, (int)wlen,
                 want, wlen);
    assert_int_equal(text[len], '\0');
    free(text);
}

/* ------------------------------------------------------------------ */
/* SentencePiece fixtures                                               */

typedef struct {
    char model[16], kind[8];
    char text[256];
    size_t text_len;
    int32_t ids[128];
    size_t n_ids;
} sp_case;

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* expected.tsv: model \t kind \t hex text \t ids, '#' lines are comments. */
static sp_case *read_cases(size_t *count) {
    size_t len;
    char *buf = read_test_file(FIXTURES "/expected.tsv", &len);
    sp_case *cs = calloc(128, sizeof *cs);
    assert_non_null(cs);
    size_t n = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        assert_true(n < 128);
        sp_case *c = &cs[n++];
        char *f[4] = {line, NULL, NULL, NULL};
        for (int k = 1; k < 4; k++) {
            f[k] = strchr(f[k - 1], '\t');
            assert_non_null(f[k]);
            *f[k]++ = '\0';
        }
        snprintf(c->model, sizeof c->model, "%s", f[0]);
        snprintf(c->kind, sizeof c->kind, "%s", f[1]);
        size_t hl = strlen(f[2]);
        assert_true(hl % 2 == 0 && hl / 2 < sizeof c->text);
        for (size_t i = 0; i < hl / 2; i++)
            c->text[i] = (char)(hexval(f[2][2 * i]) * 16 + hexval(f[2][2 * i + 1]));
        c->text_len = hl / 2;
        for (char *p = f[3]; *p;) {
            assert_true(c->n_ids < 128);
            c->ids[c->n_ids++] = (int32_t)strtol(p, &p, 10);
            if (*p == ',') p++;
        }
    }
    free(buf);
    *count = n;
    assert_true(n >= 30); /* the file is what the script writes */
    return cs;
}

static void check_cases(const tokenizer *t, const char *model, bool hf_rows, bool round_trip,
                        const char *what) {
    size_t n;
    sp_case *cs = read_cases(&n);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        const sp_case *c = &cs[i];
        if (strcmp(c->model, model) != 0) continue;
        if (strcmp(c->kind, "hf") == 0 && !hf_rows) continue;
        expect_tokens(t, c->text, c->text_len, c->ids, c->n_ids, what);
        /* Byte fallback and the identity normalizer lose nothing: the ids
         * decode to the text (specials skipped for the "hf" rows would
         * drop their text, so only "sp" rows). */
        if (round_trip && strcmp(c->kind, "sp") == 0)
            expect_decode(t, c->ids, c->n_ids, 0, c->text, c->text_len, what);
        checked++;
    }
    assert_true(checked >= 14);
    free(cs);
}

static void test_sp_bpe_tokenizer_json(void **state) {
    (void)state;
    tokenizer *t = load_fixture_dir("sp_bpe"); /* tokenizer.json wins over .model */
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_SPM_BPE);
    check_cases(t, "sp_bpe", true, true, "sp_bpe tokenizer.json");
    tokenizer_free(t);
}

static void test_sp_bpe_model(void **state) {
    (void)state;
    tokenizer *t = load_sp_bpe_model();
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_SPM_BPE);
    check_cases(t, "sp_bpe", true, true, "sp_bpe tokenizer.model");
    tokenizer_free(t);
}

static void test_sp_unigram_model(void **state) {
    (void)state;
    tokenizer *t = load_fixture_dir("sp_uni");
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_SPM_UNIGRAM);
    check_cases(t, "sp_uni", false, false, "sp_uni tokenizer.model");
    tokenizer_free(t);
}

/* Unigram with byte fallback: characters no piece covers become bytes, and
 * the ids decode back to the text. */
static void test_sp_unigram_byte_fallback(void **state) {
    (void)state;
    tokenizer *t = load_fixture_dir("sp_unibf");
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_SPM_UNIGRAM);
    check_cases(t, "sp_unibf", false, true, "sp_unibf tokenizer.model");
    tokenizer_free(t);
}

/* A model with its own normalization rules (a precompiled_charsmap). */
static void test_sp_charsmap_model(void **state) {
    (void)state;
    tokenizer *t = load_fixture_dir("sp_rules");
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_SPM_UNIGRAM);
    check_cases(t, "sp_rules", false, false, "sp_rules tokenizer.model");
    tokenizer_free(t);
}

/* BOS/EOS from tokenizer_config.json and the model input around them. */
static void test_sp_bos_eos(void **state) {
    (void)state;
    tokenizer *t = load_fixture_dir("sp_bpe");
    assert_string_equal(tokenizer_id_to_token(t, tokenizer_bos_id(t)), "<s>");
    assert_string_equal(tokenizer_id_to_token(t, tokenizer_eos_id(t)), "</s>");
    assert_string_equal(tokenizer_id_to_token(t, tokenizer_unk_id(t)), "<unk>");
    assert_true(tokenizer_adds_bos(t));
    assert_false(tokenizer_adds_eos(t));
    assert_int_equal(tokenizer_num_special_tokens(t, 0), 1);
    assert_int_equal(tokenizer_num_special_tokens(t, 1), 2);
    int32_t *plain, ids[64], types[64];
    size_t np;
    int len;
    char err[256];
    assert_int_equal(tokenizer_tokenize(t, "hello world", 11, &plain, &np, err, sizeof err), 0);
    assert_int_equal(
        tokenizer_encode(t, "hello world", NULL, 64, ids, types, &len, err, sizeof err), 0);
    assert_int_equal(len, (int)np + 1);
    assert_int_equal(ids[0], tokenizer_bos_id(t));
    assert_memory_equal(ids + 1, plain, np * sizeof *plain);
    /* Pair (LlamaTokenizer): <s> a <s> b, types 0 for a, 1 for b. */
    assert_int_equal(tokenizer_encode(t, "hello", "world", 64, ids, types, &len, err, sizeof err),
                     0);
    int32_t *pa, *pb;
    size_t na, nb;
    assert_int_equal(tokenizer_tokenize(t, "hello", 5, &pa, &na, err, sizeof err), 0);
    assert_int_equal(tokenizer_tokenize(t, "world", 5, &pb, &nb, err, sizeof err), 0);
    assert_int_equal(len, (int)(na + nb + 2));
    assert_int_equal(ids[0], tokenizer_bos_id(t));
    assert_int_equal(ids[1 + na], tokenizer_bos_id(t));
    assert_int_equal(types[na], 0);
    assert_int_equal(types[1 + na], 1);
    assert_int_equal(types[len - 1], 1);
    free(pa);
    free(pb);
    /* Decoding with and without the special tokens. */
    assert_int_equal(tokenizer_encode(t, "hello world", NULL, 64, ids, NULL, &len, err, sizeof err),
                     0);
    expect_decode(t, ids, (size_t)len, 1, "hello world", 11, "skip specials");
    expect_decode(t, ids, (size_t)len, 0, "<s> hello world", 15, "keep specials");
    free(plain);
    tokenizer_free(t);

    /* add_eos_token true, add_bos_token false (the config wins over the
     * tokenizer.json template). */
    size_t tl, ml;
    char *tj = read_test_file(FIXTURES "/sp_bpe/tokenizer.json", &tl);
    const char cfg[] = "{\"add_bos_token\": false, \"add_eos_token\": true}";
    t = load_files(err, sizeof err, "tokenizer.json", tj, tl, "tokenizer_config.json", cfg,
                   strlen(cfg), NULL);
    if (!t) fail_msg("load: %s", err);
    assert_int_equal(tokenizer_encode(t, "hello", NULL, 64, ids, NULL, &len, err, sizeof err), 0);
    assert_int_equal(tokenizer_num_special_tokens(t, 0), 1);
    assert_int_not_equal(ids[0], tokenizer_bos_id(t));
    assert_int_equal(ids[len - 1], tokenizer_eos_id(t));
    tokenizer_free(t);
    /* No config: the template "<s> $A" of tokenizer.json. */
    t = load_files(err, sizeof err, "tokenizer.json", tj, tl, NULL);
    if (!t) fail_msg("load: %s", err);
    assert_true(tokenizer_adds_bos(t));
    assert_false(tokenizer_adds_eos(t));
    tokenizer_free(t);
    free(tj);
    /* tokenizer.model alone: SentencePiece's defaults, BOS only. */
    char *m = read_test_file(FIXTURES "/sp_bpe/tokenizer.model", &ml);
    t = load_files(err, sizeof err, "tokenizer.model", m, ml, NULL);
    if (!t) fail_msg("load: %s", err);
    assert_true(tokenizer_adds_bos(t));
    assert_false(tokenizer_adds_eos(t));
    assert_string_equal(tokenizer_id_to_token(t, tokenizer_bos_id(t)), "<s>");
    tokenizer_free(t);
    free(m);
}

/* The Metaspace pre-tokenizer (newer tokenizer.json) gives the same ids as
 * the legacy normalizer when the text does not start with a space and holds
 * no special tokens; with a leading space it does not add a second ▁. */
static void test_sp_metaspace(void **state) {
    (void)state;
    size_t tl;
    char *tj = read_test_file(FIXTURES "/sp_bpe/tokenizer.json", &tl);
    const char *norm = strstr(tj, "\"normalizer\"");
    const char *pre_end = strstr(tj, "\"post_processor\"");
    assert_non_null(norm);
    assert_non_null(pre_end);
    char *meta = malloc(tl + 512);
    assert_non_null(meta);
    int k = snprintf(meta, tl + 512, "%.*s", (int)(norm - tj), tj);
    k += snprintf(meta + k, tl + 512 - (size_t)k,
                  "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Metaspace\", "
                  "\"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"first\", "
                  "\"split\": false},\n %s",
                  pre_end);
    char err[256];
    tokenizer *meta_t = load_files(err, sizeof err, "tokenizer.json", meta, strlen(meta), NULL);
    if (!meta_t) fail_msg("load: %s", err);
    tokenizer *legacy = load_fixture_dir("sp_bpe");
    static const char *const same[] = {"hello world", "caf\xc3\xa9 na\xc3\xafve",
                                       "\xf0\x9f\x98\x80 emoji", "a  b"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        int32_t *want;
        size_t nw;
        assert_int_equal(
            tokenizer_tokenize(legacy, same[i], strlen(same[i]), &want, &nw, err, sizeof err), 0);
        assert_true(nw > 0);
        expect_tokens(meta_t, same[i], strlen(same[i]), want, nw, "metaspace");
        free(want);
    }
    /* " hello": legacy prepends ▁ to "▁hello" (two), Metaspace keeps one:
     * the same ids as "hello". After a special token ("first"): no ▁. */
    int32_t *a, *b;
    size_t na, nb;
    assert_int_equal(tokenizer_tokenize(meta_t, " hello", 6, &a, &na, err, sizeof err), 0);
    assert_int_equal(tokenizer_tokenize(meta_t, "hello", 5, &b, &nb, err, sizeof err), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(a);
    assert_int_equal(tokenizer_tokenize(legacy, " hello", 6, &a, &na, err, sizeof err), 0);
    assert_int_equal(na, nb + 1);
    free(a);
    assert_int_equal(tokenizer_tokenize(meta_t, "<s>hello", 8, &a, &na, err, sizeof err), 0);
    assert_int_equal(a[0], tokenizer_bos_id(meta_t));
    assert_true(na >= 2);
    assert_int_not_equal(a[1], b[0]); /* "hello" without its ▁ is other pieces */
    free(a);
    free(b);
    tokenizer_free(meta_t);
    tokenizer_free(legacy);
    free(meta);
    free(tj);
}

/* Byte fallback decoding: a lone continuation byte, or a cut sequence, is
 * one U+FFFD per byte (HF's ByteFallback decoder). */
static void test_sp_decode_bytes(void **state) {
    (void)state;
    tokenizer *t = load_fixture_dir("sp_bpe");
    char err[256];
    /* <0xE6> <0x97> (first two bytes of 日) then <0x41> "A". */
    int32_t e6 = id_of(t, "<0xE6>"), x97 = id_of(t, "<0x97>"), x41 = id_of(t, "<0x41>");
    int32_t bad[] = {e6, x97, x41};
    expect_decode(t, bad, 3, 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9, "cut sequence");
    int32_t good[] = {e6, x97, id_of(t, "<0xA5>")};
    expect_decode(t, good, 3, 0, "\xe6\x97\xa5", 3, "whole sequence");
    int32_t out_of_range[] = {100000};
    char *text;
    size_t len;
    assert_int_equal(tokenizer_decode(t, out_of_range, 1, 0, &text, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "not in the vocabulary"));
    tokenizer_free(t);
}

/* A damaged tokenizer.model is an error (or, cut at a field boundary, a
 * smaller model), never a read past the buffer: every prefix and a few
 * thousand single-byte corruptions (run under ASan / valgrind). */
static void test_sp_model_corrupt(void **state) {
    (void)state;
    size_t len;
    /* sp_rules: pieces, trainer and normalizer specs and a charsmap. */
    char *m = read_test_file(FIXTURES "/sp_rules/tokenizer.model", &len);
    char *dir = make_dir();
    char err[256];
    /* Text that walks the charsmap's trie (fullwidth h, the ligature, 12). */
    static const char probe[] = "\xef\xbd\x88"
                                "ello \xef\xac\x81ne 12 e\xcc\x81 world";
    int loaded = 0, failed = 0, corrupt_encoded = 0;
    for (size_t cut = 0; cut < len; cut += 7) {
        write_all(dir, "tokenizer.model", m, cut);
        tokenizer *t = tokenizer_load_dir(dir, err, sizeof err);
        if (t) {
            int32_t *ids;
            size_t n;
            if (tokenizer_tokenize(t, probe, sizeof probe - 1, &ids, &n, err, sizeof err) == 0)
                free(ids);
            loaded++;
        } else {
            failed++;
        }
        tokenizer_free(t);
    }
    uint32_t rng = 12345;
    char *c = malloc(len);
    assert_non_null(c);
    for (int i = 0; i < 2000; i++) {
        memcpy(c, m, len);
        rng = rng * 1664525u + 1013904223u;
        c[(rng >> 8) % len] = (char)(rng >> 24);
        write_all(dir, "tokenizer.model", c, len);
        tokenizer *t = tokenizer_load_dir(dir, err, sizeof err);
        if (t) {
            int32_t *ids;
            size_t n;
            if (tokenizer_tokenize(t, probe, sizeof probe - 1, &ids, &n, err, sizeof err) == 0) {
                free(ids);
                corrupt_encoded++;
            }
        }
        tokenizer_free(t);
    }
    free(c);
    free(m);
    remove_dir(dir);
    /* Both outcomes happened, so both paths ran under the sanitizers. */
    assert_true(failed > 0 && loaded > 0);
    assert_true(corrupt_encoded > 0);
}

/* ------------------------------------------------------------------ */
/* LLaMA-3 / Qwen2 byte-level BPE                                       */

/* GPT-2 bytes_to_unicode, for writing the vocabulary. */
static unsigned byte_char(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    return 0x100 + 67;
}

/* Append the JSON string literal of s's byte-level form. */
static void json_bytelevel(char *out, size_t cap, size_t *o, const char *s, size_t n) {
    *o += (size_t)snprintf(out + *o, cap - *o, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned c = byte_char((unsigned char)s[i]);
        if (c == '"' || c == '\\')
            *o += (size_t)snprintf(out + *o, cap - *o, "\\%c", c);
        else if (c < 0x80)
            *o += (size_t)snprintf(out + *o, cap - *o, "%c", c);
        else
            *o += (size_t)snprintf(out + *o, cap - *o, "%c%c", 0xC0 | (c >> 6), 0x80 | (c & 0x3F));
    }
    *o += (size_t)snprintf(out + *o, cap - *o, "\"");
    assert_true(*o < cap);
}

#define LLAMA3_PATTERN                                                                     \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| " \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define QWEN2_PATTERN                                                                 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| " \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

/* A LLaMA-3-style tokenizer.json: the 256 byte characters (ids 0..255),
 * then the extra entries (ids 256..), no merges, ignore_merges, special
 * tokens <|begin_of_text|> (1000) and <|eot_id|> (1001) and the
 * "<|begin_of_text|> $A" template. */
static tokenizer *load_bytelevel_with(const char *pattern, const char *normalizer, bool pp_sequence,
                                      const char *const *extra, size_t n_extra) {
    size_t cap = 1 << 16, o = 0;
    char *j = malloc(cap);
    assert_non_null(j);
    o += (size_t)snprintf(j + o, cap - o,
                          "{\"added_tokens\": [{\"id\": 1000, \"content\": \"<|begin_of_text|>\","
                          " \"special\": true}, {\"id\": 1001, \"content\": \"<|eot_id|>\","
                          " \"special\": true}], \"normalizer\": %s,"
                          " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                          "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\":"
                          " \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\","
                          " \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\":"
                          " false}]}, \"post_processor\": %s{\"type\": \"TemplateProcessing\","
                          " \"single\": [{\"SpecialToken\": {\"id\": \"<|begin_of_text|>\","
                          " \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}%s,"
                          " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null,"
                          " \"ignore_merges\": true, \"byte_fallback\": false, \"vocab\": {",
                          normalizer, pattern,
                          pp_sequence ? "{\"type\": \"Sequence\", \"processors\": [{\"type\":"
                                        " \"ByteLevel\", \"trim_offsets\": false}, "
                                      : "",
                          pp_sequence ? "]}" : "");
    for (unsigned b = 0; b < 256; b++) {
        char c = (char)b;
        json_bytelevel(j, cap, &o, &c, 1);
        o += (size_t)snprintf(j + o, cap - o, ": %u, ", b);
    }
    for (size_t i = 0; i < n_extra; i++) {
        json_bytelevel(j, cap, &o, extra[i], strlen(extra[i]));
        o += (size_t)snprintf(j + o, cap - o, ": %zu, ", 256 + i);
    }
    o -= 2; /* the last ", " */
    o += (size_t)snprintf(j + o, cap - o, "}, \"merges\": []}}");
    assert_true(o < cap);
    char err[256];
    tokenizer *t = load_files(err, sizeof err, "tokenizer.json", j, o, NULL);
    if (!t) fail_msg("load: %s", err);
    free(j);
    return t;
}

static tokenizer *load_bytelevel(const char *pattern, const char *const *extra, size_t n_extra) {
    return load_bytelevel_with(pattern, "null", false, extra, n_extra);
}

typedef struct {
    const char *text;
    const char *split[12]; /* the pre-tokens, NULL-ended */
} split_case;

/* Each split worked out from the regex, alternatives in order:
 * C = (?i:'s|...), L = [^\r\n\p{L}\p{N}]?\p{L}+, N = \p{N}{1,3},
 * P = " ?[^\s\p{L}\p{N}]+[\r\n]*", NL = \s*[\r\n]+, S1 = \s+(?!\S), S = \s+. */
static const split_case llama3_splits[] = {
    /* L takes the space before a word. */
    {"Hello world", {"Hello", " world"}},
    /* C is case-insensitive; "'m" and "'T" split off. */
    {"I'm DON'T", {"I", "'m", " DON", "'T"}},
    /* N: runs of at most 3 digits; a space before digits is its own S. */
    {"12345 42", {"123", "45", " ", "42"}},
    /* S1 leaves the last space for the word: "a", " ", " b". */
    {"a  b", {"a", " ", " b"}},
    /* P: one optional space then punctuation, then newlines. */
    {"hello!!! ok", {"hello", "!!!", " ok"}},
    {"end.\n", {"end", ".\n"}},
    /* NL: whitespace up to the last newline; then S1 and L. */
    {"x\n\ny", {"x", "\n\n", "y"}},
    {"  \n  z", {"  \n", " ", " z"}},
    /* L's optional first character may be any non-letter/number/newline. */
    {"(hello)", {"(hello", ")"}},
    {"\t\tfoo", {"\t", "\tfoo"}},
    {"a\xc2\xa0"
     "b",
     {"a", "\xc2\xa0"
           "b"}},
    /* Letters of any script; an emoji is P. */
    {"\xc3\xbcn\xc3\xaf"
     "c\xc3\xb6" /* ünïcö */ " \xe6\x97\xa5\xe6\x9c\xac" /* 日本 */,
     {"\xc3\xbcn\xc3\xaf"
      "c\xc3\xb6",
      " \xe6\x97\xa5\xe6\x9c\xac"}},
    {"\xf0\x9f\x99\x82 ok", {"\xf0\x9f\x99\x82", " ok"}},
    /* "'" after a space is not C (that needs the quote first): P " '". */
    {"x 's", {"x", " '", "s"}},
    /* Numbers with punctuation, trailing spaces. */
    {"1,234.5", {"1", ",", "234", ".", "5"}},
    {"abc  ", {"abc", "  "}},
};

static void check_splits(const tokenizer *t, const split_case *cs, size_t ncs,
                         const char *const *extra, size_t n_extra, const char *what) {
    for (size_t i = 0; i < ncs; i++) {
        int32_t want[12];
        size_t nw = 0;
        for (; cs[i].split[nw]; nw++) {
            size_t k = 0;
            while (k < n_extra && strcmp(extra[k], cs[i].split[nw]) != 0) k++;
            if (k == n_extra) { /* a one-byte pre-token is its byte's id */
                assert_int_equal(strlen(cs[i].split[nw]), 1);
                want[nw] = (unsigned char)cs[i].split[nw][0];
            } else {
                want[nw] = (int32_t)(256 + k);
            }
        }
        expect_tokens(t, cs[i].text, strlen(cs[i].text), want, nw, what);
    }
}

/* The distinct multi-byte pre-tokens of the cases, as vocabulary entries. */
static size_t collect_extra(const split_case *cs, size_t ncs, const char **extra, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < ncs; i++)
        for (size_t k = 0; cs[i].split[k]; k++) {
            if (strlen(cs[i].split[k]) < 2) continue;
            size_t j = 0;
            while (j < n && strcmp(extra[j], cs[i].split[k]) != 0) j++;
            if (j == n) {
                assert_true(n < cap);
                extra[n++] = cs[i].split[k];
            }
        }
    return n;
}

static void test_llama3_pretokenizer(void **state) {
    (void)state;
    const size_t ncs = sizeof llama3_splits / sizeof llama3_splits[0];
    const char *extra[128];
    size_t n_extra = collect_extra(llama3_splits, ncs, extra, 128);
    tokenizer *t = load_bytelevel(LLAMA3_PATTERN, extra, n_extra);
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_BPE);
    check_splits(t, llama3_splits, ncs, extra, n_extra, "llama3");
    tokenizer_free(t);
}

static void test_qwen2_pretokenizer(void **state) {
    (void)state;
    /* Qwen2's regex differs only in single digits; its NFC normalizer
     * composes e + U+0301 into \u00e9 (C3 A9) before the split, so the
     * letters stay one run "caf\u00e9" (without NFC the mark, category Mn
     * and so not \p{L}, would end the run). */
    static const split_case qwen[] = {
        {"12345 42", {"1", "2", "3", "4", "5", " ", "4", "2"}},
        {"Hello world", {"Hello", " world"}},
        {"cafe\xcc\x81 ok", {"caf\xc3\xa9", " ok"}},
    };
    const size_t nq = sizeof qwen / sizeof qwen[0];
    const char *extra[16];
    size_t n_extra = collect_extra(qwen, nq, extra, 16);
    tokenizer *t = load_bytelevel_with(QWEN2_PATTERN, "{\"type\": \"NFC\"}", true, extra, n_extra);
    check_splits(t, qwen, nq, extra, n_extra, "qwen2");
    /* The template inside a post_processor Sequence (LLaMA-3's form). */
    assert_true(tokenizer_adds_bos(t));
    tokenizer_free(t);
    /* Without NFC the mark splits off: "cafe" is not in the vocabulary and
     * comes out as bytes. */
    t = load_bytelevel(QWEN2_PATTERN, extra, n_extra);
    int32_t *ids;
    size_t n;
    char err[256];
    assert_int_equal(tokenizer_tokenize(t, "cafe\xcc\x81", 6, &ids, &n, err, sizeof err), 0);
    assert_int_equal(n, 6);
    free(ids);
    tokenizer_free(t);
}

static void test_llama3_specials_and_decode(void **state) {
    (void)state;
    const char *extra[] = {"Hello", " world"};
    tokenizer *t = load_bytelevel(LLAMA3_PATTERN, extra, 2);
    /* The template gives BOS; no EOS; special tokens in the text. */
    assert_true(tokenizer_adds_bos(t));
    assert_false(tokenizer_adds_eos(t));
    assert_int_equal(tokenizer_bos_id(t), 1000);
    int32_t ids[16];
    int len;
    char err[256];
    assert_int_equal(
        tokenizer_encode(t, "Hello world<|eot_id|>", NULL, 16, ids, NULL, &len, err, sizeof err),
        0);
    assert_int_equal(len, 4);
    assert_int_equal(ids[0], 1000);
    assert_int_equal(ids[1], 256);
    assert_int_equal(ids[2], 257);
    assert_int_equal(ids[3], 1001);
    expect_decode(t, ids, 4, 1, "Hello world", 11, "skip");
    expect_decode(t, ids, 4, 0, "<|begin_of_text|>Hello world<|eot_id|>", 38, "keep");
    /* Not in the vocabulary as a whole: bytes (no merges), and a cut UTF-8
     * sequence decodes to U+FFFD (maximal subpart: E6 97 is one). */
    int32_t cut[] = {0xE6, 0x97, 'A', 0xFF};
    expect_decode(t, cut, 4, 0,
                  "\xef\xbf\xbd"
                  "A\xef\xbf\xbd",
                  7, "lossy");
    tokenizer_free(t);

    /* An unknown Split regex is refused with its text. */
    static const char unknown_split[] =
        "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, "
        "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": "
        "\"ByteLevel\", \"use_regex\": false}]}, \"model\": {\"type\": \"BPE\","
        " \"vocab\": {\"a\": 0}, \"merges\": []}}";
    assert_null(load_files(err, sizeof err, "tokenizer.json", unknown_split,
                           sizeof unknown_split - 1, NULL));
    assert_non_null(strstr(err, "not one of the known"));
}

/* ------------------------------------------------------------------ */
/* Arbitrary bytes                                                      */

/* Independent UTF-8 check (RFC 3629) for the expectation. */
static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = c < 0x80                 ? 1
                   : c >= 0xC2 && c <= 0xDF ? 2
                   : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4
                                            : 0;
        if (k == 0 || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return false;
        if (k == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F)))
            return false;
        if (k == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F)))
            return false;
        i += k;
    }
    return true;
}

/* Random byte strings (mostly invalid UTF-8) and random valid text: invalid
 * input is an error, valid input encodes; with byte fallback every valid
 * text decodes back to itself. Each string lives in its own exactly-sized
 * allocation so ASan / valgrind catch a read past its end. */
static void test_arbitrary_bytes(void **state) {
    (void)state;
    const char *extra[] = {"Hello"};
    tokenizer *ts[] = {load_fixture_dir("sp_bpe"), load_sp_bpe_model(), load_fixture_dir("sp_uni"),
                       load_bytelevel(LLAMA3_PATTERN, extra, 1)};
    const size_t nt = sizeof ts / sizeof ts[0];
    uint32_t rng = 7;
    int valid_seen = 0, invalid_seen = 0;
    for (int iter = 0; iter < 400; iter++) {
        rng = rng * 1664525u + 1013904223u;
        size_t n = (rng >> 16) % 24;
        unsigned char *s = malloc(n ? n : 1);
        assert_non_null(s);
        bool text_mode = iter % 2 == 1;
        for (size_t i = 0; i < n; i++) {
            rng = rng * 1664525u + 1013904223u;
            s[i] = (unsigned char)(rng >> 24);
        }
        if (text_mode) { /* valid UTF-8 from random code points */
            size_t o = 0;
            while (o < n) {
                rng = rng * 1664525u + 1013904223u;
                uint32_t cp = (rng >> 8) % 5 == 0 ? ' ' : (rng >> 12) % 0x30000;
                if (cp >= 0xD800 && cp < 0xE000) cp = 'x';
                unsigned char u[4];
                size_t k = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
                if (k == 1) u[0] = (unsigned char)cp;
                if (k == 2) u[0] = (unsigned char)(0xC0 | (cp >> 6));
                if (k == 3) u[0] = (unsigned char)(0xE0 | (cp >> 12));
                if (k == 4) u[0] = (unsigned char)(0xF0 | (cp >> 18));
                for (size_t j = 1; j < k; j++)
                    u[j] = (unsigned char)(0x80 | ((cp >> (6 * (k - 1 - j))) & 0x3F));
                if (o + k > n) break;
                memcpy(s + o, u, k);
                o += k;
            }
            n = o;
        }
        bool valid = valid_utf8(s, n);
        valid ? valid_seen++ : invalid_seen++;
        for (size_t k = 0; k < nt; k++) {
            int32_t *ids = NULL;
            size_t nid;
            char err[256];
            int rc = tokenizer_tokenize(ts[k], (const char *)s, n, &ids, &nid, err, sizeof err);
            if (!valid) {
                assert_int_equal(rc, -1);
                assert_non_null(strstr(err, "invalid UTF-8"));
                continue;
            }
            if (rc) fail_msg("tokenizer %zu: %s", k, err);
            /* sp_bpe (both loaders) and the byte-level BPE lose nothing. */
            if (k != 2) expect_decode(ts[k], ids, nid, 0, (const char *)s, n, "round trip");
            free(ids);
        }
        free(s);
    }
    assert_true(valid_seen > 100 && invalid_seen > 100);
    for (size_t k = 0; k < nt; k++) tokenizer_free(ts[k]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sp_bpe_tokenizer_json),
        cmocka_unit_test(test_sp_bpe_model),
        cmocka_unit_test(test_sp_unigram_model),
        cmocka_unit_test(test_sp_unigram_byte_fallback),
        cmocka_unit_test(test_sp_charsmap_model),
        cmocka_unit_test(test_sp_bos_eos),
        cmocka_unit_test(test_sp_metaspace),
        cmocka_unit_test(test_sp_decode_bytes),
        cmocka_unit_test(test_sp_model_corrupt),
        cmocka_unit_test(test_llama3_pretokenizer),
        cmocka_unit_test(test_qwen2_pretokenizer),
        cmocka_unit_test(test_llama3_specials_and_decode),
        cmocka_unit_test(test_arbitrary_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
