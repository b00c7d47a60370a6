/* deberta.h — the DeBERTa family (deberta.c): DebertaV2ForSequenceClassification
 * with v3 and v2-style configs behind the family interface (family.h).
 * Only the registry and tests name it. */
#ifndef AFLO_DEBERTA_H
#define AFLO_DEBERTA_H

#include "model/family.h"

/* The family's module table, in forward order: aflo_param.module and the
 * bits of aflo_adapter_config.targets of a DeBERTa model. */
enum {
    DEBERTA_QUERY,
    DEBERTA_KEY,
    DEBERTA_VALUE,
    DEBERTA_ATTN_OUT,
    DEBERTA_INTERMEDIATE,
    DEBERTA_OUTPUT,
    DEBERTA_MODULE_COUNT
};

extern const aflo_family deberta_family;

#endif
