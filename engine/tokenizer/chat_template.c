/* chat_template.c — chat template recognition and rendering
 * (chat_template.h).
 *
 * A table says, per family, which markers the template text must hold (and
 * which it must not: features rendered differently from what is written
 * here), and how the family writes a conversation. Two shapes cover the four
 * families: "header" templates (Llama-3, ChatML) open every message with a
 * role header and close it with an end token; "[INST]" templates (Llama-2,
 * Mistral) have no system turn, fold the system message into the first user
 * turn and close assistant turns with EOS. */
#include "tokenizer/chat_template.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "base/json.h"

const char *const chat_family_names[CHAT_FAMILY_COUNT] = {
    [CHAT_LLAMA2] = "llama2",
    [CHAT_MISTRAL] = "mistral",
    [CHAT_LLAMA3] = "llama3",
    [CHAT_CHATML] = "chatml",
};

const char *const chat_role_names[CHAT_ROLE_COUNT] = {
    [CHAT_SYSTEM] = "system",
    [CHAT_USER] = "user",
    [CHAT_ASSISTANT] = "assistant",
};

typedef struct {
    const char *need[4];  /* markers the template text holds (NULL-ended) */
    const char *avoid[4]; /* markers of variants rendered otherwise */
    bool inst;            /* [INST] shape, else header shape */
    bool strip;           /* contents stripped (Llama-2 .strip(), Llama-3 | trim) */
    bool bos_first;       /* BOS once, before everything */
    /* header shape: head_open role head_close content end after_end */
    const char *head_open, *head_close, *end, *after_end;
    /* [INST] shape: [BOS] user_open (sys_open sys sys_close) user user_close,
     * asst_open answer asst_close EOS */
    bool bos_each_user;
    const char *user_open, *user_close, *sys_open, *sys_close, *asst_open, *asst_close;
} family_spec;

static const family_spec families[CHAT_FAMILY_COUNT] = {
    [CHAT_LLAMA2] = {.need = {"[INST]", "<<SYS>>", "content.strip()"},
                     .avoid = {"DEFAULT_SYSTEM"},
                     .inst = true,
                     .strip = true,
                     .bos_each_user = true,
                     .user_open = "[INST] ",
                     .user_close = " [/INST]",
                     .sys_open = "<<SYS>>\n",
                     .sys_close = "\n<</SYS>>\n\n",
                     .asst_open = " ",
                     .asst_close = " "},
    [CHAT_MISTRAL] = {.need = {"' [INST] '", "' [/INST]'", "system_message"},
                      .avoid = {"<<SYS>>", "strip", "trim"},
                      .inst = true,
                      .bos_first = true,
                      .user_open = " [INST] ",
                      .user_close = " [/INST]",
                      .sys_open = "",
                      .sys_close = "\n\n",
                      .asst_open = " ",
                      .asst_close = ""},
    [CHAT_LLAMA3] = {.need = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "trim"},
                     .strip = true,
                     .bos_first = true,
                     .head_open = "<|start_header_id|>",
                     .head_close = "<|end_header_id|>\n\n",
                     .end = "<|eot_id|>",
                     .after_end = ""},
    [CHAT_CHATML] = {.need = {"<|im_start|>", "<|im_end|>"},
                     .avoid = {"strip", "trim"},
                     .head_open = "<|im_start|>",
                     .head_close = "\n",
                     .end = "<|im_end|>",
                     .after_end = "\n"},
};

/* Features of newer templates (tools, Llama-3.1's dated system block,
 * reasoning blocks) that no family here renders. */
static const char *const unsupported[] = {"tools", "Cutting Knowledge", "date_string", "<think>"};

/* The first 60 characters of s for a message: control characters shown as
 * spaces, not cut inside a UTF-8 sequence. */
static void quote_start(const char *s, char *buf, size_t cap) {
    size_t n = 0, chars = 0;
    while (s[n] && chars < 60 && n + 4 < cap) {
        size_t k = 1;
        unsigned char c = (unsigned char)s[n];
        if (c >= 0xC0) k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (strnlen(s + n, k) < k) break;
        for (size_t i = 0; i < k; i++) buf[n + i] = c < 0x20 ? ' ' : s[n + i];
        n += k;
        chars++;
    }
    buf[n] = '\0';
}

