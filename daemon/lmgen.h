/* lmgen.h — generation with a causal language model as `aflorad generate`
 * and the daemon's generation endpoints both do it, so the two agree token
 * for token:
 *
 *   - loading: a model (a Hugging Face folder or a llama2.c .bin) with its
 *     adapter (a native file, the adapter/ folder `aflorad run` writes, or a
 *     PEFT folder) for TASK_CAUSAL_LM (lmgen_load);
 *   - the prompt's ids: text through the tokenizer with BOS first when the
 *     tokenizer adds one (lmgen_prompt_text), a conversation rendered with
 *     the tokenizer's chat template and the prompt that opens the
 *     assistant's turn, tokenised span by span as training tokenises chat
 *     rows (lmgen_prompt_messages), or ids as given;
 *   - the run: generate() (engine/model/generate.h) with the generated ids
 *     turned into text as they come (lmgen_text: pieces that concatenate to
 *     the decode of all the ids, special tokens skipped, a character split
 *     over tokens held back until it is complete) and reported to a
 *     callback that may stop the run (lmgen_run);
 *   - the report: what was asked and what came out, as JSON.
 *
 * Nothing here knows HTTP: the API streams lmgen_run's pieces. */
#ifndef AFLO_LMGEN_H
#define AFLO_LMGEN_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/generate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* base/json.h's parsed document (only lmgen_prompt_messages takes one). */
typedef struct json_value json_value;

/* llama2.c's training data separates stories with BOS and has no EOS, and
 * its run.c stops when BOS comes out: the stop id for a .bin without a
 * tokenizer. */
#define LMGEN_LLAMA2C_STOP_ID 1

/* The model (a folder or a llama2.c .bin) with its adapter (NULL: none) for
 * generation. NULL with a message. */
aflo_model *lmgen_load(const char *model, const char *adapter, char *err, size_t errlen);

/* text (len bytes) into *ids (malloc'd, *n of them): the tokenizer's ids
 * after BOS when the tokenizer adds one. 0, or -1 with a message. */
int lmgen_prompt_text(const tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n,
                      char *err, size_t errlen);
/* 0 when the tokenizer has a chat template lmgen_prompt_messages can
 * render, else -1 with a message saying why not (none, an unknown one). */
int lmgen_chat_template_check(const tokenizer *tok, char *err, size_t errlen);
/* A conversation (a JSON array of {"role", "content"}) rendered with the
 * tokenizer's chat template and the generation prompt into *ids (malloc'd;
 * the template writes BOS itself). *eot gets the template's end-of-turn id
 * when that text is one token, else -1. 0, or -1 with a message (no
 * template, an unknown one, a malformed conversation). */
int lmgen_prompt_messages(const tokenizer *tok, const json_value *messages, int32_t **ids, int *n,
                          int32_t *eot, char *err, size_t errlen);

/* ---- generated ids to text, as they come ----------------------------------
 * Each push decodes the ids so far (skipping special tokens) and hands out
 * what is new since the last piece, holding back what the next ids can
 * still change: a trailing run of SentencePiece byte tokens (<0xNN>, read
 * as UTF-8 as a whole) and a trailing U+FFFD (a character whose other
 * bytes may be in the next tokens). The rest of the decoders' output
 * (WordPiece, byte-level BPE, SentencePiece) never changes as ids are
 * added, so the pieces concatenate to the decode of all the ids once
 * lmgen_text_finish has handed out the rest. */
typedef struct {
    const tokenizer *tok;
    int32_t *ids;
    int n, cap;
    char *sent; /* the pieces handed out, joined, NUL-terminated */
    size_t sent_len, sent_cap;
    char *piece; /* the last piece, NUL-terminated */
    size_t piece_cap;
} lmgen_text;

void lmgen_text_init(lmgen_text *t, const tokenizer *tok);
/* Add id; *piece gets the new text (NUL-terminated, "" when none, valid
 * until the next call). 0, or -1 with a message. */
int lmgen_text_push(lmgen_text *t, int32_t id, const char **piece, char *err, size_t errlen);
/* Everything not yet handed out (held-back U+FFFD). */
int lmgen_text_finish(lmgen_text *t, const char **piece, char *err, size_t errlen);
/* The pieces so far, joined. */
const char *lmgen_text_sent(const lmgen_text *t);
void lmgen_text_free(lmgen_text *t);

/* ---- a run and its report ------------------------------------------------- */

/* Called once per generated token with its text piece (NULL without a
 * tokenizer) and 0-based index; non-zero stops the run (finish "stopped"). */
typedef int (*lmgen_token_fn)(void *user, int32_t id, const char *piece, int index);

/* What the daemon is asked for: the prompt in one of three forms and the
 * sampling settings. */
typedef enum { LMGEN_PROMPT_TEXT, LMGEN_PROMPT_MESSAGES, LMGEN_PROMPT_IDS } lmgen_prompt_kind;

typedef struct {
    lmgen_prompt_kind kind;
    const char *text;   /* TEXT: the prompt; MESSAGES: the conversation, a JSON array */
    const int32_t *ids; /* IDS */
    int n_ids;
    gen_params gp; /* eos_id is chosen from the tokenizer (lmgen_prompt) */
} lmgen_request;

/* The request's prompt ids (*ids malloc'd) and the stop id: the
 * tokenizer's EOS, or the chat template's end of turn for messages (-1
 * without tokenizer). 0, or -1 with a message naming what is wrong with
 * the request (tok NULL for text or messages, bad messages, no template). */
int lmgen_prompt(const tokenizer *tok, const lmgen_request *req, int32_t **ids, int *n,
                 int32_t *eos_id, char *err, size_t errlen);

typedef struct {
    int32_t *prompt; /* the prompt's ids (a copy) */
    int n_prompt;
    int32_t eos_id;
    gen_result r;   /* the generated ids and why it ended */
    char *text;     /* their text (special tokens skipped); NULL without tokenizer */
    double seconds; /* generate()'s wall time, prefill included */
} lmgen_report;

/* generate() after prompt with p (its on_token is replaced), turning ids to
 * text with tok (may be NULL) and calling on_token (may be NULL). rep gets
 * the result (free with lmgen_report_free). When text was held back at the
 * end (a character cut short), on_token gets it last with id -1. 0,
 * or -1 with a message. */
int lmgen_run(aflo_model *m, const tokenizer *tok, const int32_t *prompt, int n_prompt,
              const gen_params *p, lmgen_token_fn on_token, void *user, lmgen_report *rep,
              char *err, size_t errlen);
void lmgen_report_free(lmgen_report *rep);

/* {"text", "ids", "prompt_tokens", "completion_tokens", "finish_reason",
 * "seconds"} ("text" null without tokenizer); with details also
 * "prompt_ids" and "eos_id". NULL when out of memory. */
cJSON *lmgen_report_json(const lmgen_report *rep, bool details);

#endif
