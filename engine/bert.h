/* bert.h — the BERT family (bert.c): BERT, RoBERTa, XLM-RoBERTa and
 * CamemBERT encoders behind the family interface (family.h). Only the
 * registry and tests name it; everything else reaches it through a model's
 * family. */
#ifndef AFLO_BERT_H
#define AFLO_BERT_H

#include "family.h"

/* aflo_family_variant.flags of this family: positions numbered from
 * pad_token_id + 1, padding at pad_token_id (RoBERTa and its derivatives). */
#define BERT_ROBERTA_POSITIONS 1u

extern const aflo_family bert_family;

#endif
