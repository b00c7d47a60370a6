/* atomicfile.h — the one way aflorad replaces a file: a reader, or a crash,
 * sees the old file or the new one, never a torn one.
 *
 * The discipline: the bytes go to a temporary file created beside the target
 * (same directory, so the rename below stays within one file system), are
 * fsync'd, the temporary file is renamed over the target, and the directory
 * is fsync'd so the rename itself is durable. File systems that cannot fsync
 * a directory say EINVAL; the rename stands there anyway, so that is not a
 * failure. Anything that fails before the rename removes the temporary file
 * and leaves the target as it was.
 *
 * Streaming:   atomic_file af;
 *              if (atomic_file_open(&af, path, err, errlen)) return -1;
 *              atomic_file_write(&af, chunk, n);  ...  (or write to af.fd)
 *              return atomic_file_commit(&af, err, errlen);   // or atomic_file_abort(&af)
 * One shot:    write_file_atomic(path, buf, len, err, errlen).
 *
 * A write error is remembered: later writes do nothing and commit reports the
 * first failure, so a writer of many small pieces may check only at the end.
 * Temporary names are "<target>.tmp-<pid>-<n>", unique across threads and
 * processes (two writers of one target never share a temp); a crash can leave
 * one behind, which atomic_file_is_temp() recognises for clean-up. */
#ifndef AFLO_ATOMICFILE_H
#define AFLO_ATOMICFILE_H

#include <stdbool.h>
#include <stddef.h>

/* Open between atomic_file_open and commit/abort; a zeroed struct is a
 * closed one, and abort on a closed one does nothing. Read-only for callers:
 * fd may be written to (or pread) directly and tmp read by path before the
 * commit — a caller that validates the bytes before publishing them. */
typedef struct {
    int fd;     /* the temporary file, open for reading and writing */
    int error;  /* errno of the first failed atomic_file_write, else 0 */
    char *path; /* the target; NULL when closed */
    char *tmp;  /* the temporary file beside it */
} atomic_file;

/* Create the temporary file beside path (mode 0644 less the umask).
 * 0, or -1 with a message (and errno) when it cannot be created. */
int atomic_file_open(atomic_file *af, const char *path, char *err, size_t errlen);

/* Append len bytes. 0, or -1 with errno (also for every write after a
 * failed one). */
int atomic_file_write(atomic_file *af, const void *data, size_t len);

/* fsync, close, rename over the target, fsync its directory; af is closed
 * afterwards whatever happens. -1 with a message and errno on failure: the
 * target is untouched and the temporary file removed -- except when only the
 * directory fsync fails, when the target already holds the new bytes and the
 * message says "written, but syncing its directory failed". */
int atomic_file_commit(atomic_file *af, char *err, size_t errlen);

/* Close and remove the temporary file; the target is untouched. Keeps errno,
 * so a caller may report the error that made it give up. */
void atomic_file_abort(atomic_file *af);

/* Replace path with len bytes of data, as above. */
int write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* fsync a directory (after renames in it); EINVAL, a file system that cannot
 * sync directories, counts as success. 0, or -1 with errno. */
int fsync_dir(const char *dir);

/* True when a directory entry's name is one of atomic_file's temporaries. */
bool atomic_file_is_temp(const char *name);

/* The fsync used on the temporary file and on the directory; tests replace
 * it to inject failures (EIO, a file system's EINVAL on directories).
 * Nothing else may change it. */
extern int (*atomic_file_fsync)(int fd);

#endif
