/* metrics.h — evaluation metrics of the GLUE tasks: accuracy, binary F1,
 * Matthews correlation (multi-class form), Pearson and Spearman. */
#ifndef AFLO_METRICS_H
#define AFLO_METRICS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    bool classification; /* which group below is filled */
    /* causal LM: loss (the mean over target tokens) and n are filled,
     * perplexity is exp(loss); with an answer rule also exact_match. Bools
     * in the padding after the first; checkpoints store this struct's
     * bytes (version 2 files up to exact_match, see checkpoint.c). */
    bool causal_lm;
    bool has_exact_match;     /* exact_match and judged are filled */
    double accuracy, f1, mcc; /* f1: positive class 1, only meaningful for 2 labels */
    double pearson, spearman, mse;
    double loss; /* mean eval loss, filled by the caller */
    int n;
    /* causal LM with an answer rule (lmeval.h): the fraction of the
     * judged rows whose greedy generation gave the reference's answer */
    double exact_match;
    int judged;
} aflo_metrics;

/* Fill accuracy, F1 (class 1 positive; 0 when undefined), MCC (Gorodkin's
 * multi-class form, equal to the binary one for 2 labels; 0 when undefined). */
int metrics_classification(const int32_t *pred, const int32_t *gold, int n, int num_labels,
                           aflo_metrics *out);
/* Fill Pearson, Spearman (average ranks for ties), MSE. 0 when undefined. */
int metrics_regression(const float *pred, const float *gold, int n, aflo_metrics *out);

/* The metric a task is judged by, by name: "accuracy", "f1", "mcc",
 * "pearson", "spearman", "mse", "perplexity" and "exact_match" (causal LM;
 * exact_match only when it was computed). */
int metrics_lookup(const aflo_metrics *m, const char *name, double *value);
/* Whether a smaller value of the named metric is better (mse, perplexity). */
bool metrics_lower_is_better(const char *name);

#endif
