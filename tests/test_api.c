/* test_api.c — the REST API (api/): routing, the error matrix, uploads,
 * jobs, server-sent events, downloads, static files, metrics and the OpenAPI
 * document, driven over real sockets.
 *
 * Each test starts the server on 127.0.0.1 port 0 (the OS picks a free port)
 * with a fresh mkdtemp data directory and no workers (jobs stay queued), and
 * talks to it with the small HTTP/1.1 client below (Connection: close,
 * chunked bodies decoded, or read incrementally for SSE). Job states and
 * events the workers would write are written straight into the store through
 * a second connection, then read back over HTTP. Expected values come from
 * outside the code under test: SHA-256 from the FIPS 180-2 examples and the
 * system's sha256sum, archives checked with the system's tar, parameter
 * counts from transformers' published figure for bert-base, event ids from
 * counting what was written. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/adapter_native.h"
#include "api_internal.h"
#include "model/config.h"
#include "counters.h"
#include "io/hfmodel.h"
#include "job.h"
#include "base/json.h"
#include "log.h"
#include "routes.h"
#include "server.h"
#include "sha256.h"
#include "store.h"
#include "synth.h"
#include "testutil.h"
#include "ustar.h"
#include "version.h"

#define ERRLEN 512
#define NO_SUCH_ID "0123456789abcdef"
#define TOKEN "s3cret-token"
#define IO_TIMEOUT_MS 5000
/* Small limits for the too-large tests (the defaults are MiB). */
#define SMALL_JSON_LIMIT 4096
#define SMALL_UPLOAD_LIMIT 2048

#define TSV_OK "sentence\tlabel\ngood movie\t1\nbad movie\t0\nfine film\t1\n"
#define TSV_RAGGED "sentence\tlabel\ngood movie\t1\nbad movie\n"

/* ---- fixture ------------------------------------------------------------------ */

typedef struct {
    char dir[256];
    char data[300], web[300], models[300], outside[300];
    api_server *srv;
    uint16_t port;
    store *st; /* the test's own connection */
} fixture;

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* A safetensors file of one F32 tensor [rows, cols] whose data is a hole:
 * a full-size file that costs no disk, for code that reads headers only. */
static void write_sparse_safetensors(const char *path, const char *name, long rows, long cols) {
    char header[256];
    long bytes = rows * cols * 4;
    int n = snprintf(header, sizeof header,
                     "{\"%s\":{\"dtype\":\"F32\",\"shape\":[%ld,%ld],\"data_offsets\":[0,%ld]}}",
                     name, rows, cols, bytes);
    while (n % 8) header[n++] = ' ';
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, (size_t)n, f), (size_t)n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(truncate(path, 8 + n + bytes), 0);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static void rm_rf(const char *path) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static void start_server(fixture *f, const char *token, size_t json_limit, size_t upload_limit) {
    api_config c;
    api_config_defaults(&c);
    c.listen = "127.0.0.1:0";
    c.data_dir = f->data;
    c.web_dir = f->web;
    c.models_dir = f->models;
    c.token = token;
    if (json_limit) c.max_json_body = json_limit;
    if (upload_limit) c.max_upload = upload_limit;
    char err[ERRLEN] = "";
    f->srv = api_start(&c, err, sizeof err);
    if (!f->srv) fail_msg("api_start: %s", err);
    f->port = api_port(f->srv);
    assert_true(f->port > 0);
    char db[400];
    snprintf(db, sizeof db, "%s/aflorad.db", f->data);
    f->st = store_open(db, err, sizeof err);
    if (!f->st) fail_msg("store_open: %s", err);
}

static void make_tree(fixture *f) {
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/test_api.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->web, sizeof f->web, "%s/web", f->dir);
    snprintf(f->models, sizeof f->models, "%s/models", f->dir);
    snprintf(f->outside, sizeof f->outside, "%s/outside", f->dir);
    char p[400];
    assert_int_equal(mkdir(f->web, 0755), 0);
    assert_int_equal(mkdir(f->models, 0755), 0);
    assert_int_equal(mkdir(f->outside, 0755), 0);
    snprintf(p, sizeof p, "%s/index.html", f->web);
    write_file(p, "<!doctype html><title>aflorad</title>");
    snprintf(p, sizeof p, "%s/app.js", f->web);
    write_file(p, "console.log(1);");
    snprintf(p, sizeof p, "%s/assets", f->web);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/assets/style.css", f->web);
    write_file(p, "body{}");
    snprintf(p, sizeof p, "%s/.hidden", f->web);
    write_file(p, "hidden");
    snprintf(p, sizeof p, "%s/secret.txt", f->outside);
    write_file(p, "SECRET");
    char link[400];
    snprintf(link, sizeof link, "%s/escape.txt", f->web);
    assert_int_equal(symlink(p, link), 0);
    /* Model folders: bert-base sizes with a tokenizer and a weights file the
     * probe accepts (a sparse file: its header is all that is read), the
     * same without a tokenizer, and configs the engine refuses. */
    static const char bert_base[] =
        "{\"model_type\":\"bert\",\"vocab_size\":30522,\"hidden_size\":768,"
        "\"num_hidden_layers\":12,\"num_attention_heads\":12,"
        "\"intermediate_size\":3072,\"max_position_embeddings\":512,"
        "\"type_vocab_size\":2,\"hidden_act\":\"gelu\"}";
    const struct {
        const char *name, *config;
        bool tokenizer, weights;
    } folders[] = {
        {"bert-base", bert_base, true, true},
        {"no-tokenizer", bert_base, false, true},
        {"broken",
         "{\"model_type\":\"bert\",\"vocab_size\":100,\"hidden_size\":8,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":16,\"hidden_act\":\"gelu_new\"}",
         true, true},
        {"electra",
         "{\"model_type\":\"electra\",\"vocab_size\":30522,\"hidden_size\":768,"
         "\"num_hidden_layers\":12,\"num_attention_heads\":12,"
         "\"intermediate_size\":3072,\"hidden_act\":\"gelu\"}",
         true, true},
        {"llama",
         "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
         "\"vocab_size\":32000,\"hidden_size\":4096,\"num_hidden_layers\":32,"
         "\"num_attention_heads\":32,\"intermediate_size\":11008,"
         "\"hidden_act\":\"silu\"}",
         true, true},
    };
    for (size_t i = 0; i < sizeof folders / sizeof *folders; i++) {
        snprintf(p, sizeof p, "%s/%s", f->models, folders[i].name);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof p, "%s/%s/config.json", f->models, folders[i].name);
        write_file(p, folders[i].config);
        if (folders[i].tokenizer) {
            snprintf(p, sizeof p, "%s/%s/vocab.txt", f->models, folders[i].name);
            write_file(p, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n");
        }
        if (folders[i].weights) {
            snprintf(p, sizeof p, "%s/%s/model.safetensors", f->models, folders[i].name);
            write_sparse_safetensors(p, "bert.embeddings.word_embeddings.weight", 30522, 768);
        }
    }
}

static int setup_with(void **state, const char *token, size_t json_limit, size_t upload_limit) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    make_tree(f);
    start_server(f, token, json_limit, upload_limit);
    *state = f;
    return 0;
}

static int setup(void **state) { return setup_with(state, NULL, 0, 0); }

static int setup_token(void **state) { return setup_with(state, TOKEN, 0, 0); }

static int setup_small(void **state) {
    return setup_with(state, NULL, SMALL_JSON_LIMIT, SMALL_UPLOAD_LIMIT);
}

static int teardown(void **state) {
    fixture *f = *state;
    api_stop(f->srv);
    store_close(f->st);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* ---- a minimal HTTP/1.1 client --------------------------------------------------- */

typedef struct {
    int status;
    char head[8192]; /* status line + headers */
    char *body;
    size_t body_len;
    cJSON *json; /* body parsed, when it is JSON */
} http_resp;

static void resp_free(http_resp *r) {
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

static int connect_to(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Send everything; false when the peer closed first (EPIPE/ECONNRESET). */
static bool send_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

static void send_request_head(int fd, const char *method, const char *path, const char *headers,
                              long content_length) {
    char req[8192];
    int n =
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s",
                 method, path, headers ? headers : "");
    if (content_length >= 0)
        n += snprintf(req + n, sizeof req - (size_t)n, "Content-Length: %ld\r\n", content_length);
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    assert_true(send_all(fd, req, (size_t)n));
}

/* Read until EOF (or timeout) into a malloc'd buffer. */
static char *read_all(int fd, size_t *len) {
    size_t cap = 16384, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, IO_TIMEOUT_MS);
        if (pr <= 0) break;
        if (n + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static const char *header_in(const char *head, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line && line[2];
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (*v == ' ') v++;
            const char *end = strstr(v, "\r\n");
            size_t len = end ? (size_t)(end - v) : strlen(v);
            if (len >= cap) len = cap - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
    }
    return NULL;
}

/* Decode a chunked body in place; returns its length. */
static size_t dechunk(char *b, size_t len) {
    size_t r = 0, w = 0;
    while (r < len) {
        char *end;
        unsigned long n = strtoul(b + r, &end, 16);
        char *crlf = strstr(b + r, "\r\n");
        if (!crlf || n == 0) break;
        (void)end;
        r = (size_t)(crlf - b) + 2;
        if (r + n > len) n = len - r;
        memmove(b + w, b + r, n);
        w += n;
        r += n + 2;
    }
    b[w] = '\0';
    return w;
}

static void parse_response(char *raw, size_t len, http_resp *out) {
    memset(out, 0, sizeof *out);
    char *sep = strstr(raw, "\r\n\r\n");
    if (!sep) {
        free(raw);
        out->status = -1;
        return;
    }
    size_t hl = (size_t)(sep - raw) + 2;
    assert_true(hl < sizeof out->head);
    memcpy(out->head, raw, hl);
    out->head[hl] = '\0';
    out->status = atoi(raw + 9);
    size_t bl = len - hl - 2;
    memmove(raw, sep + 4, bl);
    raw[bl] = '\0';
    char te[64];
    if (header_in(out->head, "Transfer-Encoding", te, sizeof te) && strcasecmp(te, "chunked") == 0)
        bl = dechunk(raw, bl);
    out->body = raw;
    out->body_len = bl;
    char ct[128];
    if (header_in(out->head, "Content-Type", ct, sizeof ct) && strstr(ct, "json"))
        out->json = cJSON_ParseWithLength(raw, bl);
}

static void http_raw(uint16_t port, const char *method, const char *path, const char *headers,
                     const void *body, size_t body_len, http_resp *out) {
    int fd = connect_to(port);
    send_request_head(fd, method, path, headers, body ? (long)body_len : -1);
    if (body) send_all(fd, body, body_len); /* the server may answer early and close */
    size_t len;
    char *raw = read_all(fd, &len);
    close(fd);
    parse_response(raw, len, out);
}

static void http_get(fixture *f, const char *path, http_resp *out) {
    http_raw(f->port, "GET", path, NULL, NULL, 0, out);
}

static void http_json(fixture *f, const char *method, const char *path, const char *json,
                      http_resp *out) {
    http_raw(f->port, method, path, "Content-Type: application/json\r\n", json,
             json ? strlen(json) : 0, out);
}

static const char *hdr(const http_resp *r, const char *name) {
    static char buf[512];
    return header_in(r->head, name, buf, sizeof buf);
}

static const char *err_code(const http_resp *r) {
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "code"));
}

static const char *err_field(const http_resp *r) {
    return cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "field"));
}

static const char *err_message(const http_resp *r) {
    const char *m =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message"));
    return m ? m : "";
}

/* An error reply: status, JSON {"error":{code,message}}, the code. */
static void expect_error(const http_resp *r, int status, const char *code) {
    if (r->status != status || !r->json || !err_code(r) || strcmp(err_code(r), code) != 0)
        fail_msg("expected %d %s, got %d: %.*s", status, code, r->status, (int)r->body_len,
                 r->body ? r->body : "");
    assert_true(strlen(err_message(r)) > 10); /* a message a person can act on */
}

static const char *json_str(const cJSON *o, const char *key) {
    return cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
}

static double json_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* Upload a TSV; returns the status and the new id (or ""). */
static int upload(fixture *f, const char *query, const char *text, char id[STORE_ID_SIZE],
                  http_resp *out) {
    char path[256];
    snprintf(path, sizeof path, "/datasets%s", query);
    http_raw(f->port, "POST", path, "Content-Type: text/tab-separated-values\r\n", text,
             strlen(text), out);
    id[0] = '\0';
    if (out->status == 201) snprintf(id, STORE_ID_SIZE, "%s", json_str(out->json, "id"));
    return out->status;
}

