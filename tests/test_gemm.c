/* test_gemm.c — the BLAS start-up checks: engine_blas_self_check passes on
 * the loaded OpenBLAS and catches each kind of wrong sgemm (a wrong element
 * in a skinny product, a write past the matrix, beta ignored, NaN read
 * through beta = 0) while tolerating float rounding; and blas_setup's pure
 * parts: the choice order --blas-core > AFLORAD_BLAS_CORE > OPENBLAS_CORETYPE
 * > auto, name validation against the CPU, and the fallback chain.
 *
 * The faults are made by interposing cblas_sgemm: this executable's
 * definition wins over libopenblas's for gemm.c's call, forwards to the real
 * one (dlsym RTLD_NEXT) and then breaks the result as the test asks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas_setup.h"
#include "model/gemm.h"

/* ------------------------------------------------------ interposed sgemm */

typedef enum {
    FAULT_NONE,
    FAULT_SKINNY_ELEMENT,  /* one element 1% off, only in products with N == 4 */
    FAULT_WRITE_PAST,      /* writes into the padding after row 0 of C */
    FAULT_IGNORE_BETA,     /* computes as if beta were 0 */
    FAULT_READ_C_AT_BETA0, /* beta = 0 multiplies C in (0 * NaN = NaN) */
    FAULT_ROUNDING,        /* every element 2 ulp off: must still pass */
} sgemm_fault;

static sgemm_fault fault;

typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE,
                         const enum CBLAS_TRANSPOSE, const blasint, const blasint, const blasint,
                         const float, const float *, const blasint, const float *, const blasint,
                         const float, float *, const blasint);

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
                 const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N, const blasint K,
                 const float alpha, const float *A, const blasint lda, const float *B,
                 const blasint ldb, const float beta, float *C, const blasint ldc) {
    static sgemm_fn real;
    if (!real) {
        void *sym = dlsym(RTLD_NEXT, "cblas_sgemm");
        assert_non_null(sym);
        memcpy(&real, &sym, sizeof real);
    }
    float *C0 = NULL;
    if (fault == FAULT_READ_C_AT_BETA0 && beta == 0.0f) {
        C0 = malloc((size_t)M * ldc * sizeof *C0);
        assert_non_null(C0);
        memcpy(C0, C, (size_t)M * ldc * sizeof *C0);
    }
    real(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, fault == FAULT_IGNORE_BETA ? 0.0f : beta, C,
         ldc);
    switch (fault) {
    case FAULT_SKINNY_ELEMENT:
        if (N == 4) C[(size_t)(M / 2) * ldc + 3] *= 1.01f;
        break;
    case FAULT_WRITE_PAST:
        if (ldc > N) C[N] = 0.0f;
        break;
    case FAULT_READ_C_AT_BETA0:
        if (C0)
            for (blasint i = 0; i < M; i++)
                for (blasint j = 0; j < N; j++)
                    C[(size_t)i * ldc + j] += 0.0f * C0[(size_t)i * ldc + j];
        free(C0);
        break;
    case FAULT_ROUNDING:
        for (blasint i = 0; i < M; i++)
            for (blasint j = 0; j < N; j++) {
                float *c = &C[(size_t)i * ldc + j];
                *c = nextafterf(nextafterf(*c, INFINITY), INFINITY);
            }
        break;
    default: break;
    }
}

/* ----------------------------------------------------------- self-check */

static void test_self_check_passes_on_the_loaded_blas(void **state) {
    (void)state;
    char err[512] = "";
    fault = FAULT_NONE;
    assert_int_equal(engine_blas_self_check(err, sizeof err), 0);
    fault = FAULT_ROUNDING; /* float rounding is not a wrong kernel */
    int rc = engine_blas_self_check(err, sizeof err);
    fault = FAULT_NONE;
    if (rc != 0) fail_msg("rounding flagged: %s", err);
    /* what the log line names */
    assert_true(engine_blas_version()[0] >= '0' && engine_blas_version()[0] <= '9');
    assert_true(strlen(engine_blas_core()) > 0);
}

static void expect_caught(sgemm_fault f, const char *words) {
    char err[512] = "";
    fault = f;
    int rc = engine_blas_self_check(err, sizeof err);
    fault = FAULT_NONE;
    assert_int_equal(rc, -1);
    if (!strstr(err, words)) fail_msg("fault %d: message '%s' lacks '%s'", (int)f, err, words);
}

static void test_self_check_catches_wrong_kernels(void **state) {
    (void)state;
    expect_caught(FAULT_SKINNY_ELEMENT, "x4x");
    expect_caught(FAULT_WRITE_PAST, "wrote past");
    expect_caught(FAULT_IGNORE_BETA, "beta");
    expect_caught(FAULT_READ_C_AT_BETA0, "nan");
}

/* -------------------------------------------------------- core choice */

#define CPU_AVX512 \
    { .avx = true, .avx2_fma = true, .avx512 = true }
