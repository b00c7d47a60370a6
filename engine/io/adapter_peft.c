/* adapter_peft.c — PEFT LoRA folders, out and in.
 *
 * PEFT key layout, as checked against peft's src/peft/utils/save_and_load.py
 * and utils/other.py (ModulesToSaveWrapper):
 *   - get_peft_model_state_dict() keeps the "lora_" entries of the PeftModel
 *     state dict and then removes the adapter name ("default") from every key
 *     ("...query.lora_A.default.weight" -> "...query.lora_A.weight"), so saved
 *     files never contain "default". The PeftModel wraps the transformers
 *     model as base_model.model, giving
 *       base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight
 *     and for a LlamaForCausalLM (decoder under "model.")
 *       base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
 *     (lora_A: r x in, lora_B: out x r, nn.Linear weight layout).
 *   - modules_to_save: ModulesToSaveWrapper.adapter_state_dict() returns the
 *     wrapped copy's keys without "modules_to_save.<adapter>.", so the head is
 *     saved under the plain module path: base_model.model.classifier.weight,
 *     base_model.model.bert.pooler.dense.weight. On load,
 *     set_peft_model_state_dict() maps them back through
 *     adapter_state_dict_load_map() (k -> "modules_to_save.<adapter>.k").
 *   - target_modules as a list matches a module when its name equals an entry
 *     or ends with "." + entry (check_target_module_exists), so "output.dense"
 *     also matches "attention.output.dense". When the FFN output is adapted
 *     without the attention output, the exact set is written as a regular
 *     expression string instead, which PEFT applies with re.fullmatch.
 *   - scaling = lora_alpha / r (no use_rslora).
 *   - task_type is the PeftModel class PeftModel.from_pretrained builds:
 *     SEQ_CLS for our classifiers, CAUSAL_LM for the LLaMA family.
 * Every key is PEFT's root + the tensor's name in a transformers checkpoint
 * of the model's type (model_hf_name), and modules_to_save is the family
 * variant's: for RoBERTa the engine's pooler and classifier are its
 * classification head, classifier.dense + classifier.out_proj, with
 * modules_to_save ["classifier"]. The module names in target_modules and the
 * block path in its regular-expression form are the family's (family.h).
 *
 * PEFT import: the simplest exact way is a LoRA-method model created from
 * adapter_peft_read_config() (same r, alpha = lora_alpha, the same modules):
 * the engine's LoRA forward is PEFT's. An AFLoRA/ELoRA model is accepted too,
 * with s_d = lora_alpha / r and s_b = 1, the same function up to rounding. */
#include "io/adapter_peft.h"

#include "io/adapter_internal.h"
#include "base/atomicfile.h"
#include "model/config.h"
#include "base/errmsg.h"
#include "model/family.h"
#include "base/folder.h"
#include "base/json.h"
#include "base/problems.h"
#include "io/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* PEFT's state-dict root: PeftModel.base_model (LoraModel) .model */
#define PEFT_ROOT "base_model.model."
/* adapter_config.json is a page of text; anything much bigger is not one. */
#define MAX_PEFT_CONFIG_BYTES ((size_t)1 << 20)

/* ---------------------------------------------------------------- keys */

/* PEFT key of a model tensor: PEFT's root, the tensor's name in a
 * transformers checkpoint of the model's type (model_hf_name: "bert.encoder.
 * layer.0...", the head as the task class names it), then suffix. */
static int peft_key(char *buf, size_t cap, const aflo_model *m, const aflo_param *p,
                    const char *suffix) {
    char hf[MAX_KEY];
    if (model_hf_name(m, p, hf, sizeof hf)) return -1;
    int n = snprintf(buf, cap, PEFT_ROOT "%s%s", hf, suffix);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* One adapted linear layer's tensors. */
typedef struct {
    aflo_param *A, *B, *sd, *sb;
} adapted_linear;

static aflo_param *sibling(aflo_model *m, const aflo_param *A, const char *suffix) {
    char name[128];
    size_t base = strlen(A->name) - strlen(".lora_A");
    snprintf(name, sizeof name, "%.*s%s", (int)base, A->name, suffix);
    return model_find_param(m, name);
}

/* Every adapted layer of m, in table order (malloc'd; *n entries). */
static adapted_linear *adapted_linears(aflo_model *m, int *n) {
    int count = 0;
    for (int i = 0; i < model_param_count(m); i++) count += model_param(m, i)->role == PROLE_A;
    adapted_linear *out = calloc(count ? (size_t)count : 1, sizeof *out);
    if (!out) return NULL;
    *n = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->role != PROLE_A) continue;
        out[(*n)++] = (adapted_linear){p, sibling(m, p, ".lora_B"), sibling(m, p, ".s_d"),
                                       sibling(m, p, ".s_b")};
    }
    return out;
}

