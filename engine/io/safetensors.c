/* safetensors.c — validated mmap reader and atomic F32 writer.
 *
 * Reader: st_open maps the whole file, parses the header with json.c and
 * turns it into a table of tensors sorted by name. The parsed JSON tree stays
 * alive with the handle, so names and metadata strings point into it and are
 * not copied. Everything a later accessor relies on (offsets within the data
 * buffer, byte counts matching shape x dtype, no overlaps) is checked here;
 * gaps between tensors are allowed, as the brief for this module asks.
 *
 * Writer: tensors are only referenced until st_writer_write, which builds the
 * header in memory, pads it with spaces so the data starts 8-byte aligned,
 * and streams header + data through the atomic writer (atomicfile.h: a
 * temporary file beside path, fsync, rename, directory fsync). Any failure
 * removes the temporary and leaves path as it was. */
#include "io/safetensors.h"

#include "base/atomicfile.h"
#include "base/errmsg.h"
#include "base/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads little-endian data in place: port the byte order first"
#endif

#define ST_LEN_PREFIX 8   /* the u64 header length */
#define ST_HEADER_ALIGN 8 /* writer pads so data starts 8-byte aligned */
#define ST_METADATA_KEY "__metadata__"

static const struct {
    const char *name;
    size_t size;
} dtype_table[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},         [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},
    [ST_I32] = {"I32", 4},         [ST_U32] = {"U32", 4},         [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8},         [ST_I64] = {"I64", 8},         [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_table[t].name : "?";
}
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_table[t].size : 0; }

static int dtype_from_name(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(dtype_table[i].name, s) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

/* ---- conversions ------------------------------------------------------ */

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, bits;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float (mant < 2^10) */
        float f = (float)mant * 0x1p-24f;
        return sign ? -f : f;
    }
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13); /* inf, or NaN keeping its payload */
    } else {
        bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13); /* rebias exponent */
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float st_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16; /* bf16 is the top half of an f32 */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- reader ----------------------------------------------------------- */

typedef struct {
    const char *name; /* points into the JSON tree */
    st_dtype dtype;
    size_t ndim;
    const int64_t *shape;
    size_t numel;
    uint64_t begin, end; /* within the data buffer */
} st_tensor;

struct st_file {
    unsigned char *map;
    size_t map_len;
    const unsigned char *data; /* start of the data buffer */
    uint64_t data_len;
    json_value *header;
    st_tensor *tensors; /* sorted by name */
    size_t count;
    int64_t *dims;              /* all shapes, back to back */
    const json_value *metadata; /* NULL when absent */
};

