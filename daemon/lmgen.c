/* lmgen.c — loading, prompts, incremental text and the report of a
 * generation (see lmgen.h). */
#include "lmgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/errmsg.h"
#include "base/json.h"
#include "io/adapter_native.h"
#include "io/adapter_peft.h"
#include "io/hfmodel.h"
#include "io/llama2c.h"
#include "tokenizer/chat_template.h"

static const char REPLACEMENT_CHAR[] = "\xef\xbf\xbd"; /* U+FFFD */

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_file(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    return snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path &&
           stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- loading ------------------------------------------------------------------ */

/* The adapter's config (method full without one), the adapter folder
 * `aflorad run` writes resolved to its native file (into native). */
aflo_model *lmgen_load(const char *model, const char *adapter, char *err, size_t errlen) {
    aflo_adapter_config ac = {.method = METHOD_FULL};
    char native[4096];
    bool peft = adapter && is_dir(adapter);
    if (peft && !has_file(adapter, PEFT_CONFIG_FILE)) {
        if (!has_file(adapter, "adapter.safetensors")) {
            set_err(err, errlen,
                    "adapter %s: a folder with neither adapter.safetensors (the adapter/ "
                    "folder `aflorad run` writes) nor %s (a PEFT folder)",
                    adapter, PEFT_CONFIG_FILE);
            return NULL;
        }
        snprintf(native, sizeof native, "%s/adapter.safetensors", adapter);
        adapter = native;
        peft = false;
    }
    if (peft && adapter_peft_read_config(adapter, &ac, NULL, 0, err, errlen)) return NULL;
    if (adapter && !peft) {
        adapter_native_meta meta;
        if (adapter_native_read_meta(adapter, &meta, err, errlen)) return NULL;
        ac = meta.ac;
        adapter_native_meta_free(&meta);
    }
    aflo_model *m;
    if (is_dir(model)) {
        aflo_config c;
        if (hfmodel_read_config(model, &c, err, errlen)) return NULL;
        m = hfmodel_load(model, &ac, TASK_CAUSAL_LM, c.vocab_size, 0, NULL, err, errlen);
    } else {
        m = llama2c_load(model, &ac, 0, err, errlen);
    }
    if (!m || !adapter) return m;
    int rc = peft ? adapter_import_peft(m, adapter, NULL, err, errlen)
                  : adapter_import_native(m, adapter, err, errlen);
    if (rc == 0) return m;
    model_free(m);
    return NULL;
}

/* ---- prompts ------------------------------------------------------------------ */

/* Append the ids of text to *ids (*n of them, room for *cap). */
static int append_tokens(const tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n,
                         size_t *cap, char *err, size_t errlen) {
    int32_t *t = NULL;
    size_t nt = 0;
    if (tokenizer_tokenize(tok, text, len, &t, &nt, err, errlen)) return -1;
    if ((size_t)*n + nt + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < (size_t)*n + nt + 1) c *= 2;
        int32_t *g = realloc(*ids, c * sizeof *g);
        if (!g) {
            free(t);
            return set_err(err, errlen, "out of memory");
        }
        *ids = g;
        *cap = c;
    }
    if (nt) memcpy(*ids + *n, t, nt * sizeof *t);
    *n += (int)nt;
    free(t);
    return 0;
}

int lmgen_prompt_text(const tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n,
                      char *err, size_t errlen) {
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    int32_t bos = tokenizer_adds_bos(tok) ? tokenizer_bos_id(tok) : -1;
    if (bos >= 0) {
        if (!(*ids = malloc(64 * sizeof **ids))) return set_err(err, errlen, "out of memory");
        cap = 64;
        (*ids)[(*n)++] = bos;
    }
    if (append_tokens(tok, text, len, ids, n, &cap, err, errlen) == 0) return 0;
    free(*ids);
    *ids = NULL;
    return -1;
}

#define NO_TEMPLATE                                                            \
    "messages need the model's chat template, and the tokenizer has none (no " \
    "\"chat_template\" in tokenizer_config.json)"

int lmgen_chat_template_check(const tokenizer *tok, char *err, size_t errlen) {
    const char *src = tokenizer_chat_template(tok);
    if (!src) return set_err(err, errlen, NO_TEMPLATE);
    chat_template ct = {0};
    int rc = chat_template_parse(src, &ct, err, errlen);
    chat_template_free(&ct);
    return rc;
}

