/* test_textdata.c — reading TSV / CSV / JSONL training files into raw rows.
 *
 * Every happy-path file is written to a fresh temporary directory by the test
 * and read back through textdata_load (so the file reading is exercised too);
 * a few cases go through textdata_load_buffer. Expected rows, label ids and
 * line numbers are worked out by hand from the file text written next to them.
 * Every error case asserts the "<file>:<line>: " prefix of the message and the
 * words that say what is wrong, and that nothing is left in the output. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/textdata.h"

static char errbuf[512];

/* Write content to a file called fname in a fresh temporary directory, load
 * it with spec, then remove file and directory. Returns textdata_load's rc. */
static int load_file_n(const char *fname, const char *content, size_t len,
                       const textdata_spec *spec, textdata *out) {
    char dir[] = "/tmp/test_textdata_XXXXXX";
    if (!mkdtemp(dir)) fail_msg("mkdtemp failed");
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    if (len && fwrite(content, 1, len, f) != len) fail_msg("cannot write %s", path);
    if (fclose(f) != 0) fail_msg("cannot close %s", path);
    errbuf[0] = '\0';
    int rc = textdata_load(path, spec, out, errbuf, sizeof errbuf);
    unlink(path);
    rmdir(dir);
    return rc;
}

static int load_file(const char *fname, const char *content, const textdata_spec *spec,
                     textdata *out) {
    return load_file_n(fname, content, strlen(content), spec, out);
}

static void load_ok(const char *fname, const char *content, const textdata_spec *spec,
                    textdata *out) {
    if (load_file(fname, content, spec, out) != 0) fail_msg("load of %s failed: %s", fname, errbuf);
}

/* The load must fail, leave out empty, and the message must hold both the
 * "<fname>:<line>: " location (where != NULL) and the words in want. */
static void expect_error_n(const char *fname, const char *content, size_t len,
                           const textdata_spec *spec, const char *where, const char *want) {
    textdata d;
    memset(&d, 0x5A, sizeof d); /* garbage: the loader must clear it */
    if (load_file_n(fname, content, len, spec, &d) == 0) {
        textdata_free(&d);
        fail_msg("load of %s unexpectedly succeeded (want <%s>)", fname, want);
    }
    assert_int_equal(textdata_count(&d), 0);
    assert_null(d.buf);
    assert_null(d.rows);
    assert_null(d.label_pool);
    assert_null(textdata_text_a(&d, 0));
    if (where && !strstr(errbuf, where)) fail_msg("error <%s> lacks location <%s>", errbuf, where);
    if (!strstr(errbuf, want)) fail_msg("error <%s> lacks <%s>", errbuf, want);
    textdata_free(&d); /* harmless on the cleared struct */
}

static void expect_error(const char *fname, const char *content, const textdata_spec *spec,
                         const char *where, const char *want) {
    expect_error_n(fname, content, strlen(content), spec, where, want);
}

static textdata_spec pair_spec(void) {
    textdata_spec s = {0};
    s.text_a = TEXTDATA_BY_NAME("sentence1");
    s.text_b = TEXTDATA_BY_NAME("sentence2");
    s.label = TEXTDATA_BY_NAME("label");
    return s;
}

static textdata_spec single_spec(void) {
    textdata_spec s = {0};
    s.text_a = TEXTDATA_BY_NAME("text");
    s.label = TEXTDATA_BY_NAME("label");
    return s;
}

/* ---- TSV ------------------------------------------------------------------- */

static void test_tsv_header_pair(void **state) {
    (void)state;
    /* Line 1 header; line 3 blank (skipped); line 4 has literal quotes (TSV
     * has no quoting) and CRLF; line 5 has no final newline. Integer labels
     * are their own ids although "1" comes first (GLUE's MRPC starts so). */
    const char *tsv = "idx\tsentence1\tsentence2\tlabel\n"
                      "0\tThe cat sat.\tA cat was sitting.\t1\n"
                      "\n"
                      "1\t\"Quoted,\" he said\tHe said it.\t0\r\n"
                      "2\tThird one\tDritte\t1";
    textdata_spec s = pair_spec();
    textdata d;
    load_ok("train.tsv", tsv, &s, &d);
    assert_int_equal(textdata_count(&d), 3);
    assert_string_equal(textdata_text_a(&d, 0), "The cat sat.");
    assert_string_equal(textdata_text_b(&d, 0), "A cat was sitting.");
    assert_string_equal(textdata_text_a(&d, 1), "\"Quoted,\" he said");
    assert_string_equal(textdata_text_b(&d, 1), "He said it.");
    assert_string_equal(textdata_text_a(&d, 2), "Third one");
    assert_string_equal(textdata_text_b(&d, 2), "Dritte");
    assert_true(textdata_has_labels(&d));
    assert_int_equal(textdata_label_id(&d, 0), 1);
    assert_int_equal(textdata_label_id(&d, 1), 0);
    assert_int_equal(textdata_label_id(&d, 2), 1);
    assert_int_equal(textdata_label_count(&d), 2);
    assert_string_equal(textdata_label_name(&d, 0), "0");
    assert_string_equal(textdata_label_name(&d, 1), "1");
    assert_null(textdata_label_name(&d, 2));
    assert_null(textdata_text_a(&d, 3));
    assert_null(textdata_text_a(&d, -1));
    assert_true(isnan(textdata_label_value(&d, 0))); /* classification */
    textdata_free(&d);
    assert_null(d.buf);
}