/* PEFT's list matching (check_target_module_exists): a module is selected
 * when its name equals an entry or ends with "." + entry. */
static bool peft_list_selects(const char *path, const char *entry) {
    size_t n = strlen(path), k = strlen(entry);
    return strcmp(path, entry) == 0 ||
           (n > k && path[n - k - 1] == '.' && strcmp(path + n - k, entry) == 0);
}

static void append_regex_literal(char *re, size_t cap, const char *text) {
    for (const char *c = text; *c; c++) appendf(re, cap, *c == '.' ? "\\." : "%c", *c);
}

/* target_modules as PEFT reads it: a JSON list when suffix matching selects
 * exactly the adapted modules (BERT: "output.dense" alone would also select
 * attention.output.dense), else a full-match regular expression. */
static void write_target_modules(FILE *f, const aflo_family *fam, unsigned targets) {
    bool ambiguous = false;
    for (int mod = 0; mod < fam->n_modules; mod++)
        for (int other = 0; (targets & (1u << mod)) && other < fam->n_modules; other++)
            if (!(targets & (1u << other)) &&
                peft_list_selects(fam->modules[other].path, fam->modules[mod].target))
                ambiguous = true;
    if (!ambiguous) {
        fputc('[', f);
        bool first = true;
        for (int mod = 0; mod < fam->n_modules; mod++) {
            if (!(targets & (1u << mod))) continue;
            fprintf(f, "%s\"%s\"", first ? "" : ", ", fam->modules[mod].target);
            first = false;
        }
        fputc(']', f);
        return;
    }
    /* e.g. .*\.encoder\.layer\.[0-9]+\.(intermediate\.dense|output\.dense) */
    char re[512] = ".*\\.";
    append_regex_literal(re, sizeof re, fam->block_prefix);
    appendf(re, sizeof re, "[0-9]+\\.(");
    bool first = true;
    for (int mod = 0; mod < fam->n_modules; mod++) {
        if (!(targets & (1u << mod))) continue;
        if (!first) appendf(re, sizeof re, "|");
        append_regex_literal(re, sizeof re, fam->modules[mod].path);
        first = false;
    }
    appendf(re, sizeof re, ")");
    char quoted[1100];
    json_quote(quoted, sizeof quoted, re, strlen(re));
    fputs(quoted, f);
}

/* ---------------------------------------------------------------- PEFT export */

/* The folder's files in writing order: weights first, so that no config
 * ever names weights that are not there yet. */
static const char *const peft_names[] = {PEFT_WEIGHTS_FILE, PEFT_CONFIG_FILE,
                                         PEFT_MODEL_CONFIG_FILE, PEFT_README_FILE,
                                         ADAPTER_INPUTS_FILE};
#define N_PEFT_FILES (sizeof peft_names / sizeof peft_names[0])

typedef struct {
    st_writer *w;
    const char *text[N_PEFT_FILES]; /* the text files' contents; [0] unused, NULL: not written */
} peft_files;

static int fill_peft(const char *staging, void *ctx, char *err, size_t errlen) {
    peft_files *pf = ctx;
    char path[4096 + 64];
    for (size_t i = 0; i < N_PEFT_FILES; i++) {
        if (i > 0 && !pf->text[i]) continue; /* aflorad.json without inputs */
        snprintf(path, sizeof path, "%s/%s", staging, peft_names[i]);
        if (i == 0 ? st_writer_write(pf->w, path, err, errlen)
                   : write_file_atomic(path, pf->text[i], strlen(pf->text[i]), err, errlen))
            return -1;
    }
    return 0;
}

/* fputs(s) as a JSON string literal (also a YAML double-quoted scalar and a
 * Python string literal, for the README). -1 on OOM. */
