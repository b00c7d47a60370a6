/* test_json.c — the strict JSON parser: every value type, escapes and
 * surrogates, UTF-8 validation, the number grammar, depth limits, duplicate
 * keys, trailing garbage, and error positions. Expected values are written
 * from the RFC 8259 / RFC 3629 rules by hand, not from the parser's output. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

static char errbuf[256];

static json_value *parse_n(const char *text, size_t len, int max_depth) {
    errbuf[0] = '\0';
    return json_parse(text, len, max_depth, errbuf, sizeof errbuf);
}

static json_value *parse_ok(const char *text) {
    json_value *v = parse_n(text, strlen(text), 0);
    if (!v) fail_msg("parse of <%s> failed: %s", text, errbuf);
    return v;
}

/* The parse must fail and the message must contain want (and a position). */
static void expect_fail_n(const char *text, size_t len, int max_depth, const char *want) {
    json_value *v = parse_n(text, len, max_depth);
    if (v) {
        json_free(v);
        fail_msg("parse of <%.*s> unexpectedly succeeded", (int)len, text);
    }
    if (!strstr(errbuf, want)) fail_msg("error <%s> lacks <%s>", errbuf, want);
}

static void expect_fail(const char *text, const char *want) {
    expect_fail_n(text, strlen(text), 0, want);
    assert_non_null(strstr(errbuf, "line "));
    assert_non_null(strstr(errbuf, "column "));
}

static void test_scalars(void **state) {
    (void)state;
    json_value *v = parse_ok(" null ");
    assert_int_equal(json_type_of(v), JSON_NULL);
    json_free(v);

    v = parse_ok("true");
    assert_int_equal(json_type_of(v), JSON_BOOL);
    assert_int_equal(json_bool(v), 1);
    json_free(v);

    v = parse_ok("\t\r\nfalse\n");
    assert_int_equal(json_type_of(v), JSON_BOOL);
    assert_int_equal(json_bool(v), 0);
    json_free(v);

    v = parse_ok("\"hi\"");
    size_t len = 99;
    assert_int_equal(json_type_of(v), JSON_STRING);
    assert_string_equal(json_string(v, &len), "hi");
    assert_int_equal(len, 2);
    json_free(v);

    v = parse_ok("\"\"");
    assert_string_equal(json_string(v, &len), "");
    assert_int_equal(len, 0);
    json_free(v);

    v = parse_ok("42");
    assert_int_equal(json_type_of(v), JSON_NUMBER);
    assert_true(json_is_int(v));
    assert_int_equal(json_int(v), 42);
    assert_true(json_number(v) == 42.0);
    json_free(v);
}

static void test_containers_and_order(void **state) {
    (void)state;
    json_value *v = parse_ok("{ \"z\": [1, \"two\", null, {\"k\": false}, []],\n"
                             "  \"a\": {},\n  \"m\": 3.5 }");
    assert_int_equal(json_type_of(v), JSON_OBJECT);
    assert_int_equal(json_len(v), 3);
    /* document order, not sorted */
    size_t kl;
    assert_string_equal(json_key_at(v, 0, &kl), "z");
    assert_int_equal(kl, 1);
    assert_string_equal(json_key_at(v, 1, NULL), "a");
    assert_string_equal(json_key_at(v, 2, NULL), "m");
    assert_null(json_key_at(v, 3, NULL));
    assert_ptr_equal(json_at(v, 2), json_get(v, "m"));
    assert_true(json_number(json_at(v, 2)) == 3.5);

    const json_value *z = json_get(v, "z");
    assert_int_equal(json_type_of(z), JSON_ARRAY);
    assert_int_equal(json_len(z), 5);
    assert_int_equal(json_int(json_at(z, 0)), 1);
    assert_string_equal(json_string(json_at(z, 1), NULL), "two");
    assert_int_equal(json_type_of(json_at(z, 2)), JSON_NULL);
    assert_int_equal(json_type_of(json_get(json_at(z, 3), "k")), JSON_BOOL);
    assert_int_equal(json_type_of(json_at(z, 4)), JSON_ARRAY);
    assert_int_equal(json_len(json_at(z, 4)), 0);
    assert_null(json_at(z, 5));
    assert_null(json_at(json_at(z, 4), 0));

    const json_value *a = json_get(v, "a");
    assert_int_equal(json_type_of(a), JSON_OBJECT);
    assert_int_equal(json_len(a), 0);
    assert_null(json_get(a, "x"));
    assert_null(json_get(v, "zz"));
    json_free(v);
}

