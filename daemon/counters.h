/* counters.h — process-wide counters the worker pool bumps and GET /metrics
 * reports (Prometheus text): optimizer steps and FLOPs processed, and how
 * long jobs waited in the queue.
 *
 * They live with the daemon, beside the workers that write them; the API
 * only reads them (counters_read), so the dependency points from api/ down
 * to daemon/, never up.
 *
 * Lock-free (C11 atomics), so a worker can call these from its training loop
 * at no measurable cost. Not named metrics.h: engine/train/metrics.h (GLUE scores)
 * comes first on the include path. Counters only grow; Prometheus computes
 * rates from them. */
#ifndef AFLO_COUNTERS_H
#define AFLO_COUNTERS_H

#include <stdint.h>

typedef struct {
    uint64_t steps; /* optimizer steps done, all jobs */
    uint64_t flops_forward, flops_backward_input, flops_backward_weight;
    double queue_wait_seconds_sum; /* created -> claimed, per claim */
    uint64_t queue_wait_count;     /* = jobs claimed */
    uint64_t jobs_finished;        /* succeeded, failed or cancelled */
} counters_snapshot;

void counters_add_steps(uint64_t n);
void counters_add_flops(uint64_t forward, uint64_t backward_input, uint64_t backward_weight);
/* One job claimed after waiting `seconds` in the queue (negative counts as 0). */
void counters_observe_queue_wait(double seconds);
/* A job a worker ran reached a final state. */
void counters_add_job_finished(void);

void counters_read(counters_snapshot *out);

#endif
