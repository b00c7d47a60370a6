/* tokutil.c — see tokutil.h. Growable arrays double from 16; the map is
 * open addressing with linear probing over FNV-1a hashes, its keys packed in
 * one pool; UTF-8 is checked by the RFC 3629 table (no overlongs, no
 * surrogates) once, then decoded without checks. */
#include "tokenizer/tokutil.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/errmsg.h"

/* Maximum load factor of the hash map: 7/10. */
#define MAP_LOAD_NUM 7
#define MAP_LOAD_DEN 10
#define MAP_MIN_CAP 64

/* ------------------------------------------------------------------ */
/* Growable arrays                                                      */

int tok_grow(void **v, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return -1;
        nc *= 2;
    }
    void *p = realloc(*v, nc * elem);
    if (!p) return -1;
    *v = p;
    *cap = nc;
    return 0;
}

int tok_i32_push(tok_i32vec *a, int32_t x) {
    if (tok_grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) return -1;
    a->v[a->n++] = x;
    return 0;
}

int tok_u32_reserve(tok_u32vec *a, size_t extra) {
    if (extra > SIZE_MAX - a->n) return -1;
    return tok_grow((void **)&a->v, &a->cap, a->n + extra, sizeof *a->v);
}

int tok_u32_push(tok_u32vec *a, uint32_t x) {
    if (tok_grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) return -1;
    a->v[a->n++] = x;
    return 0;
}

int tok_bytes_append(tok_bytes *b, const char *s, size_t n) {
    if (n > SIZE_MAX - b->n - 1 || tok_grow((void **)&b->v, &b->cap, b->n + n + 1, 1)) return -1;
    if (n) memcpy(b->v + b->n, s, n);
    b->n += n;
    b->v[b->n] = '\0';
    return 0;
}