static void test_accessors_tolerate_null_and_wrong_types(void **state) {
    (void)state;
    assert_int_equal(json_type_of(NULL), JSON_MISSING);
    assert_null(json_get(NULL, "a"));
    assert_null(json_at(NULL, 0));
    assert_int_equal(json_len(NULL), 0);
    size_t len = 7;
    assert_null(json_string(NULL, &len));
    assert_int_equal(len, 0);
    json_free(NULL);

    json_value *v = parse_ok("[1]");
    assert_null(json_get(v, "1")); /* array is not an object */
    assert_null(json_key_at(v, 0, NULL));
    assert_null(json_string(json_at(v, 0), NULL));
    assert_int_equal(json_bool(json_at(v, 0)), 0);
    assert_int_equal(json_len(json_at(v, 0)), 0);
    assert_string_equal(json_type_name(json_type_of(v)), "array");
    assert_string_equal(json_type_name(JSON_OBJECT), "object");
    json_free(v);
}

static void test_numbers_valid(void **state) {
    (void)state;
    json_value *v = parse_ok("[0, -0, -12, 1.5, 1e3, 1E+2, 2.5e-3, -0.0, 10]");
    assert_true(json_is_int(json_at(v, 0)));
    assert_int_equal(json_int(json_at(v, 0)), 0);
    /* -0 is an integer literal equal to 0; the double keeps its sign. */
    assert_true(json_is_int(json_at(v, 1)));
    assert_int_equal(json_int(json_at(v, 1)), 0);
    assert_true(json_number(json_at(v, 1)) == 0.0);
    assert_true(signbit(json_number(json_at(v, 1))));
    assert_int_equal(json_int(json_at(v, 2)), -12);
    assert_false(json_is_int(json_at(v, 3)));
    assert_int_equal(json_int(json_at(v, 3)), 0);
    assert_true(json_number(json_at(v, 3)) == 1.5);
    /* exponent forms are not integer literals even when integral */
    assert_false(json_is_int(json_at(v, 4)));
    assert_true(json_number(json_at(v, 4)) == 1000.0);
    assert_true(json_number(json_at(v, 5)) == 100.0);
    assert_true(json_number(json_at(v, 6)) == 0.0025);
    assert_false(json_is_int(json_at(v, 7)));
    assert_true(signbit(json_number(json_at(v, 7))));
    assert_int_equal(json_int(json_at(v, 8)), 10);
    json_free(v);

    /* int64 edges: 2^63-1 and -2^63 fit, 2^63 does not (but is a fine double). */
    v = parse_ok("[9223372036854775807, -9223372036854775808, 9223372036854775808]");
    assert_true(json_is_int(json_at(v, 0)));
    assert_true(json_int(json_at(v, 0)) == INT64_MAX);
    assert_true(json_is_int(json_at(v, 1)));
    assert_true(json_int(json_at(v, 1)) == INT64_MIN);
    assert_false(json_is_int(json_at(v, 2)));
    assert_true(json_number(json_at(v, 2)) == 9223372036854775808.0);
    json_free(v);

    /* underflow is not an error: 1e-400 is below the smallest subnormal. */
    v = parse_ok("1e-400");
    assert_true(json_number(v) == 0.0);
    json_free(v);

    /* a lexeme longer than the parser's stack buffer */
    char big[200];
    memset(big, '0', sizeof big);
    big[0] = '1';
    big[1] = '.';
    big[sizeof big - 1] = '\0';
    v = parse_ok(big);
    assert_true(json_number(v) == 1.0);
    json_free(v);
}

