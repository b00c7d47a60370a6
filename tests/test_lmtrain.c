/* test_lmtrain.c — a causal LM through the trainer: a tiny random LLaMA
 * model (vocabulary of the sp_bpe fixture tokenizer) fine-tuned with AFLoRA
 * on prompt/completion rows (lmdata.h). The evaluation loss must fall, the
 * reported perplexity must be exp(loss) of a token-weighted mean that
 * evaluate() recomputes by hand, projections must freeze on schedule, the
 * best epoch must be the lowest eval loss, and a checkpoint must round-trip.
 * The trainer refuses a causal LM with per-example labels and the reverse. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/lmdata.h"
#include "model/gemm.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"

static char err[512];

static tokenizer *load_tok(void) {
    tokenizer *t = tokenizer_load_dir("tests/tokenizer_fixtures/sp_bpe", err, sizeof err);
    if (!t) fail_msg("%s", err);
    return t;
}

static aflo_model *tiny_llama(int vocab, aflo_method method) {
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
    aflo_adapter_config ac = {.method = method,
                              .rank = 4,
                              .alpha = 8.0f,
                              .targets = ALL_MODULES,
                              .projections = PROJ_ALL};
    aflo_model *m = model_create(&c, &ac, TASK_CAUSAL_LM, vocab, 3, err, sizeof err);
    if (!m) fail_msg("%s", err);
    /* A frozen lm_head of std 0.02 caps every logit near 0.02 sqrt(H) |x|:
     * give it a pretrained model's scale (std 0.5), so an adapter below it
     * can move the loss. */
    aflo_param *head = model_find_param(m, "lm_head.weight");
    assert_non_null(head);
    for (size_t i = 0; i < head->size; i++) head->data[i] *= 25.0f;
    return m;
}

/* Rows that a model can learn: the completion repeats a word of the prompt. */
static char *make_rows(int n, int offset) {
    static const char *const words[] = {"red", "blue", "cat", "dog", "sun", "sea"};
    size_t cap = (size_t)n * 96 + 1;
    char *s = malloc(cap);
    assert_non_null(s);
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *w = words[(i + offset) % 6];
        size_t len = strlen(s);
        snprintf(s + len, cap - len, "{\"prompt\": \"say %s:\", \"completion\": \" %s %s\"}\n", w,
                 w, w);
    }
    return s;
}

static void load_rows(const tokenizer *tok, int n, int offset, aflo_dataset *d) {
    char *text = make_rows(n, offset);
    lmdata_opts o = {.max_seq_len = 64};
    dataset_init(d);
    if (lmdata_parse(text, strlen(text), "rows", tok, &o, d, NULL, err, sizeof err))
        fail_msg("%s", err);
    free(text);
}

typedef struct {
    double eval_loss[16];
    int evals, freezes;
} record;

static void on_eval(void *ctx, const aflo_eval_info *ev) {
    record *r = ctx;
    assert_true(ev->metrics->causal_lm);
    double ppl;
    assert_int_equal(metrics_lookup(ev->metrics, "perplexity", &ppl), 0);
    assert_true(fabs(ppl - exp(ev->metrics->loss)) <= 1e-9 * ppl);
    double acc;
    assert_int_equal(metrics_lookup(ev->metrics, "accuracy", &acc), -1);
    if (r->evals < 16) r->eval_loss[r->evals] = ev->metrics->loss;
    r->evals++;
}

static void on_freeze(void *ctx, const aflo_freeze_event *ev) {
    (void)ev;
    ((record *)ctx)->freezes++;
}

/* evaluate()'s loss is the mean over every target token: recompute it one
 * example at a time (each example's loss is a mean over its own targets). */
static void test_eval_is_token_mean(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    aflo_dataset d;
    load_rows(tok, 5, 0, &d);
    aflo_model *m = tiny_llama(tokenizer_vocab_size(tok), METHOD_AFLORA);
    aflo_metrics all, one;
    assert_int_equal(evaluate(m, &d, 4, 0, &all, err, sizeof err), 0);
    double sum = 0, tokens = 0;
    for (int i = 0; i < d.n; i++) {
        aflo_dataset single;
        dataset_init(&single);
        assert_int_equal(dataset_add_lm(&single, d.ids + d.offsets[i],
                                        d.token_labels + d.offsets[i], dataset_len(&d, i)),
                         0);
        assert_int_equal(evaluate(m, &single, 1, 0, &one, err, sizeof err), 0);
        double w = (double)dataset_loss_tokens(&d, i);
        sum += one.loss * w;
        tokens += w;
        dataset_free(&single);
    }
    assert_true(all.causal_lm);
    assert_int_equal(all.n, 5);
    if (fabs(all.loss - sum / tokens) > 1e-5 * all.loss)
        fail_msg("eval loss %.8f, by hand %.8f", all.loss, sum / tokens);
    assert_true(isfinite(all.loss) && all.loss > 0);
    model_free(m);
    dataset_free(&d);
    tokenizer_free(tok);
}

