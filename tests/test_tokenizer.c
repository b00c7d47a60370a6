/* test_tokenizer.c — WordPiece and byte-level BPE against hand-worked ids.
 *
 * Each test builds a tiny model folder (vocab + config files) in a temp dir,
 * loads it and checks tokenizer_encode() output. Every expected id sequence
 * is derived by hand from the algorithm of the Hugging Face slow tokenizer
 * (BertTokenizer / RobertaTokenizer); the derivation is written next to it.
 * Vocabulary ids are line numbers (vocab.txt) or the values in vocab.json,
 * listed in the comments above each vocabulary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

#define MAX_IDS 256

/* ------------------------------------------------------------------ */
/* Temp model folders                                                   */

static const char *const tmp_names[] = {
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
};

static char *make_dir(void) {
    char *d = strdup("/tmp/aflo_tok_XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void put_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void remove_dir(char *dir) {
    char path[512];
    for (size_t i = 0; i < sizeof tmp_names / sizeof tmp_names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, tmp_names[i]);
        unlink(path);
    }
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* Load a folder holding the given files (name, content pairs, NULL-ended);
 * the folder is removed again right away (the tokenizer keeps no files). */
static tokenizer *load_files(char *errbuf, size_t errlen, ...) {
    char *dir = make_dir();
    va_list ap;
    va_start(ap, errlen);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) put_file(dir, name, va_arg(ap, const char *));
    va_end(ap);
    tokenizer *t = tokenizer_load_dir(dir, errbuf, errlen);
    remove_dir(dir);
    return t;
}

/* ------------------------------------------------------------------ */
/* Checking helpers                                                     */

