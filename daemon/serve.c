/* serve.c — `aflorad serve`: the long-running daemon.
 *
 * Start-up: read the configuration (a table: flag, environment variable,
 * default, help), lock the data directory (one daemon per directory: a
 * second one fails naming the first's PID), open the SQLite store (which
 * applies migrations), put jobs a crashed daemon left "running" back in the
 * queue, write the built-in demo model if missing, start the workers and the
 * HTTP API. SIGTERM/SIGINT stop
 * gracefully: the API stops taking requests, running jobs checkpoint and go
 * back to the queue (not counted as a crash), so the next start resumes
 * them.
 *
 * Layering: this file is where the binary is assembled, above both the
 * daemon's own modules and the HTTP API, and the one file of daemon/ that
 * includes an api/ header (server.h: api_start, api_stop). Everything else
 * in daemon/ — store, workers, jobs, specs, counters — is below api/ and
 * never reaches up into it; the API meets the workers only through
 * workers.h, wired here (api_config.workers). */
#include "serve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/isa.h"
#include "blas_setup.h"
#include "cli.h"
#include "fsutil.h"
#include "model/gemm.h"
#include "job.h"
#include "log.h"
#include "server.h"
#include "store.h"
#include "sysmem.h"
#include "workers.h"

/* A job the daemon died under this many times is failed, not requeued (a
 * job that kills the daemon must not do so forever); clean shutdowns do not
 * count, and POST /jobs/{id}/retry starts the count again. */
#define MAX_CRASHES 3

typedef struct {
    char listen[128];
    char data_dir[1024];
    char models_dir[1024];
    char web_dir[1024];
    char token[256];
    char log_level[16];
    int workers;
    int threads_per_job;
    int predict_cache;
} serve_config;

typedef enum { OPT_STRING, OPT_INT } opt_type;

typedef struct {
    const char *flag, *env, *def, *help;
    opt_type type;
    size_t offset, size;
} serve_option;

#define STR_OPT(field) OPT_STRING, offsetof(serve_config, field), sizeof(((serve_config *)0)->field)
#define INT_OPT(field) OPT_INT, offsetof(serve_config, field), sizeof(int)

static const serve_option options[] = {
    {"--listen", "AFLORAD_LISTEN", "127.0.0.1:8080", "address:port to listen on (port 0: any free)",
     STR_OPT(listen)},
    {"--data-dir", "AFLORAD_DATA_DIR", "data", "SQLite file, datasets, checkpoints, adapters",
     STR_OPT(data_dir)},
    {"--models-dir", "AFLORAD_MODELS_DIR", "", "Hugging Face model folders (default DATA/models)",
     STR_OPT(models_dir)},
    {"--web-dir", "AFLORAD_WEB_DIR", "web", "the dashboard's static files", STR_OPT(web_dir)},
    {"--token", "AFLORAD_TOKEN", "", "bearer token required for changes and downloads",
     STR_OPT(token)},
    {"--log-level", "AFLORAD_LOG_LEVEL", "info", "error, warn, info or debug", STR_OPT(log_level)},
    {"--workers", "AFLORAD_WORKERS", "1", "jobs trained at the same time", INT_OPT(workers)},
    {"--threads-per-job", "AFLORAD_THREADS_PER_JOB", "0",
     "engine threads per job (0: cores / workers)", INT_OPT(threads_per_job)},
    {"--predict-cache", "AFLORAD_PREDICT_CACHE", "2",
     "models kept loaded for predictions (each holds its base model's weights)",
     INT_OPT(predict_cache)},
};
#define N_OPTIONS (sizeof options / sizeof *options)

static int set_option(serve_config *c, const serve_option *o, const char *value) {
    char *field = (char *)c + o->offset;
    if (o->type == OPT_STRING) {
        if (strlen(value) >= o->size) {
            fprintf(stderr, "serve: %s: value too long (at most %zu bytes)\n", o->flag,
                    o->size - 1);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || *end || end == value || v < 0 || v > 1024) {
        fprintf(stderr, "serve: %s: '%s' is not a whole number between 0 and 1024\n", o->flag,
                value);
        return -1;
    }
    *(int *)field = (int)v;
    return 0;
}

static void serve_usage(FILE *f) {
    fprintf(f, "usage: aflorad serve [options]   (each option also reads its environment "
               "variable)\n");
    for (size_t i = 0; i < N_OPTIONS; i++)
        fprintf(f, "  %-20s %-26s %s (default: %s)\n", options[i].flag, options[i].env,
                options[i].help, options[i].def[0] ? options[i].def : "none");
    /* read in main, before the libraries load (blas_setup.h) */
    fputs(BLAS_CORE_USAGE, f);
    fputs(SYSMEM_USAGE, f); /* read by each job (job.c) */
}

/* Defaults, then environment, then flags. */
static int load_config(serve_config *c, int argc, char **argv) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *env = getenv(options[i].env);
        if (set_option(c, &options[i], options[i].def) != 0) return -1;
        if (env && *env && set_option(c, &options[i], env) != 0) return -1;
    }
    for (int a = 1; a < argc; a++) {
        const serve_option *o = NULL;
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (strcmp(argv[a], options[i].flag) == 0) o = &options[i];
        if (!o) {
            fprintf(stderr, "serve: unknown option %s\n", argv[a]);
            serve_usage(stderr);
            return -1;
        }
        if (a + 1 >= argc) {
            fprintf(stderr, "serve: %s needs a value\n", argv[a]);
            return -1;
        }
        if (set_option(c, o, argv[++a]) != 0) return -1;
    }
    if (c->workers < 1 || c->predict_cache < 1) {
        fprintf(stderr, "serve: --workers and --predict-cache must be at least 1\n");
        return -1;
    }
    if (!c->models_dir[0] && snprintf(c->models_dir, sizeof c->models_dir, "%s/models",
                                      c->data_dir) >= (int)sizeof c->models_dir) {
        fprintf(stderr, "serve: --data-dir too long\n");
        return -1;
    }
    if (c->threads_per_job == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->threads_per_job = cores / c->workers > 0 ? (int)(cores / c->workers) : 1;
    }
    return 0;
}

