/* test_lmgen.c — daemon/lmgen.h: generated ids turned into text as they
 * come (pieces that join to the full decode, a character split over byte
 * tokens held back until complete), the prompt from text (BOS first), and
 * a run's pieces and report against generate() itself. The tokenizer is
 * the sp_bpe fixture (SentencePiece BPE with byte fallback: 日 is three
 * <0xNN> tokens). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/rng.h"
#include "lmgen.h"
#include "testutil.h"

#define TOKENIZER_DIR "tests/tokenizer_fixtures/sp_bpe"

static char err[1024];

static tokenizer *load_tok(void) {
    tokenizer *t = tokenizer_load_dir(TOKENIZER_DIR, err, sizeof err);
    if (!t) fail_msg("%s", err);
    return t;
}

/* Push ids one at a time: every piece is valid UTF-8 without U+FFFD, and
 * the pieces join to the decode of all the ids. */
static void check_pieces(const tokenizer *tok, const int32_t *ids, size_t n) {
    lmgen_text t;
    lmgen_text_init(&t, tok);
    char joined[1024] = "";
    const char *piece;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(lmgen_text_push(&t, ids[i], &piece, err, sizeof err), 0);
        assert_true(json_utf8_valid(piece, strlen(piece)));
        assert_null(strstr(piece, "\xef\xbf\xbd"));
        assert_true(strlen(joined) + strlen(piece) < sizeof joined);
        strcat(joined, piece);
    }
    assert_int_equal(lmgen_text_finish(&t, &piece, err, sizeof err), 0);
    strcat(joined, piece);
    char *full;
    size_t len;
    assert_int_equal(tokenizer_decode(tok, ids, n, 1, &full, &len, err, sizeof err), 0);
    assert_string_equal(joined, full);
    assert_string_equal(lmgen_text_sent(&t), full);
    free(full);
    lmgen_text_free(&t);
}

static void test_text_pieces_join_to_the_decode(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    static const char *const texts[] = {"hello world", "héllo 日本 € ok", "日", "a € b 本本"};
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        int32_t *ids;
        size_t n;
        assert_int_equal(
            tokenizer_tokenize(tok, texts[k], strlen(texts[k]), &ids, &n, err, sizeof err), 0);
        check_pieces(tok, ids, n);
        free(ids);
    }
    /* special tokens (BOS, EOS) add no text */
    int32_t ids[] = {tokenizer_bos_id(tok), 342, tokenizer_eos_id(tok)};
    check_pieces(tok, ids, 3);
    tokenizer_free(tok);
}

static void test_text_holds_back_a_split_character(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    /* "a €": ▁a, ▁, then € as <0xE2> <0x82> <0xAC> */
    int32_t *ids;
    size_t n;
    assert_int_equal(tokenizer_tokenize(tok, "a \xe2\x82\xac", 5, &ids, &n, err, sizeof err), 0);
    assert_true(n >= 3);
    const char *byte = tokenizer_id_to_token(tok, ids[n - 3]);
    assert_string_equal(byte, "<0xE2>");
    lmgen_text t;
    lmgen_text_init(&t, tok);
    const char *piece;
    for (size_t i = 0; i + 3 < n; i++)
        assert_int_equal(lmgen_text_push(&t, ids[i], &piece, err, sizeof err), 0);
    size_t before = strlen(lmgen_text_sent(&t));
    /* the bytes of € give nothing while the run of byte tokens may go on
     * (another byte could make all three read as U+FFFD) */
    for (size_t i = n - 3; i < n; i++) {
        assert_int_equal(lmgen_text_push(&t, ids[i], &piece, err, sizeof err), 0);
        assert_string_equal(piece, "");
    }
    /* the next token ends the run: the character and the token's text */
    assert_int_equal(lmgen_text_push(&t, ids[0], &piece, err, sizeof err), 0);
    assert_memory_equal(piece, "\xe2\x82\xac", 3);
    assert_true(strlen(lmgen_text_sent(&t)) > before + 3);
    lmgen_text_free(&t);

    /* cut short: finish hands out what the decoder makes of the lone bytes */
    lmgen_text_init(&t, tok);
    assert_int_equal(lmgen_text_push(&t, ids[n - 3], &piece, err, sizeof err), 0);
    assert_string_equal(piece, "");
    assert_int_equal(lmgen_text_finish(&t, &piece, err, sizeof err), 0);
    assert_string_equal(piece, "\xef\xbf\xbd");
    assert_string_equal(lmgen_text_sent(&t), "\xef\xbf\xbd");
    lmgen_text_free(&t);
    free(ids);
    tokenizer_free(tok);
}

