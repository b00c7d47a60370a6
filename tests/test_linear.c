/* test_linear.c — the adapted linear layer (model/linear.h) against a
 * scalar double reference: AFLoRA (s_b folded), LoRA, ELoRA-like ranks above
 * SB_FOLD_MAX_RANK, every combination of frozen A/B/s_d/s_b, input gradient
 * not wanted / written / accumulated, merged weight forced on and off, the
 * bias owned by the caller or not — at every ISA level the CPU runs. Plus
 * finite differences of the float forward, the FLOPs counted by kind, and
 * bit-identical results for 1 and 2 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/isa.h"
#include "model/linear.h"

/* ------------------------------------------------------------ fixture */

typedef enum { KIND_AFLORA, KIND_LORA, KIND_WIDE } adapter_kind;

typedef struct {
    aflo_param W, b, A, B, sd, sb;
    aflo_linear l;
    int N;
    float *X, *dY, *Y, *dX, *R;
    float *h1, *h3, *r2, *out, *or2;
} fixture;

static uint64_t rng_state;
static float urand(float lo, float hi) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((rng_state >> 40) * (1.0 / 16777216.0));
}

static float *randv(size_t n, float lo, float hi) {
    float *v = malloc(n * sizeof(float));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = urand(lo, hi);
    return v;
}

static void param(aflo_param *p, int rows, int cols, float lo, float hi) {
    memset(p, 0, sizeof *p);
    p->size = (size_t)rows * cols;
    p->ndim = cols == 1 ? 1 : 2;
    p->shape[0] = rows;
    p->shape[1] = cols;
    p->data = randv(p->size, lo, hi);
    p->grad = randv(p->size, -1, 1); /* non-zero: gradients accumulate */
    p->trainable = true;
}

static void fixture_init(fixture *fx, adapter_kind kind, int N, int in, int out, int r) {
    memset(fx, 0, sizeof *fx);
    rng_state = 42 + (uint64_t)kind * 1000 + (uint64_t)r;
    fx->N = N;
    param(&fx->W, out, in, -0.5f, 0.5f);
    param(&fx->b, out, 1, -0.5f, 0.5f);
    param(&fx->A, r, in, -0.5f, 0.5f);
    param(&fx->B, out, r, -0.5f, 0.5f);
    fx->l = (aflo_linear){.in = in,
                          .out = out,
                          .W = &fx->W,
                          .b = &fx->b,
                          .A = &fx->A,
                          .B = &fx->B,
                          .rank = r,
                          .scale = 1.0f};
    fx->W.trainable = fx->b.trainable = false;
    if (kind == KIND_LORA) {
        fx->l.scale = 2.0f;
    } else {
        param(&fx->sd, r, 1, 0.5f, 1.5f);
        param(&fx->sb, out, 1, 0.5f, 1.5f);
        fx->l.sd = &fx->sd;
        fx->l.sb = &fx->sb;
    }
    size_t mx = (size_t)(in > out ? in : out);
    fx->X = randv((size_t)N * in, -1, 1);
    fx->dY = randv((size_t)N * out, -1, 1);
    fx->R = randv((size_t)N * out, -1, 1);
    fx->Y = randv((size_t)N * out, -1, 1);
    fx->dX = randv((size_t)N * in, -1, 1);
    fx->h1 = randv((size_t)N * r, 0, 0);
    fx->h3 = randv((size_t)N * out, 0, 0);
    fx->r2 = randv(2 * (size_t)N * r, 0, 0);
    fx->out = randv((size_t)N * mx, 0, 0);
    fx->or2 = randv(2 * (size_t)out * r, 0, 0);
}

static void fixture_free(fixture *fx) {
    aflo_param *ps[] = {&fx->W, &fx->b, &fx->A, &fx->B, &fx->sd, &fx->sb};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
        free(ps[i]->data);
        free(ps[i]->grad);
    }
    float *vs[] = {fx->X, fx->dY, fx->R, fx->Y, fx->dX, fx->h1, fx->h3, fx->r2, fx->out, fx->or2};
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) free(vs[i]);
}

static aflo_linear_acts acts_of(fixture *fx) {
    bool h3 = fx->l.sb && !linear_folds_sb(&fx->l);
    return (aflo_linear_acts){.h1 = fx->h1, .h3 = h3 ? fx->h3 : NULL};
}
static aflo_linear_scratch scratch_of(fixture *fx) {
    return (aflo_linear_scratch){.r2 = fx->r2, .out = fx->out, .or2 = fx->or2};
}

/* ------------------------------------------------------ double reference */

typedef struct {
    double *Y, *dX, *dW, *db, *dA, *dB, *dsd, *dsb;
} reference;

