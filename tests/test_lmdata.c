/* test_lmdata.c — causal-LM data (engine/io/lmdata.h) with the sp_bpe
 * fixture tokenizer (add_bos_token true, add_eos_token false): each row
 * form's ids and labels against the tokenizer's own output, the Alpaca
 * template text, prompt masking and train_on_inputs, truncation and skip
 * counts, the errors and their line numbers, chat rows (templates from
 * tests/chat_fixtures, labels only on assistant turns), the padded batches the
 * trainer gets (right padding, LABEL_IGNORE on padding), and the generation
 * references evaluation data keeps (prompt length and completion text). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "base/folder.h"
#include "base/json.h"
#include "io/lmdata.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"

static char err[512];

static int setup(void **state) {
    tokenizer *t = tokenizer_load_dir("tests/tokenizer_fixtures/sp_bpe", err, sizeof err);
    if (!t) fprintf(stderr, "%s\n", err);
    *state = t;
    return t ? 0 : -1;
}

static int teardown(void **state) {
    tokenizer_free(*state);
    return 0;
}

/* ids of text alone, n returned (the caller frees). */
static int32_t *tok_ids(const tokenizer *t, const char *text, size_t *n) {
    int32_t *ids = NULL;
    assert_int_equal(tokenizer_tokenize(t, text, strlen(text), &ids, n, err, sizeof err), 0);
    return ids;
}

/* An expected row built piece by piece: ids and labels. */
typedef struct {
    int32_t ids[512], labels[512];
    int n;
} row;

static void add(row *r, int32_t id, bool loss) {
    assert_true(r->n < 512);
    r->ids[r->n] = id;
    r->labels[r->n++] = loss ? id : LABEL_IGNORE;
}

static void add_text(row *r, const tokenizer *t, const char *text, bool loss) {
    size_t n;
    int32_t *ids = tok_ids(t, text, &n);
    for (size_t i = 0; i < n; i++) add(r, ids[i], loss);
    free(ids);
}

static void assert_row(const aflo_dataset *d, int i, const row *want) {
    assert_int_equal(dataset_len(d, i), want->n);
    const int32_t *ids = d->ids + d->offsets[i], *lab = d->token_labels + d->offsets[i];
    for (int k = 0; k < want->n; k++) {
        if (ids[k] != want->ids[k])
            fail_msg("row %d id %d: %d, want %d", i, k, ids[k], want->ids[k]);
        if (lab[k] != want->labels[k])
            fail_msg("row %d label %d: %d, want %d", i, k, lab[k], want->labels[k]);
    }
}

static int parse(const tokenizer *t, const char *text, int max_len, bool inputs, aflo_dataset *d,
                 lmdata_stats *st) {
    lmdata_opts o = {.max_seq_len = max_len, .train_on_inputs = inputs};
    return lmdata_parse(text, strlen(text), "data.jsonl", t, &o, d, st, err, sizeof err);
}

