/* test_atomicfile.c — the one atomic writer: write/commit/abort, the target
 * never half-written, no temporary file left behind on failure, EINVAL from
 * a directory fsync tolerated; and every writer of the engine (safetensors,
 * checkpoints, adapters, the demo folder) going through it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/adapter_native.h"
#include "io/adapter_peft.h"
#include "base/atomicfile.h"
#include "io/safetensors.h"
#include "synth.h"
#include "testutil.h"
#include "train/train.h"

static char errbuf[1024];

/* ---------------------------------------------------------------- helpers */

static void put_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* The whole file as a malloc'd string (NULL when it cannot be read). */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (n + 2 > cap) {
            cap = cap ? cap * 2 : 256;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        buf[n++] = (char)c;
    }
    fclose(f);
    if (!buf) buf = calloc(1, 1);
    buf[n] = '\0';
    return buf;
}

static void assert_file_is(const char *path, const char *want) {
    char *got = slurp(path);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static int count_temps(const char *dir) {
    int n = count_atomic_temps(dir);
    assert_true(n >= 0);
    return n;
}

/* ---------------------------------------------------------------- fsync seam */

/* What the injected fsync does to directories and to files, and a log of the
 * calls: "D <dir>" or "F <file>", paths read back from /proc/self/fd. */
#define MAX_SYNCS 64
static struct {
    int dir_errno, file_errno; /* 0: the real fsync */
    int n;
    char log[MAX_SYNCS][600];
} seam;

static int fake_fsync(int fd) {
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    bool dir = S_ISDIR(st.st_mode);
    if (seam.n < MAX_SYNCS) {
        char link[64], target[580];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(link, target, sizeof target - 1);
        target[k < 0 ? 0 : k] = '\0';
        snprintf(seam.log[seam.n++], sizeof seam.log[0], "%c %s", dir ? 'D' : 'F', target);
    }
    int e = dir ? seam.dir_errno : seam.file_errno;
    if (e) {
        errno = e;
        return -1;
    }
    return fsync(fd);
}

static int seam_setup(void **state) {
    memset(&seam, 0, sizeof seam);
    atomic_file_fsync = fake_fsync;
    return tmpdir_setup(state);
}

static int seam_teardown(void **state) {
    atomic_file_fsync = fsync;
    return tmpdir_teardown(state);
}

/* The file at path was written the atomic way: its temporary fsync'd, then
 * (after the rename) its directory fsync'd. */
static void assert_written_atomically(void **state, const char *name) {
    char tmp_prefix[700], dir_line[700];
    snprintf(tmp_prefix, sizeof tmp_prefix, "F %s/%s.tmp-", (const char *)*state, name);
    snprintf(dir_line, sizeof dir_line, "D %s", (const char *)*state);
    for (int i = 0; i + 1 < seam.n; i++)
        if (strncmp(seam.log[i], tmp_prefix, strlen(tmp_prefix)) == 0 &&
            strcmp(seam.log[i + 1], dir_line) == 0)
            return;
    fail_msg("%s was not written through a fsync'd temporary and a directory fsync", name);
}

/* ---------------------------------------------------------------- the writer */

static void test_stream_commit(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "out.txt");
    atomic_file af;
    assert_int_equal(atomic_file_open(&af, path, errbuf, sizeof errbuf), 0);
    assert_true(atomic_file_is_temp(strrchr(af.tmp, '/') + 1));
    assert_int_equal(atomic_file_write(&af, "hello, ", 7), 0);
    assert_int_equal(atomic_file_write(&af, "", 0), 0);
    assert_int_equal(atomic_file_write(&af, "world\n", 6), 0);
    assert_int_equal(access(path, F_OK), -1); /* nothing at the target yet */
    char back[16] = "";
    assert_int_equal(pread(af.fd, back, 5, 0), 5); /* a caller may check before publishing */
    assert_string_equal(back, "hello");
    assert_int_equal(atomic_file_commit(&af, errbuf, sizeof errbuf), 0);
    assert_null(af.path);
    assert_file_is(path, "hello, world\n");
    assert_int_equal(count_temps(*state), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0600, 0600);
}