static void upload_ok(fixture *f, char id[STORE_ID_SIZE]) {
    http_resp r;
    if (upload(f, "?name=train.tsv", TSV_OK, id, &r) != 201)
        fail_msg("upload: %d %s", r.status, r.body);
    resp_free(&r);
}

/* POST /jobs with a spec for the bert-base folder and dataset ds. */
static void create_job(fixture *f, const char *ds, char id[STORE_ID_SIZE]) {
    char spec[256];
    snprintf(spec, sizeof spec, "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"%s\"}}", ds);
    http_resp r;
    http_json(f, "POST", "/jobs", spec, &r);
    if (r.status != 201) fail_msg("POST /jobs: %d %s", r.status, r.body);
    snprintf(id, STORE_ID_SIZE, "%s", json_str(r.json, "id"));
    resp_free(&r);
}

/* What a worker would do: claim the job (status event "running"). */
static void claim(fixture *f, const char *id) {
    store_job j;
    char err[ERRLEN];
    assert_int_equal(store_claim_next_job(f->st, &j, err, sizeof err), 1);
    assert_string_equal(j.id, id);
    store_job_clear(&j);
}

static void add_event(fixture *f, const char *id, store_event_type t, const char *payload) {
    char err[ERRLEN];
    if (store_event_append(f->st, id, t, payload, NULL, err, sizeof err) != 0)
        fail_msg("store_event_append: %s", err);
}

static void finish(fixture *f, const char *id, store_job_status st) {
    char err[ERRLEN];
    if (store_job_finish(f->st, id, st, NULL, st == STORE_JOB_FAILED ? "boom" : NULL, err,
                         sizeof err) != 0)
        fail_msg("store_job_finish: %s", err);
}

static int count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

/* ---- sha256 and ustar ------------------------------------------------------------- */

static void sha_hex(const void *data, size_t len, char out[SHA256_HEX_SIZE]) {
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, data, len);
    sha256_final_hex(&c, out);
}

static void test_sha256_vectors(void **state) {
    (void)state;
    char hex[SHA256_HEX_SIZE];
    /* FIPS 180-2 appendix B and the empty message. */
    sha_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(m2, strlen(m2), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* One million 'a', fed in uneven pieces: exercises the partial-block path. */
    char *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    sha256_ctx c;
    sha256_init(&c);
    size_t off = 0, piece = 1;
    while (off < 1000000) {
        size_t n = piece < 1000000 - off ? piece : 1000000 - off;
        sha256_update(&c, a + off, n);
        off += n;
        piece = piece * 3 % 1021 + 1;
    }
    sha256_final_hex(&c, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
    /* 55, 56 and 64 bytes: the padding boundaries, against sha256sum. */
    static const size_t lens[] = {55, 56, 63, 64, 65};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char cmd[128], want[80];
        snprintf(cmd, sizeof cmd, "head -c %zu /dev/zero | tr '\\0' x | sha256sum", lens[i]);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(want, sizeof want, p));
        pclose(p);
        want[64] = '\0';
        char buf[80];
        memset(buf, 'x', lens[i]);
        sha_hex(buf, lens[i], hex);
        assert_string_equal(hex, want);
    }
}

