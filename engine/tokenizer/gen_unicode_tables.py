#!/usr/bin/python3
"""gen_unicode_tables.py — writes engine/tokenizer/unicode_tables.c from Python's unicodedata.

The tokenizers must classify characters exactly as the Python tokenizers they
imitate (Hugging Face's BertTokenizer and RobertaTokenizer, which run on
CPython's unicodedata and str methods). So the tables are generated from that
same source instead of being hand-typed: general-category classes, the
canonical combining class, full canonical decompositions (NFD), primary
composites (NFC), str.lower(), str.isspace(), and the Cased / Case_Ignorable
properties that str.lower() uses for the Greek final sigma.

Run:  make regen-unicode  (/usr/bin/python3 engine/tokenizer/gen_unicode_tables.py > engine/tokenizer/unicode_tables.c)
The Unicode version is that of the running Python (3.11: Unicode 14.0.0); it is
written into the output as UNI_VERSION. Before writing, the script re-implements
NFD/NFC and lower() from the generated tables and checks them against
unicodedata.normalize() / str.lower() on every code point and on random
strings, so a table bug fails here rather than in a tokenizer.
"""
import random
import sys
import unicodedata as ud

MAX_CP = 0x110000
DIRECT_LIMIT = 0x800          # code points below this get a flat flags table
HANGUL_S_BASE, HANGUL_S_COUNT = 0xAC00, 11172

# Flag bits; keep in sync with engine/tokenizer/unicode_tables.h.
F_PUNCT = 1 << 0        # general category P*
F_MN = 1 << 1           # Mn (nonspacing mark)
F_CONTROL = 1 << 2      # C* (Cc Cf Cn Co Cs)
F_ZS = 1 << 3           # Zs
F_LETTER = 1 << 4       # L*
F_NUMBER = 1 << 5       # N*
F_WHITE_SPACE = 1 << 6  # White_Space property (the `regex` module's \s)
F_PY_SPACE = 1 << 7     # str.isspace()
F_CASED = 1 << 8        # Cased
F_CASE_IGN = 1 << 9     # Case_Ignorable

# White_Space (PropList.txt). unicodedata does not expose it; the set has been
# stable since Unicode 6.3 removed U+180E.
WHITE_SPACE = set(range(0x09, 0x0E)) | {0x20, 0x85, 0xA0, 0x1680} | \
    set(range(0x2000, 0x200B)) | {0x2028, 0x2029, 0x202F, 0x205F, 0x3000}

SIGMA, SMALL_SIGMA, FINAL_SIGMA = "\u03a3", "\u03c3", "\u03c2"


def is_surrogate(cp):
    return 0xD800 <= cp < 0xE000


def case_ignorable(c):
    # CPython's lower() turns U+03A3 into final sigma when it follows
    # (Cased)(Case_Ignorable)* and no Cased follows; probing lower() with the
    # character in front of a sigma reads the property CPython itself uses:
    # "A"+c+Σ -> ς iff c is ignorable or cased; c+Σ -> σ iff c is ignorable
    # or not cased. Both hold iff c is Case_Ignorable.
    return (("A" + c + SIGMA).lower()[-1] == FINAL_SIGMA and
            (c + SIGMA).lower()[-1] == SMALL_SIGMA)


def flags_of(cp):
    c = chr(cp)
    cat = ud.category(c)
    f = 0
    if cat[0] == "P":
        f |= F_PUNCT
    if cat == "Mn":
        f |= F_MN
    if cat[0] == "C":
        f |= F_CONTROL
    if cat == "Zs":
        f |= F_ZS
    if cat[0] == "L":
        f |= F_LETTER
    if cat[0] == "N":
        f |= F_NUMBER
    if cp in WHITE_SPACE:
        f |= F_WHITE_SPACE
    if c.isspace():
        f |= F_PY_SPACE
    if not is_surrogate(cp):
        if c.islower() or c.isupper() or c.istitle():
            f |= F_CASED
        if case_ignorable(c):
            f |= F_CASE_IGN
    return f


