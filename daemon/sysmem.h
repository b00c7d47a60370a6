/* sysmem.h — how much memory a job may take on this machine, and sizes as
 * people read them.
 *
 * The limit is the environment's AFLORAD_MEMORY_LIMIT when set (bytes, or
 * with a K, M or G suffix in binary units: "512M", "2G"; for tests and for
 * leaving room to other programs), else MemAvailable from /proc/meminfo (the
 * kernel's estimate of what can be allocated without swapping, reclaimable
 * page cache included). Read when a job starts, so jobs already running
 * count against it. */
#ifndef AFLO_SYSMEM_H
#define AFLO_SYSMEM_H

#include <stddef.h>

#define SYSMEM_LIMIT_ENV "AFLORAD_MEMORY_LIMIT"
/* For the commands' --help. */
#define SYSMEM_USAGE                                                                      \
    "  AFLORAD_MEMORY_LIMIT (environment) memory a job may take, e.g. 8G (default: the\n" \
    "                     MemAvailable of /proc/meminfo at job start); a job estimated\n" \
    "                     above it is refused\n"

/* The limit in bytes into *bytes and where it came from into *source
 * ("AFLORAD_MEMORY_LIMIT" or "MemAvailable"). 0; -1 with a message when the
 * variable is malformed (a limit was asked for: callers refuse); 1 with a
 * message when /proc/meminfo cannot be read (no limit known). */
int sysmem_limit(size_t *bytes, const char **source, char *err, size_t errlen);

/* "1.23 GiB", "456.7 MiB", "12.0 KiB" or "100 B" into buf. */
void sysmem_format(char *buf, size_t cap, size_t bytes);

#endif