static double *dcopy(const float *v, size_t n) {
    double *d = malloc(n * sizeof(double));
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) d[i] = v ? v[i] : 0.0;
    return d;
}

/* Forward and backward in double from the formulas of linear.h, starting
 * the gradients at their current (float) values. dX_init NULL: dX = 0 + ... */
static void reference_run(reference *ref, const fixture *fx, const float *dX_init) {
    const aflo_linear *l = &fx->l;
    int N = fx->N, in = l->in, out = l->out, r = l->rank;
    double s = l->scale;
    ref->Y = dcopy(NULL, (size_t)N * out);
    ref->dX = dcopy(dX_init, (size_t)N * in);
    ref->dW = dcopy(fx->W.grad, fx->W.size);
    ref->db = dcopy(fx->b.grad, fx->b.size);
    ref->dA = dcopy(fx->A.grad, fx->A.size);
    ref->dB = dcopy(fx->B.grad, fx->B.size);
    ref->dsd = dcopy(l->sd ? fx->sd.grad : NULL, (size_t)r);
    ref->dsb = dcopy(l->sb ? fx->sb.grad : NULL, (size_t)out);
    const float *X = fx->X, *W = fx->W.data, *A = fx->A.data, *B = fx->B.data, *dY = fx->dY;
    double *h1 = dcopy(NULL, (size_t)N * r), *g2 = dcopy(NULL, (size_t)N * r);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < r; j++) {
            double t = 0;
            for (int k = 0; k < in; k++) t += (double)X[n * in + k] * A[j * in + k];
            h1[n * r + j] = t;
        }
#define SD(j) (l->sd ? (double)fx->sd.data[j] : 1.0)
#define SB(c) (l->sb ? (double)fx->sb.data[c] : 1.0)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < out; c++) {
            double t = l->bias_by_caller ? 0.0 : fx->b.data[c], u = 0;
            for (int k = 0; k < in; k++) t += (double)X[n * in + k] * W[c * in + k];
            for (int j = 0; j < r; j++) u += SD(j) * h1[n * r + j] * B[c * r + j];
            ref->Y[n * out + c] = t + s * SB(c) * u;
        }
    for (int n = 0; n < N; n++)
        for (int j = 0; j < r; j++) {
            double t = 0;
            for (int c = 0; c < out; c++) t += (double)dY[n * out + c] * SB(c) * B[c * r + j];
            g2[n * r + j] = s * t;
        }
    for (int c = 0; c < out; c++) {
        for (int n = 0; n < N; n++) {
            double d = dY[n * out + c], u = 0;
            ref->db[c] += d;
            for (int k = 0; k < in; k++) ref->dW[c * in + k] += d * X[n * in + k];
            for (int j = 0; j < r; j++) {
                u += SD(j) * h1[n * r + j] * B[c * r + j];
                ref->dB[c * r + j] += s * SB(c) * d * SD(j) * h1[n * r + j];
            }
            ref->dsb[c] += s * d * u;
        }
    }
    for (int j = 0; j < r; j++)
        for (int n = 0; n < N; n++) {
            ref->dsd[j] += g2[n * r + j] * h1[n * r + j];
            for (int k = 0; k < in; k++)
                ref->dA[j * in + k] += g2[n * r + j] * SD(j) * X[n * in + k];
        }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < in; k++) {
            double t = 0;
            for (int c = 0; c < out; c++) t += (double)dY[n * out + c] * W[c * in + k];
            for (int j = 0; j < r; j++) t += g2[n * r + j] * SD(j) * A[j * in + k];
            ref->dX[n * in + k] += t;
        }
#undef SD
#undef SB
    free(h1);
    free(g2);
}

static void reference_free(reference *ref) {
    double *v[] = {ref->Y, ref->dX, ref->dW, ref->db, ref->dA, ref->dB, ref->dsd, ref->dsb};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) free(v[i]);
}

/* Every element within tol of the reference, relative to the tensor's
 * largest magnitude. */
static void assert_close(const char *what, const float *got, const double *want, size_t n,
                         double tol) {
    double big = 1e-30;
    for (size_t i = 0; i < n; i++) big = fmax(big, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > tol * big)
            fail_msg("%s[%zu]: got %.8g want %.8g (scale %.3g)", what, i, got[i], want[i], big);
}

static void assert_same(const char *what, const float *got, const float *before, size_t n) {
    if (memcmp(got, before, n * sizeof(float)) != 0) fail_msg("%s changed though frozen", what);
}

/* ----------------------------------------------------------- the matrix */

typedef struct {
    adapter_kind kind;
    int N, in, out, r;
} shape_case;

