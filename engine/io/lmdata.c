/* lmdata.c — causal-LM JSON Lines rows into a labelled dataset (lmdata.h).
 *
 * Per line: parse, pick the row's form from its keys (a table of forms and
 * the keys that mark them), render it to (prompt, completion) texts or take
 * its ids, or render a chat row with the tokenizer's chat template
 * (tokenizer/chat_template.h), tokenise, join with BOS/EOS, mask the
 * prompt's labels, cut at
 * max_seq_len, and append. Everything goes into a dataset of its own that
 * replaces the caller's only when the whole file passed. */
#include "io/lmdata.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "base/folder.h"
#include "base/json.h"
#include "tokenizer/chat_template.h"

/* Larger than any fine-tuning set meant for a CPU. */
#define LMDATA_MAX_BYTES ((size_t)1 << 30)

/* Stanford Alpaca's two prompts (its train.py PROMPT_DICT). */
static const char alpaca_with_input[] =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%.*s\n\n### Input:\n%.*s\n\n### Response:";
static const char alpaca_no_input[] =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n%.*s\n\n### Response:";

char *lmdata_alpaca_prompt(const char *instruction, size_t ilen, const char *input, size_t inlen) {
    bool with = input && inlen > 0;
    size_t cap = sizeof alpaca_with_input + ilen + inlen;
    char *out = malloc(cap);
    if (!out) return NULL;
    if (with)
        snprintf(out, cap, alpaca_with_input, (int)ilen, instruction, (int)inlen, input);
    else
        snprintf(out, cap, alpaca_no_input, (int)ilen, instruction);
    return out;
}

/* The keys that mark each form: the first is required and tells the form,
 * the others are required too (NULL when none). */
static const struct {
    const char *key, *also, *name;
    const char *id; /* lmdata_form_name */
} forms[LMDATA_FORM_COUNT] = {
    [LMDATA_TEXT] = {"text", NULL, "text", "text"},
    [LMDATA_PROMPT_COMPLETION] = {"prompt", "completion", "prompt/completion", "prompt_completion"},
    [LMDATA_ALPACA] = {"instruction", "output", "instruction/input/output", "alpaca"},
    [LMDATA_TOKENS] = {"input_ids", NULL, "input_ids", "input_ids"},
    [LMDATA_CHAT] = {"messages", NULL, "chat", "chat"},
};

const char *lmdata_form_name(lmdata_form f) {
    return f >= 0 && f < LMDATA_FORM_COUNT ? forms[f].id : "?";
}

int lmdata_form_from_name(const char *name, lmdata_form *f) {
    for (int i = 0; name && i < LMDATA_FORM_COUNT; i++)
        if (strcmp(forms[i].id, name) == 0) {
            *f = (lmdata_form)i;
            return 0;
        }
    return -1;
}

typedef struct {
    const char *name;
    const tokenizer *tok;
    const lmdata_opts *o;
    aflo_dataset *d;
    lmdata_stats *st;
    int32_t *ids, *labels; /* max_seq_len + growth room */
    size_t cap;
    char *err;
    size_t errlen;
    int line;
    chat_template chat; /* parsed at the first chat row */
    bool have_chat;
    size_t prompt_end; /* render: tokens of [BOS] prompt in the row */
} ctx;