static void test_tsv_headerless_by_index(void **state) {
    (void)state;
    /* CoLA's train.tsv: source, label, original mark, sentence; no header. */
    const char *tsv =
        "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
        "gj04\t0\t*\tOne more pseudo generalization and I'm giving up.\n"
        "gj04\t1\t\tThe more we study verbs, the crazier they get.\n";
    textdata_spec s = {0};
    s.text_a = TEXTDATA_BY_INDEX(3);
    s.label = TEXTDATA_BY_INDEX(1);
    s.no_header = true;
    const char *const labels[] = {"0", "1"};
    s.labels = labels;
    s.num_labels = 2;
    textdata d;
    load_ok("train.tsv", tsv, &s, &d);
    assert_int_equal(textdata_count(&d), 3);
    assert_string_equal(textdata_text_a(&d, 0),
                        "Our friends won't buy this analysis, let alone the next one we propose.");
    assert_string_equal(textdata_text_a(&d, 1),
                        "One more pseudo generalization and I'm giving up.");
    assert_null(textdata_text_b(&d, 0));
    /* Declared order: "0" -> 0, "1" -> 1, although "1" is seen first. */
    assert_int_equal(textdata_label_id(&d, 0), 1);
    assert_int_equal(textdata_label_id(&d, 1), 0);
    assert_int_equal(textdata_label_id(&d, 2), 1);
    assert_string_equal(textdata_label_name(&d, 0), "0");
    textdata_free(&d);
}

static void test_tsv_columns_reordered_and_shared(void **state) {
    (void)state;
    /* text_b's column comes before text_a's (the compaction must handle the
     * order), and a second load uses one column for both texts. */
    const char *tsv = "b\ta\tlabel\nsecond-0\tfirst-0\tx\nsecond-1\tfirst-1\ty\n";
    textdata_spec s = {0};
    s.text_a = TEXTDATA_BY_NAME("a");
    s.text_b = TEXTDATA_BY_NAME("b");
    s.label = TEXTDATA_BY_INDEX(2); /* by index, with a header */
    textdata d;
    load_ok("x.tsv", tsv, &s, &d);
    assert_string_equal(textdata_text_a(&d, 0), "first-0");
    assert_string_equal(textdata_text_b(&d, 0), "second-0");
    assert_string_equal(textdata_text_a(&d, 1), "first-1");
    assert_string_equal(textdata_text_b(&d, 1), "second-1");
    assert_string_equal(textdata_label_name(&d, textdata_label_id(&d, 1)), "y");
    textdata_free(&d);

    s.text_b = TEXTDATA_BY_NAME("a");
    load_ok("x.tsv", tsv, &s, &d);
    assert_string_equal(textdata_text_a(&d, 1), "first-1");
    assert_string_equal(textdata_text_b(&d, 1), "first-1");
    textdata_free(&d);

    /* No header and no unused column: no slack in the buffer, so moving the
     * later text first would overwrite the earlier one. */
    textdata_spec h = {0};
    h.no_header = true;
    h.text_a = TEXTDATA_BY_INDEX(1);
    h.text_b = TEXTDATA_BY_INDEX(0);
    load_ok("y.tsv", "bb\taaa\nd\tcc\n", &h, &d);
    assert_string_equal(textdata_text_a(&d, 0), "aaa");
    assert_string_equal(textdata_text_b(&d, 0), "bb");
    assert_string_equal(textdata_text_a(&d, 1), "cc");
    assert_string_equal(textdata_text_b(&d, 1), "d");
    textdata_free(&d);
    h.text_b = TEXTDATA_BY_INDEX(1);
    load_ok("y.tsv", "bb\taaa\nd\tcc\n", &h, &d);
    assert_string_equal(textdata_text_a(&d, 1), "cc");
    assert_string_equal(textdata_text_b(&d, 1), "cc");
    textdata_free(&d);
}

static void test_tsv_regression(void **state) {
    (void)state;
    /* STS-B style; labels are trimmed before parsing. */
    const char *tsv = "sentence1\tsentence2\tscore\na\tb\t3.8\nc\td\t 0.25 \ne\tf\t-1e-3\n";
    textdata_spec s = pair_spec();
    s.label = TEXTDATA_BY_NAME("score");
    s.task = TEXTDATA_REGRESSION;
    textdata d;
    load_ok("sts.tsv", tsv, &s, &d);
    assert_int_equal(textdata_count(&d), 3);
    assert_true(textdata_label_value(&d, 0) == 3.8f);
    assert_true(textdata_label_value(&d, 1) == 0.25f);
    assert_true(textdata_label_value(&d, 2) == -1e-3f);
    assert_int_equal(textdata_label_id(&d, 0), -1);
    assert_int_equal(textdata_label_count(&d), 0);
    assert_null(textdata_label_name(&d, 0));
    textdata_free(&d);
}