static void test_numbers_invalid(void **state) {
    (void)state;
    expect_fail("1e400", "out of range");
    expect_fail("-1e400", "out of range");
    expect_fail("01", "leading zeros");
    expect_fail("-01", "leading zeros");
    expect_fail("1.", "digit after the decimal point");
    expect_fail(".5", "expected a JSON value");
    expect_fail("-", "digit after '-'");
    expect_fail("-a", "digit after '-'");
    expect_fail("+1", "expected a JSON value");
    expect_fail("1e", "digit in the exponent");
    expect_fail("1e+", "digit in the exponent");
    expect_fail("0x10", "unexpected 'x'");
    expect_fail("NaN", "expected a JSON value");
    expect_fail("Infinity", "expected a JSON value");
    expect_fail("[1.e3]", "digit after the decimal point");
}

static void test_number_at_unterminated_end(void **state) {
    (void)state;
    /* No NUL after the digits: the parser must not read past len (ASan checks). */
    char *buf = malloc(3);
    assert_non_null(buf);
    memcpy(buf, "123", 3);
    json_value *v = parse_n(buf, 3, 0);
    assert_non_null(v);
    assert_int_equal(json_int(v), 123);
    json_free(v);
    /* len shorter than the text: only the prefix counts */
    v = parse_n("[1,2]garbage", 5, 0);
    assert_non_null(v);
    assert_int_equal(json_len(v), 2);
    json_free(v);
    free(buf);
}

static void test_string_escapes(void **state) {
    (void)state;
    json_value *v = parse_ok("\"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\t\"");
    size_t len;
    const char *s = json_string(v, &len);
    assert_string_equal(s, "q\"b\\s/b\bf\fn\nr\rt\t");
    assert_int_equal(len, strlen("q\"b\\s/b\bf\fn\nr\rt\t"));
    json_free(v);

    /* U+00E9 -> C3 A9, U+20AC -> E2 82 AC, U+1F600 (D83D DE00) -> F0 9F 98 80,
     * U+10FFFF (DBFF DFFF) -> F4 8F BF BF, U+007F stays one byte. */
    v = parse_ok("\"\\u00e9\\u20AC\\uD83D\\uDE00\\udbff\\udfff\\u007f\\u0041\"");
    s = json_string(v, &len);
    const char want[] = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\x7F"
                        "A";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(s, want, sizeof want - 1);
    json_free(v);

    /* \u0000 yields a NUL byte inside the string; the length says so */
    v = parse_ok("\"a\\u0000b\"");
    s = json_string(v, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 4);
    json_free(v);

    /* raw UTF-8 passes through unchanged; DEL (0x7F) is not a control char */
    v = parse_ok("\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x7F\"");
    s = json_string(v, &len);
    assert_int_equal(len, 10);
    assert_memory_equal(s, "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x7F", 10);
    json_free(v);
}

static void test_string_errors(void **state) {
    (void)state;
    expect_fail("\"\\uD800\"", "high surrogate");
    expect_fail("\"\\uD800\\u0041\"", "high surrogate");
    expect_fail("\"\\uD800x\"", "high surrogate");
    expect_fail("\"\\uD800\\uD800\"", "high surrogate");
    expect_fail("\"\\uDC00\"", "lone low surrogate");
    expect_fail("\"\\uDE00\\uD83D\"", "lone low surrogate"); /* pair in the wrong order */
    expect_fail("\"\\u12G4\"", "4 hex digits");
    expect_fail("\"\\u12\"", "4 hex digits");
    expect_fail("\"\\x\"", "invalid escape");
    expect_fail("\"\\'\"", "invalid escape");
    expect_fail("\"abc", "unterminated string");
    expect_fail("\"abc\\", "unterminated string");
    expect_fail("\"abc\\\"", "unterminated string");
    expect_fail("\"a\nb\"", "unescaped control character 0x0A");
    expect_fail("\"a\tb\"", "unescaped control character 0x09");
    expect_fail("\"\x01\"", "unescaped control character 0x01");
    expect_fail_n("\"a\0b\"", 5, 0, "unescaped control character 0x00");
    expect_fail("'single'", "expected a JSON value");
}