static void test_ustar_roundtrip(void **state) {
    fixture *f = *state;
    char src[400], tarp[400], out[400], cmd[1400], p[500];
    snprintf(src, sizeof src, "%s/peft", f->dir);
    snprintf(tarp, sizeof tarp, "%s/a.tar", f->dir);
    snprintf(out, sizeof out, "%s/extract", f->dir);
    assert_int_equal(mkdir(src, 0755), 0);
    assert_int_equal(mkdir(out, 0755), 0);
    snprintf(p, sizeof p, "%s/b.json", src);
    write_file(p, "{\"r\": 4}");
    /* 1000 bytes: not a multiple of the 512-byte block. */
    char big[1001];
    for (int i = 0; i < 1000; i++) big[i] = (char)('a' + i % 26);
    big[1000] = '\0';
    snprintf(p, sizeof p, "%s/a.bin", src);
    write_file(p, big);
    snprintf(p, sizeof p, "%s/sub", src);
    assert_int_equal(mkdir(p, 0755), 0); /* not archived */
    int fd = open(tarp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    char err[ERRLEN];
    assert_int_equal(ustar_write_dir(fd, src, "peft/", err, sizeof err), 0);
    close(fd);
    struct stat st;
    assert_int_equal(stat(tarp, &st), 0);
    /* dir header + (hdr + 1 block) + (hdr + 2 blocks) + 2 end blocks */
    assert_int_equal(st.st_size, 512 * (1 + 2 + 3 + 2));
    /* GNU tar lists the members in name order and extracts identical bytes. */
    snprintf(cmd, sizeof cmd, "tar -tf '%s'", tarp);
    FILE *pp = popen(cmd, "r");
    assert_non_null(pp);
    char listing[256] = "";
    size_t got = fread(listing, 1, sizeof listing - 1, pp);
    listing[got] = '\0';
    assert_int_equal(pclose(pp), 0);
    assert_string_equal(listing, "peft/\npeft/a.bin\npeft/b.json\n");
    snprintf(cmd, sizeof cmd, "tar -xf '%s' -C '%s'", tarp, out);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/peft/a.bin", out);
    char *back = read_file(p, NULL);
    assert_non_null(back);
    assert_string_equal(back, big);
    free(back);
    /* A name longer than the 100-byte field is refused, not truncated. */
    uint8_t hdr[USTAR_BLOCK];
    char longname[120];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(ustar_header(hdr, longname, '0', 0644, 1, 0, err, sizeof err), -1);
}

/* ---- routing and the error matrix ---------------------------------------------- */

static void test_routing_errors(void **state) {
    fixture *f = *state;
    http_resp r;

    http_get(f, "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_str(r.json, "status"), "ok");
    assert_string_equal(json_str(r.json, "version"), AFLORAD_VERSION);
    resp_free(&r);

    http_get(f, "/nope/nothing", &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);

    http_raw(f->port, "PUT", "/jobs", NULL, NULL, 0, &r);
    expect_error(&r, 405, "method_not_allowed");
    assert_non_null(hdr(&r, "Allow"));
    assert_non_null(strstr(hdr(&r, "Allow"), "POST"));
    assert_non_null(strstr(hdr(&r, "Allow"), "GET"));
    resp_free(&r);

    /* ids: malformed -> 400 before the store; well-formed unknown -> 404 */
    http_get(f, "/jobs/xyz", &r);
    expect_error(&r, 400, "invalid_id");
    assert_string_equal(err_field(&r), "id");
    resp_free(&r);
    http_get(f, "/jobs/0123456789ABCDEF", &r); /* upper case is not an id */
    expect_error(&r, 400, "invalid_id");
    resp_free(&r);
    http_get(f, "/jobs/" NO_SUCH_ID, &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
    http_get(f, "/datasets/" NO_SUCH_ID, &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
    http_get(f, "/jobs/" NO_SUCH_ID "/events", &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
    http_raw(f->port, "DELETE", "/datasets/" NO_SUCH_ID, NULL, NULL, 0, &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
    http_raw(f->port, "POST", "/jobs/" NO_SUCH_ID "/cancel", NULL, NULL, 0, &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);

    /* JSON bodies */
    http_json(f, "POST", "/jobs", "{\"model\": \"demo\",", &r);
    expect_error(&r, 400, "invalid_json");
    resp_free(&r);
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\",\"epochz\":3}", &r);
    expect_error(&r, 400, "unknown_field");
    assert_string_equal(err_field(&r), "epochz");
    resp_free(&r);
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\",\"epochs\":\"3\"}", &r);
    expect_error(&r, 400, "wrong_type");
    assert_string_equal(err_field(&r), "epochs");
    resp_free(&r);
    http_json(f, "POST", "/jobs", "", &r);
    expect_error(&r, 400, "invalid_json");
    resp_free(&r);
    /* 40 levels of nesting: refused by the API's depth limit (32). */
    char deep[128] = "";
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    for (int i = 0; i < 40; i++) strcat(deep, "]");
    http_json(f, "POST", "/jobs", deep, &r);
    expect_error(&r, 400, "invalid_json");
    assert_non_null(strstr(err_message(&r), "32"));
    resp_free(&r);

    /* Content types */
    http_raw(f->port, "POST", "/jobs", "Content-Type: application/x-www-form-urlencoded\r\n",
             "model=demo", 10, &r);
    expect_error(&r, 415, "unsupported_media_type");
    resp_free(&r);
    http_raw(f->port, "POST", "/datasets?format=tsv", "Content-Type: multipart/form-data; b=x\r\n",
             "x", 1, &r);
    expect_error(&r, 415, "unsupported_media_type");
    resp_free(&r);

    /* Prediction: the body shape is checked first, then the job. */
    http_json(f, "POST", "/jobs/" NO_SUCH_ID "/predict", "{\"texts\":[\"a\"]}", &r);
    expect_error(&r, 400, "invalid_value");
    resp_free(&r);
    http_json(f, "POST", "/jobs/" NO_SUCH_ID "/predict", "{\"inputs\":[{\"text\":1}]}", &r);
    expect_error(&r, 400, "wrong_type");
    resp_free(&r);
    http_json(f, "POST", "/jobs/" NO_SUCH_ID "/predict", "{\"inputs\":[{\"text\":\"a\"}]}", &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
}

static void test_too_large(void **state) {
    fixture *f = *state;
    http_resp r;
    /* Declared too large: refused from the headers, before any body byte. */
    int fd = connect_to(f->port);
    send_request_head(fd, "POST", "/jobs", "Content-Type: application/json\r\n",
                      SMALL_JSON_LIMIT + 1);
    size_t len;
    char *raw = read_all(fd, &len);
    close(fd);
    parse_response(raw, len, &r);
    expect_error(&r, 413, "too_large");
    resp_free(&r);

    fd = connect_to(f->port);
    send_request_head(fd, "POST", "/datasets?format=tsv", NULL, SMALL_UPLOAD_LIMIT + 1);
    raw = read_all(fd, &len);
    close(fd);
    parse_response(raw, len, &r);
    expect_error(&r, 413, "too_large");
    resp_free(&r);

    /* Chunked, so the size is only known while streaming: the rest of the
     * body is read and dropped, then 413 (MHD cannot answer mid-body), and
     * the partial upload does not stay on disk. */
    for (int kind = 0; kind < 2; kind++) {
        fd = connect_to(f->port);
        send_request_head(fd, "POST", kind ? "/datasets?format=tsv" : "/jobs",
                          kind ? "Transfer-Encoding: chunked\r\n"
                               : "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n",
                          -1);
        char chunk[600];
        int n = snprintf(chunk, sizeof chunk, "200\r\n");
        memset(chunk + n, '[', 512);
        memcpy(chunk + n + 512, "\r\n", 2);
        for (int i = 0; i < 3 * SMALL_JSON_LIMIT / 512; i++)
            assert_true(send_all(fd, chunk, (size_t)n + 514));
        assert_true(send_all(fd, "0\r\n\r\n", 5));
        raw = read_all(fd, &len);
        close(fd);
        parse_response(raw, len, &r);
        expect_error(&r, 413, "too_large");
        resp_free(&r);
    }
    char dsdir[400];
    snprintf(dsdir, sizeof dsdir, "%s/datasets", f->data);
    assert_int_equal(count_atomic_temps(dsdir), 0);
}

static void test_token(void **state) {
    fixture *f = *state;
    http_resp r;
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\"}", &r);
    expect_error(&r, 401, "unauthorized");
    assert_non_null(strstr(err_message(&r), "Authorization: Bearer"));
    assert_non_null(hdr(&r, "WWW-Authenticate"));
    resp_free(&r);
    http_raw(f->port, "POST", "/jobs",
             "Content-Type: application/json\r\nAuthorization: Bearer wrong\r\n",
             "{\"model\":\"demo\"}", 16, &r);
    expect_error(&r, 401, "unauthorized");
    resp_free(&r);
    /* A prefix of the token is not the token. */
    http_raw(f->port, "POST", "/jobs",
             "Content-Type: application/json\r\nAuthorization: Bearer s3cret\r\n",
             "{\"model\":\"demo\"}", 16, &r);
    expect_error(&r, 401, "unauthorized");
    resp_free(&r);
    http_raw(f->port, "POST", "/jobs",
             "Content-Type: application/json\r\nAuthorization: Basic "
             "eDp5\r\n",
             "{}", 2, &r);
    expect_error(&r, 401, "unauthorized");
    resp_free(&r);
    /* Uploads, deletes, cancels and downloads are guarded too. */
    http_raw(f->port, "POST", "/datasets?format=tsv", NULL, TSV_OK, strlen(TSV_OK), &r);
    expect_error(&r, 401, "unauthorized");
    resp_free(&r);
    http_raw(f->port, "DELETE", "/datasets/" NO_SUCH_ID, NULL, NULL, 0, &r);
    expect_error(&r, 401, "unauthorized");
    resp_free(&r);
    http_get(f, "/jobs/" NO_SUCH_ID "/adapter/peft.tar", &r);
    expect_error(&r, 401, "unauthorized");
    resp_free(&r);
    /* With the token: past authentication (the spec's own error shows it). */
    http_raw(f->port, "POST", "/jobs",
             "Content-Type: application/json\r\nAuthorization: Bearer " TOKEN "\r\n",
             "{\"modle\":1}", 11, &r);
    expect_error(&r, 400, "unknown_field");
    resp_free(&r);
    http_raw(f->port, "POST", "/datasets?name=t.tsv", "Authorization: Bearer " TOKEN "\r\n", TSV_OK,
             strlen(TSV_OK), &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    /* Read-only JSON stays open. */
    http_get(f, "/jobs", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http_get(f, "/datasets", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* ---- datasets ------------------------------------------------------------------ */

static void test_dataset_upload(void **state) {
    fixture *f = *state;
    http_resp r;
    char id[STORE_ID_SIZE];
    assert_int_equal(upload(f, "?name=train.tsv", TSV_OK, id, &r), 201);
    assert_true(strlen(id) == 16);
    char loc[64];
    snprintf(loc, sizeof loc, "/datasets/%s", id);
    assert_string_equal(hdr(&r, "Location"), loc);
    assert_string_equal(json_str(r.json, "name"), "train.tsv");
    assert_string_equal(json_str(r.json, "format"), "tsv");
    assert_int_equal((int)json_num(r.json, "rows"), 3);
    assert_int_equal((int)json_num(r.json, "bytes"), (int)strlen(TSV_OK));
    /* The checksum, recomputed by the system's sha256sum from the stored file. */
    char path[512], cmd[600], want[80];
    snprintf(path, sizeof path, "%s/datasets/%s.tsv", f->data, id);
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(want, sizeof want, p));
    pclose(p);
    want[64] = '\0';
    assert_string_equal(json_str(r.json, "sha256"), want);
    size_t len;
    char *stored = read_file(path, &len);
    assert_non_null(stored);
    assert_string_equal(stored, TSV_OK);
    free(stored);
    resp_free(&r);

    http_get(f, loc, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_str(r.json, "sha256"), want);
    resp_free(&r);

    /* A ragged row: 400 naming the user's file name and the line. */
    assert_int_equal(upload(f, "?name=bad.tsv", TSV_RAGGED, id, &r), 400);
    expect_error(&r, 400, "invalid_dataset");
    assert_non_null(strstr(err_message(&r), "bad.tsv:3"));
    assert_null(strstr(err_message(&r), ".tmp-"));
    resp_free(&r);
    /* JSONL: a bad line is reported by number. */
    const char *jl = "{\"text\":\"a\",\"label\":1}\n{\"text\":\"b\",\"label\":0}\n{\"text\":\n";
    http_raw(f->port, "POST", "/datasets?format=jsonl&name=d.jsonl", NULL, jl, strlen(jl), &r);
    expect_error(&r, 400, "invalid_dataset");
    assert_non_null(strstr(err_message(&r), "d.jsonl:3"));
    resp_free(&r);
    /* JSONL by Content-Type, default key = first string key. */
    const char *jl2 = "{\"sentence\":\"a\",\"label\":1}\n\n{\"sentence\":\"b\",\"label\":0}\n";
    http_raw(f->port, "POST", "/datasets", "Content-Type: application/x-ndjson\r\n", jl2,
             strlen(jl2), &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(json_str(r.json, "format"), "jsonl");
    assert_string_equal(json_str(r.json, "name"), "upload.jsonl");
    assert_int_equal((int)json_num(r.json, "rows"), 2);
    resp_free(&r);
    /* A named column that is missing. */
    assert_int_equal(upload(f, "?name=t.tsv&text_field=text", TSV_OK, id, &r), 400);
    expect_error(&r, 400, "invalid_dataset");
    resp_free(&r);
    /* Format unknown; bad parameters. */
    http_raw(f->port, "POST", "/datasets", "Content-Type: application/octet-stream\r\n", TSV_OK,
             strlen(TSV_OK), &r);
    expect_error(&r, 400, "invalid_parameter");
    assert_string_equal(err_field(&r), "format");
    resp_free(&r);
    assert_int_equal(upload(f, "?name=a%2Fb.tsv", TSV_OK, id, &r), 400);
    expect_error(&r, 400, "invalid_parameter");
    assert_string_equal(err_field(&r), "name");
    resp_free(&r);
    assert_int_equal(upload(f, "?format=xml", TSV_OK, id, &r), 400);
    assert_string_equal(err_field(&r), "format");
    resp_free(&r);
    assert_int_equal(upload(f, "?format=tsv", "", id, &r), 400);
    expect_error(&r, 400, "invalid_dataset");
    resp_free(&r);

    /* No temp file survives, and only the 2 good uploads are listed. */
    char dsdir[400];
    snprintf(dsdir, sizeof dsdir, "%s/datasets", f->data);
    assert_int_equal(count_atomic_temps(dsdir), 0);
    http_get(f, "/datasets", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "datasets")), 2);
    resp_free(&r);
    http_get(f, "/datasets?limit=0", &r);
    expect_error(&r, 400, "invalid_parameter");
    assert_string_equal(err_field(&r), "limit");
    resp_free(&r);

    /* Uploads cut short by a crash leave temporaries (and, from older
     * versions, .upload-*): the next start removes them, and only them. */
    api_stop(f->srv);
    store_close(f->st);
    char stale[500];
    snprintf(stale, sizeof stale, "%s/0123456789abcdef.tsv.tmp-4242-7", dsdir);
    write_file(stale, "half an upl");
    snprintf(stale, sizeof stale, "%s/.upload-Ab12Cd", dsdir);
    write_file(stale, "half an upl");
    assert_int_equal(count_entries(dsdir, ""), 2 + 2 + 2); /* ".", "..", 2 datasets */
    start_server(f, NULL, 0, 0);
    assert_int_equal(count_entries(dsdir, ""), 2 + 2);
    assert_int_equal(count_atomic_temps(dsdir), 0);
    assert_int_equal(count_entries(dsdir, ".upload-"), 0);
}

/* ---- jobs ---------------------------------------------------------------------- */

static void test_jobs(void **state) {
    fixture *f = *state;
    http_resp r;
    char ds[STORE_ID_SIZE], j1[STORE_ID_SIZE], j2[STORE_ID_SIZE];
    upload_ok(f, ds);

    char spec[256];
    snprintf(
        spec, sizeof spec,
        "{\"model\":\"bert-base\",\"method\":\"lora\",\"epochs\":2,\"dataset\":{\"train\":\"%s\"}}",
        ds);
    http_json(f, "POST", "/jobs", spec, &r);
    if (r.status != 201) fail_msg("%d %s", r.status, r.body);
    snprintf(j1, sizeof j1, "%s", json_str(r.json, "id"));
    char loc[64];
    snprintf(loc, sizeof loc, "/jobs/%s", j1);
    assert_string_equal(hdr(&r, "Location"), loc);
    assert_string_equal(json_str(r.json, "status"), "queued");
    assert_string_equal(json_str(r.json, "train_dataset_id"), ds);
    /* The stored spec is the normalised one: defaults written out. */
    const cJSON *sp = cJSON_GetObjectItem(r.json, "spec");
    assert_string_equal(json_str(sp, "method"), "lora");
    assert_int_equal((int)json_num(sp, "rank"), 8); /* lora's default rank */
    assert_int_equal((int)json_num(sp, "epochs"), 2);
    assert_non_null(cJSON_GetObjectItem(sp, "learning_rate"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "progress"), "loss")));
    resp_free(&r);
    create_job(f, ds, j2);

    /* The demo model needs no dataset (it trains on its built-in one). */
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\"}", &r);
    if (r.status != 201) fail_msg("demo: %d %s", r.status, r.body);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "train_dataset_id")));
    assert_string_equal(json_str(cJSON_GetObjectItem(r.json, "spec"), "model"), "demo");
    char demo[STORE_ID_SIZE];
    snprintf(demo, sizeof demo, "%s", json_str(r.json, "id"));
    resp_free(&r);
    snprintf(loc, sizeof loc, "/jobs/%s/cancel", demo);
    http_raw(f->port, "POST", loc, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\",\"dataset\":{\"train\":\"x.tsv\"}}", &r);
    expect_error(&r, 400, "conflict");
    assert_string_equal(err_field(&r), "dataset");
    resp_free(&r);

    /* Newest first; filter; pagination. */
    http_get(f, "/jobs?status=queued", &r);
    assert_int_equal(r.status, 200);
    const cJSON *jobs = cJSON_GetObjectItem(r.json, "jobs");
    assert_int_equal(cJSON_GetArraySize(jobs), 2);
    assert_string_equal(json_str(cJSON_GetArrayItem(jobs, 0), "id"), j2);
    assert_string_equal(json_str(cJSON_GetArrayItem(jobs, 1), "id"), j1);
    assert_int_equal((int)json_num(r.json, "total"), 2);
    resp_free(&r);
    http_get(f, "/jobs", &r);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 3);
    assert_int_equal((int)json_num(r.json, "total"), 3);
    assert_string_equal(json_str(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "jobs"), 0), "id"),
                        demo);
    resp_free(&r);
    http_get(f, "/jobs?status=queued&limit=1&offset=1", &r);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 1);
    assert_string_equal(json_str(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "jobs"), 0), "id"),
                        j1);
    resp_free(&r);
    http_get(f, "/jobs?status=running", &r);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 0);
    assert_int_equal((int)json_num(r.json, "total"), 0);
    resp_free(&r);
    http_get(f, "/jobs?status=sleeping", &r);
    expect_error(&r, 400, "invalid_parameter");
    assert_string_equal(err_field(&r), "status");
    resp_free(&r);

    /* API-only checks, each naming the field. */
    http_json(f, "POST", "/jobs",
              "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"" NO_SUCH_ID "\"}}", &r);
    expect_error(&r, 400, "unknown_dataset");
    assert_string_equal(err_field(&r), "dataset.train");
    resp_free(&r);
    http_json(f, "POST", "/jobs",
              "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"/etc/passwd.tsv\"}}", &r);
    expect_error(&r, 400, "invalid_value");
    assert_string_equal(err_field(&r), "dataset.train");
    resp_free(&r);
    snprintf(spec, sizeof spec,
             "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"%s\",\"eval\":\"" NO_SUCH_ID "\"}}",
             ds);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "unknown_dataset");
    assert_string_equal(err_field(&r), "dataset.eval");
    resp_free(&r);
    snprintf(spec, sizeof spec, "{\"model\":\"no-such-model\",\"dataset\":{\"train\":\"%s\"}}", ds);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "unknown_model");
    assert_string_equal(err_field(&r), "model");
    resp_free(&r);
    snprintf(spec, sizeof spec,
             "{\"model\":\"../models/bert-base\",\"dataset\":{\"train\":\"%s\"}}", ds);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "unknown_model");
    resp_free(&r);
    /* Folders the probe refuses: 400 naming model, with the probe's reason. */
    const struct {
        const char *model, *why;
    } unusable[] = {
        {"broken", "gelu_new"},
        {"electra", "unsupported architecture model_type \"electra\" (supported: "
                    "BertForSequenceClassification (bert), RobertaForSequenceClassification"},
        {"no-tokenizer", "no tokenizer files"},
    };
    for (size_t i = 0; i < sizeof unusable / sizeof *unusable; i++) {
        snprintf(spec, sizeof spec, "{\"model\":\"%s\",\"dataset\":{\"train\":\"%s\"}}",
                 unusable[i].model, ds);
        http_json(f, "POST", "/jobs", spec, &r);
        expect_error(&r, 400, "unusable_model");
        assert_string_equal(err_field(&r), "model");
        if (!strstr(err_message(&r), unusable[i].why))
            fail_msg("%s: %s", unusable[i].model, err_message(&r));
        resp_free(&r);
    }
    /* usable, but for causal_lm only: the error names task and lists the
     * model's tasks */
    snprintf(spec, sizeof spec, "{\"model\":\"llama\",\"dataset\":{\"train\":\"%s\"}}", ds);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "unsupported_task");
    assert_string_equal(err_field(&r), "task");
    if (!strstr(err_message(&r), "cannot train task classification; its tasks: causal_lm"))
        fail_msg("llama: %s", err_message(&r));
    resp_free(&r);
    snprintf(spec, sizeof spec,
             "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"%s\",\"text_fields\":[\"text\"]}}",
             ds);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "invalid_dataset");
    assert_string_equal(err_field(&r), "dataset.text_fields[0]");
    assert_non_null(strstr(err_message(&r), "text"));
    resp_free(&r);
    /* A dataset that does not fit names the spec field at fault, not the
     * dataset (the form shows the error beside that field). */
    const struct {
        const char *dataset, *field, *why;
    } misfits[] = {
        {"\"label_field\":\"lbl\"", "dataset.label_field", "no column named 'lbl'"},
        {"\"label_field\":7", "dataset.label_field", "out of range"},
        {"\"labels\":[\"a\",\"b\"]", "dataset.labels", "not one of the declared labels"},
        {"\"text_fields\":[\"sentence\",\"nope\"]", "dataset.text_fields[1]", "'nope'"},
    };
    for (size_t i = 0; i < sizeof misfits / sizeof *misfits; i++) {
        snprintf(spec, sizeof spec, "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"%s\",%s}}",
                 ds, misfits[i].dataset);
        http_json(f, "POST", "/jobs", spec, &r);
        expect_error(&r, 400, "invalid_dataset");
        assert_string_equal(err_field(&r), misfits[i].field);
        if (!strstr(err_message(&r), misfits[i].why))
            fail_msg("%s: %s", misfits[i].field, err_message(&r));
        resp_free(&r);
    }
    /* A file that is broken as a whole still names the dataset. */
    snprintf(spec, sizeof spec,
             "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"%s\",\"format\":\"jsonl\"}}", ds);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "invalid_dataset");
    assert_string_equal(err_field(&r), "dataset.train");
    resp_free(&r);
    snprintf(spec, sizeof spec,
             "{\"model\":\"bert-base\",\"init_adapter\":\"/tmp/"
             "a.safetensors\",\"dataset\":{\"train\":\"%s\"}}",
             ds);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "invalid_value");
    assert_string_equal(err_field(&r), "init_adapter");
    resp_free(&r);

    /* The dataset is in use while jobs are queued. */
    snprintf(loc, sizeof loc, "/datasets/%s", ds);
    http_raw(f->port, "DELETE", loc, NULL, NULL, 0, &r);
    expect_error(&r, 409, "conflict");
    resp_free(&r);

    /* Cancel: queued -> cancelled (200); again -> 409. */
    snprintf(loc, sizeof loc, "/jobs/%s/cancel", j1);
    http_raw(f->port, "POST", loc, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_str(r.json, "status"), "cancelled");
    resp_free(&r);
    http_raw(f->port, "POST", loc, NULL, NULL, 0, &r);
    expect_error(&r, 409, "conflict");
    assert_non_null(strstr(err_message(&r), "cancelled"));
    resp_free(&r);
    /* Running -> cancel requested (202), status stays running. */
    claim(f, j2);
    snprintf(loc, sizeof loc, "/jobs/%s/cancel", j2);
    http_raw(f->port, "POST", loc, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(json_str(r.json, "status"), "running");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "cancel_requested")));
    resp_free(&r);
    finish(f, j2, STORE_JOB_CANCELLED);

    /* Nothing active uses the dataset now: it and its file go. */
    snprintf(loc, sizeof loc, "/datasets/%s", ds);
    http_raw(f->port, "DELETE", loc, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 204);
    resp_free(&r);
    char path[512];
    snprintf(path, sizeof path, "%s/datasets/%s.tsv", f->data, ds);
    assert_int_equal(access(path, F_OK), -1);
    http_get(f, loc, &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
}