static const shape_case shapes[] = {
    {KIND_AFLORA, 50, 45, 70, 4},   /* odd widths: vector tails everywhere */
    {KIND_AFLORA, 46, 70, 45, 3},   /* a rank without its own kernel copy */
    {KIND_LORA, 50, 45, 70, 8},     /* s_d, s_b absent, scale 2 */
    {KIND_WIDE, 40, 33, 35, 40},    /* above SB_FOLD_MAX_RANK: s_b unfolded, BLAS */
    {KIND_AFLORA, 130, 200, 170, 4} /* big enough for the threaded paths */
};

#define TOL 2e-5

/* One combination: freeze mask (bit 0 A, 1 B, 2 s_d, 3 s_b), dX mode
 * (0 none, 1 written, 2 accumulated), bias owned by the caller. */
static void run_case(const shape_case *sc, unsigned frozen, int dx_mode, bool bias_by_caller) {
    fixture fx;
    fixture_init(&fx, sc->kind, sc->N, sc->in, sc->out, sc->r);
    fx.l.bias_by_caller = bias_by_caller;
    fx.A.trainable = !(frozen & 1);
    fx.B.trainable = !(frozen & 2);
    if (fx.l.sd) fx.sd.trainable = !(frozen & 4);
    if (fx.l.sb) fx.sb.trainable = !(frozen & 8);
    if (sc->kind != KIND_WIDE && frozen == 0 && dx_mode == 2) fx.W.trainable = true;
    fx.b.trainable = !bias_by_caller;

    size_t nX = (size_t)sc->N * sc->in;
    float *dX0 = malloc(nX * sizeof(float));
    assert_non_null(dX0);
    memcpy(dX0, fx.dX, nX * sizeof(float));
    reference ref;
    reference_run(&ref, &fx, dx_mode == 2 ? dX0 : NULL);

    /* the frozen tensors' gradients as they were */
    aflo_param *ps[] = {&fx.W, &fx.b, &fx.A, &fx.B, &fx.sd, &fx.sb};
    double *refs[] = {ref.dW, ref.db, ref.dA, ref.dB, ref.dsd, ref.dsb};
    const char *names[] = {"dW", "db", "dA", "dB", "dsd", "dsb"};
    float *before[6];
    for (int i = 0; i < 6; i++) {
        before[i] = malloc((ps[i]->size ? ps[i]->size : 1) * sizeof(float));
        assert_non_null(before[i]);
        if (ps[i]->size) memcpy(before[i], ps[i]->grad, ps[i]->size * sizeof(float));
    }

    aflo_flops f = {0};
    linear_forward(&fx.l, fx.Y, fx.X, sc->N, acts_of(&fx), scratch_of(&fx), &f);
    assert_close("Y", fx.Y, ref.Y, (size_t)sc->N * sc->out, TOL);
    linear_backward(&fx.l, dx_mode ? fx.dX : NULL, dx_mode == 2, fx.dY, fx.X, sc->N, acts_of(&fx),
                    scratch_of(&fx), &f);
    if (dx_mode) assert_close("dX", fx.dX, ref.dX, nX, TOL);
    for (int i = 0; i < 6; i++) {
        if (ps[i]->size && ps[i]->trainable)
            assert_close(names[i], ps[i]->grad, refs[i], ps[i]->size, TOL);
        else if (ps[i]->size)
            assert_same(names[i], ps[i]->grad, before[i], ps[i]->size);
        free(before[i]);
    }
    reference_free(&ref);
    free(dX0);
    fixture_free(&fx);
}

static void test_every_path_every_level(void **state) {
    (void)state;
    char err[128];
    aflo_isa saved = isa_level();
    engine_set_threads(2);
    int levels = 0;
    for (int isa = 0; isa < ISA_COUNT; isa++) {
        if (!isa_supported((aflo_isa)isa)) continue;
        assert_int_equal(isa_select((aflo_isa)isa, err, sizeof err), 0);
        levels++;
        for (int m = 0; m < 2; m++) {
            linear_set_merge_policy(m ? LINEAR_MERGE_ALWAYS : LINEAR_MERGE_NEVER);
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
                for (unsigned frozen = 0; frozen < 16; frozen++) {
                    if (shapes[s].kind == KIND_LORA && frozen >= 4) continue;
                    /* the big shape (threads) on a few masks: its reference is slow */
                    if (shapes[s].N > 100 && frozen != 0 && frozen != 3 && frozen != 12) continue;
                    for (int dx = 0; dx < 3; dx++)
                        run_case(&shapes[s], frozen, dx, ((frozen ^ (unsigned)dx) & 1) != 0);
                }
        }
    }
    assert_true(levels >= 1);
    linear_set_merge_policy(LINEAR_MERGE_AUTO);
    assert_int_equal(isa_select(saved, err, sizeof err), 0);
    engine_set_threads(1);
}