static int tensor_name_cmp(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int tensor_offset_cmp(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* A non-negative JSON integer, into *out. */
static int get_u64(const json_value *v, uint64_t *out) {
    if (!json_is_int(v) || json_int(v) < 0) return -1;
    *out = (uint64_t)json_int(v);
    return 0;
}

static int check_metadata(const json_value *meta, const char *path, char *err, size_t errlen) {
    if (json_type_of(meta) != JSON_OBJECT)
        return set_err(err, errlen, "%s: __metadata__ must be an object, got %s", path,
                       json_type_name(json_type_of(meta)));
    for (size_t i = 0; i < json_len(meta); i++) {
        size_t klen, vlen;
        const char *k = json_key_at(meta, i, &klen);
        const char *v = json_string(json_at(meta, i), &vlen);
        if (!v)
            return set_err(err, errlen, "%s: __metadata__ value of \"%s\" must be a string, got %s",
                           path, k, json_type_name(json_type_of(json_at(meta, i))));
        if (strlen(k) != klen || strlen(v) != vlen)
            return set_err(err, errlen, "%s: __metadata__ entry \"%s\" contains a NUL character",
                           path, k);
    }
    return 0;
}

/* Fill t from one header entry; dims is where its shape goes. */
static int parse_entry(st_tensor *t, const char *name, size_t name_len, const json_value *v,
                       int64_t *dims, uint64_t data_len, const char *path, char *err,
                       size_t errlen) {
    if (strlen(name) != name_len)
        return set_err(err, errlen, "%s: a tensor name contains a NUL character", path);
    t->name = name;
    if (json_type_of(v) != JSON_OBJECT)
        return set_err(err, errlen, "%s: tensor '%s': entry must be an object, got %s", path, name,
                       json_type_name(json_type_of(v)));
    for (size_t i = 0; i < json_len(v); i++) {
        const char *k = json_key_at(v, i, NULL);
        if (strcmp(k, "dtype") != 0 && strcmp(k, "shape") != 0 && strcmp(k, "data_offsets") != 0)
            return set_err(
                err, errlen,
                "%s: tensor '%s': unexpected key \"%s\" (only dtype, shape, data_offsets)", path,
                name, k);
    }
    const json_value *dt = json_get(v, "dtype"), *shape = json_get(v, "shape"),
                     *off = json_get(v, "data_offsets");
    if (!dt || !shape || !off)
        return set_err(err, errlen, "%s: tensor '%s': missing \"%s\"", path, name,
                       !dt      ? "dtype"
                       : !shape ? "shape"
                                : "data_offsets");

    const char *dts = json_string(dt, NULL);
    if (!dts) return set_err(err, errlen, "%s: tensor '%s': dtype must be a string", path, name);
    if (dtype_from_name(dts, &t->dtype))
        return set_err(err, errlen, "%s: tensor '%s': unknown dtype \"%s\"", path, name, dts);

    if (json_type_of(shape) != JSON_ARRAY)
        return set_err(err, errlen, "%s: tensor '%s': shape must be an array", path, name);
    t->ndim = json_len(shape);
    t->shape = t->ndim ? dims : NULL;
    uint64_t numel = 1;
    for (size_t d = 0; d < t->ndim; d++) {
        uint64_t dim;
        if (get_u64(json_at(shape, d), &dim))
            return set_err(err, errlen, "%s: tensor '%s': shape must hold non-negative integers",
                           path, name);
        if (__builtin_mul_overflow(numel, dim, &numel))
            return set_err(err, errlen, "%s: tensor '%s': shape is too large", path, name);
        dims[d] = (int64_t)dim;
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)st_dtype_size(t->dtype), &nbytes) ||
        numel > SIZE_MAX)
        return set_err(err, errlen, "%s: tensor '%s': shape is too large", path, name);
    t->numel = (size_t)numel;

    if (json_type_of(off) != JSON_ARRAY || json_len(off) != 2 ||
        get_u64(json_at(off, 0), &t->begin) || get_u64(json_at(off, 1), &t->end))
        return set_err(err, errlen,
                       "%s: tensor '%s': data_offsets must be [begin, end] non-negative integers",
                       path, name);
    if (t->begin > t->end)
        return set_err(err, errlen, "%s: tensor '%s': data_offsets begin %llu > end %llu", path,
                       name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_len)
        return set_err(
            err, errlen,
            "%s: tensor '%s': data_offsets [%llu, %llu) outside the data buffer of %llu bytes",
            path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
            (unsigned long long)data_len);
    if (t->end - t->begin != nbytes)
        return set_err(
            err, errlen,
            "%s: tensor '%s': shape and dtype %s need %llu bytes but data_offsets span %llu", path,
            name, st_dtype_name(t->dtype), (unsigned long long)nbytes,
            (unsigned long long)(t->end - t->begin));
    return 0;
}

