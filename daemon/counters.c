/* counters.c — the worker-side counters of counters.h as relaxed atomics.
 * Relaxed ordering is enough: each counter is independent and a scrape only
 * needs each value to be one that existed. Queue wait is summed in whole
 * microseconds so it can be an integer atomic (2^64 us is 584 000 years). */
#include "counters.h"

#include <stdatomic.h>

#define US_PER_S 1e6

static atomic_uint_fast64_t c_steps, c_fwd, c_bwd_in, c_bwd_w, c_wait_us, c_wait_n, c_finished;

void counters_add_steps(uint64_t n) {
    atomic_fetch_add_explicit(&c_steps, n, memory_order_relaxed);
}

void counters_add_flops(uint64_t forward, uint64_t backward_input, uint64_t backward_weight) {
    atomic_fetch_add_explicit(&c_fwd, forward, memory_order_relaxed);
    atomic_fetch_add_explicit(&c_bwd_in, backward_input, memory_order_relaxed);
    atomic_fetch_add_explicit(&c_bwd_w, backward_weight, memory_order_relaxed);
}

void counters_observe_queue_wait(double seconds) {
    uint64_t us = seconds > 0 ? (uint64_t)(seconds * US_PER_S + 0.5) : 0;
    atomic_fetch_add_explicit(&c_wait_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&c_wait_n, 1, memory_order_relaxed);
}

void counters_add_job_finished(void) {
    atomic_fetch_add_explicit(&c_finished, 1, memory_order_relaxed);
}

void counters_read(counters_snapshot *out) {
    out->steps = atomic_load_explicit(&c_steps, memory_order_relaxed);
    out->flops_forward = atomic_load_explicit(&c_fwd, memory_order_relaxed);
    out->flops_backward_input = atomic_load_explicit(&c_bwd_in, memory_order_relaxed);
    out->flops_backward_weight = atomic_load_explicit(&c_bwd_w, memory_order_relaxed);
    out->queue_wait_seconds_sum =
        (double)atomic_load_explicit(&c_wait_us, memory_order_relaxed) / US_PER_S;
    out->queue_wait_count = atomic_load_explicit(&c_wait_n, memory_order_relaxed);
    out->jobs_finished = atomic_load_explicit(&c_finished, memory_order_relaxed);
}
