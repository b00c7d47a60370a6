/* test_family.c — the model-family seam: the registry's lookups and
 * messages, what a model takes from its family (module table, checkpoint
 * names, the variant's config fields), and the refusal of model types no
 * family reads — by the loader with the list of what is supported. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/bert.h"
#include "model/llama.h"
#include "model/config.h"
#include "model/family.h"
#include "model/deberta.h"
#include "io/hfmodel.h"
#include "model/model.h"
#include "testutil.h"

#define SUPPORTED                                                                         \
    "(supported: BertForSequenceClassification (bert), RobertaForSequenceClassification " \
    "(roberta), XLMRobertaForSequenceClassification (xlm-roberta), "                      \
    "CamembertForSequenceClassification (camembert), DebertaV2ForSequenceClassification " \
    "(deberta-v2), LlamaForCausalLM (llama), MistralForCausalLM (mistral), "              \
    "Qwen2ForCausalLM (qwen2))"

static char errbuf[1024];

static void test_lookups(void **state) {
    (void)state;
    assert_ptr_equal(family_by_name("bert"), &bert_family);
    assert_ptr_equal(family_by_name("llama"), &llama_family);
    assert_ptr_equal(family_by_name("deberta"), &deberta_family);
    assert_null(family_by_name("electra"));
    assert_int_equal(family_count(), 3);
    assert_ptr_equal(family_at(0), &bert_family);
    assert_ptr_equal(family_at(1), &deberta_family);
    assert_ptr_equal(family_at(2), &llama_family);
    assert_null(family_at(3));

    const aflo_family_variant *v = NULL;
    assert_ptr_equal(family_for_model_type("camembert", &v), &bert_family);
    assert_string_equal(v->architecture, "CamembertForSequenceClassification");
    assert_string_equal(v->hf_prefix, "roberta.");
    assert_true(v->flags & BERT_ROBERTA_POSITIONS);
    assert_null(family_for_model_type("electra", NULL));
    assert_ptr_equal(family_for_model_type("qwen2", &v), &llama_family);
    assert_string_equal(v->architecture, "Qwen2ForCausalLM");
    assert_true(v->flags & LLAMA_QKV_BIAS);
    assert_ptr_equal(family_for_config(NULL, "MistralForCausalLM", &v, NULL, 0), &llama_family);
    assert_string_equal(v->model_type, "mistral");

    /* model_type decides; architectures only when it is absent */
    assert_ptr_equal(family_for_config("bert", "RobertaForMaskedLM", &v, errbuf, sizeof errbuf),
                     &bert_family);
    assert_string_equal(v->model_type, "bert");
    assert_ptr_equal(family_for_config(NULL, "RobertaForMaskedLM", &v, errbuf, sizeof errbuf),
                     &bert_family);
    assert_string_equal(v->model_type, "roberta");
    assert_ptr_equal(family_for_config(NULL, "BertModel", &v, NULL, 0), &bert_family);
    assert_string_equal(v->model_type, "bert");
    /* a class prefix is not enough: BertGeneration is another model */
    assert_null(family_for_config(NULL, "BertGenerationEncoder", NULL, NULL, 0));
}

static void test_unsupported_messages(void **state) {
    (void)state;
    assert_null(family_for_config("electra", "ElectraForPreTraining", NULL, errbuf, sizeof errbuf));
    assert_string_equal(errbuf, "unsupported architecture ElectraForPreTraining, model_type "
                                "\"electra\" " SUPPORTED);
    assert_null(family_for_config("electra", NULL, NULL, errbuf, sizeof errbuf));
    assert_string_equal(errbuf, "unsupported architecture model_type \"electra\" " SUPPORTED);
    assert_null(family_for_config(NULL, "GPT2LMHeadModel", NULL, errbuf, sizeof errbuf));
    assert_string_equal(errbuf, "unsupported architecture GPT2LMHeadModel " SUPPORTED);

    /* a model cannot be made of a type no family reads */
    aflo_config c;
    tiny_config(&c, false);
    strcpy(c.model_type, "electra");
    aflo_adapter_config ac = {.method = METHOD_LORA, .rank = 2, .alpha = 2, .targets = ALL_MODULES};
    assert_null(model_create(&c, &ac, TASK_CLASSIFICATION, 2, 1, errbuf, sizeof errbuf));
    assert_non_null(strstr(errbuf, "unsupported architecture model_type \"electra\""));
}