static void test_forms(void **state) {
    const tokenizer *t = *state;
    int32_t bos = tokenizer_bos_id(t), eos = tokenizer_eos_id(t);
    assert_true(bos >= 0 && eos >= 0 && bos != eos);
    assert_true(tokenizer_adds_bos(t));
    const char *text =
        "{\"text\": \"the cat sat\"}\n"
        "\n"
        "{\"prompt\": \"Q: hello\", \"completion\": \" world\", \"id\": 7}\n"
        "{\"instruction\": \"Say hi\", \"input\": \"to Bob\", \"output\": \"hi Bob\"}\n"
        "{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"hi\"}\r\n"
        "{\"input_ids\": [5, 6, 7, 8], \"labels\": [-100, -100, 7, 8]}\n"
        "{\"input_ids\": [9, 10]}";
    for (int inputs = 0; inputs <= 1; inputs++) {
        aflo_dataset d;
        dataset_init(&d);
        lmdata_stats st;
        if (parse(t, text, 512, inputs, &d, &st)) fail_msg("%s", err);
        assert_int_equal(d.n, 6);
        assert_int_equal(st.rows, 6);
        assert_int_equal(st.by_form[LMDATA_TEXT], 1);
        assert_int_equal(st.by_form[LMDATA_PROMPT_COMPLETION], 1);
        assert_int_equal(st.by_form[LMDATA_ALPACA], 2);
        assert_int_equal(st.by_form[LMDATA_TOKENS], 2);
        assert_int_equal(st.truncated + st.skipped, 0);
        assert_int_equal(st.tokens, (long)d.ntokens);

        row r = {.n = 0};
        add(&r, bos, true); /* a text row: loss on everything */
        add_text(&r, t, "the cat sat", true);
        add(&r, eos, true);
        assert_row(&d, 0, &r);

        r.n = 0; /* prompt masked unless train_on_inputs; EOS after the completion */
        add(&r, bos, inputs);
        add_text(&r, t, "Q: hello", inputs);
        add_text(&r, t, " world", true);
        add(&r, eos, true);
        assert_row(&d, 1, &r);

        r.n = 0;
        add(&r, bos, inputs);
        add_text(&r, t,
                 "Below is an instruction that describes a task, paired with an input that "
                 "provides further context. Write a response that appropriately completes the "
                 "request.\n\n### Instruction:\nSay hi\n\n### Input:\nto Bob\n\n### Response:",
                 inputs);
        add_text(&r, t, "hi Bob", true);
        add(&r, eos, true);
        assert_row(&d, 2, &r);

        r.n = 0; /* empty input: the variant without it */
        add(&r, bos, inputs);
        add_text(&r, t,
                 "Below is an instruction that describes a task. Write a response that "
                 "appropriately completes the request.\n\n### Instruction:\nSay hi\n\n"
                 "### Response:",
                 inputs);
        add_text(&r, t, "hi", true);
        add(&r, eos, true);
        assert_row(&d, 3, &r);

        row ids = {.ids = {5, 6, 7, 8}, .labels = {LABEL_IGNORE, LABEL_IGNORE, 7, 8}, .n = 4};
        assert_row(&d, 4, &ids);
        row plain = {.ids = {9, 10}, .labels = {9, 10}, .n = 2}; /* no BOS/EOS added */
        assert_row(&d, 5, &plain);

        long targets = 0;
        for (int i = 0; i < d.n; i++) targets += (long)dataset_loss_tokens(&d, i);
        assert_int_equal(targets, st.loss_tokens);
        assert_int_equal(dataset_loss_tokens(&d, 4), 2);
        dataset_free(&d);
    }
}

/* keep_references: prompt/completion and Alpaca rows keep [BOS] prompt's
 * length and their completion text; text, input_ids and cut-prompt rows
 * have none; without the option nothing is kept. */