/* Until the commit, readers see the old file whole; afterwards the new one. */
static void test_replace_is_all_or_nothing(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "data.txt");
    put_file(path, "old contents\n");
    atomic_file af;
    assert_int_equal(atomic_file_open(&af, path, errbuf, sizeof errbuf), 0);
    assert_int_equal(atomic_file_write(&af, "new", 3), 0);
    assert_file_is(path, "old contents\n");
    assert_int_equal(atomic_file_write(&af, " contents, longer\n", 18), 0);
    assert_file_is(path, "old contents\n");
    assert_int_equal(atomic_file_commit(&af, errbuf, sizeof errbuf), 0);
    assert_file_is(path, "new contents, longer\n");
    assert_int_equal(count_temps(*state), 0);
}

/* A writer that gives up half-way (its producer failed) aborts: the target is
 * untouched and the temporary gone. Abort keeps errno for the caller. */
static void test_abort_keeps_target(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "keep.txt");
    put_file(path, "precious\n");
    atomic_file af;
    assert_int_equal(atomic_file_open(&af, path, errbuf, sizeof errbuf), 0);
    assert_int_equal(atomic_file_write(&af, "half of a", 9), 0);
    assert_int_equal(count_temps(*state), 1);
    errno = ERANGE;
    atomic_file_abort(&af);
    assert_int_equal(errno, ERANGE);
    assert_null(af.path);
    atomic_file_abort(&af); /* twice is harmless */
    assert_file_is(path, "precious\n");
    assert_int_equal(count_temps(*state), 0);

    /* a zeroed struct is a closed one */
    atomic_file closed = {0};
    atomic_file_abort(&closed);
    assert_int_equal(atomic_file_write(&closed, "x", 1), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(atomic_file_commit(&closed, errbuf, sizeof errbuf), -1);
}

/* A failed write (the disk is full) is remembered: later writes do nothing,
 * the commit reports it, the target keeps its old bytes, no temp is left. */
static void test_failed_write_keeps_target(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "full.bin");
    put_file(path, "old\n");
    enum { BIG = 65536 };
    char *big = calloc(1, BIG);
    assert_non_null(big);

    atomic_file af;
    assert_int_equal(atomic_file_open(&af, path, errbuf, sizeof errbuf), 0);
    file_size_limit lim;
    assert_int_equal(limit_file_size(&lim, 4096), 0);
    int rc = atomic_file_write(&af, big, BIG);
    int e = errno;
    assert_int_equal(unlimit_file_size(&lim), 0);
    assert_int_equal(rc, -1);
    assert_int_equal(e, EFBIG);
    assert_int_equal(af.error, EFBIG);
    assert_int_equal(atomic_file_write(&af, "more", 4), -1); /* sticky */
    assert_int_equal(atomic_file_commit(&af, errbuf, sizeof errbuf), -1);
    assert_int_equal(errno, EFBIG);
    assert_non_null(strstr(errbuf, "write failed"));
    assert_non_null(strstr(errbuf, path));
    assert_file_is(path, "old\n");
    assert_int_equal(count_temps(*state), 0);

    /* the one-shot form, likewise */
    assert_int_equal(limit_file_size(&lim, 4096), 0);
    rc = write_file_atomic(path, big, BIG, errbuf, sizeof errbuf);
    assert_int_equal(unlimit_file_size(&lim), 0);
    assert_int_equal(rc, -1);
    assert_file_is(path, "old\n");
    assert_int_equal(count_temps(*state), 0);
    free(big);
}

/* A temporary that cannot be created: nothing is written, the message says
 * why, and the struct is closed. */
static void test_cannot_create(void **state) {
    char path[700];
    atomic_file af;
    path_in(path, sizeof path, state, "no/such/dir/f.txt");
    assert_int_equal(atomic_file_open(&af, path, errbuf, sizeof errbuf), -1);
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(errbuf, "cannot create"));
    assert_null(af.path);
    atomic_file_abort(&af);

    /* a "directory" that is a file */
    char file[600];
    path_in(file, sizeof file, state, "plain");
    put_file(file, "x");
    snprintf(path, sizeof path, "%s/f.txt", file);
    assert_int_equal(write_file_atomic(path, "y", 1, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "cannot create"));

    /* a read-only directory (root writes there anyway: skip the check) */
    char ro[600];
    path_in(ro, sizeof ro, state, "ro");
    assert_int_equal(mkdir(ro, 0755), 0);
    snprintf(path, sizeof path, "%s/f.txt", ro);
    put_file(path, "old\n");
    assert_int_equal(chmod(ro, 0555), 0);
    if (geteuid() != 0) {
        assert_int_equal(write_file_atomic(path, "new\n", 4, errbuf, sizeof errbuf), -1);
        assert_non_null(strstr(errbuf, "cannot create"));
        assert_file_is(path, "old\n");
    }
    assert_int_equal(chmod(ro, 0755), 0);
    assert_int_equal(count_temps(ro), 0);
}