/* A folder whose config.json no family reads: the loader says so, naming
 * the architecture and what is supported, before it looks for weights. */
static void test_loader_refuses_unsupported_folder(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "config.json");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"architectures\": [\"ElectraForPreTraining\"], \"model_type\": \"electra\", "
          "\"vocab_size\": 30, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
          "\"num_attention_heads\": 2, \"intermediate_size\": 12}",
          f);
    assert_int_equal(fclose(f), 0);
    const char *dir = *state;
    aflo_config c;
    assert_int_equal(hfmodel_read_config(dir, &c, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "unsupported architecture ElectraForPreTraining"));
    assert_non_null(strstr(errbuf, "BertForSequenceClassification (bert)"));
    aflo_adapter_config ac = {.method = METHOD_AFLORA, .rank = 2, .targets = ALL_MODULES};
    assert_null(hfmodel_load(dir, &ac, TASK_CLASSIFICATION, 2, 1, NULL, errbuf, sizeof errbuf));
    assert_non_null(strstr(errbuf, "unsupported architecture ElectraForPreTraining"));
    hf_model_info info;
    assert_int_equal(hfmodel_info(dir, &info, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "unsupported architecture"));

    /* reading the config alone refuses it too, in the registry's words:
     * config_from_json asks family_for_config before reading any field, so
     * the probe, GET /models and the loader give one reason */
    static const char text[] = "{\"model_type\": \"electra\", \"vocab_size\": 30, "
                               "\"hidden_size\": 8, \"num_hidden_layers\": 1, "
                               "\"num_attention_heads\": 2, \"intermediate_size\": 12}";
    assert_int_equal(config_from_json(&c, text, strlen(text), errbuf, sizeof errbuf), -1);
    assert_string_equal(errbuf,
                        "config.json: unsupported architecture model_type \"electra\" " SUPPORTED);
}

/* Without model_type, config.json's architectures name the type. */
static void test_config_type_from_architectures(void **state) {
    (void)state;
    static const char text[] = "{\"architectures\": [\"RobertaForMaskedLM\"], \"vocab_size\": 30, "
                               "\"hidden_size\": 8, \"num_hidden_layers\": 1, "
                               "\"num_attention_heads\": 2, \"intermediate_size\": 12, "
                               "\"pad_token_id\": 1}";
    aflo_config c;
    assert_int_equal(config_from_json(&c, text, strlen(text), errbuf, sizeof errbuf), 0);
    assert_string_equal(c.model_type, "roberta");
    assert_int_equal(c.roberta_positions, 1);
}

/* The union of target names a spec accepts is BERT's six, DeBERTa's three
 * of its own (its other three are BERT's), then LLaMA's seven (job specs
 * offer causal_lm), in registry order. */
static void test_target_names(void **state) {
    (void)state;
    const char *names[FAMILY_MAX_MODULES];
    static const char *const want[] = {"query",
                                       "key",
                                       "value",
                                       "attention.output.dense",
                                       "intermediate.dense",
                                       "output.dense",
                                       "query_proj",
                                       "key_proj",
                                       "value_proj",
                                       "q_proj",
                                       "k_proj",
                                       "v_proj",
                                       "o_proj",
                                       "gate_proj",
                                       "up_proj",
                                       "down_proj"};
    assert_int_equal(family_target_names(names), 16);
    for (int i = 0; i < 16; i++) assert_string_equal(names[i], want[i]);
    assert_int_equal(family_module_index(&deberta_family, "output.dense"), DEBERTA_OUTPUT);
    assert_int_equal(family_module_index(&deberta_family, "query"), -1);
    assert_int_equal(family_module_index(&bert_family, "output.dense"), BERT_OUTPUT);
    assert_int_equal(family_module_index(&bert_family, "q_proj"), -1);
    assert_int_equal(family_all_modules(&bert_family), 0x3F);
    assert_int_equal(family_module_index(&llama_family, "q_proj"), LLAMA_Q);
    assert_int_equal(family_all_modules(&llama_family), 0x7F);
}

