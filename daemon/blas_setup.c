/* blas_setup.c — choose, set, verify and log the OpenBLAS core and the
 * OpenMP wait policy before the commands that compute run (blas_setup.h).
 *
 * The only way to change what OpenBLAS and libgomp read at load time is a
 * new process image: execv("/proc/self/exe") with the same argv and the
 * changed environment. AFLORAD_BLAS_SETUP carries "CORE|SOURCE" across it:
 * its presence says "already chosen, do not re-exec for the choice again",
 * and SOURCE keeps the reason for the log line. A failed self-check re-execs
 * once more per step down the fallback chain, which ends, so no loop. */
#include "blas_setup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "model/gemm.h"

#define MARKER_ENV "AFLORAD_BLAS_SETUP"
#define TEST_FAIL_ENV "AFLORAD_TEST_BLAS_CHECK_FAIL"

typedef enum { NEEDS_SSE3, NEEDS_AVX, NEEDS_AVX2, NEEDS_AVX512, NEEDS_AVX512_BF16 } core_needs;

/* OpenBLAS 0.3.21's x86-64 kernel sets aflorad knows, safest last. Cores
 * not listed can still be forced through OPENBLAS_CORETYPE. */
static const struct {
    const char *name;
    core_needs needs;
    const char *fallback;
} cores[] = {
    {"Cooperlake", NEEDS_AVX512_BF16, "Haswell"},
    {"SkylakeX", NEEDS_AVX512, "Haswell"},
    {"Zen", NEEDS_AVX2, "Prescott"},
    {"Haswell", NEEDS_AVX2, "Prescott"},
    {"Sandybridge", NEEDS_AVX, "Prescott"},
    {"Nehalem", NEEDS_SSE3, "Prescott"},
    {"Core2", NEEDS_SSE3, "Prescott"},
    {"Prescott", NEEDS_SSE3, NULL},
};
#define N_CORES (sizeof cores / sizeof *cores)

static const char *const needs_names[] = {"SSE3", "AVX", "AVX2 and FMA", "AVX-512", "AVX-512 BF16"};

static int find_core(const char *name) {
    for (size_t i = 0; i < N_CORES; i++)
        if (strcasecmp(name, cores[i].name) == 0) return (int)i;
    return -1;
}

static bool cpu_runs(blas_cpu cpu, core_needs needs) {
    switch (needs) {
    case NEEDS_SSE3: return true; /* every x86-64-v2 CPU, the build's baseline */
    case NEEDS_AVX: return cpu.avx;
    case NEEDS_AVX2: return cpu.avx2_fma;
    case NEEDS_AVX512: return cpu.avx512;
    case NEEDS_AVX512_BF16: return cpu.avx512 && cpu.avx512_bf16;
    }
    return false;
}

blas_cpu blas_cpu_detect(void) {
    __builtin_cpu_init();
    blas_cpu c = {
        .avx = __builtin_cpu_supports("avx"),
        .avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
        .avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512cd"),
        .avx512_bf16 = __builtin_cpu_supports("avx512bf16"),
    };
    return c;
}

static void choose_auto(blas_cpu cpu, blas_choice *out) {
    if (cpu.avx512) {
        snprintf(out->core, sizeof out->core, "SkylakeX");
        snprintf(out->source, sizeof out->source, "auto: avx512bw");
    } else if (cpu.avx2_fma) {
        snprintf(out->core, sizeof out->core, "Haswell");
        snprintf(out->source, sizeof out->source, "auto: avx2");
    } else {
        out->core[0] = '\0';
        snprintf(out->source, sizeof out->source, "auto: no AVX2, OpenBLAS's own detection");
    }
}

int blas_choose(const char *flag, const char *aflorad_env, const char *openblas_env, blas_cpu cpu,
                blas_choice *out, char *err, size_t errlen) {
    const struct {
        const char *value, *source;
    } order[] = {
        {flag, "--blas-core"},
        {aflorad_env, "AFLORAD_BLAS_CORE"},
        {openblas_env, "OPENBLAS_CORETYPE"},
    };
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const char *v = order[i].value;
        if (!v || !*v) continue;
        if (strcasecmp(v, "auto") == 0) break;
        snprintf(out->source, sizeof out->source, "%s", order[i].source);
        if (strcasecmp(v, "none") == 0) return 0; /* core "": OpenBLAS's own detection */
        int c = find_core(v);
        if (c < 0) {
            if (v == openblas_env && strlen(v) < sizeof out->core) {
                snprintf(out->core, sizeof out->core, "%s", v);
                return 0;
            }
            char known[256] = "";
            for (size_t k = 0; k < N_CORES; k++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s, ",
                         cores[k].name);
            return snprintf(err, errlen, "%s: unknown OpenBLAS core '%.40s' (known: %sauto, none)",
                            order[i].source, v, known),
                   -1;
        }
        if (!cpu_runs(cpu, cores[c].needs))
            return snprintf(err, errlen, "%s: OpenBLAS core %s needs %s, which this CPU lacks",
                            order[i].source, cores[c].name, needs_names[cores[c].needs]),
                   -1;
        snprintf(out->core, sizeof out->core, "%s", cores[c].name);
        return 0;
    }
    choose_auto(cpu, out);
    return 0;
}

const char *blas_fallback(const char *loaded_core) {
    int c = loaded_core ? find_core(loaded_core) : -1;
    return c < 0 ? "Prescott" : cores[c].fallback;
}

/* Sets OPENBLAS_CORETYPE (or removes it) and OMP_WAIT_POLICY as the choice
 * wants; true when the environment changed, i.e. a re-exec is needed. */
