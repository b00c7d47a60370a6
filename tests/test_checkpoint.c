/* test_checkpoint.c — the checkpoint file itself (engine/train/checkpoint.c): its
 * CRC against the bitwise definition of CRC-32, first checkpoints written by
 * several threads at once, the folder fsync's failure modes (injected), and
 * the caller's note, including version 1 files written before notes.
 *
 * Checkpoints are written by the one atomic writer (atomicfile.h); its fsync
 * seam (atomic_file_fsync) is replaced where a test injects failures: calls
 * on a directory can be made to fail with a chosen errno; every other call
 * goes to the real fsync. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/atomicfile.h"
#include "synth.h"
#include "testutil.h"
#include "train/train.h"

/* ---- fsync fault injection -------------------------------------------------- */

/* ---- a small trainer -------------------------------------------------------- */

typedef struct {
    aflo_config c;
    aflo_dataset train;
    aflo_model *m;
    aflo_trainer *t;
} setup;

static void make_setup(setup *s, uint64_t seed) {
    char err[512];
    synth_demo_config(&s->c);
    dataset_init(&s->train);
    assert_int_equal(synth_sentiment(&s->train, 40, s->c.vocab_size, 11), 0);
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = 4,
                              .alpha = 8,
                              .targets = ALL_MODULES,
                              .projections = PROJ_FFN};
    s->m = model_create(&s->c, &ac, TASK_CLASSIFICATION, 2, seed, err, sizeof err);
    assert_non_null(s->m);
    aflo_train_config tc;
    train_config_defaults(&tc, 2);
    tc.batch_size = 8;
    s->t = trainer_create(s->m, &tc, &s->train, NULL, err, sizeof err);
    if (!s->t) fail_msg("%s", err);
}

static void free_setup(setup *s) {
    trainer_free(s->t);
    model_free(s->m);
    dataset_free(&s->train);
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spill(const char *path, const uint8_t *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* CRC-32 bit by bit, straight from its definition (reflected 0xedb88320,
 * initial and final inversion). */
static uint32_t crc32_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_crc_is_crc32(void **state) {
    /* the standard check value */
    assert_int_equal(crc32_bitwise((const uint8_t *)"123456789", 9), 0xcbf43926u);
    setup s;
    make_setup(&s, 5);
    char path[512], err[512];
    path_in(path, sizeof path, state, "a.ckpt");
    assert_int_equal(trainer_save_checkpoint(s.t, path, err, sizeof err), 0);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    uint32_t stored;
    memcpy(&stored, buf + len - 4, 4);
    assert_int_equal(stored, crc32_bitwise(buf, len - 4));
    free(buf);
    free_setup(&s);
}

typedef struct {
    setup s;
    char path[512];
    pthread_barrier_t *start;
    int rc;
    char err[512];
} saver;

static void *save_thread(void *arg) {
    saver *v = arg;
    pthread_barrier_wait(v->start);
    v->rc = trainer_save_checkpoint(v->s.t, v->path, v->err, sizeof v->err);
    return NULL;
}

/* Workers checkpoint concurrently; the first checkpoints of a process used
 * to fill the CRC table lazily and could race (a wrong CRC, refused at the
 * next load). Under `make test-tsan` the old table is reported as a race. */
static void test_concurrent_first_checkpoints_load(void **state) {
    enum { N = 4 };
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, N), 0);
    saver v[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        make_setup(&v[i].s, 5 + (uint64_t)i);
        char name[32];
        snprintf(name, sizeof name, "t%d.ckpt", i);
        path_in(v[i].path, sizeof v[i].path, state, name);
        v[i].start = &start;
        assert_int_equal(pthread_create(&th[i], NULL, save_thread, &v[i]), 0);
    }
    for (int i = 0; i < N; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < N; i++) {
        if (v[i].rc != 0) fail_msg("thread %d: %s", i, v[i].err);
        setup fresh;
        make_setup(&fresh, 5 + (uint64_t)i);
        char err[512];
        if (trainer_load_checkpoint(fresh.t, v[i].path, err, sizeof err) != 0)
            fail_msg("thread %d's checkpoint: %s", i, err);
        free_setup(&fresh);
        free_setup(&v[i].s);
    }
}

/* A file system that cannot sync directories (EINVAL) keeps the checkpoint:
 * the rename stands. Any other error is reported, and the new file is the
 * one in place. Either way the folder is synced once per checkpoint. */