static int put_quoted(FILE *f, const char *s) {
    size_t len = strlen(s);
    char *q = malloc(6 * len + 3);
    if (!q) return -1;
    json_quote(q, 6 * len + 3, s, len);
    fputs(q, f);
    free(q);
    return 0;
}

/* What a PEFT folder says about the model's task: adapter_config's
 * task_type (PEFT's TaskType), the model card's pipeline tag, the
 * transformers class that loads the base model, and the task in words. */
static const struct {
    const char *task_type, *pipeline_tag, *auto_class, *what;
} peft_tasks[TASK_COUNT] = {
    [TASK_CLASSIFICATION] = {"SEQ_CLS", "text-classification", "AutoModelForSequenceClassification",
                             "sequence classification"},
    [TASK_REGRESSION] = {"SEQ_CLS", "text-classification", "AutoModelForSequenceClassification",
                         "sequence regression"},
    [TASK_CAUSAL_LM] = {"CAUSAL_LM", "text-generation", "AutoModelForCausalLM",
                        "causal language modelling"},
};

/* vLLM's default --max-lora-rank (vllm/config/lora.py, LoRAConfig.max_lora_rank):
 * it refuses adapters of a higher rank unless started with a larger one. */
#define VLLM_DEFAULT_MAX_LORA_RANK 16

/* The model card's labels section: a sequence classifier's classes. */
static int readme_labels(FILE *f, const aflo_model *m, const adapter_export_info *info) {
    int oom = 0;
    fputs("## Labels\n\n", f);
    if (model_task(m) == TASK_REGRESSION) {
        fputs("One output (`num_labels` 1, `problem_type` \"regression\").\n\n", f);
        return 0;
    }
    fprintf(f,
            "%d classes. config.json here is the base model's configuration with this task's "
            "head: `num_labels`, `problem_type` and `id2label` / `label2id`:\n\n```json\n{",
            model_num_labels(m));
    for (int k = 0; k < model_num_labels(m); k++) {
        fprintf(f, "%s\"%d\": ", k ? ", " : "", k);
        char id[16];
        snprintf(id, sizeof id, "%d", k);
        oom |= put_quoted(f, info && info->labels ? info->labels[k] : id);
    }
    fputs("}\n```\n\n", f);
    return oom;
}

/* The model card's serving notes for a causal LM: what vLLM and llama.cpp
 * need to take the folder. */
static void readme_serving(FILE *f, const aflo_model *m) {
    int r = model_adapter_config(m)->rank;
    fputs("## Serving\n\n- vLLM (`--enable-lora`) ", f);
    if (r <= VLLM_DEFAULT_MAX_LORA_RANK)
        fprintf(f, "takes it as it is (rank %d is within its default `--max-lora-rank` %d).\n", r,
                VLLM_DEFAULT_MAX_LORA_RANK);
    else
        fprintf(f,
                "needs `--max-lora-rank` of at least %d: its default (%d) refuses higher "
                "ranks.\n",
                r, VLLM_DEFAULT_MAX_LORA_RANK);
    fputs("- llama.cpp: `convert_lora_to_gguf.py` converts the folder; it holds only `lora_A` "
          "and `lora_B` tensors.\n\n",
          f);
}

/* README.md beside the adapter: a model card saying what the folder is, where
 * base_model_name_or_path came from, the labels (or, for a causal LM, how
 * to serve it) and how to load it (PEFT's own save_pretrained writes a
 * README.md there too). */
