/* test_lmeval.c — exact-match evaluation of a causal LM (lmeval.h) through
 * the trainer, on a tiny random LLaMA with the sp_bpe fixture tokenizer:
 *   - with the real tokenizer as detokenizer, each epoch's exact_match is
 *     the count this test gets by running generate() itself from prompts it
 *     tokenises itself, decoding and comparing trimmed texts;
 *   - with detokenizers of known output, the rule is applied per row
 *     against that row's reference, the end-of-sequence id is cut off,
 *     rows without a completion are not judged, and generation adds no
 *     FLOPs to the training count;
 *   - metric "exact_match" picks the best epoch (highest wins), and the
 *     metric survives a checkpoint;
 *   - settings that cannot work are refused by name. */
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

#include "io/lmdata.h"
#include "model/gemm.h"
#include "model/generate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"

static char err[512];

static tokenizer *load_tok(void) {
    tokenizer *t = tokenizer_load_dir("tests/tokenizer_fixtures/sp_bpe", err, sizeof err);
    if (!t) fail_msg("%s", err);
    return t;
}

static aflo_model *tiny_llama(int vocab) {
    aflo_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.vocab_size = vocab;
    c.hidden_size = 16;
    c.intermediate_size = 32;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 128;
    c.type_vocab_size = 1;
    c.rms_norm_eps = 1e-6f;
    c.rope_theta = 10000.0f;
    c.layer_norm_eps = 1e-12f;
    aflo_adapter_config ac = {.method = METHOD_LORA,
                              .rank = 4,
                              .alpha = 8.0f,
                              .targets = ALL_MODULES,
                              .projections = PROJ_ALL};
    aflo_model *m = model_create(&c, &ac, TASK_CAUSAL_LM, vocab, 3, err, sizeof err);
    if (!m) fail_msg("%s", err);
    /* a pretrained head's scale, so the adapters can move the loss (as
     * test_lmtrain does) */
    aflo_param *head = model_find_param(m, "lm_head.weight");
    assert_non_null(head);
    for (size_t i = 0; i < head->size; i++) head->data[i] *= 25.0f;
    return m;
}

static void parse_rows(const tokenizer *tok, const char *text, bool refs, aflo_dataset *d) {
    lmdata_opts o = {.max_seq_len = 64, .keep_references = refs};
    dataset_init(d);
    if (lmdata_parse(text, strlen(text), "rows", tok, &o, d, NULL, err, sizeof err))
        fail_msg("%s", err);
}

static const char *const WORDS[] = {"red", "blue", "cat", "dog"};
#define NWORDS 4

/* "say w:" -> " 7": a constant answer, which a tiny model learns within a
 * few epochs (copying the word it does not). */
static char *say_rows(int n) {
    size_t cap = (size_t)n * 80 + 1;
    char *s = malloc(cap);
    assert_non_null(s);
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *w = WORDS[i % NWORDS];
        size_t len = strlen(s);
        snprintf(s + len, cap - len, "{\"prompt\": \"say %s:\", \"completion\": \" 7\"}\n", w);
    }
    return s;
}

static aflo_train_config config(int epochs) {
    aflo_train_config tc;
    train_config_defaults(&tc, epochs);
    tc.batch_size = 4;
    tc.lr = 3e-2f;
    tc.max_grad_norm = 1.0f;
    tc.dropout = false;
    tc.pad_id = 0;
    return tc;
}

/* The tokenizer as the trainer's detokenizer (special tokens skipped). */
static int tok_detok(void *ctx, const int32_t *ids, int n, char **text, size_t *len, char *e,
                     size_t elen) {
    return tokenizer_decode(ctx, ids, (size_t)n, 1, text, len, e, elen);
}

static void trim(const char **s, size_t *n) {
    while (*n && strchr(" \t\r\n", (*s)[0])) (*s)++, (*n)--;
    while (*n && strchr(" \t\r\n", (*s)[*n - 1])) (*n)--;
}

typedef struct {
    aflo_model *m;
    const tokenizer *tok;
    int max_new;
    double em[16];
    int count[16], judged[16], evals;
} by_hand;

/* In the trainer's eval callback the model is as it was evaluated: count
 * the rows whose greedy generation is the completion, from scratch. */
