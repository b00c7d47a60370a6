/* cli_lm.c — `aflorad generate` and `aflorad convert llama2c` (cli_lm.h).
 *
 * generate loads the model (a Hugging Face folder, or a llama2.c .bin file),
 * its adapter when given (a PEFT folder or a native .safetensors file, as
 * `aflorad predict` reads them), turns --prompt into ids with the model's
 * tokenizer (BOS first when the tokenizer adds one), takes --prompt-ids, or
 * renders --messages (a conversation) with the model's chat template and
 * the prompt that opens the assistant's turn, then runs generate() (engine/model/generate.h) and prints one JSON object:
 *   {"prompt_ids": [...], "ids": [...], "text": "...", "finish_reason":
 *    "eos" | "length", "eos_id": N}
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
#include "io/adapter_native.h"
#include "io/adapter_peft.h"
#include "io/hfmodel.h"
#include "io/llama2c.h"
#include "model/generate.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

/* llama2.c's training data separates stories with BOS and has no EOS, and
 * its run.c stops when BOS comes out: the stop id for a .bin without a
 * tokenizer. */
#define LLAMA2C_STOP_ID 1

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

static bool has_file(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    return snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path &&
           stat(path, &st) == 0 && S_ISREG(st.st_mode);
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

/* The model with its adapter: the adapter's config when there is one, else
 * method full (no adapter tensors). */
static aflo_model *load_model(const generate_opts *o, char *err, size_t errlen) {
    aflo_adapter_config ac = {.method = METHOD_FULL};
    char native[4096];
    const char *adapter = o->adapter;
    bool peft = adapter && is_dir(adapter);
    if (peft && !has_file(adapter, PEFT_CONFIG_FILE)) {
        /* the adapter/ folder `aflorad run` prints: its native file, as
         * predict takes it */
        if (!has_file(adapter, "adapter.safetensors")) {
            set_err(err, errlen,
                    "--adapter: %s: a folder with neither adapter.safetensors (the adapter/ "
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
    if (is_dir(o->model)) {
        aflo_config c;
        if (hfmodel_read_config(o->model, &c, err, errlen)) return NULL;
        m = hfmodel_load(o->model, &ac, TASK_CAUSAL_LM, c.vocab_size, 0, NULL, err, errlen);
    } else {
        m = llama2c_load(o->model, &ac, 0, err, errlen);
    }
    if (!m || !adapter) return m;
    int rc = peft ? adapter_import_peft(m, adapter, NULL, err, errlen)
                  : adapter_import_native(m, adapter, err, errlen);
    if (rc == 0) return m;
    model_free(m);
    return NULL;
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

static int print_result(const tokenizer *tok, const int32_t *prompt, int n_prompt,
                        const gen_result *r, int32_t eos_id, char *err, size_t errlen) {
    cJSON *o = cJSON_CreateObject();
    char *text = NULL, *out = NULL;
    size_t len;
    int rc = -1;
    if (!o) goto oom;
    cJSON *pi = ids_json(prompt, n_prompt), *gi = ids_json(r->ids, r->n);
    if (!cJSON_AddItemToObject(o, "prompt_ids", pi)) {
        cJSON_Delete(pi);
        cJSON_Delete(gi);
        goto oom;
    }
    if (!cJSON_AddItemToObject(o, "ids", gi)) {
        cJSON_Delete(gi);
        goto oom;
    }
    if (tok) {
        if (tokenizer_decode(tok, r->ids, (size_t)r->n, 1, &text, &len, err, errlen)) goto done;
        if (!cJSON_AddStringToObject(o, "text", text)) goto oom;
    }
    if (!cJSON_AddStringToObject(o, "finish_reason", gen_finish_names[r->finish]) ||
        !cJSON_AddNumberToObject(o, "eos_id", eos_id))
        goto oom;
    out = cJSON_Print(o);
    if (!out) goto oom;
    puts(out);
    rc = 0;
    goto done;
oom:
    set_err(err, errlen, "out of memory");
done:
    free(out);
    free(text);
    cJSON_Delete(o);
    return rc;
}

/* Append the ids of text to *ids (*n of them, room for *cap). */
static int append_tokens(const tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n,
                         size_t *cap, char *err, size_t errlen) {
    int32_t *t = NULL;
    size_t nt = 0;
    if (tokenizer_tokenize(tok, text, len, &t, &nt, err, errlen)) return -1;
    if ((size_t)*n + nt > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < (size_t)*n + nt) c *= 2;
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

/* --messages: the conversation rendered with the tokenizer's chat template
 * and the generation prompt, tokenised span by span as lmdata tokenises
 * chat rows for training (so the prompt's ids are those the model was
 * tuned on); the template writes BOS itself. *eot gets the end-of-turn id
 * when that text is one token (else -1). */
static int messages_ids(const char *path, const tokenizer *tok, int32_t **ids, int *n, int32_t *eot,
                        char *err, size_t errlen) {
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
    if (!src)
        return set_err(err, errlen,
                       "--messages needs the model's chat template, and the tokenizer has none "
                       "(no \"chat_template\" in tokenizer_config.json)");
    int32_t bos = tokenizer_bos_id(tok), eos = tokenizer_eos_id(tok);
    const char *eos_text = eos >= 0 ? tokenizer_id_to_token(tok, eos) : NULL;
    if (chat_template_parse(src, &ct, err, errlen)) return -1;
    json_value *doc = read_json_file(path, MESSAGES_MAX_BYTES, err, errlen);
    if (!doc) {
        chat_template_free(&ct);
        return -1;
    }
    const json_value *arr = json_type_of(doc) == JSON_OBJECT ? json_get(doc, "messages") : doc;
    if (chat_messages_from_json(arr, &m, &nm, merr, sizeof merr) ||
        chat_render(&ct, m, nm, true, bos >= 0 ? tokenizer_id_to_token(tok, bos) : NULL, eos_text,
                    &r, merr, sizeof merr)) {
        set_err(err, errlen, "--messages: %s: %s", path, merr);
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
    }
    chat_rendered_free(&r);
    free(m);
    chat_template_free(&ct);
    json_free(doc);
    return rc;
}

/* The prompt's ids: --prompt-ids, or --prompt through the tokenizer. */
static int prompt_ids(const generate_opts *o, const tokenizer *tok, int32_t **ids, int *n,
                      char *err, size_t errlen) {
    if (o->prompt_ids) return parse_ids(o->prompt_ids, ids, n, err, errlen);
    if (!tok)
        return set_err(err, errlen,
                       "%s needs a tokenizer (a model folder with one, or --tokenizer); give "
                       "--prompt-ids instead",
                       o->messages ? "--messages" : "--prompt");
    int32_t *t = NULL;
    size_t nt = 0;
    if (tokenizer_tokenize(tok, o->prompt, strlen(o->prompt), &t, &nt, err, errlen)) return -1;
    int32_t bos = tokenizer_adds_bos(tok) ? tokenizer_bos_id(tok) : -1;
    *ids = malloc((nt + 1) * sizeof **ids);
    if (!*ids) {
        free(t);
        return set_err(err, errlen, "out of memory");
    }
    *n = 0;
    if (bos >= 0) (*ids)[(*n)++] = bos;
    if (nt) memcpy(*ids + *n, t, nt * sizeof *t);
    *n += (int)nt;
    free(t);
    return 0;
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
    gen_result r = {0};
    rc = 1;
    const char *tok_dir = o.tokenizer_dir ? o.tokenizer_dir : is_dir(o.model) ? o.model : NULL;
    if (tok_dir && (o.tokenizer_dir || tokenizer_probe_dir(tok_dir, err, sizeof err) == 0)) {
        tok = tokenizer_load_dir(tok_dir, err, sizeof err);
        if (!tok) goto done;
    }
    m = load_model(&o, err, sizeof err);
    if (!m) goto done;
    if (!o.eos_given)
        o.gp.eos_id = tok ? tokenizer_eos_id(tok) : is_dir(o.model) ? -1 : LLAMA2C_STOP_ID;
    if (o.messages && tok) {
        int32_t eot;
        if (messages_ids(o.messages, tok, &ids, &n, &eot, err, sizeof err)) goto done;
        if (!o.eos_given && eot >= 0) o.gp.eos_id = eot;
    } else if (prompt_ids(&o, tok, &ids, &n, err, sizeof err)) {
        goto done;
    }
    if (generate(m, ids, n, &o.gp, &r, err, sizeof err)) goto done;
    if (print_result(tok, ids, n, &r, o.gp.eos_id, err, sizeof err)) goto done;
    rc = 0;
done:
    if (rc) fprintf(stderr, "generate: %s\n", err);
    gen_result_free(&r);
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