static char *peft_readme(const aflo_model *m, const adapter_export_info *info,
                         const char *base_model) {
    const aflo_adapter_config *ac = model_adapter_config(m);
    const aflo_task task = model_task(m);
    const bool causal = task == TASK_CAUSAL_LM;
    const adapter_base_source src = info ? info->base_model_source : ADAPTER_BASE_UNSPECIFIED;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    int oom = 0;
    fputs("---\nlibrary_name: peft\n", f);
    if (src == ADAPTER_BASE_NAME_OR_PATH && base_model[0]) { /* a name others can resolve */
        fputs("base_model: ", f);
        oom |= put_quoted(f, base_model);
        fputc('\n', f);
    }
    fprintf(f, "pipeline_tag: %s\ntags:\n- aflorad\n- lora\n- %s\n---\n\n",
            peft_tasks[task].pipeline_tag, method_names[ac->method]);
    fprintf(f,
            "# %s adapter (rank %d), trained by aflorad\n\n"
            "A PEFT LoRA adapter for %s, for `peft.PeftModel.from_pretrained`.%s\n\n",
            method_names[ac->method], ac->rank, peft_tasks[task].what,
            ac->method == METHOD_LORA
                ? ""
                : " The method's vectors are folded into `lora_A` and `lora_B` "
                  "exactly (`lora_A = diag(s_d) A`, `lora_B = diag(s_b) B`, "
                  "`lora_alpha = r`).");
    fputs("## Base model\n\n`base_model_name_or_path` in adapter_config.json is ", f);
    oom |= put_quoted(f, base_model);
    switch (src) {
    case ADAPTER_BASE_NAME_OR_PATH:
        fputs(": the `_name_or_path` recorded in the base model folder's config.json.\n\n", f);
        break;
    case ADAPTER_BASE_LOCAL_NAME:
        fputs(": the name the aflorad daemon knew the base model by (the folder's config.json has "
              "no `_name_or_path`); only that daemon resolves it. Load the same model yourself, "
              "from the Hub or a local folder, as below (or put its name into adapter_config.json)."
              "\n\n",
              f);
        break;
    case ADAPTER_BASE_UNSPECIFIED: fputs(".\n\n", f); break;
    }
    if (causal)
        readme_serving(f, m);
    else
        oom |= readme_labels(f, m, info);
    fprintf(f,
            "## Loading\n\n```python\nfrom transformers import %s%s\nfrom peft import PeftModel\n\n"
            "adapter = \"path/to/this/folder\"\n",
            causal ? "" : "AutoConfig, ", peft_tasks[task].auto_class);
    if (!causal)
        fputs("config = AutoConfig.from_pretrained(adapter)  # config.json: the labels\n", f);
    fprintf(f, "model = %s.from_pretrained(", peft_tasks[task].auto_class);
    oom |= put_quoted(f, base_model[0] ? base_model : "BASE_MODEL");
    fprintf(f,
            "%s)\n"
            "model = PeftModel.from_pretrained(model, adapter)\n```\n",
            causal ? "" : ", config=config");
    int bad = ferror(f);
    if (fclose(f) || bad || oom) {
        free(buf);
        return NULL;
    }
    return buf;
}