/* Build f->tensors from the parsed header, then check for overlaps. */
static int load_tensors(st_file *f, const char *path, char *err, size_t errlen) {
    const json_value *h = f->header;
    size_t n = json_len(h), total_dims = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(json_key_at(h, i, NULL), ST_METADATA_KEY) == 0) {
            f->metadata = json_at(h, i);
            continue;
        }
        f->count++;
        total_dims += json_len(json_get(json_at(h, i), "shape"));
    }
    if (f->metadata && check_metadata(f->metadata, path, err, errlen)) return -1;

    f->tensors = calloc(f->count ? f->count : 1, sizeof *f->tensors);
    f->dims = calloc(total_dims ? total_dims : 1, sizeof *f->dims);
    if (!f->tensors || !f->dims) return set_err(err, errlen, "%s: out of memory", path);
    size_t t = 0, used_dims = 0;
    for (size_t i = 0; i < n; i++) {
        size_t klen;
        const char *k = json_key_at(h, i, &klen);
        if (strcmp(k, ST_METADATA_KEY) == 0) continue;
        if (parse_entry(&f->tensors[t], k, klen, json_at(h, i), f->dims + used_dims, f->data_len,
                        path, err, errlen))
            return -1;
        used_dims += f->tensors[t].ndim;
        t++;
    }
    /* Names are unique already: the JSON parser rejects duplicate keys. */
    qsort(f->tensors, f->count, sizeof *f->tensors, tensor_name_cmp);

    /* Overlap check on non-empty tensors in offset order: sorted by begin,
     * any overlap shows up as a begin below the furthest end so far. */
    const st_tensor **byoff = malloc((f->count ? f->count : 1) * sizeof *byoff);
    if (!byoff) return set_err(err, errlen, "%s: out of memory", path);
    size_t m = 0;
    for (size_t i = 0; i < f->count; i++)
        if (f->tensors[i].end > f->tensors[i].begin) byoff[m++] = &f->tensors[i];
    qsort(byoff, m, sizeof *byoff, tensor_offset_cmp);
    int rc = 0;
    const st_tensor *furthest = NULL;
    for (size_t i = 0; i < m && rc == 0; i++) {
        if (furthest && byoff[i]->begin < furthest->end)
            rc = set_err(err, errlen, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap",
                         path, furthest->name, (unsigned long long)furthest->begin,
                         (unsigned long long)furthest->end, byoff[i]->name,
                         (unsigned long long)byoff[i]->begin, (unsigned long long)byoff[i]->end);
        if (!furthest || byoff[i]->end > furthest->end) furthest = byoff[i];
    }
    free(byoff);
    return rc;
}

