/* fsutil.h — small file-system helpers the daemon shares: path joining that
 * refuses to truncate, folders, and whole-file atomic writes. Those are the
 * engine's one atomic writer (atomicfile.h: temp file, fsync, rename, fsync
 * of the folder), so a crash or a full disk leaves the old file or the new
 * one, never a torn one. */
#ifndef AFLO_FSUTIL_H
#define AFLO_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "atomicfile.h"   /* write_file_atomic */

/* out = dir "/" name; -1 (with message) when it does not fit. */
int path_join(char *out, size_t cap, const char *dir, const char *name, char *err, size_t errlen);
bool file_exists(const char *path);
/* mkdir that accepts an existing folder. */
int make_dir(const char *path, char *err, size_t errlen);
/* mkdir -p */
int make_dirs(const char *path, char *err, size_t errlen);

#endif