/* Some file systems cannot fsync a directory and say EINVAL: the rename
 * stands, so that is success. Any other error from it is reported, though the
 * target already holds the new bytes. */
static void test_dir_fsync_einval_tolerated(void **state) {
    char path[600], dir[600];
    path_in(path, sizeof path, state, "f.txt");
    snprintf(dir, sizeof dir, "%s", (const char *)*state);

    seam.dir_errno = EINVAL;
    assert_int_equal(write_file_atomic(path, "one\n", 4, errbuf, sizeof errbuf), 0);
    assert_file_is(path, "one\n");
    assert_int_equal(fsync_dir(dir), 0);
    assert_written_atomically(state, "f.txt");

    seam.dir_errno = EIO;
    assert_int_equal(write_file_atomic(path, "two\n", 4, errbuf, sizeof errbuf), -1);
    assert_int_equal(errno, EIO);
    assert_non_null(strstr(errbuf, "written, but syncing its directory failed"));
    assert_file_is(path, "two\n");
    assert_int_equal(fsync_dir(dir), -1);
    assert_int_equal(count_temps(dir), 0);
}

/* A failing fsync of the file itself (a deferred write error): the target
 * keeps its old bytes and the temporary is removed. */
static void test_file_fsync_failure_keeps_target(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "f.txt");
    put_file(path, "old\n");
    seam.file_errno = EIO;
    assert_int_equal(write_file_atomic(path, "new\n", 4, errbuf, sizeof errbuf), -1);
    assert_int_equal(errno, EIO);
    assert_non_null(strstr(errbuf, "fsync failed"));
    assert_file_is(path, "old\n");
    assert_int_equal(count_temps(*state), 0);
}

/* Two writers of one target at once get their own temporaries; the last
 * commit wins and each leaves the file whole. */
static void test_two_writers(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "shared.txt");
    atomic_file a, b;
    assert_int_equal(atomic_file_open(&a, path, errbuf, sizeof errbuf), 0);
    assert_int_equal(atomic_file_open(&b, path, errbuf, sizeof errbuf), 0);
    assert_string_not_equal(a.tmp, b.tmp);
    assert_int_equal(atomic_file_write(&a, "from a\n", 7), 0);
    assert_int_equal(atomic_file_write(&b, "from b\n", 7), 0);
    assert_int_equal(atomic_file_commit(&a, errbuf, sizeof errbuf), 0);
    assert_file_is(path, "from a\n");
    assert_int_equal(atomic_file_commit(&b, errbuf, sizeof errbuf), 0);
    assert_file_is(path, "from b\n");
    assert_int_equal(count_temps(*state), 0);

    /* an empty file is a file */
    assert_int_equal(write_file_atomic(path, NULL, 0, errbuf, sizeof errbuf), 0);
    assert_file_is(path, "");
}

static void test_temp_names(void **state) {
    (void)state;
    assert_true(atomic_file_is_temp("model.safetensors.tmp-123-0"));
    assert_true(atomic_file_is_temp("a.tmp-1.tmp-77-4294967295"));
    assert_false(atomic_file_is_temp("model.safetensors"));
    assert_false(atomic_file_is_temp("model.safetensors.tmp")); /* not ours */
    assert_false(atomic_file_is_temp(".tmp-1-2"));              /* no target name */
    assert_false(atomic_file_is_temp("x.tmp-1-"));
    assert_false(atomic_file_is_temp("x.tmp--2"));
    assert_false(atomic_file_is_temp("x.tmp-1-2b"));
    assert_false(atomic_file_is_temp("out.tmp-XXXXXX"));
}

/* ---------------------------------------------------------------- its users */

/* The demo folder (the daemon writes it on first start): every file through
 * the atomic writer, so a crash mid-write never leaves a torn config or
 * dataset; and a failed rewrite keeps the previous files whole. */