static char *peft_config_json(const aflo_model *m, const char *base_model, float lora_alpha) {
    const aflo_adapter_config *ac = model_adapter_config(m);
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    char alpha[32];
    /* integral alphas as integers: LoraConfig declares lora_alpha an int */
    if (lora_alpha == floorf(lora_alpha) && fabsf(lora_alpha) < 1e9f)
        snprintf(alpha, sizeof alpha, "%d", (int)lora_alpha);
    else
        adapter_format_float(alpha, sizeof alpha, lora_alpha);
    size_t blen = strlen(base_model);
    char *quoted = malloc(6 * blen + 3);
    if (!quoted) {
        fclose(f);
        free(buf);
        return NULL;
    }
    json_quote(quoted, 6 * blen + 3, base_model, blen);
    /* Keys sorted, as peft writes them; fields a LoraConfig reads with
     * effect on inference are all explicit. */
    fprintf(f,
            "{\n"
            "  \"alpha_pattern\": {},\n"
            "  \"base_model_name_or_path\": %s,\n"
            "  \"bias\": \"none\",\n"
            "  \"fan_in_fan_out\": false,\n"
            "  \"inference_mode\": true,\n"
            "  \"init_lora_weights\": true,\n"
            "  \"layers_pattern\": null,\n"
            "  \"layers_to_transform\": null,\n"
            "  \"lora_alpha\": %s,\n"
            "  \"lora_dropout\": 0.0,\n"
            "  \"modules_to_save\": %s,\n"
            "  \"peft_type\": \"LORA\",\n"
            "  \"r\": %d,\n"
            "  \"rank_pattern\": {},\n"
            "  \"revision\": null,\n"
            "  \"target_modules\": ",
            quoted, alpha, model_variant(m)->peft_modules_to_save, ac->rank);
    free(quoted);
    write_target_modules(f, model_family(m), ac->targets);
    fprintf(f,
            ",\n"
            "  \"task_type\": \"%s\",\n"
            "  \"use_dora\": false,\n"
            "  \"use_rslora\": false\n"
            "}\n",
            peft_tasks[model_task(m)].task_type);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

int adapter_export_peft(aflo_model *m, const char *dir, const adapter_export_info *info, char *err,
                        size_t errlen) {
    const aflo_adapter_config *ac = model_adapter_config(m);
    if (ac->method == METHOD_FULL)
        return set_err(err, errlen,
                       "%s: a fully fine-tuned model has no low-rank adapter to export in PEFT "
                       "format; export the native file instead",
                       dir);
    const char *base_model = info && info->base_model ? info->base_model : "";
    if (!adapter_valid_utf8(base_model)) return set_err(err, errlen, "base_model: not valid UTF-8");
    if (adapter_check_label_names(m, info, err, errlen)) return -1;

    int rc = -1, nlin = 0;
    float *folded = NULL;
    char *config = NULL, *model_config_json = NULL, *readme = NULL, *inputs = NULL;
    st_writer *w = NULL;
    adapted_linear *lins = adapted_linears(m, &nlin);
    if (!lins) goto oom;
    if (adapter_has_inputs(info) && !(inputs = adapter_inputs_file_text(info->inputs))) goto oom;
    bool vectors = ac->method == METHOD_AFLORA || ac->method == METHOD_ELORA;
    size_t total = 0;
    for (int i = 0; i < nlin && vectors; i++) total += lins[i].A->size + lins[i].B->size;
    folded = malloc((total ? total : 1) * sizeof *folded);
    w = st_writer_new();
    if (!folded || !w) goto oom;

    char key[MAX_KEY];
    float *next = folded;
    for (int i = 0; i < nlin; i++) {
        adapted_linear *l = &lins[i];
        const float *a = l->A->data, *b = l->B->data;
        if (vectors) {
            /* lora_A = diag(s_d) A: row k of A times s_d[k];
             * lora_B = diag(s_b) B: row j of B times s_b[j]. */
            int r = l->A->shape[0], in = l->A->shape[1], out = l->B->shape[0];
            float *fa = next, *fb = next + l->A->size;
            for (int k = 0; k < r; k++)
                for (int j = 0; j < in; j++)
                    fa[(size_t)k * in + j] = l->sd->data[k] * a[(size_t)k * in + j];
            for (int j = 0; j < out; j++)
                for (int k = 0; k < r; k++)
                    fb[(size_t)j * r + k] = l->sb->data[j] * b[(size_t)j * r + k];
            a = fa;
            b = fb;
            next += l->A->size + l->B->size;
        }
        int64_t sa[2] = {l->A->shape[0], l->A->shape[1]}, sb[2] = {l->B->shape[0], l->B->shape[1]};
        /* engine "encoder.layer.3.attention.self.query.lora_A" -> "...lora_A.weight" */
        if (peft_key(key, sizeof key, m, l->A, ".weight")) goto long_key;
        if (st_writer_add(w, key, sa, 2, a, err, errlen)) goto out;
        if (peft_key(key, sizeof key, m, l->B, ".weight")) goto long_key;
        if (st_writer_add(w, key, sb, 2, b, err, errlen)) goto out;
    }
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_HEAD) continue;
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        if (peft_key(key, sizeof key, m, p, "")) goto long_key;
        if (st_writer_add(w, key, shape, (size_t)p->ndim, p->data, err, errlen)) goto out;
    }
    /* transformers and peft tag their safetensors with the framework */
    if (st_writer_set_metadata(w, "format", "pt", err, errlen)) goto out;

    config = peft_config_json(m, base_model, vectors ? (float)ac->rank : ac->alpha);
    /* PEFT's adapter_config has no field for label names (and older PEFT
     * refuses unknown keys), so they go into a config.json beside it. */
    config_task task = {.regression = model_task(m) == TASK_REGRESSION,
                        .num_labels = model_num_labels(m),
                        .labels = info ? info->labels : NULL};
    model_config_json = config_to_json_task(model_config(m), &task);
    readme = peft_readme(m, info, base_model);
    if (!config || !model_config_json || !readme) goto oom;
    peft_files pf = {w, {NULL, config, model_config_json, readme, inputs}};
    rc = write_folder_atomic(dir, peft_names, N_PEFT_FILES, fill_peft, &pf, err, errlen);
    goto out;
