/* test_generate.c — incremental decoding (decode.h, llama_decode.c) and
 * generation (generate.h).
 *
 * The KV-cache decoder must give, at every position, the logits of the
 * training forward (model_forward) of the same prefix: checked one token at
 * a time, with a prefill of several tokens, and past DECODE_CHUNK, for each
 * variant (grouped-query LLaMA tied and untied, Mistral's sliding window
 * with its own head_dim and linear RoPE scaling, Qwen2's q/k/v biases) and
 * adapter method (AFLoRA, LoRA, ELoRA with random non-zero adapters, full).
 * The training forward itself is checked against float64 PyTorch in
 * test_llama.c. Then the token choice (greedy ties, temperature
 * frequencies against the softmax, the top-p cut) and generate(): greedy
 * equal to an arg-max loop over full forwards, seeded sampling repeatable,
 * EOS and length stops, the model's position limit, refused settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "model/config.h"
#include "model/decode.h"
#include "model/generate.h"
#include "model/model.h"
#include "testutil.h"

static char err[512];

enum { MAXPOS = 96 };

static void tiny_llama(aflo_config *c, const char *type) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "%s", type);
    c->vocab_size = 23;
    c->hidden_size = 16;
    c->intermediate_size = 24;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->max_position_embeddings = MAXPOS;
    c->type_vocab_size = 1;
    c->rms_norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->layer_norm_eps = 1e-12f;
}

/* A model whose every tensor is random (adapters too: B starts at zero). */
static aflo_model *make(const aflo_config *c, aflo_method method, uint64_t seed) {
    aflo_adapter_config ac = {.method = method,
                              .rank = method == METHOD_ELORA ? 40 : 3,
                              .alpha = 6.0f,
                              .targets = ALL_MODULES,
                              .projections = PROJ_ALL};
    aflo_model *m = model_create(c, &ac, TASK_CAUSAL_LM, c->vocab_size, seed, err, sizeof err);
    if (!m) fail_msg("%s", err);
    aflo_rng rng;
    rng_seed(&rng, seed + 1);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t k = 0; k < p->size; k++)
            p->data[k] = p->role == PROLE_NORM_WEIGHT ? rng_uniform_range(&rng, 0.5f, 1.5f)
                                                      : rng_uniform_range(&rng, -0.4f, 0.4f);
    }
    return m;
}

static void random_ids(int32_t *ids, int n, int V, uint64_t seed) {
    aflo_rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)rng_below(&rng, (uint64_t)V);
}

/* The full forward's logits of ids (1 x n), copied out. */
static float *full_logits(aflo_model *m, const int32_t *ids, int n) {
    int V = model_config(m)->vocab_size;
    assert_int_equal(model_reserve(m, 1, n, err, sizeof err), 0);
    aflo_batch b = {.batch = 1, .seq = n, .input_ids = ids};
    if (model_forward(m, &b, NULL, err, sizeof err)) fail_msg("%s", err);
    float *out = malloc((size_t)n * V * sizeof *out);
    assert_non_null(out);
    memcpy(out, model_logits(m), (size_t)n * V * sizeof *out);
    return out;
}

/* |a - b| <= 1e-5 * max(1, max|b|) over one row. */
static void close_row(const char *what, int pos, const float *a, const float *b, int V) {
    double scale = 1.0, worst = 0.0;
    for (int i = 0; i < V; i++) scale = fmax(scale, fabs(b[i]));
    for (int i = 0; i < V; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= worst)) worst = e;
    }
    if (!(worst <= 1e-5 * scale))
        fail_msg("%s: position %d differs from the full forward by %.3g (scale %.3g)", what, pos,
                 worst, scale);
}

/* One token at a time, then a prefill of `pre` tokens followed by single
 * tokens, then the whole sequence in one append: every position's logits
 * against the full forward's. */
static void check_decode(const char *what, aflo_model *m, int n, int pre) {
    int V = model_config(m)->vocab_size;
    int32_t ids[MAXPOS];
    random_ids(ids, n, V, 5);
    float *ref = full_logits(m, ids, n);
    float *lg = malloc((size_t)V * sizeof *lg);
    assert_non_null(lg);
    aflo_decode *d = decode_open(m, n, err, sizeof err);
    if (!d) fail_msg("%s", err);
    for (int t = 0; t < n; t++) {
        assert_int_equal(decode_append(d, &ids[t], 1, lg, err, sizeof err), 0);
        close_row(what, t, lg, ref + (size_t)t * V, V);
    }
    assert_int_equal(decode_length(d), n);
    /* full: one more is refused and changes nothing */
    assert_int_equal(decode_append(d, ids, 1, lg, err, sizeof err), -1);
    assert_non_null(strstr(err, "exceed"));
    decode_reset(d);
    assert_int_equal(decode_append(d, ids, pre, lg, err, sizeof err), 0);
    close_row(what, pre - 1, lg, ref + (size_t)(pre - 1) * V, V);
    for (int t = pre; t < n; t++) {
        assert_int_equal(decode_append(d, &ids[t], 1, lg, err, sizeof err), 0);
        close_row(what, t, lg, ref + (size_t)t * V, V);
    }
    decode_reset(d);
    assert_int_equal(decode_append(d, ids, n, lg, err, sizeof err), 0);
    close_row(what, n - 1, lg, ref + (size_t)(n - 1) * V, V);
    decode_close(d);
    free(lg);
    free(ref);
}

