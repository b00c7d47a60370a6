/* test_config.c — config.json reading, validation and write/read round trip.
 * The BERT and RoBERTa texts are the config.json files published with
 * bert-base-uncased and roberta-base on the Hugging Face hub; the expected
 * numbers are read off those files by eye. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "base/json.h"

static const char BERT_BASE_UNCASED[] = "{\n"
                                        "  \"architectures\": [\n"
                                        "    \"BertForMaskedLM\"\n"
                                        "  ],\n"
                                        "  \"attention_probs_dropout_prob\": 0.1,\n"
                                        "  \"gradient_checkpointing\": false,\n"
                                        "  \"hidden_act\": \"gelu\",\n"
                                        "  \"hidden_dropout_prob\": 0.1,\n"
                                        "  \"hidden_size\": 768,\n"
                                        "  \"initializer_range\": 0.02,\n"
                                        "  \"intermediate_size\": 3072,\n"
                                        "  \"layer_norm_eps\": 1e-12,\n"
                                        "  \"max_position_embeddings\": 512,\n"
                                        "  \"model_type\": \"bert\",\n"
                                        "  \"num_attention_heads\": 12,\n"
                                        "  \"num_hidden_layers\": 12,\n"
                                        "  \"pad_token_id\": 0,\n"
                                        "  \"position_embedding_type\": \"absolute\",\n"
                                        "  \"transformers_version\": \"4.6.0.dev0\",\n"
                                        "  \"type_vocab_size\": 2,\n"
                                        "  \"use_cache\": true,\n"
                                        "  \"vocab_size\": 30522\n"
                                        "}\n";

static const char ROBERTA_BASE[] = "{\n"
                                   "  \"architectures\": [\n"
                                   "    \"RobertaForMaskedLM\"\n"
                                   "  ],\n"
                                   "  \"attention_probs_dropout_prob\": 0.1,\n"
                                   "  \"bos_token_id\": 0,\n"
                                   "  \"eos_token_id\": 2,\n"
                                   "  \"hidden_act\": \"gelu\",\n"
                                   "  \"hidden_dropout_prob\": 0.1,\n"
                                   "  \"hidden_size\": 768,\n"
                                   "  \"initializer_range\": 0.02,\n"
                                   "  \"intermediate_size\": 3072,\n"
                                   "  \"layer_norm_eps\": 1e-05,\n"
                                   "  \"max_position_embeddings\": 514,\n"
                                   "  \"model_type\": \"roberta\",\n"
                                   "  \"num_attention_heads\": 12,\n"
                                   "  \"num_hidden_layers\": 12,\n"
                                   "  \"pad_token_id\": 1,\n"
                                   "  \"type_vocab_size\": 1,\n"
                                   "  \"vocab_size\": 50265\n"
                                   "}\n";

/* Only the five required keys: everything else takes BertConfig defaults. */
static const char MINIMAL[] = "{\"vocab_size\": 100, \"hidden_size\": 16, \"num_hidden_layers\": 2,"
                              " \"num_attention_heads\": 4, \"intermediate_size\": 32}";

static char errbuf[512];

static int from_text(aflo_config *c, const char *text) {
    errbuf[0] = '\0';
    return config_from_json(c, text, strlen(text), errbuf, sizeof errbuf);
}

static void expect_error(const char *text, const char *want) {
    aflo_config c;
    memset(&c, 0x5A, sizeof c);
    aflo_config before = c;
    if (from_text(&c, text) == 0) fail_msg("config accepted: %s", text);
    if (!strstr(errbuf, want)) fail_msg("error <%s> lacks <%s>", errbuf, want);
    /* a failed read leaves the caller's struct alone */
    assert_memory_equal(&c, &before, sizeof c);
}

