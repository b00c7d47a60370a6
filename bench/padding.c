/* padding.c — what padding costs: the same slice of an epoch (N batches) of
 * a BERT-base-shaped model fine-tuned with AFLoRA r=4, batched three ways:
 *
 *   fixed     every example padded to 256 tokens, as the authors' GLUE
 *             scripts do (max_seq_length 256, pad_to_max_length);
 *   dynamic   each batch padded to its own longest example (this engine's
 *             batching, dataset_make_batch);
 *   bucketed  dynamic padding over the length-bucketed epoch order
 *             (train_epoch_order with length_bucketing: chunks of
 *             batch x 50 examples sorted by length, batches shuffled).
 *
 * Data: a generated length distribution shaped like GLUE SST-2's training
 * set (67,349 single sentences; with BERT's WordPiece and [CLS]/[SEP] about
 * 13 tokens on average, most under 30, a tail to ~60): a log-normal clamped
 * to [3, 64] tokens, random token ids. Only lengths matter for the cost.
 *
 * Two measurements:
 *   1. the whole epoch, counted exactly without running the model: tokens
 *      processed including padding under each way (what the slice samples);
 *   2. the first N batches of the epoch run through the model — forward and
 *      backward exactly as the trainer's micro-batch (model_zero_grad,
 *      model_forward, model_backward), dropout on as in training — timed,
 *      with the FLOPs the engine executed (model_flops). The optimizer
 *      update is left out: it touches only the adapter and head, whatever
 *      the padding.
 * fixed and dynamic run the same batches (the plain shuffled order);
 * bucketed runs the first N batches of the bucketed order.
 *
 * The encoder's cost is the same for every layer, so time and FLOPs scale
 * with --layers and the ratios between the three ways barely depend on it
 * (embeddings and head are a small constant). The default is 1 of BERT-base's
 * 12 layers: the fixed-256 slice alone is 8 x 32 x 256 = 65,536 tokens, about
 * 100 s per layer on 2 shared cores, and the run should stay near 3 minutes.
 * --layers 12 gives the full model (about 12 times as long).
 *
 * OpenBLAS 0.3.21 falls back to its slow "Prescott" kernels on CPUs it does
 * not know; the core in use is printed — set OPENBLAS_CORETYPE (see
 * bench/run.sh) for representative times.
 *
 * usage: build/bench/padding [--layers N] [--batches N] [--batch N]
 *                            [--threads N] [--examples N] [--no-dropout] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/dataset.h"
#include "model/gemm.h"
#include "model/model.h"
#include "base/rng.h"
#include "train/train.h"

/* BERT-base (bert-base-uncased config.json). */
#define BERT_VOCAB 30522
#define BERT_HIDDEN 768
#define BERT_LAYERS 12
#define BERT_HEADS 12
#define BERT_INTERMEDIATE 3072
#define BERT_MAX_POSITION 512
#define BERT_TYPE_VOCAB 2
#define BERT_LN_EPS 1e-12f
#define BERT_DROPOUT 0.1f
#define BERT_CLS 101
#define BERT_SEP 102
#define BERT_FIRST_WORD 1000 /* below: [unused], special tokens, punctuation */

/* Defaults: 1 of BERT-base's 12 layers (time budget, see above); 8 batches
 * of 32 (aflorad's default batch_size; the paper's 64 halved). */
#define DEFAULT_LAYERS 1
#define DEFAULT_BATCHES 8
#define DEFAULT_BATCH 32
/* The authors' GLUE scripts pad every example to 256 tokens. */
#define FIXED_PAD 256
/* SST-2: 67,349 training sentences. */
#define SST2_TRAIN_EXAMPLES 67349
/* Length model: log-normal with median e^2.4 ~ 11 tokens and sigma 0.55,
 * which gives a mean of about 13 and a 99.9th percentile near 60, clamped to
 * [3, 64] ([CLS] word [SEP] at the least). */
#define LEN_LOG_MEDIAN 2.4
#define LEN_LOG_SIGMA 0.55
#define LEN_MIN 3
#define LEN_MAX 64

#define AFLORA_RANK 4
#define BENCH_LABELS 2
#define BENCH_SEED 42

typedef enum { WAY_FIXED, WAY_DYNAMIC, WAY_BUCKETED, WAY_COUNT } way;
static const char *const way_names[WAY_COUNT] = {"fixed 256", "dynamic", "dynamic+bucketing"};