static void test_invalid_utf8(void **state) {
    (void)state;
    expect_fail("\"\xC3\"", "invalid UTF-8");             /* truncated 2-byte */
    expect_fail("\"\xC0\x80\"", "invalid UTF-8");         /* overlong NUL */
    expect_fail("\"\xC1\xBF\"", "invalid UTF-8");         /* overlong */
    expect_fail("\"\xE0\x80\x80\"", "invalid UTF-8");     /* overlong 3-byte */
    expect_fail("\"\xED\xA0\x80\"", "invalid UTF-8");     /* encoded surrogate D800 */
    expect_fail("\"\xF4\x90\x80\x80\"", "invalid UTF-8"); /* U+110000 */
    expect_fail("\"\xF5\x80\x80\x80\"", "invalid UTF-8");
    expect_fail("\"\xFF\"", "invalid UTF-8");
    expect_fail("\"\x80\"", "invalid UTF-8");     /* lone continuation */
    expect_fail("\"\xE2\x82\"", "invalid UTF-8"); /* truncated before quote */
    expect_fail("\"\xF0\x9F\x98\"", "invalid UTF-8");
    /* outside strings any non-ASCII byte is just unexpected */
    expect_fail("\xEF\xBB\xBF{}", "expected a JSON value");
    /* the same in a key */
    expect_fail("{\"\xC3\x28\":1}", "invalid UTF-8");

    assert_true(json_utf8_valid("", 0));
    assert_true(json_utf8_valid("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF", 13));
    assert_true(json_utf8_valid("\xED\x9F\xBF", 3)); /* U+D7FF, just below the surrogates */
    assert_true(json_utf8_valid("\xEE\x80\x80", 3)); /* U+E000, just above */
    assert_false(json_utf8_valid("\xED\xBF\xBF", 3));
    assert_false(json_utf8_valid("\xF0\x8F\xBF\xBF", 4)); /* overlong 4-byte */
    assert_false(json_utf8_valid("\xE2\x82", 2));
    assert_false(json_utf8_valid("a\xE2\x28\xA1", 4));
}

/* n nested arrays around "1": "[[[1]]]" for n = 3 */
static char *nested_arrays(int n) {
    char *s = malloc((size_t)n * 2 + 2);
    assert_non_null(s);
    for (int i = 0; i < n; i++) s[i] = '[';
    s[n] = '1';
    for (int i = 0; i < n; i++) s[n + 1 + i] = ']';
    s[2 * n + 1] = '\0';
    return s;
}

static void test_depth_limits(void **state) {
    (void)state;
    char *s = nested_arrays(JSON_DEFAULT_MAX_DEPTH);
    json_value *v = parse_n(s, strlen(s), 0);
    assert_non_null(v);
    const json_value *in = v;
    for (int i = 0; i < JSON_DEFAULT_MAX_DEPTH; i++) in = json_at(in, 0);
    assert_int_equal(json_int(in), 1);
    json_free(v);
    free(s);

    s = nested_arrays(JSON_DEFAULT_MAX_DEPTH + 1);
    expect_fail_n(s, strlen(s), 0, "nesting deeper than the limit of 64");
    /* the offending '[' is the 65th byte: column 65 */
    assert_non_null(strstr(errbuf, "line 1, column 65 (byte 64)"));
    free(s);

    /* an explicit limit, with objects */
    const char *three = "{\"a\":{\"b\":[1]}}";
    v = parse_n(three, strlen(three), 3);
    assert_non_null(v);
    json_free(v);
    expect_fail_n(three, strlen(three), 2, "nesting deeper than the limit of 2");
    const char *scalar = "7";
    v = parse_n(scalar, 1, 1);
    assert_non_null(v);
    json_free(v);

    /* a very deep document fails cleanly instead of exhausting the stack */
    s = nested_arrays(100000);
    expect_fail_n(s, strlen(s), 0, "nesting deeper");
    free(s);

    expect_fail_n("[]", 2, JSON_MAX_DEPTH_CEILING + 1, "ceiling");
}

