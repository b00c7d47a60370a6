/* cli_lm.c — `aflorad generate` and `aflorad convert llama2c` (cli_lm.h).
 *
 * generate loads the model (a Hugging Face folder, or a llama2.c .bin file),
 * its adapter when given (a PEFT folder or a native .safetensors file, as
 * `aflorad predict` reads them), turns --prompt into ids with the model's
 * tokenizer (BOS first when the tokenizer adds one), takes --prompt-ids, or
 * renders --messages (a conversation) with the model's chat template and
 * the prompt that opens the assistant's turn, then runs generate() (engine/model/generate.h) — all of which lmgen.h
 * does, as the daemon's generation endpoints do — and prints one JSON
 * object: {"text", "ids", "prompt_tokens", "completion_tokens",
 * "finish_reason" ("eos" | "length"), "seconds", "prompt_ids", "eos_id"},
 * with "text" only when a tokenizer exists (special tokens skipped). */
#include "cli_lm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/errmsg.h"
#include "base/folder.h"
#include "io/llama2c.h"
#include "lmgen.h"
#include "model/generate.h"
#include "tokenizer/tokenizer.h"

/* Larger than any conversation typed for a prompt. */
#define MESSAGES_MAX_BYTES ((size_t)16 << 20)

const char generate_usage[] =
    "usage: aflorad generate --model M (--prompt TEXT | --prompt-ids 1,2,3 | --messages FILE)\n"
    "                        [options]\n"
    "  Continue a prompt with a causal language model and print JSON: prompt_ids, ids,\n"
    "  text (when the model has a tokenizer), finish_reason (eos or length).\n"
    "  --model M            a Hugging Face model folder, or a llama2.c checkpoint (.bin)\n"
    "  --adapter A          an adapter of M: a PEFT folder, a native .safetensors file or\n"
    "                       the adapter/ folder `aflorad run` prints\n"
    "  --tokenizer DIR      tokenizer files to use (default: the model folder's)\n"
    "  --prompt TEXT        text, tokenized with BOS first when the tokenizer adds it\n"
    "  --prompt-ids LIST    token ids, comma-separated (no BOS is added)\n"
    "  --messages FILE      a conversation: a JSON array of {\"role\", \"content\"} (system,\n"
    "                       user, assistant), or an object with it as \"messages\"; rendered\n"
    "                       with the model's chat template (tokenizer_config.json) and the\n"
    "                       prompt for the assistant's answer\n"
    "  --max-new-tokens N   at most N new tokens (default 64)\n"
    "  --temperature T      0 (default): greedy; else sample from softmax(logits/T)\n"
    "  --top-p P            sample only from the most probable tokens of mass P (default 1)\n"
    "  --seed S             the sampler's seed (default 0)\n"
    "  --eos-id N           stop after this id (default: the tokenizer's EOS; with\n"
    "                       --messages the template's end-of-turn token when it is one\n"
    "                       token, as <|im_end|> or <|eot_id|>; for a llama2.c file\n"
    "                       without tokenizer 1, BOS, as llama2.c's run.c)\n";

const char convert_usage[] =
    "usage: aflorad convert llama2c FILE OUTDIR\n"
    "  Write the llama2.c checkpoint FILE as a Hugging Face LLaMA folder OUTDIR\n"
    "  (config.json with LlamaForCausalLM, model.safetensors), atomically.\n";

typedef struct {
    const char *model, *adapter, *tokenizer_dir, *prompt, *prompt_ids, *messages;
    gen_params gp;
    bool eos_given;
} generate_opts;

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int parse_long(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "generate: %s wants an integer in [%ld, %ld], got \"%s\"\n", flag, lo, hi,
                v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_float(const char *flag, const char *v, float *out) {
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (errno || end == v || *end || !isfinite(x)) {
        fprintf(stderr, "generate: %s wants a number, got \"%s\"\n", flag, v);
        return -1;
    }
    *out = x;
    return 0;
}

/* Returns 0, or 2 on a usage error (message printed). */
static int parse_generate(int argc, char **argv, generate_opts *o) {
    *o = (generate_opts){.gp = gen_params_default()};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || i + 1 >= argc) {
            fprintf(stderr, "generate: %s %s\n", a[0] == '-' ? "missing value for" : "unexpected",
                    a);
            return 2;
        }
        const char *v = argv[++i];
        long x;
        if (!strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "--adapter"))
            o->adapter = v;
        else if (!strcmp(a, "--tokenizer"))
            o->tokenizer_dir = v;
        else if (!strcmp(a, "--prompt"))
            o->prompt = v;
        else if (!strcmp(a, "--prompt-ids"))
            o->prompt_ids = v;
        else if (!strcmp(a, "--messages"))
            o->messages = v;
        else if (!strcmp(a, "--max-new-tokens")) {
            if (parse_long(a, v, 0, INT_MAX, &x)) return 2;
            o->gp.max_new_tokens = (int)x;
        } else if (!strcmp(a, "--temperature")) {
            if (parse_float(a, v, &o->gp.temperature)) return 2;
        } else if (!strcmp(a, "--top-p")) {
            if (parse_float(a, v, &o->gp.top_p)) return 2;
        } else if (!strcmp(a, "--seed")) {
            if (parse_long(a, v, 0, LONG_MAX, &x)) return 2;
            o->gp.seed = (uint64_t)x;
        } else if (!strcmp(a, "--eos-id")) {
            if (parse_long(a, v, -1, INT32_MAX, &x)) return 2;
            o->gp.eos_id = (int32_t)x;
            o->eos_given = true;
        } else {
            fprintf(stderr, "generate: unknown option %s\n", a);
            return 2;
        }
    }
    if (!o->model || (!!o->prompt + !!o->prompt_ids + !!o->messages) != 1) {
        fputs(generate_usage, stderr);
        return 2;
    }
    return 0;
}