/* Qwen2-style ChatML writes "<|im_start|>system\n<text><|im_end|>\n" when
 * messages[0] is not a system message: <text>, unescaped from its Jinja
 * string literal, in *out (NULL when the template has no such turn). */
static int chatml_default_system(const char *src, char **out, char *err, size_t errlen) {
    static const char head[] = "<|im_start|>system";
    *out = NULL;
    const char *p = strstr(src, head);
    if (!p) return 0;
    if (!strstr(src, "!= 'system'") && !strstr(src, "!= \"system\""))
        return set_err(err, errlen,
                       "the ChatML chat template writes a system turn of its own under a "
                       "condition aflorad does not know (only \"messages[0]['role'] != "
                       "'system'\" is)");
    p += sizeof head - 1;
    if (*p == '\n')
        p++;
    else if (p[0] == '\\' && p[1] == 'n')
        p += 2;
    const char *e = strstr(p, "<|im_end|>");
    if (!e)
        return set_err(err, errlen, "the ChatML chat template's default system turn has no end");
    char *s = malloc((size_t)(e - p) + 1);
    if (!s) return set_err(err, errlen, "out of memory");
    size_t n = 0;
    for (const char *c = p; c < e; c++) {
        if (*c == '\\' && c + 1 < e) {
            c++;
            s[n++] = *c == 'n' ? '\n' : *c == 't' ? '\t' : *c;
        } else {
            s[n++] = *c;
        }
    }
    s[n] = '\0';
    *out = s;
    return 0;
}

int chat_template_parse(const char *src, chat_template *t, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    char start[256];
    quote_start(src, start, sizeof start);
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (strstr(src, unsupported[i]))
            return set_err(err, errlen,
                           "chat template \"%s...\" uses \"%s\", which aflorad does not render "
                           "(supported: plain llama2, mistral, llama3 and chatml templates)",
                           start, unsupported[i]);
    int found = -1;
    for (int f = 0; f < CHAT_FAMILY_COUNT; f++) {
        bool ok = true;
        for (int i = 0; ok && i < 4 && families[f].need[i]; i++)
            ok = strstr(src, families[f].need[i]) != NULL;
        for (int i = 0; ok && i < 4 && families[f].avoid[i]; i++)
            ok = strstr(src, families[f].avoid[i]) == NULL;
        if (!ok) continue;
        if (found >= 0)
            return set_err(err, errlen, "chat template \"%s...\" looks like both %s and %s", start,
                           chat_family_names[found], chat_family_names[f]);
        found = f;
    }
    if (found < 0)
        return set_err(err, errlen,
                       "unknown chat template \"%s...\": aflorad renders the llama2, mistral, "
                       "llama3 and chatml families (Llama-2 chat, Mistral Instruct, Llama-3 "
                       "Instruct, ChatML as Qwen2 and SmolLM)",
                       start);
    t->family = (chat_family)found;
    if (found == CHAT_CHATML) return chatml_default_system(src, &t->default_system, err, errlen);
    return 0;
}

void chat_template_free(chat_template *t) {
    free(t->default_system);
    t->default_system = NULL;
}

int chat_role_parse(const char *s, size_t len, chat_role *role) {
    for (int r = 0; r < CHAT_ROLE_COUNT; r++)
        if (strlen(chat_role_names[r]) == len && memcmp(chat_role_names[r], s, len) == 0) {
            *role = (chat_role)r;
            return 0;
        }
    return -1;
}

