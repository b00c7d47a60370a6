/* adapter_internal.h — what the adapter formats share beyond adapter_info.h:
 * checks and text every writer or reader needs the same way. Included by
 * adapter_peft.c, adapter_native.c and hfmodel_export.c only, implemented in
 * adapter_info.c; callers use adapter_info.h and the format headers. */
#ifndef AFLO_ADAPTER_INTERNAL_H
#define AFLO_ADAPTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "io/adapter_info.h"
#include "model/model.h"
#include "base/problems.h"
#include "io/safetensors.h"

/* Room for a tensor's name in a file (a transformers checkpoint name, a PEFT key). */
#define MAX_KEY 256

/* Shortest decimal that reads back (strtof) as exactly f. */
void adapter_format_float(char *buf, size_t cap, float f);

/* Check a file tensor against the model tensor it is to fill: a float dtype
 * (F32, F16, BF16) and the model tensor's shape; false, with the problem
 * added to pr, when it does not fit. */
bool adapter_check_tensor(problem_list *pr, const st_file *f, size_t i, const aflo_param *p);

/* info records how the training text was read. */
bool adapter_has_inputs(const adapter_export_info *info);

/* aflorad.json's text, {"inputs": {...}}: an object, so later notes can sit
 * beside it. malloc'd, NULL when out of memory. */
char *adapter_inputs_file_text(const adapter_inputs *in);

/* info's label names, when given, must be one valid UTF-8 string per class. */
int adapter_check_label_names(const aflo_model *m, const adapter_export_info *info, char *err,
                              size_t errlen);

/* s is NULL or valid UTF-8. */
bool adapter_valid_utf8(const char *s);

#endif
