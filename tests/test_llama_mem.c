/* test_llama_mem.c — the LLaMA family's two memory savers: frozen base
 * weights kept 16-bit (model_keep_half, half.h) and activation
 * checkpointing (model_set_checkpointing).
 *
 * Both must change nothing but memory. Widening a BF16/F16 value is exact,
 * and each matrix is widened whole before the same BLAS call the float32
 * model makes, so a model loaded from a BF16 or F16 folder trains with the
 * very bits of the same values loaded from an F32 folder: losses, every
 * gradient and the adapter after a few descent steps are compared with
 * memcmp, and so are the decoder's logits. Checkpointing reruns each
 * block's forward with the same deterministic kernels and counter-based
 * dropout masks, so loss and gradients are bit-identical with it on or off
 * (with attention dropout on), and the FLOP count grows by exactly the
 * rerun blocks' forward. The widening itself is checked over all 65536
 * codes of each format against safetensors.c's scalar converters, and on
 * the values that matter by hand (subnormals, infinities, NaN payloads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/rng.h"
#include "io/hfmodel.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/decode.h"
#include "model/gemm.h"
#include "model/half.h"
#include "model/model.h"

static char err[512];

static uint32_t bits_of(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* ---------------------------------------------------------------- widening */

static void test_half_widening(void **s) {
    (void)s;
    enum { ALL = 65536 };
    uint16_t *codes = malloc(ALL * sizeof *codes);
    float *got = malloc(ALL * sizeof *got);
    assert_non_null(codes);
    assert_non_null(got);
    for (int i = 0; i < ALL; i++) codes[i] = (uint16_t)i;
    for (int threads = 1; threads <= 2; threads++) {
        engine_set_threads(threads);
        half_to_f32(got, codes, ALL, HALF_F16);
        for (int i = 0; i < ALL; i++) {
            uint32_t want = bits_of(st_f16_to_f32((uint16_t)i));
            if (bits_of(got[i]) != want)
                fail_msg("f16 %04x: %08x, want %08x", i, bits_of(got[i]), want);
            if (bits_of(half_one_to_f32((uint16_t)i, HALF_F16)) != want)
                fail_msg("f16 one %04x", i);
        }
        half_to_f32(got, codes, ALL, HALF_BF16);
        for (int i = 0; i < ALL; i++)
            if (bits_of(got[i]) != (uint32_t)i << 16) fail_msg("bf16 %04x", i);
    }
    engine_set_threads(1);
    /* by hand: IEEE 754 binary16 */
    const struct {
        uint16_t h;
        uint32_t f;
    } f16[] = {
        {0x0000, 0x00000000}, /* +0 */
        {0x8000, 0x80000000}, /* -0 */
        {0x3C00, 0x3F800000}, /* 1 */
        {0xC000, 0xC0000000}, /* -2 */
        {0x7BFF, 0x477FE000}, /* 65504, the largest */
        {0x0001, 0x33800000}, /* 2^-24, the smallest subnormal */
        {0x8001, 0xB3800000}, /* -2^-24 */
        {0x03FF, 0x387FC000}, /* 1023 * 2^-24, the largest subnormal */
        {0x0400, 0x38800000}, /* 2^-14, the smallest normal */
        {0x7C00, 0x7F800000}, /* inf */
        {0xFC00, 0xFF800000}, /* -inf */
        {0x7E00, 0x7FC00000}, /* quiet NaN */
        {0x7C01, 0x7F802000}, /* signalling NaN, payload kept */
        {0xFE01, 0xFFC02000}, /* negative NaN with a payload */
    };
    for (size_t i = 0; i < sizeof f16 / sizeof *f16; i++) {
        codes[i] = f16[i].h;
        codes[ALL / 2 + i] = f16[i].h;
    }
    half_to_f32(got, codes, sizeof f16 / sizeof *f16, HALF_F16);
    for (size_t i = 0; i < sizeof f16 / sizeof *f16; i++)
        if (bits_of(got[i]) != f16[i].f)
            fail_msg("f16 %04x: %08x, want %08x", f16[i].h, bits_of(got[i]), f16[i].f);
    assert_true(isinf(got[9]) && got[9] > 0 && isnan(got[11]) && isnan(got[12]));
    free(codes);
    free(got);
}

/* ---------------------------------------------------------------- folders */

