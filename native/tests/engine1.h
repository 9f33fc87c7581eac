/*
 * engine1.h — the journal and snapshot tests' engine: one instrument (symbol 1, tick and
 * lot 1, reference 100000). Exits 2 if it cannot be made: nothing else could run.
 */
#ifndef TRADSYS_TESTS_ENGINE1_H
#define TRADSYS_TESTS_ENGINE1_H

#include <stdlib.h>

#include "../book.h"

static inline ts_engine *engine1(void) {
    ts_engine *e = ts_engine_new();
    ts_instrument ins = {.symbol_id = 1, .tick_size = 1, .lot_size = 1, .min_qty = 1,
                         .reference_price = 100000};
    if (!e || ts_engine_add_instrument(e, &ins) != TS_ENG_OK) exit(2);
    return e;
}

#endif