typedef struct {
    long tokens; /* batch x seq summed: processed, padding included */
    long real;   /* non-padding tokens */
    aflo_flops flops;
    double seconds;
} slice_result;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int arg_int(int argc, char **argv, int *i, int lo, int hi, int *out) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", argv[*i]);
        return -1;
    }
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "%s: expected an integer from %d to %d\n", argv[*i - 1], lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static void bert_config(aflo_config *c, int layers) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "bert");
    c->vocab_size = BERT_VOCAB;
    c->hidden_size = BERT_HIDDEN;
    c->num_hidden_layers = layers;
    c->num_attention_heads = BERT_HEADS;
    c->intermediate_size = BERT_INTERMEDIATE;
    c->max_position_embeddings = BERT_MAX_POSITION;
    c->type_vocab_size = BERT_TYPE_VOCAB;
    c->pad_token_id = 0;
    c->layer_norm_eps = BERT_LN_EPS;
    c->hidden_dropout_prob = BERT_DROPOUT;
    c->attention_probs_dropout_prob = BERT_DROPOUT;
}

/* SST-2-shaped lengths, random words between [CLS] and [SEP]. */
static int make_dataset(aflo_dataset *d, int n) {
    aflo_rng rng;
    rng_seed(&rng, BENCH_SEED);
    int32_t ids[LEN_MAX];
    for (int e = 0; e < n; e++) {
        double x = exp(LEN_LOG_MEDIAN + LEN_LOG_SIGMA * (double)rng_normal(&rng));
        int len = (int)lround(x);
        if (len < LEN_MIN) len = LEN_MIN;
        if (len > LEN_MAX) len = LEN_MAX;
        ids[0] = BERT_CLS;
        for (int i = 1; i < len - 1; i++)
            ids[i] = BERT_FIRST_WORD + (int32_t)rng_below(&rng, BERT_VOCAB - BERT_FIRST_WORD);
        ids[len - 1] = BERT_SEP;
        int label = (int)rng_below(&rng, BENCH_LABELS);
        if (dataset_add(d, ids, NULL, len, label, (float)label) != 0) return -1;
    }
    return 0;
}

/* Tokens one epoch processes: fixed pads every example to FIXED_PAD;
 * otherwise each batch is padded to its longest example. */
static long epoch_tokens(const aflo_dataset *d, const int *order, int batch, bool fixed) {
    if (fixed) return (long)d->n * FIXED_PAD;
    long total = 0;
    for (int start = 0; start < d->n; start += batch) {
        int count = d->n - start < batch ? d->n - start : batch, longest = 1;
        for (int i = 0; i < count; i++)
            if (dataset_len(d, order[start + i]) > longest)
                longest = dataset_len(d, order[start + i]);
        total += (long)count * longest;
    }
    return total;
}

/* A batch padded to FIXED_PAD (pad id 0, mask 0), in bb's buffers. */
static void make_fixed_batch(const aflo_dataset *d, const int *idx, int count,
                             aflo_batch_buffers *bb, aflo_batch *out) {
    for (int i = 0; i < count; i++) {
        int len = dataset_len(d, idx[i]);
        if (len > FIXED_PAD) len = FIXED_PAD;
        size_t row = (size_t)i * FIXED_PAD;
        memcpy(bb->ids + row, d->ids + d->offsets[idx[i]], (size_t)len * sizeof *bb->ids);
        memset(bb->ids + row + len, 0, (size_t)(FIXED_PAD - len) * sizeof *bb->ids);
        memset(bb->type_ids + row, 0, (size_t)FIXED_PAD * sizeof *bb->type_ids);
        memset(bb->mask + row, 1, (size_t)len);
        memset(bb->mask + row + len, 0, (size_t)(FIXED_PAD - len));
        bb->labels[i] = d->labels[idx[i]];
        bb->targets[i] = d->targets[idx[i]];
    }
    *out = (aflo_batch){.batch = count,
                        .seq = FIXED_PAD,
                        .input_ids = bb->ids,
                        .token_type_ids = bb->type_ids,
                        .attention_mask = bb->mask,
                        .labels = bb->labels,
                        .targets = bb->targets};
}