/* GET /jobs/{id} shows what the worker reported, FLOPs beyond 2^53 exactly. */
static void test_job_progress(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE], err[ERRLEN];
    upload_ok(f, ds);
    create_job(f, ds, id);
    claim(f, id);
    store_progress p = {.step = 7,
                        .total_steps = 40,
                        .epoch = 1,
                        .loss = 0.5,
                        .flops_forward = 9007199254740993LL, /* 2^53 + 1 */
                        .flops_backward_input = 2,
                        .flops_backward_weight = 3,
                        .trainable_now = 1000,
                        .trainable_avg = 1500.5,
                        .frozen = 3,
                        .freezable = 24};
    assert_int_equal(store_job_update_progress(f->st, id, &p, err, sizeof err), 0);
    char path[64];
    snprintf(path, sizeof path, "/jobs/%s", id);
    http_resp r;
    http_get(f, path, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_str(r.json, "status"), "running");
    assert_non_null(strstr(r.body, "\"forward\":9007199254740993"));
    assert_non_null(strstr(r.body, "\"total\":9007199254740998"));
    const cJSON *pr = cJSON_GetObjectItem(r.json, "progress");
    assert_int_equal((int)json_num(pr, "step"), 7);
    assert_int_equal((int)json_num(pr, "total_steps"), 40);
    assert_true(json_num(pr, "loss") == 0.5);
    assert_true(json_num(pr, "trainable_avg") == 1500.5);
    assert_int_equal((int)json_num(pr, "frozen"), 3);
    assert_int_equal((int)json_num(pr, "freezable"), 24);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(r.json, "started_at")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "finished_at")));
    resp_free(&r);
}

/* ---- server-sent events ------------------------------------------------------------ */

typedef struct {
    long ids[64];
    char types[64][16];
    int n;
    bool ended; /* the server closed the stream */
    int heartbeats;
} sse_log;

/* Parse complete SSE events out of text (already de-chunked). */
static void sse_parse(const char *text, sse_log *log) {
    const char *p = text;
    long id = -1;
    char type[16] = "message";
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) break;
        size_t len = (size_t)(nl - p);
        if (len == 0) {
            if (id >= 0 && log->n < 64) {
                log->ids[log->n] = id;
                snprintf(log->types[log->n], sizeof log->types[0], "%s", type);
                log->n++;
            }
            id = -1;
            strcpy(type, "message");
        } else if (strncmp(p, "id: ", 4) == 0) {
            id = strtol(p + 4, NULL, 10);
        } else if (strncmp(p, "event: ", 7) == 0) {
            snprintf(type, sizeof type, "%.*s", (int)(len - 7), p + 7);
        } else if (strncmp(p, ": heartbeat", 11) == 0) {
            log->heartbeats++;
        }
        p = nl + 1;
    }
}

static int open_sse(fixture *f, const char *id, const char *last_event_id) {
    char path[96], headers[128];
    snprintf(path, sizeof path, "/jobs/%s/events", id);
    snprintf(headers, sizeof headers, "Accept: text/event-stream\r\n%s%s%s",
             last_event_id ? "Last-Event-ID: " : "", last_event_id ? last_event_id : "",
             last_event_id ? "\r\n" : "");
    int fd = connect_to(f->port);
    send_request_head(fd, "GET", path, headers, -1);
    return fd;
}

/* Read what arrives within ms (or until EOF) and append it to buf. */
static bool read_some(int fd, char *buf, size_t cap, size_t *len, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, ms) > 0) {
        ssize_t r = recv(fd, buf + *len, cap - *len - 1, 0);
        if (r <= 0) return false; /* EOF */
        *len += (size_t)r;
        buf[*len] = '\0';
        ms = 50; /* drain what is already there */
    }
    return true;
}

static void sse_collect(char *raw, size_t len, sse_log *log, http_resp *head) {
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, raw, len + 1);
    parse_response(copy, len, head);
    memset(log, 0, sizeof *log);
    sse_parse(head->body ? head->body : "", log);
}

static void test_sse_replay(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE];
    upload_ok(f, ds);
    create_job(f, ds, id);                                              /* 1 queued */
    claim(f, id);                                                       /* 2 running */
    add_event(f, id, STORE_EVENT_STEP, "{\"step\":1,\"loss\":0.9}");    /* 3 */
    add_event(f, id, STORE_EVENT_STEP, "{\"step\":2,\n \"loss\":0.8}"); /* 4: a newline */
    add_event(f, id, STORE_EVENT_FREEZE,
              "{\"step\":2,\"layer\":0,\"module\":\"intermediate.dense\",\"matrix\":\"A\","
              "\"score\":0.1}");        /* 5 */
    finish(f, id, STORE_JOB_SUCCEEDED); /* 6 succeeded */

    /* Resume after 3: exactly 4, 5, 6, then the stream ends by itself. */
    int fd = open_sse(f, id, "3");
    static char raw[65536];
    size_t len = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (read_some(fd, raw, sizeof raw, &len, IO_TIMEOUT_MS)) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > IO_TIMEOUT_MS / 1000)
            fail_msg("the stream did not end after the final status");
    }
    close(fd);
    http_resp h;
    sse_log log;
    sse_collect(raw, len, &log, &h);
    assert_int_equal(h.status, 200);
    assert_non_null(strstr(hdr(&h, "Content-Type"), "text/event-stream"));
    assert_string_equal(hdr(&h, "Cache-Control"), "no-cache");
    assert_string_equal(hdr(&h, "X-Accel-Buffering"), "no");
    assert_int_equal(log.n, 3);
    assert_int_equal(log.ids[0], 4);
    assert_int_equal(log.ids[1], 5);
    assert_int_equal(log.ids[2], 6);
    assert_string_equal(log.types[0], "step");
    assert_string_equal(log.types[1], "freeze");
    assert_string_equal(log.types[2], "status");
    assert_non_null(strstr(h.body, "data: {\"step\":2, \"loss\":0.8}\n"));
    assert_non_null(strstr(h.body, "data: {\"status\":\"succeeded\"}\n"));
    resp_free(&h);

    /* From the start: all six, in order. */
    fd = open_sse(f, id, NULL);
    len = 0;
    while (read_some(fd, raw, sizeof raw, &len, IO_TIMEOUT_MS))
        ;
    close(fd);
    sse_collect(raw, len, &log, &h);
    assert_int_equal(log.n, 6);
    for (int i = 0; i < 6; i++) assert_int_equal(log.ids[i], i + 1);
    resp_free(&h);

    /* Finished and nothing after the id: 204, so EventSource stops. */
    fd = open_sse(f, id, "6");
    len = 0;
    while (read_some(fd, raw, sizeof raw, &len, IO_TIMEOUT_MS))
        ;
    close(fd);
    sse_collect(raw, len, &log, &h);
    assert_int_equal(h.status, 204);
    resp_free(&h);

    fd = open_sse(f, id, "abc");
    len = 0;
    while (read_some(fd, raw, sizeof raw, &len, IO_TIMEOUT_MS))
        ;
    close(fd);
    sse_collect(raw, len, &log, &h);
    assert_int_equal(h.status, 400);
    resp_free(&h);

    /* The JSON form pages with after/limit. */
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s/events?after=2&limit=2", id);
    http_resp r;
    http_get(f, path, &r);
    assert_int_equal(r.status, 200);
    const cJSON *evs = cJSON_GetObjectItem(r.json, "events");
    assert_int_equal(cJSON_GetArraySize(evs), 2);
    assert_int_equal((int)json_num(cJSON_GetArrayItem(evs, 0), "seq"), 3);
    assert_string_equal(json_str(cJSON_GetArrayItem(evs, 0), "type"), "step");
    assert_true(json_num(cJSON_GetObjectItem(cJSON_GetArrayItem(evs, 0), "data"), "loss") == 0.9);
    assert_int_equal((int)json_num(r.json, "next_after"), 4);
    assert_string_equal(json_str(r.json, "job_status"), "succeeded");
    resp_free(&r);
}

/* Live: a waiting stream wakes on api_notify_job_events (far sooner than a
 * heartbeat), and ends with the terminal status. */
static void test_sse_live(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE];
    upload_ok(f, ds);
    create_job(f, ds, id);
    claim(f, id); /* seq 2 */
    int fd = open_sse(f, id, "2");
    static char raw[65536];
    size_t len = 0;
    assert_true(read_some(fd, raw, sizeof raw, &len, 300)); /* headers + retry */
    assert_non_null(strstr(raw, "200"));
    assert_null(strstr(raw, "id: "));

    add_event(f, id, STORE_EVENT_STEP, "{\"step\":1}"); /* seq 3 */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    api_notify_job_events(f->srv, id);
    while (!strstr(raw, "id: 3\n")) {
        assert_true(read_some(fd, raw, sizeof raw, &len, 2000));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_true(t1.tv_sec - t0.tv_sec < 2);
    }
    /* Notifying another job wakes nothing visible. */
    api_notify_job_events(f->srv, NO_SUCH_ID);
    size_t before = len;
    assert_true(read_some(fd, raw, sizeof raw, &len, 200));
    assert_int_equal(len, before);

    finish(f, id, STORE_JOB_FAILED); /* seq 4 */
    api_notify_job_events(f->srv, id);
    while (read_some(fd, raw, sizeof raw, &len, 2000))
        ;
    close(fd);
    http_resp h;
    sse_log log;
    sse_collect(raw, len, &log, &h);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.ids[0], 3);
    assert_int_equal(log.ids[1], 4);
    assert_non_null(strstr(h.body, "\"status\":\"failed\""));
    resp_free(&h);
}