static void test_prediction_input(void **state) {
    (void)state;
    /* No label field: rows need no label column; a declared label list is
     * still the label map. */
    const char *tsv = "text\nfirst\nsecond\n";
    textdata_spec s = {0};
    s.text_a = TEXTDATA_BY_NAME("text");
    const char *const labels[] = {"neg", "pos"};
    s.labels = labels;
    s.num_labels = 2;
    textdata d;
    load_ok("test.tsv", tsv, &s, &d);
    assert_int_equal(textdata_count(&d), 2);
    assert_false(textdata_has_labels(&d));
    assert_int_equal(textdata_label_id(&d, 0), -1);
    assert_int_equal(textdata_label_count(&d), 2);
    assert_string_equal(textdata_label_name(&d, 1), "pos");
    textdata_free(&d);
}

static void test_row_limit(void **state) {
    (void)state;
    /* Row 3 (line 4) is ragged; a 2-row preview never reads it. */
    const char *tsv = "text\tlabel\na\t1\nb\t0\nc\n";
    textdata_spec s = single_spec();
    s.max_rows = 2;
    textdata d;
    load_ok("p.tsv", tsv, &s, &d);
    assert_int_equal(textdata_count(&d), 2);
    assert_string_equal(textdata_text_a(&d, 1), "b");
    textdata_free(&d);
    s.max_rows = 0;
    expect_error("p.tsv", tsv, &s, "p.tsv:4: ", "ragged row: 1 fields, the header has 2");
}

static void test_bom_and_explicit_format(void **state) {
    (void)state;
    /* A BOM before the header must not become part of the first column name;
     * the explicit format wins over the .txt extension. */
    const char *csv = "\xEF\xBB\xBFtext,label\nhello,0\n";
    textdata_spec s = single_spec();
    s.format = TEXTDATA_CSV;
    textdata d;
    load_ok("data.txt", csv, &s, &d);
    assert_int_equal(textdata_count(&d), 1);
    assert_string_equal(textdata_text_a(&d, 0), "hello");
    textdata_free(&d);
    s.format = TEXTDATA_AUTO;
    expect_error("data.txt", csv, &s, NULL, "cannot tell the format");
}

/* ---- CSV ------------------------------------------------------------------- */

static void test_csv_quoting(void **state) {
    (void)state;
    /* Physical lines: 1 header, 2 row 0, 3-4 row 1 (quoted newline), 5 row 2,
     * 6 row 3 (empty last field quoted, trailing text unquoted with a bare
     * quote inside, kept literally). CRLF line ends except inside quotes. */
    const char *csv = "id,text,label\r\n"
                      "1,\"Hello, world\",pos\r\n"
                      "2,\"She said \"\"hi\"\"\nthen left\",neg\r\n"
                      "3,plain,pos\r\n"
                      "4,a 5\" screen,\"neg\"\r\n";
    textdata_spec s = single_spec();
    textdata d;
    load_ok("train.csv", csv, &s, &d);
    assert_int_equal(textdata_count(&d), 4);
    assert_string_equal(textdata_text_a(&d, 0), "Hello, world");
    assert_string_equal(textdata_text_a(&d, 1), "She said \"hi\"\nthen left");
    assert_string_equal(textdata_text_a(&d, 2), "plain");
    assert_string_equal(textdata_text_a(&d, 3), "a 5\" screen");
    /* String labels sorted: "neg" 0, "pos" 1, although "pos" comes first. */
    assert_int_equal(textdata_label_id(&d, 0), 1);
    assert_int_equal(textdata_label_id(&d, 1), 0);
    assert_int_equal(textdata_label_id(&d, 2), 1);
    assert_int_equal(textdata_label_id(&d, 3), 0);
    assert_string_equal(textdata_label_name(&d, 0), "neg");
    assert_string_equal(textdata_label_name(&d, 1), "pos");
    textdata_free(&d);
}

static void test_csv_quoted_header_and_lf(void **state) {
    (void)state;
    /* Quoted header names, LF endings, an empty quoted field in an unused
     * column, a quoted field at the very end of the file. */
    const char *csv = "\"text\",\"other\",\"label\"\nx,\"\",\"a\"\n\"y,z\",q,\"b\"";
    textdata_spec s = single_spec();
    textdata d;
    load_ok("t.csv", csv, &s, &d);
    assert_int_equal(textdata_count(&d), 2);
    assert_string_equal(textdata_text_a(&d, 0), "x");
    assert_string_equal(textdata_text_a(&d, 1), "y,z");
    assert_string_equal(textdata_label_name(&d, textdata_label_id(&d, 1)), "b");
    textdata_free(&d);
}

/* ---- JSONL ----------------------------------------------------------------- */