int tok_bytes_put_cp(tok_bytes *b, uint32_t cp) {
    char u[4];
    size_t k;
    if (cp < 0x80) {
        u[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    return tok_bytes_append(b, u, k);
}

/* ------------------------------------------------------------------ */
/* String -> int32 hash map (open addressing, linear probing)           */

struct tok_map_slot {
    uint64_t hash;
    size_t off; /* key offset in pool; SIZE_MAX = empty slot */
    size_t len;
    int32_t value;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    /* FNV-1a, 64-bit: simple, and the keys are not adversarial enough
     * (vocabulary files we load) to need a keyed hash. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int map_rehash(tok_map *m, size_t ncap) {
    tok_map_slot *ns = malloc(ncap * sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < ncap; i++) ns[i].off = SIZE_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].off == SIZE_MAX) continue;
        size_t j = (size_t)m->slots[i].hash & (ncap - 1);
        while (ns[j].off != SIZE_MAX) j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

static size_t map_find(const tok_map *m, const char *s, size_t len, uint64_t h) {
    size_t j = (size_t)h & (m->cap - 1);
    while (m->slots[j].off != SIZE_MAX) {
        const tok_map_slot *sl = &m->slots[j];
        if (sl->hash == h && sl->len == len && memcmp(m->pool + sl->off, s, len) == 0) return j;
        j = (j + 1) & (m->cap - 1);
    }
    return j; /* the empty slot where s would go */
}

int tok_map_put(tok_map *m, const char *s, size_t len, int32_t value, size_t *key_off) {
    if (m->cap == 0 || (m->count + 1) * MAP_LOAD_DEN > m->cap * MAP_LOAD_NUM) {
        size_t ncap = m->cap ? m->cap * 2 : MAP_MIN_CAP;
        if (ncap < m->cap || map_rehash(m, ncap)) return -1;
    }
    uint64_t h = hash_bytes(s, len);
    size_t j = map_find(m, s, len, h);
    tok_map_slot *sl = &m->slots[j];
    if (sl->off != SIZE_MAX) {
        sl->value = value;
        if (key_off) *key_off = sl->off;
        return 0;
    }
    if (len > SIZE_MAX - m->pool_len - 1 ||
        tok_grow((void **)&m->pool, &m->pool_cap, m->pool_len + len + 1, 1))
        return -1;
    memcpy(m->pool + m->pool_len, s, len);
    m->pool[m->pool_len + len] = '\0';
    sl->hash = h;
    sl->off = m->pool_len;
    sl->len = len;
    sl->value = value;
    if (key_off) *key_off = m->pool_len;
    m->pool_len += len + 1;
    m->count++;
    return 0;
}

int tok_map_get(const tok_map *m, const char *s, size_t len, int32_t *value) {
    if (m->cap == 0) return 0;
    size_t j = map_find(m, s, len, hash_bytes(s, len));
    if (m->slots[j].off == SIZE_MAX) return 0;
    *value = m->slots[j].value;
    return 1;
}

int tok_map_next(const tok_map *m, size_t *pos, tok_map_entry *e) {
    for (; *pos < m->cap; (*pos)++) {
        const tok_map_slot *sl = &m->slots[*pos];
        if (sl->off == SIZE_MAX) continue;
        *e = (tok_map_entry){m->pool + sl->off, sl->len, sl->off, sl->value};
        (*pos)++;
        return 1;
    }
    return 0;
}

void tok_map_free(tok_map *m) {
    free(m->pool);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ */
/* UTF-8                                                                */

/* Length of the well-formed sequence at s[i], or 0 (RFC 3629 table:
 * no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *s, size_t n, size_t i) {
    unsigned char c = s[i];
    if (c < 0x80) return 1;
    size_t k;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n - i < k) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t j = 2; j < k; j++)
        if (s[i + j] < 0x80 || s[i + j] > 0xBF) return 0;
    return k;
}

size_t tok_utf8_invalid_at(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq_len(u, n, i);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

uint32_t tok_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    (void)n;
    uint32_t c = u[0];
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        *i += 2;
        return ((c & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if (c < 0xF0) {
        *i += 3;
        return ((c & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *i += 4;
    return ((c & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
           (u[3] & 0x3F);
}

int tok_utf8_decode(const char *s, size_t n, tok_u32vec *cps, tok_u32vec *offs) {
    size_t i = 0;
    while (i < n) {
        if (offs && tok_u32_push(offs, (uint32_t)i)) return -1;
        if (tok_u32_push(cps, tok_utf8_next(s, n, &i))) return -1;
    }
    if (offs && tok_u32_push(offs, (uint32_t)n)) return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Files of a model folder                                              */

int tok_read_file(const char *dir, const char *name, size_t max_bytes, char **buf, size_t *len,
                  char *err, size_t errlen) {
    char path[PATH_MAX];
    int pn = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (pn < 0 || (size_t)pn >= sizeof path)
        return set_err(err, errlen, "path too long: %s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return 0;
        return set_err(err, errlen, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return -1;
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        set_err(err, errlen, "%s: %lld bytes, more than the %zu accepted", path,
                (long long)st.st_size, max_bytes);
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    char *b = malloc(size + 1);
    if (!b) {
        set_err(err, errlen, "%s: out of memory", path);
        fclose(f);
        return -1;
    }
    size_t got = fread(b, 1, size, f);
    int rerr = ferror(f);
    fclose(f);
    if (got != size || rerr) {
        set_err(err, errlen, "%s: read failed", path);
        free(b);
        return -1;
    }
    b[size] = '\0';
    *buf = b;
    *len = size;
    return 1;
}

int tok_read_json(const char *dir, const char *name, size_t max_bytes, json_value **out, char *err,
                  size_t errlen) {
    char *buf;
    size_t len;
    int r = tok_read_file(dir, name, max_bytes, &buf, &len, err, errlen);
    if (r <= 0) return r;
    char jerr[256];
    *out = json_parse(buf, len, TOK_JSON_MAX_DEPTH, jerr, sizeof jerr);
    free(buf);
    if (!*out) return set_err(err, errlen, "%s/%s: %s", dir, name, jerr);
    return 1;
}