/* api_stop ends open streams instead of waiting for them. */
static void test_stop_with_open_stream(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE];
    upload_ok(f, ds);
    create_job(f, ds, id);
    int fd = open_sse(f, id, NULL);
    static char raw[16384];
    size_t len = 0;
    assert_true(read_some(fd, raw, sizeof raw, &len, 300));
    assert_non_null(strstr(raw, "id: 1\n"));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    api_stop(f->srv);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 2.0);
    assert_false(read_some(fd, raw, sizeof raw, &len, 1000)); /* closed */
    close(fd);
    /* ... cleanly: the chunked body's last chunk arrived, so an EventSource
     * sees the end of the stream and reconnects with its Last-Event-ID. */
    assert_true(len >= 5);
    assert_memory_equal(raw + len - 5, "0\r\n\r\n", 5);
    /* Restart on the same data: the job is still there. */
    store_close(f->st);
    start_server(f, NULL, 0, 0);
    char path[64];
    snprintf(path, sizeof path, "/jobs/%s", id);
    http_resp r;
    http_get(f, path, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* ---- freezing ---------------------------------------------------------------------- */

static void test_freezing(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE];
    upload_ok(f, ds);
    create_job(f, ds, id); /* aflora: default target modules, trainable ffn */
    claim(f, id);
    add_event(f, id, STORE_EVENT_STEP, "{\"step\":1,\"remaining_fraction\":1}");
    add_event(f, id, STORE_EVENT_STEP, "{\"step\":2,\"remaining_fraction\":0.5}");
    add_event(
        f, id, STORE_EVENT_FREEZE,
        "{\"step\":2,\"layer\":3,\"module\":\"output.dense\",\"matrix\":\"B\",\"score\":0.25}");
    add_event(f, id, STORE_EVENT_FREEZE,
              "{\"step\":5,\"layer\":11,\"module\":\"intermediate.dense\",\"matrix\":\"A\","
              "\"score\":0.5}");
    add_event(f, id, STORE_EVENT_FREEZE, "{\"step\":\"x\"}"); /* malformed: skipped */
    add_event(f, id, STORE_EVENT_STEP, "{\"step\":3,\"remaining_fraction\":0}");
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s/freezing", id);
    http_resp r;
    http_get(f, path, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal((int)json_num(r.json, "layers"), 12); /* bert-base */
    assert_string_equal(json_str(r.json, "method"), "aflora");
    const cJSON *mods = cJSON_GetObjectItem(r.json, "modules");
    int n_mods = cJSON_GetArraySize(mods);
    int out_i = -1, inter_i = -1;
    for (int i = 0; i < n_mods; i++) {
        const char *m = cJSON_GetArrayItem(mods, i)->valuestring;
        if (strcmp(m, "output.dense") == 0) out_i = i;
        if (strcmp(m, "intermediate.dense") == 0) inter_i = i;
    }
    assert_true(out_i >= 0 && inter_i >= 0);
    /* the rows described by the model's family, one per column */
    assert_string_equal(json_str(r.json, "family"), "bert");
    const cJSON *infos = cJSON_GetObjectItem(r.json, "module_info");
    assert_int_equal(cJSON_GetArraySize(infos), n_mods);
    for (int i = 0; i < n_mods; i++) {
        const cJSON *mi = cJSON_GetArrayItem(infos, i);
        assert_string_equal(json_str(mi, "name"), cJSON_GetArrayItem(mods, i)->valuestring);
        assert_true(cJSON_IsBool(cJSON_GetObjectItem(mi, "ffn")));
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(mi, "ffn")), i == out_i || i == inter_i);
    }
    assert_string_equal(json_str(cJSON_GetArrayItem(infos, out_i), "label"), "output");
    const cJSON *fa = cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "frozen_at"), "A");
    const cJSON *fb = cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "frozen_at"), "B");
    assert_int_equal(cJSON_GetArraySize(fa), 12);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetArrayItem(fa, 0)), n_mods);
    assert_true(cJSON_GetArrayItem(cJSON_GetArrayItem(fb, 3), out_i)->valuedouble == 2);
    assert_true(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetArrayItem(fa, 3), out_i)));
    assert_true(cJSON_GetArrayItem(cJSON_GetArrayItem(fa, 11), inter_i)->valuedouble == 5);
    int non_null = 0;
    for (int l = 0; l < 12; l++)
        for (int m = 0; m < n_mods; m++)
            non_null += !cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetArrayItem(fa, l), m)) +
                        !cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetArrayItem(fb, l), m));
    assert_int_equal(non_null, 2);
    const cJSON *sb = cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "scores"), "B");
    assert_true(cJSON_GetArrayItem(cJSON_GetArrayItem(sb, 3), out_i)->valuedouble == 0.25);
    const cJSON *sched = cJSON_GetObjectItem(r.json, "schedule");
    assert_int_equal(cJSON_GetArraySize(sched), 3);
    assert_true(json_num(cJSON_GetArrayItem(sched, 1), "r") == 0.5);
    assert_int_equal((int)json_num(cJSON_GetArrayItem(sched, 2), "step"), 3);
    resp_free(&r);
}

/* ---- adapter downloads ---------------------------------------------------------------- */

static void test_adapter_download(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE], path[512], url[128];
    upload_ok(f, ds);
    create_job(f, ds, id);
    snprintf(url, sizeof url, "/jobs/%s/adapter/peft/adapter_config.json", id);
    http_resp r;
    http_get(f, url, &r);
    expect_error(&r, 409, "not_ready");
    assert_non_null(strstr(err_message(&r), "queued"));
    resp_free(&r);

    claim(f, id);
    snprintf(path, sizeof path, "%s/jobs/%s", f->data, id);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/jobs/%s/adapter", f->data, id);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/peft", f->data, id);
    assert_int_equal(mkdir(path, 0755), 0);
    const char *cfg = "{\"peft_type\": \"LORA\", \"r\": 4}";
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/peft/adapter_config.json", f->data, id);
    write_file(path, cfg);
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/peft/adapter_model.safetensors", f->data, id);
    write_file(path, "WEIGHTS");
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/peft/config.json", f->data, id);
    write_file(path, "{\"id2label\": {}}");
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/peft/README.md", f->data, id);
    write_file(path, "# card");
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/adapter.safetensors", f->data, id);
    write_file(path, "NATIVE");
    http_get(f, url, &r);
    expect_error(&r, 409, "not_ready"); /* running */
    resp_free(&r);
    finish(f, id, STORE_JOB_SUCCEEDED);

    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, strlen(cfg));
    assert_memory_equal(r.body, cfg, strlen(cfg));
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    assert_non_null(strstr(hdr(&r, "Content-Disposition"), "attachment"));
    assert_non_null(strstr(hdr(&r, "Content-Disposition"), "adapter_config.json"));
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", strlen(cfg));
    assert_string_equal(hdr(&r, "Content-Length"), cl);
    char etag[128], inm[200];
    snprintf(etag, sizeof etag, "%s", hdr(&r, "ETag"));
    assert_true(etag[0] == '"');
    resp_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: \"other\", %s\r\n", etag);
    http_raw(f->port, "GET", url, inm, NULL, 0, &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);

    snprintf(url, sizeof url, "/jobs/%s/adapter/adapter.safetensors", id);
    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "NATIVE");
    assert_string_equal(hdr(&r, "Content-Type"), "application/octet-stream");
    resp_free(&r);

    /* The label names and the model card beside the PEFT files. */
    snprintf(url, sizeof url, "/jobs/%s/adapter/peft/config.json", id);
    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"id2label\": {}}");
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    resp_free(&r);
    snprintf(url, sizeof url, "/jobs/%s/adapter/peft/README.md", id);
    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "# card");
    assert_string_equal(hdr(&r, "Content-Type"), "text/markdown; charset=utf-8");
    resp_free(&r);

    /* The archive: a tar the system's tar reads back. */
    snprintf(url, sizeof url, "/jobs/%s/adapter/peft.tar", id);
    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "application/x-tar");
    assert_int_equal(r.body_len % 512, 0);
    char tarp[400], out[400], cmd[1000];
    snprintf(tarp, sizeof tarp, "%s/dl.tar", f->dir);
    snprintf(out, sizeof out, "%s/dl", f->dir);
    assert_int_equal(mkdir(out, 0755), 0);
    FILE *t = fopen(tarp, "wb");
    assert_non_null(t);
    assert_int_equal(fwrite(r.body, 1, r.body_len, t), r.body_len);
    fclose(t);
    snprintf(cmd, sizeof cmd, "tar -xf '%s' -C '%s'", tarp, out);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/peft/adapter_model.safetensors", out);
    char *w = read_file(path, NULL);
    assert_non_null(w);
    assert_string_equal(w, "WEIGHTS");
    free(w);
    snprintf(path, sizeof path, "%s/peft/README.md", out);
    w = read_file(path, NULL);
    assert_non_null(w);
    assert_string_equal(w, "# card");
    free(w);
    char etag1[128];
    snprintf(etag1, sizeof etag1, "%s", hdr(&r, "ETag"));
    resp_free(&r);
    http_get(f, url, &r); /* second request: the same archive (same ETag) */
    assert_string_equal(hdr(&r, "ETag"), etag1);
    resp_free(&r);
    snprintf(path, sizeof path, "%s/jobs/%s/adapter", f->data, id);
    assert_int_equal(count_atomic_temps(path), 0); /* built as an atomic file */

    snprintf(url, sizeof url, "/jobs/%s/adapter/../../aflorad.db", id);
    http_get(f, url, &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
    snprintf(url, sizeof url, "/jobs/%s/adapter/peft/other.bin", id);
    http_get(f, url, &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
}

/* Method full: adapter/model/ (a whole Hugging Face folder) is served file by
 * file and as model.tar; a missing file's 404 lists what the job has. */
static void test_full_model_download(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE], path[600], url[160], dir[500];
    upload_ok(f, ds);
    create_job(f, ds, id);
    claim(f, id);
    finish(f, id, STORE_JOB_SUCCEEDED);
    snprintf(dir, sizeof dir, "%s/jobs/%s", f->data, id);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(dir, sizeof dir, "%s/jobs/%s/adapter", f->data, id);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/adapter.safetensors", dir);
    write_file(path, "NATIVE");
    snprintf(path, sizeof path, "%s/model", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    static const struct {
        const char *name, *text;
    } files[] = {
        {"config.json", "{\"id2label\": {\"0\": \"a\", \"1\": \"b\"}}"},
        {"model.safetensors", "WEIGHTS"},
        {"vocab.txt", "[PAD]\n[UNK]\n"},
        {".hidden", "no"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/model/%s", dir, files[i].name);
        write_file(path, files[i].text);
    }
    char outside[500];
    snprintf(outside, sizeof outside, "%s/secret.txt", f->outside);
    snprintf(path, sizeof path, "%s/model/link.txt", dir);
    assert_int_equal(symlink(outside, path), 0);

    http_resp r;
    snprintf(url, sizeof url, "/jobs/%s/adapter/model/config.json", id);
    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, files[0].text);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    assert_non_null(strstr(hdr(&r, "Content-Disposition"), "config.json"));
    resp_free(&r);
    snprintf(url, sizeof url, "/jobs/%s/adapter/model/model.safetensors", id);
    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "WEIGHTS");
    assert_string_equal(hdr(&r, "Content-Type"), "application/octet-stream");
    resp_free(&r);

    /* the archive, as the system's tar reads it */
    snprintf(url, sizeof url, "/jobs/%s/adapter/model.tar", id);
    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "application/x-tar");
    char tarp[600], out[400], cmd[2000];
    snprintf(tarp, sizeof tarp, "%s/model.tar", f->dir);
    snprintf(out, sizeof out, "%s/unpacked", f->dir);
    assert_int_equal(mkdir(out, 0755), 0);
    FILE *t = fopen(tarp, "wb");
    assert_non_null(t);
    assert_int_equal(fwrite(r.body, 1, r.body_len, t), r.body_len);
    fclose(t);
    resp_free(&r);
    snprintf(cmd, sizeof cmd, "tar -xf '%s' -C '%s'", tarp, out);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/model/vocab.txt", out);
    char *v = read_file(path, NULL);
    assert_non_null(v);
    assert_string_equal(v, files[2].text);
    free(v);

    /* what is not there: 404 listing the job's files (no PEFT folder here) */
    const char *missing[] = {"peft.tar",       "peft/adapter_config.json",     "model/.hidden",
                             "model/link.txt", "model/../adapter.safetensors", "model/nope.bin",
                             "model"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        snprintf(url, sizeof url, "/jobs/%s/adapter/%s", id, missing[i]);
        http_get(f, url, &r);
        expect_error(&r, 404, "not_found");
        const char *msg = err_message(&r), *list = strstr(msg, "its files are: ");
        if (!list || strcmp(list + 15, "adapter.safetensors, model.tar, model/config.json, "
                                       "model/model.safetensors, model/vocab.txt") != 0)
            fail_msg("%s: %s", missing[i], msg);
        resp_free(&r);
    }

    /* a new model folder (a retried job): the archive is built again */
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s/model' && mkdir '%s/model' && printf NEW > "
             "'%s/model/config.json'",
             dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(url, sizeof url, "/jobs/%s/adapter/model.tar", id);
    http_get(f, url, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 3 * 512 + 2 * 512); /* dir + one file of 1 block + end */
    resp_free(&r);
}