static void count_by_hand(void *ctx, const aflo_eval_info *ev) {
    by_hand *h = ctx;
    int hits = 0;
    for (int w = 0; w < NWORDS; w++) {
        char prompt[32], want[32];
        snprintf(prompt, sizeof prompt, "say %s:", WORDS[w]);
        snprintf(want, sizeof want, "7");
        int32_t *pids = NULL, ids[32];
        size_t np = 0;
        assert_int_equal(
            tokenizer_tokenize(h->tok, prompt, strlen(prompt), &pids, &np, err, sizeof err), 0);
        assert_true(np + 1 < 32);
        ids[0] = tokenizer_bos_id(h->tok);
        memcpy(ids + 1, pids, np * sizeof *ids);
        free(pids);
        gen_params p = gen_params_default();
        p.max_new_tokens = h->max_new;
        p.eos_id = tokenizer_eos_id(h->tok);
        gen_result r;
        if (generate(h->m, ids, (int)np + 1, &p, &r, err, sizeof err)) fail_msg("%s", err);
        char *text;
        size_t len;
        assert_int_equal(
            tokenizer_decode(h->tok, r.ids, (size_t)r.n, 1, &text, &len, err, sizeof err), 0);
        const char *s = text;
        trim(&s, &len);
        hits += len == strlen(want) && memcmp(s, want, len) == 0;
        free(text);
        gen_result_free(&r);
    }
    assert_true(ev->metrics->has_exact_match);
    double em;
    assert_int_equal(metrics_lookup(ev->metrics, "exact_match", &em), 0);
    if (h->evals < 16) {
        h->em[h->evals] = em;
        h->count[h->evals] = hits;
        h->judged[h->evals] = ev->metrics->judged;
    }
    h->evals++;
}

static void test_exact_match_counted_by_hand(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    char *text = say_rows(32);
    aflo_dataset train, eval;
    parse_rows(tok, text, false, &train);
    free(text);
    text = say_rows(NWORDS); /* one row per word, in WORDS order */
    parse_rows(tok, text, true, &eval);
    free(text);
    aflo_model *m = tiny_llama(tokenizer_vocab_size(tok));
    aflo_train_config tc = config(8);
    tc.gen_eval = (aflo_gen_eval){.rule = ANSWER_EXACT,
                                  .max_new_tokens = 12,
                                  .eos_id = tokenizer_eos_id(tok),
                                  .detok = tok_detok,
                                  .detok_ctx = tok};
    aflo_trainer *t = trainer_create(m, &tc, &train, &eval, err, sizeof err);
    if (!t) fail_msg("%s", err);
    by_hand h = {.m = m, .tok = tok, .max_new = 12};
    aflo_progress pr = {.ctx = &h, .on_eval = count_by_hand};
    aflo_train_summary sum;
    if (trainer_run(t, &pr, NULL, &sum, err, sizeof err) != TRAIN_DONE) fail_msg("%s", err);
    assert_int_equal(h.evals, 8);
    fprintf(stderr, "exact match by epoch:");
    for (int e = 0; e < 8; e++) {
        fprintf(stderr, " %d/%d", h.count[e], h.judged[e]);
        assert_int_equal(h.judged[e], NWORDS);
        if (fabs(h.em[e] * NWORDS - h.count[e]) > 1e-9)
            fail_msg("epoch %d: exact_match %g of %d rows, by hand %d", e, h.em[e], NWORDS,
                     h.count[e]);
    }
    fprintf(stderr, "\n");
    /* the model learns the answer: the equality above held for different
     * counts, not only for 0 */
    assert_true(h.count[7] > h.count[0]);
    /* the default metric is still perplexity: exact_match rides along */
    assert_true(sum.best_metrics.has_exact_match);
    trainer_free(t);
    model_free(m);
    dataset_free(&train);
    dataset_free(&eval);
    tokenizer_free(tok);
}

/* A detokenizer of fixed output that checks what it is given. */
typedef struct {
    const char *say; /* the text of every generation */
    int32_t eos;
    int max_new, calls, empty;
} fixed_detok;

static int fixed(void *ctx, const int32_t *ids, int n, char **text, size_t *len, char *e,
                 size_t elen) {
    (void)e;
    (void)elen;
    fixed_detok *f = ctx;
    assert_true(n >= 0 && n <= f->max_new);
    for (int i = 0; i < n; i++) assert_int_not_equal(ids[i], f->eos);
    f->calls++;
    f->empty += n == 0;
    *text = strdup(f->say);
    assert_non_null(*text);
    *len = strlen(*text);
    return 0;
}

static const char MIXED[] = "{\"prompt\": \"Q: a\", \"completion\": \" #### 7\"}\n"
                            "{\"text\": \"no answer here 7\"}\n"
                            "{\"prompt\": \"Q: b\", \"completion\": \" so 1,234 #### 8\"}\n"
                            "{\"prompt\": \"Q: c\", \"completion\": \"7.0\"}\n"
                            "{\"prompt\": \"Q: d\", \"completion\": \"#### 7\"}\n"
                            "{\"input_ids\": [1, 5, 6]}\n";

