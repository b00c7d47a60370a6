/* config.c — read, check and write a model's config.json (BERT, DeBERTa and LLaMA
 * families).
 *
 * The numeric and boolean fields are one table (name, kind, required,
 * default, where it lives in aflo_config), so reading, defaults and error
 * messages cannot drift apart; a field that is not required may also be
 * null, which transformers writes for an unset optional value (pad_token_id,
 * sliding_window, head_dim) and which means its default. The string fields
 * (model_type, hidden_act), BERT's position_embedding_type, LLaMA's
 * rope_scaling object and DeBERTa's list keys (pos_att_type, norm_rel_ebd:
 * "a|b" strings or arrays, unknown entries refused by name) are handled by
 * hand after it. A model type whose transformers config class has other
 * defaults (DebertaV2Config: type_vocab_size 0, layer_norm_eps 1e-7) says so
 * in type_defaults. Keys the table does not
 * know are ignored: Hugging Face configs carry many (initializer_range,
 * transformers_version, id2label, ...) that do not change the forward pass.
 * Every field is read whatever the family; each family uses its own.
 *
 * What follows from the model type comes from the family registry
 * (family.h): which types are read at all (family_for_config: a model_type,
 * or without one architectures[0], that no family reads is refused before
 * any other field as "unsupported architecture ... (supported: ...)"), the
 * activation it implements, the variant's config_finish (RoBERTa position
 * numbering, LLaMA's derived fields) once the fields are read, its class on
 * writing. So everything that reads a config.json — the loader, the model
 * probe, GET /models — refuses another family's folder in the same words.
 *
 * config_from_json() also runs config_validate(), so a config that reads
 * successfully is usable. config_to_json() prints floats with the fewest
 * digits that read back to the same float, so write -> read is exact. */
#include "model/config.h"

#include "base/errmsg.h"
#include "model/family.h"
#include "base/json.h"

#include <ctype.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Defaults of transformers' BertConfig (models/bert/configuration_bert.py),
 * used when a key is absent. */
#define BERT_DEFAULT_MAX_POSITION_EMBEDDINGS 512
#define BERT_DEFAULT_TYPE_VOCAB_SIZE 2
#define BERT_DEFAULT_PAD_TOKEN_ID 0
#define BERT_DEFAULT_LAYER_NORM_EPS 1e-12
#define BERT_DEFAULT_DROPOUT 0.1
#define BERT_DEFAULT_MODEL_TYPE "bert"
/* Defaults of transformers' LlamaConfig (models/llama/configuration_llama.py). */
#define LLAMA_DEFAULT_RMS_NORM_EPS 1e-6
#define LLAMA_DEFAULT_ROPE_THETA 10000.0
/* BERT's only activation: transformers' "gelu" is the exact erf form;
 * "gelu_new"/"gelu_fast" are tanh approximations and would silently change
 * the model if accepted. Each family names its own (aflo_family.hidden_act). */
#define SUPPORTED_HIDDEN_ACT "gelu"
/* Learned absolute positions; "relative_key*" adds attention terms we lack. */
#define SUPPORTED_POSITION_EMBEDDING "absolute"

typedef enum { FIELD_INT, FIELD_FLOAT, FIELD_BOOL } field_kind;

typedef struct {
    const char *name;
    field_kind kind;
    int required;
    double default_value; /* when not required */
    size_t offset;        /* into aflo_config */
} config_field;