/* ---- predictions ------------------------------------------------------------------- */

/* The value of a sample line "series value" (not a # HELP line). */
static long metric_value(const char *text, const char *series);

static long predict_metric(fixture *f, const char *series) {
    http_resp r;
    http_get(f, "/metrics", &r);
    assert_int_equal(r.status, 200);
    long v = metric_value(r.body, series);
    resp_free(&r);
    return v;
}

/* A demo job that "succeeded": queued over the API, claimed and finished in
 * the store as a worker would. */
static void succeeded_job(fixture *f, const char *spec, char id[STORE_ID_SIZE]) {
    http_resp r;
    http_json(f, "POST", "/jobs", spec, &r);
    if (r.status != 201) fail_msg("POST /jobs: %d %s", r.status, r.body);
    snprintf(id, STORE_ID_SIZE, "%s", json_str(r.json, "id"));
    resp_free(&r);
    claim(f, id);
    finish(f, id, STORE_JOB_SUCCEEDED);
}

/* What a finished demo job leaves: its native adapter (a fresh AFLoRA
 * adapter and head drawn from seed), written atomically like the worker's. */
static void write_demo_adapter(fixture *f, const char *id, uint64_t seed) {
    char err[ERRLEN], dir[600], path[700];
    assert_int_equal(job_ensure_demo(f->models, err, sizeof err), 0);
    snprintf(dir, sizeof dir, "%s/demo", f->models);
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = 4,
                              .alpha = 8,
                              .targets = ALL_MODULES,
                              .projections = PROJ_FFN};
    aflo_model *m = hfmodel_load(dir, &ac, TASK_CLASSIFICATION, 2, seed, NULL, err, sizeof err);
    if (!m) fail_msg("hfmodel_load: %s", err);
    snprintf(path, sizeof path, "%s/jobs/%s", f->data, id);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/jobs/%s/adapter", f->data, id);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/adapter.safetensors", f->data, id);
    static const char *const labels[] = {"negative", "positive"};
    adapter_export_info info = {.base_model = "demo", .labels = labels};
    if (adapter_export_native(m, path, &info, err, sizeof err) != 0) fail_msg("export: %s", err);
    model_free(m);
}

static double first_logit(const http_resp *r) {
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(r->json, "predictions"), 0);
    return cJSON_GetArrayItem(cJSON_GetObjectItem(p, "logits"), 0)->valuedouble;
}

static void predict_ok(fixture *f, const char *id, double *logit) {
    char url[64];
    snprintf(url, sizeof url, "/jobs/%s/predict", id);
    http_resp r;
    http_json(f, "POST", url,
              "{\"inputs\":[{\"text\":\"a great and lovely film\"},"
              "{\"text\":\"awful boring story\"}]}",
              &r);
    if (r.status != 200) fail_msg("predict %s: %d %s", id, r.status, r.body);
    const cJSON *preds = cJSON_GetObjectItem(r.json, "predictions");
    assert_int_equal(cJSON_GetArraySize(preds), 2);
    const char *label = json_str(cJSON_GetArrayItem(preds, 1), "label");
    assert_true(strcmp(label, "negative") == 0 || strcmp(label, "positive") == 0);
    if (logit) *logit = first_logit(&r);
    resp_free(&r);
}

static void predict_error(fixture *f, const char *id, const char *body, int status,
                          const char *code, const char *field, const char *words) {
    char url[64];
    snprintf(url, sizeof url, "/jobs/%s/predict", id);
    http_resp r;
    http_json(f, "POST", url, body, &r);
    expect_error(&r, status, code);
    if (field) assert_string_equal(err_field(&r), field);
    if (words && !strstr(err_message(&r), words))
        fail_msg("\"%s\" lacks \"%s\"", err_message(&r), words);
    resp_free(&r);
}

/* POST /jobs/{id}/predict keeps the job's model loaded (two requests, one
 * load), reloads it when the job's adapter is replaced, holds at most the
 * configured number (2) of models, and answers 4xx for the client's errors
 * — naming the input — and 5xx only for the server's. */
static void test_predict(void **state) {
    fixture *f = *state;
    char a[STORE_ID_SIZE], b[STORE_ID_SIZE], c[STORE_ID_SIZE], q[STORE_ID_SIZE];
    const char *demo = "{\"model\":\"demo\",\"epochs\":1}";
    succeeded_job(f, demo, a);
    write_demo_adapter(f, a, 1);
    double l1, l2, l3;
    predict_ok(f, a, &l1);
    predict_ok(f, a, &l2);
    assert_true(l1 == l2);
    assert_int_equal(predict_metric(f, "aflorad_predict_model_loads_total "), 1);
    assert_int_equal(predict_metric(f, "aflorad_predict_cache_hits_total "), 1);
    assert_int_equal(predict_metric(f, "aflorad_predict_models "), 1);

    /* the client's errors: 400 naming the input, and no model is loaded */
    predict_error(f, a, "{\"inputs\":[{\"text\":\"a\",\"text_pair\":\"b\"}]}", 400, "invalid_value",
                  "inputs[0].text_pair", "single texts");
    predict_error(f, a, "{\"inputs\":[{\"text\":\"a\"},{}]}", 400, "missing_field",
                  "inputs[1].text", NULL);
    predict_error(f, a, "{\"inputs\":[{\"text\":\"a\",\"txt\":\"b\"}]}", 400, "unknown_field",
                  "inputs[0].txt", NULL);
    predict_error(f, a, "{\"inputs\":[\"a\"]}", 400, "wrong_type", "inputs[0]", NULL);
    predict_error(f, a, "{\"inputs\":[{\"text\":\"caf\xc3\"}]}", 400, "invalid_value", "inputs[0]",
                  "UTF-8");
    char many[2048] = "{\"inputs\":[";
    for (int i = 0; i < 65; i++) strcat(many, i ? ",{\"text\":\"x\"}" : "{\"text\":\"x\"}");
    strcat(many, "]}");
    predict_error(f, a, many, 400, "out_of_range", "inputs", "64");
    assert_int_equal(predict_metric(f, "aflorad_predict_model_loads_total "), 1);

    /* a new adapter for the same job (a retry wrote it): loaded anew */
    write_demo_adapter(f, a, 2);
    predict_ok(f, a, &l3);
    assert_true(l3 != l1);
    assert_int_equal(predict_metric(f, "aflorad_predict_model_loads_total "), 2);

    /* at most two models: a third evicts the least recently used (a) */
    succeeded_job(f, demo, b);
    write_demo_adapter(f, b, 3);
    succeeded_job(f, demo, c);
    write_demo_adapter(f, c, 4);
    predict_ok(f, b, NULL);
    predict_ok(f, c, NULL);
    assert_int_equal(predict_metric(f, "aflorad_predict_models "), 2);
    assert_int_equal(predict_metric(f, "aflorad_predict_model_loads_total "), 4);
    predict_ok(f, c, NULL);
    assert_int_equal(predict_metric(f, "aflorad_predict_model_loads_total "), 4);
    predict_ok(f, a, &l2);
    assert_true(l2 == l3);
    assert_int_equal(predict_metric(f, "aflorad_predict_model_loads_total "), 5);
    assert_int_equal(predict_metric(f, "aflorad_predict_models "), 2);

    /* the server's fault: a succeeded job whose adapter is gone is a 500 */
    char path[600];
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/adapter.safetensors", f->data, c);
    assert_int_equal(unlink(path), 0);
    predict_error(f, c, "{\"inputs\":[{\"text\":\"a\"}]}", 500, "adapter_missing", NULL, c);

    /* a pair job wants pairs (checked before anything is loaded) */
    char ds[STORE_ID_SIZE], spec[256];
    http_resp r;
    assert_int_equal(
        upload(f, "?name=pairs.tsv", "q1\tq2\tlabel\nis it\tit is\t1\nwho\twhat\t0\n", ds, &r),
        201);
    resp_free(&r);
    snprintf(spec, sizeof spec,
             "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"%s\",\"text_fields\":[\"q1\","
             "\"q2\"]}}",
             ds);
    succeeded_job(f, spec, q);
    predict_error(f, q, "{\"inputs\":[{\"text\":\"a\"}]}", 400, "missing_field",
                  "inputs[0].text_pair", "\"q1\" and \"q2\"");
    predict_error(f, q, "{\"inputs\":[{\"text\":\"a\",\"text_pair\":\"b\"}]}", 500,
                  "adapter_missing", NULL, NULL);

    /* not finished: 409 */
    http_json(f, "POST", "/jobs", demo, &r);
    assert_int_equal(r.status, 201);
    char queued[STORE_ID_SIZE];
    snprintf(queued, sizeof queued, "%s", json_str(r.json, "id"));
    resp_free(&r);
    predict_error(f, queued, "{\"inputs\":[{\"text\":\"a\"}]}", 409, "conflict", NULL, "queued");
}

/* init_adapter "job:<id>" starts a job from a succeeded job's adapter; what
 * the spec can tell is checked at once: the reference, the job's state and
 * its adapter's method, rank, model shapes and declared labels. */
static void test_init_adapter_from_job(void **state) {
    fixture *f = *state;
    char a[STORE_ID_SIZE], gone[STORE_ID_SIZE], spec[512], ds[STORE_ID_SIZE];
    succeeded_job(f, "{\"model\":\"demo\",\"epochs\":1}", a);
    write_demo_adapter(f, a, 1);
    succeeded_job(f, "{\"model\":\"demo\",\"epochs\":2}", gone); /* no adapter file */
    http_resp r;
    snprintf(spec, sizeof spec, "{\"model\":\"demo\",\"init_adapter\":\"job:%s\"}", a);
    http_json(f, "POST", "/jobs", spec, &r);
    if (r.status != 201) fail_msg("%d %s", r.status, r.body);
    char want[64];
    snprintf(want, sizeof want, "job:%s", a);
    assert_string_equal(json_str(cJSON_GetObjectItem(r.json, "spec"), "init_adapter"), want);
    resp_free(&r);

    static const struct {
        const char *extra, *words;
    } mismatch[] = {
        {",\"rank\":8", "rank 4, this job 8"},
        {",\"method\":\"lora\"", "method aflora, this job uses lora"},
        {",\"target_modules\":[\"query\"]", "target_modules"},
    };
    for (size_t i = 0; i < sizeof mismatch / sizeof *mismatch; i++) {
        snprintf(spec, sizeof spec, "{\"model\":\"demo\",\"init_adapter\":\"job:%s\"%s}", a,
                 mismatch[i].extra);
        http_json(f, "POST", "/jobs", spec, &r);
        expect_error(&r, 400, "incompatible_adapter");
        assert_string_equal(err_field(&r), "init_adapter");
        if (!strstr(err_message(&r), mismatch[i].words))
            fail_msg("\"%s\" lacks \"%s\"", err_message(&r), mismatch[i].words);
        resp_free(&r);
    }
    /* another model's shapes */
    upload_ok(f, ds);
    snprintf(spec, sizeof spec,
             "{\"model\":\"bert-base\",\"dataset\":{\"train\":\"%s\"},\"init_adapter\":"
             "\"job:%s\"}",
             ds, a);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "incompatible_adapter");
    assert_non_null(strstr(err_message(&r), "bert-base is bert (12, 768, 3072, 12, 30522)"));
    resp_free(&r);
    /* the demo's shapes under another name, with declared labels */
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp -r '%s/demo' '%s/tiny'", f->models, f->models);
    assert_int_equal(system(cmd), 0);
    http_resp u;
    assert_int_equal(
        upload(f, "?name=s.tsv", "sentence\tlabel\ngood\tpositive\nbad\tnegative\n", ds, &u), 201);
    resp_free(&u);
    snprintf(spec, sizeof spec,
             "{\"model\":\"tiny\",\"dataset\":{\"train\":\"%s\",\"labels\":[\"positive\","
             "\"negative\"]},\"init_adapter\":\"job:%s\"}",
             ds, a);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 400, "incompatible_adapter");
    assert_non_null(strstr(err_message(&r), "[\"negative\", \"positive\"] differ from this job's "
                                            "[\"positive\", \"negative\"]"));
    resp_free(&r);
    snprintf(spec, sizeof spec,
             "{\"model\":\"tiny\",\"dataset\":{\"train\":\"%s\",\"labels\":[\"negative\","
             "\"positive\"]},\"init_adapter\":\"job:%s\"}",
             ds, a);
    http_json(f, "POST", "/jobs", spec, &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);

    /* references that do not work */
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\",\"init_adapter\":\"job:" NO_SUCH_ID "\"}",
              &r);
    expect_error(&r, 400, "unknown_job");
    assert_string_equal(err_field(&r), "init_adapter");
    resp_free(&r);
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\",\"init_adapter\":\"job:12\"}", &r);
    expect_error(&r, 400, "invalid_value");
    assert_string_equal(err_field(&r), "init_adapter");
    resp_free(&r);
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\",\"init_adapter\":\"a.safetensors\"}", &r);
    expect_error(&r, 400, "invalid_value");
    assert_non_null(strstr(err_message(&r), "job:<id>"));
    resp_free(&r);
    /* not finished yet: 409; finished without its adapter: the server's fault */
    char q[STORE_ID_SIZE];
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\"}", &r);
    snprintf(q, sizeof q, "%s", json_str(r.json, "id"));
    resp_free(&r);
    snprintf(spec, sizeof spec, "{\"model\":\"demo\",\"init_adapter\":\"job:%s\"}", q);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 409, "not_ready");
    assert_string_equal(err_field(&r), "init_adapter");
    assert_non_null(strstr(err_message(&r), "queued"));
    resp_free(&r);
    snprintf(spec, sizeof spec, "{\"model\":\"demo\",\"init_adapter\":\"job:%s\"}", gone);
    http_json(f, "POST", "/jobs", spec, &r);
    expect_error(&r, 500, "adapter_missing");
    resp_free(&r);
}

