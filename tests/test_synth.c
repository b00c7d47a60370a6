/* test_synth.c — writing the built-in demo folder (synth_write_demo) keeps
 * the atomic-write discipline synth.h promises: every file goes through the
 * one atomic writer (atomicfile.h), so it is renamed into place and its
 * folder synced once, no temp file stays behind, a failed folder sync is
 * reported (EINVAL, "cannot sync directories", is not a failure), and the
 * result is the same for the same seed.
 *
 * The writer's fsync seam (atomic_file_fsync) is replaced for these tests:
 * it counts the calls on files and on directories and can make the latter
 * fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/atomicfile.h"
#include "synth.h"
#include "testutil.h"

/* config.json, vocab.txt, tokenizer_config.json, model.safetensors,
 * train.tsv, dev.tsv */
#define DEMO_FILES 6

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Every file's rename is made durable: the folder is synced once per file
 * (the text files used to be renamed without it). */
static void test_every_file_is_synced_into_its_folder(void **state) {
    char dir[512], err[512] = "";
    path_in(dir, sizeof dir, state, "demo");
    if (synth_write_demo(dir, 20, 10, 42, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(fsync_file_calls(), DEMO_FILES);
    assert_int_equal(fsync_dir_calls(), DEMO_FILES);
    assert_int_equal(count_atomic_temps(dir), 0);

    /* the same seed writes the same files */
    char again[512], a[600], b[600];
    path_in(again, sizeof again, state, "demo2");
    assert_int_equal(synth_write_demo(again, 20, 10, 42, err, sizeof err), 0);
    static const char *const names[] = {"config.json", "vocab.txt", "train.tsv", "dev.tsv"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(a, sizeof a, "%s/%s", dir, names[i]);
        snprintf(b, sizeof b, "%s/%s", again, names[i]);
        char *x = slurp(a), *y = slurp(b);
        assert_string_equal(x, y);
        free(x);
        free(y);
    }
}

static void test_folder_sync_failure_is_reported(void **state) {
    char dir[512], err[512] = "";
    path_in(dir, sizeof dir, state, "demo");
    fsync_fail_dirs(EINVAL);
    int rc = synth_write_demo(dir, 20, 10, 42, err, sizeof err);
    fsync_fail_dirs(0);
    if (rc != 0) fail_msg("EINVAL from a folder's fsync failed the demo: %s", err);
    assert_int_equal(fsync_dir_calls(), DEMO_FILES);

    path_in(dir, sizeof dir, state, "demo_eio");
    fsync_fail_dirs(EIO);
    rc = synth_write_demo(dir, 20, 10, 42, err, sizeof err);
    fsync_fail_dirs(0);
    assert_int_equal(rc, -1);
    /* the first file written already reports it */
    assert_non_null(strstr(err, "config.json"));
    assert_non_null(strstr(err, "syncing its directory failed"));
    assert_non_null(strstr(err, strerror(EIO)));
    assert_int_equal(count_atomic_temps(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_file_is_synced_into_its_folder, fsync_seam_setup,
                                        fsync_seam_teardown),
        cmocka_unit_test_setup_teardown(test_folder_sync_failure_is_reported, fsync_seam_setup,
                                        fsync_seam_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