static void test_jsonl_labels(void **state) {
    (void)state;
    /* Integer 1, string "1" and 1.0 are one label "1"; 0 is "0". Line 2 is
     * blank and line 4 whitespace only; CRLF on line 5. */
    const char *jsonl =
        "{\"text\": \"first\", \"label\": 1}\n"
        "\n"
        "{\"label\": \"1\", \"text\": \"caf\\u00e9 \\\"q\\\"\", \"extra\": [1, {\"a\": null}]}\n"
        "   \n"
        "{\"text\": \"third\", \"label\": 0}\r\n"
        "{\"text\": \"fourth\", \"label\": 1.0}\n";
    textdata_spec s = single_spec();
    textdata d;
    load_ok("train.jsonl", jsonl, &s, &d);
    assert_int_equal(textdata_count(&d), 4);
    assert_string_equal(textdata_text_a(&d, 0), "first");
    assert_string_equal(textdata_text_a(&d, 1), "caf\xC3\xA9 \"q\"");
    assert_string_equal(textdata_text_a(&d, 2), "third");
    assert_string_equal(textdata_text_a(&d, 3), "fourth");
    assert_int_equal(textdata_label_id(&d, 0), 1);
    assert_int_equal(textdata_label_id(&d, 1), 1);
    assert_int_equal(textdata_label_id(&d, 2), 0);
    assert_int_equal(textdata_label_id(&d, 3), 1);
    assert_int_equal(textdata_label_count(&d), 2);
    assert_string_equal(textdata_label_name(&d, 0), "0");
    assert_string_equal(textdata_label_name(&d, 1), "1");
    textdata_free(&d);
}

static void test_jsonl_pair_bool_and_regression(void **state) {
    (void)state;
    const char *jsonl = "{\"q\": \"Is it?\", \"p\": \"It is.\", \"label\": true}\n"
                        "{\"q\": \"Really?\", \"p\": \"No.\", \"label\": false}\n";
    textdata_spec s = {0};
    s.text_a = TEXTDATA_BY_NAME("q");
    s.text_b = TEXTDATA_BY_NAME("p");
    s.label = TEXTDATA_BY_NAME("label");
    const char *const labels[] = {"false", "true"};
    s.labels = labels;
    s.num_labels = 2;
    textdata d;
    load_ok("boolq.json", jsonl, &s, &d); /* .json is read as JSON Lines */
    assert_int_equal(textdata_count(&d), 2);
    assert_string_equal(textdata_text_b(&d, 0), "It is.");
    assert_string_equal(textdata_text_a(&d, 1), "Really?");
    assert_int_equal(textdata_label_id(&d, 0), 1);
    assert_int_equal(textdata_label_id(&d, 1), 0);
    textdata_free(&d);

    const char *reg = "{\"text\": \"a\", \"y\": 2.5}\n{\"text\": \"b\", \"y\": "
                      "\"-0.5\"}\n{\"text\": \"c\", \"y\": 4}\n";
    textdata_spec r = {0};
    r.text_a = TEXTDATA_BY_NAME("text");
    r.label = TEXTDATA_BY_NAME("y");
    r.task = TEXTDATA_REGRESSION;
    load_ok("r.jsonl", reg, &r, &d);
    assert_true(textdata_label_value(&d, 0) == 2.5f);
    assert_true(textdata_label_value(&d, 1) == -0.5f);
    assert_true(textdata_label_value(&d, 2) == 4.0f);
    textdata_free(&d);
}

