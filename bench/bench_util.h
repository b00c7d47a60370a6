/* bench_util.h — what the step benchmarks (step.c, llama_step.c) share:
 * wall and CPU clocks, the process's peak RSS, the CPU's name, JSON string
 * output and the in-process sgemm rate that "% of peak" is measured
 * against. Header-only (static inline): every bench program is one .c file
 * (the Makefile links one binary per file). */
#ifndef AFLO_BENCH_UTIL_H
#define AFLO_BENCH_UTIL_H

#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/rng.h"

#define BENCH_MIB (1024.0 * 1024.0)

static inline double bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static inline double bench_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The process's peak resident set so far, MiB; -1 when unknown. */
static inline double bench_maxrss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* Best GFLOP/s of reps calls of C (M x N) = A (M x K) op(B), after one
 * untimed call; -1 with a message when the buffers cannot be had. */
static inline double bench_time_sgemm(int M, int N, int K, bool trans_b, int reps, uint64_t seed,
                                      char *err, size_t errlen) {
    float *A = malloc((size_t)M * K * sizeof *A);
    float *B = malloc((size_t)K * N * sizeof *B);
    float *C = malloc((size_t)M * N * sizeof *C);
    if (!A || !B || !C) {
        free(A);
        free(B);
        free(C);
        snprintf(err, errlen, "sgemm peak: out of memory");
        return -1.0;
    }
    aflo_rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = rng_uniform_range(&rng, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = rng_uniform_range(&rng, -1.0f, 1.0f);
    double best = 0.0;
    for (int rep = 0; rep <= reps; rep++) {
        double t0 = bench_now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                    A, K, B, trans_b ? K : N, 0.0f, C, N);
        double ms = bench_now_ms() - t0;
        double gf = 2.0 * M * N * K / (ms * 1e6);
        if (rep > 0 && gf > best) best = gf;
    }
    free(A);
    free(B);
    free(C);
    return best;
}

/* JSON string of s with quotes, backslashes and control bytes escaped. */
static inline void bench_json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* /proc/cpuinfo's first "model name", else "unknown". */
static inline void bench_cpu_model(char *out, size_t outlen) {
    snprintf(out, outlen, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *colon = strchr(line, ':');
        if (!colon) break;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        snprintf(out, outlen, "%s", colon);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}

#endif
