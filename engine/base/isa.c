/* isa.c — which vector level the kernels run at (see isa.h). */
#include "base/isa.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"

static const char *const names[ISA_COUNT] = {"base", "avx2", "avx512"};

/* -1 until chosen. */
static atomic_int current = -1;
static char description[160];

const char *isa_name(aflo_isa isa) { return isa >= 0 && isa < ISA_COUNT ? names[isa] : "?"; }

int isa_parse(const char *name, aflo_isa *out) {
    for (int i = 0; i < ISA_COUNT; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (aflo_isa)i;
            return 0;
        }
    return -1;
}

bool isa_supported(aflo_isa isa) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    switch (isa) {
    case ISA_BASE: return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
    case ISA_AVX2:
        return isa_supported(ISA_BASE) && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    case ISA_AVX512:
        return isa_supported(ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
    default: return false;
    }
#else
    return isa == ISA_BASE;
#endif
}

aflo_isa isa_best(void) {
    for (int i = ISA_COUNT - 1; i > 0; i--)
        if (isa_supported((aflo_isa)i)) return (aflo_isa)i;
    return ISA_BASE;
}

/* First use: the CPU's best, unless AFLORAD_ISA names a level it can run.
 * Two threads racing here compute the same answer. */
static aflo_isa choose(void) {
    aflo_isa best = isa_best(), pick = best;
    const char *env = getenv("AFLORAD_ISA");
    aflo_isa want;
    if (!env || !*env)
        snprintf(description, sizeof description, "%s (the best this CPU supports)",
                 isa_name(best));
    else if (isa_parse(env, &want) != 0)
        snprintf(description, sizeof description,
                 "%s (AFLORAD_ISA=%.32s ignored: not one of base, avx2, avx512)", isa_name(best),
                 env);
    else if (!isa_supported(want))
        snprintf(description, sizeof description,
                 "%s (AFLORAD_ISA=%s ignored: this CPU does not support it)", isa_name(best), env);
    else {
        pick = want;
        snprintf(description, sizeof description, "%s (from AFLORAD_ISA; the CPU's best is %s)",
                 isa_name(want), isa_name(best));
    }
    return pick;
}

aflo_isa isa_level(void) {
    int v = atomic_load_explicit(&current, memory_order_relaxed);
    if (v >= 0) return (aflo_isa)v;
    v = (int)choose();
    atomic_store(&current, v);
    return (aflo_isa)v;
}

int isa_select(aflo_isa isa, char *err, size_t errlen) {
    if (isa < 0 || isa >= ISA_COUNT) return set_err(err, errlen, "unknown kernel level %d", isa);
    if (!isa_supported(isa))
        return set_err(err, errlen, "this CPU cannot run the %s kernels", isa_name(isa));
    snprintf(description, sizeof description, "%s (selected)", isa_name(isa));
    atomic_store(&current, (int)isa);
    return 0;
}

const char *isa_describe(void) {
    (void)isa_level();
    return description;
}