#define CPU_AVX2 \
    { .avx = true, .avx2_fma = true }
#define CPU_SSE \
    { .avx = false }

typedef struct {
    const char *flag, *aflorad_env, *openblas_env;
    blas_cpu cpu;
    int rc;
    const char *core;   /* expected (canonical) core, "" for OpenBLAS's own */
    const char *source; /* expected source, or a word of the error */
} choice_case;

static const choice_case choice_cases[] = {
    /* the order: flag > AFLORAD_BLAS_CORE > OPENBLAS_CORETYPE > auto */
    {"Haswell", "Zen", "Sandybridge", CPU_AVX512, 0, "Haswell", "--blas-core"},
    {NULL, "Zen", "Sandybridge", CPU_AVX512, 0, "Zen", "AFLORAD_BLAS_CORE"},
    {"", "", "Sandybridge", CPU_AVX512, 0, "Sandybridge", "OPENBLAS_CORETYPE"},
    {NULL, NULL, NULL, CPU_AVX512, 0, "SkylakeX", "auto: avx512bw"},
    {NULL, NULL, NULL, CPU_AVX2, 0, "Haswell", "auto: avx2"},
    {NULL, NULL, NULL, CPU_SSE, 0, "", "auto: no AVX2"},
    /* names case-insensitive, canonical spelling out */
    {"skylakex", NULL, NULL, CPU_AVX512, 0, "SkylakeX", "--blas-core"},
    /* "auto" anywhere skips the rest, even an OPENBLAS_CORETYPE */
    {"auto", "Zen", "Haswell", CPU_AVX2, 0, "Haswell", "auto: avx2"},
    {NULL, "AUTO", "Sandybridge", CPU_AVX512, 0, "SkylakeX", "auto: avx512bw"},
    /* "none": OpenBLAS's own detection */
    {"none", NULL, "Haswell", CPU_AVX512, 0, "", "--blas-core"},
    /* OPENBLAS_CORETYPE is OpenBLAS's own variable: unknown names pass */
    {NULL, NULL, "Piledriver", CPU_AVX2, 0, "Piledriver", "OPENBLAS_CORETYPE"},
    /* errors: unknown names in aflorad's settings, cores the CPU cannot run */
    {"Bogus", NULL, NULL, CPU_AVX512, -1, NULL, "unknown OpenBLAS core 'Bogus'"},
    {NULL, "bogus", NULL, CPU_AVX512, -1, NULL, "AFLORAD_BLAS_CORE"},
    {"SkylakeX", NULL, NULL, CPU_AVX2, -1, NULL, "needs AVX-512"},
    {NULL, NULL, "Haswell", CPU_SSE, -1, NULL, "needs AVX2"},
    {"Cooperlake", NULL, NULL, CPU_AVX512, -1, NULL, "BF16"},
};

static void test_choice_order_and_validation(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof choice_cases / sizeof *choice_cases; i++) {
        const choice_case *c = &choice_cases[i];
        blas_choice ch;
        char err[512] = "";
        int rc =
            blas_choose(c->flag, c->aflorad_env, c->openblas_env, c->cpu, &ch, err, sizeof err);
        if (rc != c->rc) fail_msg("case %zu: rc %d, want %d (%s)", i, rc, c->rc, err);
        if (rc == 0) {
            if (strcmp(ch.core, c->core) != 0 || !strstr(ch.source, c->source))
                fail_msg("case %zu: core '%s' from '%s', want '%s' from '%s'", i, ch.core,
                         ch.source, c->core, c->source);
        } else if (!strstr(err, c->source)) {
            fail_msg("case %zu: error '%s' lacks '%s'", i, err, c->source);
        }
    }
}

static void test_fallback_chain_gets_safer_and_ends(void **state) {
    (void)state;
    assert_string_equal(blas_fallback("SkylakeX"), "Haswell");
    assert_string_equal(blas_fallback("Cooperlake"), "Haswell");
    assert_string_equal(blas_fallback("Haswell"), "Prescott");
    assert_string_equal(blas_fallback("Zen"), "Prescott");
    assert_null(blas_fallback("Prescott"));
    assert_string_equal(blas_fallback("SomethingNew"), "Prescott");
    /* from any start the chain ends within a few steps: no re-exec loop */
    const char *starts[] = {"Cooperlake", "SkylakeX", "Zen",      "Haswell",   "Sandybridge",
                            "Nehalem",    "Core2",    "Prescott", "Piledriver"};
    for (size_t i = 0; i < sizeof starts / sizeof *starts; i++) {
        const char *c = starts[i];
        int steps = 0;
        while (c && steps < 4) c = blas_fallback(c), steps++;
        if (c) fail_msg("fallback from %s does not end", starts[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_check_passes_on_the_loaded_blas),
        cmocka_unit_test(test_self_check_catches_wrong_kernels),
        cmocka_unit_test(test_choice_order_and_validation),
        cmocka_unit_test(test_fallback_chain_gets_safer_and_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
