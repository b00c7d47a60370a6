/* textdata.h — training and prediction data files read into raw text rows.
 *
 * Reads GLUE-style TSV, RFC 4180 CSV and JSON Lines into rows of one or two
 * texts plus a label, before any tokenisation (that is the tokenizer's job;
 * dataset.h holds the tokenised result). The whole file is read into one owned
 * buffer, parsed in place, and the texts that are kept are compacted to its
 * front, so a dataset costs about the size of its used text plus 24 bytes a
 * row — a handful of allocations whatever the row count.
 *
 * Loading is all or nothing: a malformed file gives an error message naming
 * the file, the physical line where the bad row starts and what is wrong, and
 * no rows. Formats:
 *   TSV   tab-separated, one row per line, no quoting at all (GLUE's files hold
 *         literal '"' characters), CRLF or LF. With a header row, or without
 *         (CoLA's train.tsv), then columns are chosen by 0-based index.
 *   CSV   RFC 4180: '"'-quoted fields with "" for a quote and commas/newlines
 *         inside; CRLF or LF. A '"' inside an unquoted field is kept literally
 *         (as Python's csv module does) rather than rejected.
 *   JSONL one JSON object per line (engine/base/json.h, strict), fields by key;
 *         blank lines skipped. Labels may be strings, numbers or booleans.
 * In TSV and CSV, blank lines are skipped and every row must have as many
 * fields as the header (or the first row, when there is no header). A UTF-8
 * byte order mark at the start of the file is ignored.
 *
 * Labels: a JSON number is named by its shortest round-trip text, so 1, 1.0
 * and "1" are the same label "1"; label strings are trimmed of surrounding
 * ASCII whitespace. For regression the label is a finite float. For
 * classification each label gets a class id (the class's row in the task
 * head), by this rule:
 *   - declared labels (spec.labels): their position in the list; any other
 *     label is an error;
 *   - otherwise, labels that are all non-negative integers spelled plainly
 *     ("0", "2", not "02" or "+1") are their own ids, as Hugging Face's GLUE
 *     scripts and anyone loading the adapter will assume: GLUE's "1" is id 1
 *     whichever row comes first. spec.num_labels, when given, is the class
 *     count: a label at or beyond it is an error and ids the data lacks are
 *     fine (named by their number). Without it, ids 0..max must all occur:
 *     a gap ({0, 2}) is an error naming the missing id;
 *   - any other labels are sorted by their UTF-8 bytes (code point order, as
 *     Hugging Face's run_glue sorts them): "neg" 0, "pos" 1. spec.num_labels,
 *     when given, must equal their count;
 *   - labels that are all numbers, some not whole ("3.8"), are refused as a
 *     regression target loaded as classification, as are negative or huge
 *     (>= TEXTDATA_MAX_LABELS) integers.
 * The rules on the set as a whole (gaps, counts, continuous-looking labels)
 * need every row: a preview (max_rows) or a rows_only load skips them and
 * only assigns ids by the same rule as far as it can. An evaluation file
 * must use the training file's ids: load it with the training map as its
 * declared labels (and labels_origin naming it in messages). */
#ifndef AFLO_TEXTDATA_H
#define AFLO_TEXTDATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default cap on the file size. The largest GLUE training file, MNLI's
 * train.tsv (it carries parse-tree columns), is a few hundred MB. */
#define TEXTDATA_DEFAULT_MAX_BYTES ((size_t)512 << 20)
/* Cap on distinct classification labels: far above any GLUE task (3), and it
 * catches a regression file loaded as classification with a clear message
 * (label lookup is linear). */
#define TEXTDATA_MAX_LABELS 1000

typedef enum {
    TEXTDATA_AUTO = 0, /* from the extension: .tsv .csv .jsonl .json */
    TEXTDATA_TSV,
    TEXTDATA_CSV,
    TEXTDATA_JSONL
} textdata_format;

typedef enum { TEXTDATA_CLASSIFICATION = 0, TEXTDATA_REGRESSION } textdata_task;