/* init_adapter over the API, case by case: "job:<id>" of a succeeded job
 * with the same adapter shape is taken; any other shape, a job that has not
 * succeeded, an unknown id, a bare id (the reference needs its "job:") and
 * a file path are refused naming init_adapter. */
static void test_init_adapter_job_refs(void **state) {
    fixture *f = *state;
    char src[STORE_ID_SIZE], queued[STORE_ID_SIZE], ref[64], queued_ref[64];
    succeeded_job(f, "{\"model\":\"demo\",\"epochs\":1}", src);
    write_demo_adapter(f, src, 1);
    http_resp r;
    http_json(f, "POST", "/jobs", "{\"model\":\"demo\"}", &r);
    assert_int_equal(r.status, 201);
    snprintf(queued, sizeof queued, "%s", json_str(r.json, "id"));
    resp_free(&r);
    snprintf(ref, sizeof ref, "job:%s", src);
    snprintf(queued_ref, sizeof queued_ref, "job:%s", queued);
    const struct {
        const char *adapter, *extra;
        int status;
        const char *code, *why;
    } cases[] = {
        {ref, "", 201, NULL, NULL},
        {ref, ",\"method\":\"lora\"", 400, "incompatible_adapter", "method"},
        {ref, ",\"rank\":8", 400, "incompatible_adapter", "rank"},
        {ref, ",\"target_modules\":[\"query\"]", 400, "incompatible_adapter", "target_modules"},
        {queued_ref, "", 409, "not_ready", "is queued"},
        {"job:" NO_SUCH_ID, "", 400, "unknown_job", NO_SUCH_ID},
        {src, "", 400, "invalid_value", "job:<id>"},
        {"adapter.safetensors", "", 400, "invalid_value", "job:<id>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char spec[512];
        snprintf(spec, sizeof spec, "{\"model\":\"demo\",\"init_adapter\":\"%s\"%s}",
                 cases[i].adapter, cases[i].extra);
        http_json(f, "POST", "/jobs", spec, &r);
        if (r.status != cases[i].status) fail_msg("case %zu: %d %s", i, r.status, r.body);
        if (cases[i].code) {
            expect_error(&r, cases[i].status, cases[i].code);
            assert_string_equal(err_field(&r), "init_adapter");
            if (!strstr(err_message(&r), cases[i].why))
                fail_msg("case %zu: %s", i, err_message(&r));
        } else {
            const cJSON *sp = cJSON_GetObjectItem(r.json, "spec");
            assert_string_equal(json_str(sp, "init_adapter"), ref);
        }
        resp_free(&r);
    }
}

/* ---- static files ------------------------------------------------------------------- */

static void test_static_files(void **state) {
    fixture *f = *state;
    http_resp r;
    http_get(f, "/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_non_null(strstr(r.body, "<title>aflorad</title>"));
    resp_free(&r);
    http_get(f, "/app.js", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "text/javascript; charset=utf-8");
    resp_free(&r);
    http_get(f, "/assets/style.css", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "text/css; charset=utf-8");
    assert_string_equal(r.body, "body{}");
    resp_free(&r);

    /* Refused shapes: 400. */
    static const char *const bad[] = {
        "/../outside/secret.txt",
        "/assets/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/assets/%2E%2E/%2e%2e/outside/secret.txt",
        "/.hidden",
        "/index.html%00.png",
        "/assets/./style.css",
        "/a%5c..%5csecret",
        "/assets//style.css",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_get(f, bad[i], &r);
        if (r.status != 400) fail_msg("%s: expected 400, got %d %s", bad[i], r.status, r.body);
        assert_null(strstr(r.body, "SECRET"));
        resp_free(&r);
    }
    /* Not found: a symlink leading out, a directory (no listing), a missing file. */
    static const char *const missing[] = {"/escape.txt", "/assets", "/assets/", "/nope.html"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        http_get(f, missing[i], &r);
        if (r.status != 404) fail_msg("%s: expected 404, got %d %s", missing[i], r.status, r.body);
        assert_null(strstr(r.body, "SECRET"));
        assert_null(strstr(r.body, "style.css"));
        resp_free(&r);
    }
    http_raw(f->port, "POST", "/index.html", NULL, NULL, 0, &r);
    expect_error(&r, 405, "method_not_allowed");
    resp_free(&r);
}

/* ---- models, metrics, OpenAPI --------------------------------------------------------- */

static void test_models(void **state) {
    fixture *f = *state;
    http_resp r;
    http_get(f, "/models", &r);
    assert_int_equal(r.status, 200);
    const cJSON *ms = cJSON_GetObjectItem(r.json, "models");
    assert_int_equal(cJSON_GetArraySize(ms), 6); /* demo, then the folders by name */
    const cJSON *demo = cJSON_GetArrayItem(ms, 0), *bert = cJSON_GetArrayItem(ms, 1),
                *broken = cJSON_GetArrayItem(ms, 2), *electra = cJSON_GetArrayItem(ms, 3),
                *llama = cJSON_GetArrayItem(ms, 4), *notok = cJSON_GetArrayItem(ms, 5);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(demo, "usable")));
    assert_string_equal(json_str(demo, "name"), "demo");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(demo, "builtin")));
    /* The demo sizes agree with the engine's demo config. */
    aflo_config c;
    synth_demo_config(&c);
    assert_string_equal(json_str(demo, "architecture"), c.model_type);
    assert_int_equal((int)json_num(demo, "layers"), c.num_hidden_layers);
    assert_int_equal((int)json_num(demo, "hidden_size"), c.hidden_size);
    assert_int_equal((int)json_num(demo, "intermediate_size"), c.intermediate_size);
    assert_int_equal((int)json_num(demo, "vocab_size"), c.vocab_size);
    assert_int_equal((int)json_num(demo, "attention_heads"), c.num_attention_heads);
    /* By hand for V=96, P=64, T=2, H=32, I=64, L=2: embeddings 162*32+64 =
     * 5248, a layer 4*1056+64+2112+2080+64 = 8544, pooler 1056. */
    assert_true(c.max_position_embeddings == 64 && c.type_vocab_size == 2);
    assert_int_equal((int)json_num(demo, "parameters"), 5248 + 2 * 8544 + 1056);
    assert_string_equal(json_str(bert, "name"), "bert-base");
    assert_string_equal(json_str(bert, "architecture"), "bert");
    assert_int_equal((int)json_num(bert, "layers"), 12);
    /* transformers: BertModel(bert-base-uncased) has 109 482 240 parameters. */
    assert_int_equal((long)json_num(bert, "parameters"), 109482240L);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(bert, "usable")));
    assert_null(cJSON_GetObjectItem(bert, "reason"));
    assert_string_equal(json_str(broken, "name"), "broken");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(broken, "usable")));
    assert_non_null(strstr(json_str(broken, "reason"), "gelu_new"));
    /* Other families: usable false, saying what is supported. */
    assert_string_equal(json_str(electra, "name"), "electra");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(electra, "usable")));
    assert_non_null(strstr(json_str(electra, "reason"),
                           "unsupported architecture model_type \"electra\" (supported: "
                           "BertForSequenceClassification (bert)"));
    assert_string_equal(json_str(llama, "name"), "llama");
    /* a decoder folder is usable (for task causal_lm; POST /jobs checks the task) */
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(llama, "usable")));
    assert_null(cJSON_GetObjectItem(llama, "reason"));
    /* A folder without tokenizer files: described from its config, unusable,
     * and the message names the model, not the server's path. */
    assert_string_equal(json_str(notok, "name"), "no-tokenizer");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(notok, "usable")));
    assert_int_equal((int)json_num(notok, "layers"), 12);
    const char *why = json_str(notok, "reason");
    assert_non_null(strstr(why, "no-tokenizer: no tokenizer files"));
    assert_null(strstr(why, f->models));
    resp_free(&r);
}

/* The value of a sample line "series value" (not a # HELP line). */
static long metric_value(const char *text, const char *series) {
    char key[256];
    snprintf(key, sizeof key, "\n%s", series);
    const char *p = strstr(text, key);
    if (!p) return -1;
    return strtol(p + strlen(key), NULL, 10);
}

static void test_metrics(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE];
    upload_ok(f, ds);
    create_job(f, ds, id);
    http_resp r;
    http_get(f, "/jobs/" NO_SUCH_ID, &r);
    resp_free(&r);
    http_get(f, "/jobs/" NO_SUCH_ID, &r);
    resp_free(&r);
    counters_snapshot before;
    counters_read(&before);
    counters_add_steps(5);
    counters_add_flops(100, 20, 30);
    counters_observe_queue_wait(1.5);
    http_get(f, "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(hdr(&r, "Content-Type"), "text/plain"));
    assert_int_equal(metric_value(r.body, "aflorad_jobs{state=\"queued\"} "), 1);
    assert_int_equal(metric_value(r.body, "aflorad_jobs{state=\"running\"} "), 0);
    assert_int_equal(metric_value(r.body,
                                  "aflorad_http_requests_total{method=\"GET\",route=\"/jobs/{id}\","
                                  "status=\"404\"} "),
                     2);
    assert_int_equal(metric_value(r.body,
                                  "aflorad_http_requests_total{method=\"POST\",route=\"/jobs\","
                                  "status=\"201\"} "),
                     1);
    assert_int_equal(metric_value(r.body, "aflorad_steps_total "), (long)before.steps + 5);
    assert_int_equal(metric_value(r.body, "aflorad_flops_total{kind=\"backward_weight\"} "),
                     (long)before.flops_backward_weight + 30);
    assert_int_equal(metric_value(r.body, "aflorad_queue_wait_seconds_count "),
                     (long)before.queue_wait_count + 1);
    resp_free(&r);
}

/* Every "$ref" of the document points at something in it. */
static void check_refs(const cJSON *doc, const cJSON *node) {
    const cJSON *it;
    cJSON_ArrayForEach (it, node) {
        if (it->string && strcmp(it->string, "$ref") == 0) {
            const char *ref = cJSON_GetStringValue(it);
            assert_non_null(ref);
            assert_true(strncmp(ref, "#/", 2) == 0);
            char buf[256];
            snprintf(buf, sizeof buf, "%s", ref + 2);
            const cJSON *at = doc;
            for (char *tok = strtok(buf, "/"); tok; tok = strtok(NULL, "/"))
                at = cJSON_GetObjectItemCaseSensitive(at, tok);
            if (!at) fail_msg("dangling $ref %s", ref);
        } else if (cJSON_IsObject(it) || cJSON_IsArray(it)) {
            check_refs(doc, it);
        }
    }
}

/* Every route of the table is in the OpenAPI document and every operation
 * of the document is a route; the compiled-in document is api/openapi.json
 * byte for byte, and the served one carries the generated job spec schema. */
/* ---- POST /jobs/{id}/retry ---------------------------------------------------------- */