/* Forward + backward of batch k of order, one way; adds to r. */
static int run_batch(aflo_model *m, const aflo_dataset *d, const int *order, int k, int batch,
                     bool fixed, aflo_batch_buffers *bb, slice_result *r, char *err,
                     size_t errlen) {
    const int *idx = order + (size_t)k * batch;
    aflo_batch b;
    memset(model_flops(m), 0, sizeof(aflo_flops));
    double t0 = now_s();
    if (fixed)
        make_fixed_batch(d, idx, batch, bb, &b);
    else
        dataset_make_batch(d, idx, batch, 0, bb, &b);
    model_set_dropout_key(m, rng_hash(BENCH_SEED, (uint64_t)k));
    model_zero_grad(m);
    float loss;
    if (model_forward(m, &b, &loss, err, errlen) != 0) return -1;
    model_backward(m, 1.0f);
    r->seconds += now_s() - t0;
    for (int i = 0; i < batch; i++) r->real += dataset_len(d, idx[i]);
    r->tokens += (long)b.batch * b.seq;
    for (int kind = 0; kind < FLOP_KINDS; kind++)
        r->flops.by_kind[kind] += model_flops(m)->by_kind[kind];
    return 0;
}

int main(int argc, char **argv) {
    int layers = DEFAULT_LAYERS, nbatches = DEFAULT_BATCHES, batch = DEFAULT_BATCH, threads = 0;
    int examples = SST2_TRAIN_EXAMPLES;
    bool dropout = true;
    for (int i = 1; i < argc; i++) {
        int rc = 0;
        if (strcmp(argv[i], "--layers") == 0)
            rc = arg_int(argc, argv, &i, 1, BERT_LAYERS, &layers);
        else if (strcmp(argv[i], "--batches") == 0)
            rc = arg_int(argc, argv, &i, 1, 1000, &nbatches);
        else if (strcmp(argv[i], "--batch") == 0)
            rc = arg_int(argc, argv, &i, 1, 512, &batch);
        else if (strcmp(argv[i], "--threads") == 0)
            rc = arg_int(argc, argv, &i, 0, 1024, &threads);
        else if (strcmp(argv[i], "--no-dropout") == 0)
            dropout = false;
        else if (strcmp(argv[i], "--examples") == 0)
            rc = arg_int(argc, argv, &i, 1, 10000000, &examples);
        else {
            fprintf(stderr,
                    "usage: %s [--layers N] [--batches N] [--batch N] [--threads N] "
                    "[--examples N] [--no-dropout]\n",
                    argv[0]);
            return 2;
        }
        if (rc != 0) return 2;
    }
    if ((long)nbatches * batch > examples) {
        fprintf(stderr, "--batches x --batch exceeds --examples\n");
        return 2;
    }
    engine_set_blas_threads(threads);
    engine_set_threads(threads);
    double start = now_s();

    char err[512];
    int status = 1;
    aflo_dataset d;
    dataset_init(&d);
    aflo_model *m = NULL;
    aflo_batch_buffers bb = {0};
    int *plain = malloc((size_t)examples * sizeof *plain);
    int *bucketed = malloc((size_t)examples * sizeof *bucketed);
    int *scratch = malloc((size_t)examples * sizeof *scratch);
    if (!plain || !bucketed || !scratch || make_dataset(&d, examples) != 0 ||
        batch_buffers_init(&bb, batch, FIXED_PAD) != 0) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }

    /* The epoch orders, as the trainer builds them (epoch 0). */
    aflo_train_config tc;
    train_config_defaults(&tc, 1);
    tc.batch_size = batch;
    tc.seed = BENCH_SEED;
    train_epoch_order(&tc, &d, 0, plain, NULL);
    tc.length_bucketing = true;
    train_epoch_order(&tc, &d, 0, bucketed, scratch);

    printf("padding benchmark: %d examples, SST-2-shaped lengths (mean %.1f tokens, max %d)\n", d.n,
           (double)d.ntokens / d.n, d.max_len);
    printf("BLAS: %s; core %s; %d threads\n", engine_blas_info(), openblas_get_corename(),
           engine_threads());

    /* 1. The whole epoch, counted. */
    long ep[WAY_COUNT] = {epoch_tokens(&d, plain, batch, true),
                          epoch_tokens(&d, plain, batch, false),
                          epoch_tokens(&d, bucketed, batch, false)};
    printf("\nwhole epoch (batch %d, %d batches), tokens processed incl. padding:\n", batch,
           (d.n + batch - 1) / batch);
    printf("  %-18s %12s %9s %10s\n", "way", "tokens", "padding", "vs fixed");
    for (int w = 0; w < WAY_COUNT; w++)
        printf("  %-18s %12ld %8.1f%% %9.2fx\n", way_names[w], ep[w],
               100.0 * (1.0 - (double)d.ntokens / (double)ep[w]),
               (double)ep[WAY_FIXED] / (double)ep[w]);
    printf("  real tokens        %12zu\n", d.ntokens);

    /* 2. The first nbatches batches, run. */
    aflo_config c;
    bert_config(&c, layers);
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = AFLORA_RANK,
                              .alpha = 0.0f,
                              .targets = ALL_MODULES,
                              .projections = PROJ_FFN};
    m = model_create(&c, &ac, TASK_CLASSIFICATION, BENCH_LABELS, BENCH_SEED, err, sizeof err);
    if (!m || model_reserve(m, batch, FIXED_PAD, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    model_set_dropout(m, dropout);
    model_set_training(m, true);
    /* Warm-up: first touch of the activation arena and OpenBLAS's buffers at
     * the largest shape, untimed. */
    slice_result res[WAY_COUNT];
    memset(res, 0, sizeof res);
    if (run_batch(m, &d, plain, 0, batch, true, &bb, &res[0], err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    memset(res, 0, sizeof res);
    /* Batch k of each way in turn, so that load from other work on the
     * machine drifts over the three alike. */
    for (int k = 0; k < nbatches; k++)
        for (int w = 0; w < WAY_COUNT; w++) {
            const int *order = w == WAY_BUCKETED ? bucketed : plain;
            if (run_batch(m, &d, order, k, batch, w == WAY_FIXED, &bb, &res[w], err, sizeof err) !=
                0) {
                fprintf(stderr, "%s\n", err);
                goto out;
            }
        }
    printf("\nslice: the first %d batches of %d, BERT-base shape with %d of 12 layers, "
           "AFLoRA r=%d,\nforward + backward (dropout %s):\n",
           nbatches, batch, layers, AFLORA_RANK, dropout ? "on" : "off");
    printf("  %-18s %9s %9s %9s %10s %9s %9s %9s\n", "way", "tokens", "padding", "GFLOP", "time s",
           "GFLOP/s", "tok x", "time x");
    for (int w = 0; w < WAY_COUNT; w++) {
        double gf = (double)flops_total(&res[w].flops) / 1e9;
        printf("  %-18s %9ld %8.1f%% %9.1f %10.2f %9.1f %8.2fx %8.2fx\n", way_names[w],
               res[w].tokens, 100.0 * (1.0 - (double)res[w].real / (double)res[w].tokens), gf,
               res[w].seconds, gf / res[w].seconds,
               (double)res[WAY_FIXED].tokens / (double)res[w].tokens,
               res[WAY_FIXED].seconds / res[w].seconds);
    }
    printf("  (tok x, time x: fixed 256 divided by the row; FLOPs by kind, GFLOP: ");
    for (int w = 0; w < WAY_COUNT; w++)
        printf("%s%s %.1f/%.1f/%.1f", w ? "; " : "", way_names[w],
               (double)res[w].flops.by_kind[FLOP_FORWARD] / 1e9,
               (double)res[w].flops.by_kind[FLOP_BACKWARD_INPUT] / 1e9,
               (double)res[w].flops.by_kind[FLOP_BACKWARD_WEIGHT] / 1e9);
    printf(" forward/backward-input/backward-weight)\n");
    printf("  bucketing vs dynamic: %.2fx fewer tokens, %.2fx fewer FLOPs, %.2fx faster\n",
           (double)res[WAY_DYNAMIC].tokens / (double)res[WAY_BUCKETED].tokens,
           (double)flops_total(&res[WAY_DYNAMIC].flops) /
               (double)flops_total(&res[WAY_BUCKETED].flops),
           res[WAY_DYNAMIC].seconds / res[WAY_BUCKETED].seconds);
    printf("(whole run %.0f s)\n", now_s() - start);
    status = 0;
out:
    model_free(m);
    batch_buffers_free(&bb);
    dataset_free(&d);
    free(plain);
    free(bucketed);
    free(scratch);
    return status;
}
