/* metrics.h — evaluation metrics of the GLUE tasks: accuracy, binary F1,
 * Matthews correlation (multi-class form), Pearson and Spearman. */
#ifndef AFLO_METRICS_H
#define AFLO_METRICS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    bool classification; /* which group below is filled */
    /* causal LM: only loss (the mean over target tokens) and n are filled,
     * perplexity is exp(loss). A bool in the padding after the first:
     * checkpoints store this struct's bytes, and its size stays. */
    bool causal_lm;
    double accuracy, f1, mcc; /* f1: positive class 1, only meaningful for 2 labels */
    double pearson, spearman, mse;
    double loss; /* mean eval loss, filled by the caller */
    int n;
} aflo_metrics;

/* Fill accuracy, F1 (class 1 positive; 0 when undefined), MCC (Gorodkin's
 * multi-class form, equal to the binary one for 2 labels; 0 when undefined). */
int metrics_classification(const int32_t *pred, const int32_t *gold, int n, int num_labels,
                           aflo_metrics *out);
/* Fill Pearson, Spearman (average ranks for ties), MSE. 0 when undefined. */
int metrics_regression(const float *pred, const float *gold, int n, aflo_metrics *out);

/* The metric a task is judged by, by name: "accuracy", "f1", "mcc",
 * "pearson", "spearman", "mse", "perplexity" (causal LM). */
int metrics_lookup(const aflo_metrics *m, const char *name, double *value);
/* Whether a smaller value of the named metric is better (mse, perplexity). */
bool metrics_lower_is_better(const char *name);

#endif
