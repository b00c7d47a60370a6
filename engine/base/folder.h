/* folder.h — folders on disk as the format writers and readers use them: a
 * folder replaced as a whole, a file copied into one, a small text file read
 * out of one.
 *
 * write_folder_atomic is the folder counterpart of atomicfile.h: the caller's
 * filler writes every file into a sibling temporary directory
 * ("<dir>.tmp-XXXXXX"), which is then fsync'd and put in place with one
 * rename, so a reader (or a crash) sees the old set of files or the new set.
 * Replacing an existing folder swaps the two with renameat2(RENAME_EXCHANGE)
 * and removes the old files; on a file system without it, the files are
 * renamed into place one by one, each atomically, in the order the caller
 * names them (weights first, so a config never names missing weights). An
 * existing folder is replaced only when it holds nothing but the named
 * files, so a wrong path cannot wipe someone's folder.
 *
 * Users: the PEFT folder (adapter_peft.c) and a full model's Hugging Face
 * folder (hfmodel_export.c). */
#ifndef AFLO_FOLDER_H
#define AFLO_FOLDER_H

#include <stddef.h>

#include "base/json.h"

/* Writes the folder's files into staging (each with atomicfile.h or
 * copy_file_atomic); 0, or -1 with a message. */
typedef int (*folder_filler)(const char *staging, void *ctx, char *err, size_t errlen);

/* Replace (or create) dir with the files fill writes, as above. names are
 * every file the folder may hold (fill may leave some out), in renaming
 * order. 0, or -1 with a message; on failure the staging directory is
 * removed and dir is as it was, except when only the final fsync of its
 * parent fails ("written, but syncing its directory failed"). */
int write_folder_atomic(const char *dir_in, const char *const *names, size_t n, folder_filler fill,
                        void *ctx, char *err, size_t errlen);

/* Copy from to `to` through the atomic writer (atomicfile.h). */
int copy_file_atomic(const char *from, const char *to, char *err, size_t errlen);

/* The whole regular file at path, NUL-terminated (malloc'd; *len bytes
 * without the NUL). NULL with a message when it cannot be opened or read,
 * is not a regular file, or is bigger than max bytes ("larger than MAX
 * bytes, not a plausible file of this kind": max is the caller's sanity
 * limit for its format). */
char *read_text_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);

/* read_text_file parsed as one JSON document (json.h, default depth): NULL
 * with "PATH: what is wrong" when it cannot be read or parsed. */
json_value *read_json_file(const char *path, size_t max, char *err, size_t errlen);

#endif