enum { B = 2, S = 16, N = B * S };

static void config_of(aflo_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->vocab_size = 300;
    c->hidden_size = 64;
    c->intermediate_size = 160;
    c->num_hidden_layers = 3;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->max_position_embeddings = 64;
    c->type_vocab_size = 1;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->layer_norm_eps = 1e-12f;
}

/* A random 16-bit code of the format: normals of magnitude about 2^-6 ..
 * 2^-1 (a weight's), one in 16 an F16 subnormal, around 1 for norms. */
static uint16_t random_code(aflo_rng *rng, aflo_half_kind kind, bool norm) {
    uint16_t sign = rng_below(rng, 2) ? 0x8000 : 0;
    if (kind == HALF_BF16) {
        int e = norm ? 127 : 121 + (int)rng_below(rng, 6);
        return (uint16_t)((norm ? 0 : sign) | (e << 7) | rng_below(rng, 128));
    }
    if (norm) return (uint16_t)((15 << 10) | rng_below(rng, 1024));
    int e = rng_below(rng, 16) == 0 ? 0 : 9 + (int)rng_below(rng, 6);
    return (uint16_t)(sign | (e << 10) | rng_below(rng, 1024));
}

/* Fill m's base tensors with values exactly representable in kind; codes[i]
 * gets tensor i's codes. */
static uint16_t **fill_representable(aflo_model *m, aflo_half_kind kind) {
    aflo_rng rng;
    rng_seed(&rng, 1234);
    int n = model_param_count(m);
    uint16_t **codes = calloc((size_t)n, sizeof *codes);
    assert_non_null(codes);
    for (int i = 0; i < n; i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        codes[i] = malloc(p->size * sizeof **codes);
        assert_non_null(codes[i]);
        for (size_t j = 0; j < p->size; j++) {
            codes[i][j] = random_code(&rng, kind, p->role == PROLE_NORM_WEIGHT);
            p->data[j] = half_one_to_f32(codes[i][j], kind);
        }
    }
    return codes;
}

/* dir/model.safetensors holding m's base tensors as dtype ("F32", "BF16",
 * "F16"; 16-bit from codes) under their transformers names; odd: a header
 * of odd length, so every tensor starts at an odd address in the mapping
 * (the loader must copy them aligned). */
static void write_folder(const char *dir, aflo_model *m, uint16_t **codes, const char *dtype,
                         bool odd) {
    assert_true(mkdir(dir, 0755) == 0);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *cfg = config_to_json(model_config(m));
    assert_non_null(cfg);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(cfg, f);
    fclose(f);
    free(cfg);

    size_t esize = strcmp(dtype, "F32") == 0 ? 4 : 2, cap = 1 << 16, len = 0, off = 0;
    char *hdr = malloc(cap);
    assert_non_null(hdr);
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        char name[128];
        assert_int_equal(model_hf_name(m, p, name, sizeof name), 0);
        size_t bytes = p->size * esize;
        char shape[48];
        if (p->ndim == 2)
            snprintf(shape, sizeof shape, "[%d,%d]", p->shape[0], p->shape[1]);
        else
            snprintf(shape, sizeof shape, "[%d]", p->shape[0]);
        len +=
            (size_t)snprintf(hdr + len, cap - len,
                             "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                             off ? "," : "", name, dtype, shape, off, off + bytes);
        off += bytes;
        assert_true(len < cap - 256);
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    /* pad with spaces to a length of the wanted parity (8-aligned or odd) */
    while (odd ? len % 2 == 0 : len % 8 != 0) hdr[len++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = len;
    assert_int_equal(fwrite(&n, 8, 1, f), 1);
    assert_int_equal(fwrite(hdr, 1, len, f), len);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        if (esize == 4)
            assert_int_equal(fwrite(p->data, 4, p->size, f), p->size);
        else
            assert_int_equal(fwrite(codes[i], 2, p->size, f), p->size);
    }
    assert_int_equal(fclose(f), 0);
    free(hdr);
}

static void remove_folder(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

typedef struct {
    int32_t ids[N], labels[N];
    uint8_t mask[N];
    aflo_batch b;
} batch_buf;

static void make_batch(batch_buf *t, int vocab, int salt) {
    for (int i = 0; i < N; i++) {
        bool real = i < S || i % S < S - 5; /* sequence 1 right-padded */
        t->ids[i] = real ? (int32_t)(1 + (i * 37 + salt * 11) % (vocab - 1)) : 0;
        t->mask[i] = real;
        t->labels[i] = real ? t->ids[i] : LABEL_IGNORE;
    }
    t->b = (aflo_batch){.batch = B,
                        .seq = S,
                        .input_ids = t->ids,
                        .attention_mask = t->mask,
                        .token_labels = t->labels};
}

/* Every trainable gradient of m, concatenated (caller frees). */
static float *grads_of(aflo_model *m, size_t *n) {
    size_t g = 0;
    for (int i = 0; i < model_param_count(m); i++)
        if (model_param(m, i)->trainable) g += model_param(m, i)->size;
    float *out = malloc((g ? g : 1) * sizeof *out), *o = out;
    assert_non_null(out);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (!p->trainable) continue;
        memcpy(o, p->grad, p->size * sizeof *o);
        o += p->size;
    }
    *n = g;
    return out;
}

/* One step: forward, backward; then plain descent on what trains, so the
 * next step runs on the adapter this one changed. Returns the loss. */
static float step(aflo_model *m, const aflo_batch *b) {
    float loss;
    model_set_training(m, true);
    model_zero_grad(m);
    if (model_forward(m, b, &loss, err, sizeof err)) fail_msg("%s", err);
    model_backward(m, 1.0f);
    return loss;
}

static void descend(aflo_model *m) {
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t j = 0; p->trainable && j < p->size; j++) p->data[j] -= 0.5f * p->grad[j];
    }
}