static void test_references(void **state) {
    const tokenizer *t = *state;
    const char *text =
        "{\"text\": \"the cat sat\"}\n"
        "{\"prompt\": \"Q: 2+2\", \"completion\": \" #### 4\"}\n"
        "{\"instruction\": \"Say hi\", \"output\": \"hi\"}\n"
        "{\"input_ids\": [5, 6, 7, 8]}\n"
        "{\"prompt\": \"one two three four five six seven eight\", \"completion\": \"x\"}\n"
        "{\"prompt\": \"Q:\", \"completion\": \"\"}\n";
    /* the fixture's tokens are short: "Q: 2+2" is 7, row 1 is cut in its
     * completion (still judged), the Alpaca prompt and row 4's are cut */
    lmdata_opts o = {.max_seq_len = 16, .train_on_inputs = true, .keep_references = true};
    aflo_dataset d;
    dataset_init(&d);
    lmdata_stats st;
    if (lmdata_parse(text, strlen(text), "eval.jsonl", t, &o, &d, &st, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(d.n, 6);
    assert_int_equal(d.n_refs, 6);
    /* rows 1 (prompt/completion) and 5 (empty completion: EOS is its
     * answer); the Alpaca prompt does not fit 16 tokens, nor does row 4's */
    assert_int_equal(st.references, 2);
    size_t np;
    int32_t *pids = tok_ids(t, "Q: 2+2", &np);
    assert_int_equal(d.prompt_len[1], 1 + (int)np);
    assert_true(d.prompt_len[1] < dataset_len(&d, 1));
    assert_int_equal(d.ids[d.offsets[1]], tokenizer_bos_id(t));
    for (size_t k = 0; k < np; k++) assert_int_equal(d.ids[d.offsets[1] + 1 + k], pids[k]);
    free(pids);
    assert_int_equal((int)(d.ref_offsets[2] - d.ref_offsets[1]), 7);
    assert_memory_equal(d.ref_text + d.ref_offsets[1], " #### 4", 7);
    assert_true(dataset_has_reference(&d, 1));
    assert_true(dataset_has_reference(&d, 5));
    assert_int_equal(d.ref_offsets[6] - d.ref_offsets[5], 0);
    for (int i = 0; i < 5; i++) {
        if (i == 1) continue;
        assert_false(dataset_has_reference(&d, i));
        assert_int_equal(d.prompt_len[i], 0);
        assert_int_equal(d.ref_offsets[i + 1] - d.ref_offsets[i], 0);
    }
    char line[256];
    lmdata_describe(&st, 16, line, sizeof line);
    assert_non_null(strstr(line, "; 2 with a completion to judge"));
    /* a long enough row length keeps the Alpaca row's reference too */
    o.max_seq_len = 512;
    if (lmdata_parse(text, strlen(text), "eval.jsonl", t, &o, &d, &st, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(st.references, 4);
    assert_true(dataset_has_reference(&d, 2));
    assert_memory_equal(d.ref_text + d.ref_offsets[2], "hi", 2);
    /* training data keeps nothing */
    o.keep_references = false;
    if (lmdata_parse(text, strlen(text), "train.jsonl", t, &o, &d, &st, err, sizeof err))
        fail_msg("%s", err);
    assert_null(d.prompt_len);
    assert_null(d.ref_text);
    assert_false(dataset_has_reference(&d, 1));
    assert_int_equal(st.references, 0);
    dataset_free(&d);

    /* dataset_set_reference keeps its order: only for the last example */
    dataset_init(&d);
    int32_t ids[3] = {1, 5, 6};
    assert_int_equal(dataset_set_reference(&d, 1, "a", 1), -1); /* no example yet */
    assert_int_equal(dataset_add_lm(&d, ids, ids, 3), 0);
    assert_int_equal(dataset_set_reference(&d, 4, "a", 1), -1); /* past its length */
    assert_int_equal(dataset_set_reference(&d, 2, "a", 1), 0);
    assert_int_equal(dataset_set_reference(&d, 2, "a", 1), -1); /* twice */
    assert_int_equal(dataset_add_lm(&d, ids, ids, 3), 0);
    assert_int_equal(dataset_add_lm(&d, ids, ids, 3), 0);
    assert_int_equal(dataset_set_reference(&d, 1, "b", 1), -1); /* one skipped */
    dataset_free(&d);
}

static void test_alpaca_prompt(void **state) {
    (void)state;
    char *p = lmdata_alpaca_prompt("A", 1, NULL, 0);
    assert_non_null(p);
    assert_string_equal(p, "Below is an instruction that describes a task. Write a response that "
                           "appropriately completes the request.\n\n### Instruction:\nA\n\n"
                           "### Response:");
    free(p);
    p = lmdata_alpaca_prompt("A", 1, "B", 1);
    assert_non_null(p);
    assert_non_null(strstr(p, "paired with an input"));
    assert_non_null(strstr(p, "### Instruction:\nA\n\n### Input:\nB\n\n### Response:"));
    free(p);
}

static void test_truncation_and_skips(void **state) {
    const tokenizer *t = *state;
    size_t np;
    int32_t *pid = tok_ids(t, "one two three four five six seven", &np);
    free(pid);
    assert_true(np >= 4);
    int max = 4;
    char text[512];
    snprintf(text, sizeof text,
             "{\"text\": \"one two three four five six seven\"}\n"
             "{\"prompt\": \"one two three four five six seven\", \"completion\": \"x\"}\n"
             "{\"text\": \"a\"}\n");
    aflo_dataset d;
    dataset_init(&d);
    lmdata_stats st;
    if (parse(t, text, max, false, &d, &st)) fail_msg("%s", err);
    /* row 1 cut to max; row 2 cut too, leaving only masked prompt: skipped */
    assert_int_equal(st.truncated, 2);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(d.n, 2);
    assert_int_equal(dataset_len(&d, 0), max);
    char line[256];
    lmdata_describe(&st, max, line, sizeof line);
    assert_non_null(strstr(line, "2 rows (text 2)"));
    assert_non_null(strstr(line, "2 cut at max_seq_len 4"));
    assert_non_null(strstr(line, "1 skipped"));
    /* with the prompt trained on, the cut row keeps targets */
    if (parse(t, text, max, true, &d, &st)) fail_msg("%s", err);
    assert_int_equal(d.n, 3);
    assert_int_equal(st.skipped, 0);
    dataset_free(&d);
}

/* Each bad file: the message names the file, the line and what is wrong,
 * and the dataset is left as it was (empty). */
static void test_errors_with_lines(void **state) {
    const tokenizer *t = *state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{\"text\": \"a\"}\n\n{\"text\": 3}\n",
         "data.jsonl: line 3: \"text\" must be a string, got number"},
        {"{\"text\": \"a\"}\n{\"prompt\": \"p\"}\n", "line 2: \"completion\" is missing"},
        {"{\"completion\": \"c\"}\n", "line 1: \"prompt\" is missing"},
        {"{\"text\": \"a\", \"prompt\": \"p\", \"completion\": \"c\"}\n",
         "line 1: the row mixes the text and prompt/completion forms"},
        {"{\"instruction\": \"i\"}\n", "line 1: \"output\" is missing"},
        {"{\"instruction\": \"i\", \"input\": 1, \"output\": \"o\"}\n",
         "line 1: \"input\" must be a string"},
        {"{\"text\": \"a\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
         "line 2: chat rows need the model's chat template, and the tokenizer has none"},
        {"{\"foo\": 1}\n", "line 1: no row form"},
        {"[1, 2]\n", "line 1: a row must be a JSON object, got array"},
        {"{\"text\": \"a\"}\n{\"text\": \"b\"\n", "line 2: not valid JSON"},
        {"{\"input_ids\": []}\n", "line 1: \"input_ids\" must be a non-empty array"},
        {"{\"input_ids\": [1, 99999]}\n", "line 1: input_ids[1] is not a token id below"},
        {"{\"input_ids\": [1, 2], \"labels\": [1]}\n",
         "line 1: \"labels\" must be an array as long"},
        {"{\"input_ids\": [1, 2], \"labels\": [1, -5]}\n", "line 1: labels[1] must be a token id"},
        {"{\"input_ids\": [1, 2], \"labels\": [-100, -100]}\n", "no example with a token to learn"},
        {"\n  \n", "no example with a token to learn (0 rows skipped)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        aflo_dataset d;
        dataset_init(&d);
        err[0] = '\0';
        assert_int_equal(parse(t, cases[i].text, 64, false, &d, NULL), -1);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: <%s>, want <%s>", i, err, cases[i].want);
        assert_int_equal(d.n, 0);
        dataset_free(&d);
    }
    aflo_dataset d;
    dataset_init(&d);
    assert_int_equal(parse(t, "{\"text\": \"a\"}", 1, false, &d, NULL), -1);
    assert_non_null(strstr(err, "max_seq_len: a causal LM needs at least 2 tokens"));
    lmdata_opts o = {.max_seq_len = 8};
    assert_int_equal(lmdata_load("/nonexistent/x.jsonl", t, &o, &d, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/x.jsonl"));
}

/* A model without tokenizer files (tok NULL): token-id rows load as given,
 * any text row is refused by line, and the vocabulary size must be given. */
static void test_without_tokenizer(void **state) {
    (void)state;
    aflo_dataset d;
    dataset_init(&d);
    lmdata_opts o = {.max_seq_len = 8, .vocab_size = 10};
    const char *ids = "{\"input_ids\": [1, 5, 9]}\n";
    assert_int_equal(
        lmdata_parse(ids, strlen(ids), "ids.jsonl", NULL, &o, &d, NULL, err, sizeof err), 0);
    assert_int_equal(d.n, 1);
    assert_int_equal(dataset_len(&d, 0), 3);
    dataset_free(&d);
    dataset_init(&d);
    const char *mixed = "{\"input_ids\": [1, 5]}\n{\"text\": \"a\"}\n";
    assert_int_equal(
        lmdata_parse(mixed, strlen(mixed), "m.jsonl", NULL, &o, &d, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "m.jsonl: line 2: the model has no tokenizer files"));
    assert_int_equal(d.n, 0);
    o.vocab_size = 0;
    assert_int_equal(
        lmdata_parse(ids, strlen(ids), "ids.jsonl", NULL, &o, &d, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no vocabulary size"));
    dataset_free(&d);
}

/* sp_bpe's tokenizer in a temporary folder whose tokenizer_config.json has
 * the chat template of tests/chat_fixtures/templates/NAME.jinja (or the
 * template text itself when name is not a file there). dir receives the
 * folder (remove it with rm_dir). */
static tokenizer *chat_tokenizer(const char *name, char *dir) {
    strcpy(dir, "/tmp/aflo_lmchat_XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (copy_file_atomic("tests/tokenizer_fixtures/sp_bpe/tokenizer.json", path, err, sizeof err))
        fail_msg("%s", err);
    snprintf(path, sizeof path, "tests/chat_fixtures/templates/%s.jinja", name);
    size_t len;
    char *src = access(path, R_OK) == 0 ? read_text_file(path, 1 << 20, &len, err, sizeof err)
                                        : strdup(name);
    assert_non_null(src);
    size_t qn = json_quote(NULL, 0, src, strlen(src));
    char *q = malloc(qn + 1);
    assert_non_null(q);
    json_quote(q, qn + 1, src, strlen(src));
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"add_bos_token\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", "
            "\"chat_template\": %s}",
            q);
    assert_int_equal(fclose(f), 0);
    free(q);
    free(src);
    tokenizer *t = tokenizer_load_dir(dir, err, sizeof err);
    if (!t) fail_msg("%s", err);
    return t;
}

static void rm_dir(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Chat rows: the ids are the template's text tokenised span by span (the
 * spans written out here by hand from the published templates), loss on the
 * assistant turns and their end token only, no BOS of the tokenizer's added
 * (Llama-2 writes its own before each [INST], ChatML none). */
static void test_chat_rows(void **state) {
    (void)state;
    const char *text =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": "
        "\"user\", \"content\": \"hi there\"}, {\"role\": \"assistant\", \"content\": "
        "\"hello\"}, {\"role\": \"user\", \"content\": \"and?\"}, {\"role\": "
        "\"assistant\", \"content\": \"bye\"}]}\n"
        "{\"text\": \"plain\"}\n";
    char dir[64];
    for (int inputs = 0; inputs <= 1; inputs++) {
        tokenizer *t = chat_tokenizer("llama2", dir);
        int32_t bos = tokenizer_bos_id(t), eos = tokenizer_eos_id(t);
        aflo_dataset d;
        dataset_init(&d);
        lmdata_stats st;
        if (parse(t, text, 512, inputs, &d, &st)) fail_msg("%s", err);
        assert_int_equal(st.by_form[LMDATA_CHAT], 1);
        assert_int_equal(st.by_form[LMDATA_TEXT], 1);
        row r = {.n = 0};
        add_text(&r, t, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nhi there [/INST]", inputs);
        add_text(&r, t, " hello </s>", true);
        add_text(&r, t, "<s>[INST] and? [/INST]", inputs);
        add_text(&r, t, " bye </s>", true);
        assert_row(&d, 0, &r);
        /* the template's <s> and </s> became the BOS / EOS ids, BOS not doubled */
        const int32_t *ids = d.ids + d.offsets[0], *lab = d.token_labels + d.offsets[0];
        assert_int_equal(ids[0], bos);
        assert_int_not_equal(ids[1], bos);
        int eos_loss = 0;
        for (int i = 0; i < dataset_len(&d, 0); i++) eos_loss += lab[i] == eos;
        assert_int_equal(eos_loss, 2);
        char line[256];
        lmdata_describe(&st, 512, line, sizeof line);
        assert_non_null(strstr(line, "2 rows (text 1, chat 1)"));
        dataset_free(&d);
        tokenizer_free(t);
        rm_dir(dir);
    }

    /* Mistral: one BOS at the start, the system message in the first [INST] */
    tokenizer *t = chat_tokenizer("mistral", dir);
    aflo_dataset d;
    dataset_init(&d);
    lmdata_stats st;
    if (parse(t, text, 512, false, &d, &st)) fail_msg("%s", err);
    row r = {.n = 0};
    add_text(&r, t, "<s> [INST] Be brief.\n\nhi there [/INST]", false);
    add_text(&r, t, " hello</s>", true);
    add_text(&r, t, " [INST] and? [/INST]", false);
    add_text(&r, t, " bye</s>", true);
    assert_row(&d, 0, &r);
    dataset_free(&d);
    tokenizer_free(t);
    rm_dir(dir);

    t = chat_tokenizer("chatml", dir);
    assert_true(tokenizer_adds_bos(t));
    dataset_init(&d);
    const char *one = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, "
                      "{\"role\": \"assistant\", \"content\": \"hello\"}]}";
    if (parse(t, one, 512, false, &d, &st)) fail_msg("%s", err);
    r.n = 0;
    add_text(&r, t, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", false);
    add_text(&r, t, "hello<|im_end|>", true);
    add_text(&r, t, "\n", false);
    assert_row(&d, 0, &r);
    assert_int_not_equal(d.ids[0], tokenizer_bos_id(t)); /* ChatML writes no BOS */
    /* cut at max_seq_len like any row */
    int max = r.n - 2;
    if (parse(t, one, max, false, &d, &st)) fail_msg("%s", err);
    assert_int_equal(st.truncated, 1);
    assert_int_equal(dataset_len(&d, 0), max);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}",
         "line 1: messages[0]: role \"tool\" is not system, user or assistant"},
        {"{\"text\": \"a\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
         "line 2: no assistant message"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
         "\"assistant\", \"content\": \"  \"}]}",
         "line 1: messages[1] (assistant) is empty"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": 5}]}",
         "line 1: messages[0] needs \"role\" and \"content\" strings"},
        {"{\"messages\": []}", "line 1: \"messages\" must be a non-empty array"},
        {"{\"messages\": [\"hi\"]}", "line 1: messages[0] must be an object, got string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(parse(t, bad[i].text, 64, false, &d, NULL), -1);
        if (!strstr(err, bad[i].want)) fail_msg("case %zu: <%s>, want <%s>", i, err, bad[i].want);
    }
    dataset_free(&d);
    tokenizer_free(t);
    rm_dir(dir);

    t = chat_tokenizer("{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}", dir);
    assert_int_equal(parse(t, one, 64, false, &d, NULL), -1);
    assert_non_null(strstr(err, "data.jsonl: line 1: unknown chat template \"{% for m in"));
    tokenizer_free(t);
    rm_dir(dir);
}

/* Batches: right padding, mask 0 and LABEL_IGNORE on padding, the rows'
 * labels where real; a classification dataset keeps token_labels NULL. */
static void test_batches(void **state) {
    (void)state;
    aflo_dataset d;
    dataset_init(&d);
    int32_t a[] = {3, 4, 5}, la[] = {LABEL_IGNORE, 4, 5}, b[] = {6}, lb[] = {6};
    assert_int_equal(dataset_add_lm(&d, a, la, 3), 0);
    assert_int_equal(dataset_add_lm(&d, b, lb, 1), 0);
    assert_int_equal(dataset_add(&d, a, NULL, 3, 0, 0.0f), -1); /* one kind per dataset */
    aflo_batch_buffers bb;
    assert_int_equal(batch_buffers_init(&bb, 2, 3), 0);
    int idx[2] = {1, 0};
    aflo_batch bt;
    dataset_make_batch(&d, idx, 2, 0, &bb, &bt);
    assert_int_equal(bt.seq, 3);
    assert_non_null(bt.token_labels);
    const int32_t want_ids[6] = {6, 0, 0, 3, 4, 5};
    const int32_t want_lab[6] = {6, LABEL_IGNORE, LABEL_IGNORE, LABEL_IGNORE, 4, 5};
    const uint8_t want_mask[6] = {1, 0, 0, 1, 1, 1};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(bt.input_ids[i], want_ids[i]);
        assert_int_equal(bt.token_labels[i], want_lab[i]);
        assert_int_equal(bt.attention_mask[i], want_mask[i]);
    }
    batch_buffers_free(&bb);
    dataset_free(&d);
    dataset_init(&d);
    assert_int_equal(dataset_add(&d, a, NULL, 3, 1, 0.0f), 0);
    assert_int_equal(dataset_add_lm(&d, a, la, 3), -1);
    assert_int_equal(batch_buffers_init(&bb, 1, 3), 0);
    int one = 0;
    dataset_make_batch(&d, &one, 1, 0, &bb, &bt);
    assert_null(bt.token_labels);
    batch_buffers_free(&bb);
    dataset_free(&d);
}

/* lmdata_check: the form of every row and the first misfit by line. */
static int check(const tokenizer *t, const char *text, int context, lmdata_check_result *r) {
    lmdata_check_opts o = {.tok = t, .context_length = context};
    return lmdata_check(text, strlen(text), "up.jsonl", &o, r, err, sizeof err);
}

static void expect_check_error(const char *text, const char *want) {
    lmdata_check_result r;
    assert_int_equal(check(NULL, text, 0, &r), -1);
    if (!strstr(err, want)) fail_msg("%s: got '%s', want '%s'", text, err, want);
}

static void test_check_forms(void **state) {
    const tokenizer *t = *state;
    const struct {
        const char *text;
        lmdata_form form;
        const char *name;
    } cases[] = {
        {"{\"text\":\"the cat\"}\n\n{\"text\":\"a dog\"}\n", LMDATA_TEXT, "text"},
        {"{\"prompt\":\"p\",\"completion\":\"c\"}\n", LMDATA_PROMPT_COMPLETION,
         "prompt_completion"},
        {"{\"instruction\":\"i\",\"output\":\"o\"}\n", LMDATA_ALPACA, "alpaca"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
         "{\"role\":\"assistant\",\"content\":\"yo\"}]}\n",
         LMDATA_CHAT, "chat"},
        {"{\"input_ids\":[1,2,3],\"labels\":[-100,2,3]}\n", LMDATA_TOKENS, "input_ids"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lmdata_check_result r;
        if (check(NULL, cases[i].text, 0, &r) != 0) fail_msg("%s: %s", cases[i].text, err);
        assert_int_equal(r.form, cases[i].form);
        assert_string_equal(lmdata_form_name(r.form), cases[i].name);
        lmdata_form back;
        assert_int_equal(lmdata_form_from_name(cases[i].name, &back), 0);
        assert_int_equal(back, cases[i].form);
        /* without a tokenizer only input_ids rows are counted */
        assert_int_equal(r.tokens, cases[i].form == LMDATA_TOKENS ? 3 : -1);
    }
    lmdata_check_result r;
    assert_int_equal(check(NULL, "{\"text\":\"a\"}\n\n{\"text\":\"b\"}\n", 0, &r), 0);
    assert_int_equal(r.rows, 2);
    lmdata_form f;
    assert_int_equal(lmdata_form_from_name("columns", &f), -1);

    /* with the tokenizer: the tokens lmdata_parse would give, rows over the
     * context counted with the first one's line */
    const char *text = "{\"text\":\"hello world\"}\n{\"text\":\"hi\"}\n";
    assert_int_equal(check(t, text, 0, &r), 0);
    aflo_dataset d;
    dataset_init(&d);
    lmdata_stats st;
    assert_int_equal(parse(t, text, 1000, false, &d, &st), 0);
    assert_int_equal(r.tokens, st.tokens);
    assert_int_equal(r.longest, dataset_len(&d, 0) > dataset_len(&d, 1) ? dataset_len(&d, 0)
                                                                        : dataset_len(&d, 1));
    assert_int_equal(check(t, text, dataset_len(&d, 1), &r), 0);
    assert_int_equal(r.over_context, dataset_len(&d, 0) > dataset_len(&d, 1));
    assert_int_equal(r.first_over_line, 1);
    dataset_free(&d);
    /* chat rows with a tokenizer need its template: the sp_bpe fixture has none */
    assert_int_equal(check(t,
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                           "{\"role\":\"assistant\",\"content\":\"yo\"}]}\n",
                           0, &r),
                     -1);
    assert_non_null(strstr(err, "up.jsonl: line 1: chat rows need the model's chat template"));
}

static void test_check_errors(void **state) {
    (void)state;
    expect_check_error("", "up.jsonl: no rows");
    expect_check_error("{\"text\":\"a\"}\n{\"prompt\":\"p\",\"completion\":\"c\"}\n",
                       "up.jsonl: line 2: a prompt/completion row, but line 1 is text");
    expect_check_error("{\"text\":\"a\"}\n{\"prompt\":\"p\"}\n",
                       "up.jsonl: line 2: \"completion\" is missing");
    expect_check_error("{\"text\":3}\n", "line 1: \"text\" must be a string");
    expect_check_error("{\"instruction\":\"i\",\"input\":4,\"output\":\"o\"}\n",
                       "line 1: \"input\" must be a string");
    expect_check_error("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                       "{\"role\":\"bot\",\"content\":\"yo\"}]}\n",
                       "line 1: ");
    expect_check_error("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                       "{\"role\":\"assistant\",\"content\":\" \\n\"}]}\n",
                       "line 1: messages[1]: the assistant turn is empty");
    expect_check_error("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                       "{\"role\":\"system\",\"content\":\"s\"},"
                       "{\"role\":\"assistant\",\"content\":\"a\"}]}\n",
                       "line 1: messages[1]: a system message may only come first");
    expect_check_error("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n",
                       "line 1: no assistant message");
    expect_check_error("{\"input_ids\":[1,-2]}\n", "line 1: input_ids[1]");
    expect_check_error("[1]\n", "line 1: a row must be a JSON object");
    expect_check_error("{\"text\":\"a\",\"prompt\":\"p\",\"completion\":\"c\"}\n", "the row mixes");
    /* the limits without a model, just over each */
    lmdata_check_result r;
    size_t n = LMDATA_CHECK_MAX_IDS + 1;
    char *big = malloc(n * 2 + 64);
    assert_non_null(big);
    size_t k = (size_t)sprintf(big, "{\"input_ids\":[");
    for (size_t i = 0; i < n; i++) k += (size_t)sprintf(big + k, "%s1", i ? "," : "");
    k += (size_t)sprintf(big + k, "]}\n");
    lmdata_check_opts o = {0};
    assert_int_equal(lmdata_check(big, k, "up.jsonl", &o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 1: \"input_ids\" has 131073 ids, over the limit of 131072"));
    /* one id fewer passes (the line is still under 1 MiB) */
    k = (size_t)sprintf(big, "{\"input_ids\":[");
    for (size_t i = 0; i + 1 < n; i++) k += (size_t)sprintf(big + k, "%s1", i ? "," : "");
    k += (size_t)sprintf(big + k, "]}\n");
    if (lmdata_check(big, k, "up.jsonl", &o, &r, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(r.tokens, LMDATA_CHECK_MAX_IDS);
    free(big);
    o.max_line_bytes = 16;
    const char *line = "{\"text\":\"seventeen\"}\n"; /* 20 bytes */
    assert_int_equal(lmdata_check(line, strlen(line), "up.jsonl", &o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 1: the row is 20 bytes, over the limit of 16 per line"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_alpaca_prompt),
        cmocka_unit_test(test_truncation_and_skips),
        cmocka_unit_test(test_errors_with_lines),
        cmocka_unit_test(test_without_tokenizer),
        cmocka_unit_test(test_chat_rows),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_check_forms),
        cmocka_unit_test(test_check_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
