/* metrics.c — the GLUE evaluation metrics, computed in double precision.
 *
 * Classification metrics come from label counts, not a full confusion matrix:
 * Gorodkin's multi-class MCC (the R_K statistic sklearn's matthews_corrcoef
 * computes) only needs, per class k, how often k was predicted (p_k) and how
 * often it is the gold label (t_k), plus the number of correct predictions c
 * out of s:
 *     MCC = (c*s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2))
 * which reduces to the usual (TP*TN - FP*FN)/sqrt(...) for two classes.
 * Binary F1 takes class 1 as positive and everything else as negative, written
 * as 2TP / (2TP + FP + FN) so the "precision or recall is 0/0" case needs no
 * branch of its own: F1 is 0 whenever TP is 0.
 *
 * Regression: Pearson uses the two-pass (mean first) form so a large common
 * offset does not cancel catastrophically; Spearman is Pearson over ranks, with
 * tied values given the average of the ranks they span (scipy's
 * rankdata(method="average")), found by sorting indices once (O(n log n)).
 *
 * Undefined values (a class never predicted, constant predictions, n = 0) are
 * reported as 0, following the header. Invalid input returns -1: a label
 * outside [0, num_labels), or a NaN/inf in regression values — a diverged run
 * should surface as an error, not as a plausible-looking correlation; the
 * regression fields are then set to NaN so an unchecked caller cannot mistake
 * them for a result. */
#include "train/metrics.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int metrics_classification(const int32_t *pred, const int32_t *gold, int n, int num_labels,
                           aflo_metrics *out) {
    if (!out || n < 0 || num_labels < 1 || (n > 0 && (!pred || !gold))) return -1;
    out->classification = true;
    out->n = n;
    out->accuracy = out->f1 = out->mcc = 0.0;
    out->pearson = out->spearman = out->mse = 0.0;
    if (n == 0) return 0;

    /* pcount[k] = times k was predicted, tcount[k] = times k is gold. */
    int64_t *pcount = calloc((size_t)num_labels * 2, sizeof *pcount);
    if (!pcount) return -1;
    int64_t *tcount = pcount + num_labels;
    int64_t correct = 0, tp = 0, fp = 0, fn = 0;
    for (int i = 0; i < n; i++) {
        int32_t p = pred[i], g = gold[i];
        if (p < 0 || p >= num_labels || g < 0 || g >= num_labels) {
            free(pcount);
            return -1;
        }
        pcount[p]++;
        tcount[g]++;
        correct += p == g;
        tp += p == 1 && g == 1;
        fp += p == 1 && g != 1;
        fn += p != 1 && g == 1;
    }

    double s = (double)n, c = (double)correct;
    double sum_pt = 0.0, sum_pp = 0.0, sum_tt = 0.0;
    for (int k = 0; k < num_labels; k++) {
        double pk = (double)pcount[k], tk = (double)tcount[k];
        sum_pt += pk * tk;
        sum_pp += pk * pk;
        sum_tt += tk * tk;
    }
    free(pcount);

    out->accuracy = c / s;
    int64_t f1_den = 2 * tp + fp + fn;
    out->f1 = f1_den > 0 ? 2.0 * (double)tp / (double)f1_den : 0.0;
    double cov_yy = s * s - sum_pp, cov_xx = s * s - sum_tt;
    /* A factor is 0 exactly when every prediction (or every gold label) is one
     * class; then sum p_k^2 is the single term n*n, the same double as s*s, so
     * the difference is exactly 0 however large n is. */
    double den = cov_yy * cov_xx;
    out->mcc = den > 0.0 ? (c * s - sum_pt) / sqrt(den) : 0.0;
    return 0;
}