def build():
    flags = [flags_of(cp) for cp in range(MAX_CP)]
    for cp in WHITE_SPACE:
        assert flags[cp] & F_PY_SPACE, hex(cp)

    runs = []
    for cp in range(MAX_CP):
        if not runs or runs[-1][1] != flags[cp]:
            runs.append((cp, flags[cp]))

    ccc_runs = []
    for cp in range(MAX_CP):
        k = ud.combining(chr(cp))
        if k == 0:
            continue
        if ccc_runs and ccc_runs[-1][1] == cp - 1 and ccc_runs[-1][2] == k:
            ccc_runs[-1][1] = cp
        else:
            ccc_runs.append([cp, cp, k])

    decomp = []
    for cp in range(MAX_CP):
        if is_surrogate(cp) or HANGUL_S_BASE <= cp < HANGUL_S_BASE + HANGUL_S_COUNT:
            continue
        d = ud.normalize("NFD", chr(cp))
        if d != chr(cp):
            decomp.append((cp, [ord(x) for x in d]))
    max_decomp = max(len(d) for _, d in decomp)

    compose = []
    for cp in range(MAX_CP):
        raw = ud.decomposition(chr(cp)) if not is_surrogate(cp) else ""
        if not raw or raw.startswith("<"):
            continue
        parts = [int(x, 16) for x in raw.split()]
        if len(parts) != 2:
            continue      # singletons never recompose
        # Excluded composites (CompositionExclusions, non-starter
        # decompositions) are exactly those NFC does not rebuild.
        if ud.normalize("NFC", chr(parts[0]) + chr(parts[1])) == chr(cp):
            compose.append((parts[0], parts[1], cp))
    compose.sort()

    lower = []
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        lo = chr(cp).lower()
        if lo == chr(cp):
            continue
        if len(lo) != 1:
            # str.lower() uses full case mapping; only U+0130 lowers to two
            # code points (i + U+0307). The C code special-cases it.
            assert cp == 0x130 and lo == "i\u0307", hex(cp)
            continue
        lower.append((cp, ord(lo)))

    return dict(flags=flags, runs=runs, ccc_runs=ccc_runs, decomp=decomp,
                max_decomp=max_decomp, compose=compose, lower=lower)


# --- Reference re-implementation from the tables, checked against Python ---

