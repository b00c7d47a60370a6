-- 0004_dataset_form.sql — what an uploaded dataset holds, as the upload found
-- it: the task it was checked for and the row form.
--
-- task: "classification", "regression" or "causal_lm" when the upload named
-- one (?task=), NULL when it did not (an encoder upload checked for its
-- text column only). form: a causal-LM upload's row form (text,
-- prompt_completion, alpaca, chat, input_ids: one per dataset), "columns"
-- for the encoders' text-and-label rows. tokens: the rows' tokens when the
-- upload could count them (a model's tokenizer, or input_ids rows), else
-- NULL. Datasets of an older database have all three NULL: POST /jobs then
-- skips the form check, as before.

ALTER TABLE datasets ADD COLUMN task TEXT
    CONSTRAINT dataset_task_known
    CHECK (task IS NULL OR task IN ('classification', 'regression', 'causal_lm'));
ALTER TABLE datasets ADD COLUMN form TEXT
    CONSTRAINT dataset_form_nonempty CHECK (form IS NULL OR length(form) > 0);
ALTER TABLE datasets ADD COLUMN tokens INTEGER
    CONSTRAINT dataset_tokens_nonnegative CHECK (tokens IS NULL OR tokens >= 0);