st_file *st_open(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    st_file *f = calloc(1, sizeof *f);
    if (!f) {
        set_err(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        set_err(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    if ((uint64_t)sb.st_size < ST_LEN_PREFIX) {
        set_err(err, errlen, "%s: file is %lld bytes, shorter than the 8-byte header length", path,
                (long long)sb.st_size);
        close(fd);
        goto fail;
    }
    f->map_len = (size_t)sb.st_size;
    void *map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) {
        set_err(err, errlen, "%s: mmap failed: %s", path, strerror(map_errno));
        goto fail;
    }
    f->map = map;

    uint64_t hlen;
    memcpy(&hlen, f->map, sizeof hlen); /* little-endian host */
    uint64_t avail = (uint64_t)f->map_len - ST_LEN_PREFIX;
    if (hlen > ST_MAX_HEADER_BYTES) {
        set_err(err, errlen, "%s: header length %llu exceeds the limit of %llu bytes", path,
                (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (hlen > avail) {
        set_err(err, errlen,
                "%s: header length %llu is larger than the %llu bytes after it (truncated file?)",
                path, (unsigned long long)hlen, (unsigned long long)avail);
        goto fail;
    }
    f->data = f->map + ST_LEN_PREFIX + hlen;
    f->data_len = avail - hlen;

    char jerr[160];
    f->header = json_parse((const char *)f->map + ST_LEN_PREFIX, (size_t)hlen,
                           JSON_DEFAULT_MAX_DEPTH, jerr, sizeof jerr);
    if (!f->header) {
        set_err(err, errlen, "%s: header is not valid JSON: %s", path, jerr);
        goto fail;
    }
    if (json_type_of(f->header) != JSON_OBJECT) {
        set_err(err, errlen, "%s: header must be a JSON object, got %s", path,
                json_type_name(json_type_of(f->header)));
        goto fail;
    }
    if (load_tensors(f, path, err, errlen)) goto fail;
    return f;

fail:
    st_close(f);
    return NULL;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    json_free(f->header);
    free(f->tensors);
    free(f->dims);
    free(f);
}

size_t st_count(const st_file *f) { return f ? f->count : 0; }

long st_find(const st_file *f, const char *name) {
    if (!f || !name) return -1;
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static const st_tensor *tensor_at(const st_file *f, size_t i) {
    return f && i < f->count ? &f->tensors[i] : NULL;
}

const char *st_name(const st_file *f, size_t i) {
    const st_tensor *t = tensor_at(f, i);
    return t ? t->name : NULL;
}

st_dtype st_dtype_of(const st_file *f, size_t i) {
    const st_tensor *t = tensor_at(f, i);
    return t ? t->dtype : ST_DTYPE_COUNT;
}

size_t st_ndim(const st_file *f, size_t i) {
    const st_tensor *t = tensor_at(f, i);
    return t ? t->ndim : 0;
}

const int64_t *st_shape(const st_file *f, size_t i) {
    const st_tensor *t = tensor_at(f, i);
    return t ? t->shape : NULL;
}

size_t st_numel(const st_file *f, size_t i) {
    const st_tensor *t = tensor_at(f, i);
    return t ? t->numel : 0;
}

const void *st_data(const st_file *f, size_t i, size_t *nbytes) {
    const st_tensor *t = tensor_at(f, i);
    if (nbytes) *nbytes = t ? (size_t)(t->end - t->begin) : 0;
    return t ? f->data + t->begin : NULL;
}

const float *st_f32_view(const st_file *f, size_t i) {
    const st_tensor *t = tensor_at(f, i);
    if (!t || t->dtype != ST_F32) return NULL;
    const unsigned char *p = f->data + t->begin;
    if ((uintptr_t)p % _Alignof(float) != 0) return NULL;
    return (const float *)(const void *)p;
}

int st_read_f32_at(const st_file *f, size_t i, float *dst, size_t n, char *err, size_t errlen) {
    const st_tensor *t = tensor_at(f, i);
    if (!t)
        return set_err(err, errlen, "tensor index %zu out of range (%zu tensors)", i, st_count(f));
    if (n != t->numel)
        return set_err(err, errlen, "tensor '%s' has %zu elements, caller expects %zu", t->name,
                       t->numel, n);
    const unsigned char *p = f->data + t->begin;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(dst, p, n * sizeof(float)); /* memcpy: the data may be unaligned */
        return 0;
    case ST_F16:
    case ST_BF16:
        for (size_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, p + 2 * k, sizeof h);
            dst[k] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
        return 0;
    default:
        return set_err(
            err, errlen,
            "tensor '%s' has dtype %s, which is not converted to f32 (only F32, F16, BF16)",
            t->name, st_dtype_name(t->dtype));
    }
}

int st_read_f32(const st_file *f, const char *name, float *dst, size_t n, char *err,
                size_t errlen) {
    long i = st_find(f, name);
    if (i < 0) return set_err(err, errlen, "no tensor named '%s'", name ? name : "(null)");
    return st_read_f32_at(f, (size_t)i, dst, n, err, errlen);
}

const char *st_metadata(const st_file *f, const char *key) {
    return f ? json_string(json_get(f->metadata, key), NULL) : NULL;
}

size_t st_metadata_count(const st_file *f) { return f ? json_len(f->metadata) : 0; }

const char *st_metadata_key(const st_file *f, size_t i) {
    return f ? json_key_at(f->metadata, i, NULL) : NULL;
}

const char *st_metadata_value(const st_file *f, size_t i) {
    return f ? json_string(json_at(f->metadata, i), NULL) : NULL;
}

/* ---- writer ----------------------------------------------------------- */

typedef struct {
    char *name;
    int64_t *shape;
    size_t ndim;
    size_t numel;
    const float *data;
} st_wtensor;

typedef struct {
    char *key, *value;
} st_wmeta;

struct st_writer {
    st_wtensor *tensors;
    size_t count, cap;
    st_wmeta *meta;
    size_t meta_count, meta_cap;
};

st_writer *st_writer_new(void) { return calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].shape);
    }
    for (size_t i = 0; i < w->meta_count; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->tensors);
    free(w->meta);
    free(w);
}

/* Grow *arr (of elem bytes each) so it holds one more than *count. */
static int grow(void **arr, size_t *cap, size_t count, size_t elem) {
    if (count < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, ncap * elem);
    if (!p) return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

int st_writer_add(st_writer *w, const char *name, const int64_t *shape, size_t ndim,
                  const float *data, char *err, size_t errlen) {
    if (!w || !name) return set_err(err, errlen, "st_writer_add: NULL writer or name");
    if (!json_utf8_valid(name, strlen(name)))
        return set_err(err, errlen, "tensor name is not valid UTF-8");
    if (strcmp(name, ST_METADATA_KEY) == 0)
        return set_err(err, errlen, "tensor name \"%s\" is reserved", ST_METADATA_KEY);
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return set_err(err, errlen, "duplicate tensor name '%s'", name);
    if (ndim && !shape) return set_err(err, errlen, "tensor '%s': NULL shape", name);
    uint64_t numel = 1, nbytes;
    for (size_t d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return set_err(err, errlen, "tensor '%s': negative dimension %lld", name,
                           (long long)shape[d]);
        if (__builtin_mul_overflow(numel, (uint64_t)shape[d], &numel))
            return set_err(err, errlen, "tensor '%s': shape is too large", name);
    }
    if (__builtin_mul_overflow(numel, (uint64_t)sizeof(float), &nbytes) || nbytes > SIZE_MAX)
        return set_err(err, errlen, "tensor '%s': shape is too large", name);
    if (numel && !data) return set_err(err, errlen, "tensor '%s': NULL data", name);

    if (grow((void **)&w->tensors, &w->cap, w->count, sizeof *w->tensors))
        return set_err(err, errlen, "out of memory");
    st_wtensor t = {.ndim = ndim, .numel = (size_t)numel, .data = data};
    t.name = strdup(name);
    t.shape = malloc((ndim ? ndim : 1) * sizeof *t.shape);
    if (!t.name || !t.shape) {
        free(t.name);
        free(t.shape);
        return set_err(err, errlen, "out of memory");
    }
    if (ndim) memcpy(t.shape, shape, ndim * sizeof *shape);
    w->tensors[w->count++] = t;
    return 0;
}

int st_writer_set_metadata(st_writer *w, const char *key, const char *value, char *err,
                           size_t errlen) {
    if (!w || !key || !value) return set_err(err, errlen, "st_writer_set_metadata: NULL argument");
    if (!json_utf8_valid(key, strlen(key)) || !json_utf8_valid(value, strlen(value)))
        return set_err(err, errlen, "metadata \"%s\": key and value must be valid UTF-8", key);
    char *v = strdup(value);
    if (!v) return set_err(err, errlen, "out of memory");
    for (size_t i = 0; i < w->meta_count; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return 0;
        }
    char *k = strdup(key);
    if (!k || grow((void **)&w->meta, &w->meta_cap, w->meta_count, sizeof *w->meta)) {
        free(k);
        free(v);
        return set_err(err, errlen, "out of memory");
    }
    w->meta[w->meta_count].key = k;
    w->meta[w->meta_count].value = v;
    w->meta_count++;
    return 0;
}

static int wtensor_ptr_cmp(const void *a, const void *b) {
    return strcmp((*(const st_wtensor *const *)a)->name, (*(const st_wtensor *const *)b)->name);
}

/* Write s as a JSON string literal to m; -1 on OOM. */
static int put_quoted(FILE *m, const char *s) {
    char small[256];
    size_t len = strlen(s);
    size_t need = json_quote(small, sizeof small, s, len);
    if (need < sizeof small) {
        fwrite(small, 1, need, m);
        return 0;
    }
    char *big = malloc(need + 1);
    if (!big) return -1;
    json_quote(big, need + 1, s, len);
    fwrite(big, 1, need, m);
    free(big);
    return 0;
}

/* The header JSON, space-padded to a multiple of ST_HEADER_ALIGN; sorted
 * holds the tensors in name order (and so in data order). NULL on OOM. */
static char *build_header(const st_writer *w, const st_wtensor *const *sorted, size_t *out_len) {
    char *buf = NULL;
    size_t size = 0;
    FILE *m = open_memstream(&buf, &size);
    if (!m) return NULL;
    int bad = 0;
    fputc('{', m);
    if (w->meta_count) {
        fputs("\"" ST_METADATA_KEY "\":{", m);
        for (size_t i = 0; i < w->meta_count; i++) {
            if (i) fputc(',', m);
            bad |= put_quoted(m, w->meta[i].key);
            fputc(':', m);
            bad |= put_quoted(m, w->meta[i].value);
        }
        fputc('}', m);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->count; i++) {
        const st_wtensor *t = sorted[i];
        if (i || w->meta_count) fputc(',', m);
        bad |= put_quoted(m, t->name);
        fputs(":{\"dtype\":\"F32\",\"shape\":[", m);
        for (size_t d = 0; d < t->ndim; d++)
            fprintf(m, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t end = offset + (uint64_t)t->numel * sizeof(float);
        fprintf(m, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                (unsigned long long)end);
        offset = end;
    }
    fputc('}', m);
    bad |= ferror(m);
    if (fclose(m) != 0 || bad) {
        free(buf);
        return NULL;
    }
    /* pad with spaces (valid JSON whitespace) so the data starts aligned */
    size_t padded = (size + ST_HEADER_ALIGN - 1) / ST_HEADER_ALIGN * ST_HEADER_ALIGN;
    char *p = realloc(buf, padded + 1);
    if (!p) {
        free(buf);
        return NULL;
    }
    memset(p + size, ' ', padded - size);
    p[padded] = '\0';
    *out_len = padded;
    return p;
}

int st_writer_write(const st_writer *w, const char *path, char *err, size_t errlen) {
    if (!w || !path) return set_err(err, errlen, "st_writer_write: NULL argument");
    int rc = -1;
    char *header = NULL;
    atomic_file af = {0};
    const st_wtensor **sorted = malloc((w->count ? w->count : 1) * sizeof *sorted);
    if (!sorted) {
        set_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < w->count; i++) sorted[i] = &w->tensors[i];
    qsort(sorted, w->count, sizeof *sorted, wtensor_ptr_cmp);

    size_t hlen = 0;
    header = build_header(w, sorted, &hlen);
    if (!header) {
        set_err(err, errlen, "%s: out of memory building the header", path);
        goto out;
    }

    if (atomic_file_open(&af, path, err, errlen) != 0) goto out;
    uint64_t hlen64 = hlen; /* little-endian host: bytes are already in file order */
    if (atomic_file_write(&af, &hlen64, sizeof hlen64) || atomic_file_write(&af, header, hlen)) {
        set_err(err, errlen, "%s: write failed: %s", path, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < w->count; i++) {
        if (sorted[i]->numel &&
            atomic_file_write(&af, sorted[i]->data, sorted[i]->numel * sizeof(float))) {
            set_err(err, errlen, "%s: write of tensor '%s' failed: %s", path, sorted[i]->name,
                    strerror(errno));
            goto out;
        }
    }
    rc = atomic_file_commit(&af, err, errlen);
out:
    atomic_file_abort(&af); /* nothing left to do after a commit */
    free(header);
    free(sorted);
    return rc;
}

bool st_shape_equals(const st_file *f, size_t i, int ndim, const int *shape) {
    if (ndim < 0 || st_ndim(f, i) != (size_t)ndim) return false;
    const int64_t *d = st_shape(f, i);
    for (int k = 0; k < ndim; k++)
        if (d[k] != shape[k]) return false;
    return true;
}
