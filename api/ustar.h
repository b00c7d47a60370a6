/* ustar.h — a minimal POSIX ustar (tar) writer, for offering a job's PEFT
 * adapter folder as one download.
 *
 * Only what that needs: the regular files directly inside one directory,
 * written under a name prefix ("peft/"), in byte order of their names so the
 * same folder always gives the same archive, with mode 0644, owner 0/0 and the
 * files' mtimes, then the two zero blocks that end an archive. Names must fit
 * the 100-byte name field (the prefix field is not used); anything that is not
 * a regular file (subdirectories, symlinks, devices) is skipped, so nothing
 * outside the directory can end up in the archive. GNU tar, bsdtar and
 * Python's tarfile all read the result. */
#ifndef AFLO_USTAR_H
#define AFLO_USTAR_H

#include <stddef.h>
#include <stdint.h>

#define USTAR_BLOCK 512
#define USTAR_NAME_MAX 100 /* bytes of the name field, no NUL needed */
/* The size field holds 11 octal digits: 8 GiB - 1 per member. */
#define USTAR_SIZE_MAX ((((uint64_t)1) << 33) - 1)

/* Fill hdr with the header block of one member. type is '0' (file) or '5'
 * (directory). -1 with a message when the name or size does not fit. */
int ustar_header(uint8_t hdr[USTAR_BLOCK], const char *name, char type, uint32_t mode,
                 uint64_t size, int64_t mtime, char *err, size_t errlen);

/* Write to out_fd a directory entry named prefix (e.g. "peft/"; "" for none)
 * and then every regular file of dir as prefix + name, ending the archive.
 * Returns 0, or -1 with a message (a read or write failed, a name too long). */
int ustar_write_dir(int out_fd, const char *dir, const char *prefix, char *err, size_t errlen);

#endif