static const config_field config_fields[] = {
    {"vocab_size", FIELD_INT, 1, 0, offsetof(aflo_config, vocab_size)},
    {"hidden_size", FIELD_INT, 1, 0, offsetof(aflo_config, hidden_size)},
    {"num_hidden_layers", FIELD_INT, 1, 0, offsetof(aflo_config, num_hidden_layers)},
    {"num_attention_heads", FIELD_INT, 1, 0, offsetof(aflo_config, num_attention_heads)},
    {"intermediate_size", FIELD_INT, 1, 0, offsetof(aflo_config, intermediate_size)},
    {"max_position_embeddings", FIELD_INT, 0, BERT_DEFAULT_MAX_POSITION_EMBEDDINGS,
     offsetof(aflo_config, max_position_embeddings)},
    {"type_vocab_size", FIELD_INT, 0, BERT_DEFAULT_TYPE_VOCAB_SIZE,
     offsetof(aflo_config, type_vocab_size)},
    {"pad_token_id", FIELD_INT, 0, BERT_DEFAULT_PAD_TOKEN_ID, offsetof(aflo_config, pad_token_id)},
    {"layer_norm_eps", FIELD_FLOAT, 0, BERT_DEFAULT_LAYER_NORM_EPS,
     offsetof(aflo_config, layer_norm_eps)},
    {"hidden_dropout_prob", FIELD_FLOAT, 0, BERT_DEFAULT_DROPOUT,
     offsetof(aflo_config, hidden_dropout_prob)},
    {"attention_probs_dropout_prob", FIELD_FLOAT, 0, BERT_DEFAULT_DROPOUT,
     offsetof(aflo_config, attention_probs_dropout_prob)},
    {"rms_norm_eps", FIELD_FLOAT, 0, LLAMA_DEFAULT_RMS_NORM_EPS,
     offsetof(aflo_config, rms_norm_eps)},
    {"rope_theta", FIELD_FLOAT, 0, LLAMA_DEFAULT_ROPE_THETA, offsetof(aflo_config, rope_theta)},
    {"num_key_value_heads", FIELD_INT, 0, 0, offsetof(aflo_config, num_key_value_heads)},
    {"head_dim", FIELD_INT, 0, 0, offsetof(aflo_config, head_dim)},
    {"tie_word_embeddings", FIELD_BOOL, 0, 0, offsetof(aflo_config, tie_word_embeddings)},
    {"sliding_window", FIELD_INT, 0, 0, offsetof(aflo_config, sliding_window)},
    {"use_sliding_window", FIELD_BOOL, 0, 0, offsetof(aflo_config, use_sliding_window)},
    {"attention_bias", FIELD_BOOL, 0, 0, offsetof(aflo_config, attention_bias)},
    {"mlp_bias", FIELD_BOOL, 0, 0, offsetof(aflo_config, mlp_bias)},
    {"attention_dropout", FIELD_FLOAT, 0, 0, offsetof(aflo_config, attention_dropout)},
    /* DeBERTa-v2 (transformers' DebertaV2Config defaults) */
    {"relative_attention", FIELD_BOOL, 0, 0, offsetof(aflo_config, relative_attention)},
    {"position_biased_input", FIELD_BOOL, 0, 1, offsetof(aflo_config, position_biased_input)},
    {"share_att_key", FIELD_BOOL, 0, 0, offsetof(aflo_config, share_att_key)},
    {"position_buckets", FIELD_INT, 0, -1, offsetof(aflo_config, position_buckets)},
    {"max_relative_positions", FIELD_INT, 0, -1, offsetof(aflo_config, max_relative_positions)},
    {"conv_kernel_size", FIELD_INT, 0, 0, offsetof(aflo_config, conv_kernel_size)},
    {"embedding_size", FIELD_INT, 0, 0, offsetof(aflo_config, embedding_size)},
    {"pooler_hidden_size", FIELD_INT, 0, 0, offsetof(aflo_config, pooler_hidden_size)},
};
#define N_CONFIG_FIELDS (sizeof config_fields / sizeof config_fields[0])

/* Where a model type's transformers config class has another default than
 * the table's: DebertaV2Config has no token types and eps 1e-7. */
static const struct {
    const char *model_type, *field;
    double value;
} type_defaults[] = {
    {"deberta-v2", "type_vocab_size", 0},
    {"deberta-v2", "layer_norm_eps", 1e-7},
};

/* The table's field with model_type's default where that differs. */
static config_field field_for(const config_field *f, const char *model_type) {
    config_field out = *f;
    for (size_t i = 0; i < sizeof type_defaults / sizeof *type_defaults; i++)
        if (strcmp(type_defaults[i].model_type, model_type) == 0 &&
            strcmp(type_defaults[i].field, f->name) == 0)
            out.default_value = type_defaults[i].value;
    return out;
}

