/* checkpoint.c — a trainer's whole state in one file, written atomically.
 *
 * Layout (little-endian), every section in the order the trainer lists its
 * trainable tensors, so a file only loads into the same kind of trainer:
 *   "AFLOCKPT" u32 version
 *   u64 step, epoch, pos, total_steps, n_tensors, best_epoch+1
 *   f64 trainable_sum, best_score, elapsed
 *   f32 last_loss; FLOPs so far; metrics best, last (raw struct bytes)
 *   per tensor: u32 name length, name, u64 size, u8 trainable, u8 has_adam,
 *               data[size], then m[size], v[size] when has_adam
 *   u64 freezer blob length, blob
 *   u8 has_best, then every tensor's best-epoch data
 *   u32 CRC-32 of all bytes before it
 * Written through the atomic writer (atomicfile.h: a temporary beside PATH,
 * fsync'd, renamed over PATH, then the folder fsync'd): a crash leaves the
 * old checkpoint or the new one, never a torn file. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomicfile.h"
#include "train_internal.h"

#define CKPT_MAGIC "AFLOCKPT"
#define CKPT_VERSION 1u

/* ---------------------------------------------------------------- CRC-32 */

static uint32_t crc_table[256];

static void crc_init(void) {
    if (crc_table[1]) return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

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

int trainer_save_checkpoint(const aflo_trainer *t, const char *path, char *err, size_t errlen) {
    crc_init();
    size_t blob_len = t->freezer ? freezer_state_size(t->freezer) : 0;
    void *blob = blob_len ? malloc(blob_len) : NULL;
    if (blob_len && (!blob || freezer_save(t->freezer, blob, blob_len) != 0)) {
        free(blob);
        snprintf(err, errlen, "checkpoint: cannot serialise the freezing state");
        return -1;
    }
    ckpt_out o = {0};
    char why[1024];
    if (atomic_file_open(&o.af, path, why, sizeof why) != 0) {
        free(blob);
        snprintf(err, errlen, "checkpoint %s", why);
        return -1;
    }
    put(&o, CKPT_MAGIC, 8);
    uint32_t version = CKPT_VERSION;
    put(&o, &version, sizeof version);
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
        snprintf(err, errlen, "checkpoint %s", why);
        return -1;
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
    if (!f) {
        snprintf(err, errlen, "checkpoint %s: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto io;
    *out = malloc(n ? (size_t)n : 1);
    if (!*out) {
        fclose(f);
        snprintf(err, errlen, "checkpoint %s: out of memory", path);
        return -1;
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
    snprintf(err, errlen, "checkpoint %s: read error", path);
    return -1;
}

int trainer_load_checkpoint(aflo_trainer *t, const char *path, char *err, size_t errlen) {
    crc_init();
    uint8_t *buf;
    size_t len;
    if (read_file(path, &buf, &len, err, errlen) != 0) return -1;
    int rc = -1;
    float *staged = NULL;
    if (len < 8 + 4 + 4 || memcmp(buf, CKPT_MAGIC, 8) != 0) {
        snprintf(err, errlen, "checkpoint %s: not an aflorad checkpoint", path);
        goto out;
    }
    uint32_t stored_crc;
    memcpy(&stored_crc, buf + len - 4, 4);
    if (crc_update(0, buf, len - 4) != stored_crc) {
        snprintf(err, errlen, "checkpoint %s: checksum mismatch (file is corrupt)", path);
        goto out;
    }
    ckpt_in in = {.p = buf + 8, .end = buf + len - 4};
    uint32_t version;
    take(&in, &version, sizeof version);
    if (version != CKPT_VERSION) {
        snprintf(err, errlen, "checkpoint %s: version %u, this build reads %u", path, version,
                 CKPT_VERSION);
        goto out;
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
    take(&in, &best_m, sizeof best_m);
    take(&in, &last_m, sizeof last_m);
    if (total != t->total_steps || np != (uint64_t)t->np || epoch > t->tc.epochs ||
        pos > t->train->n) {
        snprintf(err, errlen,
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
        snprintf(err, errlen, "checkpoint %s: out of memory", path);
        goto out;
    }
    const uint8_t *sections = in.p;
    size_t off = 0;
    for (int i = 0; i < t->np; i++) {
        uint32_t nlen;
        take(&in, &nlen, sizeof nlen);
        char name[96] = "";
        if (nlen >= sizeof name) in.short_read = true;
        else take(&in, name, nlen);
        uint64_t size = take_u64(&in);
        uint8_t flags[2];
        take(&in, flags, 2);
        if (in.short_read || strcmp(name, t->p[i]->name) != 0 || size != t->p[i]->size) {
            snprintf(err, errlen, "checkpoint %s: tensor %d is %s, expected %s of %zu values",
                     path, i, in.short_read ? "truncated" : name, t->p[i]->name, t->p[i]->size);
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
        snprintf(err, errlen, "checkpoint %s: has a best-epoch snapshot but this run has no "
                 "evaluation set", path);
        goto out;
    }
    const uint8_t *best = in.p;
    if (has_best) take(&in, NULL, all * sizeof(float));
    if (in.short_read || in.p != in.end) {
        snprintf(err, errlen, "checkpoint %s: truncated or has trailing bytes", path);
        goto out;
    }
    if (t->freezer && freezer_load(t->freezer, blob, blob_len, err, errlen) != 0) goto out;
    if (!t->freezer && blob_len) {
        snprintf(err, errlen, "checkpoint %s: has freezing state but this run does not freeze",
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
                snprintf(err, errlen, "checkpoint %s: out of memory", path);
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
