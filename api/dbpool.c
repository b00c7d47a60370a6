/* dbpool.c — the API's SQLite connections: one per thread, as store.h
 * requires, kept in a small pool so they outlive the threads that used them.
 *
 * With a thread per connection (server.c), every HTTP connection runs in a
 * thread of its own. A thread gets a store connection the first time it needs
 * one (api_store, or api_thread_store for an SSE reader, which runs in the
 * connection's thread too) — from the pool when one is idle, else
 * store_open — and keeps it in a pthread key for as long as it lives. When
 * the thread ends, the key's destructor hands the connection back to the
 * pool, so keep-alive clients and new connections reuse open connections
 * instead of paying store_open each. The pool holds at most max_connections
 * idle ones; beyond that a returned connection is closed. A connection is
 * never used by two threads at once: it is either in the pool or in exactly
 * one thread's key.
 *
 * api_dbpool_open runs at start-up and opens one connection at once, so a
 * bad database path or a schema newer than this binary stops the daemon with
 * its message instead of failing every request later. The pool's state
 * (pool, pool_mu, store_key) lives in api_server; api_start initialises
 * pool_mu with its other locks, and api_dbpool_close runs once MHD has
 * joined every connection thread, so no thread still holds a connection. */
#include "dbpool.h"

#include "reply.h"

#include <stdio.h>
#include <stdlib.h>

#define ERR_MSG_MAX 1024

typedef struct {
    api_server *srv;
    store *st;
} thread_store;

static void pool_put(api_server *s, store *st) {
    pthread_mutex_lock(&s->pool_mu);
    if (s->pool_n < s->pool_cap) {
        s->pool[s->pool_n++] = st;
        st = NULL;
    }
    pthread_mutex_unlock(&s->pool_mu);
    store_close(st);
}

/* Runs when an MHD thread that used a connection ends. */
static void thread_store_release(void *p) {
    thread_store *ts = p;
    pool_put(ts->srv, ts->st);
    free(ts);
}

store *api_thread_store(api_server *s, char *err, size_t errlen) {
    thread_store *ts = pthread_getspecific(s->store_key);
    if (ts) return ts->st;
    store *st = NULL;
    pthread_mutex_lock(&s->pool_mu);
    if (s->pool_n) st = s->pool[--s->pool_n];
    pthread_mutex_unlock(&s->pool_mu);
    if (!st && !(st = store_open(s->db_path, err, errlen))) return NULL;
    ts = malloc(sizeof *ts);
    if (!ts || pthread_setspecific(s->store_key, ts) != 0) {
        free(ts);
        pool_put(s, st);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ts->srv = s;
    ts->st = st;
    return st;
}

store *api_store(api_req *r) {
    char err[ERR_MSG_MAX] = "";
    store *st = api_thread_store(r->srv, err, sizeof err);
    if (!st)
        reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "database_unavailable", NULL,
                    "the database cannot be opened: %s", err);
    return st;
}

int api_dbpool_open(api_server *s, size_t cap, char *err, size_t errlen) {
    s->pool_cap = cap;
    s->pool = calloc(s->pool_cap, sizeof *s->pool);
    if (!s->pool) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (pthread_key_create(&s->store_key, thread_store_release) != 0) {
        snprintf(err, errlen, "cannot create a thread key");
        return -1;
    }
    s->store_key_ok = true;

    /* Open the database once now: a bad path or a too-new schema should stop
     * start-up with its message, not fail every request later. */
    store *probe = store_open(s->db_path, err, errlen);
    if (!probe) return -1;
    s->pool[s->pool_n++] = probe;
    return 0;
}

void api_dbpool_close(api_server *s) {
    for (size_t i = 0; i < s->pool_n; i++) store_close(s->pool[i]);
    free(s->pool);
    if (s->store_key_ok) pthread_key_delete(s->store_key);
}
