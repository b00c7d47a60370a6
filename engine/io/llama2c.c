/* llama2c.c — read a llama2.c version-0 checkpoint into a LLaMA-family
 * model (see llama2c.h).
 *
 * The header is checked before anything is allocated: positive sizes
 * within LLAMA2C_MAX_DIM, heads dividing the width, an even head size, and
 * a file size equal to what the header implies (with or without the
 * classifier), so a truncated or foreign file is refused by name rather
 * than read as weights. Tensors are read in file order straight into the
 * model's base arena; wq and wk go through one row buffer to be permuted. */
#include "io/llama2c.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/errmsg.h"

/* Sizes beyond any llama2.c export (Llama-2-70B: dim 8192, hidden 28672,
 * vocab 32000): a header above this is not a checkpoint. */
#define LLAMA2C_MAX_DIM (1 << 20)
/* run.c's constants. */
#define LLAMA2C_RMS_EPS 1e-5f
#define LLAMA2C_ROPE_THETA 10000.0f

enum { H_DIM, H_HIDDEN, H_LAYERS, H_HEADS, H_KV_HEADS, H_VOCAB, H_SEQ, H_COUNT };

typedef struct {
    int32_t h[H_COUNT];
    bool shared; /* classifier = token embedding */
} llama2c_header;

static uint64_t body_floats(const llama2c_header *hd) {
    uint64_t dim = (uint64_t)hd->h[H_DIM], hid = (uint64_t)hd->h[H_HIDDEN];
    uint64_t L = (uint64_t)hd->h[H_LAYERS], V = (uint64_t)abs(hd->h[H_VOCAB]);
    uint64_t kvd = dim / (uint64_t)hd->h[H_HEADS] * (uint64_t)hd->h[H_KV_HEADS];
    uint64_t head = dim / (uint64_t)hd->h[H_HEADS];
    uint64_t n = V * dim + L * (dim + dim * dim + 2 * kvd * dim + dim * dim + dim + 3 * hid * dim) +
                 dim + (uint64_t)hd->h[H_SEQ] * head; /* two tables of seq x head/2 */
    return hd->shared ? n : n + V * dim;
}

static int read_header(FILE *f, const char *path, llama2c_header *hd, char *err, size_t errlen) {
    if (fread(hd->h, sizeof(int32_t), H_COUNT, f) != H_COUNT)
        return set_err(err, errlen, "%s: shorter than a llama2.c header", path);
    static const char *const names[H_COUNT] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                               "n_kv_heads", "vocab_size", "seq_len"};
    hd->shared = hd->h[H_VOCAB] > 0;
    for (int i = 0; i < H_COUNT; i++) {
        int32_t v = i == H_VOCAB && hd->h[i] < 0 && hd->h[i] != INT32_MIN ? -hd->h[i] : hd->h[i];
        if (v <= 0 || v > LLAMA2C_MAX_DIM)
            return set_err(err, errlen, "%s: header %s = %d is not a llama2.c checkpoint's", path,
                           names[i], (int)hd->h[i]);
    }
    int dim = hd->h[H_DIM], nh = hd->h[H_HEADS], nkv = hd->h[H_KV_HEADS];
    if (dim % nh || nh % nkv || (dim / nh) % 2)
        return set_err(err, errlen,
                       "%s: dim %d, n_heads %d and n_kv_heads %d do not make even heads that "
                       "share KV heads evenly",
                       path, dim, nh, nkv);
    struct stat st;
    if (fstat(fileno(f), &st) != 0) return set_err(err, errlen, "%s: %s", path, strerror(errno));
    uint64_t want = sizeof(int32_t) * H_COUNT + sizeof(float) * body_floats(hd);
    if ((uint64_t)st.st_size != want)
        return set_err(err, errlen,
                       "%s: %lld bytes, but its header (dim %d, %d layers, vocab %d) implies %llu",
                       path, (long long)st.st_size, dim, hd->h[H_LAYERS], hd->h[H_VOCAB],
                       (unsigned long long)want);
    return 0;
}

static void config_of(const llama2c_header *hd, aflo_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->model_type, "llama");
    c->hidden_size = hd->h[H_DIM];
    c->intermediate_size = hd->h[H_HIDDEN];
    c->num_hidden_layers = hd->h[H_LAYERS];
    c->num_attention_heads = hd->h[H_HEADS];
    c->num_key_value_heads = hd->h[H_KV_HEADS];
    c->vocab_size = abs(hd->h[H_VOCAB]);
    c->max_position_embeddings = hd->h[H_SEQ];
    c->tie_word_embeddings = hd->shared;
    c->rms_norm_eps = LLAMA2C_RMS_EPS;
    c->rope_theta = LLAMA2C_ROPE_THETA;
    /* the BERT-shaped fields config_validate checks, at config.json's defaults */
    c->type_vocab_size = 2;
    c->layer_norm_eps = 1e-12f;
}