static void test_duplicate_keys(void **state) {
    (void)state;
    expect_fail("{\"a\":1,\"a\":2}", "duplicate key \"a\"");
    /* the position is the second occurrence: byte 7, column 8 */
    assert_non_null(strstr(errbuf, "line 1, column 8 (byte 7)"));
    /* equality is on decoded keys */
    expect_fail("{\"a\":1,\"\\u0061\":2}", "duplicate key \"a\"");
    expect_fail("{\"x\":{\"k\":1,\"j\":2,\"k\":3}}", "duplicate key \"k\"");

    /* the same key in sibling objects, and keys differing by a NUL, are fine */
    json_value *v = parse_ok("[{\"a\":1},{\"a\":2},{\"a\":1,\"a\\u0000\":2}]");
    assert_int_equal(json_int(json_get(json_at(v, 1), "a")), 2);
    json_free(v);

    /* many keys (the sorting path): unique is accepted in order, a repeat fails */
    char buf[1024];
    size_t off = 0;
    buf[off++] = '{';
    for (int i = 0; i < 40; i++)
        off += (size_t)snprintf(buf + off, sizeof buf - off, "%s\"k%02d\":%d", i ? "," : "", 39 - i,
                                i);
    buf[off++] = '}';
    buf[off] = '\0';
    v = parse_ok(buf);
    assert_int_equal(json_len(v), 40);
    assert_string_equal(json_key_at(v, 0, NULL), "k39");
    assert_int_equal(json_int(json_get(v, "k00")), 39);
    json_free(v);
    /* "k30" and "k05" are repeated, k30 first: the error names the earliest
     * repeat in the document, not the first in sorted order */
    buf[off - 1] = '\0';
    strcat(buf, ",\"k30\":1,\"k05\":2}");
    expect_fail(buf, "duplicate key \"k30\"");
}

static void test_structure_errors(void **state) {
    (void)state;
    expect_fail("", "expected a JSON value, found end of input");
    assert_non_null(strstr(errbuf, "line 1, column 1 (byte 0)"));
    expect_fail("   \n ", "found end of input");
    assert_non_null(strstr(errbuf, "line 2, column 2 (byte 5)"));
    expect_fail("{} x", "unexpected 'x' after the JSON value");
    expect_fail("1 2", "unexpected '2' after the JSON value");
    expect_fail("[]]", "unexpected ']'");
    expect_fail("nullx", "unexpected 'x'");
    expect_fail("nul", "invalid literal");
    expect_fail("tru", "invalid literal");
    expect_fail("True", "expected a JSON value");
    expect_fail("[1,2", "',' or ']' in array, found end of input");
    expect_fail("[1,]", "expected a JSON value, found ']'");
    expect_fail("[,1]", "expected a JSON value, found ','");
    expect_fail("[1 2]", "',' or ']'");
    expect_fail("{\"a\":1,}", "string key in object, found '}'");
    expect_fail("{\"a\" 1}", "':' after object key, found '1'");
    expect_fail("{1:2}", "string key in object");
    expect_fail("{\"a\":}", "expected a JSON value, found '}'");
    expect_fail("{\"a\":1", "',' or '}' in object, found end of input");
    expect_fail("[\x01]", "found byte 0x01");
    expect_fail_n(NULL, 0, 0, "end of input");
}

static void test_error_line_and_column(void **state) {
    (void)state;
    /* line 3 is `  "b": tru,` starting at byte 12: the literal is at byte 19,
     * column 8 */
    const char *doc = "{\n  \"a\": 1,\n  \"b\": tru,\n}";
    expect_fail(doc, "line 3, column 8 (byte 19)");
    /* columns count characters: "é" is 2 bytes but one column, so the 'x'
     * at byte 6 is column 6 */
    expect_fail("[\"\xC3\xA9\",x]", "line 1, column 6 (byte 6)");
    /* CRLF line ends: '\r' is ordinary whitespace, '\n' starts a line */
    expect_fail("[\r\n1,\r\n?]", "line 3, column 1 (byte 7)");
}

