/* checkpoint.c — a trainer's whole state in one file, written atomically.
 *
 * Layout (little-endian), every section in the order the trainer lists its
 * trainable tensors, so a file only loads into the same kind of trainer:
 *   "AFLOCKPT" u32 version
 *   u32 note length, note (version 2 on; the caller's record of the run,
 *       not interpreted here: see trainer_set_checkpoint_note)
 *   u64 step, epoch, pos, total_steps, n_tensors, best_epoch+1
 *   f64 trainable_sum, best_score, elapsed
 *   f32 last_loss; FLOPs so far; metrics best, last (raw struct bytes;
 *       version 2 and older: the bytes before exact_match)
 *   per tensor: u32 name length, name, u64 size, u8 trainable, u8 has_adam,
 *               data[size], then m[size], v[size] when has_adam
 *   u64 freezer blob length, blob
 *   u8 has_best, then every tensor's best-epoch data
 *   u32 CRC-32 of all bytes before it
 * Written through the atomic writer (atomicfile.h: a temporary beside PATH,
 * fsync'd, renamed over PATH, then the folder fsync'd): a crash leaves the
 * old checkpoint or the new one, never a torn file. Version 1 files (no
 * note) and version 2 files (metrics without exact match) still load. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/atomicfile.h"
#include "base/errmsg.h"
#include "train/train_internal.h"

#define CKPT_MAGIC "AFLOCKPT"
#define CKPT_VERSION 3u
#define CKPT_FIRST_NOTE_VERSION 2u
#define CKPT_FIRST_EXACT_MATCH_VERSION 3u
/* Version 2's metrics struct ended with n and its padding. */
_Static_assert(offsetof(aflo_metrics, exact_match) == offsetof(aflo_metrics, n) + sizeof(double),
               "version 2 metrics records are the bytes before exact_match");
/* A note is a few KB of JSON; anything near this is not one. */
#define CKPT_NOTE_MAX ((size_t)1 << 20)

/* ---------------------------------------------------------------- CRC-32 */

/* CRC-32 (IEEE 802.3, reflected polynomial 0xedb88320), the table written
 * out rather than filled on first use: workers checkpoint concurrently, and
 * a lazily filled table raced (a checkpoint could get a wrong CRC and be
 * refused later). tests/test_checkpoint.c checks it against the bitwise
 * definition. */
static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu, 0xe963a535u,
    0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u, 0x09b64c2bu, 0x7eb17cbdu,
    0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u, 0xf3b97148u, 0x84be41deu, 0x1adad47du,
    0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u, 0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu,
    0x14015c4fu, 0x63066cd9u, 0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u,
    0xa2677172u, 0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u, 0x26d930acu,
    0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u, 0xcfba9599u, 0xb8bda50fu,
    0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u, 0x2f6f7c87u, 0x58684c11u, 0xc1611dabu,
    0xb6662d3du, 0x76dc4190u, 0x01db7106u, 0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu,
    0x9fbfe4a5u, 0xe8b8d433u, 0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu,
    0x086d3d2du, 0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u, 0x8bbeb8eau,
    0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u, 0x4db26158u, 0x3ab551ceu,
    0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u, 0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au,
    0x346ed9fcu, 0xad678846u, 0xda60b8d0u, 0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u,
    0x5005713cu, 0x270241aau, 0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u,
    0xce61e49fu, 0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au, 0xead54739u,
    0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u, 0x0d6d6a3eu, 0x7a6a5aa8u,
    0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u, 0xf00f9344u, 0x8708a3d2u, 0x1e01f268u,
    0x6906c2feu, 0xf762575du, 0x806567cbu, 0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u,
    0x10da7a5au, 0x67dd4accu, 0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u,
    0xa1d1937eu, 0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u, 0x316e8eefu,
    0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u, 0xcc0c7795u, 0xbb0b4703u,
    0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u, 0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u,
    0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du, 0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au,
    0x9c0906a9u, 0xeb0e363fu, 0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu,
    0x0cb61b38u, 0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u, 0x88085ae6u,
    0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u, 0x616bffd3u, 0x166ccf45u,
    0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u, 0xa7672661u, 0xd06016f7u, 0x4969474du,
    0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu, 0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u,
    0x47b2cf7fu, 0x30b5ffe9u, 0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u,
    0xcdd70693u, 0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