static int read_field(aflo_config *c, const config_field *f, const json_value *v, char *err,
                      size_t errlen) {
    void *dst = (char *)c + f->offset;
    if (!v || (!f->required && json_type_of(v) == JSON_NULL)) {
        if (f->required)
            return set_err(err, errlen, "config.json: missing required field %s", f->name);
        if (f->kind == FIELD_INT)
            *(int *)dst = (int)f->default_value;
        else if (f->kind == FIELD_BOOL)
            *(bool *)dst = f->default_value != 0;
        else
            *(float *)dst = (float)f->default_value;
        return 0;
    }
    if (f->kind == FIELD_BOOL) {
        if (json_type_of(v) != JSON_BOOL)
            return set_err(err, errlen, "config.json: %s must be a boolean, got %s", f->name,
                           json_type_name(json_type_of(v)));
        *(bool *)dst = json_bool(v);
    } else if (f->kind == FIELD_INT) {
        if (!json_is_int(v)) {
            const char *what = json_type_of(v) == JSON_NUMBER ? "a non-integer number"
                                                              : json_type_name(json_type_of(v));
            return set_err(err, errlen, "config.json: %s must be an integer, got %s", f->name,
                           what);
        }
        int64_t x = json_int(v);
        if (x < INT_MIN || x > INT_MAX)
            return set_err(err, errlen, "config.json: %s = %lld is out of range", f->name,
                           (long long)x);
        *(int *)dst = (int)x;
    } else {
        if (json_type_of(v) != JSON_NUMBER)
            return set_err(err, errlen, "config.json: %s must be a number, got %s", f->name,
                           json_type_name(json_type_of(v)));
        double x = json_number(v);
        if (fabs(x) > (double)FLT_MAX)
            return set_err(err, errlen, "config.json: %s = %g does not fit a float", f->name, x);
        *(float *)dst = (float)x;
    }
    return 0;
}

/* Optional string field: NULL when absent, error when present but not a
 * NUL-free string. */
static int read_string(const json_value *root, const char *name, const char **out, char *err,
                       size_t errlen) {
    const json_value *v = json_get(root, name);
    *out = NULL;
    if (!v) return 0;
    size_t len;
    const char *s = json_string(v, &len);
    if (!s)
        return set_err(err, errlen, "config.json: %s must be a string, got %s", name,
                       json_type_name(json_type_of(v)));
    if (strlen(s) != len)
        return set_err(err, errlen, "config.json: %s contains a NUL character", name);
    *out = s;
    return 0;
}

/* A number member of a rope_scaling object; -1 when absent or not a number. */
static int rope_number(const json_value *obj, const char *key, double *out, bool required,
                       char *err, size_t errlen) {
    const json_value *x = json_get(obj, key);
    if (!x) {
        if (required) return set_err(err, errlen, "config.json: rope_scaling lacks \"%s\"", key);
        return 0;
    }
    if (json_type_of(x) != JSON_NUMBER || !(fabs(json_number(x)) <= (double)FLT_MAX))
        return set_err(err, errlen, "config.json: rope_scaling.%s must be a number", key);
    *out = json_number(x);
    return 0;
}

/* rope_scaling (null or absent: none), or the newer rope_parameters, which
 * also carries rope_theta. Its type is "rope_type" (older files: "type"):
 * "default", "linear" (factor) or "llama3" (factor, low_freq_factor,
 * high_freq_factor, original_max_position_embeddings); every other scheme
 * (dynamic, yarn, longrope, ...) changes the positions differently and is
 * refused by name. */
