/* dbpool.h — the API's SQLite connections, one per thread, pooled
 * (dbpool.c). */
#ifndef AFLO_API_DBPOOL_H
#define AFLO_API_DBPOOL_H

#include <stddef.h>

#include "api_internal.h"
#include "store.h"

/* The calling thread's store connection (opened on first use); NULL after
 * replying 500 when it cannot be opened. */
store *api_store(api_req *r);
/* The same without a request (SSE readers): NULL + message. */
store *api_thread_store(api_server *s, char *err, size_t errlen);

/* Start-up: a pool of up to cap idle connections, and one opened now to
 * prove the database usable. -1 with a message; api_dbpool_close frees
 * whatever was set up. */
int api_dbpool_open(api_server *s, size_t cap, char *err, size_t errlen);
/* Close the pooled connections. Only once no thread holds one (after
 * MHD_stop_daemon). */
void api_dbpool_close(api_server *s);

#endif
