/*
 * gateway_latency.h — the gateway pump's stage-latency recording (latency_hist.h).
 *
 * Two figures, both from CLOCK_MONOTONIC as the shard workers' are:
 *   - its own histogram TS_LAT_ORDER_TO_ACK: from the start of the pass that took a new
 *     order to the moment its first event (accepted, or the engine's reject) is staged for
 *     the session — one clock read per run of events, one stamp per order (the pass time
 *     the pump already has);
 *   - each shard's hand-off slot: after every push to a shard's commands ring, the ring
 *     index just past it and the start of the pass, from which the worker takes its
 *     gateway-in → shard-in sample (latency_hist.h).
 * Call both before the pump runs (ts_gateway_start/run); NULL turns a part off.
 *
 * Declarations only (cffi reads this file); the definitions are in gateway_latency.c.
 */
#ifndef TRADSYS_GATEWAY_LATENCY_H
#define TRADSYS_GATEWAY_LATENCY_H

#include <stdint.h>

#include "gateway.h"
#include "latency_hist.h"

/* Record the order → ack stage into `own` (a TS_LAT_ROLE_GATEWAY segment). */
void ts_gateway_set_latency(ts_gateway *gw, ts_lat_segment *own);
/* Stamp shard `shard_id`'s segment on each push to it; TS_GW_ERR_ARGUMENT for a shard
 * the gateway does not have. */
int ts_gateway_set_shard_latency(ts_gateway *gw, uint32_t shard_id, ts_lat_segment *seg);

#endif /* TRADSYS_GATEWAY_LATENCY_H */