static void test_rule_per_row_and_no_flops(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    aflo_dataset train, eval;
    parse_rows(tok, MIXED, false, &train);
    parse_rows(tok, MIXED, true, &eval);
    aflo_model *m = tiny_llama(tokenizer_vocab_size(tok));
    /* the model's first greedy token after row 0's prompt, taken as EOS:
     * that row's generation then ends at once, and its text is empty */
    gen_params p = gen_params_default();
    p.max_new_tokens = 1;
    gen_result r;
    assert_int_equal(generate(m, eval.ids, eval.prompt_len[0], &p, &r, err, sizeof err), 0);
    int32_t first = r.ids[0];
    gen_result_free(&r);

    fixed_detok f = {.say = "The answer is 7.", .eos = first, .max_new = 5};
    aflo_train_config tc = config(1);
    tc.lr = 1e-7f; /* the adapters barely move: the first token stays */
    tc.gen_eval = (aflo_gen_eval){.rule = ANSWER_GSM8K,
                                  .max_new_tokens = 5,
                                  .eos_id = first,
                                  .detok = fixed,
                                  .detok_ctx = &f};
    aflo_trainer *t = trainer_create(m, &tc, &train, &eval, err, sizeof err);
    if (!t) fail_msg("%s", err);
    aflo_train_summary sum;
    if (trainer_run(t, NULL, NULL, &sum, err, sizeof err) != TRAIN_DONE) fail_msg("%s", err);
    /* 4 rows have a completion; "7" is the answer of 3 of them (7, 7.0, 7) */
    assert_int_equal(f.calls, 4);
    assert_true(f.empty >= 1);
    assert_true(sum.last_metrics.has_exact_match);
    assert_int_equal(sum.last_metrics.judged, 4);
    assert_true(sum.last_metrics.exact_match == 0.75);
    /* rule exact: "The answer is 7." is none of the completions */
    f.calls = 0;
    tc.gen_eval.rule = ANSWER_EXACT;
    aflo_model *m2 = tiny_llama(tokenizer_vocab_size(tok));
    aflo_trainer *t2 = trainer_create(m2, &tc, &train, &eval, err, sizeof err);
    if (!t2) fail_msg("%s", err);
    aflo_train_summary sum2;
    if (trainer_run(t2, NULL, NULL, &sum2, err, sizeof err) != TRAIN_DONE) fail_msg("%s", err);
    assert_int_equal(f.calls, 4);
    assert_true(sum2.last_metrics.exact_match == 0.0);
    /* no generation at all: the same training FLOPs (evaluation's are not
     * counted) */
    tc.gen_eval.rule = ANSWER_NONE;
    aflo_model *m3 = tiny_llama(tokenizer_vocab_size(tok));
    aflo_trainer *t3 = trainer_create(m3, &tc, &train, &eval, err, sizeof err);
    if (!t3) fail_msg("%s", err);
    aflo_train_summary sum3;
    f.calls = 0;
    if (trainer_run(t3, NULL, NULL, &sum3, err, sizeof err) != TRAIN_DONE) fail_msg("%s", err);
    assert_int_equal(f.calls, 0);
    assert_false(sum3.last_metrics.has_exact_match);
    double v;
    assert_int_equal(metrics_lookup(&sum3.last_metrics, "exact_match", &v), -1);
    assert_true(flops_total(&sum3.flops) > 0);
    assert_memory_equal(&sum3.flops, &sum.flops, sizeof sum.flops);
    trainer_free(t3);
    trainer_free(t2);
    trainer_free(t);
    model_free(m3);
    model_free(m2);
    model_free(m);
    dataset_free(&train);
    dataset_free(&eval);
    tokenizer_free(tok);
}

/* Says "#### 7" in the second epoch's evaluation only (rows per epoch
 * known), "#### 0" otherwise. */
typedef struct {
    int rows, calls;
} epoch_detok;

static int by_epoch(void *ctx, const int32_t *ids, int n, char **text, size_t *len, char *e,
                    size_t elen) {
    (void)ids;
    (void)n;
    (void)e;
    (void)elen;
    epoch_detok *d = ctx;
    int epoch = d->calls++ / d->rows;
    *text = strdup(epoch == 1 ? "#### 7" : "#### 0");
    assert_non_null(*text);
    *len = strlen(*text);
    return 0;
}

