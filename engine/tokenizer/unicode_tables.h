/* unicode_tables.h — the character properties the tokenizers need.
 *
 * The tokenizers imitate Python code (Hugging Face's BertTokenizer and
 * RobertaTokenizer) that classifies characters with CPython's unicodedata and
 * str methods, so the tables in unicode_tables.c are generated from exactly
 * that source by engine/tokenizer/gen_unicode_tables.py (Python 3.11, Unicode 14.0.0;
 * uni_version holds the version string). Regenerate, never hand-edit:
 *     /usr/bin/python3 engine/tokenizer/gen_unicode_tables.py > engine/tokenizer/unicode_tables.c
 * The generator checks NFD/NFC and lower() rebuilt from its tables against
 * Python before it writes anything.
 *
 * Lookups are binary searches over range tables (code points below
 * UNI_DIRECT_LIMIT are a direct index), small enough (~60 KB) to keep the
 * whole of Unicode rather than a hand-picked subset. */
#ifndef AFLO_UNICODE_TABLES_H
#define AFLO_UNICODE_TABLES_H

#include <stdint.h>

#define UNI_MAX_CODE_POINT 0x10FFFFu
/* Code points below this are looked up in a flat array (Latin, Greek,
 * Cyrillic, ... : the common case stays one load). */
#define UNI_DIRECT_LIMIT 0x800u
/* Longest full canonical decomposition of one code point (e.g. U+1F82). */
#define UNI_MAX_DECOMP 4

/* Bits of uni_flags(). */
enum {
    UNI_PUNCT = 1u << 0,         /* general category P* */
    UNI_MN = 1u << 1,            /* Mn, nonspacing mark (what strip_accents removes) */
    UNI_CONTROL = 1u << 2,       /* C*: Cc Cf Cn Co Cs (unassigned included) */
    UNI_ZS = 1u << 3,            /* Zs, space separator */
    UNI_LETTER = 1u << 4,        /* L*  (\p{L}) */
    UNI_NUMBER = 1u << 5,        /* N*  (\p{N}) */
    UNI_WHITE_SPACE = 1u << 6,   /* White_Space property: the `regex` module's \s */
    UNI_PY_SPACE = 1u << 7,      /* Python str.isspace(): what str.split() splits on */
    UNI_CASED = 1u << 8,         /* Cased (for the final-sigma rule of str.lower()) */
    UNI_CASE_IGNORABLE = 1u << 9 /* Case_Ignorable (same rule) */
};

extern const char uni_version[];

/* Flag bits of cp; 0 beyond U+10FFFF. */
unsigned uni_flags(uint32_t cp);
/* Canonical combining class (0 for starters). */
int uni_ccc(uint32_t cp);
/* Full canonical decomposition of cp into out, canonically ordered; returns
 * its length, or 0 when cp does not decompose. Hangul syllables are left to
 * the caller (they decompose arithmetically). */
int uni_decompose(uint32_t cp, uint32_t out[UNI_MAX_DECOMP]);
/* Primary composite of the pair, or 0. Hangul is left to the caller. */
uint32_t uni_compose(uint32_t first, uint32_t second);
/* Python's str.lower() of one code point, except U+0130 (which lower() maps
 * to two code points, i + U+0307, and is returned unchanged here) and the
 * context-dependent final sigma (U+03A3 -> U+03C3 here). */
uint32_t uni_lower(uint32_t cp);

#endif
