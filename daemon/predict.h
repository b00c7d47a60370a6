/* predict.h — inference with a finished adapter: a base model folder plus a
 * native adapter file or a PEFT LoRA folder, one input at a time. Used by
 * `aflorad predict` and by POST /jobs/{id}/predict; callers see JSON, never
 * tensors. A predictor is not thread-safe (it owns activations). */
#ifndef AFLO_PREDICT_H
#define AFLO_PREDICT_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* Longest input, in tokens, a prediction accepts (also capped by the model). */
#define PREDICT_MAX_TOKENS 4096

typedef struct predictor predictor;

/* model: a name under models_dir ("demo" included) or a path; adapter: a
 * native .safetensors file or a PEFT folder. NULL with a message on error. */
predictor *predictor_open(const char *models_dir, const char *model, const char *adapter,
                          char *err, size_t errlen);
void predictor_free(predictor *p);

/* {"label", "label_id", "probabilities", "logits"} for classification,
 * {"value"} for regression. text_b may be NULL. NULL with a message on error. */
cJSON *predictor_run(predictor *p, const char *text_a, const char *text_b, char *err,
                     size_t errlen);

#endif
