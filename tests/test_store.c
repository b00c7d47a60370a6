/* test_store.c — the SQLite job queue, event log and dataset records
 * (daemon/store.c) and the migrations (daemon/migrate.c).
 *
 * Every test works in its own mkdtemp directory. Expected values are worked
 * out by hand from the documented behaviour: status event payloads from the
 * format in store.h, seqs by counting events, claim order from creation
 * order. Where a test needs to see or change the database behind the store's
 * back (a too-new user_version, an older created_at, a corrupted page) it uses
 * its own plain sqlite3 connection. The crash test forks a child that appends
 * event batches until the parent SIGKILLs it, then checks what survived. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "migrate.h"
#include "store.h"

#define ERRLEN 512
/* SHA-256 of the empty string (FIPS 180-2 test vector). */
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SPEC "{\"task\":\"sst2\",\"epochs\":3}"
#define NO_SUCH_ID "0123456789abcdef"

/* Concurrent claim test: jobs queued and threads claiming them. */
#define CLAIM_JOBS 200
#define CLAIM_THREADS 2
/* Concurrent first open: threads opening a fresh file at once. */
#define OPEN_THREADS 4
#define OPEN_ROUNDS 8
/* Crash test: events per committed batch, batches seen before the kill,
 * and how many times the child is killed. */
#define CRASH_BATCH 25
#define CRASH_BATCHES_BEFORE_KILL 3
#define CRASH_ROUNDS 3

typedef struct {
    char dir[256];
    char db[300];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/test_store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof f->db, "%s/aflorad.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[600];
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static store *open_ok(const char *path) {
    char err[ERRLEN] = "";
    store *s = store_open(path, err, sizeof err);
    if (!s) fail_msg("store_open(%s): %s", path, err);
    return s;
}

static void check_integrity(store *s) {
    char err[ERRLEN] = "";
    if (store_check_integrity(s, err, sizeof err) != 0) fail_msg("%s", err);
}

static void make_dataset(store *s, const char *name, char id[STORE_ID_SIZE]) {
    store_dataset d;
    memset(&d, 0, sizeof d);
    d.name = (char *)name;
    d.format = (char *)"jsonl";
    d.path = (char *)"/data/datasets/x.jsonl";
    d.rows = 10;
    d.bytes = 1000;
    snprintf(d.sha256, sizeof d.sha256, "%s", SHA_EMPTY);
    char err[ERRLEN] = "";
    if (store_dataset_create(s, &d, id, err, sizeof err) != 0)
        fail_msg("store_dataset_create: %s", err);
}

static void make_job(store *s, const char *ds, char id[STORE_ID_SIZE]) {
    char err[ERRLEN] = "";
    if (store_job_create(s, SPEC, ds, NULL, id, err, sizeof err) != 0)
        fail_msg("store_job_create: %s", err);
}

static int claim(store *s, store_job *j) {
    char err[ERRLEN] = "";
    int r = store_claim_next_job(s, j, err, sizeof err);
    if (r < 0) fail_msg("store_claim_next_job: %s", err);
    return r;
}

static store_job get_job(store *s, const char *id) {
    store_job j;
    char err[ERRLEN] = "";
    if (store_job_get(s, id, &j, err, sizeof err) != 0) fail_msg("store_job_get(%s): %s", id, err);
    return j;
}

static store_job_status job_status(store *s, const char *id) {
    store_job j = get_job(s, id);
    store_job_status st = j.status;
    store_job_clear(&j);
    return st;
}

/* All events of a job (paging through store_event_list). */
static store_event *all_events(store *s, const char *job_id, size_t *n) {
    store_event *all = NULL;
    size_t total = 0;
    int64_t after = 0;
    for (;;) {
        store_event *page;
        size_t k;
        char err[ERRLEN] = "";
        if (store_event_list(s, job_id, after, STORE_LIST_LIMIT_MAX, &page, &k, err, sizeof err) !=
            0)
            fail_msg("store_event_list: %s", err);
        if (k == 0) break;
        store_event *grown = realloc(all, (total + k) * sizeof *all);
        assert_non_null(grown);
        all = grown;
        memcpy(all + total, page, k * sizeof *page);
        free(page); /* the payloads moved into `all` */
        total += k;
        after = all[total - 1].seq;
    }
    *n = total;
    return all;
}

static void assert_last_event(store *s, const char *job_id, store_event_type type,
                              const char *payload) {
    size_t n;
    store_event *ev = all_events(s, job_id, &n);
    assert_true(n > 0);
    assert_int_equal(ev[n - 1].type, type);
    assert_string_equal(ev[n - 1].payload, payload);
    store_event_list_free(ev, n);
}

static size_t event_count(store *s, const char *job_id) {
    size_t n;
    store_event *ev = all_events(s, job_id, &n);
    store_event_list_free(ev, n);
    return n;
}

/* One integer from a query on a separate plain connection. */
static int64_t raw_int(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Run sql on a separate plain connection; returns the SQLite result code
 * and copies the error message. */
static int raw_exec(const char *path, const char *sql, char *msg, size_t msglen) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    char *e = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &e);
    if (msg) snprintf(msg, msglen, "%s", e ? e : "");
    sqlite3_free(e);
    sqlite3_close(db);
    return rc;
}

static void raw_exec_ok(const char *path, const char *sql) {
    char msg[ERRLEN];
    if (raw_exec(path, sql, msg, sizeof msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
}

/* Text of a one-row pragma/query on the store's own connection. */
static void conn_text(store *s, const char *sql, char *out, size_t outlen) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(store_sqlite(s), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* The source tree's migrations/ directory: AFLORAD_SOURCE_DIR, else found
 * from this file's compile-time path (make compiles from the repo root). */
static void migrations_dir(char *out, size_t outlen) {
    const char *src = getenv("AFLORAD_SOURCE_DIR");
    if (src && *src) {
        snprintf(out, outlen, "%s/migrations", src);
        return;
    }
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    if (!slash)
        snprintf(out, outlen, "../migrations");
    else
        snprintf(out, outlen, "%.*s/../migrations", (int)(slash - file), file);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the *.sql files in dir; returns the count. */
static size_t list_sql_files(const char *dir, char ***names) {
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s (%s); run from the repository root or set "
                 "AFLORAD_SOURCE_DIR",
                 dir, strerror(errno));
    size_t n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".sql") != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            v = realloc(v, cap * sizeof *v);
            assert_non_null(v);
        }
        v[n] = strdup(e->d_name);
        assert_non_null(v[n]);
        n++;
    }
    closedir(d);
    qsort(v, n, sizeof *v, cmp_str);
    *names = v;
    return n;
}

static char *read_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot read %s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    buf[len] = '\0';
    fclose(fp);
    return buf;
}

/* Number of migration files on disk = the schema version a fresh database
 * must reach. Counted from the directory, not from the embedded list. */
static int migrations_on_disk(void) {
    char dir[512];
    migrations_dir(dir, sizeof dir);
    char **names;
    size_t n = list_sql_files(dir, &names);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return (int)n;
}

/* ---- migrations ----------------------------------------------------------- */

static void test_embedded_migrations_match_files(void **state) {
    (void)state;
    char dir[512];
    migrations_dir(dir, sizeof dir);
    char **names;
    size_t n = list_sql_files(dir, &names);
    assert_true(n >= 1);
    if (n != migrations_embedded_count)
        fail_msg("%zu .sql files in %s but %zu embedded: rerun migrations/embed.sh", n, dir,
                 migrations_embedded_count);
    for (size_t i = 0; i < n; i++) {
        char expect_name[256];
        snprintf(expect_name, sizeof expect_name, "%s.sql", migrations_embedded[i].name);
        assert_string_equal(names[i], expect_name);
        assert_int_equal(migrations_embedded[i].version, (int)i + 1);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        char *text = read_file(path);
        if (strcmp(text, migrations_embedded[i].sql) != 0)
            fail_msg("%s differs from its embedded copy: rerun migrations/embed.sh", path);
        free(text);
        free(names[i]);
    }
    free(names);
}