int lmgen_prompt_messages(const tokenizer *tok, const json_value *messages, int32_t **ids, int *n,
                          int32_t *eot, char *err, size_t errlen) {
    chat_template ct = {0};
    chat_rendered r = {0};
    chat_message *m = NULL;
    size_t nm = 0, cap = 0;
    char merr[512];
    int rc = -1;
    *ids = NULL;
    *n = 0;
    *eot = -1;
    const char *src = tokenizer_chat_template(tok);
    if (!src) return set_err(err, errlen, NO_TEMPLATE);
    int32_t bos = tokenizer_bos_id(tok), eos = tokenizer_eos_id(tok);
    const char *eos_text = eos >= 0 ? tokenizer_id_to_token(tok, eos) : NULL;
    if (chat_template_parse(src, &ct, err, errlen)) return -1;
    if (chat_messages_from_json(messages, &m, &nm, merr, sizeof merr) ||
        chat_render(&ct, m, nm, true, bos >= 0 ? tokenizer_id_to_token(tok, bos) : NULL, eos_text,
                    &r, merr, sizeof merr)) {
        set_err(err, errlen, "%s", merr);
        goto done;
    }
    for (size_t i = 0; i < r.n; i++)
        if (append_tokens(tok, r.text + r.spans[i].off, r.spans[i].len, ids, n, &cap, err, errlen))
            goto done;
    const char *end = chat_end_of_turn(&ct, eos_text);
    int32_t *e = NULL;
    size_t ne = 0;
    if (end && tokenizer_tokenize(tok, end, strlen(end), &e, &ne, err, errlen)) goto done;
    if (ne == 1) *eot = e[0];
    free(e);
    rc = 0;
done:
    if (rc) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    chat_rendered_free(&r);
    free(m);
    chat_template_free(&ct);
    return rc;
}

/* Conversations in a request are small; deeper than this is not one. */
#define MESSAGES_MAX_DEPTH 8

int lmgen_prompt(const tokenizer *tok, const lmgen_request *req, int32_t **ids, int *n,
                 int32_t *eos_id, char *err, size_t errlen) {
    *ids = NULL;
    *n = 0;
    *eos_id = tok ? tokenizer_eos_id(tok) : -1;
    if (req->kind == LMGEN_PROMPT_IDS) {
        if (!(*ids = malloc((size_t)(req->n_ids > 0 ? req->n_ids : 1) * sizeof **ids)))
            return set_err(err, errlen, "out of memory");
        if (req->n_ids > 0) memcpy(*ids, req->ids, (size_t)req->n_ids * sizeof **ids);
        *n = req->n_ids;
        return 0;
    }
    const char *what = req->kind == LMGEN_PROMPT_TEXT ? "prompt" : "messages";
    if (!tok)
        return set_err(err, errlen,
                       "%s needs the model's tokenizer, and the model folder has none: give "
                       "prompt_ids instead",
                       what);
    if (req->kind == LMGEN_PROMPT_TEXT)
        return lmgen_prompt_text(tok, req->text, strlen(req->text), ids, n, err, errlen);
    char jerr[256];
    json_value *msgs =
        json_parse(req->text, strlen(req->text), MESSAGES_MAX_DEPTH, jerr, sizeof jerr);
    if (!msgs) return set_err(err, errlen, "messages: %s", jerr);
    int32_t eot;
    int rc = lmgen_prompt_messages(tok, msgs, ids, n, &eot, err, errlen);
    json_free(msgs);
    if (rc == 0 && eot >= 0) *eos_id = eot;
    return rc;
}

/* ---- incremental text --------------------------------------------------------- */

void lmgen_text_init(lmgen_text *t, const tokenizer *tok) { *t = (lmgen_text){.tok = tok}; }

void lmgen_text_free(lmgen_text *t) {
    free(t->ids);
    free(t->sent);
    free(t->piece);
    *t = (lmgen_text){0};
}

const char *lmgen_text_sent(const lmgen_text *t) { return t->sent ? t->sent : ""; }

static int reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *g = realloc(*buf, c);
    if (!g) return -1;
    *buf = g;
    *cap = c;
    return 0;
}

/* A SentencePiece byte-fallback token, "<0xNN>". */
static bool is_byte_token(const tokenizer *tok, int32_t id) {
    const char *s = tokenizer_id_to_token(tok, id);
    return s && strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>';
}

/* Decode the ids; hand out what follows the text already handed out: all
 * of it (final), or what comes before a trailing run of byte tokens and a
 * trailing run of U+FFFD. A run of byte tokens is read as UTF-8 as a whole,
 * one U+FFFD per byte when it is not valid, so its next byte can still
 * change what the run's first ones read as (HF's ByteFallback); a byte-level
 * BPE text only changes in its last, incomplete character, which reads as
 * U+FFFD until complete. */
static int emit(lmgen_text *t, bool final, const char **piece, char *err, size_t errlen) {
    char *text = NULL;
    size_t len = 0;
    int n = t->n;
    while (!final && n > 0 && is_byte_token(t->tok, t->ids[n - 1])) n--;
    if (tokenizer_decode(t->tok, t->ids, (size_t)n, 1, &text, &len, err, errlen)) return -1;
    size_t stable = len, rl = sizeof REPLACEMENT_CHAR - 1;
    while (!final && stable >= rl && memcmp(text + stable - rl, REPLACEMENT_CHAR, rl) == 0)
        stable -= rl;
    /* The decoders only change the end of their text: what was handed out
     * is a prefix. Were it ever not, nothing more is handed out rather than
     * text that contradicts it. */
    size_t add = stable > t->sent_len && memcmp(text, t->sent ? t->sent : "", t->sent_len) == 0
                     ? stable - t->sent_len
                     : 0;
    if (reserve(&t->piece, &t->piece_cap, add + 1) ||
        reserve(&t->sent, &t->sent_cap, t->sent_len + add + 1)) {
        free(text);
        return set_err(err, errlen, "out of memory");
    }
    memcpy(t->piece, text + t->sent_len, add);
    t->piece[add] = '\0';
    memcpy(t->sent + t->sent_len, t->piece, add + 1);
    t->sent_len += add;
    free(text);
    *piece = t->piece;
    return 0;
}

