/* testutil.h — what several C tests share: the tiny encoder config they
 * build models from, a temporary folder per test (cmocka setup and
 * teardown) with a path helper, and the means to check atomic writes (a
 * stand-in for a full disk, a count of left-over temporaries). Linked into
 * every test binary. */
#ifndef AFLO_TESTUTIL_H
#define AFLO_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>

#include "model/config.h"

/* vocab 30, hidden 8, 2 layers, 2 heads, intermediate 12, 16 positions,
 * dropout 0.1; RoBERTa positions (pad 1) when roberta. */
void tiny_config(aflo_config *c, bool roberta);

/* cmocka setup/teardown: *state becomes a fresh /tmp folder (a malloc'd
 * path), removed with everything in it afterwards. */
int tmpdir_setup(void **state);
int tmpdir_teardown(void **state);
/* out = <the test's folder>/name */
void path_in(char *out, size_t cap, void **state, const char *name);

/* The whole file, NUL-terminated (malloc'd; *len without the NUL); a
 * missing or unreadable file fails the test. */
char *read_test_file(const char *path, size_t *len);

/* How many of the atomic writer's temporary files (atomicfile.h) dir holds;
 * -1 when it cannot be read. */
int count_atomic_temps(const char *dir);

/* A counting fsync for the atomic writer (atomicfile.h's atomic_file_fsync):
 * fsync_seam_setup installs it (and makes the test's folder, as
 * tmpdir_setup), fsync_seam_teardown puts fsync back. It counts file and
 * directory syncs (fsync_counts_reset zeroes both) and, after
 * fsync_fail_dirs(e) with e != 0, fails every directory sync with errno e. */
int fsync_seam_setup(void **state);
int fsync_seam_teardown(void **state);
void fsync_fail_dirs(int e);
void fsync_counts_reset(void);
int fsync_dir_calls(void);
int fsync_file_calls(void);

/* A file-size limit stands in for a full disk: until unlimit_file_size,
 * writes past `bytes` fail with EFBIG (SIGXFSZ ignored, so write() just
 * fails). Both return 0, or -1 when the limit cannot be set. */
typedef struct {
    struct rlimit old;
    void (*prev)(int);
} file_size_limit;
int limit_file_size(file_size_limit *l, rlim_t bytes);
int unlimit_file_size(file_size_limit *l);

#endif