int llama2c_read_config(const char *path, aflo_config *c, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return set_err(err, errlen, "%s: %s", path, strerror(errno));
    llama2c_header hd;
    int rc = read_header(f, path, &hd, err, errlen);
    fclose(f);
    if (rc == 0) config_of(&hd, c);
    return rc;
}

typedef struct {
    FILE *f;
    const char *path;
    aflo_model *m;
    float *row; /* one head's rows, for the wq/wk permutation */
} reader;

static int read_floats(reader *r, float *dst, size_t n, char *err, size_t errlen) {
    if (fread(dst, sizeof(float), n, r->f) != n)
        return set_err(err, errlen, "%s: read failed or file ended early", r->path);
    return 0;
}

/* The tensor `name` (of layer l when l >= 0): its rows as stored, or with
 * heads of head_dim rows reordered from adjacent-pair to rotate-half
 * order when permute. */
static int read_tensor(reader *r, const char *fmt, int l, bool permute, int head_dim, char *err,
                       size_t errlen) {
    char name[96];
    snprintf(name, sizeof name, fmt, l);
    aflo_param *p = model_find_param(r->m, name);
    if (!p) return set_err(err, errlen, "llama2c: the model has no tensor %s", name);
    if (!permute) return read_floats(r, p->data, p->size, err, errlen);
    size_t cols = (size_t)p->shape[1], half = (size_t)head_dim / 2;
    for (int h = 0; h < p->shape[0] / head_dim; h++) {
        if (read_floats(r, r->row, (size_t)head_dim * cols, err, errlen)) return -1;
        float *dst = p->data + (size_t)h * head_dim * cols;
        for (size_t j = 0; j < half; j++)
            for (size_t s = 0; s < 2; s++)
                memcpy(dst + (s * half + j) * cols, r->row + (2 * j + s) * cols,
                       cols * sizeof(float));
    }
    return 0;
}

static int read_body(reader *r, const llama2c_header *hd, char *err, size_t errlen) {
    int L = hd->h[H_LAYERS], head_dim = hd->h[H_DIM] / hd->h[H_HEADS];
    if (read_tensor(r, "embed_tokens.weight", -1, false, 0, err, errlen)) return -1;
    /* per kind, stacked over layers, in run.c's order */
    static const struct {
        const char *fmt;
        bool permute;
    } kinds[] = {
        {"layers.%d.input_layernorm.weight", false},
        {"layers.%d.self_attn.q_proj.weight", true},
        {"layers.%d.self_attn.k_proj.weight", true},
        {"layers.%d.self_attn.v_proj.weight", false},
        {"layers.%d.self_attn.o_proj.weight", false},
        {"layers.%d.post_attention_layernorm.weight", false},
        {"layers.%d.mlp.gate_proj.weight", false}, /* w1 */
        {"layers.%d.mlp.down_proj.weight", false}, /* w2 */
        {"layers.%d.mlp.up_proj.weight", false},   /* w3 */
    };
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        for (int l = 0; l < L; l++)
            if (read_tensor(r, kinds[k].fmt, l, kinds[k].permute, head_dim, err, errlen)) return -1;
    if (read_tensor(r, "norm.weight", -1, false, 0, err, errlen)) return -1;
    /* skip run.c's RoPE tables */
    long tables = (long)((size_t)hd->h[H_SEQ] * (size_t)head_dim * sizeof(float));
    if (fseek(r->f, tables, SEEK_CUR) != 0)
        return set_err(err, errlen, "%s: %s", r->path, strerror(errno));
    if (!hd->shared && read_tensor(r, "lm_head.weight", -1, false, 0, err, errlen)) return -1;
    return 0;
}

aflo_model *llama2c_load(const char *path, const aflo_adapter_config *ac, uint64_t seed, char *err,
                         size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    llama2c_header hd;
    aflo_config c;
    reader r = {.f = f, .path = path};
    if (read_header(f, path, &hd, err, errlen)) goto fail;
    config_of(&hd, &c);
    r.m = model_create_ex(&c, ac, TASK_CAUSAL_LM, c.vocab_size, seed, false, err, errlen);
    if (!r.m) goto fail;
    r.row = malloc((size_t)(c.hidden_size / c.num_attention_heads) * (size_t)c.hidden_size *
                   sizeof *r.row);
    if (!r.row) {
        set_err(err, errlen, "out of memory reading %s", path);
        goto fail;
    }
    if (read_body(&r, &hd, err, errlen)) goto fail;
    free(r.row);
    fclose(f);
    return r.m;
fail:
    free(r.row);
    model_free(r.m);
    fclose(f);
    return NULL;
}