/* Replace the first occurrence of from by to in MINIMAL-like text. */
static char *replaced(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    assert_non_null(at);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

static void assert_config_equal(const aflo_config *a, const aflo_config *b) {
    assert_string_equal(a->model_type, b->model_type);
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->hidden_size, b->hidden_size);
    assert_int_equal(a->num_hidden_layers, b->num_hidden_layers);
    assert_int_equal(a->num_attention_heads, b->num_attention_heads);
    assert_int_equal(a->intermediate_size, b->intermediate_size);
    assert_int_equal(a->max_position_embeddings, b->max_position_embeddings);
    assert_int_equal(a->type_vocab_size, b->type_vocab_size);
    assert_int_equal(a->pad_token_id, b->pad_token_id);
    assert_int_equal(a->roberta_positions, b->roberta_positions);
    /* bitwise: the round trip must be exact, not merely close */
    assert_memory_equal(&a->layer_norm_eps, &b->layer_norm_eps, sizeof(float));
    assert_memory_equal(&a->hidden_dropout_prob, &b->hidden_dropout_prob, sizeof(float));
    assert_memory_equal(&a->attention_probs_dropout_prob, &b->attention_probs_dropout_prob,
                        sizeof(float));
}

static void test_bert_base(void **state) {
    (void)state;
    aflo_config c;
    if (from_text(&c, BERT_BASE_UNCASED)) fail_msg("%s", errbuf);
    assert_string_equal(c.model_type, "bert");
    assert_int_equal(c.vocab_size, 30522);
    assert_int_equal(c.hidden_size, 768);
    assert_int_equal(c.num_hidden_layers, 12);
    assert_int_equal(c.num_attention_heads, 12);
    assert_int_equal(c.intermediate_size, 3072);
    assert_int_equal(c.max_position_embeddings, 512);
    assert_int_equal(c.type_vocab_size, 2);
    assert_int_equal(c.pad_token_id, 0);
    assert_int_equal(c.roberta_positions, 0);
    assert_true(c.layer_norm_eps == 1e-12f);
    assert_true(c.hidden_dropout_prob == 0.1f);
    assert_true(c.attention_probs_dropout_prob == 0.1f);
    assert_int_equal(config_validate(&c, errbuf, sizeof errbuf), 0);
}

static void test_roberta_base(void **state) {
    (void)state;
    aflo_config c;
    if (from_text(&c, ROBERTA_BASE)) fail_msg("%s", errbuf);
    assert_string_equal(c.model_type, "roberta");
    assert_int_equal(c.vocab_size, 50265);
    assert_int_equal(c.max_position_embeddings, 514);
    assert_int_equal(c.type_vocab_size, 1);
    assert_int_equal(c.pad_token_id, 1);
    assert_int_equal(c.roberta_positions, 1);
    assert_true(c.layer_norm_eps == 1e-5f);

    char *t = replaced(ROBERTA_BASE, "\"roberta\"", "\"xlm-roberta\"");
    assert_int_equal(from_text(&c, t), 0);
    assert_int_equal(c.roberta_positions, 1);
    free(t);
    t = replaced(ROBERTA_BASE, "\"roberta\"", "\"camembert\"");
    assert_int_equal(from_text(&c, t), 0);
    assert_int_equal(c.roberta_positions, 1);
    free(t);
}

/* Configs of other families are refused by what they are, in the family
 * registry's words (family_for_config: the architecture and model_type,
 * then what is supported), before any of their fields is read as a BERT's. */
static const char DEBERTA_V3_BASE[] =
    "{\"model_type\": \"deberta-v2\", \"attention_probs_dropout_prob\": 0.1, \"hidden_act\": "
    "\"gelu\","
    " \"hidden_dropout_prob\": 0.1, \"hidden_size\": 768, \"intermediate_size\": 3072,"
    " \"max_position_embeddings\": 512, \"num_attention_heads\": 12, \"num_hidden_layers\": 12,"
    " \"position_biased_input\": false, \"relative_attention\": true, \"type_vocab_size\": 0,"
    " \"vocab_size\": 128100}";
