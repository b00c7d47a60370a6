/* migrate.c — numbered schema migrations tracked in PRAGMA user_version.
 *
 * Flow: read user_version without a transaction (the common case, an
 * up-to-date database, costs one read and no write lock); if it is behind,
 * for each newer migration take the write lock (BEGIN IMMEDIATE), re-read the
 * version (another connection may have migrated meanwhile), run the SQL, set
 * user_version and commit. user_version lives in the database header, which
 * is written in the same transaction as the schema change, so the two cannot
 * disagree after a crash. See migrate.h. */
#include "migrate.h"

#include "base/errmsg.h"

#include <stdio.h>

#include <sqlite3.h>

int migrate_latest_version(const migration *list, size_t n) { return n ? list[n - 1].version : 0; }

int migrate_current_version(sqlite3 *db, int *version, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return set_err(err, errlen, "reading schema version: %s", sqlite3_errmsg(db));
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        set_err(err, errlen, "reading schema version: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

static int too_new(char *err, size_t errlen, int have, int latest) {
    return set_err(err, errlen,
                   "database schema version %d is newer than the newest migration this aflorad "
                   "knows (%d): it was written by a newer aflorad; refusing to open it",
                   have, latest);
}

static void rollback(sqlite3 *db) {
    /* Fails harmlessly if SQLite already rolled back (e.g. after SQLITE_FULL). */
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

/* Run list[i] unless another connection already did. 1 = ran, 0 = skipped. */
static int apply_one(sqlite3 *db, const migration *m, int latest, char *err, size_t errlen) {
    char *msg = NULL;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) {
        set_err(err, errlen, "migration %s: cannot start transaction: %s", m->name,
                msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    int have;
    if (migrate_current_version(db, &have, err, errlen) != 0) {
        rollback(db);
        return -1;
    }
    if (have > latest) {
        rollback(db);
        return too_new(err, errlen, have, latest);
    }
    if (have >= m->version) {
        rollback(db);
        return 0;
    }
    if (have != m->version - 1) { /* cannot happen when applied in order */
        rollback(db);
        return set_err(err, errlen, "migration %s: database is at version %d, expected %d", m->name,
                       have, m->version - 1);
    }
    if (sqlite3_exec(db, m->sql, NULL, NULL, &msg) != SQLITE_OK) {
        set_err(err, errlen, "migration %s failed: %s", m->name, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        rollback(db);
        return -1;
    }
    if (sqlite3_get_autocommit(db)) {
        /* The SQL ran COMMIT or ROLLBACK itself: its changes are no longer
         * atomic with the version bump. Do not bump; make the author fix it. */
        return set_err(err, errlen,
                       "migration %s ended the migration's transaction itself (COMMIT or "
                       "ROLLBACK in its SQL); schema left at version %d",
                       m->name, have);
    }
    char bump[64];
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", m->version);
    if (sqlite3_exec(db, bump, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        set_err(err, errlen, "migration %s: cannot commit: %s", m->name,
                msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        rollback(db);
        return -1;
    }
    return 1;
}

int migrate_apply(sqlite3 *db, const migration *list, size_t n, int *applied, char *err,
                  size_t errlen) {
    if (applied) *applied = 0;
    for (size_t i = 0; i < n; i++)
        if (list[i].version != (int)i + 1 || !list[i].name || !list[i].sql)
            return set_err(err, errlen, "migration list is malformed at entry %zu", i);
    int latest = migrate_latest_version(list, n);

    int have;
    if (migrate_current_version(db, &have, err, errlen) != 0) return -1;
    if (have > latest) return too_new(err, errlen, have, latest);
    if (have < 0) return set_err(err, errlen, "database schema version %d is negative", have);

    for (size_t i = (size_t)have; i < n; i++) {
        int r = apply_one(db, &list[i], latest, err, errlen);
        if (r < 0) return -1;
        if (applied) *applied += r;
    }
    return 0;
}