/* The dashboard's files: the configured folder, else web/ beside the
 * binary's build folder (build/aflorad -> web/), so `aflorad serve` works
 * from any working directory; without either the API runs without it. */
static const char *find_web_dir(const serve_config *c, char *buf, size_t cap) {
    struct stat st;
    if (stat(c->web_dir, &st) == 0 && S_ISDIR(st.st_mode)) return c->web_dir;
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        if (snprintf(buf, cap, "%s/../web", exe) < (int)cap && stat(buf, &st) == 0 &&
            S_ISDIR(st.st_mode))
            return buf;
    }
    log_warn("web folder '%s' not found: the dashboard is not served (set --web-dir)", c->web_dir);
    return NULL;
}

int serve_main(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        serve_usage(stdout);
        return 0;
    }
    serve_config c;
    if (load_config(&c, argc, argv) != 0) return 2;
    log_level lvl;
    if (log_level_parse(c.log_level, &lvl) != 0) {
        fprintf(stderr, "serve: --log-level must be error, warn, info or debug\n");
        return 2;
    }
    log_set_level(lvl);
    log_info("aflorad starting; BLAS: %s", engine_blas_info());
    log_info("kernels: %s", isa_describe());

    char err[1024] = "", db_path[1200], sub[1200];
    /* One daemon per data directory: a second would share the queue and
     * run the same jobs. Held until the process ends (serve_main returns
     * only to exit). */
    int lock_fd = -1;
    if (make_dirs(c.data_dir, err, sizeof err) != 0 ||
        lock_dir(c.data_dir, "data directory", &lock_fd, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    if (path_join(db_path, sizeof db_path, c.data_dir, "aflorad.db", err, sizeof err) != 0 ||
        path_join(sub, sizeof sub, c.data_dir, "datasets", err, sizeof err) != 0 ||
        make_dir(sub, err, sizeof err) != 0 ||
        path_join(sub, sizeof sub, c.data_dir, "jobs", err, sizeof err) != 0 ||
        make_dir(sub, err, sizeof err) != 0 || job_ensure_demo(c.models_dir, err, sizeof err)) {
        log_error("%s", err);
        return 1;
    }
    store *db = store_open(db_path, err, sizeof err);
    if (!db) {
        log_error("database %s: %s", db_path, err);
        return 1;
    }
    store_requeue_result rq;
    if (store_requeue_running(db, MAX_CRASHES, &rq, err, sizeof err) != 0) {
        log_error("recovering jobs: %s", err);
        store_close(db);
        return 1;
    }
    if (rq.requeued || rq.cancelled || rq.failed)
        log_info("recovered jobs left running by a crash: %d requeued, %d cancelled, %d failed "
                 "after %d crashes",
                 rq.requeued, rq.cancelled, rq.failed, MAX_CRASHES);
    store_close(db);

    /* SIGINT/SIGTERM are blocked before any thread starts (threads inherit
     * the mask) and taken by sigwait below: a signal that comes while the
     * daemon is still starting waits for it instead of killing it, and no
     * worker or HTTP thread is ever interrupted by one. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    workers_config wc = {.db_path = db_path,
                         .data_dir = c.data_dir,
                         .models_dir = c.models_dir,
                         .n_workers = c.workers,
                         .threads_per_job = c.threads_per_job};
    workers *w = workers_start(&wc, err, sizeof err);
    if (!w) {
        log_error("starting workers: %s", err);
        return 1;
    }
    api_config ac;
    api_config_defaults(&ac);
    ac.listen = c.listen;
    ac.data_dir = c.data_dir;
    ac.db_path = db_path;
    ac.models_dir = c.models_dir;
    char web_buf[1200];
    ac.web_dir = find_web_dir(&c, web_buf, sizeof web_buf);
    ac.token = c.token[0] ? c.token : NULL;
    ac.workers = w;
    ac.predict_cache = c.predict_cache;
    api_server *api = api_start(&ac, err, sizeof err);
    if (!api) {
        log_error("starting the API: %s", err);
        workers_stop(w);
        return 1;
    }
    /* listen is host:port; print the port actually bound (it may have been 0) */
    char host[128];
    snprintf(host, sizeof host, "%s", c.listen);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
    log_info("aflorad listening on http://%s:%u (data %s, models %s, %d worker(s) x %d "
             "thread(s))",
             host[0] ? host : "0.0.0.0", api_port(api), c.data_dir, c.models_dir, c.workers,
             c.threads_per_job);
    /* The line tests and scripts wait for, on stdout. */
    printf("listening on %s:%u\n", host[0] ? host : "0.0.0.0", api_port(api));
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {}

    log_info("shutting down: running jobs checkpoint and resume at the next start");
    api_stop(api);
    workers_stop(w);
    log_info("stopped");
    close(lock_fd);
    return 0;
}
