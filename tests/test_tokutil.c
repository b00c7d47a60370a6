/* test_tokutil.c — the tokenizers' shared utilities on their own: the
 * string -> id map (overwrite, growth, iteration), UTF-8 checking and
 * decoding, and reading files from a folder (absent, too large, bad JSON).
 * The tokenizers' behaviour built on them is tested in test_tokenizer.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer/tokutil.h"

/* More keys than the map's first capacity, so it rehashes on the way. */
#define MAP_TEST_KEYS 1000

static void test_map(void **state) {
    (void)state;
    tok_map m = {0};
    int32_t v = -1;
    assert_int_equal(tok_map_get(&m, "a", 1, &v), 0); /* empty map */
    char key[16];
    for (int i = 0; i < MAP_TEST_KEYS; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(tok_map_put(&m, key, (size_t)n, i, NULL), 0);
    }
    size_t off = 0;
    assert_int_equal(tok_map_put(&m, "k7", 2, -7, &off), 0); /* later wins */
    assert_string_equal(m.pool + off, "k7");
    assert_int_equal(m.count, MAP_TEST_KEYS);
    assert_int_equal(tok_map_get(&m, "k7", 2, &v), 1);
    assert_int_equal(v, -7);
    assert_int_equal(tok_map_get(&m, "k999", 4, &v), 1);
    assert_int_equal(v, 999);
    assert_int_equal(tok_map_get(&m, "k1000", 5, &v), 0);
    assert_int_equal(tok_map_get(&m, "k", 1, &v), 0);

    /* tok_map_next visits every key once, with its value and pool offset. */
    char *seen = calloc(MAP_TEST_KEYS, 1);
    assert_non_null(seen);
    size_t visited = 0;
    tok_map_entry e;
    for (size_t pos = 0; tok_map_next(&m, &pos, &e);) {
        int i = atoi(e.key + 1);
        assert_true(i >= 0 && i < MAP_TEST_KEYS);
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        assert_int_equal(e.len, strlen(e.key));
        assert_ptr_equal(e.key, m.pool + e.off);
        assert_int_equal(e.value, i == 7 ? -7 : i);
        visited++;
    }
    assert_int_equal(visited, MAP_TEST_KEYS);
    free(seen);
    tok_map_free(&m);

    size_t pos = 0;
    assert_int_equal(tok_map_next(&m, &pos, &e), 0); /* freed map is empty */
}

static void test_utf8(void **state) {
    (void)state;
    /* "aé€😀": 1, 2, 3 and 4 bytes. */
    const char s[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    size_t n = sizeof s - 1;
    assert_int_equal(tok_utf8_invalid_at(s, n), n);
    assert_int_equal(tok_utf8_invalid_at("ab\xc0\xaf", 4), 2);   /* overlong */
    assert_int_equal(tok_utf8_invalid_at("\xed\xa0\x80", 3), 0); /* surrogate */
    assert_int_equal(tok_utf8_invalid_at("x\xe2\x82", 3), 1);    /* truncated */

    tok_u32vec cps = {0}, offs = {0};
    assert_int_equal(tok_utf8_decode(s, n, &cps, &offs), 0);
    const uint32_t want[] = {0x61, 0xE9, 0x20AC, 0x1F600};
    const uint32_t want_offs[] = {0, 1, 3, 6, 10};
    assert_int_equal(cps.n, 4);
    assert_memory_equal(cps.v, want, sizeof want);
    assert_int_equal(offs.n, 5);
    assert_memory_equal(offs.v, want_offs, sizeof want_offs);

    /* tok_bytes_put_cp is the inverse. */
    tok_bytes b = {0};
    for (size_t i = 0; i < cps.n; i++) assert_int_equal(tok_bytes_put_cp(&b, cps.v[i]), 0);
    assert_int_equal(b.n, n);
    assert_memory_equal(b.v, s, n);
    assert_int_equal(b.v[b.n], '\0');
    free(cps.v);
    free(offs.v);
    free(b.v);
}

static void put(void **state, const char *name, const char *text) {
    char path[512];
    path_in(path, sizeof path, state, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void test_read_files(void **state) {
    const char *dir = *state;
    char err[256] = "", *buf = NULL;
    size_t len = 0;
    assert_int_equal(tok_read_file(dir, "absent.txt", 100, &buf, &len, err, sizeof err), 0);

    put(state, "ten.txt", "0123456789");
    assert_int_equal(tok_read_file(dir, "ten.txt", 10, &buf, &len, err, sizeof err), 1);
    assert_int_equal(len, 10);
    assert_string_equal(buf, "0123456789");
    free(buf);
    assert_int_equal(tok_read_file(dir, "ten.txt", 9, &buf, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "ten.txt: 10 bytes, more than the 9 accepted"));

    json_value *j = NULL;
    assert_int_equal(tok_read_json(dir, "absent.json", 100, &j, err, sizeof err), 0);
    put(state, "ok.json", "{\"a\": [1, 2]}");
    assert_int_equal(tok_read_json(dir, "ok.json", 100, &j, err, sizeof err), 1);
    assert_int_equal(json_len(json_get(j, "a")), 2);
    json_free(j);
    put(state, "bad.json", "{\"a\": tru}");
    assert_int_equal(tok_read_json(dir, "bad.json", 100, &j, err, sizeof err), -1);
    char want[600];
    snprintf(want, sizeof want, "%s/bad.json: line 1, column 7", dir);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\"", err, want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test_setup_teardown(test_read_files, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