static void test_aflora_learns_and_freezes(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    aflo_dataset train, eval;
    load_rows(tok, 24, 0, &train);
    load_rows(tok, 6, 3, &eval);
    aflo_model *m = tiny_llama(tokenizer_vocab_size(tok), METHOD_AFLORA);
    aflo_train_config tc;
    train_config_defaults(&tc, 6);
    tc.batch_size = 4;
    tc.lr = 2e-2f;
    tc.max_grad_norm = 1.0f;
    tc.dropout = false;
    tc.pad_id = 0;
    aflo_trainer *t = trainer_create(m, &tc, &train, &eval, err, sizeof err);
    if (!t) fail_msg("%s", err);
    record r = {0};
    aflo_progress pr = {.ctx = &r, .on_eval = on_eval, .on_freeze = on_freeze};
    aflo_train_summary sum;
    assert_int_equal(trainer_run(t, &pr, NULL, &sum, err, sizeof err), TRAIN_DONE);
    assert_int_equal(r.evals, 6);
    fprintf(stderr, "causal LM eval loss by epoch:");
    for (int e = 0; e < 6; e++) fprintf(stderr, " %.4f", r.eval_loss[e]);
    fprintf(stderr, "; %d freezes\n", r.freezes);
    assert_true(r.eval_loss[5] < r.eval_loss[0] - 0.5);
    /* every A and B of q,k,v,o,gate,up,down in 2 blocks is frozen by the end */
    assert_int_equal(r.freezes, 2 * 7 * 2);
    int best = 0;
    for (int e = 1; e < 6; e++)
        if (r.eval_loss[e] < r.eval_loss[best]) best = e;
    assert_int_equal(sum.best_epoch, best);
    assert_true(sum.best_metrics.loss == r.eval_loss[best]);

    /* a checkpoint of the finished run, loaded by a trainer of a fresh model
     * built alike, gives that model the same weights: the same eval loss */
    char path[] = "/tmp/test_lmtrain_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(trainer_save_checkpoint(t, path, err, sizeof err), 0);
    aflo_model *m2 = tiny_llama(tokenizer_vocab_size(tok), METHOD_AFLORA);
    aflo_trainer *t2 = trainer_create(m2, &tc, &train, &eval, err, sizeof err);
    assert_non_null(t2);
    if (trainer_load_checkpoint(t2, path, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(trainer_step(t2), trainer_step(t));
    aflo_metrics a1, a2;
    assert_int_equal(evaluate(m, &eval, 4, 0, &a1, err, sizeof err), 0);
    assert_int_equal(evaluate(m2, &eval, 4, 0, &a2, err, sizeof err), 0);
    assert_true(a1.loss == a2.loss);
    assert_true(a1.loss != r.eval_loss[0]);
    unlink(path);
    trainer_free(t2);
    trainer_free(t);
    model_free(m2);
    model_free(m);
    dataset_free(&train);
    dataset_free(&eval);
    tokenizer_free(tok);
}

/* Step reports of a run: each step's targets and the running count. */
typedef struct {
    long tokens[64], seen[64];
    long first_step, steps;
    long cancel_at; /* cancel after this step (0: never) */
    atomic_int *cancel;
} step_log;

static void on_step_log(void *ctx, const aflo_step_info *i) {
    step_log *l = ctx;
    if (l->steps == 0) l->first_step = i->step;
    assert_true(l->steps < 64);
    l->tokens[l->steps] = i->tokens;
    l->seen[l->steps++] = i->tokens_seen;
    assert_true(i->step_s >= 0);
    if (l->cancel_at && i->step == l->cancel_at) atomic_store(l->cancel, 1);
}

/* tokens counts a step's targets; tokens_seen their sum since the start,
 * also across a resume from a checkpoint taken mid-epoch (recounted from
 * the rebuilt epoch order, not saved). */
static void test_tokens_seen_across_resume(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    aflo_dataset train;
    load_rows(tok, 10, 0, &train); /* 3 steps an epoch at batch 4: 4, 4, 2 */
    long per_epoch = 0;
    for (int i = 0; i < train.n; i++) per_epoch += (long)dataset_loss_tokens(&train, i);
    aflo_train_config tc;
    train_config_defaults(&tc, 3);
    tc.batch_size = 4;
    tc.dropout = false;
    tc.length_bucketing = false;

    aflo_model *m = tiny_llama(tokenizer_vocab_size(tok), METHOD_LORA);
    aflo_trainer *t = trainer_create(m, &tc, &train, NULL, err, sizeof err);
    if (!t) fail_msg("%s", err);
    step_log whole = {0};
    aflo_progress pr = {.ctx = &whole, .on_step = on_step_log};
    assert_int_equal(trainer_run(t, &pr, NULL, NULL, err, sizeof err), TRAIN_DONE);
    assert_int_equal(whole.steps, 9);
    long sum = 0;
    for (int i = 0; i < 9; i++) {
        assert_true(whole.tokens[i] > 0);
        sum += whole.tokens[i];
        assert_int_equal(whole.seen[i], sum);
    }
    assert_int_equal(whole.seen[2], per_epoch);
    assert_int_equal(whole.seen[8], 3 * per_epoch);
    trainer_free(t);
    model_free(m);

    /* the same run stopped after step 5 (mid-epoch 2), checkpointed, and
     * resumed by a fresh trainer: its steps report what the whole run did */
    atomic_int cancel = 0;
    m = tiny_llama(tokenizer_vocab_size(tok), METHOD_LORA);
    t = trainer_create(m, &tc, &train, NULL, err, sizeof err);
    assert_non_null(t);
    step_log first = {.cancel_at = 5, .cancel = &cancel};
    pr.ctx = &first;
    assert_int_equal(trainer_run(t, &pr, &cancel, NULL, err, sizeof err), TRAIN_CANCELLED);
    assert_int_equal(first.steps, 5);
    char path[] = "/tmp/test_lmtrain_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(trainer_save_checkpoint(t, path, err, sizeof err), 0);
    aflo_model *m2 = tiny_llama(tokenizer_vocab_size(tok), METHOD_LORA);
    aflo_trainer *t2 = trainer_create(m2, &tc, &train, NULL, err, sizeof err);
    assert_non_null(t2);
    if (trainer_load_checkpoint(t2, path, err, sizeof err)) fail_msg("%s", err);
    step_log rest = {0};
    pr.ctx = &rest;
    assert_int_equal(trainer_run(t2, &pr, NULL, NULL, err, sizeof err), TRAIN_DONE);
    assert_int_equal(rest.first_step, 6);
    assert_int_equal(rest.steps, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rest.tokens[i], whole.tokens[5 + i]);
        assert_int_equal(rest.seen[i], whole.seen[5 + i]);
    }
    unlink(path);
    trainer_free(t2);
    trainer_free(t);
    model_free(m2);
    model_free(m);
    dataset_free(&train);
    tokenizer_free(tok);
}

static void test_refusals(void **state) {
    (void)state;
    tokenizer *tok = load_tok();
    aflo_model *m = tiny_llama(tokenizer_vocab_size(tok), METHOD_LORA);
    aflo_dataset cls;
    dataset_init(&cls);
    int32_t ids[3] = {1, 5, 6};
    assert_int_equal(dataset_add(&cls, ids, NULL, 3, 0, 0.0f), 0);
    aflo_train_config tc;
    train_config_defaults(&tc, 1);
    assert_null(trainer_create(m, &tc, &cls, NULL, err, sizeof err));
    assert_non_null(strstr(err, "a causal LM trains on examples with labels per token"));
    aflo_metrics mt;
    assert_int_equal(evaluate(m, &cls, 2, 0, &mt, err, sizeof err), -1);
    assert_non_null(strstr(err, "a causal LM needs labels per token"));
    dataset_free(&cls);
    model_free(m);
    tokenizer_free(tok);
}

int main(void) {
    engine_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_is_token_mean),
        cmocka_unit_test(test_aflora_learns_and_freezes),
        cmocka_unit_test(test_tokens_seen_across_resume),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
