/* lmdata.h — causal-LM training data: JSON Lines rows rendered, tokenised
 * and labelled into a dataset with labels per token (dataset.h).
 *
 * One JSON object per line (blank lines skipped); each row is one of these
 * forms, told apart by its keys (other keys are ignored):
 *   {"text": t}                        loss on every token
 *   {"prompt": p, "completion": c}     loss on the completion only, unless
 *                                      train_on_inputs (then on all of it)
 *   {"instruction": i, "input": x, "output": o}
 *                                      Alpaca: the prompt is the Stanford
 *                                      Alpaca template with i (and x, when
 *                                      "input" is present and not empty: the
 *                                      template has a variant without it),
 *                                      the completion o
 *   {"input_ids": [...], "labels": [...]}
 *                                      already tokenised: used as given (no
 *                                      BOS/EOS added); labels optional (the
 *                                      ids then), the same length, each an id
 *                                      or -100 (LABEL_IGNORE)
 *   {"messages": [{"role", "content"}, ...]}
 *                                      chat: roles system, user, assistant,
 *                                      contents non-empty strings, at least
 *                                      one assistant message; rendered with
 *                                      the tokenizer's chat template
 *                                      (tokenizer/chat_template.h), loss on
 *                                      the assistant turns and the token that
 *                                      ends each (on everything with
 *                                      train_on_inputs)
 * Rendered rows are [BOS] prompt completion [EOS]: BOS when the tokenizer
 * adds one (tokenizer_adds_bos, as tokenizer(text) would), EOS always when
 * the tokenizer has one, so the model learns where an answer ends; a text
 * row is a completion with an empty prompt. Prompt and completion are
 * tokenised separately and joined, so the boundary between them is exact.
 * A chat row is the template's text alone (no BOS/EOS added: the template
 * writes its own, as transformers' apply_chat_template), each span of it
 * (turns, role headers) tokenised separately in the same way; a tokenizer
 * without a chat template, or with one chat_template.h does not know, fails
 * the load at the first chat row.
 *
 * Rows longer than max_seq_len tokens are cut there (the start kept) and
 * counted; a row left with no target token (a prompt that fills the whole
 * length) is skipped and counted. Loading is all or nothing: any malformed
 * row fails the load with the file and its line number. */
#ifndef AFLO_LMDATA_H
#define AFLO_LMDATA_H

#include <stdbool.h>
#include <stddef.h>

#include "tokenizer/tokenizer.h"
#include "train/dataset.h"

typedef enum {
    LMDATA_TEXT,
    LMDATA_PROMPT_COMPLETION,
    LMDATA_ALPACA,
    LMDATA_TOKENS,
    LMDATA_CHAT,
    LMDATA_FORM_COUNT
} lmdata_form;

typedef struct {
    int max_seq_len;      /* >= 2 */
    bool train_on_inputs; /* prompt tokens carry loss too */
    int vocab_size; /* ids of input_ids rows must be below it (the model's; 0: the tokenizer's) */
    /* Evaluation data: keep each row's generation reference
     * (dataset_set_reference): for prompt/completion and Alpaca rows the
     * length of [BOS] prompt and the completion text (Alpaca's output);
     * text and input_ids rows have none (prompt length 0), nor has a row
     * whose prompt was cut at max_seq_len or is empty without BOS. */
    bool keep_references;
} lmdata_opts;

typedef struct {
    int rows;                       /* examples added */
    int by_form[LMDATA_FORM_COUNT]; /* of them, per form */
    int truncated;                  /* rows cut at max_seq_len */
    int skipped;                    /* rows with no target token left, not added */
    long tokens;                    /* tokens of the examples added */
    long loss_tokens;               /* of them, next-token targets */
    int references;                 /* keep_references: rows with a prompt to judge */
} lmdata_stats;

/* The rows of the file at path appended to d (dataset_init'd and empty);
 * stats may be NULL. tok may be NULL (a model folder without tokenizer
 * files): then only {"input_ids"} rows are accepted and o->vocab_size must
 * be given. 0, or -1 with "path: line N: what is wrong" (d is then
 * left empty). */
int lmdata_load(const char *path, const tokenizer *tok, const lmdata_opts *o, aflo_dataset *d,
                lmdata_stats *stats, char *err, size_t errlen);
/* The same from text in memory; name stands for the file in messages. */
int lmdata_parse(const char *text, size_t len, const char *name, const tokenizer *tok,
                 const lmdata_opts *o, aflo_dataset *d, lmdata_stats *stats, char *err,
                 size_t errlen);

/* The Alpaca prompt for an instruction and an input (input may be NULL or
 * empty: the variant without it). malloc'd, NUL-terminated; NULL on OOM. */
char *lmdata_alpaca_prompt(const char *instruction, size_t ilen, const char *input, size_t inlen);

/* One line describing stats ("120 rows (text 20, prompt/completion 100), 5321
 * tokens, 3002 with loss; 3 cut at max_seq_len 256; 1 skipped: no target
 * left"; "; 100 with a completion to judge" when references were kept). */
void lmdata_describe(const lmdata_stats *s, int max_seq_len, char *buf, size_t cap);

/* The form's name in the daemon's API: "text", "prompt_completion",
 * "alpaca", "input_ids", "chat" ("?" when out of range). */
const char *lmdata_form_name(lmdata_form f);
/* The form of such a name: 0, or -1 when it is none. */
int lmdata_form_from_name(const char *name, lmdata_form *f);

/* ---- checking an upload -------------------------------------------------------
 * lmdata_check proves a file's rows are causal-LM rows of one form before any
 * model is chosen (the daemon's POST /datasets): each row parsed, its form
 * told, its fields typed, chat rows' roles known, no empty turn, a system
 * message only first and an assistant answer; all rows one form. Without a
 * tokenizer a line may hold at most max_line_bytes and an input_ids row at
 * most max_ids ids (the limits are what any model could still use). With
 * one (a model chosen), every row is rendered and tokenised as lmdata_load
 * would (chat rows with its template), its tokens counted, and rows longer
 * than context_length counted, not refused: training cuts them. */
#define LMDATA_CHECK_MAX_IDS 131072             /* the longest context of a LLaMA-3.1 */
#define LMDATA_CHECK_MAX_LINE ((size_t)1 << 20) /* 1 MiB: a few hundred thousand words */

typedef struct {
    const tokenizer *tok;  /* NULL: structure only */
    int vocab_size;        /* input_ids below it; 0: the tokenizer's, or any id >= 0 */
    int context_length;    /* rows longer are counted (r->over_context); 0: none */
    int max_ids;           /* without tok; 0: LMDATA_CHECK_MAX_IDS */
    size_t max_line_bytes; /* without tok; 0: LMDATA_CHECK_MAX_LINE */
} lmdata_check_opts;

typedef struct {
    lmdata_form form;    /* of every row */
    int rows;            /* non-blank lines */
    long tokens;         /* of every row as rendered; -1 when not counted (no tokenizer and
                            not input_ids rows) */
    int longest;         /* tokens of the longest row, when counted */
    int over_context;    /* rows longer than context_length */
    int first_over_line; /* the line of the first of them */
} lmdata_check_result;

/* 0, or -1 with "name: line N: what is wrong" (the field named). A file
 * with no row fails. */
int lmdata_check(const char *text, size_t len, const char *name, const lmdata_check_opts *o,
                 lmdata_check_result *r, char *err, size_t errlen);

#endif