int lmgen_text_push(lmgen_text *t, int32_t id, const char **piece, char *err, size_t errlen) {
    if (t->n == t->cap) {
        int c = t->cap ? 2 * t->cap : 64;
        int32_t *g = realloc(t->ids, (size_t)c * sizeof *g);
        if (!g) return set_err(err, errlen, "out of memory");
        t->ids = g;
        t->cap = c;
    }
    t->ids[t->n++] = id;
    return emit(t, false, piece, err, errlen);
}

int lmgen_text_finish(lmgen_text *t, const char **piece, char *err, size_t errlen) {
    return emit(t, true, piece, err, errlen);
}

/* ---- a run -------------------------------------------------------------------- */

typedef struct {
    lmgen_text text;
    bool has_text;
    lmgen_token_fn fn;
    void *user;
    int failed; /* the text could not be made: stop */
    char *err;
    size_t errlen;
} run_state;

static int on_token(void *user, int32_t id, int index) {
    run_state *s = user;
    const char *piece = NULL;
    if (s->has_text && lmgen_text_push(&s->text, id, &piece, s->err, s->errlen)) {
        s->failed = 1;
        return 1;
    }
    return s->fn ? s->fn(s->user, id, piece, index) : 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int lmgen_run(aflo_model *m, const tokenizer *tok, const int32_t *prompt, int n_prompt,
              const gen_params *p, lmgen_token_fn fn, void *user, lmgen_report *rep, char *err,
              size_t errlen) {
    *rep = (lmgen_report){.n_prompt = n_prompt, .eos_id = p->eos_id};
    if (!(rep->prompt = malloc((size_t)(n_prompt > 0 ? n_prompt : 1) * sizeof *prompt)))
        return set_err(err, errlen, "out of memory");
    if (n_prompt > 0) memcpy(rep->prompt, prompt, (size_t)n_prompt * sizeof *prompt);
    run_state s = {.has_text = tok != NULL, .fn = fn, .user = user, .err = err, .errlen = errlen};
    lmgen_text_init(&s.text, tok);
    gen_params gp = *p;
    gp.on_token = on_token;
    gp.user = &s;
    double t0 = now_seconds();
    int rc = generate(m, prompt, n_prompt, &gp, &rep->r, err, errlen);
    rep->seconds = now_seconds() - t0;
    if (rc == 0 && s.failed) rc = -1; /* err is set */
    const char *rest;
    if (rc == 0 && tok && lmgen_text_finish(&s.text, &rest, err, errlen) == 0 && rest[0] && fn)
        fn(user, -1, rest, rep->r.n); /* the held-back end: a piece without a token */
    if (rc == 0 && tok && !(rep->text = strdup(lmgen_text_sent(&s.text)))) {
        set_err(err, errlen, "out of memory");
        rc = -1;
    }
    lmgen_text_free(&s.text);
    if (rc) lmgen_report_free(rep);
    return rc;
}

void lmgen_report_free(lmgen_report *rep) {
    gen_result_free(&rep->r);
    free(rep->prompt);
    rep->prompt = NULL;
    free(rep->text);
    rep->text = NULL;
}

static cJSON *ids_json(const int32_t *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

cJSON *lmgen_report_json(const lmgen_report *rep, bool details) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    bool ok = (rep->text ? cJSON_AddStringToObject(o, "text", rep->text)
                         : cJSON_AddNullToObject(o, "text")) != NULL;
    cJSON *ids = ok ? ids_json(rep->r.ids, rep->r.n) : NULL;
    ok = ok && cJSON_AddItemToObject(o, "ids", ids);
    if (!ok) cJSON_Delete(ids);
    ok = ok && cJSON_AddNumberToObject(o, "prompt_tokens", rep->n_prompt) &&
         cJSON_AddNumberToObject(o, "completion_tokens", rep->r.n) &&
         cJSON_AddStringToObject(o, "finish_reason", gen_finish_names[rep->r.finish]) &&
         cJSON_AddNumberToObject(o, "seconds", round(rep->seconds * 1e6) / 1e6);
    if (ok && details) {
        cJSON *pi = ids_json(rep->prompt, rep->n_prompt);
        ok = cJSON_AddItemToObject(o, "prompt_ids", pi) &&
             cJSON_AddNumberToObject(o, "eos_id", rep->eos_id);
        if (!ok && pi && !cJSON_GetObjectItem(o, "prompt_ids")) cJSON_Delete(pi);
    }
    if (ok) return o;
    cJSON_Delete(o);
    return NULL;
}
