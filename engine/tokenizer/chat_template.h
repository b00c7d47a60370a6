/* chat_template.h — conversations ({"role", "content"} messages) rendered
 * as the model's chat template renders them, split into the spans to train
 * on (assistant turns) and the rest.
 *
 * No Jinja engine: the template text from tokenizer_config.json is
 * recognised by the markers of the families below and each family's
 * rendering is written here, so that it gives, character for character,
 * what transformers' apply_chat_template gives with the published template
 * (tests/chat_fixtures holds those templates and Jinja's output):
 *   llama2   Llama-2 chat: "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST]
 *            answer </s>", contents stripped, BOS before every [INST]
 *   mistral  Mistral / Mixtral Instruct (v0.2 template): "<s> [INST] sys\n\n
 *            user [/INST] answer</s>", the system message prepended to the
 *            first user turn, no <<SYS>> block
 *   llama3   Llama-3 Instruct: "<|begin_of_text|><|start_header_id|>role
 *            <|end_header_id|>\n\ncontent<|eot_id|>", contents trimmed
 *   chatml   ChatML (Qwen2, SmolLM, OpenHermes): "<|im_start|>role\ncontent
 *            <|im_end|>\n"; a template that writes a default system turn
 *            when the conversation has none (Qwen2's "You are a helpful
 *            assistant.") has its text taken from the template
 * Templates with tools or other features (Llama-3.1's dated system block,
 * tool calls) are refused, as is any other template: an error quotes its
 * start and lists the families above.
 *
 * BOS: the template decides. Llama-2, Mistral and Llama-3 write bos_token
 * themselves and ChatML writes none, so the rendered text is tokenised
 * without the tokenizer's own BOS/EOS (as apply_chat_template does, with
 * add_special_tokens=False) and BOS is never doubled.
 *
 * Trainable spans: each assistant turn's own text and the token that ends
 * it (Llama-2 " answer </s>", Mistral " answer</s>", Llama-3 "answer
 * <|eot_id|>", ChatML "answer<|im_end|>"); role headers, the other turns
 * and what follows the end token ("\n" in ChatML) are context only.
 * Strip/trim remove the characters Python's str.strip() removes (ASCII and
 * Unicode white space). */
#ifndef AFLO_CHAT_TEMPLATE_H
#define AFLO_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/json.h"

typedef enum { CHAT_LLAMA2, CHAT_MISTRAL, CHAT_LLAMA3, CHAT_CHATML, CHAT_FAMILY_COUNT } chat_family;
extern const char *const chat_family_names[CHAT_FAMILY_COUNT];

typedef enum { CHAT_SYSTEM, CHAT_USER, CHAT_ASSISTANT, CHAT_ROLE_COUNT } chat_role;
extern const char *const chat_role_names[CHAT_ROLE_COUNT];

typedef struct {
    chat_role role;
    const char *content; /* UTF-8, len bytes, not NUL-terminated */
    size_t len;
} chat_message;

typedef struct {
    chat_family family;
    char *default_system; /* ChatML: written when messages[0] is not system; NULL if none */
} chat_template;

/* A run of the rendered text: [off, off + len), trained on or not. */
typedef struct {
    size_t off, len;
    bool train;
} chat_span;

typedef struct {
    char *text; /* NUL-terminated */
    size_t len, cap;
    chat_span *spans; /* in order, covering text; neighbours differ in train */
    size_t n, span_cap;
} chat_rendered;

/* Recognise src (a chat_template string). 0, or -1 with a message quoting
 * the first 60 characters and naming the supported families. */
int chat_template_parse(const char *src, chat_template *t, char *err, size_t errlen);
void chat_template_free(chat_template *t);

/* The role named s (len bytes): 0, or -1 when it is none of system, user,
 * assistant. */
int chat_role_parse(const char *s, size_t len, chat_role *role);

/* The messages of a JSON array of {"role", "content"} objects (json.h
 * values; contents point into the JSON, which must outlive *m): *m
 * malloc'd (free it, also on error), *n of them. 0, or -1 with a message
 * naming the message by its index (not an array or empty, not an object,
 * role or content not a string, an unknown role). */
int chat_messages_from_json(const json_value *arr, chat_message **m, size_t *n, char *err,
                            size_t errlen);

/* Render n messages; add_generation_prompt appends what opens an assistant
 * turn (Llama-3 and ChatML; Llama-2 and Mistral prompts end with [/INST]
 * already). bos / eos are the tokenizer's token strings (NULL when it has
 * none: an error when the family writes it). Refused, naming the message by
 * its index: empty (or all white space) contents, no user or assistant
 * message, a system message after the first, and for llama2 / mistral
 * (whose templates raise on it) turns that do not alternate user,
 * assistant, user... out is zeroed first; 0, or -1 with a message. */
int chat_render(const chat_template *t, const chat_message *m, size_t n, bool add_generation_prompt,
                const char *bos, const char *eos, chat_rendered *out, char *err, size_t errlen);
void chat_rendered_free(chat_rendered *r);

/* The text that ends an assistant turn: "<|eot_id|>", "<|im_end|>", or eos
 * (llama2, mistral) — the stop token for generation. */
const char *chat_end_of_turn(const chat_template *t, const char *eos);

#endif