static bool apply_env(const blas_choice *ch) {
    bool changed = false;
    const char *now = getenv("OPENBLAS_CORETYPE");
    if (ch->core[0] && (!now || strcmp(now, ch->core) != 0)) {
        setenv("OPENBLAS_CORETYPE", ch->core, 1);
        changed = true;
    } else if (!ch->core[0] && now) {
        unsetenv("OPENBLAS_CORETYPE");
        changed = true;
    }
    /* Idle OpenMP threads sleep instead of spinning against OpenBLAS's own
     * threads (bench/threads.sh, README "Speed: BLAS core and threads");
     * a user's own value wins. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        changed = true;
    }
    return changed;
}

/* Starts this binary again with the same argv and the current environment
 * plus the marker; returns only if execv failed. */
static void reexec(char **argv, const blas_choice *ch) {
    char marker[sizeof ch->core + sizeof ch->source + 2];
    snprintf(marker, sizeof marker, "%s|%s", ch->core[0] ? ch->core : "none", ch->source);
    setenv(MARKER_ENV, marker, 1);
    execv("/proc/self/exe", argv);
    unsetenv(MARKER_ENV);
}

/* The marker, if present, into ch; removed from the environment so that no
 * program this one starts mistakes it for its own. */
static bool take_marker(blas_choice *ch) {
    const char *m = getenv(MARKER_ENV);
    if (!m) return false;
    memset(ch, 0, sizeof *ch);
    const char *bar = strchr(m, '|');
    size_t n = bar ? (size_t)(bar - m) : strlen(m);
    if (n >= sizeof ch->core) n = sizeof ch->core - 1;
    memcpy(ch->core, m, n);
    if (strcmp(ch->core, "none") == 0) ch->core[0] = '\0';
    snprintf(ch->source, sizeof ch->source, "%s", bar ? bar + 1 : "re-exec");
    unsetenv(MARKER_ENV);
    return true;
}

/* --blas-core NAME or --blas-core=NAME: its value (NULL if absent) and the
 * argv slots it takes, so the caller can remove them. */
static int find_flag(int argc, char **argv, const char **value, int *at, int *width, char *err,
                     size_t errlen) {
    static const char flag[] = "--blas-core";
    *value = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], flag) == 0) {
            if (i + 1 >= argc) return snprintf(err, errlen, "%s needs a value", flag), -1;
            *value = argv[i + 1], *at = i, *width = 2;
        } else if (strncmp(argv[i], flag, sizeof flag - 1) == 0 &&
                   argv[i][sizeof flag - 1] == '=') {
            *value = argv[i] + sizeof flag, *at = i, *width = 1;
        }
    }
    return 0;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int blas_setup(int *argc, char **argv, bool quiet, char *err, size_t errlen) {
    const char *flag;
    int at = 0, width = 0;
    if (find_flag(*argc, argv, &flag, &at, &width, err, errlen) != 0) return -2;
    blas_choice ch;
    if (!take_marker(&ch)) {
        if (blas_choose(flag, getenv("AFLORAD_BLAS_CORE"), getenv("OPENBLAS_CORETYPE"),
                        blas_cpu_detect(), &ch, err, errlen) != 0)
            return -2;
        if (apply_env(&ch)) {
            reexec(argv, &ch);
            log_warn("blas: could not restart with OPENBLAS_CORETYPE=%s (%s); the kernels stay "
                     "as loaded",
                     ch.core[0] ? ch.core : "<unset>", strerror(errno));
        }
    }
    if (width) {
        for (int i = at; i + width <= *argc; i++) argv[i] = argv[i + width];
        *argc -= width;
    }

    const char *loaded = engine_blas_core();
    if (ch.core[0] && strcasecmp(loaded, ch.core) != 0)
        log_warn("blas: asked OpenBLAS for core %s (%s), it loaded %s", ch.core, ch.source, loaded);
    char why[512];
    double t0 = now_ms();
    int bad = engine_blas_self_check(why, sizeof why);
    double ms = now_ms() - t0;
    const char *forced = getenv(TEST_FAIL_ENV);
    if (!bad && forced && (strcasecmp(forced, "all") == 0 || strcasecmp(forced, loaded) == 0)) {
        snprintf(why, sizeof why, "forced by %s=%s", TEST_FAIL_ENV, forced);
        bad = -1;
    }
    if (bad) {
        const char *next = blas_fallback(loaded);
        if (!next)
            return snprintf(err, errlen,
                            "blas: sgemm self-check failed with OpenBLAS core %s (from %s) and no "
                            "safer core is left: %s",
                            loaded, ch.source, why),
                   -1;
        log_warn("blas: sgemm self-check failed with OpenBLAS core %s (from %s): %s; falling back "
                 "to %s",
                 loaded, ch.source, why, next);
        blas_choice fb;
        snprintf(fb.core, sizeof fb.core, "%s", next);
        snprintf(fb.source, sizeof fb.source, "fallback: %s failed the self-check", loaded);
        setenv("OPENBLAS_CORETYPE", fb.core, 1);
        /* argv still as this process got it: the flag is gone, the marker
         * says the choice is made */
        argv[*argc] = NULL;
        reexec(argv, &fb);
        return snprintf(err, errlen, "blas: could not restart with OPENBLAS_CORETYPE=%s: %s",
                        fb.core, strerror(errno)),
               -1;
    }
    log_msg(quiet ? LOG_DEBUG : LOG_INFO,
            "blas: OpenBLAS %s core %s (from %s), sgemm self-check ok in %.0f ms",
            engine_blas_version(), loaded, ch.source, ms);
    return 0;
}