static void same_trainables(aflo_model *a, aflo_model *b) {
    assert_int_equal(model_param_count(a), model_param_count(b));
    for (int i = 0; i < model_param_count(a); i++) {
        aflo_param *p = model_param(a, i), *q = model_param(b, i);
        if (p->group == PGROUP_BASE) continue;
        if (memcmp(p->data, q->data, p->size * sizeof(float)))
            fail_msg("%s differs after training", p->name);
    }
}

/* The F32 folder's model and the 16-bit one, checkpointing on in the
 * second when ckpt: same losses, gradients, adapter and decoder logits. */
static void compare_folders(aflo_half_kind kind, aflo_method method, bool odd, bool ckpt) {
    aflo_config c;
    config_of(&c);
    aflo_adapter_config ac = {method, 8, 16.0f, ALL_MODULES, PROJ_ALL};
    aflo_model *src = model_create(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, 3, err, sizeof err);
    if (!src) fail_msg("%s", err);
    uint16_t **codes = fill_representable(src, kind);
    char d32[256], d16[256];
    snprintf(d32, sizeof d32, "%s/aflo_mem_f32_%d", "/tmp", (int)getpid());
    snprintf(d16, sizeof d16, "%s/aflo_mem_h_%d", "/tmp", (int)getpid());
    write_folder(d32, src, codes, "F32", false);
    write_folder(d16, src, codes, kind == HALF_BF16 ? "BF16" : "F16", odd);
    for (int i = 0; i < model_param_count(src); i++) free(codes[i]);
    free(codes);
    model_free(src);

    hf_load_report r32, r16;
    aflo_model *a = hfmodel_load(d32, &ac, TASK_CAUSAL_LM, 0, 7, &r32, err, sizeof err);
    if (!a) fail_msg("%s", err);
    aflo_model *h = hfmodel_load(d16, &ac, TASK_CAUSAL_LM, 0, 7, &r16, err, sizeof err);
    if (!h) fail_msg("%s", err);
    /* the folders may go: the 16-bit model keeps its file mapped */
    remove_folder(d32);
    remove_folder(d16);
    assert_int_equal(r32.tensors_half, 0);
    /* every projection (7 a block) and the embedding and lm_head */
    assert_int_equal(r16.tensors_half, 7 * c.num_hidden_layers + 2);
    aflo_param *q = model_find_param(h, "layers.0.self_attn.q_proj.weight");
    assert_non_null(q->half);
    assert_null(q->data);
    assert_non_null(model_find_param(a, "layers.0.self_attn.q_proj.weight")->data);
    aflo_memory ma = model_memory(a), mh = model_memory(h);
    assert_int_equal(mh.base_half * 2, ma.base - (mh.base - mh.base_half));
    assert_true(mh.widen >= (size_t)c.vocab_size * c.hidden_size * sizeof(float));

    assert_int_equal(model_reserve(a, B, S, err, sizeof err), 0);
    assert_int_equal(model_reserve(h, B, S, err, sizeof err), 0);
    if (ckpt) assert_int_equal(model_set_checkpointing(h, true, err, sizeof err), 0);
    for (int k = 0; k < 3; k++) {
        batch_buf t;
        make_batch(&t, c.vocab_size, k);
        float la = step(a, &t.b), lh = step(h, &t.b);
        if (bits_of(la) != bits_of(lh)) fail_msg("step %d: loss %.9g vs %.9g", k, la, lh);
        size_t na, nh;
        float *ga = grads_of(a, &na), *gh = grads_of(h, &nh);
        assert_int_equal(na, nh);
        assert_true(na > 0);
        assert_memory_equal(ga, gh, na * sizeof(float));
        free(ga);
        free(gh);
        descend(a);
        descend(h);
    }
    same_trainables(a, h);

    /* generation's decoder: the same logits */
    float *lg[2];
    aflo_model *ms[2] = {a, h};
    int32_t prompt[5] = {1, 17, 42, 99, 7};
    for (int k = 0; k < 2; k++) {
        lg[k] = malloc((size_t)c.vocab_size * sizeof(float));
        assert_non_null(lg[k]);
        aflo_decode *dd = decode_open(ms[k], 16, err, sizeof err);
        if (!dd) fail_msg("%s", err);
        assert_int_equal(decode_append(dd, prompt, 5, lg[k], err, sizeof err), 0);
        assert_int_equal(decode_append(dd, prompt + 2, 1, lg[k], err, sizeof err), 0);
        decode_close(dd);
    }
    assert_memory_equal(lg[0], lg[1], (size_t)c.vocab_size * sizeof(float));
    free(lg[0]);
    free(lg[1]);
    model_free(a);
    model_free(h);
}