/* The unadapted layer too: Y = X W^T + b, its gradients, bias_by_caller. */
static void test_unadapted(void **state) {
    (void)state;
    for (int own = 0; own < 2; own++) {
        fixture fx;
        fixture_init(&fx, KIND_LORA, 60, 50, 300, 1);
        fx.l.A = fx.l.B = NULL;
        fx.l.rank = 0;
        fx.l.bias_by_caller = own;
        fx.W.trainable = true;
        fx.b.trainable = true;
        float *db0 = malloc(fx.b.size * sizeof(float));
        assert_non_null(db0);
        memcpy(db0, fx.b.grad, fx.b.size * sizeof(float));
        /* the reference with a zero adapter is the unadapted layer */
        float *Bsave = fx.B.data;
        fx.B.data = randv(fx.B.size, 0, 0);
        fx.l.A = &fx.A;
        fx.l.B = &fx.B;
        fx.l.rank = 1;
        reference ref;
        reference_run(&ref, &fx, NULL);
        fx.l.A = fx.l.B = NULL;
        fx.l.rank = 0;
        linear_forward(&fx.l, fx.Y, fx.X, fx.N, acts_of(&fx), scratch_of(&fx), NULL);
        assert_close("Y", fx.Y, ref.Y, (size_t)fx.N * 300, TOL);
        linear_backward(&fx.l, fx.dX, false, fx.dY, fx.X, fx.N, acts_of(&fx), scratch_of(&fx),
                        NULL);
        assert_close("dX", fx.dX, ref.dX, (size_t)fx.N * 50, TOL);
        assert_close("dW", fx.W.grad, ref.dW, fx.W.size, TOL);
        if (own)
            assert_same("db", fx.b.grad, db0, fx.b.size);
        else
            assert_close("db", fx.b.grad, ref.db, fx.b.size, TOL);
        free(fx.B.data);
        fx.B.data = Bsave;
        free(db0);
        reference_free(&ref);
        fixture_free(&fx);
    }
}

/* --------------------------------------------------- finite differences */

static double loss_of(fixture *fx) {
    linear_forward(&fx->l, fx->Y, fx->X, fx->N, acts_of(fx), scratch_of(fx), NULL);
    double L = 0;
    for (size_t i = 0; i < (size_t)fx->N * fx->l.out; i++) L += (double)fx->Y[i] * fx->R[i];
    return L;
}

/* d(sum Y ⊙ R)/dv[i] by central differences against the backward's grad. */
static void check_fd(fixture *fx, const char *what, float *v, const float *grad, size_t n) {
    for (int t = 0; t < 6; t++) {
        size_t i = (size_t)(urand(0, 1) * (float)n) % n;
        float keep = v[i], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
        v[i] = keep + h;
        double Lp = loss_of(fx);
        v[i] = keep - h;
        double Lm = loss_of(fx);
        v[i] = keep;
        double fd = (Lp - Lm) / (2.0 * h);
        if (fabs(fd - grad[i]) > 2e-3 * (1.0 + fabs(fd)))
            fail_msg("%s[%zu]: finite difference %.6g, backward %.6g", what, i, fd, grad[i]);
    }
}

static void test_finite_differences(void **state) {
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        for (int m = 0; m < 2; m++) {
            linear_set_merge_policy(m ? LINEAR_MERGE_ALWAYS : LINEAR_MERGE_NEVER);
            fixture fx;
            fixture_init(&fx, shapes[s].kind, shapes[s].N, shapes[s].in, shapes[s].out,
                         shapes[s].r);
            aflo_param *ps[] = {&fx.A, &fx.B, &fx.sd, &fx.sb, &fx.b};
            for (size_t i = 0; i < 5; i++)
                if (ps[i]->size) memset(ps[i]->grad, 0, ps[i]->size * sizeof(float));
            fx.b.trainable = true;
            memset(fx.dX, 0, (size_t)fx.N * fx.l.in * sizeof(float));
            (void)loss_of(&fx);
            /* dL/dY = R */
            memcpy(fx.dY, fx.R, (size_t)fx.N * fx.l.out * sizeof(float));
            linear_backward(&fx.l, fx.dX, false, fx.dY, fx.X, fx.N, acts_of(&fx), scratch_of(&fx),
                            NULL);
            check_fd(&fx, "A", fx.A.data, fx.A.grad, fx.A.size);
            check_fd(&fx, "B", fx.B.data, fx.B.grad, fx.B.size);
            check_fd(&fx, "b", fx.b.data, fx.b.grad, fx.b.size);
            check_fd(&fx, "X", fx.X, fx.dX, (size_t)fx.N * fx.l.in);
            if (fx.l.sd) check_fd(&fx, "sd", fx.sd.data, fx.sd.grad, fx.sd.size);
            if (fx.l.sb) check_fd(&fx, "sb", fx.sb.data, fx.sb.grad, fx.sb.size);
            fixture_free(&fx);
        }
    }
    linear_set_merge_policy(LINEAR_MERGE_AUTO);
}

