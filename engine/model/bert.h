/* bert.h — the BERT family (bert.c): BERT, RoBERTa, XLM-RoBERTa and
 * CamemBERT encoders behind the family interface (family.h). Only the
 * registry and tests name it; everything else reaches it through a model's
 * family. */
#ifndef AFLO_BERT_H
#define AFLO_BERT_H

#include "model/family.h"

/* aflo_family_variant.flags of this family: positions numbered from
 * pad_token_id + 1, padding at pad_token_id (RoBERTa and its derivatives). */
#define BERT_ROBERTA_POSITIONS 1u

/* The family's module table, in forward order: aflo_param.module and the
 * bits of aflo_adapter_config.targets of a BERT-family model. */
enum {
    BERT_QUERY,
    BERT_KEY,
    BERT_VALUE,
    BERT_ATTN_OUT,
    BERT_INTERMEDIATE,
    BERT_OUTPUT,
    BERT_MODULE_COUNT
};

extern const aflo_family bert_family;

#endif