static int read_rope_scaling(aflo_config *c, const json_value *root, char *err, size_t errlen) {
    c->rope_scaling = ROPE_SCALING_NONE;
    const char *key = "rope_scaling";
    const json_value *rs = json_get(root, key);
    if (!rs || json_type_of(rs) == JSON_NULL) {
        key = "rope_parameters";
        rs = json_get(root, key);
    }
    if (!rs || json_type_of(rs) == JSON_NULL) return 0;
    if (json_type_of(rs) != JSON_OBJECT)
        return set_err(err, errlen, "config.json: %s must be an object, got %s", key,
                       json_type_name(json_type_of(rs)));
    double theta = c->rope_theta;
    if (rope_number(rs, "rope_theta", &theta, false, err, errlen)) return -1;
    c->rope_theta = (float)theta;
    const json_value *t = json_get(rs, "rope_type");
    if (!t) t = json_get(rs, "type");
    const char *type = json_string(t, NULL);
    if (!type) return set_err(err, errlen, "config.json: %s needs a string rope_type", key);
    if (strcmp(type, "default") == 0) return 0;
    double factor = 1, lo = 0, hi = 0, orig = 0;
    if (strcmp(type, "linear") == 0) {
        c->rope_scaling = ROPE_SCALING_LINEAR;
        if (rope_number(rs, "factor", &factor, true, err, errlen)) return -1;
    } else if (strcmp(type, "llama3") == 0) {
        c->rope_scaling = ROPE_SCALING_LLAMA3;
        if (rope_number(rs, "factor", &factor, true, err, errlen) ||
            rope_number(rs, "low_freq_factor", &lo, true, err, errlen) ||
            rope_number(rs, "high_freq_factor", &hi, true, err, errlen) ||
            rope_number(rs, "original_max_position_embeddings", &orig, true, err, errlen))
            return -1;
        if (!(hi > lo && lo > 0) || !(orig >= 1 && orig <= INT_MAX))
            return set_err(err, errlen,
                           "config.json: rope_scaling llama3 needs high_freq_factor > "
                           "low_freq_factor > 0 and original_max_position_embeddings >= 1");
    } else {
        return set_err(err, errlen,
                       "config.json: rope_scaling type \"%s\" is not supported (only "
                       "\"linear\" and \"llama3\")",
                       type);
    }
    if (!(factor >= 1))
        return set_err(err, errlen, "config.json: rope_scaling.factor must be >= 1, got %g",
                       factor);
    c->rope_factor = (float)factor;
    c->rope_low_freq_factor = (float)lo;
    c->rope_high_freq_factor = (float)hi;
    c->rope_original_max_position_embeddings = (int)orig;
    return 0;
}

/* One "|"-separated list entry (DebertaV2Config lower-cases and strips
 * them) against a table of names; the bit of the match, 0 when none. */
typedef struct {
    const char *name;
    unsigned bit;
} named_bit;

static unsigned entry_bit(const char *s, size_t len, const named_bit *t, size_t n) {
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    for (size_t i = 0; i < n; i++) {
        const char *a = t[i].name;
        size_t k = 0;
        while (k < len && a[k] && tolower((unsigned char)s[k]) == a[k]) k++;
        if (k == len && !a[k]) return t[i].bit;
    }
    return 0;
}

/* A DeBERTa list key: a string "p2c|c2p" or an array of strings; each
 * non-blank entry must name an entry of t. */
static int read_bit_list(const json_value *root, const char *key, const named_bit *t, size_t n,
                         unsigned *out, char *err, size_t errlen) {
    *out = 0;
    const json_value *v = json_get(root, key);
    if (!v || json_type_of(v) == JSON_NULL) return 0;
    bool list = json_type_of(v) == JSON_ARRAY;
    for (size_t i = 0; i < (list ? json_len(v) : 1); i++) {
        size_t len;
        const char *s = json_string(list ? json_at(v, i) : v, &len);
        if (!s)
            return set_err(err, errlen, "config.json: %s must be a string or a list of strings",
                           key);
        for (size_t a = 0, b = 0; b <= len; b++) {
            if (b < len && s[b] != '|') continue;
            unsigned bit = entry_bit(s + a, b - a, t, n);
            bool blank = true;
            for (size_t z = a; z < b; z++) blank &= s[z] == ' ' || s[z] == '\t';
            if (!bit && !blank)
                return set_err(err, errlen, "config.json: %s entry \"%.*s\" is not supported", key,
                               (int)(b - a), s + a);
            *out |= bit;
            a = b + 1;
        }
    }
    return 0;
}

/* DeBERTa's string keys: pos_att_type ("c2p", "p2c"; "p2p" and others are
 * refused), norm_rel_ebd ("layer_norm" or "none"), pooler_hidden_act. */
static int read_relative_attention(aflo_config *c, const json_value *root, char *err,
                                   size_t errlen) {
    static const named_bit pos_types[] = {{"c2p", CONFIG_POS_C2P}, {"p2c", CONFIG_POS_P2C}};
    static const named_bit rel_norms[] = {{"layer_norm", 1u}, {"none", 2u}};
    unsigned norm;
    if (read_bit_list(root, "pos_att_type", pos_types, 2, &c->pos_att_type, err, errlen) ||
        read_bit_list(root, "norm_rel_ebd", rel_norms, 2, &norm, err, errlen))
        return -1;
    c->norm_rel_ebd_layer_norm = (norm & 1u) != 0;
    const char *act;
    if (read_string(root, "pooler_hidden_act", &act, err, errlen)) return -1;
    if (act && strcmp(act, SUPPORTED_HIDDEN_ACT) != 0)
        return set_err(err, errlen,
                       "config.json: pooler_hidden_act \"%s\" is not supported (only \"%s\")", act,
                       SUPPORTED_HIDDEN_ACT);
    return 0;
}