static uint32_t crc_update(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---------------------------------------------------------------- writing */

/* A failed write is remembered by the atomic file and reported by its commit. */
typedef struct {
    atomic_file af;
    uint32_t crc;
} ckpt_out;

static void put(ckpt_out *o, const void *data, size_t n) {
    if (n == 0 || atomic_file_write(&o->af, data, n) != 0) return;
    o->crc = crc_update(o->crc, data, n);
}

static void put_u64(ckpt_out *o, uint64_t v) { put(o, &v, sizeof v); }
static void put_f64(ckpt_out *o, double v) { put(o, &v, sizeof v); }

int trainer_set_checkpoint_note(aflo_trainer *t, const char *note) {
    char *copy = NULL;
    if (note && (strlen(note) > CKPT_NOTE_MAX || !(copy = strdup(note)))) return -1;
    free(t->ckpt_note);
    t->ckpt_note = copy;
    return 0;
}

int trainer_save_checkpoint(const aflo_trainer *t, const char *path, char *err, size_t errlen) {
    size_t blob_len = t->freezer ? freezer_state_size(t->freezer) : 0;
    void *blob = blob_len ? malloc(blob_len) : NULL;
    if (blob_len && (!blob || freezer_save(t->freezer, blob, blob_len) != 0)) {
        free(blob);
        return set_err(err, errlen, "checkpoint: cannot serialise the freezing state");
    }
    ckpt_out o = {0};
    char why[1024];
    if (atomic_file_open(&o.af, path, why, sizeof why) != 0) {
        free(blob);
        return set_err(err, errlen, "checkpoint %s", why);
    }
    put(&o, CKPT_MAGIC, 8);
    uint32_t version = CKPT_VERSION;
    put(&o, &version, sizeof version);
    uint32_t note_len = t->ckpt_note ? (uint32_t)strlen(t->ckpt_note) : 0;
    put(&o, &note_len, sizeof note_len);
    put(&o, t->ckpt_note, note_len);
    put_u64(&o, (uint64_t)t->step);
    put_u64(&o, (uint64_t)t->epoch);
    put_u64(&o, (uint64_t)t->pos);
    put_u64(&o, (uint64_t)t->total_steps);
    put_u64(&o, (uint64_t)t->np);
    put_u64(&o, (uint64_t)(t->best_epoch + 1));
    put_f64(&o, t->trainable_sum);
    put_f64(&o, t->best_score);
    put_f64(&o, t->elapsed_before);
    put(&o, &t->last_loss, sizeof t->last_loss);
    put(&o, model_flops(t->m), sizeof(aflo_flops));
    put(&o, &t->best_metrics, sizeof t->best_metrics);
    put(&o, &t->last_metrics, sizeof t->last_metrics);
    for (int i = 0; i < t->np; i++) {
        const aflo_param *p = t->p[i];
        uint32_t len = (uint32_t)strlen(p->name);
        put(&o, &len, sizeof len);
        put(&o, p->name, len);
        put_u64(&o, p->size);
        uint8_t flags[2] = {p->trainable, t->adam[i].m != NULL};
        put(&o, flags, 2);
        put(&o, p->data, p->size * sizeof(float));
        if (flags[1]) {
            put(&o, t->adam[i].m, p->size * sizeof(float));
            put(&o, t->adam[i].v, p->size * sizeof(float));
        }
    }
    put_u64(&o, blob_len);
    put(&o, blob, blob_len);
    free(blob);
    uint8_t has_best = t->best && t->best_epoch >= 0;
    put(&o, &has_best, 1);
    if (has_best) {
        size_t total = 0;
        for (int i = 0; i < t->np; i++) total += t->sizes[i];
        put(&o, t->best, total * sizeof(float));
    }
    uint32_t crc = o.crc;
    put(&o, &crc, sizeof crc);
    if (atomic_file_commit(&o.af, why, sizeof why) != 0) {
        return set_err(err, errlen, "checkpoint %s", why);
    }
    return 0;
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    const uint8_t *p, *end;
    bool short_read;
} ckpt_in;

static void take(ckpt_in *in, void *dst, size_t n) {
    if (in->short_read || (size_t)(in->end - in->p) < n) {
        in->short_read = true;
        if (dst) memset(dst, 0, n);
        return;
    }
    if (dst) memcpy(dst, in->p, n);
    in->p += n;
}

static uint64_t take_u64(ckpt_in *in) {
    uint64_t v;
    take(in, &v, sizeof v);
    return v;
}

static double take_f64(ckpt_in *in) {
    double v;
    take(in, &v, sizeof v);
    return v;
}

static int read_file(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return set_err(err, errlen, "checkpoint %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto io;
    *out = malloc(n ? (size_t)n : 1);
    if (!*out) {
        fclose(f);
        return set_err(err, errlen, "checkpoint %s: out of memory", path);
    }
    if (fread(*out, 1, (size_t)n, f) != (size_t)n) {
        free(*out);
        goto io;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
io:
    fclose(f);
    return set_err(err, errlen, "checkpoint %s: read error", path);
}

int checkpoint_read_note(const char *path, char **note, char *err, size_t errlen) {
    *note = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return set_err(err, errlen, "checkpoint %s: %s", path, strerror(errno));
    int rc = -1;
    uint8_t head[8 + 4 + 4];
    size_t got = fread(head, 1, sizeof head, f);
    uint32_t version = 0, len = 0;
    if (got >= 12) memcpy(&version, head + 8, 4);
    if (got < 12 || memcmp(head, CKPT_MAGIC, 8) != 0) {
        set_err(err, errlen, "checkpoint %s: not an aflorad checkpoint", path);
        goto out;
    }
    if (version < 1 || version > CKPT_VERSION) {
        set_err(err, errlen, "checkpoint %s: version %u, this build reads 1 to %u", path, version,
                CKPT_VERSION);
        goto out;
    }
    if (version < CKPT_FIRST_NOTE_VERSION) {
        rc = 0; /* written before notes existed */
        goto out;
    }
    if (got == sizeof head) memcpy(&len, head + 12, 4);
    if (got != sizeof head || len > CKPT_NOTE_MAX) {
        set_err(err, errlen, "checkpoint %s: truncated or damaged", path);
        goto out;
    }
    *note = malloc((size_t)len + 1);
    if (!*note) {
        set_err(err, errlen, "checkpoint %s: out of memory", path);
        goto out;
    }
    if (fread(*note, 1, len, f) != len) {
        set_err(err, errlen, "checkpoint %s: truncated or damaged", path);
        free(*note);
        *note = NULL;
        goto out;
    }
    (*note)[len] = '\0';
    rc = 0;
out:
    fclose(f);
    return rc;
}

int trainer_load_checkpoint(aflo_trainer *t, const char *path, char *err, size_t errlen) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if (read_file(path, &buf, &len, err, errlen) != 0) return -1;
    int rc = -1;
    float *staged = NULL;
    if (len < 8 + 4 + 4 || memcmp(buf, CKPT_MAGIC, 8) != 0) {
        set_err(err, errlen, "checkpoint %s: not an aflorad checkpoint", path);
        goto out;
    }
    uint32_t stored_crc;
    memcpy(&stored_crc, buf + len - 4, 4);
    if (crc_update(0, buf, len - 4) != stored_crc) {
        set_err(err, errlen, "checkpoint %s: checksum mismatch (file is corrupt)", path);
        goto out;
    }
    ckpt_in in = {.p = buf + 8, .end = buf + len - 4};
    uint32_t version;
    take(&in, &version, sizeof version);
    if (version < 1 || version > CKPT_VERSION) {
        set_err(err, errlen, "checkpoint %s: version %u, this build reads 1 to %u", path, version,
                CKPT_VERSION);
        goto out;
    }
    if (version >= CKPT_FIRST_NOTE_VERSION) {
        uint32_t note_len;
        take(&in, &note_len, sizeof note_len);
        take(&in, NULL, note_len);
    }
    long step = (long)take_u64(&in);
    int epoch = (int)take_u64(&in), pos = (int)take_u64(&in);
    long total = (long)take_u64(&in);
    uint64_t np = take_u64(&in);
    int best_epoch = (int)take_u64(&in) - 1;
    double trainable_sum = take_f64(&in), best_score = take_f64(&in), elapsed = take_f64(&in);
    float last_loss;
    aflo_metrics best_m, last_m;
    take(&in, &last_loss, sizeof last_loss);
    aflo_flops flops;
    take(&in, &flops, sizeof flops);
    /* older files end each metrics record where exact_match begins */
    size_t mbytes = version >= CKPT_FIRST_EXACT_MATCH_VERSION ? sizeof best_m
                                                              : offsetof(aflo_metrics, exact_match);
    memset(&best_m, 0, sizeof best_m);
    memset(&last_m, 0, sizeof last_m);
    take(&in, &best_m, mbytes);
    take(&in, &last_m, mbytes);
    if (version < CKPT_FIRST_EXACT_MATCH_VERSION) /* its byte was padding then */
        best_m.has_exact_match = last_m.has_exact_match = false;
    if (total != t->total_steps || np != (uint64_t)t->np || epoch > t->tc.epochs ||
        pos > t->train->n) {
        set_err(err, errlen,
                "checkpoint %s: made for a different run (%ld steps, %llu tensors; this run has "
                "%ld steps, %d tensors)",
                path, total, (unsigned long long)np, t->total_steps, t->np);
        goto out;
    }
    /* Validate everything before changing the trainer: stage tensor data. */
    size_t all = 0;
    for (int i = 0; i < t->np; i++) all += t->sizes[i];
    staged = malloc((all ? all : 1) * sizeof(float));
    if (!staged) {
        set_err(err, errlen, "checkpoint %s: out of memory", path);
        goto out;
    }
    const uint8_t *sections = in.p;
    size_t off = 0;
    for (int i = 0; i < t->np; i++) {
        uint32_t nlen;
        take(&in, &nlen, sizeof nlen);
        char name[96] = "";
        if (nlen >= sizeof name)
            in.short_read = true;
        else
            take(&in, name, nlen);
        uint64_t size = take_u64(&in);
        uint8_t flags[2];
        take(&in, flags, 2);
        if (in.short_read || strcmp(name, t->p[i]->name) != 0 || size != t->p[i]->size) {
            set_err(err, errlen, "checkpoint %s: tensor %d is %s, expected %s of %zu values", path,
                    i, in.short_read ? "truncated" : name, t->p[i]->name, t->p[i]->size);
            goto out;
        }
        take(&in, staged + off, size * sizeof(float));
        if (flags[1]) take(&in, NULL, 2 * size * sizeof(float));
        off += size;
    }
    uint64_t blob_len = take_u64(&in);
    const uint8_t *blob = in.p;
    take(&in, NULL, blob_len);
    uint8_t has_best;
    take(&in, &has_best, 1);
    if (has_best && !t->best) {
        set_err(err, errlen,
                "checkpoint %s: has a best-epoch snapshot but this run has no "
                "evaluation set",
                path);
        goto out;
    }
    const uint8_t *best = in.p;
    if (has_best) take(&in, NULL, all * sizeof(float));
    if (in.short_read || in.p != in.end) {
        set_err(err, errlen, "checkpoint %s: truncated or has trailing bytes", path);
        goto out;
    }
    /* A run with freezing turned on or off (freeze.enabled) differs from the
     * checkpoint's in whether it has freezing state at all. */
    if (t->freezer && !blob_len) {
        set_err(err, errlen, "checkpoint %s: has no freezing state but this run freezes", path);
        goto out;
    }
    if (t->freezer && freezer_load(t->freezer, blob, blob_len, err, errlen) != 0) goto out;
    if (!t->freezer && blob_len) {
        set_err(err, errlen, "checkpoint %s: has freezing state but this run does not freeze",
                path);
        goto out;
    }

    /* Commit: tensors, Adam moments, frozen set, counters. */
    in.p = sections;
    off = 0;
    for (int i = 0; i < t->np; i++) {
        aflo_param *p = t->p[i];
        uint32_t nlen;
        take(&in, &nlen, sizeof nlen);
        take(&in, NULL, nlen + sizeof(uint64_t));
        uint8_t flags[2];
        take(&in, flags, 2);
        take(&in, p->data, p->size * sizeof(float));
        if (flags[1]) {
            if (!t->adam[i].m && adam_state_init(&t->adam[i], p->size) != 0) {
                set_err(err, errlen, "checkpoint %s: out of memory", path);
                goto out;
            }
            take(&in, t->adam[i].m, p->size * sizeof(float));
            take(&in, t->adam[i].v, p->size * sizeof(float));
        } else {
            adam_state_free(&t->adam[i]);
        }
        if (!flags[0] && p->trainable) model_freeze_param(t->m, p);
    }
    if (has_best) memcpy(t->best, best, all * sizeof(float));
    t->step = step;
    t->epoch = epoch;
    t->pos = pos;
    t->trainable_sum = trainable_sum;
    t->best_score = best_score;
    t->best_epoch = best_epoch;
    t->best_metrics = best_m;
    t->last_metrics = last_m;
    t->last_loss = last_loss;
    t->elapsed_before = elapsed;
    *model_flops(t->m) = flops;
    rc = 0;
out:
    free(staged);
    free(buf);
    return rc;
}
