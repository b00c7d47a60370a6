/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <unistd.h>

#include "base/atomicfile.h"

void tiny_config(aflo_config *c, bool roberta) {
    memset(c, 0, sizeof *c);
    strcpy(c->model_type, roberta ? "roberta" : "bert");
    c->vocab_size = 30;
    c->hidden_size = 8;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 2;
    c->intermediate_size = 12;
    c->max_position_embeddings = 16;
    c->type_vocab_size = 2;
    c->pad_token_id = roberta ? 1 : 0;
    c->roberta_positions = roberta;
    c->layer_norm_eps = 1e-5f;
    c->hidden_dropout_prob = 0.1f;
    c->attention_probs_dropout_prob = 0.1f;
}

int tmpdir_setup(void **state) {
    char *d = strdup("/tmp/aflo_test_XXXXXX");
    if (!d || !mkdtemp(d)) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int tmpdir_teardown(void **state) {
    char *d = *state;
    nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    return 0;
}

void path_in(char *out, size_t cap, void **state, const char *name) {
    snprintf(out, cap, "%s/%s", (const char *)*state, name);
}

int count_atomic_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += atomic_file_is_temp(e->d_name);
    closedir(d);
    return n;
}

int limit_file_size(file_size_limit *l, rlim_t bytes) {
    if (getrlimit(RLIMIT_FSIZE, &l->old) != 0) return -1;
    struct rlimit lim = l->old;
    lim.rlim_cur = bytes;
    l->prev = signal(SIGXFSZ, SIG_IGN);
    return setrlimit(RLIMIT_FSIZE, &lim);
}

int unlimit_file_size(file_size_limit *l) {
    int rc = setrlimit(RLIMIT_FSIZE, &l->old);
    signal(SIGXFSZ, l->prev);
    return rc;
}

static atomic_int seam_dir_errno; /* 0: directories sync for real */
static atomic_int seam_dir_calls, seam_file_calls;

static int counting_fsync(int fd) {
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        atomic_fetch_add(&seam_dir_calls, 1);
        int e = atomic_load(&seam_dir_errno);
        if (e) {
            errno = e;
            return -1;
        }
    } else {
        atomic_fetch_add(&seam_file_calls, 1);
    }
    return fsync(fd);
}

int fsync_seam_setup(void **state) {
    fsync_fail_dirs(0);
    fsync_counts_reset();
    atomic_file_fsync = counting_fsync;
    return tmpdir_setup(state);
}

int fsync_seam_teardown(void **state) {
    atomic_file_fsync = fsync;
    return tmpdir_teardown(state);
}

void fsync_fail_dirs(int e) { atomic_store(&seam_dir_errno, e); }

void fsync_counts_reset(void) {
    atomic_store(&seam_dir_calls, 0);
    atomic_store(&seam_file_calls, 0);
}

int fsync_dir_calls(void) { return atomic_load(&seam_dir_calls); }
int fsync_file_calls(void) { return atomic_load(&seam_file_calls); }

char *read_test_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}