static const char LLAMA_2_7B[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_act\": \"silu\", \"hidden_size\": 4096,"
    " \"intermediate_size\": 11008, \"max_position_embeddings\": 4096, \"model_type\": \"llama\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"rms_norm_eps\": 1e-05,"
    " \"vocab_size\": 32000}";
static const char GPT2[] =
    "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"n_embd\": 768,"
    " \"n_head\": 12, \"n_layer\": 12, \"vocab_size\": 50257}";
#define SUPPORTED                                                                         \
    "(supported: BertForSequenceClassification (bert), RobertaForSequenceClassification " \
    "(roberta), XLMRobertaForSequenceClassification (xlm-roberta), "                      \
    "CamembertForSequenceClassification (camembert), DebertaV2ForSequenceClassification " \
    "(deberta-v2), LlamaForCausalLM (llama), MistralForCausalLM (mistral), "              \
    "Qwen2ForCausalLM (qwen2))"

/* The LLaMA family's configs: defaults, what each variant implies, RoPE
 * scaling, and the writer reading back to the same struct. */
static void test_llama_configs(void **state) {
    (void)state;
    aflo_config c, back;
    if (from_text(&c, LLAMA_2_7B)) fail_msg("%s", errbuf);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.num_key_value_heads, 32); /* absent: one KV head per query head */
    assert_int_equal(config_head_dim(&c), 128);
    assert_float_equal(c.rms_norm_eps, 1e-5f, 0);
    assert_float_equal(c.rope_theta, 10000.0f, 0);
    assert_int_equal(c.rope_scaling, ROPE_SCALING_NONE);
    assert_false(c.tie_word_embeddings);
    assert_false(c.qkv_bias);
    assert_int_equal(c.sliding_window, 0);

    /* Llama 3.1: GQA, llama3 RoPE scaling, null pad id */
    char *t =
        replaced(LLAMA_2_7B, "\"vocab_size\": 32000",
                 "\"vocab_size\": 128256, \"num_key_value_heads\": 8, \"rope_theta\": 500000.0,"
                 " \"pad_token_id\": null, \"rope_scaling\": {\"factor\": 8.0, "
                 "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                 "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}");
    if (from_text(&c, t)) fail_msg("%s", errbuf);
    assert_int_equal(c.num_key_value_heads, 8);
    assert_int_equal(c.rope_scaling, ROPE_SCALING_LLAMA3);
    assert_float_equal(c.rope_factor, 8.0f, 0);
    assert_int_equal(c.rope_original_max_position_embeddings, 8192);
    char *json = config_to_json(&c);
    assert_non_null(json);
    if (from_text(&back, json)) fail_msg("%s in %s", errbuf, json);
    assert_memory_equal(&c, &back, sizeof c);
    free(json);
    free(t);
    /* linear scaling in the older key, and schemes that are not implemented */
    t = replaced(LLAMA_2_7B, "{", "{\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}, ");
    if (from_text(&c, t)) fail_msg("%s", errbuf);
    assert_int_equal(c.rope_scaling, ROPE_SCALING_LINEAR);
    free(t);
    t = replaced(LLAMA_2_7B, "{", "{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2}, ");
    expect_error(t, "rope_scaling type \"yarn\" is not supported");
    free(t);
    t = replaced(LLAMA_2_7B, "\"silu\"", "\"gelu\"");
    expect_error(t, "hidden_act \"gelu\" is not supported (only \"silu\")");
    free(t);
    t = replaced(LLAMA_2_7B, "{", "{\"num_key_value_heads\": 5, ");
    expect_error(t, "num_key_value_heads 5 must divide num_attention_heads 32");
    free(t);

    /* Mistral windows its attention; Qwen2 biases q/k/v and ignores its
     * window unless use_sliding_window (refused) */
    t = replaced(LLAMA_2_7B, "\"llama\"",
                 "\"mistral\", \"sliding_window\": 4096, \"tie_word_embeddings\": true");
    if (from_text(&c, t)) fail_msg("%s", errbuf);
    assert_int_equal(c.sliding_window, 4096);
    assert_true(c.tie_word_embeddings);
    json = config_to_json(&c);
    assert_non_null(json);
    if (from_text(&back, json)) fail_msg("%s in %s", errbuf, json);
    assert_memory_equal(&c, &back, sizeof c);
    free(json);
    free(t);
    t = replaced(LLAMA_2_7B, "\"llama\"",
                 "\"qwen2\", \"sliding_window\": 4096, \"use_sliding_window\": false");
    if (from_text(&c, t)) fail_msg("%s", errbuf);
    assert_int_equal(c.sliding_window, 0);
    assert_true(c.qkv_bias);
    free(t);
    t = replaced(LLAMA_2_7B, "\"llama\"", "\"qwen2\", \"use_sliding_window\": true");
    expect_error(t, "use_sliding_window true is not supported");
    free(t);
    t = replaced(LLAMA_2_7B, "{", "{\"tie_word_embeddings\": 1, ");
    expect_error(t, "tie_word_embeddings must be a boolean, got number");
    free(t);
}