/* Which field of a row: by name (header column / JSON key) or by 0-based
 * column index (TSV/CSV only). The zero value means "no such field". */
typedef enum {
    TEXTDATA_FIELD_NONE = 0,
    TEXTDATA_FIELD_NAME,
    TEXTDATA_FIELD_INDEX
} textdata_field_kind;
typedef struct {
    textdata_field_kind kind;
    const char *name;
    int index;
} textdata_field;
#define TEXTDATA_BY_NAME(n) ((textdata_field){TEXTDATA_FIELD_NAME, (n), 0})
#define TEXTDATA_BY_INDEX(i) ((textdata_field){TEXTDATA_FIELD_INDEX, NULL, (i)})

typedef struct {
    textdata_format format;
    textdata_field text_a; /* required */
    textdata_field text_b; /* NONE: single-text task */
    textdata_field label;  /* NONE: prediction input, no labels read */
    textdata_task task;
    /* Classification only. labels: the class names in id order, num_labels
     * their count (copied by the loader). Without labels, num_labels > 0 is
     * the class count for integer labels (0: the data decides). */
    const char *const *labels;
    int num_labels;
    /* What the labels list is, for messages: "the training data's labels";
     * NULL: "the declared labels". */
    const char *labels_origin;
    /* Check the rows only, not the label set as a whole (gaps, num_labels,
     * continuous-looking numbers): for an upload, whose job (and so whose
     * declared labels) comes later. */
    bool rows_only;
    bool no_header;   /* TSV/CSV: the first row is data, not names */
    size_t max_bytes; /* 0: TEXTDATA_DEFAULT_MAX_BYTES */
    int max_rows;     /* > 0: stop after this many rows (previews;
                                      later rows are not read, so not checked) */
} textdata_spec;

/* One row: offsets into buf. Read through the accessors. */
typedef struct {
    size_t a, b; /* b == SIZE_MAX: no second text */
    union {
        int32_t id;  /* classification */
        float value; /* regression */
    } label;
} textdata_row;

typedef struct {
    char *buf; /* all kept texts, NUL-terminated */
    textdata_row *rows;
    int n;
    textdata_task task;
    bool has_text_b, has_labels;
    int num_labels;    /* classification: size of the label map */
    size_t *label_off; /* num_labels offsets into label_pool */
    char *label_pool;
} textdata;

/* Read the file at path. Returns 0, or -1 with *out empty and a message like
 *   "data/train.tsv:12: ragged row: 3 fields, the header has 4"
 * in err. *out needs no initialisation; release it with textdata_free. */
int textdata_load(const char *path, const textdata_spec *spec, textdata *out, char *err,
                  size_t errlen);
/* Same from memory (data[0..len) is copied). name is used in messages and, for
 * TEXTDATA_AUTO, for its extension (e.g. an upload's file name). */
int textdata_load_buffer(const char *data, size_t len, const char *name, const textdata_spec *spec,
                         textdata *out, char *err, size_t errlen);
void textdata_free(textdata *d);

/* Format for a path's extension, or TEXTDATA_AUTO when it has none we know. */
textdata_format textdata_format_from_path(const char *path);
const char *textdata_format_name(textdata_format f); /* "tsv", "csv", "jsonl", "auto" */

int textdata_count(const textdata *d);
/* Row texts (UTF-8, NUL-terminated, non-empty); NULL if i is out of range.
 * text_b is NULL for single-text data. */
const char *textdata_text_a(const textdata *d, int i);
const char *textdata_text_b(const textdata *d, int i);
bool textdata_has_labels(const textdata *d);
/* Class id of row i; -1 without labels, for regression, or i out of range. */
int32_t textdata_label_id(const textdata *d, int i);
/* Regression target of row i; NaN without labels, for classification, or i
 * out of range. */
float textdata_label_value(const textdata *d, int i);
/* The label map (id -> name), to store with the adapter: classification only
 * (0 for regression). With declared labels and no label field it is the
 * declared list. */
int textdata_label_count(const textdata *d);
const char *textdata_label_name(const textdata *d, int id);

#endif