long_key:
    set_err(err, errlen, "%s: a tensor name is too long for a PEFT key", dir);
    goto out;
oom:
    set_err(err, errlen, "%s: out of memory", dir);
out:
    st_writer_free(w);
    free(config);
    free(model_config_json);
    free(readme);
    free(inputs);
    free(folded);
    free(lins);
    return rc;
}

/* ---------------------------------------------------------------- PEFT import */

typedef struct {
    int r;
    double lora_alpha;
} peft_config;

static int read_peft_config(const char *dir, peft_config *pc, char *base_model, size_t cap,
                            char *err, size_t errlen) {
    char path[4096 + 64];
    snprintf(path, sizeof path, "%s/%s", dir, PEFT_CONFIG_FILE);
    json_value *root = read_json_file(path, MAX_PEFT_CONFIG_BYTES, err, errlen);
    if (!root) return -1;
    int rc = -1;
    const json_value *v;
    const char *s = json_string(json_get(root, "peft_type"), NULL);
    if (!s || strcmp(s, "LORA") != 0) {
        set_err(err, errlen, "%s: peft_type is %s; only LORA adapters can be loaded", path,
                s ? s : "missing");
        goto out;
    }
    v = json_get(root, "r");
    if (!json_is_int(v) || json_int(v) < 1 || json_int(v) > 65536) {
        set_err(err, errlen, "%s: r must be an integer between 1 and 65536", path);
        goto out;
    }
    pc->r = (int)json_int(v);
    v = json_get(root, "lora_alpha");
    if (json_type_of(v) != JSON_NUMBER || !isfinite(json_number(v))) {
        set_err(err, errlen, "%s: lora_alpha must be a number", path);
        goto out;
    }
    pc->lora_alpha = json_number(v);
    /* Options that change what the tensors mean: refuse rather than misread. */
    static const char *const flags[] = {"use_rslora", "use_dora", "fan_in_fan_out"};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        if (json_bool(json_get(root, flags[i]))) {
            set_err(err, errlen, "%s: %s = true is not supported", path, flags[i]);
            goto out;
        }
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    for (size_t i = 0; i < sizeof patterns / sizeof *patterns; i++)
        if (json_len(json_get(root, patterns[i])) > 0) {
            set_err(err, errlen, "%s: per-module %s is not supported", path, patterns[i]);
            goto out;
        }
    s = json_string(json_get(root, "bias"), NULL);
    if (s && strcmp(s, "none") != 0) {
        set_err(err, errlen, "%s: bias \"%s\" is not supported (only \"none\")", path, s);
        goto out;
    }
    if (base_model && cap) {
        s = json_string(json_get(root, "base_model_name_or_path"), NULL);
        snprintf(base_model, cap, "%s", s ? s : "");
    }
    rc = 0;
out:
    json_free(root);
    return rc;
}

/* Key without PEFT's root and the base model's attribute (a variant prefix
 * of the family: "bert.", "roberta."), or NULL when it does not start with
 * the root. */
static const char *peft_strip(const aflo_family *fam, const char *key) {
    if (strncmp(key, PEFT_ROOT, strlen(PEFT_ROOT)) != 0) return NULL;
    key += strlen(PEFT_ROOT);
    for (int v = 0; v < fam->n_variants; v++) {
        size_t n = strlen(fam->variants[v].hf_prefix);
        if (strncmp(key, fam->variants[v].hf_prefix, n) == 0) return key + n;
    }
    return key;
}

/* "<block prefix>N.<module path>.lora_A.weight" ("encoder.layer.3.attention.
 * self.query.lora_A.weight") -> module, or -1. */
static int lora_module_of(const aflo_family *fam, const char *rest, char which) {
    char suffix[] = ".lora_X.weight";
    suffix[6] = which;
    size_t blen = strlen(fam->block_prefix);
    if (strncmp(rest, fam->block_prefix, blen) != 0) return -1;
    const char *p = rest + blen;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') p++;
    if (*p++ != '.') return -1;
    size_t plen = strlen(p), slen = strlen(suffix);
    if (plen <= slen || strcmp(p + plen - slen, suffix) != 0) return -1;
    for (int mod = 0; mod < fam->n_modules; mod++)
        if (strlen(fam->modules[mod].path) == plen - slen &&
            strncmp(fam->modules[mod].path, p, plen - slen) == 0)
            return mod;
    return -1;
}