static void test_unsupported_architectures(void **state) {
    (void)state;
    /* DeBERTa-v3 reads (deberta.c; test_deberta.c checks its keys) */
    aflo_config c;
    if (from_text(&c, DEBERTA_V3_BASE)) fail_msg("%s", errbuf);
    assert_int_equal(c.type_vocab_size, 0);
    assert_true(c.layer_norm_eps == 1e-7f); /* DebertaV2Config's default */
    expect_error(
        GPT2,
        "config.json: unsupported architecture GPT2LMHeadModel, model_type \"gpt2\" " SUPPORTED);
    char *t = replaced(ROBERTA_BASE, "\"roberta\"", "\"electra\"");
    expect_error(t,
                 "unsupported architecture RobertaForMaskedLM, model_type \"electra\" " SUPPORTED);
    free(t);
    /* no model_type (BERT's default) but a GPT-2 class */
    t = replaced(MINIMAL, "{", "{\"architectures\": [\"GPT2LMHeadModel\"], ");
    expect_error(t, "unsupported architecture GPT2LMHeadModel " SUPPORTED);
    free(t);
    t = replaced(MINIMAL, "{", "{\"architectures\": [7], ");
    expect_error(t, "architectures must be an array of strings");
    free(t);
    /* any class of the family is fine */
    t = replaced(MINIMAL, "{", "{\"architectures\": [\"BertModel\", \"BertForPreTraining\"], ");
    if (from_text(&c, t)) fail_msg("%s", errbuf);
    assert_string_equal(c.model_type, "bert");
    free(t);
}

static void test_defaults(void **state) {
    (void)state;
    aflo_config c;
    if (from_text(&c, MINIMAL)) fail_msg("%s", errbuf);
    assert_string_equal(c.model_type, "bert");
    assert_int_equal(c.vocab_size, 100);
    assert_int_equal(c.hidden_size, 16);
    assert_int_equal(c.max_position_embeddings, 512);
    assert_int_equal(c.type_vocab_size, 2);
    assert_int_equal(c.pad_token_id, 0);
    assert_int_equal(c.roberta_positions, 0);
    assert_true(c.layer_norm_eps == 1e-12f);
    assert_true(c.hidden_dropout_prob == 0.1f);
    assert_true(c.attention_probs_dropout_prob == 0.1f);

    /* float fields accept integer literals */
    char *t = replaced(MINIMAL, "{", "{\"hidden_dropout_prob\": 0, ");
    assert_int_equal(from_text(&c, t), 0);
    assert_true(c.hidden_dropout_prob == 0.0f);
    free(t);
}

static void test_missing_required(void **state) {
    (void)state;
    const char *required[] = {"vocab_size", "hidden_size", "num_hidden_layers",
                              "num_attention_heads", "intermediate_size"};
    for (size_t i = 0; i < 5; i++) {
        char from[64], to[64], want[96];
        snprintf(from, sizeof from, "\"%s\"", required[i]);
        snprintf(to, sizeof to, "\"x_%s\"", required[i]); /* rename the key away */
        char *t = replaced(MINIMAL, from, to);
        snprintf(want, sizeof want, "missing required field %s", required[i]);
        expect_error(t, want);
        free(t);
    }
}

