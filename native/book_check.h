/*
 * book_check.h — a full consistency check of an engine's internal structures, for the
 * C tests and the fuzz target (not part of the cffi API; it walks every order, so it is
 * far too slow for the hot path).
 */
#ifndef TRADSYS_BOOK_CHECK_H
#define TRADSYS_BOOK_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "book.h"

/* 0 when every invariant holds, else -1 with the first broken one described in err:
 * ladders sorted, level aggregates equal the sums over their orders, every order's links
 * and back-pointers, the accounts' live lists in seq order holding exactly the resting
 * and pending orders (each on its own account's list) and the account table finding
 * each, the id index agreeing with the pool, pool accounting, the GTD heap covering
 * every live GTD order, and the stop screens bounding the pending stops. */
int ts_book_check(const ts_engine *e, char *err, size_t errlen);

/* Orders mass cancels have looked at since the engine was made (cancelled or passed
 * over): what a mass cancel costs, counted rather than timed. */
uint64_t ts_book_mass_cancel_visits(const ts_engine *e);

/* 1 when the symbol's best bid >= best ask (both sides present), 0 if not, <0 unknown. */
int ts_book_crossed(const ts_engine *e, uint32_t symbol_id);

#endif /* TRADSYS_BOOK_CHECK_H */