static void test_best_epoch_by_exact_match(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    aflo_dataset train, eval;
    parse_rows(tok, MIXED, false, &train);
    parse_rows(tok, MIXED, true, &eval);
    aflo_model *m = tiny_llama(tokenizer_vocab_size(tok));
    epoch_detok d = {.rows = 4};
    aflo_train_config tc = config(3);
    tc.select_metric = "exact_match";
    tc.gen_eval = (aflo_gen_eval){.rule = ANSWER_GSM8K,
                                  .max_new_tokens = 3,
                                  .eos_id = -1,
                                  .detok = by_epoch,
                                  .detok_ctx = &d};
    aflo_trainer *t = trainer_create(m, &tc, &train, &eval, err, sizeof err);
    if (!t) fail_msg("%s", err);
    aflo_train_summary sum;
    if (trainer_run(t, NULL, NULL, &sum, err, sizeof err) != TRAIN_DONE) fail_msg("%s", err);
    assert_int_equal(d.calls, 3 * 4);
    assert_int_equal(sum.best_epoch, 1);
    assert_true(sum.best_metrics.exact_match == 0.75); /* 7, 7.0 and 7 of 7, 8, 7.0, 7 */
    assert_true(sum.last_metrics.exact_match == 0.0);

    /* the best epoch's metrics come back from a checkpoint */
    char path[] = "/tmp/test_lmeval_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(trainer_save_checkpoint(t, path, err, sizeof err), 0);
    aflo_model *m2 = tiny_llama(tokenizer_vocab_size(tok));
    aflo_trainer *t2 = trainer_create(m2, &tc, &train, &eval, err, sizeof err);
    if (!t2) fail_msg("%s", err);
    if (trainer_load_checkpoint(t2, path, err, sizeof err)) fail_msg("%s", err);
    aflo_train_summary sum2;
    assert_int_equal(trainer_run(t2, NULL, NULL, &sum2, err, sizeof err), TRAIN_DONE);
    assert_int_equal(d.calls, 3 * 4); /* nothing left to run */
    assert_int_equal(sum2.best_epoch, 1);
    assert_true(sum2.best_metrics.has_exact_match);
    assert_true(sum2.best_metrics.exact_match == 0.75);
    assert_int_equal(sum2.best_metrics.judged, 4);
    unlink(path);
    trainer_free(t2);
    trainer_free(t);
    model_free(m2);
    model_free(m);
    dataset_free(&train);
    dataset_free(&eval);
    tokenizer_free(tok);
}

static void test_refusals(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    aflo_dataset train, eval, text_only;
    parse_rows(tok, MIXED, false, &train);
    parse_rows(tok, MIXED, true, &eval);
    parse_rows(tok, "{\"text\": \"a b\"}\n", true, &text_only);
    aflo_model *m = tiny_llama(tokenizer_vocab_size(tok));
    fixed_detok f = {.say = "7", .eos = -1, .max_new = 4};
    aflo_train_config tc = config(1);
    tc.gen_eval = (aflo_gen_eval){
        .rule = ANSWER_GSM8K, .max_new_tokens = 4, .eos_id = -1, .detok = fixed, .detok_ctx = &f};
    static const struct {
        int what;
        const char *msg;
    } cases[] = {
        {0, "answer_rule: the evaluation data has no row with a completion to judge"},
        {1, "answer_rule: generations need a detokenizer"},
        {2, "eval_max_new_tokens: must be in [1, 4096], got 0"},
        {3, "eval_max_new_tokens: must be in [1, 4096], got 4097"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        aflo_train_config c = tc;
        const aflo_dataset *ev = &eval;
        if (cases[k].what == 0) ev = &text_only;
        if (cases[k].what == 1) c.gen_eval.detok = NULL;
        if (cases[k].what == 2) c.gen_eval.max_new_tokens = 0;
        if (cases[k].what == 3) c.gen_eval.max_new_tokens = LMEVAL_MAX_NEW_TOKENS + 1;
        err[0] = '\0';
        assert_null(trainer_create(m, &c, &train, ev, err, sizeof err));
        if (!strstr(err, cases[k].msg)) fail_msg("case %zu: \"%s\"", k, err);
    }
    /* without evaluation data the rule has nothing to do: accepted */
    aflo_trainer *t = trainer_create(m, &tc, &train, NULL, err, sizeof err);
    if (!t) fail_msg("%s", err);
    trainer_free(t);
    model_free(m);
    dataset_free(&train);
    dataset_free(&eval);
    dataset_free(&text_only);
    tokenizer_free(tok);
}

int main(void) {
    engine_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_match_counted_by_hand),
        cmocka_unit_test(test_rule_per_row_and_no_flops),
        cmocka_unit_test(test_best_epoch_by_exact_match),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