static void test_decode_matches_forward(void **state) {
    (void)state;
    static const struct {
        const char *type;
        aflo_method method;
        bool tied;
    } cases[] = {
        {"llama", METHOD_AFLORA, false}, {"llama", METHOD_LORA, true},
        {"llama", METHOD_ELORA, false},  {"llama", METHOD_FULL, true},
        {"mistral", METHOD_LORA, false}, {"qwen2", METHOD_AFLORA, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        aflo_config c;
        tiny_llama(&c, cases[i].type);
        c.tie_word_embeddings = cases[i].tied;
        if (!strcmp(cases[i].type, "mistral")) {
            c.sliding_window = 5; /* shorter than the sequence: the window bites */
            c.head_dim = 6;       /* not 16 / 4 */
            c.rope_scaling = ROPE_SCALING_LINEAR;
            c.rope_factor = 2.0f;
        }
        aflo_model *m = make(&c, cases[i].method, 30 + i);
        char what[64];
        snprintf(what, sizeof what, "%s %s%s", cases[i].type, method_names[cases[i].method],
                 cases[i].tied ? " tied" : "");
        check_decode(what, m, 20, 7);
        model_free(m);
    }
}

/* More tokens than one chunk: the prefill is split and must still agree. */
static void test_decode_long_prefill(void **state) {
    (void)state;
    aflo_config c;
    tiny_llama(&c, "llama");
    aflo_model *m = make(&c, METHOD_LORA, 3);
    check_decode("llama, 90 tokens", m, 90, DECODE_CHUNK + 9);
    model_free(m);
}

static void test_decode_refusals(void **state) {
    (void)state;
    aflo_config c;
    tiny_llama(&c, "llama");
    aflo_model *m = make(&c, METHOD_FULL, 4);
    float lg[23];
    aflo_decode *d = decode_open(m, 4, err, sizeof err);
    assert_non_null(d);
    int32_t bad = 23;
    assert_int_equal(decode_append(d, &bad, 1, lg, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside the vocabulary"));
    assert_int_equal(decode_length(d), 0);
    decode_close(d);
    assert_null(decode_open(m, 0, err, sizeof err));
    model_free(m);

    aflo_config b;
    tiny_config(&b, false);
    aflo_adapter_config ac = {.method = METHOD_FULL};
    m = model_create(&b, &ac, TASK_CLASSIFICATION, 2, 1, err, sizeof err);
    assert_non_null(m);
    assert_null(decode_open(m, 4, err, sizeof err));
    assert_non_null(strstr(err, "no incremental decoder"));
    model_free(m);
}

/* ---------------------------------------------------------------- choosing */

static void test_choose_greedy(void **state) {
    (void)state;
    float lg[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    gen_cand cand[5];
    aflo_rng rng;
    rng_seed(&rng, 1);
    /* ties go to the lowest id; top_p and rng play no part */
    assert_int_equal(gen_choose(lg, 5, 0.0f, 1.0f, &rng, cand), 1);
    assert_int_equal(gen_choose(lg, 5, 0.0f, 0.1f, &rng, cand), 1);
}

static void frequencies(const float *lg, int V, float temp, float top_p, int draws, double *freq) {
    gen_cand cand[8];
    aflo_rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < V; i++) freq[i] = 0;
    for (int k = 0; k < draws; k++) freq[gen_choose(lg, V, temp, top_p, &rng, cand)] += 1.0 / draws;
}

static void test_choose_temperature(void **state) {
    (void)state;
    enum { V = 5, DRAWS = 40000 };
    float lg[V] = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
    double freq[V];
    for (int ti = 0; ti < 2; ti++) {
        float temp = ti ? 2.0f : 0.7f;
        frequencies(lg, V, temp, 1.0f, DRAWS, freq);
        double z = 0;
        for (int i = 0; i < V; i++) z += exp(lg[i] / temp);
        /* 4 standard deviations of a frequency from 40000 draws is <= 0.01 */
        for (int i = 0; i < V; i++) assert_true(fabs(freq[i] - exp(lg[i] / temp) / z) < 0.01);
    }
}

static void test_choose_top_p(void **state) {
    (void)state;
    enum { V = 4, DRAWS = 40000 };
    /* probabilities 0.5, 0.3, 0.2, ~0 (logs) */
    float lg[V] = {logf(0.3f), logf(0.5f), logf(0.2f), -30.0f};
    double freq[V];
    frequencies(lg, V, 1.0f, 0.7f, DRAWS, freq); /* 0.5 + 0.3 reach 0.7: two kept */
    assert_true(fabs(freq[1] - 0.5 / 0.8) < 0.01);
    assert_true(fabs(freq[0] - 0.3 / 0.8) < 0.01);
    assert_true(freq[2] == 0.0 && freq[3] == 0.0);
    frequencies(lg, V, 1.0f, 0.4f, 1000, freq); /* the top token alone */
    assert_true(fabs(freq[1] - 1.0) < 1e-9 && freq[0] == 0.0);
    frequencies(lg, V, 1.0f, 0.85f, DRAWS, freq); /* three kept */
    assert_true(freq[2] > 0.15 && freq[3] == 0.0);
}

/* ---------------------------------------------------------------- generate */

static aflo_model *gen_model(void) {
    aflo_config c;
    tiny_llama(&c, "llama");
    c.max_position_embeddings = 32;
    return make(&c, METHOD_AFLORA, 8);
}

static void test_generate_greedy(void **state) {
    (void)state;
    aflo_model *m = gen_model();
    int32_t seq[32] = {1, 7, 3};
    gen_params p = gen_params_default();
    p.max_new_tokens = 12;
    gen_result a, b;
    assert_int_equal(generate(m, seq, 3, &p, &a, err, sizeof err), 0);
    assert_int_equal(a.n, 12);
    assert_int_equal(a.finish, GEN_FINISH_LENGTH);
    assert_string_equal(gen_finish_names[a.finish], "length");
    assert_int_equal(generate(m, seq, 3, &p, &b, err, sizeof err), 0);
    assert_memory_equal(a.ids, b.ids, 12 * sizeof *a.ids);
    /* the arg-max of full forwards, token after token */
    int V = model_config(m)->vocab_size;
    for (int t = 0; t < 12; t++) {
        int n = 3 + t;
        float *lg = full_logits(m, seq, n);
        const float *row = lg + (size_t)(n - 1) * V;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (row[i] > row[best]) best = i;
        free(lg);
        assert_int_equal(a.ids[t], best);
        seq[n] = best;
    }
    gen_result_free(&a);
    gen_result_free(&b);
    model_free(m);
}

static void test_generate_sampling_seeded(void **state) {
    (void)state;
    aflo_model *m = gen_model();
    int32_t prompt[1] = {1};
    gen_params p = gen_params_default();
    p.max_new_tokens = 20;
    p.temperature = 1.5f;
    p.top_p = 0.9f;
    p.seed = 42;
    gen_result a, b, c;
    assert_int_equal(generate(m, prompt, 1, &p, &a, err, sizeof err), 0);
    assert_int_equal(generate(m, prompt, 1, &p, &b, err, sizeof err), 0);
    assert_int_equal(a.n, 20);
    assert_int_equal(b.n, 20);
    assert_memory_equal(a.ids, b.ids, 20 * sizeof *a.ids);
    /* another seed gives another sequence (20 tokens from ~20 ids at T 1.5) */
    p.seed = 43;
    assert_int_equal(generate(m, prompt, 1, &p, &c, err, sizeof err), 0);
    assert_memory_not_equal(a.ids, c.ids, 20 * sizeof *a.ids);
    gen_result_free(&a);
    gen_result_free(&b);
    gen_result_free(&c);
    model_free(m);
}

static void test_generate_eos_and_length(void **state) {
    (void)state;
    aflo_model *m = gen_model();
    int32_t prompt[31];
    random_ids(prompt, 31, 23, 6);
    gen_params p = gen_params_default();
    p.max_new_tokens = 10;
    p.temperature = 1.0f;
    p.seed = 3;
    gen_result a, b;
    assert_int_equal(generate(m, prompt, 2, &p, &a, err, sizeof err), 0);
    assert_int_equal(a.n, 10);
    /* EOS = the 5th token: generation stops right after it (earlier when
     * it came before) */
    p.eos_id = a.ids[4];
    int first = 0;
    while (a.ids[first] != p.eos_id) first++;
    assert_int_equal(generate(m, prompt, 2, &p, &b, err, sizeof err), 0);
    assert_int_equal(b.finish, GEN_FINISH_EOS);
    assert_string_equal(gen_finish_names[b.finish], "eos");
    assert_int_equal(b.n, first + 1);
    assert_memory_equal(a.ids, b.ids, (size_t)b.n * sizeof *a.ids);
    gen_result_free(&a);
    gen_result_free(&b);

    /* no new tokens */
    p.eos_id = -1;
    p.max_new_tokens = 0;
    assert_int_equal(generate(m, prompt, 2, &p, &a, err, sizeof err), 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(a.finish, GEN_FINISH_LENGTH);
    gen_result_free(&a);
    /* 32 positions: a prompt of 30 leaves room for 3 new tokens (the last
     * is never fed back) */
    p.max_new_tokens = 10;
    assert_int_equal(generate(m, prompt, 30, &p, &a, err, sizeof err), 0);
    assert_int_equal(a.n, 3);
    assert_int_equal(a.finish, GEN_FINISH_LENGTH);
    gen_result_free(&a);
    model_free(m);
}

/* on_token's record: the ids and indices it saw, and when to ask to stop. */
typedef struct {
    int32_t ids[32];
    int index[32];
    int n, stop_after; /* stop_after: return 1 on this many calls (0: never) */
} token_log;

static int log_token(void *user, int32_t id, int index) {
    token_log *l = user;
    l->ids[l->n] = id;
    l->index[l->n] = index;
    l->n++;
    return l->stop_after > 0 && l->n >= l->stop_after;
}

static void test_generate_on_token(void **state) {
    (void)state;
    aflo_model *m = gen_model();
    int32_t prompt[2] = {1, 7};
    gen_params p = gen_params_default();
    p.max_new_tokens = 9;
    gen_result a, b;
    assert_int_equal(generate(m, prompt, 2, &p, &a, err, sizeof err), 0);
    /* called once per token, in order, with the ids of the result */
    token_log l = {0};
    p.on_token = log_token;
    p.user = &l;
    assert_int_equal(generate(m, prompt, 2, &p, &b, err, sizeof err), 0);
    assert_int_equal(b.finish, GEN_FINISH_LENGTH);
    assert_int_equal(l.n, 9);
    assert_int_equal(b.n, 9);
    assert_memory_equal(l.ids, a.ids, 9 * sizeof *a.ids);
    assert_memory_equal(b.ids, a.ids, 9 * sizeof *a.ids);
    for (int i = 0; i < 9; i++) assert_int_equal(l.index[i], i);
    gen_result_free(&b);
    /* non-zero on the 4th token: it is kept, nothing more is made */
    l = (token_log){.stop_after = 4};
    assert_int_equal(generate(m, prompt, 2, &p, &b, err, sizeof err), 0);
    assert_int_equal(b.finish, GEN_FINISH_STOPPED);
    assert_string_equal(gen_finish_names[b.finish], "stopped");
    assert_int_equal(l.n, 4);
    assert_int_equal(b.n, 4);
    assert_memory_equal(b.ids, a.ids, 4 * sizeof *a.ids);
    gen_result_free(&b);
    /* stopping on the first token */
    l = (token_log){.stop_after = 1};
    assert_int_equal(generate(m, prompt, 2, &p, &b, err, sizeof err), 0);
    assert_int_equal(b.finish, GEN_FINISH_STOPPED);
    assert_int_equal(b.n, 1);
    gen_result_free(&b);
    gen_result_free(&a);
    model_free(m);
}

static void test_generate_refusals(void **state) {
    (void)state;
    aflo_model *m = gen_model();
    int32_t prompt[40] = {1, 2};
    gen_result r;
    gen_params p = gen_params_default();
    assert_int_equal(generate(m, prompt, 0, &p, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    p.temperature = -1.0f;
    assert_int_equal(generate(m, prompt, 2, &p, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "temperature"));
    p = gen_params_default();
    p.top_p = 0.0f;
    assert_int_equal(generate(m, prompt, 2, &p, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "top_p"));
    p = gen_params_default();
    p.max_new_tokens = -1;
    assert_int_equal(generate(m, prompt, 2, &p, &r, err, sizeof err), -1);
    p = gen_params_default();
    assert_int_equal(generate(m, prompt, 33, &p, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "positions"));
    prompt[1] = 99;
    assert_int_equal(generate(m, prompt, 2, &p, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "vocabulary"));
    assert_null(r.ids);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_matches_forward),
        cmocka_unit_test(test_decode_long_prefill),
        cmocka_unit_test(test_decode_refusals),
        cmocka_unit_test(test_choose_greedy),
        cmocka_unit_test(test_choose_temperature),
        cmocka_unit_test(test_choose_top_p),
        cmocka_unit_test(test_generate_greedy),
        cmocka_unit_test(test_generate_sampling_seeded),
        cmocka_unit_test(test_generate_eos_and_length),
        cmocka_unit_test(test_generate_on_token),
        cmocka_unit_test(test_generate_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