static void test_folder_sync_einval_is_not_a_failure(void **state) {
    setup s;
    make_setup(&s, 5);
    char path[512], err[512] = "";
    path_in(path, sizeof path, state, "a.ckpt");
    fsync_counts_reset();
    fsync_fail_dirs(EINVAL);
    int rc = trainer_save_checkpoint(s.t, path, err, sizeof err);
    fsync_fail_dirs(0);
    if (rc != 0) fail_msg("EINVAL from the folder's fsync failed the checkpoint: %s", err);
    assert_int_equal(fsync_dir_calls(), 1); /* it did try, once */
    assert_int_equal(trainer_load_checkpoint(s.t, path, err, sizeof err), 0);

    fsync_counts_reset();
    fsync_fail_dirs(EIO);
    rc = trainer_save_checkpoint(s.t, path, err, sizeof err);
    fsync_fail_dirs(0);
    assert_int_equal(rc, -1);
    assert_int_equal(fsync_dir_calls(), 1);
    assert_non_null(strstr(err, "syncing its directory failed"));
    assert_non_null(strstr(err, strerror(EIO)));
    /* renamed before the folder sync failed: the new checkpoint is there */
    if (trainer_load_checkpoint(s.t, path, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(count_atomic_temps(*state), 0);
    free_setup(&s);
}

/* A version 2 file's two metrics records end where exact_match begins:
 * cut the rest of each from a version 3 file whose first starts at at. */
static void strip_exact_match(uint8_t *buf, size_t *len, size_t at) {
    size_t full = sizeof(aflo_metrics), kept = offsetof(aflo_metrics, exact_match);
    for (int k = 1; k >= 0; k--) { /* the last record first: the first's offset stays */
        size_t from = at + (size_t)k * full + kept, cut = full - kept;
        memmove(buf + from, buf + from + cut, *len - from - cut);
        *len -= cut;
    }
}

static void redo_crc(uint8_t *buf, size_t len) {
    uint32_t crc = crc32_bitwise(buf, len - 4);
    memcpy(buf + len - 4, &crc, 4);
}

/* The caller's note comes back from the header alone, and does not disturb
 * loading; version 2 files (metrics without exact match) and version 1
 * files (before notes) still load, the latter with no note. */
static void test_note_round_trip_and_version_1(void **state) {
    setup s;
    make_setup(&s, 5);
    char path[512], err[512];
    path_in(path, sizeof path, state, "a.ckpt");
    static const char note[] = "{\"spec\": {\"learning_rate\": 0.01}}";
    assert_int_equal(trainer_set_checkpoint_note(s.t, note), 0);
    assert_int_equal(trainer_save_checkpoint(s.t, path, err, sizeof err), 0);
    char *got = NULL;
    assert_int_equal(checkpoint_read_note(path, &got, err, sizeof err), 0);
    assert_non_null(got);
    assert_string_equal(got, note);
    free(got);
    assert_int_equal(trainer_load_checkpoint(s.t, path, err, sizeof err), 0);

    /* The same file as version 2 wrote it: metrics records without
     * exact_match; it loads. Then as version 1: no note section either. */
    size_t len;
    uint8_t *buf = slurp(path, &len);
    size_t metrics_at = 8 + 4 + 4 + strlen(note) + 6 * 8 + 3 * 8 + 4 + sizeof(aflo_flops);
    strip_exact_match(buf, &len, metrics_at);
    uint32_t v2 = 2;
    memcpy(buf + 8, &v2, 4);
    redo_crc(buf, len);
    spill(path, buf, len);
    if (trainer_load_checkpoint(s.t, path, err, sizeof err) != 0) fail_msg("%s", err);
    size_t note_at = 8 + 4, cut = 4 + strlen(note);
    uint32_t v1 = 1;
    memcpy(buf + 8, &v1, 4);
    memmove(buf + note_at, buf + note_at + cut, len - note_at - cut);
    len -= cut;
    redo_crc(buf, len);
    spill(path, buf, len);
    free(buf);
    got = (char *)1;
    assert_int_equal(checkpoint_read_note(path, &got, err, sizeof err), 0);
    assert_null(got);
    if (trainer_load_checkpoint(s.t, path, err, sizeof err) != 0) fail_msg("%s", err);

    /* Not a checkpoint at all, and a note longer than the file. */
    spill(path, (const uint8_t *)"hello", 5);
    assert_int_equal(checkpoint_read_note(path, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an aflorad checkpoint"));
    uint8_t head[16] = "AFLOCKPT";
    uint32_t big = 1000;
    memcpy(head + 8, &v2, 4);
    memcpy(head + 12, &big, 4);
    spill(path, head, sizeof head);
    assert_int_equal(checkpoint_read_note(path, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated"));
    assert_null(got);
    free_setup(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        /* first: the checkpoints of this test must be the process's first */
        cmocka_unit_test_setup_teardown(test_concurrent_first_checkpoints_load, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_crc_is_crc32, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_folder_sync_einval_is_not_a_failure, fsync_seam_setup,
                                        fsync_seam_teardown),
        cmocka_unit_test_setup_teardown(test_note_round_trip_and_version_1, tmpdir_setup,
                                        tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