static void test_open_configures_connection(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char v[64];
    conn_text(s, "PRAGMA journal_mode", v, sizeof v);
    assert_string_equal(v, "wal");
    conn_text(s, "PRAGMA synchronous", v, sizeof v);
    assert_string_equal(v, "1"); /* NORMAL */
    conn_text(s, "PRAGMA foreign_keys", v, sizeof v);
    assert_string_equal(v, "1");
    conn_text(s, "PRAGMA busy_timeout", v, sizeof v);
    assert_string_equal(v, "5000");
    conn_text(s, "PRAGMA user_version", v, sizeof v);
    assert_int_equal(atoi(v), migrations_on_disk());
    conn_text(s,
              "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_schema "
              "WHERE type = 'table' ORDER BY name)",
              v, sizeof v);
    assert_string_equal(v, "datasets,events,jobs");
    check_integrity(s);
    store_close(s);
}

static void test_open_reports_bad_paths(void **state) {
    fixture *f = *state;
    char err[ERRLEN] = "";
    char path[400];
    snprintf(path, sizeof path, "%s/no/such/dir/x.db", f->dir);
    assert_null(store_open(path, err, sizeof err));
    assert_non_null(strstr(err, path));

    /* A file that is not a database. */
    snprintf(path, sizeof path, "%s/notes.txt", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++) fputs("this is not an SQLite database\n", fp);
    fclose(fp);
    err[0] = '\0';
    assert_null(store_open(path, err, sizeof err));
    assert_non_null(strstr(err, "not a database"));

    err[0] = '\0';
    assert_null(store_open("", err, sizeof err));
    assert_true(err[0] != '\0');
}

static void test_reopen_is_idempotent(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], job[STORE_ID_SIZE];
    store *s = open_ok(f->db);
    make_dataset(s, "sst2-train", ds);
    make_job(s, ds, job);
    store_close(s);

    for (int round = 0; round < 2; round++) {
        s = open_ok(f->db);
        store_job j = get_job(s, job);
        assert_int_equal(j.status, STORE_JOB_QUEUED);
        store_job_clear(&j);
        assert_int_equal(event_count(s, job), 1);
        check_integrity(s);
        store_close(s);
    }
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), migrations_on_disk());

    /* Applying the same list to an up-to-date database runs nothing. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    int applied = -1;
    char err[ERRLEN] = "";
    assert_int_equal(migrate_apply(db, migrations_embedded, migrations_embedded_count, &applied,
                                   err, sizeof err),
                     0);
    assert_int_equal(applied, 0);
    sqlite3_close(db);
}

static int table_exists(sqlite3 *db, const char *name) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema WHERE name = ?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int user_version(sqlite3 *db) {
    int v = -1;
    char err[ERRLEN];
    assert_int_equal(migrate_current_version(db, &v, err, sizeof err), 0);
    return v;
}

static void test_migrate_applies_only_new(void **state) {
    (void)state;
    /* Rerunning m1 would fail ("table a already exists"), so success of the
     * second call shows that only m2 ran. */
    const migration list[] = {
        {1, "0001_a", "CREATE TABLE a (x INTEGER);"},
        {2, "0002_b", "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (42);"},
    };
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    char err[ERRLEN] = "";
    int applied = -1;
    assert_int_equal(migrate_apply(db, list, 1, &applied, err, sizeof err), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(user_version(db), 1);
    assert_int_equal(migrate_apply(db, list, 2, &applied, err, sizeof err), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(user_version(db), 2);
    assert_true(table_exists(db, "b"));
    assert_int_equal(migrate_apply(db, list, 2, &applied, err, sizeof err), 0);
    assert_int_equal(applied, 0);

    /* An older list than the database: refused, naming both versions. */
    assert_int_equal(migrate_apply(db, list, 1, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "version 2"));
    assert_non_null(strstr(err, "(1)"));
    sqlite3_close(db);

    /* A list that is not numbered 1..n is a programming error. */
    const migration gap[] = {{1, "0001_a", "SELECT 1;"}, {3, "0003_c", "SELECT 1;"}};
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(migrate_apply(db, gap, 2, NULL, err, sizeof err), -1);
    assert_int_equal(user_version(db), 0);
    sqlite3_close(db);
}

static void test_failed_migration_rolls_back(void **state) {
    (void)state;
    const migration list[] = {
        {1, "0001_a", "CREATE TABLE a (x INTEGER);"},
        /* The first statement succeeds, the second fails: neither may stay. */
        {2, "0002_bad", "CREATE TABLE b (y INTEGER); INSERT INTO nosuch VALUES (1);"},
    };
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    char err[ERRLEN] = "";
    int applied = -1;
    assert_int_equal(migrate_apply(db, list, 2, &applied, err, sizeof err), -1);
    assert_int_equal(applied, 1);
    assert_non_null(strstr(err, "0002_bad"));
    assert_non_null(strstr(err, "no such table: nosuch"));
    assert_int_equal(user_version(db), 1);
    assert_true(table_exists(db, "a"));
    assert_false(table_exists(db, "b"));
    assert_true(sqlite3_get_autocommit(db)); /* no transaction left open */

    /* A migration that commits by itself is reported and not counted. */
    const migration commits[] = {{1, "0001_commits", "COMMIT; CREATE TABLE c (z);"}};
    sqlite3 *db2 = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db2), SQLITE_OK);
    assert_int_equal(migrate_apply(db2, commits, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "0001_commits"));
    assert_int_equal(user_version(db2), 0);
    sqlite3_close(db2);
    sqlite3_close(db);
}

/* The first column of a one-row query, as text (malloc'd; "NULL" for null). */
static char *raw_text(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(st, 0);
    char *v = strdup(t ? (const char *)t : "NULL");
    assert_non_null(v);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void expect_text(const char *path, const char *sql, const char *want) {
    char *got = raw_text(path, sql);
    if (strcmp(got, want) != 0) fail_msg("%s\n got  %s\n want %s", sql, got, want);
    free(got);
}

/* 0002 rewrites epochs stored from 0 by older versions to count from 1. */
static void test_migration_epochs_from_one(void **state) {
    fixture *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    char err[ERRLEN] = "";
    assert_int_equal(migrate_apply(db, migrations_embedded, 1, NULL, err, sizeof err), 0);
    sqlite3_close(db);
    raw_exec_ok(
        f->db,
        "INSERT INTO jobs (id, spec, status, created_at, started_at, finished_at, step, "
        "total_steps, epoch, metrics) VALUES "
        "('00000000000000a1', '{}', 'succeeded', 1, 1, 2, 30, 30, 2, "
        " '{\"best_epoch\":1,\"best\":{\"accuracy\":0.9},\"epochs\":[{\"epoch\":0,\"step\":10},"
        "{\"epoch\":1,\"step\":20},{\"epoch\":2,\"step\":30}],\"steps\":30}'),"
        "('00000000000000a2', '{}', 'succeeded', 3, 3, 4, 10, 10, 0, "
        " '{\"best_epoch\":-1,\"epochs\":[],\"steps\":10}'),"
        "('00000000000000a3', '{}', 'queued', 5, NULL, NULL, 0, 0, 0, NULL);"
        "INSERT INTO events (job_id, seq, type, payload, created_at) VALUES "
        "('00000000000000a1', 1, 'step', '{\"step\":1,\"epoch\":0,\"loss\":0.7}', 1),"
        "('00000000000000a1', 2, 'eval', "
        "'{\"epoch\":0,\"step\":10,\"metrics\":{\"accuracy\":0.5}}', 1),"
        "('00000000000000a1', 3, 'freeze', '{\"step\":5,\"layer\":0}', 1),"
        "('00000000000000a1', 4, 'status', '{\"status\":\"succeeded\"}', 1);");
    store *s = open_ok(f->db); /* applies 0002 */
    store_close(s);
    expect_text(f->db, "SELECT epoch FROM jobs WHERE id = '00000000000000a1'", "3");
    expect_text(f->db, "SELECT epoch FROM jobs WHERE id = '00000000000000a3'", "0");
    expect_text(
        f->db, "SELECT metrics FROM jobs WHERE id = '00000000000000a1'",
        "{\"best_epoch\":2,\"best\":{\"accuracy\":0.9},\"epochs\":[{\"epoch\":1,\"step\":10},"
        "{\"epoch\":2,\"step\":20},{\"epoch\":3,\"step\":30}],\"steps\":30}");
    expect_text(f->db, "SELECT metrics FROM jobs WHERE id = '00000000000000a2'",
                "{\"best_epoch\":null,\"epochs\":[],\"steps\":10}");
    expect_text(f->db,
                "SELECT group_concat(payload, ' ') FROM "
                "(SELECT payload FROM events ORDER BY seq)",
                "{\"step\":1,\"epoch\":1,\"loss\":0.7} "
                "{\"epoch\":1,\"step\":10,\"metrics\":{\"accuracy\":0.5}} "
                "{\"step\":5,\"layer\":0} {\"status\":\"succeeded\"}");
}

static void test_too_new_database_refused(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    store_close(s);
    int latest = migrations_on_disk();
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", latest + 1);
    raw_exec_ok(f->db, sql);

    char err[ERRLEN] = "";
    assert_null(store_open(f->db, err, sizeof err));
    char have[64], known[64];
    snprintf(have, sizeof have, "version %d", latest + 1);
    snprintf(known, sizeof known, "(%d)", latest);
    if (!strstr(err, have) || !strstr(err, known))
        fail_msg("message should name versions %d and %d: %s", latest + 1, latest, err);
    /* Refusing must not have touched it. */
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), latest + 1);
}