int chat_messages_from_json(const json_value *arr, chat_message **m, size_t *n, char *err,
                            size_t errlen) {
    *m = NULL;
    *n = json_len(arr);
    if (json_type_of(arr) != JSON_ARRAY || *n == 0)
        return set_err(err, errlen,
                       "\"messages\" must be a non-empty array of {\"role\", \"content\"}");
    *m = malloc(*n * sizeof **m);
    if (!*m) return set_err(err, errlen, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        const json_value *e = json_at(arr, i), *role = json_get(e, "role"),
                         *content = json_get(e, "content");
        if (json_type_of(e) != JSON_OBJECT)
            return set_err(err, errlen, "messages[%zu] must be an object, got %s", i,
                           json_type_name(json_type_of(e)));
        if (json_type_of(role) != JSON_STRING || json_type_of(content) != JSON_STRING)
            return set_err(err, errlen, "messages[%zu] needs \"role\" and \"content\" strings", i);
        size_t rl;
        const char *r = json_string(role, &rl);
        if (chat_role_parse(r, rl, &(*m)[i].role))
            return set_err(err, errlen,
                           "messages[%zu]: role \"%.*s\" is not system, user or assistant", i,
                           (int)(rl > 40 ? 40 : rl), r);
        (*m)[i].content = json_string(content, &(*m)[i].len);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* White space as Python's str.isspace: ASCII \t-\r, \x1c-\x1f and space,
 * and the Unicode spaces below (UTF-8 encoded). */

static const uint32_t unicode_spaces[] = {0x85,   0xA0,   0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
                                          0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
                                          0x2028, 0x2029, 0x202F, 0x205F, 0x3000};

/* Byte length of the white-space character at s[0..n), 0 when none. */
static size_t space_at(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    if (s[0] < 0x80) return (s[0] >= 0x09 && s[0] <= 0x0D) || (s[0] >= 0x1C && s[0] <= 0x20);
    size_t k = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 1;
    if (k == 1 || k > n) return 0;
    uint32_t cp = s[0] & (0x3F >> (k - 1));
    for (size_t i = 1; i < k; i++) cp = cp << 6 | (s[i] & 0x3F);
    for (size_t i = 0; i < sizeof unicode_spaces / sizeof *unicode_spaces; i++)
        if (unicode_spaces[i] == cp) return k;
    return 0;
}

/* Whether the character ending at s[n-1] is white space: its byte length. */
static size_t space_before(const unsigned char *s, size_t n) {
    size_t start = n;
    while (start > 0 && n - start < 4) {
        start--;
        if ((s[start] & 0xC0) != 0x80) break;
    }
    size_t k = n - start;
    return k && space_at(s + start, k) == k ? k : 0;
}

/* s[*off, *off + *len) without surrounding white space. */
static void strip(const char *s, size_t *off, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k;
    while ((k = space_at(u + *off, *len)) > 0) *off += k, *len -= k;
    while ((k = space_before(u + *off, *len)) > 0) *len -= k;
}

/* ------------------------------------------------------------------ */
/* Output */

static int emit(chat_rendered *r, const char *s, size_t n, bool train) {
    if (n == 0) return 0;
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + n + 1) cap *= 2;
        char *t = realloc(r->text, cap);
        if (!t) return -1;
        r->text = t;
        r->cap = cap;
    }
    memcpy(r->text + r->len, s, n);
    if (r->n > 0 && r->spans[r->n - 1].train == train) {
        r->spans[r->n - 1].len += n;
    } else {
        if (r->n == r->span_cap) {
            size_t cap = r->span_cap ? 2 * r->span_cap : 16;
            chat_span *sp = realloc(r->spans, cap * sizeof *sp);
            if (!sp) return -1;
            r->spans = sp;
            r->span_cap = cap;
        }
        r->spans[r->n++] = (chat_span){.off = r->len, .len = n, .train = train};
    }
    r->len += n;
    r->text[r->len] = '\0';
    return 0;
}

static int emits(chat_rendered *r, const char *s, bool train) {
    return s ? emit(r, s, strlen(s), train) : 0;
}

/* The message's content, stripped when the family strips. */
static void content_of(const family_spec *fs, const chat_message *m, const char **s, size_t *n) {
    size_t off = 0, len = m->len;
    if (fs->strip) strip(m->content, &off, &len);
    *s = m->content + off;
    *n = len;
}

static int render_header(const family_spec *fs, const chat_template *t, const chat_message *m,
                         size_t n, bool gen, const char *bos, chat_rendered *r) {
    int rc = fs->bos_first ? emits(r, bos, false) : 0;
    if (rc == 0 && t->default_system && m[0].role != CHAT_SYSTEM)
        rc = emits(r, fs->head_open, false) || emits(r, "system", false) ||
             emits(r, fs->head_close, false) || emits(r, t->default_system, false) ||
             emits(r, fs->end, false) || emits(r, fs->after_end, false);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bool train = m[i].role == CHAT_ASSISTANT;
        const char *s;
        size_t len;
        content_of(fs, &m[i], &s, &len);
        rc = emits(r, fs->head_open, false) || emits(r, chat_role_names[m[i].role], false) ||
             emits(r, fs->head_close, false) || emit(r, s, len, train) ||
             emits(r, fs->end, train) || emits(r, fs->after_end, false);
    }
    if (rc == 0 && gen)
        rc = emits(r, fs->head_open, false) || emits(r, "assistant", false) ||
             emits(r, fs->head_close, false);
    return rc;
}

