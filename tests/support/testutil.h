/* testutil.h — what several C tests share: the tiny encoder config they
 * build models from, and a temporary folder per test (cmocka setup and
 * teardown) with a path helper. Linked into every test binary. */
#ifndef AFLO_TESTUTIL_H
#define AFLO_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* vocab 30, hidden 8, 2 layers, 2 heads, intermediate 12, 16 positions,
 * dropout 0.1; RoBERTa positions (pad 1) when roberta. */
void tiny_config(aflo_config *c, bool roberta);

/* cmocka setup/teardown: *state becomes a fresh /tmp folder (a malloc'd
 * path), removed with everything in it afterwards. */
int tmpdir_setup(void **state);
int tmpdir_teardown(void **state);
/* out = <the test's folder>/name */
void path_in(char *out, size_t cap, void **state, const char *name);

#endif