typedef struct {
    const char *path;
    pthread_barrier_t *barrier;
    int ok;
    char err[ERRLEN];
} opener;

static void *open_thread(void *arg) {
    opener *o = arg;
    pthread_barrier_wait(o->barrier);
    store *s = store_open(o->path, o->err, sizeof o->err);
    if (s) {
        int64_t counts[STORE_JOB_STATUS_COUNT];
        o->ok = store_job_counts(s, counts, o->err, sizeof o->err) == 0;
        store_close(s);
    }
    return NULL;
}

/* Several threads opening one fresh file at once: all must succeed (the
 * WAL switch and the migrations race) and migrations must run once. Repeated
 * on new files because the race is timing-dependent. */
static void test_concurrent_first_open(void **state) {
    fixture *f = *state;
    for (int round = 0; round < OPEN_ROUNDS; round++) {
        char path[400];
        snprintf(path, sizeof path, "%s/fresh%d.db", f->dir, round);
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, OPEN_THREADS);
        opener o[OPEN_THREADS];
        pthread_t th[OPEN_THREADS];
        for (int i = 0; i < OPEN_THREADS; i++) {
            memset(&o[i], 0, sizeof o[i]);
            o[i].path = path;
            o[i].barrier = &barrier;
            assert_int_equal(pthread_create(&th[i], NULL, open_thread, &o[i]), 0);
        }
        for (int i = 0; i < OPEN_THREADS; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        for (int i = 0; i < OPEN_THREADS; i++)
            if (!o[i].ok) fail_msg("round %d, thread %d: %s", round, i, o[i].err);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), migrations_on_disk());
    }
}

/* ---- jobs ----------------------------------------------------------------- */