static int fill_config(aflo_config *c, const json_value *root, char *err, size_t errlen) {
    if (json_type_of(root) != JSON_OBJECT)
        return set_err(err, errlen, "config.json: top level must be an object, got %s",
                       json_type_name(json_type_of(root)));
    /* The architecture first, by the family registry: a LLaMA or DeBERTa
     * config is refused as such, naming what is supported, not for
     * whichever of its fields a BERT reader trips over first. */
    const char *model_type, *act, *pos;
    if (read_string(root, "model_type", &model_type, err, errlen)) return -1;
    const json_value *archs = json_get(root, "architectures");
    for (size_t i = 0; json_type_of(archs) == JSON_ARRAY && i < json_len(archs); i++)
        if (!json_string(json_at(archs, i), NULL))
            return set_err(err, errlen, "config.json: architectures must be an array of strings");
    const char *arch = json_string(json_at(archs, 0), NULL);
    if (model_type && strlen(model_type) >= sizeof c->model_type)
        return set_err(err, errlen, "config.json: model_type is longer than %zu bytes",
                       sizeof c->model_type - 1);
    /* model_type decides (as transformers' AutoConfig does); when it is
     * absent, the type whose classes architectures[0] names, and with
     * neither, BERT's default. */
    if (!model_type && !arch) model_type = BERT_DEFAULT_MODEL_TYPE;
    const aflo_family_variant *v = NULL;
    char why[768];
    const aflo_family *fam = family_for_config(model_type, arch, &v, why, sizeof why);
    if (!fam) return set_err(err, errlen, "config.json: %s", why);
    strcpy(c->model_type, v->model_type);
    c->roberta_positions = 0;

    for (size_t i = 0; i < N_CONFIG_FIELDS; i++) {
        config_field f = field_for(&config_fields[i], c->model_type);
        if (read_field(c, &f, json_get(root, f.name), err, errlen)) return -1;
    }
    if (read_rope_scaling(c, root, err, errlen)) return -1;
    if (read_relative_attention(c, root, err, errlen)) return -1;
    if (fam->config_finish) fam->config_finish(c, v);

    if (read_string(root, "hidden_act", &act, err, errlen)) return -1;
    /* a family that names none implements BERT's */
    const char *want_act = fam->hidden_act ? fam->hidden_act : SUPPORTED_HIDDEN_ACT;
    if (act && strcmp(act, want_act) != 0)
        return set_err(err, errlen, "config.json: hidden_act \"%s\" is not supported (only \"%s\")",
                       act, want_act);

    if (read_string(root, "position_embedding_type", &pos, err, errlen)) return -1;
    if (pos && strcmp(pos, SUPPORTED_POSITION_EMBEDDING) != 0)
        return set_err(err, errlen,
                       "config.json: position_embedding_type \"%s\" is not supported (only \"%s\")",
                       pos, SUPPORTED_POSITION_EMBEDDING);
    return 0;
}

int config_from_json(aflo_config *c, const char *json, size_t len, char *err, size_t errlen) {
    char jerr[160];
    json_value *root = json_parse(json, len, JSON_DEFAULT_MAX_DEPTH, jerr, sizeof jerr);
    if (!root) return set_err(err, errlen, "config.json: %s", jerr);
    aflo_config tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = fill_config(&tmp, root, err, errlen);
    json_free(root);
    if (rc == 0) rc = config_validate(&tmp, err, errlen);
    if (rc == 0) *c = tmp; /* c is untouched on error */
    return rc;
}