static void test_demo_written_atomically(void **state) {
    const char *dir = *state;
    static const char *const files[] = {"config.json",       "vocab.txt", "tokenizer_config.json",
                                        "model.safetensors", "train.tsv", "dev.tsv"};
    seam.dir_errno = EINVAL; /* and on a file system that cannot sync directories */
    assert_int_equal(synth_write_demo(dir, 40, 20, 7, errbuf, sizeof errbuf), 0);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        assert_written_atomically(state, files[i]);
    assert_int_equal(count_temps(dir), 0);

    char path[700];
    snprintf(path, sizeof path, "%s/train.tsv", dir);
    char *before = slurp(path);
    assert_non_null(before);
    file_size_limit lim;
    assert_int_equal(limit_file_size(&lim, 2048), 0); /* the weights alone are larger */
    int rc = synth_write_demo(dir, 400, 20, 8, errbuf, sizeof errbuf);
    assert_int_equal(unlimit_file_size(&lim), 0);
    assert_int_equal(rc, -1);
    assert_file_is(path, before);
    free(before);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file *f = st_open(path, errbuf, sizeof errbuf); /* the old weights, whole */
    assert_non_null(f);
    st_close(f);
    assert_int_equal(count_temps(dir), 0);
}

/* Safetensors, checkpoints and both adapter forms are written through it too,
 * and so also succeed where directories cannot be fsync'd (a checkpoint
 * failed there at every epoch before). */
static void test_engine_writers_use_it(void **state) {
    seam.dir_errno = EINVAL;
    aflo_config c;
    synth_demo_config(&c);
    aflo_dataset d;
    dataset_init(&d);
    assert_int_equal(synth_sentiment(&d, 16, c.vocab_size, 1), 0);
    aflo_adapter_config ac = {
        .method = METHOD_AFLORA, .rank = 2, .targets = ALL_MODULES, .projections = PROJ_FFN};
    aflo_model *m = model_create(&c, &ac, TASK_CLASSIFICATION, 2, 5, errbuf, sizeof errbuf);
    assert_non_null(m);
    aflo_train_config tc;
    train_config_defaults(&tc, 1);
    tc.batch_size = 8;
    aflo_trainer *t = trainer_create(m, &tc, &d, NULL, errbuf, sizeof errbuf);
    assert_non_null(t);

    char path[600];
    path_in(path, sizeof path, state, "state.ckpt");
    if (trainer_save_checkpoint(t, path, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    assert_written_atomically(state, "state.ckpt");
    assert_int_equal(trainer_load_checkpoint(t, path, errbuf, sizeof errbuf), 0);

    path_in(path, sizeof path, state, "adapter.safetensors");
    if (adapter_export_native(m, path, NULL, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    assert_written_atomically(state, "adapter.safetensors");

    path_in(path, sizeof path, state, "peft");
    if (adapter_export_peft(m, path, NULL, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    char peft_file[700];
    snprintf(peft_file, sizeof peft_file, "%s/adapter_config.json", path);
    assert_int_equal(access(peft_file, F_OK), 0);
    assert_int_equal(count_temps(*state), 0);
    assert_int_equal(count_temps(path), 0);

    /* a failing checkpoint write keeps the previous checkpoint */
    path_in(path, sizeof path, state, "state.ckpt");
    seam.file_errno = EIO;
    assert_int_equal(trainer_save_checkpoint(t, path, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "previous"));
    seam.file_errno = 0;
    assert_int_equal(trainer_load_checkpoint(t, path, errbuf, sizeof errbuf), 0);
    assert_int_equal(count_temps(*state), 0);

    trainer_free(t);
    model_free(m);
    dataset_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_commit, seam_setup, seam_teardown),
        cmocka_unit_test_setup_teardown(test_replace_is_all_or_nothing, seam_setup, seam_teardown),
        cmocka_unit_test_setup_teardown(test_abort_keeps_target, seam_setup, seam_teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_target, seam_setup, seam_teardown),
        cmocka_unit_test_setup_teardown(test_cannot_create, seam_setup, seam_teardown),
        cmocka_unit_test_setup_teardown(test_dir_fsync_einval_tolerated, seam_setup, seam_teardown),
        cmocka_unit_test_setup_teardown(test_file_fsync_failure_keeps_target, seam_setup,
                                        seam_teardown),
        cmocka_unit_test_setup_teardown(test_two_writers, seam_setup, seam_teardown),
        cmocka_unit_test(test_temp_names),
        cmocka_unit_test_setup_teardown(test_demo_written_atomically, seam_setup, seam_teardown),
        cmocka_unit_test_setup_teardown(test_engine_writers_use_it, seam_setup, seam_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