static void test_job_lifecycle(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char ds[STORE_ID_SIZE], eval_ds[STORE_ID_SIZE], id[STORE_ID_SIZE];
    make_dataset(s, "train", ds);
    make_dataset(s, "eval", eval_ds);
    char err[ERRLEN] = "";

    int64_t before = wall_ms();
    assert_int_equal(store_job_create(s, SPEC, ds, eval_ds, id, err, sizeof err), 0);
    int64_t after = wall_ms();
    assert_int_equal(strlen(id), STORE_ID_LEN);
    assert_int_equal(strspn(id, "0123456789abcdef"), STORE_ID_LEN);

    store_job j = get_job(s, id);
    assert_string_equal(j.id, id);
    assert_int_equal(j.status, STORE_JOB_QUEUED);
    assert_string_equal(j.spec, SPEC);
    assert_true(j.created_at >= before && j.created_at <= after);
    assert_int_equal(j.started_at, STORE_TIME_NONE);
    assert_int_equal(j.finished_at, STORE_TIME_NONE);
    assert_int_equal(j.progress.step, 0);
    assert_true(isnan(j.progress.loss));
    assert_null(j.metrics);
    assert_null(j.error);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(j.cancel_requested, 0);
    assert_string_equal(j.train_dataset_id, ds);
    assert_string_equal(j.eval_dataset_id, eval_ds);
    store_job_clear(&j);

    store_job c;
    before = wall_ms();
    assert_int_equal(claim(s, &c), 1);
    after = wall_ms();
    assert_string_equal(c.id, id);
    assert_int_equal(c.status, STORE_JOB_RUNNING);
    assert_int_equal(c.attempts, 1);
    assert_true(c.started_at >= before && c.started_at <= after);
    assert_string_equal(c.spec, SPEC);
    store_job_clear(&c);

    /* Values beyond 32 bits check the int64 path. */
    store_progress p = {
        .step = 120,
        .total_steps = 400,
        .epoch = 2,
        .loss = 0.6931,
        .flops_forward = 1234567890123LL,
        .flops_backward_input = 987654321098LL,
        .flops_backward_weight = 5000000000LL,
        .trainable_now = 36864,
        .trainable_avg = 40000.5,
        .frozen = 3,
        .freezable = 48,
    };
    assert_int_equal(store_job_update_progress(s, id, &p, err, sizeof err), 0);
    j = get_job(s, id);
    assert_int_equal(j.progress.step, 120);
    assert_int_equal(j.progress.total_steps, 400);
    assert_int_equal(j.progress.epoch, 2);
    assert_true(j.progress.loss == 0.6931);
    assert_true(j.progress.flops_forward == 1234567890123LL);
    assert_true(j.progress.flops_backward_input == 987654321098LL);
    assert_true(j.progress.flops_backward_weight == 5000000000LL);
    assert_int_equal(j.progress.trainable_now, 36864);
    assert_true(j.progress.trainable_avg == 40000.5);
    assert_int_equal(j.progress.frozen, 3);
    assert_int_equal(j.progress.freezable, 48);
    store_job_clear(&j);

    /* Negative counts are refused by the schema. */
    store_progress bad = p;
    bad.step = -1;
    assert_int_equal(store_job_update_progress(s, id, &bad, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);

    /* A failed job needs an error; queued is not a final status. */
    assert_int_equal(store_job_finish(s, id, STORE_JOB_FAILED, NULL, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(store_job_finish(s, id, STORE_JOB_QUEUED, NULL, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    /* Metrics must be JSON. */
    assert_int_equal(
        store_job_finish(s, id, STORE_JOB_SUCCEEDED, "{acc: 1}", NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(job_status(s, id), STORE_JOB_RUNNING);

    const char *metrics = "{\"accuracy\":0.9243,\"best_epoch\":2}";
    before = wall_ms();
    assert_int_equal(store_job_finish(s, id, STORE_JOB_SUCCEEDED, metrics, NULL, err, sizeof err),
                     0);
    after = wall_ms();
    j = get_job(s, id);
    assert_int_equal(j.status, STORE_JOB_SUCCEEDED);
    assert_string_equal(j.metrics, metrics);
    assert_true(j.finished_at >= before && j.finished_at <= after);
    assert_int_equal(j.progress.step, 120); /* progress stays */
    store_job_clear(&j);

    /* Finished is final. */
    assert_int_equal(store_job_finish(s, id, STORE_JOB_FAILED, NULL, "late", err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "succeeded"));
    assert_int_equal(store_job_update_progress(s, id, &p, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);

    /* The status history, in order. */
    size_t n;
    store_event *ev = all_events(s, id, &n);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ev[i].seq, (int64_t)i + 1);
        assert_int_equal(ev[i].type, STORE_EVENT_STATUS);
        assert_string_equal(ev[i].job_id, id);
    }
    assert_string_equal(ev[0].payload, "{\"status\":\"queued\"}");
    assert_string_equal(ev[1].payload, "{\"status\":\"running\",\"attempt\":1}");
    assert_string_equal(ev[2].payload, "{\"status\":\"succeeded\"}");
    store_event_list_free(ev, n);

    /* A failure records its message in the job and the event. */
    char id2[STORE_ID_SIZE];
    make_job(s, ds, id2);
    assert_int_equal(claim(s, &c), 1);
    assert_string_equal(c.id, id2);
    store_job_clear(&c);
    assert_int_equal(
        store_job_finish(s, id2, STORE_JOB_FAILED, NULL, "out of memory \"x\"", err, sizeof err),
        0);
    j = get_job(s, id2);
    assert_int_equal(j.status, STORE_JOB_FAILED);
    assert_string_equal(j.error, "out of memory \"x\"");
    store_job_clear(&j);
    assert_last_event(s, id2, STORE_EVENT_STATUS,
                      "{\"status\":\"failed\",\"error\":\"out of memory \\\"x\\\"\"}");

    /* Unknown and malformed ids. */
    assert_int_equal(store_job_get(s, NO_SUCH_ID, &j, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_non_null(strstr(err, NO_SUCH_ID));
    assert_int_equal(store_job_get(s, "../etc/passwd", &j, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_int_equal(
        store_job_finish(s, NO_SUCH_ID, STORE_JOB_SUCCEEDED, NULL, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_int_equal(store_job_update_progress(s, NO_SUCH_ID, &p, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);

    check_integrity(s);
    store_close(s);
}

static void test_job_create_validation(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE];
    make_dataset(s, "train", ds);
    char err[ERRLEN] = "";

    assert_int_equal(store_job_create(s, "{\"task\":", ds, NULL, id, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(store_job_create(s, "[1,2]", ds, NULL, id, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(store_job_create(s, NULL, ds, NULL, id, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(store_job_create(s, SPEC, NO_SUCH_ID, NULL, id, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_non_null(strstr(err, NO_SUCH_ID));
    assert_non_null(strstr(err, "train_dataset_id"));
    assert_int_equal(store_job_create(s, SPEC, ds, NO_SUCH_ID, id, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_non_null(strstr(err, "eval_dataset_id"));

    /* Nothing above left a job behind. */
    int64_t counts[STORE_JOB_STATUS_COUNT];
    assert_int_equal(store_job_counts(s, counts, err, sizeof err), 0);
    assert_int_equal(counts[STORE_JOB_QUEUED], 0);

    /* No uploaded dataset (the demo model's own data): allowed. */
    assert_int_equal(store_job_create(s, SPEC, NULL, NULL, id, err, sizeof err), 0);
    store_job j0;
    assert_int_equal(store_job_get(s, id, &j0, err, sizeof err), 0);
    assert_string_equal(j0.train_dataset_id, "");
    store_job_clear(&j0);

    /* "" for eval means none. */
    assert_int_equal(store_job_create(s, SPEC, ds, "", id, err, sizeof err), 0);
    store_job j = get_job(s, id);
    assert_string_equal(j.eval_dataset_id, "");
    store_job_clear(&j);
    check_integrity(s);
    store_close(s);
}

static void test_claim_oldest_first(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char ds[STORE_ID_SIZE], a[STORE_ID_SIZE], b[STORE_ID_SIZE], c[STORE_ID_SIZE];
    make_dataset(s, "train", ds);
    store_job j;
    assert_int_equal(claim(s, &j), 0); /* empty queue */

    /* Created in the same millisecond or not, creation order decides... */
    make_job(s, ds, a);
    make_job(s, ds, b);
    make_job(s, ds, c);
    /* ...unless created_at says otherwise: make c the oldest. */
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE jobs SET created_at = created_at - 1000 WHERE id = '%s'", c);
    raw_exec_ok(f->db, sql);

    const char *expect[] = {c, a, b};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(claim(s, &j), 1);
        assert_string_equal(j.id, expect[i]);
        assert_int_equal(j.status, STORE_JOB_RUNNING);
        store_job_clear(&j);
    }
    assert_int_equal(claim(s, &j), 0);
    check_integrity(s);
    store_close(s);
}

typedef struct {
    const char *path;
    pthread_barrier_t *barrier;
    char (*ids)[STORE_ID_SIZE];
    int n;
    int failed;
    char err[ERRLEN];
} claimer;

static void *claim_thread(void *arg) {
    claimer *c = arg;
    store *s = store_open(c->path, c->err, sizeof c->err);
    pthread_barrier_wait(c->barrier);
    if (!s) {
        c->failed = 1;
        return NULL;
    }
    for (;;) {
        store_job j;
        int r = store_claim_next_job(s, &j, c->err, sizeof c->err);
        if (r < 0) {
            c->failed = 1;
            break;
        }
        if (r == 0) break;
        if (c->n < CLAIM_JOBS) memcpy(c->ids[c->n], j.id, STORE_ID_SIZE);
        c->n++;
        store_job_clear(&j);
    }
    store_close(s);
    return NULL;
}

static void test_concurrent_claims(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char ds[STORE_ID_SIZE];
    make_dataset(s, "train", ds);
    static char created[CLAIM_JOBS][STORE_ID_SIZE];
    for (int i = 0; i < CLAIM_JOBS; i++) make_job(s, ds, created[i]);

    static char got[CLAIM_THREADS][CLAIM_JOBS][STORE_ID_SIZE];
    claimer c[CLAIM_THREADS];
    pthread_t th[CLAIM_THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, CLAIM_THREADS);
    for (int t = 0; t < CLAIM_THREADS; t++) {
        memset(&c[t], 0, sizeof c[t]);
        c[t].path = f->db;
        c[t].barrier = &barrier;
        c[t].ids = got[t];
        assert_int_equal(pthread_create(&th[t], NULL, claim_thread, &c[t]), 0);
    }
    for (int t = 0; t < CLAIM_THREADS; t++) pthread_join(th[t], NULL);
    pthread_barrier_destroy(&barrier);

    /* Every created job claimed exactly once, nothing else claimed. */
    int total = 0;
    static int seen[CLAIM_JOBS];
    memset(seen, 0, sizeof seen);
    for (int t = 0; t < CLAIM_THREADS; t++) {
        if (c[t].failed) fail_msg("claimer %d: %s", t, c[t].err);
        total += c[t].n;
        for (int k = 0; k < c[t].n && k < CLAIM_JOBS; k++) {
            int found = -1;
            for (int i = 0; i < CLAIM_JOBS; i++)
                if (strcmp(created[i], got[t][k]) == 0) found = i;
            assert_true(found >= 0);
            seen[found]++;
        }
    }
    assert_int_equal(total, CLAIM_JOBS);
    for (int i = 0; i < CLAIM_JOBS; i++)
        if (seen[i] != 1) fail_msg("job %d claimed %d times", i, seen[i]);

    int64_t counts[STORE_JOB_STATUS_COUNT];
    char err[ERRLEN];
    assert_int_equal(store_job_counts(s, counts, err, sizeof err), 0);
    assert_int_equal(counts[STORE_JOB_RUNNING], CLAIM_JOBS);
    assert_int_equal(counts[STORE_JOB_QUEUED], 0);
    assert_int_equal(raw_int(f->db, "SELECT max(attempts) FROM jobs"), 1);
    /* Each job: queued + running events, seqs 1 and 2. */
    assert_int_equal(raw_int(f->db,
                             "SELECT count(*) FROM events WHERE seq = 2 AND type = "
                             "'status' AND payload = '{\"status\":\"running\",\"attempt\":1}'"),
                     CLAIM_JOBS);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM events"), 2 * CLAIM_JOBS);
    check_integrity(s);
    store_close(s);
}

static void test_cancel_semantics(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char ds[STORE_ID_SIZE], r[STORE_ID_SIZE], q[STORE_ID_SIZE];
    make_dataset(s, "train", ds);
    make_job(s, ds, r);
    store_job j;
    assert_int_equal(claim(s, &j), 1);
    assert_string_equal(j.id, r);
    store_job_clear(&j);
    make_job(s, ds, q);
    char err[ERRLEN] = "";

    /* Queued: cancelled at once, and never claimed afterwards. */
    assert_int_equal(store_job_request_cancel(s, q, err, sizeof err), STORE_CANCEL_DONE);
    j = get_job(s, q);
    assert_int_equal(j.status, STORE_JOB_CANCELLED);
    assert_true(j.finished_at != STORE_TIME_NONE);
    assert_int_equal(j.cancel_requested, 0);
    store_job_clear(&j);
    assert_last_event(s, q, STORE_EVENT_STATUS, "{\"status\":\"cancelled\"}");
    assert_int_equal(store_job_request_cancel(s, q, err, sizeof err),
                     STORE_CANCEL_ALREADY_FINISHED);
    assert_int_equal(claim(s, &j), 0);

    /* Running: flagged; the worker sees it on its next progress update. */
    store_progress p = {.step = 5, .total_steps = 10, .loss = 1.5};
    assert_int_equal(store_job_update_progress(s, r, &p, err, sizeof err), 0);
    assert_int_equal(store_job_request_cancel(s, r, err, sizeof err), STORE_CANCEL_REQUESTED);
    j = get_job(s, r);
    assert_int_equal(j.status, STORE_JOB_RUNNING);
    assert_int_equal(j.cancel_requested, 1);
    assert_int_equal(j.finished_at, STORE_TIME_NONE);
    store_job_clear(&j);
    assert_last_event(s, r, STORE_EVENT_STATUS,
                      "{\"status\":\"running\",\"cancel_requested\":true}");
    size_t before = event_count(s, r);
    assert_int_equal(store_job_request_cancel(s, r, err, sizeof err), STORE_CANCEL_REQUESTED);
    assert_int_equal(event_count(s, r), before); /* asking twice logs nothing */
    p.step = 6;
    assert_int_equal(store_job_update_progress(s, r, &p, err, sizeof err), 1);

    assert_int_equal(store_job_finish(s, r, STORE_JOB_CANCELLED, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(job_status(s, r), STORE_JOB_CANCELLED);
    assert_int_equal(store_job_request_cancel(s, r, err, sizeof err),
                     STORE_CANCEL_ALREADY_FINISHED);

    assert_int_equal(store_job_request_cancel(s, NO_SUCH_ID, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_int_equal(store_job_request_cancel(s, "nope", err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    check_integrity(s);
    store_close(s);
}

#define REQUEUED_EVENT \
    "{\"status\":\"queued\",\"reason\":\"the daemon stopped while the job was running\"}"

static void test_requeue_after_crash(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], a[STORE_ID_SIZE], b[STORE_ID_SIZE], c[STORE_ID_SIZE];
    char err[ERRLEN] = "";
    store *s = open_ok(f->db);
    make_dataset(s, "train", ds);
    make_job(s, ds, a);
    make_job(s, ds, b);
    make_job(s, ds, c);
    store_job j;
    assert_int_equal(claim(s, &j), 1); /* a, with progress */
    int64_t a_started = j.started_at;
    store_job_clear(&j);
    store_progress p = {.step = 7, .total_steps = 30, .epoch = 1, .loss = 0.25, .frozen = 2};
    assert_int_equal(store_job_update_progress(s, a, &p, err, sizeof err), 0);
    assert_int_equal(claim(s, &j), 1); /* b, then a cancel request */
    store_job_clear(&j);
    assert_int_equal(store_job_request_cancel(s, b, err, sizeof err), STORE_CANCEL_REQUESTED);
    store_close(s); /* the daemon "dies" */

    s = open_ok(f->db);
    store_requeue_result res = {-1, -1, -1};
    assert_int_equal(store_requeue_running(s, 0, &res, err, sizeof err), 0);
    assert_int_equal(res.requeued, 1);
    assert_int_equal(res.cancelled, 1);
    assert_int_equal(res.failed, 0);

    j = get_job(s, a);
    assert_int_equal(j.status, STORE_JOB_QUEUED);
    assert_int_equal(j.progress.step, 7);
    assert_int_equal(j.progress.frozen, 2);
    assert_true(j.progress.loss == 0.25);
    assert_int_equal(j.attempts, 1);
    assert_int_equal(j.crashes, 1);
    assert_int_equal(j.started_at, a_started);
    assert_int_equal(j.finished_at, STORE_TIME_NONE);
    store_job_clear(&j);
    assert_last_event(s, a, STORE_EVENT_STATUS, REQUEUED_EVENT);
    j = get_job(s, b);
    assert_int_equal(j.status, STORE_JOB_CANCELLED);
    assert_true(j.finished_at != STORE_TIME_NONE);
    store_job_clear(&j);
    assert_int_equal(job_status(s, c), STORE_JOB_QUEUED);

    /* a is older than c, so it runs next: its second attempt. */
    assert_int_equal(claim(s, &j), 1);
    assert_string_equal(j.id, a);
    assert_int_equal(j.attempts, 2);
    assert_int_equal(j.progress.step, 7);
    store_job_clear(&j);
    store_close(s);

    /* Dies again; after 2 crashes, a is given up on. */
    s = open_ok(f->db);
    assert_int_equal(store_requeue_running(s, 2, &res, err, sizeof err), 0);
    assert_int_equal(res.requeued, 0);
    assert_int_equal(res.cancelled, 0);
    assert_int_equal(res.failed, 1);
    j = get_job(s, a);
    assert_int_equal(j.status, STORE_JOB_FAILED);
    assert_non_null(j.error);
    assert_non_null(strstr(j.error, "2 crashes"));
    assert_int_equal(j.crashes, 2);
    store_job_clear(&j);

    /* Nothing running: nothing to do. */
    assert_int_equal(store_requeue_running(s, 0, &res, err, sizeof err), 0);
    assert_int_equal(res.requeued + res.cancelled + res.failed, 0);
    assert_int_equal(claim(s, &j), 1);
    assert_string_equal(j.id, c);
    store_job_clear(&j);
    check_integrity(s);
    store_close(s);
}

/* A clean stop (shutdown with a checkpoint) puts the job back in the queue
 * without counting a crash, however often it happens; only what is still
 * running at start-up counts. */
static void test_clean_release_is_not_a_crash(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], a[STORE_ID_SIZE], b[STORE_ID_SIZE];
    char err[ERRLEN] = "";
    store *s = open_ok(f->db);
    make_dataset(s, "train", ds);
    make_job(s, ds, a);
    store_job j;
    for (int round = 1; round <= 5; round++) {
        assert_int_equal(claim(s, &j), 1);
        assert_int_equal(j.attempts, round);
        store_job_clear(&j);
        store_progress p = {.step = 10 * round, .total_steps = 100};
        assert_int_equal(store_job_update_progress(s, a, &p, err, sizeof err), 0);
        assert_int_equal(store_job_release(s, a, "shut down at step 10", err, sizeof err),
                         STORE_RELEASE_QUEUED);
        assert_last_event(s, a, STORE_EVENT_STATUS,
                          "{\"status\":\"queued\",\"reason\":\"shut down at step 10\"}");
        store_requeue_result res;
        assert_int_equal(store_requeue_running(s, 3, &res, err, sizeof err), 0);
        assert_int_equal(res.requeued + res.cancelled + res.failed, 0);
        j = get_job(s, a);
        assert_int_equal(j.status, STORE_JOB_QUEUED);
        assert_int_equal(j.crashes, 0);
        assert_int_equal(j.progress.step, 10 * round); /* kept for the resume */
        store_job_clear(&j);
    }
    /* now a real crash: counted */
    assert_int_equal(claim(s, &j), 1);
    store_job_clear(&j);
    store_requeue_result res;
    assert_int_equal(store_requeue_running(s, 3, &res, err, sizeof err), 0);
    assert_int_equal(res.requeued, 1);
    j = get_job(s, a);
    assert_int_equal(j.crashes, 1);
    assert_int_equal(j.attempts, 6);
    store_job_clear(&j);

    /* Only a running job can be released; a cancel asked meanwhile wins. */
    assert_int_equal(store_job_release(s, a, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "queued"));
    assert_int_equal(store_job_release(s, "0123456789abcdef", NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    make_job(s, ds, b);
    assert_int_equal(claim(s, &j), 1); /* a (older) */
    store_job_clear(&j);
    assert_int_equal(store_job_request_cancel(s, a, err, sizeof err), STORE_CANCEL_REQUESTED);
    assert_int_equal(store_job_release(s, a, "shut down", err, sizeof err),
                     STORE_RELEASE_CANCELLED);
    assert_int_equal(job_status(s, a), STORE_JOB_CANCELLED);
    check_integrity(s);
    store_close(s);
}

/* Retry: failed and cancelled jobs go back to the queue with their progress,
 * error and finished_at cleared and the crash count reset; nothing else can
 * be retried, nor a job whose dataset is gone. */
static void test_retry(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], a[STORE_ID_SIZE], b[STORE_ID_SIZE], c[STORE_ID_SIZE];
    char err[ERRLEN] = "";
    store *s = open_ok(f->db);
    make_dataset(s, "train", ds);
    make_job(s, ds, a);
    make_job(s, ds, b);
    /* a: queued -> refused */
    assert_int_equal(store_job_retry(s, a, ds, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "queued"));
    assert_non_null(strstr(err, "only a failed or cancelled job"));
    /* a: running -> refused; then crashes twice and fails */
    store_job j;
    assert_int_equal(claim(s, &j), 1);
    store_job_clear(&j);
    assert_int_equal(store_job_retry(s, a, ds, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    store_progress p = {.step = 42, .total_steps = 100};
    assert_int_equal(store_job_update_progress(s, a, &p, err, sizeof err), 0);
    store_requeue_result res;
    assert_int_equal(store_requeue_running(s, 2, &res, err, sizeof err), 0);
    assert_int_equal(claim(s, &j), 1);
    store_job_clear(&j);
    assert_int_equal(store_requeue_running(s, 2, &res, err, sizeof err), 0);
    assert_int_equal(res.failed, 1);
    assert_int_equal(job_status(s, a), STORE_JOB_FAILED);

    size_t before = event_count(s, a);
    assert_int_equal(store_job_retry(s, a, ds, NULL, err, sizeof err), 0);
    j = get_job(s, a);
    assert_int_equal(j.status, STORE_JOB_QUEUED);
    assert_null(j.error);
    assert_int_equal(j.finished_at, STORE_TIME_NONE);
    assert_int_equal(j.crashes, 0);
    assert_int_equal(j.progress.step, 42);
    assert_string_equal(j.train_dataset_id, ds);
    store_job_clear(&j);
    assert_int_equal(event_count(s, a), before + 1);
    assert_last_event(s, a, STORE_EVENT_STATUS,
                      "{\"status\":\"queued\",\"reason\":\"retry requested\"}");
    /* and runs again: claimed before b, which is newer */
    assert_int_equal(claim(s, &j), 1);
    assert_string_equal(j.id, a);
    assert_int_equal(j.attempts, 3);
    store_job_clear(&j);
    assert_int_equal(store_job_finish(s, a, STORE_JOB_SUCCEEDED, "{}", NULL, err, sizeof err), 0);
    /* succeeded -> refused */
    assert_int_equal(store_job_retry(s, a, ds, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "succeeded"));
    /* cancelled -> fine */
    assert_int_equal(store_job_request_cancel(s, b, err, sizeof err), STORE_CANCEL_DONE);
    assert_int_equal(store_job_retry(s, b, ds, NULL, err, sizeof err), 0);
    assert_int_equal(job_status(s, b), STORE_JOB_QUEUED);
    /* unknown job */
    assert_int_equal(store_job_retry(s, "0123456789abcdef", NULL, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);

    /* c's dataset is deleted after it failed: it cannot run again */
    char ds2[STORE_ID_SIZE];
    make_dataset(s, "other", ds2);
    make_job(s, ds2, c);
    assert_int_equal(store_job_request_cancel(s, b, err, sizeof err), STORE_CANCEL_DONE);
    assert_int_equal(store_job_request_cancel(s, c, err, sizeof err), STORE_CANCEL_DONE);
    assert_int_equal(store_dataset_delete(s, ds2, err, sizeof err), 0);
    assert_int_equal(store_job_retry(s, c, ds2, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "deleted"));
    assert_non_null(strstr(err, ds2));
    assert_int_equal(job_status(s, c), STORE_JOB_CANCELLED);
    check_integrity(s);
    store_close(s);
}

static void test_job_list_and_counts(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char ds[STORE_ID_SIZE], id[5][STORE_ID_SIZE];
    char err[ERRLEN] = "";
    make_dataset(s, "train", ds);
    for (int i = 0; i < 5; i++) make_job(s, ds, id[i]);
    store_job j;
    assert_int_equal(claim(s, &j), 1); /* 0 */
    store_job_clear(&j);
    assert_int_equal(claim(s, &j), 1); /* 1 */
    store_job_clear(&j);
    assert_int_equal(store_job_finish(s, id[0], STORE_JOB_FAILED, NULL, "boom", err, sizeof err),
                     0);
    assert_int_equal(store_job_request_cancel(s, id[2], err, sizeof err), STORE_CANCEL_DONE);
    /* Now: 0 failed, 1 running, 2 cancelled, 3 and 4 queued. */

    int64_t counts[STORE_JOB_STATUS_COUNT];
    assert_int_equal(store_job_counts(s, counts, err, sizeof err), 0);
    assert_int_equal(counts[STORE_JOB_QUEUED], 2);
    assert_int_equal(counts[STORE_JOB_RUNNING], 1);
    assert_int_equal(counts[STORE_JOB_SUCCEEDED], 0);
    assert_int_equal(counts[STORE_JOB_FAILED], 1);
    assert_int_equal(counts[STORE_JOB_CANCELLED], 1);

    store_job *list;
    size_t n;
    assert_int_equal(store_job_list(s, STORE_STATUS_ANY, 100, 0, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 5);
    for (int i = 0; i < 5; i++) assert_string_equal(list[i].id, id[4 - i]); /* newest first */
    assert_int_equal(list[4].status, STORE_JOB_FAILED);
    assert_string_equal(list[4].error, "boom");
    store_job_list_free(list, n);

    assert_int_equal(store_job_list(s, STORE_STATUS_ANY, 2, 1, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, id[3]);
    assert_string_equal(list[1].id, id[2]);
    store_job_list_free(list, n);

    assert_int_equal(store_job_list(s, STORE_JOB_QUEUED, 10, 0, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, id[4]);
    assert_string_equal(list[1].id, id[3]);
    store_job_list_free(list, n);

    assert_int_equal(store_job_list(s, STORE_JOB_SUCCEEDED, 10, 0, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_null(list);
    assert_int_equal(store_job_list(s, STORE_STATUS_ANY, 10, 5, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);

    assert_int_equal(store_job_list(s, 99, 10, 0, &list, &n, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(store_job_list(s, STORE_STATUS_ANY, 0, 0, &list, &n, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(store_job_list(s, STORE_STATUS_ANY, STORE_LIST_LIMIT_MAX + 1, 0, &list, &n,
                                    err, sizeof err),
                     -1);
    assert_int_equal(store_job_list(s, STORE_STATUS_ANY, 10, -1, &list, &n, err, sizeof err), -1);
    check_integrity(s);
    store_close(s);
}

/* ---- events --------------------------------------------------------------- */

static void test_events_batch_and_list(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char ds[STORE_ID_SIZE], J[STORE_ID_SIZE], K[STORE_ID_SIZE];
    char err[ERRLEN] = "";
    make_dataset(s, "train", ds);
    make_job(s, ds, J); /* each already has event 1 (queued) */
    make_job(s, ds, K);

    enum { B = 10 };
    char payload[B][64];
    store_event_new batch[B];
    for (int i = 0; i < B; i++) {
        snprintf(payload[i], sizeof payload[i], "{\"step\":%d,\"loss\":%d.5}", i, i);
        batch[i].job_id = (i == 3 || i == 7) ? K : J;
        batch[i].type = (i == 5) ? STORE_EVENT_FREEZE : STORE_EVENT_STEP;
        batch[i].payload = payload[i];
    }
    int64_t seqs[B];
    assert_int_equal(store_event_append_batch(s, batch, B, seqs, err, sizeof err), 0);
    /* J's events continue 2, 3, ...; K's 2, 3 — counted by hand. */
    const int64_t expect[B] = {2, 3, 4, 2, 5, 6, 7, 3, 8, 9};
    for (int i = 0; i < B; i++) assert_int_equal(seqs[i], expect[i]);

    store_event *ev;
    size_t n;
    assert_int_equal(store_event_list(s, J, 0, 100, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 9);
    assert_int_equal(ev[0].type, STORE_EVENT_STATUS);
    int k = 1;
    for (int i = 0; i < B; i++) {
        if (batch[i].job_id != J) continue;
        assert_int_equal(ev[k].seq, k + 1);
        assert_string_equal(ev[k].payload, payload[i]);
        assert_int_equal(ev[k].type, batch[i].type);
        assert_true(ev[k].created_at > 0);
        k++;
    }
    store_event_list_free(ev, n);

    assert_int_equal(store_event_list(s, J, 4, 3, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ev[0].seq, 5);
    assert_int_equal(ev[2].seq, 7);
    assert_int_equal(ev[1].type, STORE_EVENT_FREEZE); /* seq 6 = batch[5] */
    store_event_list_free(ev, n);

    assert_int_equal(store_event_list(s, J, 9, 100, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_event_list(s, K, 1, 100, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0].payload, payload[3]);
    assert_string_equal(ev[1].payload, payload[7]);
    store_event_list_free(ev, n);

    int64_t seq = 0;
    assert_int_equal(
        store_event_append(s, J, STORE_EVENT_LOG, "{\"msg\":\"hello\"}", &seq, err, sizeof err), 0);
    assert_int_equal(seq, 10);

    /* A batch with one bad event stores nothing. */
    store_event_new bad[3] = {
        {J, STORE_EVENT_STEP, "{\"step\":100}"},
        {J, STORE_EVENT_STEP, "{not json"},
        {J, STORE_EVENT_STEP, "{\"step\":101}"},
    };
    assert_int_equal(store_event_append_batch(s, bad, 3, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_non_null(strstr(err, "event 2 of 3"));
    assert_int_equal(event_count(s, J), 10);
    bad[1].payload = "{}";
    bad[1].job_id = NO_SUCH_ID;
    assert_int_equal(store_event_append_batch(s, bad, 3, NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_int_equal(event_count(s, J), 10);

    assert_int_equal(
        store_event_append(s, NO_SUCH_ID, STORE_EVENT_LOG, "{}", NULL, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_int_equal(store_event_append(s, J, STORE_EVENT_TYPE_COUNT, "{}", NULL, err, sizeof err),
                     -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(store_event_list(s, NO_SUCH_ID, 0, 10, &ev, &n, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    assert_int_equal(store_event_list(s, J, 0, 0, &ev, &n, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_int_equal(store_event_append_batch(s, NULL, 0, NULL, err, sizeof err), 0);
    check_integrity(s);
    store_close(s);
}

/* ---- datasets ------------------------------------------------------------- */

static void test_datasets(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char err[ERRLEN] = "";
    store_dataset d;
    memset(&d, 0, sizeof d);
    d.name = (char *)"sst2-train";
    d.format = (char *)"tsv";
    d.path = (char *)"/var/lib/aflorad/datasets/a.tsv";
    d.rows = 67349;
    d.bytes = 4976728LL * 1000; /* > 2^32 */
    snprintf(d.sha256, sizeof d.sha256, "%s", SHA_EMPTY);
    char a[STORE_ID_SIZE];
    int64_t before = wall_ms();
    assert_int_equal(store_dataset_create(s, &d, a, err, sizeof err), 0);
    int64_t after = wall_ms();

    store_dataset g;
    assert_int_equal(store_dataset_get(s, a, &g, err, sizeof err), 0);
    assert_string_equal(g.id, a);
    assert_string_equal(g.name, "sst2-train");
    assert_string_equal(g.format, "tsv");
    assert_string_equal(g.path, "/var/lib/aflorad/datasets/a.tsv");
    assert_int_equal(g.rows, 67349);
    assert_true(g.bytes == 4976728000LL);
    assert_string_equal(g.sha256, SHA_EMPTY);
    assert_true(g.created_at >= before && g.created_at <= after);
    /* tokens 0 is a count; task and form unset read NULL */
    assert_int_equal(g.tokens, 0);
    assert_null(g.task);
    assert_null(g.form);
    store_dataset_clear(&g);

    /* A causal-LM upload's task, form and token count; a count not taken
     * reads STORE_COUNT_NONE, and a task outside the three is refused. */
    d.task = (char *)"causal_lm";
    d.form = (char *)"chat";
    d.tokens = 123456789012LL;
    char c[STORE_ID_SIZE];
    assert_int_equal(store_dataset_create(s, &d, c, err, sizeof err), 0);
    assert_int_equal(store_dataset_get(s, c, &g, err, sizeof err), 0);
    assert_string_equal(g.task, "causal_lm");
    assert_string_equal(g.form, "chat");
    assert_true(g.tokens == 123456789012LL);
    store_dataset_clear(&g);
    assert_int_equal(store_dataset_delete(s, c, err, sizeof err), 0);
    d.tokens = STORE_COUNT_NONE;
    assert_int_equal(store_dataset_create(s, &d, c, err, sizeof err), 0);
    assert_int_equal(store_dataset_get(s, c, &g, err, sizeof err), 0);
    assert_int_equal(g.tokens, STORE_COUNT_NONE);
    store_dataset_clear(&g);
    assert_int_equal(store_dataset_delete(s, c, err, sizeof err), 0);
    d.task = (char *)"translation";
    assert_int_equal(store_dataset_create(s, &d, c, err, sizeof err), -1);
    d.task = NULL;
    d.form = NULL;
    d.tokens = 0;

    /* Caller-chosen id; duplicates and malformed ids refused. */
    char b[STORE_ID_SIZE];
    snprintf(d.id, sizeof d.id, "00000000000000bb");
    d.name = (char *)"sst2-dev";
    assert_int_equal(store_dataset_create(s, &d, b, err, sizeof err), 0);
    assert_string_equal(b, "00000000000000bb");
    assert_int_equal(store_dataset_create(s, &d, b, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "dataset 00000000000000bb already exists"));
    snprintf(d.id, sizeof d.id, "00000000000000BB");
    assert_int_equal(store_dataset_create(s, &d, b, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    d.id[0] = '\0';
    snprintf(d.sha256, sizeof d.sha256, "abc");
    assert_int_equal(store_dataset_create(s, &d, b, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    assert_non_null(strstr(err, "sha256"));
    snprintf(d.sha256, sizeof d.sha256, "%s", SHA_EMPTY);
    d.rows = -1;
    assert_int_equal(store_dataset_create(s, &d, b, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);
    d.rows = 1;
    d.name = NULL;
    assert_int_equal(store_dataset_create(s, &d, b, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_INVALID);

    strcpy(b, "00000000000000bb");
    store_dataset *list;
    size_t n;
    assert_int_equal(store_dataset_list(s, 10, 0, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, b); /* newest first */
    assert_string_equal(list[1].id, a);
    store_dataset_list_free(list, n);
    assert_int_equal(store_dataset_list(s, 1, 1, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, a);
    store_dataset_list_free(list, n);

    /* In use by a queued, then running job: refused, naming the job. */
    char job[STORE_ID_SIZE];
    assert_int_equal(store_job_create(s, SPEC, a, b, job, err, sizeof err), 0);
    assert_int_equal(store_dataset_delete(s, a, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    assert_non_null(strstr(err, job));
    assert_non_null(strstr(err, "queued"));
    assert_int_equal(store_dataset_delete(s, b, err, sizeof err), -1); /* as eval set */
    assert_int_equal(store_last_error(s), STORE_E_CONFLICT);
    store_job j;
    assert_int_equal(claim(s, &j), 1);
    store_job_clear(&j);
    assert_int_equal(store_dataset_delete(s, a, err, sizeof err), -1);
    assert_non_null(strstr(err, "running"));
    /* The schema refuses it too, whoever asks. */
    char sql[128], msg[ERRLEN];
    snprintf(sql, sizeof sql, "DELETE FROM datasets WHERE id = '%s'", a);
    assert_int_not_equal(raw_exec(f->db, sql, msg, sizeof msg), SQLITE_OK);
    assert_non_null(strstr(msg, "queued or running"));
    assert_int_equal(store_dataset_get(s, a, &g, err, sizeof err), 0);
    store_dataset_clear(&g);

    /* Once the job is finished the record can go; the job keeps its spec. */
    assert_int_equal(store_job_finish(s, job, STORE_JOB_SUCCEEDED, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(store_dataset_delete(s, a, err, sizeof err), 0);
    assert_int_equal(store_dataset_get(s, a, &g, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    j = get_job(s, job);
    assert_string_equal(j.train_dataset_id, "");
    assert_string_equal(j.eval_dataset_id, b);
    assert_string_equal(j.spec, SPEC);
    store_job_clear(&j);
    assert_int_equal(store_dataset_delete(s, a, err, sizeof err), -1);
    assert_int_equal(store_last_error(s), STORE_E_NOT_FOUND);
    check_integrity(s);
    store_close(s);
}

/* ---- schema, integrity, crash --------------------------------------------- */

/* EXPLAIN QUERY PLAN details of sql, joined with " | ". */
static void query_plan(store *s, const char *sql, char *out, size_t outlen) {
    sqlite3_stmt *st = NULL;
    char q[1024];
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    if (sqlite3_prepare_v2(store_sqlite(s), q, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(store_sqlite(s)));
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t len = strlen(out);
        snprintf(out + len, outlen - len, "%s | ", (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
}

static void test_queries_use_indexes(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char plan[1024];
    query_plan(s,
               "SELECT rowid FROM jobs WHERE status = 'queued' "
               "ORDER BY created_at, rowid LIMIT 1",
               plan, sizeof plan);
    assert_non_null(strstr(plan, "jobs_by_status_created"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    query_plan(s,
               "SELECT * FROM jobs WHERE status = 'running' "
               "ORDER BY created_at DESC, rowid DESC LIMIT 10",
               plan, sizeof plan);
    assert_non_null(strstr(plan, "jobs_by_status_created"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    query_plan(s, "SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT 10", plan,
               sizeof plan);
    assert_non_null(strstr(plan, "jobs_by_created"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    query_plan(s,
               "SELECT * FROM events WHERE job_id = '0123456789abcdef' AND seq > 5 "
               "ORDER BY seq LIMIT 10",
               plan, sizeof plan);
    assert_non_null(strstr(plan, "PRIMARY KEY (job_id=? AND seq>?)"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    store_close(s);
}

static off_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_checkpoint_and_corruption_detected(void **state) {
    fixture *f = *state;
    store *s = open_ok(f->db);
    char ds[STORE_ID_SIZE], job[STORE_ID_SIZE], err[ERRLEN] = "";
    make_dataset(s, "train", ds);
    make_job(s, ds, job);
    for (int i = 0; i < 50; i++)
        assert_int_equal(store_event_append(s, job, STORE_EVENT_LOG,
                                            "{\"msg\":\"some log line to fill a page\"}", NULL, err,
                                            sizeof err),
                         0);
    char wal[400];
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    assert_true(file_size(wal) > 0);
    assert_int_equal(store_checkpoint(s, err, sizeof err), 0);
    assert_int_equal(file_size(wal), 0);
    check_integrity(s);

    /* Find the events table's page, close everything, overwrite its cell
     * pointers: integrity_check must notice. */
    char v[64];
    conn_text(s, "SELECT rootpage FROM sqlite_schema WHERE name = 'events'", v, sizeof v);
    long root = atol(v);
    conn_text(s, "PRAGMA page_size", v, sizeof v);
    long page = atol(v);
    store_close(s);
    assert_true(root > 1);
    FILE *fp = fopen(f->db, "r+b");
    assert_non_null(fp);
    unsigned char junk[256];
    memset(junk, 0xA5, sizeof junk);
    assert_int_equal(fseek(fp, (root - 1) * page + 8, SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, sizeof junk, fp), sizeof junk);
    fclose(fp);

    s = open_ok(f->db);
    err[0] = '\0';
    assert_int_equal(store_check_integrity(s, err, sizeof err), -1);
    assert_non_null(strstr(err, "integrity check failed"));
    store_close(s);
}

/* Child: append batches of CRASH_BATCH events to job forever, reporting the
 * last seq of each committed batch on fd. Never returns. */
static void crash_child(const char *path, const char *job, int fd) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan if the parent dies */
    store *s = store_open(path, NULL, 0);
    if (!s) _exit(2);
    char payload[CRASH_BATCH][96];
    store_event_new batch[CRASH_BATCH];
    for (long round = 0;; round++) {
        for (int i = 0; i < CRASH_BATCH; i++) {
            snprintf(payload[i], sizeof payload[i],
                     "{\"step\":%ld,\"loss\":0.5,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
                     round * CRASH_BATCH + i);
            batch[i] = (store_event_new){job, STORE_EVENT_STEP, payload[i]};
        }
        int64_t seqs[CRASH_BATCH];
        if (store_event_append_batch(s, batch, CRASH_BATCH, seqs, NULL, 0) != 0) _exit(3);
        int64_t last = seqs[CRASH_BATCH - 1];
        if (write(fd, &last, sizeof last) != (ssize_t)sizeof last) _exit(4);
    }
}

static void test_crash_during_event_appends(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], job[STORE_ID_SIZE];
    store *s = open_ok(f->db);
    make_dataset(s, "train", ds);
    make_job(s, ds, job); /* event 1 */
    store_close(s);       /* no connection open across fork() */

    int64_t reported = 1;
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(f->db, job, fds[1]);
        }
        close(fds[1]);
        int64_t last;
        for (int k = 0; k < CRASH_BATCHES_BEFORE_KILL; k++) {
            if (read(fds[0], &last, sizeof last) != (ssize_t)sizeof last)
                fail_msg("round %d: child stopped before its batch %d", round, k + 1);
            reported = last;
        }
        usleep((useconds_t)(round * 700)); /* kill at a different point each round */
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        while (read(fds[0], &last, sizeof last) == (ssize_t)sizeof last) reported = last;
        close(fds[0]);

        /* What a reader finds after the crash: a sound file, every event the
         * child saw committed, seqs 1..N without gaps, whole batches only. */
        s = open_ok(f->db);
        check_integrity(s);
        size_t n;
        store_event *ev = all_events(s, job, &n);
        assert_true((int64_t)n >= reported);
        for (size_t i = 0; i < n; i++) assert_int_equal(ev[i].seq, (int64_t)i + 1);
        assert_int_equal((n - 1) % CRASH_BATCH, 0);
        store_event_list_free(ev, n);
        store_close(s);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_migrations_match_files),
        cmocka_unit_test_setup_teardown(test_open_configures_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_reports_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_is_idempotent, setup, teardown),
        cmocka_unit_test(test_migrate_applies_only_new),
        cmocka_unit_test(test_failed_migration_rolls_back),
        cmocka_unit_test_setup_teardown(test_too_new_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_epochs_from_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_first_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_create_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_oldest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_semantics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requeue_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_release_is_not_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_list_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_batch_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datasets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queries_use_indexes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_and_corruption_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_during_event_appends, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