int config_validate(const aflo_config *c, char *err, size_t errlen) {
    if (!memchr(c->model_type, '\0', sizeof c->model_type) || c->model_type[0] == '\0')
        return set_err(err, errlen, "config: model_type must be a non-empty string");
    const struct {
        const char *name;
        int value;
    } positive[] = {
        {"vocab_size", c->vocab_size},
        {"hidden_size", c->hidden_size},
        {"num_hidden_layers", c->num_hidden_layers},
        {"num_attention_heads", c->num_attention_heads},
        {"intermediate_size", c->intermediate_size},
        {"max_position_embeddings", c->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (positive[i].value <= 0)
            return set_err(err, errlen, "config: %s must be positive, got %d", positive[i].name,
                           positive[i].value);
    /* A family without token types (DeBERTa-v3) reads type_vocab_size 0. */
    const aflo_family *fam = family_for_model_type(c->model_type, NULL);
    int min_types = fam && fam->token_types_optional ? 0 : 1;
    if (c->type_vocab_size < min_types)
        return set_err(err, errlen, "config: type_vocab_size must be %s, got %d",
                       min_types ? "positive" : "non-negative", c->type_vocab_size);
    if (fam && fam->config_check && fam->config_check(c, err, errlen)) return -1;
    if (c->head_dim < 0)
        return set_err(err, errlen, "config: head_dim must be positive, got %d", c->head_dim);
    if (c->head_dim == 0 && c->hidden_size % c->num_attention_heads != 0)
        return set_err(err, errlen,
                       "config: hidden_size %d is not divisible by num_attention_heads %d",
                       c->hidden_size, c->num_attention_heads);
    if (c->num_key_value_heads < 0 ||
        (c->num_key_value_heads > 0 && c->num_attention_heads % c->num_key_value_heads != 0))
        return set_err(err, errlen,
                       "config: num_key_value_heads %d must divide num_attention_heads %d",
                       c->num_key_value_heads, c->num_attention_heads);
    if (c->sliding_window < 0)
        return set_err(err, errlen, "config: sliding_window must not be negative, got %d",
                       c->sliding_window);
    /* Qwen2's window covers only the layers from max_window_layers on. */
    if (c->use_sliding_window)
        return set_err(err, errlen, "config: use_sliding_window true is not supported");
    if (c->mlp_bias) return set_err(err, errlen, "config: mlp_bias true is not supported");
    if (c->pad_token_id < 0 || c->pad_token_id >= c->vocab_size)
        return set_err(err, errlen, "config: pad_token_id %d must be in [0, vocab_size %d)",
                       c->pad_token_id, c->vocab_size);
    const struct {
        const char *name;
        float value;
    } dropouts[] = {
        {"hidden_dropout_prob", c->hidden_dropout_prob},
        {"attention_probs_dropout_prob", c->attention_probs_dropout_prob},
        {"attention_dropout", c->attention_dropout},
    };
    for (size_t i = 0; i < sizeof dropouts / sizeof *dropouts; i++) /* written so NaN fails too */
        if (!(dropouts[i].value >= 0.0f && dropouts[i].value < 1.0f))
            return set_err(err, errlen, "config: %s must be in [0, 1), got %g", dropouts[i].name,
                           (double)dropouts[i].value);
    if (!(c->layer_norm_eps > 0.0f && isfinite(c->layer_norm_eps)))
        return set_err(err, errlen, "config: layer_norm_eps must be positive, got %g",
                       (double)c->layer_norm_eps);
    /* RoBERTa positions run pad_token_id+1 .. pad_token_id+seq_len, so at
     * least one real position must exist beyond pad_token_id + 1. */
    if (c->roberta_positions && c->max_position_embeddings <= c->pad_token_id + 1)
        return set_err(
            err, errlen,
            "config: max_position_embeddings %d must exceed pad_token_id + 1 = %d for %s positions",
            c->max_position_embeddings, c->pad_token_id + 1, c->model_type);
    return 0;
}

/* Shortest %g form of f that strtod + float rounding (how config_from_json
 * reads it) turns back into exactly f. 9 significant digits always suffice. */
static void format_float(char *buf, size_t cap, float f) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) return;
    }
}

/* Write labels[k] (or its id when labels is NULL) quoted to m; -1 on OOM. */
static int put_label(FILE *m, const config_task *t, int k) {
    char id[16];
    snprintf(id, sizeof id, "%d", k);
    const char *s = t->labels ? t->labels[k] : id;
    size_t len = strlen(s);
    char *q = malloc(6 * len + 3);
    if (!q) return -1;
    json_quote(q, 6 * len + 3, s, len);
    fputs(q, m);
    free(q);
    return 0;
}