def make_checker(t):
    ccc = {}
    for a, b, k in t["ccc_runs"]:
        for cp in range(a, b + 1):
            ccc[cp] = k
    dmap = dict(t["decomp"])
    cmap = {(a, b): c for a, b, c in t["compose"]}

    def decompose_cp(cp):
        s = cp - HANGUL_S_BASE
        if 0 <= s < HANGUL_S_COUNT:
            out = [0x1100 + s // 588, 0x1161 + (s % 588) // 28]
            if s % 28:
                out.append(0x11A7 + s % 28)
            return out
        return dmap.get(cp, [cp])

    def nfd(cps):
        out = []
        for cp in cps:
            out.extend(decompose_cp(cp))
        i = 0
        while i < len(out):          # stable sort of each run of non-starters
            if ccc.get(out[i], 0) == 0:
                i += 1
                continue
            j = i
            while j < len(out) and ccc.get(out[j], 0) != 0:
                j += 1
            out[i:j] = sorted(out[i:j], key=lambda c: ccc[c])
            i = j
        return out

    def compose_pair(a, b):
        if 0x1100 <= a < 0x1113 and 0x1161 <= b < 0x1176:
            return HANGUL_S_BASE + ((a - 0x1100) * 21 + (b - 0x1161)) * 28
        s = a - HANGUL_S_BASE
        if 0 <= s < HANGUL_S_COUNT and s % 28 == 0 and 0x11A8 <= b < 0x11C3:
            return a + (b - 0x11A7)
        return cmap.get((a, b), 0)

    def nfc(cps):
        d = nfd(cps)
        if not d:
            return d
        out = [d[0]]
        starter = 0
        last = ccc.get(d[0], 0)
        if last != 0:
            last = 256
        for ch in d[1:]:
            k = ccc.get(ch, 0)
            comp = compose_pair(out[starter], ch)
            if comp and (last < k or last == 0):
                out[starter] = comp
                continue
            if k == 0:
                starter = len(out)
            last = k
            out.append(ch)
        return out

    return nfd, nfc


def self_check(t):
    nfd, nfc = make_checker(t)
    cps = [cp for cp in range(MAX_CP) if not is_surrogate(cp)]
    for cp in cps:
        s = chr(cp)
        assert "".join(map(chr, nfd([cp]))) == ud.normalize("NFD", s), hex(cp)
        assert "".join(map(chr, nfc([cp]))) == ud.normalize("NFC", s), hex(cp)
    # Random strings biased to characters that interact: bases with
    # decompositions, combining marks, Hangul jamo and syllables.
    rng = random.Random(12345)
    marks = [a for a, b, k in t["ccc_runs"] for a in range(a, b + 1)]
    bases = [cp for cp, _ in t["decomp"]] + [a for a, _, _ in t["compose"]]
    jamo = list(range(0x1100, 0x1113)) + list(range(0x1161, 0x1176)) + \
        list(range(0x11A7, 0x11C3)) + [0xAC00, 0xAC01, 0xD7A3]
    pools = [marks, bases, jamo, [0x41, 0x61, 0x20]]
    for _ in range(200000):
        n = rng.randint(1, 6)
        s = [rng.choice(rng.choice(pools)) for _ in range(n)]
        txt = "".join(map(chr, s))
        assert "".join(map(chr, nfd(s))) == ud.normalize("NFD", txt), s
        assert "".join(map(chr, nfc(s))) == ud.normalize("NFC", txt), s


# --- Output ---

def emit(t, out):
    w = out.write
    w("/* unicode_tables.c — GENERATED by engine/tokenizer/gen_unicode_tables.py; do not edit.\n")
    w(" *\n")
    w(" * Character tables for the tokenizers, taken from Python %s's unicodedata\n"
      % ".".join(map(str, sys.version_info[:3])))
    w(" * (Unicode %s) and str methods so that classification matches the\n" % ud.unidata_version)
    w(" * Python tokenizers exactly. See engine/tokenizer/unicode_tables.h for the API. */\n")
    w('#include "tokenizer/unicode_tables.h"\n\n#include <stddef.h>\n\n')

    w("const char uni_version[] = \"%s\";\n\n" % ud.unidata_version)

    w("/* Flags of code points below UNI_DIRECT_LIMIT, indexed directly. */\n")
    w("static const uint16_t direct_flags[%d] = {\n" % DIRECT_LIMIT)
    fl = t["flags"]
    for i in range(0, DIRECT_LIMIT, 12):
        w("    " + ", ".join("0x%03x" % fl[cp] for cp in range(i, min(i + 12, DIRECT_LIMIT))) + ",\n")
    w("};\n\n")

    w("/* Runs of equal flags: entry i covers [start_i, start_{i+1}). */\n")
    w("static const struct { uint32_t start; uint16_t flags; } flag_runs[%d] = {\n" % len(t["runs"]))
    runs = t["runs"]
    for i in range(0, len(runs), 5):
        w("    " + " ".join("{0x%05x, 0x%03x}," % r for r in runs[i:i + 5]) + "\n")
    w("};\n\n")

    w("/* Canonical combining class runs (non-zero only), inclusive ranges. */\n")
    w("static const struct { uint32_t lo, hi; uint8_t ccc; } ccc_runs[%d] = {\n" % len(t["ccc_runs"]))
    cr = t["ccc_runs"]
    for i in range(0, len(cr), 4):
        w("    " + " ".join("{0x%05x, 0x%05x, %3d}," % tuple(r) for r in cr[i:i + 4]) + "\n")
    w("};\n\n")

    pool = []
    entries = []
    for cp, d in t["decomp"]:
        entries.append((cp, len(pool), len(d)))
        pool.extend(d)
    assert len(pool) < 65536
    w("/* Full canonical decompositions (NFD of one code point, Hangul excluded):\n")
    w(" * code point, offset into decomp_pool, length. */\n")
    w("static const struct { uint32_t cp; uint16_t off; uint8_t len; } decomp_index[%d] = {\n"
      % len(entries))
    for i in range(0, len(entries), 4):
        w("    " + " ".join("{0x%05x, %4d, %d}," % e for e in entries[i:i + 4]) + "\n")
    w("};\n\n")
    w("static const uint32_t decomp_pool[%d] = {\n" % len(pool))
    for i in range(0, len(pool), 8):
        w("    " + ", ".join("0x%05x" % x for x in pool[i:i + 8]) + ",\n")
    w("};\n\n")

    w("/* Primary composites for NFC, sorted by (first, second). */\n")
    w("static const struct { uint32_t first, second, composite; } compose_pairs[%d] = {\n"
      % len(t["compose"]))
    cp_ = t["compose"]
    for i in range(0, len(cp_), 3):
        w("    " + " ".join("{0x%05x, 0x%05x, 0x%05x}," % e for e in cp_[i:i + 3]) + "\n")
    w("};\n\n")

    w("/* str.lower() for code points that lower to one code point. */\n")
    w("static const struct { uint32_t cp, lower; } lower_pairs[%d] = {\n" % len(t["lower"]))
    lw = t["lower"]
    for i in range(0, len(lw), 4):
        w("    " + " ".join("{0x%05x, 0x%05x}," % e for e in lw[i:i + 4]) + "\n")
    w("};\n\n")

    w(FUNCTIONS.replace("@MAX_DECOMP@", str(t["max_decomp"])))


FUNCTIONS = r"""#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(UNI_MAX_DECOMP >= @MAX_DECOMP@, "UNI_MAX_DECOMP too small for the tables");

unsigned uni_flags(uint32_t cp)
{
    if (cp < UNI_DIRECT_LIMIT)
        return direct_flags[cp];
    if (cp > UNI_MAX_CODE_POINT)
        return 0;
    /* Last run starting at or before cp. flag_runs[0].start is 0. */
    size_t lo = 0, hi = COUNT(flag_runs);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (flag_runs[mid].start <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return flag_runs[lo].flags;
}

int uni_ccc(uint32_t cp)
{
    size_t lo = 0, hi = COUNT(ccc_runs);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ccc_runs[mid].hi < cp)
            lo = mid + 1;
        else if (ccc_runs[mid].lo > cp)
            hi = mid;
        else
            return ccc_runs[mid].ccc;
    }
    return 0;
}

int uni_decompose(uint32_t cp, uint32_t out[UNI_MAX_DECOMP])
{
    size_t lo = 0, hi = COUNT(decomp_index);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (decomp_index[mid].cp < cp)
            lo = mid + 1;
        else if (decomp_index[mid].cp > cp)
            hi = mid;
        else {
            int n = decomp_index[mid].len;
            for (int i = 0; i < n; i++)
                out[i] = decomp_pool[decomp_index[mid].off + i];
            return n;
        }
    }
    return 0;
}

uint32_t uni_compose(uint32_t first, uint32_t second)
{
    size_t lo = 0, hi = COUNT(compose_pairs);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t f = compose_pairs[mid].first, s = compose_pairs[mid].second;
        if (f < first || (f == first && s < second))
            lo = mid + 1;
        else if (f > first || s > second)
            hi = mid;
        else
            return compose_pairs[mid].composite;
    }
    return 0;
}

uint32_t uni_lower(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'A' && cp <= 'Z') ? cp + ('a' - 'A') : cp;
    size_t lo = 0, hi = COUNT(lower_pairs);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lower_pairs[mid].cp < cp)
            lo = mid + 1;
        else if (lower_pairs[mid].cp > cp)
            hi = mid;
        else
            return lower_pairs[mid].lower;
    }
    return cp;
}
"""


def main():
    t = build()
    self_check(t)
    emit(t, sys.stdout)


if __name__ == "__main__":
    main()
