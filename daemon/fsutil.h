/* fsutil.h — small file-system helpers the daemon shares: path joining that
 * refuses to truncate, folders, the data directory's lock, and whole-file
 * atomic writes. Those are the engine's one atomic writer (atomicfile.h: temp
 * file, fsync, rename, fsync of the folder), so a crash or a full disk leaves
 * the old file or the new one, never a torn one. */
#ifndef AFLO_FSUTIL_H
#define AFLO_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/atomicfile.h" /* write_file_atomic */

/* out = dir "/" name; -1 (with message) when it does not fit. */
int path_join(char *out, size_t cap, const char *dir, const char *name, char *err, size_t errlen);
bool file_exists(const char *path);
/* mkdir that accepts an existing folder. */
int make_dir(const char *path, char *err, size_t errlen);
/* mkdir -p */
int make_dirs(const char *path, char *err, size_t errlen);

/* Claim folder dir for this process alone: an exclusive flock on
 * dir/aflorad.lock (created if missing), which then holds this process's
 * PID. The lock lasts while *fd_out stays open — the process's lifetime, so
 * a crash or kill -9 releases it and no stale lock is left. -1 with a
 * message when another process holds it ("<what> DIR is in use by aflorad
 * PID N") or the file cannot be opened. */
#define DIR_LOCK_FILE "aflorad.lock"
int lock_dir(const char *dir, const char *what, int *fd_out, char *err, size_t errlen);

#endif