static void test_jsonl_same_field_twice(void **state) {
    (void)state;
    /* text_a and text_b from one member: a long value must not be copied
     * twice into its line (it would not fit). */
    char line[400];
    char text[300];
    memset(text, 'w', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    snprintf(line, sizeof line, "{\"t\":\"%s\"}\n{\"t\":\"short\"}\n", text);
    textdata_spec s = {0};
    s.text_a = TEXTDATA_BY_NAME("t");
    s.text_b = TEXTDATA_BY_NAME("t");
    textdata d;
    load_ok("x.jsonl", line, &s, &d);
    assert_string_equal(textdata_text_a(&d, 0), text);
    assert_string_equal(textdata_text_b(&d, 0), text);
    assert_string_equal(textdata_text_b(&d, 1), "short");
    textdata_free(&d);
}

/* ---- from memory ------------------------------------------------------------ */

static void test_load_buffer(void **state) {
    (void)state;
    char data[] = "text,label\nupload one,a\nupload two,b\n";
    textdata_spec s = single_spec();
    textdata d;
    assert_int_equal(
        textdata_load_buffer(data, strlen(data), "upload.csv", &s, &d, errbuf, sizeof errbuf), 0);
    memset(data, 'X', strlen(data)); /* the rows must not point into the caller's memory */
    assert_int_equal(textdata_count(&d), 2);
    assert_string_equal(textdata_text_a(&d, 1), "upload two");
    textdata_free(&d);

    const char *bad = "text,label\nok,a\n,b\n";
    assert_int_equal(
        textdata_load_buffer(bad, strlen(bad), "upload.csv", &s, &d, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "upload.csv:3: empty text in column 'text'"));
    assert_int_equal(textdata_count(&d), 0);

    s.max_bytes = 8;
    assert_int_equal(
        textdata_load_buffer(data, strlen(data), "big.csv", &s, &d, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "limit of 8 bytes"));
}

/* ---- class ids ----------------------------------------------------------------- */

/* Load tsv ("text\tlabel" header) with spec; the label names in id order,
 * comma-separated, and the ids of the rows, space-separated. */
static void ids_of(const char *tsv, const textdata_spec *spec, char *names, char *ids, size_t cap) {
    textdata d;
    load_ok("ids.tsv", tsv, spec, &d);
    names[0] = ids[0] = '\0';
    for (int k = 0; k < textdata_label_count(&d); k++)
        snprintf(names + strlen(names), cap - strlen(names), "%s%s", k ? "," : "",
                 textdata_label_name(&d, k));
    for (int i = 0; i < textdata_count(&d); i++)
        snprintf(ids + strlen(ids), cap - strlen(ids), "%s%d", i ? " " : "",
                 textdata_label_id(&d, i));
    textdata_free(&d);
}

static void test_label_ids_strings_sorted(void **state) {
    (void)state;
    textdata_spec s = single_spec();
    char names[256], ids[256];
    /* MNLI's labels, sorted as Hugging Face's run_glue sorts them. */
    ids_of("text\tlabel\na\tneutral\nb\tentailment\nc\tcontradiction\nd\tneutral\n", &s, names, ids,
           sizeof names);
    assert_string_equal(names, "contradiction,entailment,neutral");
    assert_string_equal(ids, "2 1 0 2");
    /* Code point order: 'A' < 'z' < U+00E9. */
    ids_of("text\tlabel\na\tzebra\nb\t\xC3\xA9lan\nc\tApple\n", &s, names, ids, sizeof names);
    assert_string_equal(names, "Apple,zebra,\xC3\xA9lan");
    assert_string_equal(ids, "1 2 0");
    /* Not all plain integers ("01", "+1", "1.0"): strings, sorted. */
    ids_of("text\tlabel\na\t1\nb\t01\nc\t+1\nd\t1.0\n", &s, names, ids, sizeof names);
    assert_string_equal(names, "+1,01,1,1.0");
    assert_string_equal(ids, "2 1 0 3");
    /* JSON booleans: false 0, true 1. */
    textdata d;
    load_ok("b.jsonl", "{\"text\":\"a\",\"label\":true}\n{\"text\":\"b\",\"label\":false}\n", &s,
            &d);
    assert_int_equal(textdata_label_id(&d, 0), 1);
    assert_string_equal(textdata_label_name(&d, 0), "false");
    textdata_free(&d);
    /* num_labels must count them all: names for classes the data lacks are
     * not known. */
    s.num_labels = 2;
    ids_of("text\tlabel\na\tpos\nb\tneg\n", &s, names, ids, sizeof names);
    assert_string_equal(ids, "1 0");
    s.num_labels = 3;
    expect_error("ids.tsv", "text\tlabel\na\tpos\nb\tneg\n", &s,
                 "ids.tsv: ", "num_labels is 3 but the data has 2 distinct labels (pos, neg)");
    assert_non_null(strstr(errbuf, "dataset.labels"));
    s.num_labels = 1;
    expect_error("ids.tsv", "text\tlabel\na\tpos\nb\tneg\n", &s,
                 "ids.tsv: ", "num_labels is 1 but the data has 2 distinct labels");
}

static void test_label_ids_integers(void **state) {
    (void)state;
    textdata_spec s = single_spec();
    char names[256], ids[256];
    ids_of("text\tlabel\na\t2\nb\t0\nc\t1\nd\t2\n", &s, names, ids, sizeof names);
    assert_string_equal(names, "0,1,2");
    assert_string_equal(ids, "2 0 1 2");
    /* A gap: id 1 would be a class no row has. */
    expect_error(
        "ids.tsv", "text\tlabel\na\t0\nb\t2\n", &s, "ids.tsv: ",
        "no row has label 1, but integer labels are their own class ids, so ids 0..2 need every "
        "value (labels: 0, 2); declare the classes with dataset.labels (names in id order) or "
        "num_labels");
    assert_null(strstr(errbuf, "regression"));
    /* Star ratings 1..5: id 0 is missing. */
    expect_error("ids.tsv", "text\tlabel\na\t5\nb\t1\nc\t2\nd\t3\ne\t4\n", &s,
                 "ids.tsv: ", "no row has label 0");
    /* Few values far apart look like measurements. */
    expect_error("ids.tsv", "text\tlabel\na\t150\nb\t230\nc\t120\n", &s,
                 "ids.tsv: ", "no row has label 0");
    assert_non_null(strstr(errbuf, "did you mean task regression?"));
    expect_error("ids.tsv", "text\tlabel\na\t1\nb\t-1\n", &s,
                 "ids.tsv:3: ", "label '-1' is negative");
    expect_error("ids.tsv", "text\tlabel\na\t1\nb\t0\nc\t250000\n", &s, "ids.tsv:4: ",
                 "label '250000' would be class id 250000, beyond the limit of 1000 classes; did "
                 "you mean task "
                 "regression?");

    /* num_labels declares the classes: ids the data lacks are fine (named by
     * their number), a label at or beyond it is not. */
    s.num_labels = 4;
    ids_of("text\tlabel\na\t0\nb\t2\n", &s, names, ids, sizeof names);
    assert_string_equal(names, "0,1,2,3");
    assert_string_equal(ids, "0 2");
    s.num_labels = 2;
    expect_error(
        "ids.tsv", "text\tlabel\na\t0\nb\t1\nc\t2\n", &s, "ids.tsv:4: ",
        "label '2' is beyond the 2 classes num_labels declares (integer labels are their own class "
        "ids: 0..1)");
}

static void test_label_ids_continuous(void **state) {
    (void)state;
    /* STS-B's scores loaded as classification. */
    textdata_spec s = single_spec();
    expect_error("sts.tsv", "text\tlabel\na\t5\nb\t3.8\nc\t0.25\n", &s, "sts.tsv:3: ",
                 "label '3.8' looks like a continuous value (the 3 distinct labels are all "
                 "numbers); did you mean "
                 "task regression?");
    /* Whole numbers written as decimals are class names. */
    char names[256], ids[256];
    ids_of("text\tlabel\na\t1.0\nb\t0.0\n", &s, names, ids, sizeof names);
    assert_string_equal(names, "0.0,1.0");
    /* Numbers among words are words. */
    ids_of("text\tlabel\na\t2.5\nb\tnone\n", &s, names, ids, sizeof names);
    assert_string_equal(names, "2.5,none");
    /* Declared, anything goes. */
    const char *const labels[] = {"3.8", "0.25"};
    s.labels = labels;
    s.num_labels = 2;
    ids_of("text\tlabel\na\t0.25\nb\t3.8\n", &s, names, ids, sizeof names);
    assert_string_equal(ids, "1 0");
}

static void test_label_ids_previews(void **state) {
    (void)state;
    /* A preview or an upload check sees rows, not the whole label set: the
     * gap here may be filled by rows it never reads or by the job's
     * declaration. Ids still follow the values. */
    const char *tsv = "text\tlabel\na\t2\nb\t0\nc\t3.5\n";
    textdata_spec s = single_spec();
    s.max_rows = 2;
    char names[256], ids[256];
    ids_of(tsv, &s, names, ids, sizeof names);
    assert_string_equal(names, "0,1,2");
    assert_string_equal(ids, "2 0");
    s.max_rows = 0;
    s.rows_only = true;
    ids_of(tsv, &s, names, ids, sizeof names);
    assert_string_equal(names, "0,2,3.5");
    assert_string_equal(ids, "1 0 2");
    ids_of("text\tlabel\na\t-1\nb\t1\n", &s, names, ids, sizeof names);
    assert_string_equal(names, "-1,1");
}

/* ---- errors ------------------------------------------------------------------ */

static void test_errors_columns(void **state) {
    (void)state;
    textdata_spec s = pair_spec();
    expect_error("train.tsv", "sentence1\tlabel\na\t1\n", &s, "train.tsv:1: ",
                 "no column named 'sentence2' in the header (columns: sentence1, label)");
    /* Header on line 2 after a blank line: the location follows it. */
    expect_error("train.tsv", "\nsentence1\tsentence2\tsentence1\tlabel\na\tb\tc\t1\n", &s,
                 "train.tsv:2: ", "column 'sentence1' appears more than once");
    /* Ragged: line 3 has 2 fields, line 4 has 4. */
    expect_error("train.tsv", "sentence1\tsentence2\tlabel\na\tb\t1\na\t1\n", &s,
                 "train.tsv:3: ", "ragged row: 2 fields, the header has 3");
    expect_error("train.tsv", "sentence1\tsentence2\tlabel\na\tb\t1\na\tb\t1\textra\n", &s,
                 "train.tsv:3: ", "ragged row: 4 fields");

    textdata_spec h = {0};
    h.no_header = true;
    h.text_a = TEXTDATA_BY_INDEX(3);
    h.label = TEXTDATA_BY_INDEX(1);
    expect_error("cola.tsv", "\n\ns\t1\tonly three\n", &h,
                 "cola.tsv:3: ", "column 3 is out of range: the first row has 3 fields");
    expect_error("cola.tsv", "s\t1\t\ttext\ns\t0\tx\n", &h,
                 "cola.tsv:2: ", "ragged row: 3 fields, the first row has 4");
}

static void test_errors_csv(void **state) {
    (void)state;
    textdata_spec s = single_spec();
    /* Row 2 spans lines 3-4; the unterminated quote opens on line 5. */
    expect_error("train.csv", "text,label\nfine,1\n\"two\nlines\",0\nx,\"open\n", &s,
                 "train.csv:5: ", "unterminated quoted field");
    /* Line counting through a quoted newline: the ragged row is on line 5. */
    expect_error("train.csv", "text,label\r\nfine,1\r\n\"two\r\nlines\",0\r\nx,1,2\r\n", &s,
                 "train.csv:5: ", "ragged row: 3 fields, the header has 2");
    expect_error("train.csv", "text,label\n\"quoted\"x,1\n", &s,
                 "train.csv:2: ", "unexpected character after the closing quote of field 1");
    expect_error("train.csv", "text,label\n\"a\",\"b\n", &s,
                 "train.csv:2: ", "unterminated quoted field (field 2");
}

static void test_errors_text(void **state) {
    (void)state;
    textdata_spec s = single_spec();
    expect_error("train.tsv", "text\tlabel\nok\t1\nbad \xFF byte\t0\n", &s,
                 "train.tsv:3: ", "invalid UTF-8 in column 'text'");
    /* An overlong encoding of '/' is invalid too. */
    expect_error("train.csv", "text,label\n\"\xC0\xAF\",0\n", &s,
                 "train.csv:2: ", "invalid UTF-8 in column 'text'");
    expect_error("train.tsv", "text\tlabel\nok\t1\n\t0\n", &s,
                 "train.tsv:3: ", "empty text in column 'text'");
    expect_error("train.tsv", "text\tlabel\n  \t0\n", &s,
                 "train.tsv:2: ", "empty text in column 'text'");
    textdata_spec p = pair_spec();
    expect_error("train.tsv", "sentence1\tsentence2\tlabel\na\t\t1\n", &p,
                 "train.tsv:2: ", "empty text in column 'sentence2'");
    static const char with_nul[] = "text\tlabel\nok\t1\nnul\0here\t0\n";
    expect_error_n("train.tsv", with_nul, sizeof with_nul - 1, &s, "train.tsv:3: ", "NUL byte");
}

static void test_errors_labels(void **state) {
    (void)state;
    textdata_spec s = single_spec();
    expect_error("train.tsv", "text\tlabel\na\t1\nb\t \n", &s,
                 "train.tsv:3: ", "missing label (column 'label' is empty)");
    const char *const labels[] = {"neg", "pos"};
    s.labels = labels;
    s.num_labels = 2;
    expect_error("train.csv", "text,label\na,pos\nb,neg\nc,neutral\n", &s,
                 "train.csv:4: ", "label 'neutral' is not one of the declared labels (neg, pos)");
    /* An evaluation file read with the training file's map says so. */
    s.labels_origin = "the training data's labels";
    expect_error("dev.csv", "text,label\na,pos\nc,neutral\n", &s, "dev.csv:3: ",
                 "label 'neutral' is not one of the training data's labels (neg, pos)");
    s.labels_origin = NULL;
    s.labels = NULL;
    s.num_labels = 0;

    textdata_spec r = single_spec();
    r.task = TEXTDATA_REGRESSION;
    expect_error("sts.tsv", "text\tlabel\na\t1.5\nb\tabc\n", &r,
                 "sts.tsv:3: ", "label 'abc' is not a number");
    expect_error("sts.tsv", "text\tlabel\na\t1.5x\n", &r,
                 "sts.tsv:2: ", "label '1.5x' is not a number");
    expect_error("sts.tsv", "text\tlabel\na\tinf\n", &r, "sts.tsv:2: ", "not a finite float");
    expect_error("sts.tsv", "text\tlabel\na\tnan\n", &r, "sts.tsv:2: ", "not a finite float");
    expect_error("sts.tsv", "text\tlabel\na\t1e39\n", &r, "sts.tsv:2: ", "not a finite float");
    expect_error("sts.jsonl", "{\"text\":\"a\",\"label\":1e300}\n", &r,
                 "sts.jsonl:1: ", "not a finite float");
    expect_error("sts.jsonl", "{\"text\":\"a\",\"label\":[1]}\n", &r,
                 "sts.jsonl:1: ", "field 'label' is an array, expected a number");

    /* TEXTDATA_MAX_LABELS + 1 distinct labels. */
    size_t cap = 32 + (size_t)(TEXTDATA_MAX_LABELS + 1) * 16;
    char *big = malloc(cap);
    assert_non_null(big);
    size_t used = (size_t)snprintf(big, cap, "text\tlabel\n");
    for (int i = 0; i <= TEXTDATA_MAX_LABELS; i++)
        used += (size_t)snprintf(big + used, cap - used, "t\tL%d\n", i);
    char where[32];
    snprintf(where, sizeof where, "many.tsv:%d: ", TEXTDATA_MAX_LABELS + 2);
    expect_error("many.tsv", big, &s, where, "more than 1000 distinct labels");
    assert_non_null(strstr(errbuf, "did you mean task regression?"));
    free(big);
}

static void test_errors_jsonl(void **state) {
    (void)state;
    textdata_spec s = single_spec();
    expect_error("train.jsonl", "{\"text\":\"a\",\"label\":1}\n\n{\"text\": \"x\",}\n", &s,
                 "train.jsonl:3: ", "bad JSON: column 14");
    expect_error("train.jsonl", "{\"text\":\"a\",\"label\":1}\n{\"text\":\"\xFF\",\"label\":1}\n",
                 &s, "train.jsonl:2: ", "invalid UTF-8");
    expect_error("train.jsonl", "{\"text\":\"a\",\"label\":1}\n{\"label\":1}\n", &s,
                 "train.jsonl:2: ", "missing field 'text'");
    expect_error("train.jsonl", "{\"text\":\"a\"}\n", &s,
                 "train.jsonl:1: ", "missing label (field 'label' is absent)");
    expect_error("train.jsonl", "{\"text\":\"a\",\"label\":null}\n", &s,
                 "train.jsonl:1: ", "missing label (field 'label' is null)");
    expect_error("train.jsonl", "{\"text\":\"a\",\"label\":\"\"}\n", &s,
                 "train.jsonl:1: ", "missing label");
    expect_error("train.jsonl", "{\"text\":\"a\",\"label\":{}}\n", &s, "train.jsonl:1: ",
                 "field 'label' is an object, expected a string, number or boolean");
    expect_error("train.jsonl", "{\"text\":5,\"label\":1}\n", &s,
                 "train.jsonl:1: ", "field 'text' is a number, expected a string");
    expect_error("train.jsonl", "{\"text\":\"  \",\"label\":1}\n", &s,
                 "train.jsonl:1: ", "empty text in field 'text'");
    expect_error("train.jsonl", "{\"text\":\"a\\u0000b\",\"label\":1}\n", &s,
                 "train.jsonl:1: ", "NUL character");
    expect_error("train.json", "[{\"text\":\"a\",\"label\":1}]\n", &s, "train.json:1: ",
                 "expected a JSON object (JSON Lines: one object per line), found an array");
}

static void test_errors_file(void **state) {
    (void)state;
    textdata_spec s = single_spec();
    expect_error("train.tsv", "text\tlabel\n", &s, NULL, "train.tsv: no data rows");
    expect_error("train.tsv", "", &s, NULL, "train.tsv: empty file: no header row");
    expect_error("train.jsonl", "\n\n", &s, NULL, "train.jsonl: no data rows");
    s.max_bytes = 10;
    expect_error("big.tsv", "text\tlabel\nabc\t0\n", &s, NULL,
                 "big.tsv: file is 17 bytes, larger than the limit of 10 bytes");
    s.max_bytes = 17; /* exactly at the limit is fine */
    textdata d;
    load_ok("big.tsv", "text\tlabel\nabc\t0\n", &s, &d);
    assert_int_equal(textdata_count(&d), 1);
    textdata_free(&d);

    assert_int_equal(textdata_load("/nonexistent/dir/x.tsv", &s, &d, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "/nonexistent/dir/x.tsv: cannot open"));
    assert_int_equal(textdata_load("/tmp", &s, &d, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "is a directory"));
}

static void test_errors_spec(void **state) {
    (void)state;
    textdata_spec s = single_spec();
    s.no_header = true;
    expect_error("x.tsv", "a\t1\n", &s, NULL,
                 "text_a is chosen by name but the file has no header row");
    textdata_spec j = {0};
    j.text_a = TEXTDATA_BY_INDEX(0);
    expect_error("x.jsonl", "{\"a\":\"b\"}\n", &j, NULL, "JSONL fields are chosen by name");
    textdata_spec none = {0};
    expect_error("x.tsv", "a\n", &none, NULL, "no text_a field given");
    textdata_spec dup = single_spec();
    const char *const labels[] = {"a", "a"};
    dup.labels = labels;
    dup.num_labels = 2;
    expect_error("x.tsv", "text\tlabel\nt\ta\n", &dup, NULL, "declared label 'a' appears twice");
    dup.task = TEXTDATA_REGRESSION;
    expect_error("x.tsv", "text\tlabel\nt\ta\n", &dup, NULL,
                 "declared labels given for a regression task");
}

static void test_format_from_path(void **state) {
    (void)state;
    assert_int_equal(textdata_format_from_path("a/b/train.tsv"), TEXTDATA_TSV);
    assert_int_equal(textdata_format_from_path("X.CSV"), TEXTDATA_CSV);
    assert_int_equal(textdata_format_from_path("d.jsonl"), TEXTDATA_JSONL);
    assert_int_equal(textdata_format_from_path("d.json"), TEXTDATA_JSONL);
    assert_int_equal(textdata_format_from_path("dir.tsv/file"), TEXTDATA_AUTO);
    assert_int_equal(textdata_format_from_path("noext"), TEXTDATA_AUTO);
    assert_string_equal(textdata_format_name(TEXTDATA_CSV), "csv");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tsv_header_pair),
        cmocka_unit_test(test_tsv_headerless_by_index),
        cmocka_unit_test(test_tsv_columns_reordered_and_shared),
        cmocka_unit_test(test_tsv_regression),
        cmocka_unit_test(test_prediction_input),
        cmocka_unit_test(test_row_limit),
        cmocka_unit_test(test_bom_and_explicit_format),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_quoted_header_and_lf),
        cmocka_unit_test(test_jsonl_labels),
        cmocka_unit_test(test_jsonl_pair_bool_and_regression),
        cmocka_unit_test(test_jsonl_same_field_twice),
        cmocka_unit_test(test_load_buffer),
        cmocka_unit_test(test_label_ids_strings_sorted),
        cmocka_unit_test(test_label_ids_integers),
        cmocka_unit_test(test_label_ids_continuous),
        cmocka_unit_test(test_label_ids_previews),
        cmocka_unit_test(test_errors_columns),
        cmocka_unit_test(test_errors_csv),
        cmocka_unit_test(test_errors_text),
        cmocka_unit_test(test_errors_labels),
        cmocka_unit_test(test_errors_jsonl),
        cmocka_unit_test(test_errors_file),
        cmocka_unit_test(test_errors_spec),
        cmocka_unit_test(test_format_from_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