static void test_wrong_types(void **state) {
    (void)state;
    struct {
        const char *from, *to, *want;
    } cases[] = {
        {"\"hidden_size\": 16", "\"hidden_size\": \"16\"",
         "hidden_size must be an integer, got string"},
        {"\"hidden_size\": 16", "\"hidden_size\": 16.0",
         "hidden_size must be an integer, got a non-integer number"},
        {"\"hidden_size\": 16", "\"hidden_size\": 1.6e1", "hidden_size must be an integer"},
        {"\"vocab_size\": 100", "\"vocab_size\": null", "vocab_size must be an integer, got null"},
        {"\"vocab_size\": 100", "\"vocab_size\": 3000000000",
         "vocab_size = 3000000000 is out of range"},
        {"{", "{\"pad_token_id\": true, ", "pad_token_id must be an integer, got boolean"},
        {"{", "{\"layer_norm_eps\": \"1e-12\", ", "layer_norm_eps must be a number, got string"},
        {"{", "{\"hidden_dropout_prob\": [0.1], ",
         "hidden_dropout_prob must be a number, got array"},
        {"{", "{\"layer_norm_eps\": 1e300, ", "layer_norm_eps = 1e+300 does not fit a float"},
        {"{", "{\"model_type\": 3, ", "model_type must be a string, got number"},
        {"{", "{\"model_type\": \"a-model-type-name-far-too-long-for-it\", ",
         "model_type is longer than 31"},
        {"{", "{\"model_type\": \"be\\u0000rt\", ", "model_type contains a NUL"},
        {"{", "{\"hidden_act\": null, ", "hidden_act must be a string, got null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = replaced(MINIMAL, cases[i].from, cases[i].to);
        expect_error(t, cases[i].want);
        free(t);
    }
}

static void test_hidden_act_and_positions(void **state) {
    (void)state;
    char *t = replaced(BERT_BASE_UNCASED, "\"gelu\"", "\"gelu_new\"");
    expect_error(t, "hidden_act \"gelu_new\" is not supported");
    free(t);
    t = replaced(BERT_BASE_UNCASED, "\"gelu\"", "\"relu\"");
    expect_error(t, "hidden_act \"relu\"");
    free(t);
    t = replaced(BERT_BASE_UNCASED, "\"absolute\"", "\"relative_key\"");
    expect_error(t, "position_embedding_type \"relative_key\" is not supported");
    free(t);
}

static void test_bad_json(void **state) {
    (void)state;
    expect_error("{\"vocab_size\": 100,", "config.json: line 1, column 20");
    expect_error("[1, 2]", "top level must be an object, got array");
    expect_error("", "config.json: line 1, column 1");
    char *t = replaced(MINIMAL, "{", "{\"vocab_size\": 7, ");
    expect_error(t, "duplicate key \"vocab_size\"");
    free(t);
}

static void test_validate(void **state) {
    (void)state;
    aflo_config good;
    assert_int_equal(from_text(&good, MINIMAL), 0);
    struct {
        const char *from, *to, *want;
    } cases[] = {
        {"\"hidden_size\": 16", "\"hidden_size\": 18",
         "hidden_size 18 is not divisible by num_attention_heads 4"},
        {"\"hidden_size\": 16", "\"hidden_size\": 0", "hidden_size must be positive"},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": -1",
         "num_hidden_layers must be positive"},
        {"{", "{\"type_vocab_size\": 0, ", "type_vocab_size must be positive"},
        {"{", "{\"pad_token_id\": 100, ", "pad_token_id 100 must be in [0, vocab_size 100)"},
        {"{", "{\"pad_token_id\": -1, ", "pad_token_id -1"},
        {"{", "{\"hidden_dropout_prob\": 1, ", "hidden_dropout_prob must be in [0, 1)"},
        {"{", "{\"attention_probs_dropout_prob\": -0.1, ",
         "attention_probs_dropout_prob must be in [0, 1)"},
        {"{", "{\"layer_norm_eps\": 0, ", "layer_norm_eps must be positive"},
        {"{", "{\"model_type\": \"roberta\", \"pad_token_id\": 1, \"max_position_embeddings\": 2, ",
         "max_position_embeddings 2 must exceed pad_token_id + 1 = 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = replaced(MINIMAL, cases[i].from, cases[i].to);
        expect_error(t, cases[i].want);
        free(t);
    }
    /* the RoBERTa bound is one past: 3 positions with pad 1 is the smallest legal */
    char *t = replaced(
        MINIMAL, "{",
        "{\"model_type\": \"roberta\", \"pad_token_id\": 1, \"max_position_embeddings\": 3, ");
    assert_int_equal(from_text(&good, t), 0);
    free(t);

    /* config_validate on hand-built structs */
    aflo_config c = good;
    assert_int_equal(config_validate(&c, errbuf, sizeof errbuf), 0);
    c.model_type[0] = '\0';
    assert_int_equal(config_validate(&c, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "model_type"));
    c = good;
    memset(c.model_type, 'x', sizeof c.model_type); /* not terminated */
    assert_int_equal(config_validate(&c, errbuf, sizeof errbuf), -1);
    c = good;
    c.hidden_dropout_prob = NAN;
    assert_int_equal(config_validate(&c, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "hidden_dropout_prob"));
}

static void round_trip(const char *text) {
    aflo_config a, b;
    if (from_text(&a, text)) fail_msg("%s", errbuf);
    char *out = config_to_json(&a);
    assert_non_null(out);
    if (from_text(&b, out)) fail_msg("re-read failed: %s\n%s", errbuf, out);
    assert_config_equal(&a, &b);
    free(out);
}

static void test_round_trip(void **state) {
    (void)state;
    round_trip(BERT_BASE_UNCASED);
    round_trip(ROBERTA_BASE);
    round_trip(MINIMAL);
    /* floats whose shortest decimal form needs many digits */
    char *t = replaced(MINIMAL, "{",
                       "{\"layer_norm_eps\": 1.2345678e-7, \"hidden_dropout_prob\": 0.333333333,"
                       " \"attention_probs_dropout_prob\": 0.0, ");
    round_trip(t);
    free(t);
    /* a model_type needing escapes is written as valid JSON (and then
     * refused on reading: not a type the engine knows) */
    aflo_config q;
    assert_int_equal(from_text(&q, MINIMAL), 0);
    strcpy(q.model_type, "my\"model");
    char *qs = config_to_json(&q);
    assert_non_null(qs);
    json_value *qv = json_parse(qs, strlen(qs), 0, errbuf, sizeof errbuf);
    assert_non_null(qv);
    assert_string_equal(json_string(json_get(qv, "model_type"), NULL), "my\"model");
    json_free(qv);
    expect_error(qs, "unsupported architecture model_type \"my\"model\" (supported: ");
    free(qs);

    /* the written file is what transformers expects for BERT */
    aflo_config c;
    assert_int_equal(from_text(&c, BERT_BASE_UNCASED), 0);
    char *out = config_to_json(&c);
    assert_non_null(out);
    json_value *v = json_parse(out, strlen(out), 0, errbuf, sizeof errbuf);
    assert_non_null(v);
    const json_value *arch = json_get(v, "architectures");
    assert_int_equal(json_len(arch), 1);
    assert_string_equal(json_string(json_at(arch, 0), NULL), "BertForSequenceClassification");
    assert_string_equal(json_string(json_get(v, "hidden_act"), NULL), "gelu");
    assert_string_equal(json_string(json_get(v, "model_type"), NULL), "bert");
    assert_int_equal(json_int(json_get(v, "vocab_size")), 30522);
    /* shortest form: "1e-12", not "9.99999996e-13" */
    assert_non_null(strstr(out, "\"layer_norm_eps\": 1e-12,"));
    assert_non_null(strstr(out, "\"hidden_dropout_prob\": 0.1,"));
    json_free(v);
    free(out);

    assert_int_equal(from_text(&c, ROBERTA_BASE), 0);
    out = config_to_json(&c);
    assert_non_null(out);
    assert_non_null(strstr(out, "\"RobertaForSequenceClassification\""));
    free(out);
}

/* Keys of a JSON object in document order, comma-joined. */
static void keys_of(const json_value *obj, char *out, size_t cap) {
    out[0] = '\0';
    for (size_t i = 0; i < json_len(obj); i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "",
                 json_key_at(obj, i, NULL));
}

static void test_task_head(void **state) {
    (void)state;
    aflo_config c;
    assert_int_equal(from_text(&c, BERT_BASE_UNCASED), 0);
    const char *const names[] = {"neg", "pos \"x\"", "caf\xC3\xA9"};
    config_task task = {.num_labels = 3, .labels = names};
    char *out = config_to_json_task(&c, &task);
    assert_non_null(out);
    json_value *v = json_parse(out, strlen(out), 0, errbuf, sizeof errbuf);
    if (!v) fail_msg("%s\n%s", errbuf, out);
    char keys[1024];
    keys_of(v, keys, sizeof keys); /* sorted, as transformers writes them */
    assert_string_equal(
        keys, "architectures,attention_probs_dropout_prob,hidden_act,hidden_dropout_prob,"
              "hidden_size,id2label,intermediate_size,label2id,layer_norm_eps,"
              "max_position_embeddings,model_type,num_attention_heads,num_hidden_layers,"
              "num_labels,pad_token_id,position_embedding_type,problem_type,type_vocab_size,"
              "vocab_size");
    const json_value *id2label = json_get(v, "id2label"), *label2id = json_get(v, "label2id");
    keys_of(id2label, keys, sizeof keys);
    assert_string_equal(keys, "0,1,2");
    assert_string_equal(json_string(json_get(id2label, "1"), NULL), "pos \"x\"");
    assert_string_equal(json_string(json_get(id2label, "2"), NULL), "caf\xC3\xA9");
    assert_int_equal(json_int(json_get(label2id, "pos \"x\"")), 1);
    assert_int_equal(json_int(json_get(label2id, "neg")), 0);
    assert_int_equal(json_int(json_get(v, "num_labels")), 3);
    assert_string_equal(json_string(json_get(v, "problem_type"), NULL),
                        "single_label_classification");
    json_free(v);
    /* still a config the engine reads back the same */
    aflo_config back;
    if (from_text(&back, out)) fail_msg("re-read failed: %s", errbuf);
    assert_config_equal(&c, &back);
    free(out);

    /* no names: the ids */
    task.labels = NULL;
    task.num_labels = 2;
    out = config_to_json_task(&c, &task);
    assert_non_null(out);
    v = json_parse(out, strlen(out), 0, errbuf, sizeof errbuf);
    assert_string_equal(json_string(json_get(json_get(v, "id2label"), "1"), NULL), "1");
    json_free(v);
    free(out);

    /* regression: one output, no label names */
    config_task reg = {.regression = true};
    out = config_to_json_task(&c, &reg);
    assert_non_null(out);
    v = json_parse(out, strlen(out), 0, errbuf, sizeof errbuf);
    assert_null(json_get(v, "id2label"));
    assert_null(json_get(v, "label2id"));
    assert_int_equal(json_int(json_get(v, "num_labels")), 1);
    assert_string_equal(json_string(json_get(v, "problem_type"), NULL), "regression");
    json_free(v);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_head),    cmocka_unit_test(test_bert_base),
        cmocka_unit_test(test_roberta_base), cmocka_unit_test(test_unsupported_architectures),
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_wrong_types),  cmocka_unit_test(test_hidden_act_and_positions),
        cmocka_unit_test(test_bad_json),     cmocka_unit_test(test_validate),
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_llama_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