/* Every adapted tensor names its module; the module's path is in its name
 * under the family's block prefix, and the table's FFN flags are BERT's. */
static void test_module_table_of_a_model(void **state) {
    (void)state;
    aflo_config c;
    tiny_config(&c, false);
    aflo_adapter_config ac = {
        .method = METHOD_AFLORA, .rank = 2, .targets = ALL_MODULES, .projections = PROJ_FFN};
    aflo_model *m = model_create(&c, &ac, TASK_CLASSIFICATION, 2, 1, errbuf, sizeof errbuf);
    assert_non_null(m);
    assert_ptr_equal(model_family(m), &bert_family);
    assert_int_equal(model_adapter_config(m)->targets, 0x3F); /* ALL_MODULES, masked */
    assert_int_equal(model_module_count(m), BERT_MODULE_COUNT);
    assert_true(model_module(m, BERT_INTERMEDIATE)->ffn && model_module(m, BERT_OUTPUT)->ffn);
    assert_false(model_module(m, BERT_QUERY)->ffn || model_module(m, BERT_ATTN_OUT)->ffn);
    int adapted = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        const aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_ADAPTER) continue;
        char want[96];
        snprintf(want, sizeof want, "%s%d.%s.", bert_family.block_prefix, p->layer,
                 model_module(m, p->module)->path);
        assert_true(strncmp(p->name, want, strlen(want)) == 0);
        adapted++;
    }
    assert_int_equal(adapted, 2 * 6 * 4); /* layers x modules x (A, B, s_d, s_b) */
    model_free(m);
}

static void expect_hf_name(aflo_model *m, const char *engine, const char *hf) {
    char buf[128];
    aflo_param *p = model_find_param(m, engine);
    assert_non_null(p);
    assert_int_equal(model_hf_name(m, p, buf, sizeof buf), 0);
    assert_string_equal(buf, hf);
}

/* Checkpoint names: the task class's attribute for the encoder, the head as
 * each model type's task class names it. */
static void test_checkpoint_names(void **state) {
    (void)state;
    aflo_config c;
    aflo_adapter_config ac = {.method = METHOD_FULL};
    tiny_config(&c, false);
    aflo_model *m = model_create(&c, &ac, TASK_CLASSIFICATION, 2, 1, errbuf, sizeof errbuf);
    assert_non_null(m);
    expect_hf_name(m, "encoder.layer.1.attention.self.key.weight",
                   "bert.encoder.layer.1.attention.self.key.weight");
    expect_hf_name(m, "pooler.dense.bias", "bert.pooler.dense.bias");
    expect_hf_name(m, "classifier.weight", "classifier.weight");
    assert_ptr_equal(model_find_param(m, "bert.embeddings.LayerNorm.weight"),
                     model_find_param(m, "embeddings.LayerNorm.weight"));
    char small[8];
    assert_int_equal(model_hf_name(m, model_param(m, 0), small, sizeof small), -1);
    model_free(m);

    tiny_config(&c, true);
    m = model_create(&c, &ac, TASK_REGRESSION, 1, 1, errbuf, sizeof errbuf);
    assert_non_null(m);
    expect_hf_name(m, "embeddings.word_embeddings.weight",
                   "roberta.embeddings.word_embeddings.weight");
    expect_hf_name(m, "pooler.dense.weight", "classifier.dense.weight");
    expect_hf_name(m, "classifier.bias", "classifier.out_proj.bias");
    model_free(m);
}

/* What predict asks a family without a model: the head's output layer and
 * its checkpoint name under each variant, and the longest sequence a
 * config's positions reach (RoBERTa's start after pad_token_id). */