static void expect_ids(const tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                       int max_len, const int32_t *want, int nwant, const int32_t *want_types) {
    int32_t ids[MAX_IDS], types[MAX_IDS];
    char err[256] = "";
    int len = -1;
    assert_true(max_len <= MAX_IDS);
    int rc = tokenizer_encode_n(t, a, alen, b, blen, max_len, ids, types, &len, err, sizeof err);
    if (rc != 0) fail_msg("encode failed: %s", err);
    if (len != nwant || memcmp(ids, want, (size_t)nwant * sizeof *ids) != 0) {
        char got[2048];
        size_t o = 0;
        for (int i = 0; i < len && o < sizeof got - 16; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%d ", ids[i]);
        fail_msg("ids mismatch: got [%s] (len %d, want len %d)", got, len, nwant);
    }
    for (int i = 0; i < nwant; i++) assert_int_equal(types[i], want_types ? want_types[i] : 0);
}

#define IDS(...)                      \
    ((const int32_t[]){__VA_ARGS__}), \
        (int)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

/* Single sequence, NUL-terminated text, generous max_len. */
#define EXPECT1(t, text, ...) \
    expect_ids((t), (text), strlen(text), NULL, 0, 128, IDS(__VA_ARGS__), NULL)

static void expect_error(const tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                         int max_len, const char *needle) {
    int32_t ids[MAX_IDS];
    char err[256] = "";
    int len = -1;
    assert_int_equal(
        tokenizer_encode_n(t, a, alen, b, blen, max_len, ids, NULL, &len, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

/* ------------------------------------------------------------------ */
/* WordPiece                                                            */

/* Uncased vocabulary, id = line number:
 *   0 [PAD]  1 [UNK]  2 [CLS]  3 [SEP]  4 [MASK]  5 hello  6 world  7 !  8 .
 *   9 ?  10 我  11 爱  12 你  13 un  14 ##aff  15 ##able  16 a  17 ##a  18 $
 *   19 b  20 οδος  21 ᄒ (U+1112)  22 ##ᅡ (U+1161)  23 ##ᆫ (U+11AB)  24 i
 *   25 ##s  26 hel  27 ##lo */
static const char wp_vocab[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n!\n.\n?\n"
    "我\n爱\n你\nun\n##aff\n##able\na\n##a\n$\nb\n"
    "οδος\n\xe1\x84\x92\n##\xe1\x85\xa1\n##\xe1\x86\xab\ni\n##s\nhel\n##lo\n";

static int wp_setup(void **state) {
    char err[256];
    /* No tokenizer_config.json: BertTokenizer defaults (lower-case, strip accents). */
    tokenizer *t = load_files(err, sizeof err, "vocab.txt", wp_vocab, NULL);
    if (!t) fail_msg("load: %s", err);
    *state = t;
    return 0;
}

static int tok_teardown(void **state) {
    tokenizer_free(*state);
    return 0;
}

static void test_wp_accessors(void **state) {
    const tokenizer *t = *state;
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_WORDPIECE);
    assert_int_equal(tokenizer_pad_id(t), 0);
    assert_int_equal(tokenizer_unk_id(t), 1);
    assert_int_equal(tokenizer_cls_id(t), 2);
    assert_int_equal(tokenizer_sep_id(t), 3);
    assert_int_equal(tokenizer_vocab_size(t), 28);
    assert_int_equal(tokenizer_num_special_tokens(t, 0), 2);
    assert_int_equal(tokenizer_num_special_tokens(t, 1), 3);
    assert_string_equal(tokenizer_id_to_token(t, 5), "hello");
    assert_string_equal(tokenizer_id_to_token(t, 14), "##aff");
    assert_null(tokenizer_id_to_token(t, 28));
    assert_null(tokenizer_id_to_token(t, -1));
}

static void test_wp_accents_and_case(void **state) {
    const tokenizer *t = *state;
    /* "Héllo Wörld": split on the space; lower() -> "héllo", "wörld"; strip
     * accents: NFD gives e + U+0301 and o + U+0308, the marks (Mn) go ->
     * "hello" (5), "world" (6). */
    EXPECT1(t, "H\xc3\xa9llo W\xc3\xb6rld", 2, 5, 6, 3);
    /* Already decomposed input ends the same: NFC composes, lower, NFD, drop Mn. */
    EXPECT1(t, "HE\xcc\x81LLO", 2, 5, 3);
    /* "ΟΔΟΣ": lower() gives ο δ ο and, for the Σ after a cased letter with
     * nothing cased after it, the final sigma ς: "οδος" (20). With "!" after
     * it the Σ is still final ("!" is neither cased nor case-ignorable), then
     * "!" splits off (7). */
    EXPECT1(t, "\xce\x9f\xce\x94\xce\x9f\xce\xa3", 2, 20, 3);
    EXPECT1(t, "\xce\x9f\xce\x94\xce\x9f\xce\xa3!", 2, 20, 7, 3);
    /* "한" (U+D55C): S = 0xD55C-0xAC00 = 10588 = 18*588 + 0*28 + 4, so NFD is
     * U+1112 U+1161 U+11AB; all three are letters (Lo), none is removed.
     * WordPiece: "한" and "하" are absent, "ᄒ" (21); then "##ᅡᆫ" absent,
     * "##ᅡ" (22); then "##ᆫ" (23). */
    EXPECT1(t, "\xed\x95\x9c", 2, 21, 22, 23, 3);
    /* "İ" (U+0130): Python's lower() gives "i" + U+0307, stripping drops the
     * mark: "i" (24). */
    EXPECT1(t, "\xc4\xb0", 2, 24, 3);
}

static void test_wp_punctuation(void **state) {
    const tokenizer *t = *state;
    /* Every punctuation character is its own token: hello ! ! ! . . . ? */
    EXPECT1(t, "hello!!!...?", 2, 5, 7, 7, 7, 8, 8, 8, 9, 3);
    /* "$" is a symbol in Unicode but ASCII 33-47 counts as punctuation:
     * "a" (16), "$" (18), "b" (19). "€" (U+20AC, Sc, not ASCII) is not
     * punctuation: "a€b" stays one word; "a" matches, then neither "##€b" nor
     * "##€" is in the vocabulary, so the whole word is [UNK]. */
    EXPECT1(t, "a$b", 2, 16, 18, 19, 3);
    EXPECT1(t,
            "a\xe2\x82\xac"
            "b",
            2, 1, 3);
}

static void test_wp_cjk_emoji(void **state) {
    const tokenizer *t = *state;
    /* Each CJK ideograph gets spaces around it: 我 (10) 爱 (11) 你 (12). */
    EXPECT1(t, "我爱你", 2, 10, 11, 12, 3);
    EXPECT1(t, "hello我", 2, 5, 10, 3);
    /* U+1F600 is a symbol (So): no split, not in the vocabulary -> [UNK]. */
    EXPECT1(t, "hello \xf0\x9f\x98\x80", 2, 5, 1, 3);
}

static void test_wp_wordpiece_greedy(void **state) {
    const tokenizer *t = *state;
    /* Longest match first: "un" (13), then "##aff" (14), then "##able" (15). */
    EXPECT1(t, "unaffable", 2, 13, 14, 15, 3);
    /* "hello" is taken whole (5), not "hel" (26) + "##lo" (27). */
    EXPECT1(t, "hello", 2, 5, 3);
    /* "helo": "hel" matches, then no "##o": the whole word is [UNK], not
     * "hel" + [UNK]. "xyz" matches nothing at all: [UNK]. */
    EXPECT1(t, "helo", 2, 1, 3);
    EXPECT1(t, "xyz", 2, 1, 3);
}

static void expect_decoded(const tokenizer *t, const char *text, int skip, const char *want) {
    int32_t ids[MAX_IDS];
    int len;
    char err[256], *out;
    size_t olen;
    assert_int_equal(tokenizer_encode(t, text, NULL, MAX_IDS, ids, NULL, &len, err, sizeof err), 0);
    if (tokenizer_decode(t, ids, (size_t)len, skip, &out, &olen, err, sizeof err))
        fail_msg("decode: %s", err);
    if (strcmp(out, want) != 0 || olen != strlen(want))
        fail_msg("decoded \"%s\", want \"%s\"", out, want);
    free(out);
}

static void test_wp_decode(void **state) {
    const tokenizer *t = *state;
    /* Tokens joined by spaces, "##" glued on (no clean-up of the space
     * before punctuation): [CLS] un ##aff ##able ! [SEP]. Lower-casing is
     * not undone. */
    expect_decoded(t, "Unaffable!", 1, "unaffable !");
    expect_decoded(t, "hello world", 0, "[CLS] hello world [SEP]");
}

static void test_wp_long_word(void **state) {
    const tokenizer *t = *state;
    char word[102];
    int32_t want[104];
    /* 100 characters is the limit: "a" (16) then 99 x "##a" (17). */
    memset(word, 'a', 100);
    word[100] = '\0';
    want[0] = 2;
    want[1] = 16;
    for (int i = 2; i <= 100; i++) want[i] = 17;
    want[101] = 3;
    expect_ids(t, word, 100, NULL, 0, 128, want, 102, NULL);
    /* 101 characters: [UNK] without trying WordPiece. */
    memset(word, 'a', 101);
    word[101] = '\0';
    EXPECT1(t, word, 2, 1, 3);
}

static void test_wp_empty_and_control(void **state) {
    const tokenizer *t = *state;
    EXPECT1(t, "", 2, 3);
    EXPECT1(t, " \t\r\n  ", 2, 3);
    /* Cleaning drops U+0001 and U+007F (Cc), U+200B (Cf) and U+FFFD, so
     * these are "hello" and "world". */
    EXPECT1(t,
            "hel\x01lo\x7f wor\xe2\x80\x8b"
            "ld",
            2, 5, 6, 3);
    EXPECT1(t, "hel\xef\xbf\xbdlo", 2, 5, 3);
    /* NUL is dropped too (explicit length). */
    expect_ids(t, "hel\0lo", 6, NULL, 0, 16, IDS(2, 5, 3), NULL);
    /* \t \n \r and NBSP (Zs) become spaces. U+2028 (Zl) survives cleaning
     * but str.split() splits on it. */
    EXPECT1(t, "hello\tworld\r\n", 2, 5, 6, 3);
    EXPECT1(t, "hello\xc2\xa0world", 2, 5, 6, 3);
    EXPECT1(t, "hello\xe2\x80\xa8world", 2, 5, 6, 3);
}

static void test_wp_special_tokens_in_text(void **state) {
    const tokenizer *t = *state;
    /* "[SEP]" in the text is the special token (3); "[MASK]" is 4. */
    EXPECT1(t, "hello [SEP] world", 2, 5, 3, 6, 3);
    EXPECT1(t, "hello[MASK]", 2, 5, 4, 3);
    /* Matching is case-sensitive: "[sep]" is "[", "sep", "]", none in the
     * vocabulary. */
    EXPECT1(t, "[sep]", 2, 1, 1, 1, 3);
}

static void test_wp_pairs_and_truncation(void **state) {
    const tokenizer *t = *state;
    /* [CLS] hello [SEP] world [SEP], types 0 0 0 1 1. */
    expect_ids(t, "hello", 5, "world", 5, 16, IDS(2, 5, 3, 6, 3), (const int32_t[]){0, 0, 0, 1, 1});
    /* max_len 6 leaves 3 tokens: a = [5 6 5], b = [6]; a is longer, loses its
     * last -> [5 6] + [6]. */
    expect_ids(t, "hello world hello", 17, "world", 5, 6, IDS(2, 5, 6, 3, 6, 3),
               (const int32_t[]){0, 0, 0, 0, 1, 1});
    /* Equal lengths (2 and 2, budget 3): the second sequence loses first. */
    expect_ids(t, "hello world", 11, "hello world", 11, 6, IDS(2, 5, 6, 3, 5, 3),
               (const int32_t[]){0, 0, 0, 0, 1, 1});
    /* a = six "a" (16), b = "b b" (19 19), max_len 8, budget 5: a goes
     * 6 -> 5 -> 4 -> 3, then 3 + 2 fits. */
    expect_ids(t, "a a a a a a", 11, "b b", 3, 8, IDS(2, 16, 16, 16, 3, 19, 19, 3),
               (const int32_t[]){0, 0, 0, 0, 0, 1, 1, 1});
    /* Budget 1 with 1 + 1 tokens: equal, b loses -> [CLS] hello [SEP] [SEP]. */
    expect_ids(t, "hello", 5, "world", 5, 4, IDS(2, 5, 3, 3), (const int32_t[]){0, 0, 0, 1});
    /* Empty second text is still a pair. */
    expect_ids(t, "hello", 5, "", 0, 16, IDS(2, 5, 3, 3), (const int32_t[]){0, 0, 0, 1});
    /* Single sequence cut to max_len - 2. */
    expect_ids(t, "hello world hello", 17, NULL, 0, 4, IDS(2, 5, 6, 3), NULL);
    /* Truncation also applies to a very long text (tokenized only as far as needed). */
    size_t n = 6 * 50000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n; i += 6) memcpy(big + i, "hello ", 6);
    big[n] = '\0';
    expect_ids(t, big, n, NULL, 0, 5, IDS(2, 5, 5, 5, 3), NULL);
    free(big);
    /* Room for the special tokens is required. */
    expect_error(t, "hello", 5, "world", 5, 2, "special tokens");
    expect_error(t, "hello", 5, NULL, 0, 1, "special tokens");
}

static void test_wp_invalid_utf8(void **state) {
    const tokenizer *t = *state;
    expect_error(t, "\xff", 1, NULL, 0, 16, "text_a: invalid UTF-8 at byte 0");
    expect_error(t, "abc\xc3", 4, NULL, 0, 16, "invalid UTF-8 at byte 3"); /* truncated */
    expect_error(t, "\xc0\xaf", 2, NULL, 0, 16, "invalid UTF-8");          /* overlong '/' */
    expect_error(t, "\xed\xa0\x80", 3, NULL, 0, 16, "invalid UTF-8");      /* surrogate */
    expect_error(t, "\xf4\x90\x80\x80", 4, NULL, 0, 16, "invalid UTF-8");  /* > U+10FFFF */
    expect_error(t, "ok", 2, "x\x80", 2, 16, "text_b: invalid UTF-8 at byte 1");
    /* Even when truncation would drop that part of the text. */
    expect_error(t, "hello hello \xff", 13, NULL, 0, 3, "invalid UTF-8");
}

/* Cased vocabulary with CRLF line ends (Python reads them as "\n"):
 *   0 [PAD] 1 [UNK] 2 [CLS] 3 [SEP] 4 [MASK] 5 Héllo 6 hello 7 héllo 8 <cls> */
static const char wp_cased_vocab[] = "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]"
                                     "\r\nH\xc3\xa9llo\r\nhello\r\nh\xc3\xa9llo\r\n<cls>\r\n";

static void test_wp_config_options(void **state) {
    (void)state;
    char err[256];
    tokenizer *t = load_files(err, sizeof err, "vocab.txt", wp_cased_vocab, "tokenizer_config.json",
                              "{\"do_lower_case\": false}", NULL);
    if (!t) fail_msg("load: %s", err);
    /* No lower-casing, no accent stripping: "Héllo" (5), "hello" (6);
     * "Hello" is not in the vocabulary. The decomposed "He\u0301llo" is
     * composed by NFC first and so is "Héllo" too. */
    EXPECT1(t, "H\xc3\xa9llo hello Hello", 2, 5, 6, 1, 3);
    EXPECT1(t, "He\xcc\x81llo", 2, 5, 3);
    tokenizer_free(t);

    /* Lower-case but keep accents: "Héllo" -> "héllo" (7). */
    t = load_files(err, sizeof err, "vocab.txt", wp_cased_vocab, "tokenizer_config.json",
                   "{\"do_lower_case\": true, \"strip_accents\": false}", NULL);
    if (!t) fail_msg("load: %s", err);
    EXPECT1(t, "H\xc3\xa9llo", 2, 7, 3);
    tokenizer_free(t);

    /* special_tokens_map.json renames the CLS token (AddedToken form). */
    t = load_files(err, sizeof err, "vocab.txt", wp_cased_vocab, "special_tokens_map.json",
                   "{\"cls_token\": {\"content\": \"<cls>\", \"lstrip\": false}}", NULL);
    if (!t) fail_msg("load: %s", err);
    assert_int_equal(tokenizer_cls_id(t), 8);
    EXPECT1(t, "hello", 8, 6, 3);
    tokenizer_free(t);
}

static void test_load_errors(void **state) {
    (void)state;
    char err[256];
    char *dir = make_dir();
    assert_null(tokenizer_load_dir(dir, err, sizeof err));
    assert_non_null(strstr(err, "no tokenizer files"));
    remove_dir(dir);

    assert_null(load_files(err, sizeof err, "vocab.txt", "[PAD]\n[CLS]\n[SEP]\nhello\n", NULL));
    assert_non_null(strstr(err, "unk_token"));
    assert_null(load_files(err, sizeof err, "vocab.txt", wp_vocab, "tokenizer_config.json",
                           "{\"do_lower_case\": tru}", NULL));
    assert_non_null(strstr(err, "tokenizer_config.json"));
    assert_null(load_files(err, sizeof err, "vocab.txt", wp_vocab, "tokenizer_config.json",
                           "{\"do_lower_case\": \"yes\"}", NULL));
    assert_non_null(strstr(err, "booleans"));
    assert_null(load_files(err, sizeof err, "vocab.txt", "[UNK]\n\xff\n", NULL));
    assert_non_null(strstr(err, "invalid UTF-8"));
    assert_null(load_files(err, sizeof err, "tokenizer.json",
                           "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", NULL));
    assert_non_null(strstr(err, "WordPiece"));
    assert_null(
        load_files(err, sizeof err, "vocab.json", "{\"a\": -1}", "merges.txt", "#v\n", NULL));
    assert_non_null(strstr(err, "vocab.json"));
    assert_null(load_files(err, sizeof err, "vocab.json",
                           "{\"<s>\": 0, \"<pad>\": 1, \"</s>\": 2000000000}", "merges.txt", "#v\n",
                           NULL));
    assert_non_null(strstr(err, "vocabulary size"));
}

/* ------------------------------------------------------------------ */
/* Byte-level BPE                                                       */

/* GPT-2's byte map sends printable ASCII to itself and space (byte 32, the
 * 33rd non-printable byte in order 0..32) to U+0100 + 32 = U+0120 "Ġ"; é is
 * bytes C3 A9, both printable Latin-1: "Ã" "©".
 * Vocabulary (vocab.json):
 *   0 <s>  1 <pad>  2 </s>  3 <unk>  4 h  5 e  6 l  7 o  8 Ġ  9 w  10 r
 *   11 d  12 he  13 ll  14 hell  15 hello  16 Ġw  17 or  18 Ġwor  19 a
 *   20 b  21 c  22 bc  23 ab  24 aa  25 '  26 t  27 s  28 's  29 1  30 2
 *   31 12  32 Ã  33 ©  34 Ã©  35 !  36 <mask>
 * Merges by rank (merges.txt line - 2; line 1 is the header):
 *   0 h e  1 l l  2 he ll  3 hell o  4 Ġ w  5 o r  6 Ġw or  7 b c  8 a b
 *   9 a a  10 ' s  11 1 2  12 Ã © */
static const char bpe_vocab[] =
    "{\"<s>\": 0, \"<pad>\": 1, \"</s>\": 2, \"<unk>\": 3, \"h\": 4, \"e\": 5, \"l\": 6,"
    " \"o\": 7, \"\xc4\xa0\": 8, \"w\": 9, \"r\": 10, \"d\": 11, \"he\": 12, \"ll\": 13,"
    " \"hell\": 14, \"hello\": 15, \"\xc4\xa0w\": 16, \"or\": 17, \"\xc4\xa0wor\": 18,"
    " \"a\": 19, \"b\": 20, \"c\": 21, \"bc\": 22, \"ab\": 23, \"aa\": 24, \"'\": 25,"
    " \"t\": 26, \"s\": 27, \"'s\": 28, \"1\": 29, \"2\": 30, \"12\": 31, \"\xc3\x83\": 32,"
    " \"\xc2\xa9\": 33, \"\xc3\x83\xc2\xa9\": 34, \"!\": 35, \"<mask>\": 36}";
#define BPE_MERGE_LINES                                                            \
    "h e\nl l\nhe ll\nhell o\n\xc4\xa0 w\no r\n\xc4\xa0w or\nb c\na b\na a\n' s\n" \
    "1 2\n\xc3\x83 \xc2\xa9"
static const char bpe_merges[] = "#version: 0.2\n" BPE_MERGE_LINES "\n";

static int bpe_setup(void **state) {
    char err[256];
    tokenizer *t =
        load_files(err, sizeof err, "vocab.json", bpe_vocab, "merges.txt", bpe_merges, NULL);
    if (!t) fail_msg("load: %s", err);
    *state = t;
    return 0;
}

static void test_bpe_accessors(void **state) {
    const tokenizer *t = *state;
    assert_int_equal(tokenizer_kind_of(t), TOKENIZER_BPE);
    assert_int_equal(tokenizer_cls_id(t), 0);
    assert_int_equal(tokenizer_pad_id(t), 1);
    assert_int_equal(tokenizer_sep_id(t), 2);
    assert_int_equal(tokenizer_unk_id(t), 3);
    assert_int_equal(tokenizer_vocab_size(t), 37);
    assert_int_equal(tokenizer_num_special_tokens(t, 1), 4);
    assert_string_equal(tokenizer_id_to_token(t, 18), "\xc4\xa0wor");
}

static void test_bpe_merges(void **state) {
    const tokenizer *t = *state;
    /* "hello": pairs (h,e)=0 (l,l)=1 -> he l l o -> he ll o -> (he,ll)=2 ->
     * hell o -> (hell,o)=3 -> hello (15). */
    EXPECT1(t, "hello", 0, 15, 2);
    /* " world" is one pre-token (space + letters): Ġ w o r l d -> (Ġ,w)=4 ->
     * Ġw o r l d -> (o,r)=5 -> Ġw or l d -> (Ġw,or)=6 -> Ġwor l d; no rank
     * for (Ġwor,l) or (l,d): Ġwor (18) l (6) d (11). */
    EXPECT1(t, "hello world", 0, 15, 18, 6, 11, 2);
    /* Rank beats position: in "abc", (b,c)=7 outranks (a,b)=8, giving a bc
     * (19 22), not ab c. */
    EXPECT1(t, "abc", 0, 19, 22, 2);
    /* (a,a)=9 merges left to right without overlap: aa a (24 19), aa aa. */
    EXPECT1(t, "aaa", 0, 24, 19, 2);
    EXPECT1(t, "aaaa", 0, 24, 24, 2);
    /* é = C3 A9 -> Ã © -> (Ã,©)=12 -> Ã© (34). 😀 = F0 9F 98 80 -> ð Ł ĺ Ģ,
     * none in the vocabulary: four <unk> (3). */
    EXPECT1(t, "\xc3\xa9", 0, 34, 2);
    EXPECT1(t, "\xf0\x9f\x98\x80", 0, 3, 3, 3, 3, 2);
    EXPECT1(t, "", 0, 2);
}

static void test_bpe_pretokenizer(void **state) {
    const tokenizer *t = *state;
    /* Contractions: "he's" -> "he" (12), "'s" one pre-token -> (',s)=10 -> 's
     * (28). Upper-case "'S" is no contraction: "'" (25) is a run of "other"
     * characters, "S" is not in the vocabulary (3). */
    EXPECT1(t, "he's", 0, 12, 28, 2);
    EXPECT1(t, "he'S", 0, 12, 25, 3, 2);
    /* Spaces: "a b" -> "a", " b" = a (19) Ġ (8) b (20) (no Ġ b merge).
     * "a  b": the two spaces are followed by "b", so \s+(?!\S) takes only
     * the first, and the second prefixes "b": a, Ġ, Ġ b. */
    EXPECT1(t, "a b", 0, 19, 8, 20, 2);
    EXPECT1(t, "a  b", 0, 19, 8, 8, 20, 2);
    /* The same with a word that merges with its space: "a  world" -> "a",
     * " ", " world" = a, Ġ, Ġwor l d (had both spaces gone into one
     * pre-token, "world" would lose its Ġ: w or l d). */
    EXPECT1(t, "a  world", 0, 19, 8, 18, 6, 11, 2);
    /* Trailing spaces form one pre-token "  " -> Ġ Ġ (no merge). */
    EXPECT1(t, "a  ", 0, 19, 8, 8, 2);
    /* Numbers group with one leading space: " 12" -> Ġ 1 2 -> (1,2)=11 ->
     * Ġ (8) 12 (31); letters and digits split: "a12" -> a, 12. */
    EXPECT1(t, " 12", 0, 8, 31, 2);
    EXPECT1(t, "a12", 0, 19, 31, 2);
    /* "hello!" -> "hello", "!" (35). */
    EXPECT1(t, "hello!", 0, 15, 35, 2);
}

static void test_bpe_special_tokens(void **state) {
    const tokenizer *t = *state;
    /* <mask> has lstrip (RobertaTokenizer): the space before it goes, so no
     * Ġ: hello (15) <mask> (36). Without rstrip the space after it stays:
     * <mask> Ġ hello. "</s>" in the text is id 2. */
    EXPECT1(t, "hello <mask>", 0, 15, 36, 2);
    EXPECT1(t, "<mask> hello", 0, 36, 8, 15, 2);
    EXPECT1(t, "hello</s>", 0, 15, 2, 2);
}

static void test_bpe_decode(void **state) {
    const tokenizer *t = *state;
    /* Byte-level characters back to bytes: Ġ is a space, Ã© is C3 A9. */
    expect_decoded(t, "hello world \xc3\xa9", 1, "hello world \xc3\xa9");
    expect_decoded(t, "hello <mask>", 0, "<s>hello<mask></s>");
}

static void test_bpe_pairs(void **state) {
    const tokenizer *t = *state;
    /* <s> hello </s></s> w or l d </s>: "world" without a space: w o r l d
     * -> (o,r)=5 -> w or l d; all token types 0. */
    expect_ids(t, "hello", 5, "world", 5, 32, IDS(0, 15, 2, 2, 9, 17, 6, 11, 2), NULL);
    /* a = "hello hello hello" = hello, Ġ hello, Ġ hello (no "Ġ h" merge, so
     * " hello" is Ġ + hello): [15 8 15 8 15]; b = "abc" = [19 22]. max_len 8
     * leaves 4: a 5 -> 4 -> 3 -> 2, then 2 + 2 fits. */
    expect_ids(t, "hello hello hello", 17, "abc", 3, 8, IDS(0, 15, 8, 2, 2, 19, 22, 2), NULL);
    expect_error(t, "a", 1, "b", 1, 3, "special tokens");
    expect_error(t, "a\xc3", 2, NULL, 0, 16, "invalid UTF-8");
}

static void test_bpe_prefix_space_and_merges_quirk(void **state) {
    (void)state;
    char err[256];
    /* add_prefix_space, and a merges.txt without a final newline: Python's
     * read().split("\n")[1:-1] then drops the last merge (Ã ©). */
    tokenizer *t = load_files(err, sizeof err, "vocab.json", bpe_vocab, "merges.txt",
                              "#version: 0.2\n" BPE_MERGE_LINES, "tokenizer_config.json",
                              "{\"add_prefix_space\": true}", NULL);
    if (!t) fail_msg("load: %s", err);
    /* "hello" -> " hello" -> Ġ (8) hello (15); "é" -> " é" -> Ġ Ã © with no
     * merge left for (Ã,©): 8 32 33. Text already starting with a space
     * gets none added. */
    EXPECT1(t, "hello", 0, 8, 15, 2);
    EXPECT1(t, "\xc3\xa9", 0, 8, 32, 33, 2);
    EXPECT1(t, " hello", 0, 8, 15, 2);
    tokenizer_free(t);
}

static void test_bpe_tokenizer_json(void **state) {
    const tokenizer *files = *state;
    char err[256];
    /* The same model as tokenizer.json (merges as strings and as pairs). */
    char tj[4096];
    snprintf(tj, sizeof tj,
             "{\"version\": \"1.0\", \"normalizer\": null,"
             " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
             " \"trim_offsets\": true, \"use_regex\": true},"
             " \"added_tokens\": [{\"id\": 36, \"content\": \"<mask>\", \"lstrip\": true,"
             " \"rstrip\": false, \"normalized\": false, \"special\": true}],"
             " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null,"
             " \"vocab\": %s, \"merges\": [\"h e\", \"l l\", \"he ll\", \"hell o\","
             " \"\xc4\xa0 w\", [\"o\", \"r\"], \"\xc4\xa0w or\", \"b c\", \"a b\", \"a a\","
             " \"' s\", \"1 2\", \"\xc3\x83 \xc2\xa9\"]}}",
             bpe_vocab);
    tokenizer *t = load_files(err, sizeof err, "tokenizer.json", tj, NULL);
    if (!t) fail_msg("load: %s", err);
    static const char *const texts[] = {
        "hello world", "abc aaa", "he's a  b ", "\xc3\xa9 12", "hello <mask>!",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t a[64], b[64];
        int la, lb;
        assert_int_equal(tokenizer_encode(files, texts[i], NULL, 64, a, NULL, &la, err, sizeof err),
                         0);
        assert_int_equal(tokenizer_encode(t, texts[i], NULL, 64, b, NULL, &lb, err, sizeof err), 0);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, (size_t)la * sizeof *a);
    }
    /* Spot check that the above compared something: "hello world" as before. */
    EXPECT1(t, "hello world", 0, 15, 18, 6, 11, 2);
    tokenizer_free(t);

    /* Unsupported variants fail at load. */
    assert_null(
        load_files(err, sizeof err, "tokenizer.json",
                   "{\"normalizer\": {\"type\": \"Lowercase\"}, \"pre_tokenizer\": {\"type\":"
                   " \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0},"
                   " \"merges\": []}}",
                   NULL));
    assert_non_null(strstr(err, "normalizer"));
    assert_null(load_files(err, sizeof err, "tokenizer.json",
                           "{\"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"model\": {\"type\":"
                           " \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                           NULL));
    assert_non_null(strstr(err, "Metaspace replacement"));
    assert_null(load_files(err, sizeof err, "tokenizer.json",
                           "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\":"
                           " \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                           NULL));
    assert_non_null(strstr(err, "SentencePiece"));
    assert_null(load_files(err, sizeof err, "tokenizer.json",
                           "{\"model\": {\"type\": \"Unigram\"}}", NULL));
    assert_non_null(strstr(err, "Unigram"));
}

static void test_bpe_no_unk(void **state) {
    (void)state;
    char err[256];
    /* Without <unk>, a byte missing from the vocabulary is an error. */
    tokenizer *t = load_files(err, sizeof err, "vocab.json",
                              "{\"<s>\": 0, \"<pad>\": 1, \"</s>\": 2, \"a\": 3}", "merges.txt",
                              "#version: 0.2\n", NULL);
    if (!t) fail_msg("load: %s", err);
    assert_int_equal(tokenizer_unk_id(t), -1);
    EXPECT1(t, "aa", 0, 3, 3, 2);
    expect_error(t, "ab", 2, NULL, 0, 16, "not in the vocabulary");
    tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wp_accessors, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_accents_and_case, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_punctuation, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_cjk_emoji, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_wordpiece_greedy, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_long_word, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_decode, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_empty_and_control, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_special_tokens_in_text, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_pairs_and_truncation, wp_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_wp_invalid_utf8, wp_setup, tok_teardown),
        cmocka_unit_test(test_wp_config_options),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test_setup_teardown(test_bpe_accessors, bpe_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_bpe_merges, bpe_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_bpe_pretokenizer, bpe_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_bpe_special_tokens, bpe_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_bpe_pairs, bpe_setup, tok_teardown),
        cmocka_unit_test_setup_teardown(test_bpe_decode, bpe_setup, tok_teardown),
        cmocka_unit_test(test_bpe_prefix_space_and_merges_quirk),
        cmocka_unit_test_setup_teardown(test_bpe_tokenizer_json, bpe_setup, tok_teardown),
        cmocka_unit_test(test_bpe_no_unk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