static void test_bf16_folder_trains_bit_identically(void **s) {
    (void)s;
    compare_folders(HALF_BF16, METHOD_AFLORA, false, false);
}

static void test_f16_unaligned_folder_trains_bit_identically(void **s) {
    (void)s;
    compare_folders(HALF_F16, METHOD_LORA, true, false);
}

static void test_bf16_with_checkpointing(void **s) {
    (void)s;
    compare_folders(HALF_BF16, METHOD_ELORA, false, true);
}

/* Method full trains the base weights: they load as float32. */
static void test_full_keeps_float32(void **s) {
    (void)s;
    aflo_config c;
    config_of(&c);
    c.num_hidden_layers = 1;
    aflo_adapter_config ac = {METHOD_FULL, 0, 0.0f, ALL_MODULES, PROJ_NONE};
    aflo_model *src = model_create(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, 3, err, sizeof err);
    assert_non_null(src);
    uint16_t **codes = fill_representable(src, HALF_BF16);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/aflo_mem_full_%d", "/tmp", (int)getpid());
    write_folder(dir, src, codes, "BF16", false);
    hf_load_report r;
    aflo_model *m = hfmodel_load(dir, &ac, TASK_CAUSAL_LM, 0, 7, &r, err, sizeof err);
    remove_folder(dir);
    if (!m) fail_msg("%s", err);
    assert_int_equal(r.tensors_half, 0);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i), *q = model_param(src, i);
        assert_null(p->half);
        assert_memory_equal(p->data, q->data, p->size * sizeof(float));
        assert_false(model_may_keep_half(m, p));
    }
    for (int i = 0; i < model_param_count(src); i++) free(codes[i]);
    free(codes);
    model_free(src);
    model_free(m);
}

/* ---------------------------------------------------------------- checkpointing */