/* ---------------------------------------------------------------- FLOPs */

static void test_flops_by_kind(void **state) {
    (void)state;
    const uint64_t N = 50, in = 45, out = 70, r = 4;
    linear_set_merge_policy(LINEAR_MERGE_NEVER);
    fixture fx;
    fixture_init(&fx, KIND_AFLORA, (int)N, (int)in, (int)out, (int)r);
    aflo_flops f = {0};
    linear_forward(&fx.l, fx.Y, fx.X, (int)N, acts_of(&fx), scratch_of(&fx), &f);
    assert_int_equal(f.by_kind[FLOP_FORWARD], 2 * N * in * out + 2 * N * in * r + 2 * N * out * r);
    /* all adapter tensors train, dX wanted */
    memset(&f, 0, sizeof f);
    linear_backward(&fx.l, fx.dX, false, fx.dY, fx.X, (int)N, acts_of(&fx), scratch_of(&fx), &f);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_INPUT],
                     2 * N * out * in + 2 * N * out * r + 2 * N * in * r);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_WEIGHT], 2 * N * out * r + 2 * N * in * r);
    /* A and B frozen: dA's product goes, G stays for ds_b */
    fx.A.trainable = fx.B.trainable = false;
    memset(&f, 0, sizeof f);
    linear_backward(&fx.l, NULL, false, fx.dY, fx.X, (int)N, acts_of(&fx), scratch_of(&fx), &f);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_WEIGHT], 2 * N * out * r);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_INPUT], 2 * N * out * r); /* g for ds_d */
    /* only s_d trains: no weight product at all */
    fx.sb.trainable = false;
    memset(&f, 0, sizeof f);
    linear_backward(&fx.l, NULL, false, fx.dY, fx.X, (int)N, acts_of(&fx), scratch_of(&fx), &f);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_WEIGHT], 0);
    /* merged input gradient: the W_eff build instead of the dX pass */
    linear_set_merge_policy(LINEAR_MERGE_ALWAYS);
    memset(&f, 0, sizeof f);
    linear_backward(&fx.l, fx.dX, false, fx.dY, fx.X, (int)N, acts_of(&fx), scratch_of(&fx), &f);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_INPUT],
                     2 * N * out * in + 2 * out * in * r + 2 * N * out * r);
    linear_set_merge_policy(LINEAR_MERGE_AUTO);
    fixture_free(&fx);
}

/* ------------------------------------------------------- thread count */

/* Every output element is computed by one thread in a fixed order: 1 and
 * 2 threads give the same bits. */
static void test_threads_bit_identical(void **state) {
    (void)state;
    float *res[2][4];
    for (int t = 0; t < 2; t++) {
        engine_set_threads(t + 1);
        fixture fx;
        fixture_init(&fx, KIND_AFLORA, 130, 200, 170, 4);
        linear_forward(&fx.l, fx.Y, fx.X, fx.N, acts_of(&fx), scratch_of(&fx), NULL);
        linear_backward(&fx.l, fx.dX, true, fx.dY, fx.X, fx.N, acts_of(&fx), scratch_of(&fx), NULL);
        float *src[4] = {fx.Y, fx.dX, fx.A.grad, fx.sb.grad};
        size_t n[4] = {130 * 170, 130 * 200, fx.A.size, fx.sb.size};
        for (int i = 0; i < 4; i++) {
            res[t][i] = malloc(n[i] * sizeof(float));
            assert_non_null(res[t][i]);
            memcpy(res[t][i], src[i], n[i] * sizeof(float));
            if (t == 1) {
                assert_memory_equal(res[0][i], res[1][i], n[i] * sizeof(float));
                free(res[0][i]);
                free(res[1][i]);
            }
        }
        fixture_free(&fx);
    }
    engine_set_threads(1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_path_every_level), cmocka_unit_test(test_unadapted),
        cmocka_unit_test(test_finite_differences),     cmocka_unit_test(test_flops_by_kind),
        cmocka_unit_test(test_threads_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