char *config_to_json(const aflo_config *c) { return config_to_json_task(c, NULL); }

/* A decoder's config.json (LlamaConfig and its Mistral/Qwen2 kin): the keys
 * config_from_json reads for it, sorted. */
static char *decoder_config_json(const aflo_config *c, const aflo_family_variant *v) {
    char *buf = NULL;
    size_t size = 0;
    FILE *m = open_memstream(&buf, &size);
    if (!m) return NULL;
    char eps[32], theta[32], f[32], lo[32], hi[32];
    format_float(eps, sizeof eps, c->rms_norm_eps);
    format_float(theta, sizeof theta, c->rope_theta);
    format_float(f, sizeof f, c->rope_factor);
    format_float(lo, sizeof lo, c->rope_low_freq_factor);
    format_float(hi, sizeof hi, c->rope_high_freq_factor);
    fprintf(m, "{\n  \"architectures\": [\n    \"%s\"\n  ],\n", v->architecture);
    fprintf(m, "  \"attention_bias\": %s,\n", c->attention_bias ? "true" : "false");
    if (c->attention_dropout > 0.0f) {
        char adrop[32];
        format_float(adrop, sizeof adrop, c->attention_dropout);
        fprintf(m, "  \"attention_dropout\": %s,\n", adrop);
    }
    if (c->head_dim > 0) fprintf(m, "  \"head_dim\": %d,\n", c->head_dim);
    fprintf(m,
            "  \"hidden_act\": \"%s\",\n"
            "  \"hidden_size\": %d,\n"
            "  \"intermediate_size\": %d,\n"
            "  \"max_position_embeddings\": %d,\n"
            "  \"model_type\": \"%s\",\n"
            "  \"num_attention_heads\": %d,\n"
            "  \"num_hidden_layers\": %d,\n"
            "  \"num_key_value_heads\": %d,\n"
            "  \"rms_norm_eps\": %s,\n",
            family_for_model_type(c->model_type, NULL)->hidden_act, c->hidden_size,
            c->intermediate_size, c->max_position_embeddings, v->model_type, c->num_attention_heads,
            c->num_hidden_layers, config_kv_heads(c), eps);
    if (c->rope_scaling == ROPE_SCALING_LINEAR)
        fprintf(m, "  \"rope_scaling\": {\"factor\": %s, \"rope_type\": \"linear\"},\n", f);
    else if (c->rope_scaling == ROPE_SCALING_LLAMA3)
        fprintf(m,
                "  \"rope_scaling\": {\"factor\": %s, \"high_freq_factor\": %s, "
                "\"low_freq_factor\": %s, \"original_max_position_embeddings\": %d, "
                "\"rope_type\": \"llama3\"},\n",
                f, hi, lo, c->rope_original_max_position_embeddings);
    else
        fputs("  \"rope_scaling\": null,\n", m);
    fprintf(m, "  \"rope_theta\": %s,\n", theta);
    if (c->sliding_window > 0) fprintf(m, "  \"sliding_window\": %d,\n", c->sliding_window);
    fprintf(m,
            "  \"tie_word_embeddings\": %s,\n"
            "  \"vocab_size\": %d\n"
            "}\n",
            c->tie_word_embeddings ? "true" : "false", c->vocab_size);
    int bad = ferror(m);
    if (fclose(m) != 0 || bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *config_to_json_task(const aflo_config *c, const config_task *task) {
    const aflo_family_variant *v = NULL;
    const aflo_family *fam = family_for_model_type(c->model_type, &v);
    /* A causal LM has no sequence-classification head to describe. */
    if (fam && (fam->tasks & (1u << TASK_CAUSAL_LM))) return decoder_config_json(c, v);
    char *buf = NULL;
    size_t size = 0;
    FILE *m = open_memstream(&buf, &size);
    if (!m) return NULL;

    size_t mt_len = strnlen(c->model_type, sizeof c->model_type);
    char model_type[2 * 6 * sizeof c->model_type + 3]; /* worst case: every byte as \u00XX */
    json_quote(model_type, sizeof model_type, c->model_type, mt_len);
    char eps[32], hdrop[32], adrop[32];
    format_float(eps, sizeof eps, c->layer_norm_eps);
    format_float(hdrop, sizeof hdrop, c->hidden_dropout_prob);
    format_float(adrop, sizeof adrop, c->attention_probs_dropout_prob);
    /* id2label / label2id only for classification: transformers' default
     * for regression (one "LABEL_0") needs nothing written. */
    const bool named = task && !task->regression && task->num_labels > 0;
    int oom = 0;

    /* Keys sorted, as transformers writes them. */
    fputs("{\n", m);
    if (v) fprintf(m, "  \"architectures\": [\n    \"%s\"\n  ],\n", v->architecture);
    fprintf(m,
            "  \"attention_probs_dropout_prob\": %s,\n"
            "  \"hidden_act\": \"%s\",\n"
            "  \"hidden_dropout_prob\": %s,\n"
            "  \"hidden_size\": %d,\n",
            adrop, SUPPORTED_HIDDEN_ACT, hdrop, c->hidden_size);
    if (named) {
        fputs("  \"id2label\": {", m);
        for (int k = 0; k < task->num_labels; k++) {
            fprintf(m, "%s\n    \"%d\": ", k ? "," : "", k);
            oom |= put_label(m, task, k);
        }
        fputs("\n  },\n", m);
    }
    fprintf(m, "  \"intermediate_size\": %d,\n", c->intermediate_size);
    if (named) {
        fputs("  \"label2id\": {", m);
        for (int k = 0; k < task->num_labels; k++) {
            fputs(k ? ",\n    " : "\n    ", m);
            oom |= put_label(m, task, k);
            fprintf(m, ": %d", k);
        }
        fputs("\n  },\n", m);
    }
    fprintf(m,
            "  \"layer_norm_eps\": %s,\n"
            "  \"max_position_embeddings\": %d,\n",
            eps, c->max_position_embeddings);
    /* DeBERTa's keys (config_from_json reads them back to the same fields) */
    bool deberta = fam && fam->relative_attention_keys;
    if (deberta) fprintf(m, "  \"max_relative_positions\": %d,\n", c->max_relative_positions);
    fprintf(m, "  \"model_type\": %s,\n", model_type);
    if (deberta)
        fprintf(m, "  \"norm_rel_ebd\": \"%s\",\n",
                c->norm_rel_ebd_layer_norm ? "layer_norm" : "none");
    fprintf(m,
            "  \"num_attention_heads\": %d,\n"
            "  \"num_hidden_layers\": %d,\n",
            c->num_attention_heads, c->num_hidden_layers);
    if (task) fprintf(m, "  \"num_labels\": %d,\n", task->regression ? 1 : task->num_labels);
    fprintf(m, "  \"pad_token_id\": %d,\n", c->pad_token_id);
    if (deberta) {
        const char *pos[] = {"[]", "[\"c2p\"]", "[\"p2c\"]", "[\"p2c\", \"c2p\"]"};
        fprintf(m,
                "  \"pooler_dropout\": 0,\n"
                "  \"pooler_hidden_act\": \"%s\",\n",
                SUPPORTED_HIDDEN_ACT);
        if (c->pooler_hidden_size > 0)
            fprintf(m, "  \"pooler_hidden_size\": %d,\n", c->pooler_hidden_size);
        fprintf(m,
                "  \"pos_att_type\": %s,\n"
                "  \"position_biased_input\": %s,\n"
                "  \"position_buckets\": %d,\n",
                pos[c->pos_att_type & 3u], c->position_biased_input ? "true" : "false",
                c->position_buckets);
    } else {
        fprintf(m, "  \"position_embedding_type\": \"%s\",\n", SUPPORTED_POSITION_EMBEDDING);
    }
    if (task)
        fprintf(m, "  \"problem_type\": \"%s\",\n",
                task->regression ? "regression" : "single_label_classification");
    if (deberta)
        fprintf(m,
                "  \"relative_attention\": %s,\n"
                "  \"share_att_key\": %s,\n",
                c->relative_attention ? "true" : "false", c->share_att_key ? "true" : "false");
    fprintf(m,
            "  \"type_vocab_size\": %d,\n"
            "  \"vocab_size\": %d\n"
            "}\n",
            c->type_vocab_size, c->vocab_size);
    int bad = ferror(m);
    if (fclose(m) != 0 || bad || oom) {
        free(buf);
        return NULL;
    }
    return buf;
}