static st_file *open_peft_weights(const char *dir, char *err, size_t errlen) {
    char path[4096 + 64];
    snprintf(path, sizeof path, "%s/%s", dir, PEFT_WEIGHTS_FILE);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(path, sizeof path, "%s/adapter_model.bin", dir);
        if (stat(path, &st) == 0) {
            set_err(err, errlen,
                    "%s: has adapter_model.bin but no %s; aflorad reads only safetensors (save "
                    "the adapter with save_pretrained(..., safe_serialization=True))",
                    dir, PEFT_WEIGHTS_FILE);
            return NULL;
        }
        snprintf(path, sizeof path, "%s/%s", dir, PEFT_WEIGHTS_FILE);
    }
    return st_open(path, err, errlen);
}

int adapter_peft_read_labels(const char *dir, int num_labels, hf_head_info *head, char *err,
                             size_t errlen) {
    memset(head, 0, sizeof *head);
    char path[4096 + 64];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, PEFT_MODEL_CONFIG_FILE) >= sizeof path)
        return set_err(err, errlen, "%s: path too long", dir);
    if (access(path, F_OK) != 0 && errno == ENOENT) return 0; /* a folder PEFT wrote */
    if (hfmodel_read_head(dir, head, err, errlen)) return -1;
    if (head->num_labels == 0 || head->num_labels == num_labels) return 0;
    set_err(err, errlen, "%s: names %d classes, but the adapter's classifier has %d", path,
            head->num_labels, num_labels);
    hf_head_info_free(head);
    return -1;
}

int adapter_peft_read_config(const char *dir, aflo_adapter_config *ac, char *base_model,
                             size_t base_model_cap, char *err, size_t errlen) {
    peft_config pc;
    if (read_peft_config(dir, &pc, base_model, base_model_cap, err, errlen)) return -1;
    st_file *f = open_peft_weights(dir, err, errlen);
    if (!f) return -1;
    /* The first family whose block and module names the keys use: its
     * module bits are the targets. A family's checkpoints carry its own
     * model prefix ("bert.", "roberta."), so families do not overlap. */
    unsigned targets = 0;
    for (int k = 0; k < family_count() && !targets; k++) {
        const aflo_family *fam = family_at(k);
        for (size_t i = 0; i < st_count(f); i++) {
            const char *rest = peft_strip(fam, st_name(f, i));
            int mod = rest ? lora_module_of(fam, rest, 'A') : -1;
            if (mod >= 0) targets |= 1u << mod;
        }
    }
    st_close(f);
    if (!targets)
        return set_err(err, errlen, "%s: no lora_A tensors of a supported model's layers found",
                       dir);
    memset(ac, 0, sizeof *ac);
    ac->method = METHOD_LORA;
    ac->rank = pc.r;
    ac->alpha = (float)pc.lora_alpha;
    ac->targets = targets;
    ac->projections = PROJ_ALL;
    return 0;
}

/* Engine tensor a PEFT key fills, or NULL (the caller reports it). */
static aflo_param *peft_target(aflo_model *m, const char *key) {
    const aflo_family *fam = model_family(m);
    const char *rest = peft_strip(fam, key);
    if (!rest) return NULL;
    char name[MAX_KEY];
    if (lora_module_of(fam, rest, 'A') >= 0 || lora_module_of(fam, rest, 'B') >= 0) {
        snprintf(name, sizeof name, "%.*s", (int)(strlen(rest) - strlen(".weight")), rest);
        aflo_param *p = model_find_param(m, name);
        return p && (p->role == PROLE_A || p->role == PROLE_B) ? p : NULL;
    }
    /* the head, under modules_to_save, by the names peft_key() gives it */
    const char *prefix = model_variant(m)->hf_prefix;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_HEAD || model_hf_name(m, p, name, sizeof name)) continue;
        const char *want = name;
        if (strncmp(want, prefix, strlen(prefix)) == 0) want += strlen(prefix);
        if (strcmp(rest, want) == 0) return p;
    }
    return NULL;
}