static void test_prompt_text_puts_bos_first(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    int32_t *ids, *plain;
    int n;
    size_t np;
    assert_int_equal(lmgen_prompt_text(tok, "hello", 5, &ids, &n, err, sizeof err), 0);
    assert_int_equal(tokenizer_tokenize(tok, "hello", 5, &plain, &np, err, sizeof err), 0);
    assert_int_equal(tokenizer_adds_bos(tok), 1);
    assert_int_equal(n, (int)np + 1);
    assert_int_equal(ids[0], tokenizer_bos_id(tok));
    assert_memory_equal(ids + 1, plain, np * sizeof *plain);
    free(ids);
    free(plain);
    /* no template in the fixture: messages are refused by name */
    json_value *msgs =
        json_parse("[{\"role\": \"user\", \"content\": \"hi\"}]", 35, 8, err, sizeof err);
    assert_non_null(msgs);
    int32_t eot;
    assert_int_equal(lmgen_prompt_messages(tok, msgs, &ids, &n, &eot, err, sizeof err), -1);
    assert_non_null(strstr(err, "chat template"));
    assert_null(ids);
    json_free(msgs);
    tokenizer_free(tok);
}

/* A tiny LLaMA with random weights over the fixture's vocabulary. */
static aflo_model *random_llama(int vocab) {
    aflo_config c = {.model_type = "llama",
                     .vocab_size = vocab,
                     .hidden_size = 16,
                     .intermediate_size = 24,
                     .num_hidden_layers = 2,
                     .num_attention_heads = 4,
                     .num_key_value_heads = 2,
                     .max_position_embeddings = 64,
                     .type_vocab_size = 1,
                     .rms_norm_eps = 1e-5f,
                     .rope_theta = 10000.0f,
                     .layer_norm_eps = 1e-12f};
    aflo_adapter_config ac = {.method = METHOD_FULL};
    aflo_model *m = model_create(&c, &ac, TASK_CAUSAL_LM, vocab, 11, err, sizeof err);
    if (!m) fail_msg("%s", err);
    aflo_rng rng;
    rng_seed(&rng, 12);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t k = 0; k < p->size; k++) p->data[k] = rng_uniform_range(&rng, -0.4f, 0.4f);
    }
    return m;
}

/* A run's pieces, in order, and whether to stop. */
typedef struct {
    char text[2048];
    int32_t ids[64];
    int n, stop_at;
} piece_log;

static int log_piece(void *user, int32_t id, const char *piece, int index) {
    piece_log *l = user;
    assert_int_equal(index, l->n);
    if (id >= 0) l->ids[l->n++] = id;
    if (piece) strcat(l->text, piece);
    return l->stop_at > 0 && l->n >= l->stop_at;
}

static void test_run_reports_pieces_and_stops(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    aflo_model *m = random_llama(tokenizer_vocab_size(tok));
    int32_t prompt[] = {1, 342};
    gen_params p = gen_params_default();
    p.max_new_tokens = 20;
    p.temperature = 1.0f;
    p.seed = 9;
    gen_result want;
    assert_int_equal(generate(m, prompt, 2, &p, &want, err, sizeof err), 0);
    piece_log l = {0};
    lmgen_report rep;
    assert_int_equal(lmgen_run(m, tok, prompt, 2, &p, log_piece, &l, &rep, err, sizeof err), 0);
    assert_int_equal(rep.r.n, want.n);
    assert_memory_equal(rep.r.ids, want.ids, (size_t)want.n * sizeof *want.ids);
    assert_int_equal(l.n, want.n);
    assert_memory_equal(l.ids, want.ids, (size_t)want.n * sizeof *want.ids);
    char *full;
    size_t len;
    assert_int_equal(
        tokenizer_decode(tok, want.ids, (size_t)want.n, 1, &full, &len, err, sizeof err), 0);
    assert_string_equal(rep.text, full);
    assert_string_equal(l.text, full);
    free(full);
    cJSON *j = lmgen_report_json(&rep, false);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "finish_reason")->valuestring, "length");
    assert_int_equal(cJSON_GetObjectItem(j, "prompt_tokens")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(j, "completion_tokens")->valueint, want.n);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ids")), want.n);
    assert_null(cJSON_GetObjectItem(j, "prompt_ids"));
    cJSON_Delete(j);
    lmgen_report_free(&rep);
    /* the callback stops the run after 5 tokens */
    l = (piece_log){.stop_at = 5};
    assert_int_equal(lmgen_run(m, tok, prompt, 2, &p, log_piece, &l, &rep, err, sizeof err), 0);
    assert_int_equal(rep.r.n, 5);
    assert_int_equal(rep.r.finish, GEN_FINISH_STOPPED);
    assert_memory_equal(rep.r.ids, want.ids, 5 * sizeof *want.ids);
    lmgen_report_free(&rep);
    /* without a tokenizer: ids only, text null */
    l = (piece_log){0};
    assert_int_equal(lmgen_run(m, NULL, prompt, 2, &p, log_piece, &l, &rep, err, sizeof err), 0);
    assert_null(rep.text);
    assert_string_equal(l.text, "");
    j = lmgen_report_json(&rep, true);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "text")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "prompt_ids")), 2);
    cJSON_Delete(j);
    lmgen_report_free(&rep);
    gen_result_free(&want);
    model_free(m);
    tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_pieces_join_to_the_decode),
        cmocka_unit_test(test_text_holds_back_a_split_character),
        cmocka_unit_test(test_prompt_text_puts_bos_first),
        cmocka_unit_test(test_run_reports_pieces_and_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