static void test_head_output_and_max_tokens(void **state) {
    (void)state;
    assert_string_equal(family_head_output(&bert_family), "classifier");
    const aflo_family_variant *bert = NULL, *roberta = NULL;
    family_for_model_type("bert", &bert);
    family_for_model_type("xlm-roberta", &roberta);
    char buf[64];
    assert_int_equal(family_hf_name(bert, "classifier.weight", true, buf, sizeof buf), 0);
    assert_string_equal(buf, "classifier.weight");
    assert_int_equal(family_hf_name(roberta, "classifier.weight", true, buf, sizeof buf), 0);
    assert_string_equal(buf, "classifier.out_proj.weight");
    assert_int_equal(family_hf_name(roberta, "pooler.dense.bias", true, buf, sizeof buf), 0);
    assert_string_equal(buf, "classifier.dense.bias");
    /* not a head tensor: the prefix, whatever its name */
    assert_int_equal(family_hf_name(roberta, "classifier.weight", false, buf, sizeof buf), 0);
    assert_string_equal(buf, "roberta.classifier.weight");
    assert_int_equal(family_hf_name(roberta, "classifier.weight", true, buf, 8), -1);

    aflo_config c;
    tiny_config(&c, false);
    assert_int_equal(family_max_tokens(&c), c.max_position_embeddings);
    tiny_config(&c, true); /* pad 1: positions 2 .. 16 */
    assert_int_equal(family_max_tokens(&c), c.max_position_embeddings - 2);
    strcpy(c.model_type, "electra"); /* no family: the positions themselves */
    assert_int_equal(family_max_tokens(&c), c.max_position_embeddings);
}

/* The estimate is what a created model holds once reserved, without its
 * arenas: the same declarations and the same activation layout. */
static void test_memory_estimate(void **state) {
    (void)state;
    aflo_config c;
    tiny_config(&c, true);
    static const aflo_adapter_config acs[] = {
        {.method = METHOD_AFLORA, .rank = 4, .targets = ALL_MODULES, .projections = PROJ_FFN},
        {.method = METHOD_ELORA, .rank = 40, .targets = 0x30, .projections = PROJ_NONE},
        {.method = METHOD_LORA, .rank = 2, .alpha = 4, .targets = 0x05},
        {.method = METHOD_FULL},
    };
    for (size_t i = 0; i < sizeof acs / sizeof *acs; i++) {
        aflo_memory est;
        assert_int_equal(model_estimate_memory(&c, &acs[i], TASK_CLASSIFICATION, 3, 5, 7, &est,
                                               errbuf, sizeof errbuf),
                         0);
        aflo_model *m = model_create(&c, &acs[i], TASK_CLASSIFICATION, 3, 1, errbuf, sizeof errbuf);
        assert_non_null(m);
        assert_int_equal(model_reserve(m, 5, 7, errbuf, sizeof errbuf), 0);
        aflo_memory got = model_memory(m);
        assert_int_equal(est.base, got.base);
        assert_int_equal(est.trainable, got.trainable);
        assert_int_equal(est.grads, got.grads);
        assert_int_equal(est.activations, got.activations);
        assert_true(est.activations > 0 && est.base > 0);
        model_free(m);
    }
    aflo_memory est;
    strcpy(c.model_type, "electra");
    assert_int_equal(model_estimate_memory(&c, &acs[0], TASK_CLASSIFICATION, 3, 5, 7, &est, errbuf,
                                           sizeof errbuf),
                     -1);
    assert_non_null(strstr(errbuf, "unsupported architecture"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_unsupported_messages),
        cmocka_unit_test_setup_teardown(test_loader_refuses_unsupported_folder, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test(test_config_type_from_architectures),
        cmocka_unit_test(test_target_names),
        cmocka_unit_test(test_module_table_of_a_model),
        cmocka_unit_test(test_checkpoint_names),
        cmocka_unit_test(test_head_output_and_max_tokens),
        cmocka_unit_test(test_memory_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
