/*
 * md_refresh.h — a shard engine's whole displayed L2 book as market-data refresh records
 * (TS_MD_L2_REFRESH_BEGIN / LEVEL / END, wire.h), for the worker to push on the md
 * sidecar's request (worker.h). A query: the engine is not changed.
 *
 * Declarations only (cffi reads this file); the definitions are in md_refresh.c.
 */
#ifndef TRADSYS_MD_REFRESH_H
#define TRADSYS_MD_REFRESH_H

#include <stdint.h>

#include "book.h"
#include "wire.h"

/* Records the image of every symbol needs: 2 per symbol plus one per price level. */
uint64_t ts_md_refresh_size(const ts_engine *e);

/* Write the image (symbols in id order; per symbol BEGIN, bids best first, asks best
 * first, END) into out, which holds cap records; returns the records written, or 0
 * if cap < ts_md_refresh_size(e). time_ns is stamped on every record. */
uint64_t ts_md_refresh_image(const ts_engine *e, ts_md *out, uint64_t cap, int64_t time_ns);

#endif /* TRADSYS_MD_REFRESH_H */
