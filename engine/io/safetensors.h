/* safetensors.h — read (mmap) and write the safetensors tensor format.
 *
 * Format: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON header, then
 * the data buffer. The header maps each tensor name to
 *   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * with offsets relative to the start of the data buffer, plus an optional
 * "__metadata__" object of string -> string.
 *
 * Reading maps the file read-only and validates the whole header up front
 * (sizes, types, offsets inside the file, no overlaps, no duplicates), so
 * every accessor afterwards is a plain lookup that cannot fail on a bad file.
 * Tensors are indexed 0..count-1 in name order (strcmp), whatever order the
 * file uses, so iteration is deterministic. Raw bytes of every recognised
 * dtype can be reached; conversion to float is offered for F32/F16/BF16,
 * the dtypes model weights come in. Base weights in F32 can be used in place
 * through st_f32_view() without a copy.
 *
 * Writing collects (name, shape, float data) and metadata, then writes F32
 * tensors sorted by name with the header space-padded to a multiple of 8,
 * through the atomic writer (atomicfile.h): a crash or a full disk leaves
 * either the old file or the new one, never a torn one.
 *
 * Assumes a little-endian host (checked at compile time). */
#ifndef AFLO_SAFETENSORS_H
#define AFLO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest header accepted, as in the reference implementation: a header is
 * a few KB per hundred tensors, so anything bigger is corrupt or hostile. */
#define ST_MAX_HEADER_BYTES ((uint64_t)100 * 1000 * 1000)

typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype t); /* "F32", ... */
size_t st_dtype_size(st_dtype t);      /* bytes per element */

/* ---- reading ---------------------------------------------------------- */

typedef struct st_file st_file;

/* Map and validate path. NULL with a message in err on any problem. */
st_file *st_open(const char *path, char *err, size_t errlen);
void st_close(st_file *f); /* unmaps; NULL is fine */

size_t st_count(const st_file *f);
/* Index of the tensor called name, or -1. */
long st_find(const st_file *f, const char *name);

/* Accessors by index (0 <= i < st_count; out of range gives NULL / 0). */
const char *st_name(const st_file *f, size_t i);
st_dtype st_dtype_of(const st_file *f, size_t i);
size_t st_ndim(const st_file *f, size_t i);
const int64_t *st_shape(const st_file *f, size_t i); /* ndim entries; may be NULL when ndim == 0 */
/* Tensor i has exactly these ndim dimensions (a model's int shapes). */
bool st_shape_equals(const st_file *f, size_t i, int ndim, const int *shape);
size_t st_numel(const st_file *f, size_t i); /* product of shape; 1 for a scalar */
/* The tensor's bytes inside the mapping (any dtype, little-endian) and their
 * count; valid until st_close. */
const void *st_data(const st_file *f, size_t i, size_t *nbytes);
/* The data as floats in place when the dtype is F32 and the bytes are 4-byte
 * aligned (always so for files st_write produces); otherwise NULL. */
const float *st_f32_view(const st_file *f, size_t i);

/* Copy tensor i (or the one called name) into dst as floats, converting F16
 * and BF16 exactly. n must equal st_numel. Returns 0, or -1 with a message
 * (unknown name, wrong n, dtype that is not F32/F16/BF16). */
int st_read_f32_at(const st_file *f, size_t i, float *dst, size_t n, char *err, size_t errlen);
int st_read_f32(const st_file *f, const char *name, float *dst, size_t n, char *err, size_t errlen);

/* "__metadata__" entries: value by key (NULL if absent), and iteration in
 * header order. */
const char *st_metadata(const st_file *f, const char *key);
size_t st_metadata_count(const st_file *f);
const char *st_metadata_key(const st_file *f, size_t i);
const char *st_metadata_value(const st_file *f, size_t i);

/* Exact conversions, exposed for tests and other readers. */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t b);

/* ---- writing ---------------------------------------------------------- */

typedef struct st_writer st_writer;

st_writer *st_writer_new(void); /* NULL on OOM */
void st_writer_free(st_writer *w);

/* Add an F32 tensor. name and shape are copied; data is NOT copied and must
 * stay valid until st_writer_write returns. Rejects duplicate or non-UTF-8
 * names, the reserved name "__metadata__", negative dimensions. */
int st_writer_add(st_writer *w, const char *name, const int64_t *shape, size_t ndim,
                  const float *data, char *err, size_t errlen);
/* Set a "__metadata__" entry (copied; setting a key again replaces it). */
int st_writer_set_metadata(st_writer *w, const char *key, const char *value, char *err,
                           size_t errlen);

/* Write everything to path atomically (see the top of this file). On error
 * the previous file at path, if any, is untouched and the temporary file
 * removed -- except if only the final directory fsync fails: path then
 * already holds the new file, and the message says "written, but syncing its
 * directory failed". */
int st_writer_write(const st_writer *w, const char *path, char *err, size_t errlen);

#endif