/* The Llama-2 / Mistral turns; m[0] is the system message when has_sys. */
static int render_inst(const family_spec *fs, const chat_message *m, size_t n, bool has_sys,
                       const char *bos, const char *eos, chat_rendered *r) {
    int rc = fs->bos_first ? emits(r, bos, false) : 0;
    size_t first = has_sys ? 1 : 0;
    for (size_t i = first; rc == 0 && i < n; i++) {
        if (m[i].role == CHAT_ASSISTANT) {
            const char *s;
            size_t len;
            content_of(fs, &m[i], &s, &len);
            rc = emits(r, fs->asst_open, true) || emit(r, s, len, true) ||
                 emits(r, fs->asst_close, true) || emits(r, eos, true);
            continue;
        }
        /* the user turn, with the system block first in the first one; the
         * template strips the whole of it */
        chat_rendered body = {0};
        if (i == first && has_sys)
            rc = emits(&body, fs->sys_open, false) || emit(&body, m[0].content, m[0].len, false) ||
                 emits(&body, fs->sys_close, false);
        rc = rc || emit(&body, m[i].content, m[i].len, false);
        size_t off = 0, len = body.len;
        if (fs->strip) strip(body.text, &off, &len);
        if (rc == 0)
            rc = (fs->bos_each_user ? emits(r, bos, false) : 0) || emits(r, fs->user_open, false) ||
                 emit(r, body.text + off, len, false) || emits(r, fs->user_close, false);
        chat_rendered_free(&body);
    }
    return rc;
}

/* The checks every family shares, then the [INST] families' turn order. */
static int check(const family_spec *fs, const chat_message *m, size_t n, char *err, size_t errlen) {
    bool talk = false;
    for (size_t i = 0; i < n; i++) {
        size_t off = 0, len = m[i].len;
        strip(m[i].content, &off, &len);
        if (len == 0)
            return set_err(err, errlen, "messages[%zu] (%s) is empty", i,
                           chat_role_names[m[i].role]);
        if (m[i].role == CHAT_SYSTEM && i > 0)
            return set_err(err, errlen,
                           "messages[%zu] is a system message: only the first message may be one",
                           i);
        talk |= m[i].role != CHAT_SYSTEM;
    }
    if (!talk) return set_err(err, errlen, "the conversation has no user or assistant message");
    if (!fs->inst) return 0;
    size_t first = m[0].role == CHAT_SYSTEM;
    for (size_t i = first; i < n; i++) {
        chat_role want = (i - first) % 2 == 0 ? CHAT_USER : CHAT_ASSISTANT;
        if (m[i].role != want)
            return set_err(err, errlen,
                           "messages[%zu] is %s where the template wants %s: after an optional "
                           "system message, turns must alternate user, assistant, user...",
                           i, chat_role_names[m[i].role], chat_role_names[want]);
    }
    return 0;
}

int chat_render(const chat_template *t, const chat_message *m, size_t n, bool add_generation_prompt,
                const char *bos, const char *eos, chat_rendered *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const family_spec *fs = &families[t->family];
    if (check(fs, m, n, err, errlen)) return -1;
    if (!bos && (fs->bos_first || fs->bos_each_user))
        return set_err(err, errlen,
                       "the %s chat template writes a BOS token, the tokenizer has none",
                       chat_family_names[t->family]);
    if (!eos && fs->inst)
        return set_err(err, errlen,
                       "the %s chat template writes an EOS token, the tokenizer has none",
                       chat_family_names[t->family]);
    int rc = fs->inst ? render_inst(fs, m, n, m[0].role == CHAT_SYSTEM, bos, eos, out)
                      : render_header(fs, t, m, n, add_generation_prompt, bos, out);
    if (rc) {
        chat_rendered_free(out);
        return set_err(err, errlen, "out of memory");
    }
    return 0;
}

void chat_rendered_free(chat_rendered *r) {
    free(r->text);
    free(r->spans);
    memset(r, 0, sizeof *r);
}

const char *chat_end_of_turn(const chat_template *t, const char *eos) {
    return families[t->family].inst ? eos : families[t->family].end;
}