/* "1,2,3" -> ids (malloc'd). */
static int parse_ids(const char *s, int32_t **ids, int *n, char *err, size_t errlen) {
    size_t cap = 1;
    for (const char *c = s; *c; c++) cap += *c == ',';
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return set_err(err, errlen, "out of memory");
    *n = 0;
    const char *c = s;
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(c, &end, 10);
        if (errno || end == c || x < 0 || x > INT32_MAX)
            return set_err(err, errlen, "--prompt-ids: \"%s\" is not a list of ids", s);
        (*ids)[(*n)++] = (int32_t)x;
        if (*end == '\0') return 0;
        if (*end != ',')
            return set_err(err, errlen, "--prompt-ids: \"%s\" is not a list of ids", s);
        c = end + 1;
    }
}

/* The prompt's ids from --prompt-ids, --prompt or --messages; *eot gets the
 * chat template's one-token end of turn (else -1). */
static int prompt_ids(const generate_opts *o, const tokenizer *tok, int32_t **ids, int *n,
                      int32_t *eot, char *err, size_t errlen) {
    *eot = -1;
    if (o->prompt_ids) return parse_ids(o->prompt_ids, ids, n, err, errlen);
    if (!tok)
        return set_err(err, errlen,
                       "%s needs a tokenizer (a model folder with one, or --tokenizer); give "
                       "--prompt-ids instead",
                       o->messages ? "--messages" : "--prompt");
    if (o->prompt) return lmgen_prompt_text(tok, o->prompt, strlen(o->prompt), ids, n, err, errlen);
    if (lmgen_chat_template_check(tok, err, errlen)) return -1; /* before reading the file */
    json_value *doc = read_json_file(o->messages, MESSAGES_MAX_BYTES, err, errlen);
    if (!doc) return -1;
    const json_value *arr = json_type_of(doc) == JSON_OBJECT ? json_get(doc, "messages") : doc;
    char merr[768];
    int rc = lmgen_prompt_messages(tok, arr, ids, n, eot, merr, sizeof merr);
    json_free(doc);
    if (rc) set_err(err, errlen, "--messages: %s: %s", o->messages, merr);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    generate_opts o;
    int rc = parse_generate(argc, argv, &o);
    if (rc) return rc;
    char err[1024] = "";
    tokenizer *tok = NULL;
    aflo_model *m = NULL;
    int32_t *ids = NULL;
    int n = 0;
    lmgen_report rep = {0};
    cJSON *out = NULL;
    char *text = NULL;
    rc = 1;
    const char *tok_dir = o.tokenizer_dir ? o.tokenizer_dir : is_dir(o.model) ? o.model : NULL;
    if (tok_dir && (o.tokenizer_dir || tokenizer_probe_dir(tok_dir, err, sizeof err) == 0)) {
        tok = tokenizer_load_dir(tok_dir, err, sizeof err);
        if (!tok) goto done;
    }
    m = lmgen_load(o.model, o.adapter, err, sizeof err);
    if (!m) goto done;
    if (!o.eos_given)
        o.gp.eos_id = tok ? tokenizer_eos_id(tok) : is_dir(o.model) ? -1 : LMGEN_LLAMA2C_STOP_ID;
    int32_t eot;
    if (prompt_ids(&o, tok, &ids, &n, &eot, err, sizeof err)) goto done;
    if (!o.eos_given && eot >= 0) o.gp.eos_id = eot;
    if (lmgen_run(m, tok, ids, n, &o.gp, NULL, NULL, &rep, err, sizeof err)) goto done;
    /* no "text" without a tokenizer (rather than null: the CLI's format) */
    if ((out = lmgen_report_json(&rep, true)) && !tok)
        cJSON_DeleteItemFromObjectCaseSensitive(out, "text");
    if (!out || !(text = cJSON_Print(out))) {
        set_err(err, sizeof err, "out of memory");
        goto done;
    }
    puts(text);
    rc = 0;
done:
    if (rc) fprintf(stderr, "generate: %s\n", err);
    free(text);
    cJSON_Delete(out);
    lmgen_report_free(&rep);
    free(ids);
    model_free(m);
    tokenizer_free(tok);
    return rc;
}

int cmd_convert(int argc, char **argv) {
    if (argc != 4 || strcmp(argv[1], "llama2c") != 0) {
        fputs(convert_usage, stderr);
        return 2;
    }
    char err[1024];
    if (llama2c_convert(argv[2], argv[3], err, sizeof err)) {
        fprintf(stderr, "convert: %s\n", err);
        return 1;
    }
    printf("wrote %s\n", argv[3]);
    return 0;
}