static int row_err(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int row_err(ctx *c, const char *fmt, ...) {
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return set_err(c->err, c->errlen, "%s: line %d: %s", c->name, c->line, what);
}

/* Room for n ids in ids/labels. */
static int reserve(ctx *c, size_t n) {
    if (n <= c->cap) return 0;
    size_t cap = c->cap ? c->cap : 256;
    while (cap < n) cap *= 2;
    int32_t *a = realloc(c->ids, cap * sizeof *a);
    if (!a) return -1;
    c->ids = a;
    int32_t *b = realloc(c->labels, cap * sizeof *b);
    if (!b) return -1;
    c->labels = b;
    c->cap = cap;
    return 0;
}

/* Append id with its label (LABEL_IGNORE when masked). */
static int push(ctx *c, size_t *n, int32_t id, bool loss) {
    if (reserve(c, *n + 1)) return -1;
    c->ids[*n] = id;
    c->labels[*n] = loss ? id : LABEL_IGNORE;
    (*n)++;
    return 0;
}

/* Tokenise text and append it. */
static int push_text(ctx *c, size_t *n, const char *text, size_t len, bool loss) {
    int32_t *ids = NULL;
    size_t k = 0;
    char terr[256];
    if (tokenizer_tokenize(c->tok, text, len, &ids, &k, terr, sizeof terr))
        return row_err(c, "%s", terr);
    int rc = reserve(c, *n + k);
    for (size_t i = 0; rc == 0 && i < k; i++) push(c, n, ids[i], loss);
    free(ids);
    return rc ? row_err(c, "out of memory") : 0;
}

/* The string value of key, or an error naming it. */
static int get_string(ctx *c, const json_value *row, const char *key, bool required, const char **s,
                      size_t *len) {
    const json_value *v = json_get(row, key);
    *s = NULL;
    *len = 0;
    if (!v || (!required && json_type_of(v) == JSON_NULL))
        return required ? row_err(c, "\"%s\" is missing", key) : 0;
    if (json_type_of(v) != JSON_STRING)
        return row_err(c, "\"%s\" must be a string, got %s", key, json_type_name(json_type_of(v)));
    *s = json_string(v, len);
    return 0;
}

/* [BOS] prompt completion [EOS], the labels of BOS and the prompt masked
 * unless prompt_loss. */
static int render(ctx *c, size_t *n, bool prompt_loss, const char *prompt, size_t plen,
                  const char *comp, size_t clen) {
    if (tokenizer_adds_bos(c->tok) && tokenizer_bos_id(c->tok) >= 0 &&
        push(c, n, tokenizer_bos_id(c->tok), prompt_loss))
        return row_err(c, "out of memory");
    if (plen && push_text(c, n, prompt, plen, prompt_loss)) return -1;
    c->prompt_end = *n;
    if (clen && push_text(c, n, comp, clen, true)) return -1;
    if (tokenizer_eos_id(c->tok) >= 0 && push(c, n, tokenizer_eos_id(c->tok), true))
        return row_err(c, "out of memory");
    return 0;
}

/* input_ids (and labels) as given, checked. */
static int take_ids(ctx *c, const json_value *row, size_t *n) {
    const json_value *ids = json_get(row, "input_ids"), *labels = json_get(row, "labels");
    if (json_type_of(ids) != JSON_ARRAY || json_len(ids) == 0)
        return row_err(c, "\"input_ids\" must be a non-empty array of token ids");
    size_t k = json_len(ids);
    if (labels && (json_type_of(labels) != JSON_ARRAY || json_len(labels) != k))
        return row_err(c, "\"labels\" must be an array as long as \"input_ids\" (%zu)", k);
    if (reserve(c, k)) return row_err(c, "out of memory");
    for (size_t i = 0; i < k; i++) {
        const json_value *v = json_at(ids, i);
        int64_t id = json_is_int(v) ? json_int(v) : -1;
        if (!json_is_int(v) || id < 0 || id >= c->o->vocab_size)
            return row_err(c, "input_ids[%zu] is not a token id below the vocabulary size %d", i,
                           c->o->vocab_size);
        c->ids[i] = (int32_t)id;
        c->labels[i] = (int32_t)id;
        if (!labels) continue;
        v = json_at(labels, i);
        int64_t lab = json_is_int(v) ? json_int(v) : -1;
        if (!json_is_int(v) || (lab != LABEL_IGNORE && (lab < 0 || lab >= c->o->vocab_size)))
            return row_err(c, "labels[%zu] must be a token id below %d or %d", i, c->o->vocab_size,
                           LABEL_IGNORE);
        c->labels[i] = (int32_t)lab;
    }
    *n = k;
    return 0;
}

/* The tokenizer's chat template, recognised once. */
static int chat_template_of(ctx *c) {
    if (c->have_chat) return 0;
    const char *src = tokenizer_chat_template(c->tok);
    if (!src)
        return row_err(c, "chat rows need the model's chat template, and the tokenizer has none "
                          "(no \"chat_template\" in tokenizer_config.json)");
    char terr[400];
    if (chat_template_parse(src, &c->chat, terr, sizeof terr)) return row_err(c, "%s", terr);
    c->have_chat = true;
    return 0;
}

/* The messages of a chat row, checked, into m (n of them, malloc'd). */
static int chat_messages(ctx *c, const json_value *row, chat_message **m, size_t *n) {
    char terr[400];
    if (chat_messages_from_json(json_get(row, "messages"), m, n, terr, sizeof terr))
        return row_err(c, "%s", terr);
    for (size_t i = 0; i < *n; i++)
        if ((*m)[i].role == CHAT_ASSISTANT) return 0;
    return row_err(c, "no assistant message: a chat row needs an answer to train on");
}

/* A chat row: the template's text, tokenised span by span, loss on the
 * assistant turns (all of it with train_on_inputs). No BOS/EOS of the
 * tokenizer's: the template writes its own. */
static int take_chat(ctx *c, const json_value *row, size_t *n) {
    chat_message *m = NULL;
    size_t nm;
    chat_rendered r;
    char terr[400];
    int rc = -1;
    if (chat_template_of(c) || chat_messages(c, row, &m, &nm)) goto out_m;
    int32_t bos = tokenizer_bos_id(c->tok), eos = tokenizer_eos_id(c->tok);
    if (chat_render(&c->chat, m, nm, false, bos >= 0 ? tokenizer_id_to_token(c->tok, bos) : NULL,
                    eos >= 0 ? tokenizer_id_to_token(c->tok, eos) : NULL, &r, terr, sizeof terr)) {
        row_err(c, "%s", terr);
        goto out_m;
    }
    rc = 0;
    for (size_t i = 0; rc == 0 && i < r.n; i++)
        rc = push_text(c, n, r.text + r.spans[i].off, r.spans[i].len,
                       r.spans[i].train || c->o->train_on_inputs);
    chat_rendered_free(&r);
out_m:
    free(m);
    return rc;
}

/* Which form the row is: exactly one must match. */
static int form_of(ctx *c, const json_value *row, lmdata_form *form) {
    int found = -1;
    for (int f = 0; f < LMDATA_FORM_COUNT; f++) {
        bool has = json_get(row, forms[f].key) || (forms[f].also && json_get(row, forms[f].also));
        if (!has) continue;
        if (found >= 0)
            return row_err(c, "the row mixes the %s and %s forms", forms[found].name,
                           forms[f].name);
        found = f;
    }
    if (found < 0)
        return row_err(c, "no row form: expected \"text\", \"prompt\" + \"completion\", "
                          "\"instruction\" (+ \"input\") + \"output\", \"input_ids\" or "
                          "\"messages\"");
    *form = (lmdata_form)found;
    return 0;
}

/* The tokens of row (of this form) into c->ids / c->labels, *n of them;
 * *ref / *reflen the completion text to judge (prompt/completion and Alpaca
 * rows), else NULL. */
static int build_row(ctx *c, const json_value *row, lmdata_form form, size_t *n, const char **ref,
                     size_t *reflen) {
    const char *a, *b = NULL, *x;
    size_t alen, blen = 0, xlen;
    *n = 0;
    *ref = NULL;
    *reflen = 0;
    if (form != LMDATA_TOKENS && !c->tok)
        return row_err(c,
                       "the model has no tokenizer files: only {\"input_ids\"} rows can be used");
    switch (form) {
    case LMDATA_TEXT:
        return get_string(c, row, "text", true, &a, &alen) || render(c, n, true, NULL, 0, a, alen)
                   ? -1
                   : 0;
    case LMDATA_PROMPT_COMPLETION:
        if (get_string(c, row, "prompt", true, &a, &alen) ||
            get_string(c, row, "completion", true, &b, &blen) ||
            render(c, n, c->o->train_on_inputs, a, alen, b, blen))
            return -1;
        break;
    case LMDATA_ALPACA: {
        if (get_string(c, row, "instruction", true, &a, &alen) ||
            get_string(c, row, "input", false, &x, &xlen) ||
            get_string(c, row, "output", true, &b, &blen))
            return -1;
        char *prompt = lmdata_alpaca_prompt(a, alen, x, xlen);
        if (!prompt) return row_err(c, "out of memory");
        int r = render(c, n, c->o->train_on_inputs, prompt, strlen(prompt), b, blen);
        free(prompt);
        if (r) return -1;
        break;
    }
    case LMDATA_TOKENS: return take_ids(c, row, n);
    case LMDATA_CHAT: return take_chat(c, row, n);
    case LMDATA_FORM_COUNT: break;
    }
    *ref = b;
    *reflen = blen;
    return 0;
}

/* A parsed JSON object row and its form, or an error. */
static json_value *parse_row(ctx *c, const char *line, size_t len, lmdata_form *form) {
    char jerr[200];
    json_value *row = json_parse(line, len, JSON_DEFAULT_MAX_DEPTH, jerr, sizeof jerr);
    if (!row) {
        row_err(c, "not valid JSON: %s", jerr);
        return NULL;
    }
    if (json_type_of(row) != JSON_OBJECT) {
        row_err(c, "a row must be a JSON object, got %s", json_type_name(json_type_of(row)));
        json_free(row);
        return NULL;
    }
    if (form_of(c, row, form)) {
        json_free(row);
        return NULL;
    }
    return row;
}

static int add_row(ctx *c, const char *line, size_t len) {
    lmdata_form form = LMDATA_TEXT;
    json_value *row = parse_row(c, line, len, &form);
    if (!row) return -1;
    int rc = -1;
    size_t n = 0, blen;
    const char *b;
    if (build_row(c, row, form, &n, &b, &blen)) goto done;
    if (n > (size_t)c->o->max_seq_len) {
        n = (size_t)c->o->max_seq_len;
        c->st->truncated++;
    }
    long targets = 0; /* label t is predicted from position t-1: never the first */
    for (size_t i = 1; i < n; i++) targets += c->labels[i] != LABEL_IGNORE;
    if (targets == 0) {
        c->st->skipped++;
        rc = 0;
        goto done;
    }
    if (dataset_add_lm(c->d, c->ids, c->labels, (int)n)) {
        row_err(c, "out of memory");
        goto done;
    }
    if (c->o->keep_references) {
        /* a completion to judge: the row has one, and its whole prompt
         * (at least one token to generate from) survived the cut */
        bool judged = (form == LMDATA_PROMPT_COMPLETION || form == LMDATA_ALPACA) &&
                      c->prompt_end >= 1 && c->prompt_end <= n;
        if (dataset_set_reference(c->d, judged ? (int)c->prompt_end : 0, judged ? b : NULL,
                                  judged ? blen : 0)) {
            row_err(c, "out of memory");
            goto done;
        }
        c->st->references += judged;
    }
    c->st->rows++;
    c->st->by_form[form]++;
    c->st->tokens += (long)n;
    c->st->loss_tokens += targets;
    rc = 0;
done:
    json_free(row);
    return rc;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

int lmdata_parse(const char *text, size_t len, const char *name, const tokenizer *tok,
                 const lmdata_opts *o, aflo_dataset *d, lmdata_stats *stats, char *err,
                 size_t errlen) {
    lmdata_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (o->max_seq_len < 2)
        return set_err(err, errlen, "max_seq_len: a causal LM needs at least 2 tokens, got %d",
                       o->max_seq_len);
    lmdata_opts opts = *o;
    if (opts.vocab_size <= 0 && tok) opts.vocab_size = tokenizer_vocab_size(tok);
    if (opts.vocab_size <= 0)
        return set_err(err, errlen, "%s: no vocabulary size (no tokenizer and none given)", name);
    aflo_dataset out;
    dataset_init(&out);
    ctx c = {
        .name = name, .tok = tok, .o = &opts, .d = &out, .st = stats, .err = err, .errlen = errlen};
    int rc = 0;
    /* a UTF-8 byte order mark is not part of the first row */
    size_t pos = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    while (pos < len && rc == 0) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        c.line++;
        if (!blank(text + pos, end - pos)) rc = add_row(&c, text + pos, end - pos);
        pos = end + 1;
    }
    free(c.ids);
    free(c.labels);
    chat_template_free(&c.chat);
    if (rc == 0 && out.n == 0)
        rc = set_err(err, errlen, "%s: no example with a token to learn (%d rows skipped)", name,
                     stats->skipped);
    if (rc) {
        dataset_free(&out);
        return -1;
    }
    dataset_free(d);
    *d = out;
    return 0;
}

int lmdata_load(const char *path, const tokenizer *tok, const lmdata_opts *o, aflo_dataset *d,
                lmdata_stats *stats, char *err, size_t errlen) {
    size_t len;
    char *text = read_text_file(path, LMDATA_MAX_BYTES, &len, err, errlen);
    if (!text) return -1;
    int rc = lmdata_parse(text, len, path, tok, o, d, stats, err, errlen);
    free(text);
    return rc;
}

void lmdata_describe(const lmdata_stats *s, int max_seq_len, char *buf, size_t cap) {
    size_t used = 0;
#define ADD(...)                                                \
    do {                                                        \
        if (used >= cap) break;                                 \
        int k_ = snprintf(buf + used, cap - used, __VA_ARGS__); \
        if (k_ > 0) used += (size_t)k_;                         \
    } while (0)
    if (cap == 0) return;
    buf[0] = '\0';
    ADD("%d rows (", s->rows);
    bool first = true;
    for (int f = 0; f < LMDATA_FORM_COUNT; f++) {
        if (!s->by_form[f]) continue;
        ADD("%s%s %d", first ? "" : ", ", forms[f].name, s->by_form[f]);
        first = false;
    }
    ADD("), %ld tokens, %ld with loss", s->tokens, s->loss_tokens);
    if (s->truncated) ADD("; %d cut at max_seq_len %d", s->truncated, max_seq_len);
    if (s->skipped) ADD("; %d skipped: no target token left", s->skipped);
    if (s->references) ADD("; %d with a completion to judge", s->references);
#undef ADD
}

/* ---- upload checks ----------------------------------------------------------- */

static bool all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

/* A chat row's messages without a template: roles known (from_json), no
 * empty turn, system only first, an assistant answer. */
static int check_chat(ctx *c, const json_value *row) {
    chat_message *m = NULL;
    size_t n;
    int rc = chat_messages(c, row, &m, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (all_space(m[i].content, m[i].len))
            rc = row_err(c, "messages[%zu]: the %s turn is empty", i, chat_role_names[m[i].role]);
        else if (m[i].role == CHAT_SYSTEM && i > 0)
            rc = row_err(c, "messages[%zu]: a system message may only come first", i);
    }
    free(m);
    return rc;
}

/* One row of an upload: its form, checked; its tokens counted when the row
 * can be (a tokenizer, or input_ids). *n = -1 when not counted. */
static int check_row(ctx *c, const lmdata_check_opts *o, const char *line, size_t len,
                     lmdata_form *form, long *n) {
    *n = -1;
    size_t max_line = o->max_line_bytes ? o->max_line_bytes : LMDATA_CHECK_MAX_LINE;
    if (!o->tok && len > max_line)
        return row_err(c, "the row is %zu bytes, over the limit of %zu per line", len, max_line);
    json_value *row = parse_row(c, line, len, form);
    if (!row) return -1;
    int rc = 0;
    size_t k = 0, blen;
    const char *b;
    if (*form == LMDATA_CHAT) rc = check_chat(c, row);
    if (rc == 0 && (o->tok || *form == LMDATA_TOKENS)) {
        rc = build_row(c, row, *form, &k, &b, &blen);
        if (rc == 0) *n = (long)k;
    } else if (rc == 0) {
        /* no tokenizer: the fields' types only */
        const char *a, *x;
        size_t alen, xlen;
        switch (*form) {
        case LMDATA_TEXT: rc = get_string(c, row, "text", true, &a, &alen); break;
        case LMDATA_PROMPT_COMPLETION:
            rc = get_string(c, row, "prompt", true, &a, &alen) ||
                         get_string(c, row, "completion", true, &b, &blen)
                     ? -1
                     : 0;
            break;
        case LMDATA_ALPACA:
            rc = get_string(c, row, "instruction", true, &a, &alen) ||
                         get_string(c, row, "input", false, &x, &xlen) ||
                         get_string(c, row, "output", true, &b, &blen)
                     ? -1
                     : 0;
            break;
        default: break;
        }
    }
    int max_ids = o->max_ids > 0 ? o->max_ids : LMDATA_CHECK_MAX_IDS;
    if (rc == 0 && !o->tok && *form == LMDATA_TOKENS && *n > max_ids)
        rc = row_err(c, "\"input_ids\" has %ld ids, over the limit of %d", *n, max_ids);
    json_free(row);
    return rc;
}

int lmdata_check(const char *text, size_t len, const char *name, const lmdata_check_opts *o,
                 lmdata_check_result *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    lmdata_opts opts = {.max_seq_len = INT32_MAX, .vocab_size = o->vocab_size};
    if (opts.vocab_size <= 0 && o->tok) opts.vocab_size = tokenizer_vocab_size(o->tok);
    if (opts.vocab_size <= 0) opts.vocab_size = INT32_MAX; /* ids checked for sign only */
    lmdata_stats st;
    ctx c = {.name = name, .tok = o->tok, .o = &opts, .st = &st, .err = err, .errlen = errlen};
    int rc = 0, first_line = 0;
    bool counted = true;
    size_t pos = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    while (pos < len && rc == 0) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        c.line++;
        if (!blank(text + pos, end - pos)) {
            lmdata_form form;
            long n;
            rc = check_row(&c, o, text + pos, end - pos, &form, &n);
            if (rc == 0 && r->rows > 0 && form != r->form)
                rc = row_err(&c, "a %s row, but line %d is %s: a dataset holds rows of one form",
                             forms[form].name, first_line, forms[r->form].name);
            if (rc == 0) {
                if (r->rows++ == 0) {
                    r->form = form;
                    first_line = c.line;
                }
                if (n < 0) counted = false;
                if (n > 0) r->tokens += n;
                if (n > r->longest) r->longest = (int)n;
                if (o->context_length > 0 && n > o->context_length && r->over_context++ == 0)
                    r->first_over_line = c.line;
            }
        }
        pos = end + 1;
    }
    free(c.ids);
    free(c.labels);
    chat_template_free(&c.chat);
    if (rc) return -1;
    if (r->rows == 0) return set_err(err, errlen, "%s: no rows (the file is empty)", name);
    if (!counted) {
        r->tokens = -1;
        r->longest = 0;
    }
    return 0;
}