/* Pearson correlation of x and y in double; 0 when either is constant. */
static double pearson_d(const double *x, const double *y, int n) {
    double mx = 0.0, my = 0.0;
    for (int i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= n;
    my /= n;
    double sxy = 0.0, sxx = 0.0, syy = 0.0;
    for (int i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if (!(sxx > 0.0) || !(syy > 0.0)) return 0.0;
    double r = sxy / sqrt(sxx * syy);
    /* Rounding can push |r| a hair past 1 for perfectly (anti)correlated data. */
    return r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r;
}

typedef struct {
    double v;
    int i;
} ranked;

static int ranked_cmp(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return (x->i > y->i) - (x->i < y->i); /* total order: qsort needs consistency */
}

/* rank[i] = 1-based rank of v[i]; a run of equal values all get the mean of
 * the ranks they occupy. work holds n entries. Values must be finite. */
static void average_ranks(const float *v, int n, ranked *work, double *rank) {
    for (int i = 0; i < n; i++) {
        work[i].v = v[i];
        work[i].i = i;
    }
    qsort(work, (size_t)n, sizeof *work, ranked_cmp);
    for (int start = 0; start < n;) {
        int end = start + 1;
        while (end < n && work[end].v == work[start].v) end++;
        /* Positions start..end-1 hold ranks start+1..end; their mean: */
        double avg = 0.5 * ((double)(start + 1) + (double)end);
        for (int k = start; k < end; k++) rank[work[k].i] = avg;
        start = end;
    }
}

int metrics_regression(const float *pred, const float *gold, int n, aflo_metrics *out) {
    if (!out || n < 0 || (n > 0 && (!pred || !gold))) return -1;
    out->classification = false;
    out->n = n;
    out->accuracy = out->f1 = out->mcc = 0.0;
    out->pearson = out->spearman = out->mse = 0.0;
    if (n == 0) return 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(pred[i]) || !isfinite(gold[i])) {
            out->pearson = out->spearman = out->mse = NAN;
            return -1;
        }
    }

    /* One block: x, y (pred, gold as double) then the sort workspace. */
    size_t un = (size_t)n;
    double *x = malloc(un * 2 * sizeof *x);
    ranked *work = malloc(un * sizeof *work);
    if (!x || !work) {
        free(x);
        free(work);
        return -1;
    }
    double *y = x + un;

    double se = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = pred[i];
        y[i] = gold[i];
        double d = x[i] - y[i];
        se += d * d;
    }
    out->mse = se / n;
    out->pearson = pearson_d(x, y, n);

    average_ranks(pred, n, work, x);
    average_ranks(gold, n, work, y);
    out->spearman = pearson_d(x, y, n);

    free(x);
    free(work);
    return 0;
}

int metrics_lookup(const aflo_metrics *m, const char *name, double *value) {
    if (!m || !name || !value) return -1;
    /* A metric of the other group was never computed: asking for it is a
     * task/metric mismatch the caller should hear about, not a silent 0. */
    enum { CLS, REG, LM };
    static const struct {
        const char *name;
        int group;
        size_t offset;
    } table[] = {
        {"accuracy", CLS, offsetof(aflo_metrics, accuracy)},
        {"f1", CLS, offsetof(aflo_metrics, f1)},
        {"mcc", CLS, offsetof(aflo_metrics, mcc)},
        {"pearson", REG, offsetof(aflo_metrics, pearson)},
        {"spearman", REG, offsetof(aflo_metrics, spearman)},
        {"mse", REG, offsetof(aflo_metrics, mse)},
    };
    if (strcmp(name, "perplexity") == 0) {
        if (!m->causal_lm) return -1;
        *value = exp(m->loss);
        return 0;
    }
    if (strcmp(name, "exact_match") == 0) {
        if (!m->causal_lm || !m->has_exact_match) return -1;
        *value = m->exact_match;
        return 0;
    }
    int group = m->causal_lm ? LM : m->classification ? CLS : REG;
    for (size_t k = 0; k < sizeof table / sizeof table[0]; k++) {
        if (strcmp(name, table[k].name) != 0) continue;
        if (table[k].group != group) return -1;
        memcpy(value, (const char *)m + table[k].offset, sizeof *value);
        return 0;
    }
    return -1;
}

bool metrics_lower_is_better(const char *name) {
    return strcmp(name, "mse") == 0 || strcmp(name, "perplexity") == 0;
}