static void test_checkpointing_identical_with_dropout(void **s) {
    (void)s;
    aflo_config c;
    config_of(&c);
    c.attention_dropout = 0.2f;
    aflo_adapter_config ac = {METHOD_AFLORA, 4, 0.0f, ALL_MODULES, PROJ_ALL};
    aflo_model *m = model_create(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, 5, err, sizeof err);
    if (!m) fail_msg("%s", err);
    /* s_b starts at 0, which would hide the adapters' A and B gradients */
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->role == PROLE_SB)
            for (size_t j = 0; j < p->size; j++) p->data[j] = 0.5f;
    }
    assert_int_equal(model_reserve(m, B, S, err, sizeof err), 0);
    size_t act_off = model_memory(m).activations;
    batch_buf t;
    make_batch(&t, c.vocab_size, 1);
    model_set_dropout(m, true);
    model_set_dropout_key(m, 0xfeed);

    float loss[3];
    float *g[3];
    size_t n[3];
    aflo_flops fl[3];
    for (int run = 0; run < 3; run++) {
        /* off, on, and off again with another key: dropout did act */
        assert_int_equal(model_set_checkpointing(m, run == 1, err, sizeof err), 0);
        assert_true(model_checkpointing(m) == (run == 1));
        if (run == 2) model_set_dropout_key(m, 0xbeef);
        memset(model_flops(m), 0, sizeof(aflo_flops));
        loss[run] = step(m, &t.b);
        fl[run] = *model_flops(m);
        g[run] = grads_of(m, &n[run]);
    }
    if (bits_of(loss[0]) != bits_of(loss[1])) fail_msg("loss %.9g vs %.9g", loss[0], loss[1]);
    assert_int_equal(n[0], n[1]);
    assert_memory_equal(g[0], g[1], n[0] * sizeof(float));
    assert_true(loss[0] != loss[2]); /* the masks differ with the key: dropout is on */

    /* one more forward of every block but the last, as forward FLOPs; the
     * per-block forward is the forward minus lm_head's 2*N*V*H */
    uint64_t head = 2ull * N * c.vocab_size * c.hidden_size;
    uint64_t block = (fl[0].by_kind[FLOP_FORWARD] - head) / (uint64_t)c.num_hidden_layers;
    assert_int_equal((fl[0].by_kind[FLOP_FORWARD] - head) % c.num_hidden_layers, 0);
    assert_int_equal(fl[1].by_kind[FLOP_FORWARD],
                     fl[0].by_kind[FLOP_FORWARD] + (uint64_t)(c.num_hidden_layers - 1) * block);
    assert_int_equal(fl[1].by_kind[FLOP_BACKWARD_INPUT], fl[0].by_kind[FLOP_BACKWARD_INPUT]);
    assert_int_equal(fl[1].by_kind[FLOP_BACKWARD_WEIGHT], fl[0].by_kind[FLOP_BACKWARD_WEIGHT]);

    /* and it saves memory: what the estimate says, the arena holds */
    assert_int_equal(model_set_checkpointing(m, true, err, sizeof err), 0);
    size_t act_on = model_memory(m).activations;
    assert_true(act_on < act_off);
    aflo_memory_plan plan = {false, true};
    aflo_memory est;
    assert_int_equal(model_estimate_memory_plan(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, B, S, &plan,
                                                &est, err, sizeof err),
                     0);
    assert_int_equal(est.activations, act_on);
    for (int run = 0; run < 3; run++) free(g[run]);
    model_free(m);
}

/* An encoder has no checkpointing. */
static void test_checkpointing_refused_for_bert(void **s) {
    (void)s;
    aflo_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "bert");
    c.vocab_size = 30;
    c.hidden_size = 8;
    c.intermediate_size = 16;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.max_position_embeddings = 16;
    c.type_vocab_size = 2;
    c.layer_norm_eps = 1e-12f;
    aflo_adapter_config ac = {METHOD_AFLORA, 4, 0.0f, ALL_MODULES, PROJ_FFN};
    aflo_model *m = model_create(&c, &ac, TASK_CLASSIFICATION, 2, 5, err, sizeof err);
    if (!m) fail_msg("%s", err);
    assert_int_equal(model_set_checkpointing(m, true, err, sizeof err), -1);
    assert_non_null(strstr(err, "activation_checkpointing"));
    assert_int_equal(model_set_checkpointing(m, false, err, sizeof err), 0);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_widening),
        cmocka_unit_test(test_bf16_folder_trains_bit_identically),
        cmocka_unit_test(test_f16_unaligned_folder_trains_bit_identically),
        cmocka_unit_test(test_bf16_with_checkpointing),
        cmocka_unit_test(test_full_keeps_float32),
        cmocka_unit_test(test_checkpointing_identical_with_dropout),
        cmocka_unit_test(test_checkpointing_refused_for_bert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