static void test_large_array_grows_arena(void **state) {
    (void)state;
    enum { N = 20000 };
    size_t cap = (size_t)N * 24 + 16, off = 0; /* ",[19999,\"s19999\"]" is 17 bytes */
    char *s = malloc(cap);
    assert_non_null(s);
    s[off++] = '[';
    for (int i = 0; i < N; i++)
        off += (size_t)snprintf(s + off, cap - off, "%s[%d,\"s%d\"]", i ? "," : "", i, i);
    s[off++] = ']';
    json_value *v = parse_n(s, off, 0);
    assert_non_null(v);
    assert_int_equal(json_len(v), N);
    for (int i = 0; i < N; i += 997) {
        char want[16];
        snprintf(want, sizeof want, "s%d", i);
        assert_int_equal(json_int(json_at(json_at(v, (size_t)i), 0)), i);
        assert_string_equal(json_string(json_at(json_at(v, (size_t)i), 1), NULL), want);
    }
    assert_int_equal(json_int(json_at(json_at(v, N - 1), 0)), N - 1);
    json_free(v);
    free(s);
}

static void test_quote(void **state) {
    (void)state;
    char out[64];
    const char in[] = "a\"b\\c\n\x01\x1f/\xC3\xA9";
    const char want[] = "\"a\\\"b\\\\c\\n\\u0001\\u001f/\xC3\xA9\"";
    size_t n = json_quote(out, sizeof out, in, sizeof in - 1);
    assert_int_equal(n, sizeof want - 1);
    assert_string_equal(out, want);

    /* truncation: like snprintf, returns the full length, writes a prefix */
    char small[5];
    assert_int_equal(json_quote(small, sizeof small, in, sizeof in - 1), sizeof want - 1);
    assert_string_equal(small, "\"a\\\"");
    assert_int_equal(json_quote(NULL, 0, "ab", 2), 4);

    /* every control byte survives a quote + parse round trip */
    char raw[32];
    for (int i = 0; i < 32; i++) raw[i] = (char)i;
    char lit[256];
    n = json_quote(lit, sizeof lit, raw, sizeof raw);
    assert_true(n < sizeof lit);
    json_value *v = parse_n(lit, n, 0);
    assert_non_null(v);
    size_t len;
    const char *s = json_string(v, &len);
    assert_int_equal(len, 32);
    assert_memory_equal(s, raw, 32);
    json_free(v);
}

static void test_mutated_documents_never_crash(void **state) {
    (void)state;
    /* Random byte edits of a valid document: each parse must either succeed
     * or fail with a message; ASan/valgrind runs catch any bad access or leak. */
    const char base[] = "{\"a\": [1, -2.5e3, \"x\\u00e9\\uD83D\\uDE00\", true, null],"
                        " \"b\": {\"c\": \"\xC3\xA9\", \"d\": [[], {}]}, \"e\": false}";
    char doc[sizeof base];
    static const char alphabet[] = "{}[]\",:\\u0123456789eE.-+ tfnrl\x80\xC3\xED\xF4\xFF\x01";
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(doc, base, sizeof base);
        int edits = 1 + iter % 3;
        for (int k = 0; k < edits; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17; /* xorshift64 */
            size_t pos = (size_t)(x % (sizeof base - 1));
            doc[pos] = alphabet[(x >> 32) % (sizeof alphabet - 1)];
        }
        size_t len = (size_t)((x >> 16) % sizeof base); /* also truncate */
        json_value *v = parse_n(doc, iter % 2 ? len : sizeof base - 1, 0);
        if (v) {
            ok++;
            json_free(v);
        } else {
            bad++;
            assert_true(errbuf[0] != '\0');
        }
    }
    /* both outcomes occur, so the loop exercised the error paths and the tree builder */
    assert_true(ok > 100);
    assert_true(bad > 100);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_containers_and_order),
        cmocka_unit_test(test_accessors_tolerate_null_and_wrong_types),
        cmocka_unit_test(test_numbers_valid),
        cmocka_unit_test(test_numbers_invalid),
        cmocka_unit_test(test_number_at_unterminated_end),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_string_errors),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_depth_limits),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_error_line_and_column),
        cmocka_unit_test(test_large_array_grows_arena),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_mutated_documents_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