static void post_retry(fixture *f, const char *id, http_resp *r) {
    char path[64];
    snprintf(path, sizeof path, "/jobs/%s/retry", id);
    http_raw(f->port, "POST", path, NULL, NULL, 0, r);
}

/* Failed and cancelled jobs go back to the queue (200, a status event says
 * why); queued, running and succeeded ones, unknown ids and jobs whose
 * dataset is gone are refused with JSON errors. */
static void test_job_retry(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], a[STORE_ID_SIZE], b[STORE_ID_SIZE], err[ERRLEN];
    upload_ok(f, ds);
    create_job(f, ds, a);
    http_resp r;
    post_retry(f, a, &r);
    expect_error(&r, 409, "conflict");
    assert_non_null(strstr(err_message(&r), "queued"));
    resp_free(&r);
    claim(f, a);
    post_retry(f, a, &r);
    expect_error(&r, 409, "conflict");
    assert_non_null(strstr(err_message(&r), "running"));
    resp_free(&r);
    store_progress p = {.step = 5, .total_steps = 20};
    assert_int_equal(store_job_update_progress(f->st, a, &p, err, sizeof err), 0);
    assert_int_equal(
        store_job_finish(f->st, a, STORE_JOB_FAILED, NULL, "disk full", err, sizeof err), 0);

    post_retry(f, a, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_str(r.json, "status"), "queued");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "error")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "finished_at")));
    assert_int_equal((int)json_num(cJSON_GetObjectItem(r.json, "progress"), "step"), 5);
    resp_free(&r);
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s/events?after=0&limit=100", a);
    http_get(f, path, &r);
    cJSON *evs = cJSON_GetObjectItem(r.json, "events");
    cJSON *last = cJSON_GetArrayItem(evs, cJSON_GetArraySize(evs) - 1);
    cJSON *data = cJSON_GetObjectItem(last, "data");
    assert_string_equal(json_str(data, "status"), "queued");
    assert_string_equal(json_str(data, "reason"), "retry requested");
    resp_free(&r);

    /* a body is refused; the job is unchanged */
    snprintf(path, sizeof path, "/jobs/%s/retry", a);
    http_json(f, "POST", path, "{}", &r);
    expect_error(&r, 413, "body_not_allowed");
    resp_free(&r);
    /* succeeded: nothing to retry */
    claim(f, a);
    assert_int_equal(store_job_finish(f->st, a, STORE_JOB_SUCCEEDED, "{}", NULL, err, sizeof err),
                     0);
    post_retry(f, a, &r);
    expect_error(&r, 409, "conflict");
    assert_non_null(strstr(err_message(&r), "succeeded"));
    resp_free(&r);
    /* A replay of its events goes past the old "failed" to the end: queued,
     * running, failed, queued (retry), running, succeeded. */
    int fd = open_sse(f, a, NULL);
    static char raw[65536];
    size_t len = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (read_some(fd, raw, sizeof raw, &len, IO_TIMEOUT_MS))
        ;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(fd);
    if (t1.tv_sec - t0.tv_sec >= IO_TIMEOUT_MS / 1000)
        fail_msg("the stream did not end after the last status");
    http_resp h;
    sse_log log;
    sse_collect(raw, len, &log, &h);
    assert_int_equal(log.n, 6);
    assert_non_null(strstr(h.body, "\"status\":\"failed\""));
    assert_non_null(strstr(h.body, "\"status\":\"succeeded\""));
    resp_free(&h);
    post_retry(f, NO_SUCH_ID, &r);
    expect_error(&r, 404, "not_found");
    resp_free(&r);

    /* cancelled, then its dataset deleted: refused, naming the dataset */
    char ds2[STORE_ID_SIZE];
    upload_ok(f, ds2);
    create_job(f, ds2, b);
    snprintf(path, sizeof path, "/jobs/%s/cancel", b);
    http_raw(f->port, "POST", path, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    snprintf(path, sizeof path, "/datasets/%s", ds2);
    http_raw(f->port, "DELETE", path, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 204);
    resp_free(&r);
    post_retry(f, b, &r);
    expect_error(&r, 409, "conflict");
    assert_non_null(strstr(err_message(&r), ds2));
    assert_non_null(strstr(err_message(&r), "deleted"));
    resp_free(&r);
}

/* ---- request hygiene: bodies where none belongs, UTF-8 ------------------------- */

/* The whole response body is UTF-8 (JSON must be; cJSON_Parse does not check). */
static void expect_utf8(const http_resp *r) {
    if (!json_utf8_valid(r->body ? r->body : "", r->body_len))
        fail_msg("response is not UTF-8: %.*s", (int)r->body_len, r->body);
}

/* A body sent to a route that takes none is refused, not silently dropped,
 * and the request has no effect. */
static void test_body_on_route_without_one(void **state) {
    fixture *f = *state;
    char ds[STORE_ID_SIZE], id[STORE_ID_SIZE];
    upload_ok(f, ds);
    create_job(f, ds, id);
    char path[64];
    snprintf(path, sizeof path, "/jobs/%s/cancel", id);
    http_resp r;
    http_json(f, "POST", path, "{\"reason\": \"too slow\"}", &r);
    expect_error(&r, 413, "body_not_allowed");
    assert_non_null(strstr(err_message(&r), "/jobs/{id}/cancel"));
    resp_free(&r);
    /* chunked: only known once the body arrives, refused all the same */
    int fd = connect_to(f->port);
    send_request_head(fd, "POST", path, "Transfer-Encoding: chunked\r\n", -1);
    assert_true(send_all(fd, "2\r\n{}\r\n0\r\n\r\n", 12));
    size_t len;
    char *raw = read_all(fd, &len);
    close(fd);
    parse_response(raw, len, &r);
    expect_error(&r, 413, "body_not_allowed");
    resp_free(&r);
    /* nothing was cancelled */
    store_job j;
    char err[ERRLEN];
    assert_int_equal(store_job_get(f->st, id, &j, err, sizeof err), 0);
    assert_int_equal(j.status, STORE_JOB_QUEUED);
    store_job_clear(&j);
    /* GET with a body, too */
    http_raw(f->port, "GET", "/healthz", NULL, "x", 1, &r);
    expect_error(&r, 413, "body_not_allowed");
    resp_free(&r);
    /* Content-Length: 0 is no body */
    http_raw(f->port, "POST", path, NULL, "", 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_str(r.json, "status"), "cancelled");
    resp_free(&r);
}

/* Upload names and column parameters are echoed in JSON, so they must be
 * UTF-8: refused with 400 naming the parameter. Error messages that echo a
 * client's bytes, and names stored before the check, come out as UTF-8. */
static void test_upload_names_are_utf8(void **state) {
    fixture *f = *state;
    char id[STORE_ID_SIZE];
    http_resp r;
    assert_int_equal(upload(f, "?name=caf%E9.tsv", TSV_OK, id, &r), 400); /* Latin-1 */
    expect_error(&r, 400, "invalid_parameter");
    assert_string_equal(err_field(&r), "name");
    assert_non_null(strstr(err_message(&r), "UTF-8"));
    expect_utf8(&r);
    resp_free(&r);
    static const char *const fields[] = {"text_field", "text_b_field", "label_field"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        char q[96];
        snprintf(q, sizeof q, "?name=t.tsv&%s=%%C3%%28", fields[i]); /* bad continuation */
        assert_int_equal(upload(f, q, TSV_OK, id, &r), 400);
        expect_error(&r, 400, "invalid_parameter");
        assert_string_equal(err_field(&r), fields[i]);
        resp_free(&r);
    }
    /* valid UTF-8 names are fine */
    assert_int_equal(upload(f, "?name=caf%C3%A9.tsv", TSV_OK, id, &r), 201);
    assert_string_equal(json_str(r.json, "name"), "caf\xc3\xa9.tsv");
    resp_free(&r);

    /* an echoed path with bytes that are not UTF-8 */
    http_get(f, "/jobs/%FF%FE%C3", &r);
    expect_error(&r, 400, "invalid_id");
    expect_utf8(&r);
    resp_free(&r);
    http_get(f, "/nothing/%FF", &r);
    expect_error(&r, 404, "not_found");
    expect_utf8(&r);
    resp_free(&r);

    /* a record written before names were checked */
    store_dataset d = {0};
    d.name = "bad\xff\xfename.tsv";
    d.format = "tsv";
    d.rows = 1;
    d.bytes = 1;
    memset(d.sha256, 'a', 64);
    d.path = "/nonexistent";
    char err[ERRLEN], got[STORE_ID_SIZE];
    assert_int_equal(store_dataset_create(f->st, &d, got, err, sizeof err), 0);
    http_get(f, "/datasets", &r);
    assert_int_equal(r.status, 200);
    expect_utf8(&r);
    assert_non_null(strstr(r.body, "bad\xef\xbf\xbd\xef\xbf\xbdname.tsv"));
    resp_free(&r);
}

static void test_openapi_coverage(void **state) {
    fixture *f = *state;
    http_resp r;
    http_get(f, "/openapi.json", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(r.json);
    const cJSON *paths = cJSON_GetObjectItem(r.json, "paths");
    assert_non_null(paths);
    for (int i = 0; i < api_route_count; i++) {
        char method[16];
        snprintf(method, sizeof method, "%s", api_routes[i].method);
        for (char *c = method; *c; c++) *c = (char)(*c - 'A' + 'a');
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(paths, api_routes[i].pattern), method);
        if (!op)
            fail_msg("route %s %s is not in openapi.json", api_routes[i].method,
                     api_routes[i].pattern);
        /* Guarded routes say so. */
        bool doc_auth = cJSON_GetObjectItem(op, "security") != NULL;
        assert_int_equal(doc_auth, (api_routes[i].flags & ROUTE_AUTH) != 0);
    }
    static const char *const verbs[] = {"get",     "put",  "post",  "delete",
                                        "options", "head", "patch", "trace"};
    const cJSON *path;
    int operations = 0;
    cJSON_ArrayForEach (path, paths) {
        for (size_t v = 0; v < sizeof verbs / sizeof verbs[0]; v++) {
            if (!cJSON_GetObjectItemCaseSensitive(path, verbs[v])) continue;
            operations++;
            bool found = false;
            for (int i = 0; i < api_route_count && !found; i++)
                found = strcmp(api_routes[i].pattern, path->string) == 0 &&
                        strcasecmp(api_routes[i].method, verbs[v]) == 0;
            if (!found)
                fail_msg("openapi.json documents %s %s, which is not a route", verbs[v],
                         path->string);
        }
    }
    assert_int_equal(operations, api_route_count);
    check_refs(r.json, r.json);
    /* The job spec schema comes from the spec module's field table. */
    const cJSON *js = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "components"), "schemas"), "JobSpec");
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(js, "properties"), "model"));
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(js, "properties"), "epochs"));
    /* Fixed defaults as values, lookups as x-default-by (what the dashboard's
     * form shows), the same the parser applies. */
    const cJSON *props = cJSON_GetObjectItem(js, "properties");
    assert_int_equal((int)json_num(cJSON_GetObjectItem(props, "batch_size"), "default"), 32);
    assert_true(cJSON_IsFalse(
        cJSON_GetObjectItem(cJSON_GetObjectItem(props, "length_bucketing"), "default")));
    const cJSON *rank_by = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(props, "rank"), "x-default-by"), "method");
    assert_int_equal((int)json_num(rank_by, "aflora"), 4);
    assert_int_equal((int)json_num(rank_by, "elora"), 1024);
    assert_int_equal((int)json_num(rank_by, "lora"), 8);
    assert_null(cJSON_GetObjectItem(rank_by, "full"));
    const cJSON *metric_by = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(props, "metric"), "x-default-by"), "task");
    assert_string_equal(json_str(metric_by, "classification"), "accuracy");
    assert_string_equal(json_str(metric_by, "regression"), "pearson");
    resp_free(&r);

    /* The embedded copy is the file (rerun api/embed_openapi.sh if not). */
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s", __FILE__);
    char *slash = strrchr(file, '/');
    snprintf(slash ? slash + 1 : file, sizeof file - (size_t)(slash ? slash + 1 - file : 0),
             "../api/openapi.json");
    size_t len;
    char *text = read_file(file, &len);
    if (!text) fail_msg("cannot read %s", file);
    if (strcmp(text, api_openapi_json) != 0)
        fail_msg("api/openapi_gen.c is stale: run api/embed_openapi.sh");
    free(text);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ERROR); /* the 5xx the tests provoke are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test_setup_teardown(test_ustar_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routing_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_token, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_dataset_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_open_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freezing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adapter_download, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_model_download, setup, teardown),
        cmocka_unit_test_setup_teardown(test_predict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_adapter_from_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_adapter_job_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_models, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_on_route_without_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_names_are_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openapi_coverage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
