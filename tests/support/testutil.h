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

/* How many of the atomic writer's temporary files (atomicfile.h) dir holds;
 * -1 when it cannot be read. */
int count_atomic_temps(const char *dir);

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
