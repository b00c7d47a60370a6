/* presets.h — named recipes a job spec can start from ("preset":
 * "glue/rte"): the AFLoRA authors' per-task GLUE settings for DeBERTaV3-base,
 * as their released scripts set them (zeyuliu1037/AFLoRA,
 * glue/ipt_deberta_base_<task>.sh).
 *
 * A preset only fills fields the spec leaves out: whatever the spec gives
 * explicitly wins. It is applied to the parsed JSON before validation, so a
 * preset's values are checked like typed ones and the stored spec shows them
 * all (and the preset's name). The learning rates are filled for method
 * aflora only (the recipes are AFLoRA's); the other fields for any method. */
#ifndef AFLO_PRESETS_H
#define AFLO_PRESETS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define PRESET_MAX_NAME 32

/* Fill root (a job-spec JSON object) from its "preset" member when that is a
 * string naming a preset: every preset field root lacks is added (and
 * dataset.text_fields when root has a dataset object without it). A
 * "preset" that is absent or not a string is left to the spec parser.
 * 0, or -1 with a message in err (an unknown preset, naming the known ones;
 * a task the preset is not for; out of memory). */
int preset_apply(cJSON *root, char *err, size_t errlen);

/* The names, "glue/cola" ... in table order, NULL-terminated. */
extern const char *const preset_names[];

/* What preset `name` fills into a spec that names only `method` (NULL: the
 * default, aflora) and an empty dataset object: a JSON object of spec fields
 * ({"task": ..., "dataset": {"text_fields": [...]}}), without "preset" and
 * "method". preset_apply itself makes it, so what clients are shown is what
 * the daemon fills. NULL with a message in err (unknown name, out of
 * memory). */
cJSON *preset_fields_json(const char *name, const char *method, char *err, size_t errlen);

/* A Markdown table of the presets and their sources for the README,
 * malloc'd; NULL when out of memory. */
char *preset_doc_markdown(void);

#endif