int adapter_import_peft(aflo_model *m, const char *dir, adapter_import_report *report, char *err,
                        size_t errlen) {
    adapter_import_report local;
    adapter_import_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    const aflo_adapter_config *ac = model_adapter_config(m);
    if (ac->method == METHOD_FULL)
        return set_err(err, errlen,
                       "%s: a LoRA adapter needs a model with adapters, not method full", dir);
    peft_config pc;
    if (read_peft_config(dir, &pc, NULL, 0, err, errlen)) return -1;
    if (pc.r != ac->rank)
        return set_err(err, errlen, "%s: adapter rank r = %d but the model has rank %d", dir, pc.r,
                       ac->rank);
    if (ac->method == METHOD_LORA && (float)pc.lora_alpha != ac->alpha)
        return set_err(err, errlen,
                       "%s: lora_alpha = %g but the LoRA model has alpha %g (create it with the "
                       "adapter's alpha)",
                       dir, pc.lora_alpha, (double)ac->alpha);
    st_file *f = open_peft_weights(dir, err, errlen);
    if (!f) return -1;

    int n = model_param_count(m), rc = -1;
    long *src = malloc((size_t)n * sizeof *src);
    if (!src) {
        st_close(f);
        return set_err(err, errlen, "%s: out of memory", dir);
    }
    for (int i = 0; i < n; i++) src[i] = -1;
    problem_list pr = {.count = 0};
    for (size_t i = 0; i < st_count(f); i++) {
        aflo_param *p = peft_target(m, st_name(f, i));
        if (!p) {
            problem_add(&pr, "%s is not a tensor of this model's adapters or head", st_name(f, i));
            continue;
        }
        long *slot = &src[p - model_param(m, 0)];
        if (*slot >= 0) {
            problem_add(&pr, "%s appears twice", p->name);
            continue;
        }
        if (adapter_check_tensor(&pr, f, i, p))
            *slot = (long)i;
        else
            *slot = -2; /* present but unusable: already reported */
    }
    for (int i = 0; i < n; i++) {
        aflo_param *p = model_param(m, i);
        if ((p->role == PROLE_A || p->role == PROLE_B) && src[i] == -1)
            problem_add(&pr, "no %s tensor for %s", p->role == PROLE_A ? "lora_A" : "lora_B",
                        p->name);
    }
    /* each of the family's head layers (BERT: pooler.dense, classifier)
     * comes whole or not at all; loaded: the hidden ones (the pooler) and
     * the output layer (the classifier) */
    bool hidden_loaded = true, output_loaded = false;
    for (const char *const *h = model_family(m)->head_layers; h && *h; h++) {
        char wname[96], bname[96];
        snprintf(wname, sizeof wname, "%s.weight", *h);
        snprintf(bname, sizeof bname, "%s.bias", *h);
        aflo_param *pw = model_find_param(m, wname), *pb = model_find_param(m, bname);
        if (!pw || !pb) continue;
        long a = src[pw - model_param(m, 0)], b = src[pb - model_param(m, 0)];
        if ((a == -1) != (b == -1))
            problem_add(&pr, "%s without %s", a == -1 ? pb->name : pw->name,
                        a == -1 ? pw->name : pb->name);
        if (h[1])
            hidden_loaded &= a >= 0 && b >= 0;
        else
            output_loaded = a >= 0 && b >= 0;
    }
    if (pr.count) {
        problems_error(&pr, dir, "problem", "problems", err, errlen);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (src[i] < 0) continue;
        aflo_param *p = model_param(m, i);
        if (st_read_f32_at(f, (size_t)src[i], p->data, p->size, err, errlen)) goto out;
    }
    if (ac->method != METHOD_LORA) {
        /* s_b ⊙ B (s_d ⊙ A x) with s_d = alpha/r, s_b = 1 is (alpha/r) B A x */
        float scale = (float)(pc.lora_alpha / pc.r);
        for (int i = 0; i < n; i++) {
            aflo_param *p = model_param(m, i);
            if (p->role != PROLE_SD && p->role != PROLE_SB) continue;
            for (size_t j = 0; j < p->size; j++) p->data[j] = p->role == PROLE_SD ? scale : 1.0f;
        }
    }
    rep->pooler_loaded = hidden_loaded;
    rep->classifier_loaded = output_loaded;
    rc = 0;
out:
    free(src);
    st_close(f);
    return rc;
}
