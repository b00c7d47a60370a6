/* blas_setup.h — the OpenBLAS kernel set ("core") and the thread team's
 * environment, chosen before any training and verified once.
 *
 * OpenBLAS (Debian 12: 0.3.21, DYNAMIC_ARCH) reads OPENBLAS_CORETYPE once,
 * when the library loads, and libgomp reads OMP_WAIT_POLICY likewise; a
 * program can only change them for itself by starting again. So
 * blas_setup() chooses the core (blas_choose), puts it in the environment
 * and, when that changed anything, re-executes the binary once with a
 * marker variable saying what was chosen and why (the marker also stops a
 * second re-exec). The process that runs on checks cblas_sgemm against a
 * reference (engine_blas_self_check); on a mismatch it falls back to the
 * next safer core (blas_fallback) by another re-exec, and logs it.
 *
 * Order of the choice: --blas-core NAME > AFLORAD_BLAS_CORE > an
 * OPENBLAS_CORETYPE already in the environment > auto (avx512bw: SkylakeX,
 * avx2: Haswell, else OpenBLAS's own detection). NAME may be "auto" or
 * "none" (OpenBLAS's own detection) too. */
#ifndef AFLO_BLAS_SETUP_H
#define AFLO_BLAS_SETUP_H

#include <stdbool.h>
#include <stddef.h>

/* One usage line for the commands that train (serve, run). */
#define BLAS_CORE_USAGE                                                                      \
    "  --blas-core NAME     AFLORAD_BLAS_CORE          OpenBLAS kernels: auto, SkylakeX, "   \
    "Haswell, Zen, Sandybridge, Prescott, ... or none (OpenBLAS's own detection) (default: " \
    "OPENBLAS_CORETYPE if set, else auto)\n"

/* The vector extensions that decide which cores this CPU can run. */
typedef struct {
    bool avx, avx2_fma, avx512, avx512_bf16; /* avx512: F, BW, VL, DQ, CD */
} blas_cpu;

typedef struct {
    char core[32];   /* canonical name; "" leaves OpenBLAS's own detection */
    char source[96]; /* why: "--blas-core", "AFLORAD_BLAS_CORE", "auto: avx512bw", ... */
} blas_choice;

blas_cpu blas_cpu_detect(void);

/* The pure choice: the first non-empty of flag, aflorad_env, openblas_env,
 * else auto from cpu. Known names are matched case-insensitively and must be
 * runnable by cpu; an unknown name is an error, except in OPENBLAS_CORETYPE
 * (OpenBLAS's own variable, passed through as the user set it). Returns 0,
 * or -1 with a message in err. */
int blas_choose(const char *flag, const char *aflorad_env, const char *openblas_env, blas_cpu cpu,
                blas_choice *out, char *err, size_t errlen);

/* The next safer core after the loaded one: SkylakeX/Cooperlake -> Haswell
 * -> Prescott (SSE3, any x86-64) -> NULL. Unknown names fall back to
 * Prescott. */
const char *blas_fallback(const char *loaded_core);

/* Takes --blas-core NAME / --blas-core=NAME out of argv (the command parsers
 * never see it), chooses the core, re-executes when the environment had to
 * change, runs the self-check, falls back on failure, and logs
 * "blas: OpenBLAS V core C (from S), sgemm self-check ok in N ms" (at debug
 * level when quiet). Returns 0; -2 with a message in err for a usage error
 * (a bad or missing name); -1 when no core is left that passes the check. AFLORAD_TEST_BLAS_CHECK_FAIL=CORE
 * (or "all") makes the check fail for that loaded core: tests prove the
 * fallback with it. */
int blas_setup(int *argc, char **argv, bool quiet, char *err, size_t errlen);

#endif
