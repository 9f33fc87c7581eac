/*
 * fuzz_book.c — a fuzz target for the matching engine.
 *
 * The input bytes are read as commands for a three-symbol engine (the instruments of
 * tests/test_book.c: plain; lot 10 / tick 5 / price band; volatility breaker), 12 bytes
 * per command, steered towards the interesting cases: ids mostly fresh but sometimes
 * stale, cancels and replaces aimed at orders sent before, prices near a common level,
 * every order type, tif, STP mode and control, and a sprinkling of invalid fields.
 *
 * After every command it checks:
 *  - the engine's internal invariants (book_check.h: ladders sorted, aggregates equal
 *    the sums of their orders, links, live lists, index, pools, GTD heap, stop screens);
 *  - no CONTINUOUS book is crossed (unless it came out of an auction through a halt,
 *    the one path the rules leave crossed; see maybe_crossed below);
 *  - the output is well formed: exec ids consecutive, md sequence numbers consecutive
 *    per symbol and channel, trades in agreeing taker/maker pairs;
 *  - quantities are conserved: per order, every TRADE, CANCELLED, REPLACED and TRIGGERED
 *    agrees with quantity - filled as the event stream itself tells it.
 * At the end of the input it checks that one batch call gives the same output as the
 * command-by-command run, and that a snapshot taken part-way restores to an engine
 * with the same snapshot bytes that then produces the same output and final snapshot.
 *
 * Built two ways (native/Makefile):
 *  - with clang -fsanitize=fuzzer,address (-DTS_LIBFUZZER): a libFuzzer target;
 *  - with any C11 compiler: a standalone driver that feeds random inputs from a seeded
 *    PRNG, or replays files given on the command line:
 *        fuzz_book [--runs=N] [--seconds=S] [--seed=S] [--max-len=BYTES] [FILE...]
 *    It ends with "N passed, M failed"; a failing input is written to
 *    fuzz-failure-<seed>-<run>.bin for replay.
 */
#define _GNU_SOURCE
#include "../book.h"
#include "../book_check.h"
#include "../wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_SYMBOLS 3
#define CMD_BYTES 12

/* ---- failure reporting ---- */

static char g_why[512];
static int g_failed;

#define EXPECT(cond, ...)                                                                  \
    do {                                                                                   \
        if (!g_failed && !(cond)) {                                                        \
            g_failed = 1;                                                                  \
            snprintf(g_why, sizeof g_why, __VA_ARGS__);                                    \
        }                                                                                  \
    } while (0)

/* ---- decoding input bytes into commands ---- */

typedef struct sent {
    uint64_t id;
    uint32_t symbol_id;
    uint32_t account_id;
} sent;

typedef struct decoder {
    const uint8_t *p;
    size_t left;
    uint64_t next_id;
    int64_t clock;
    sent *sent;
    size_t n_sent, cap_sent;
} decoder;

static const int64_t TICK[N_SYMBOLS + 1] = {0, 1, 5, 1};
static const int64_t LOT[N_SYMBOLS + 1] = {0, 1, 10, 1};

static ts_instrument instrument(uint32_t id) {
    ts_instrument i;
    memset(&i, 0, sizeof i);
    i.symbol_id = id;
    i.tick_size = TICK[id];
    i.lot_size = LOT[id];
    i.min_qty = LOT[id];
    i.reference_price = 1000;
    if (id == 2) {
        i.max_qty = 5000;
        i.band_bps = 2000;
    } else if (id == 3) {
        i.breaker_bps = 300;
        i.breaker_halt_ns = 1000;
    }
    return i;
}

static ts_engine *new_engine(void) {
    ts_engine *e = ts_engine_new();
    if (!e) abort();
    for (uint32_t id = 1; id <= N_SYMBOLS; id++) {
        ts_instrument i = instrument(id);
        if (ts_engine_add_instrument(e, &i) != TS_ENG_OK) abort();
    }
    return e;
}

static void remember(decoder *d, uint64_t id, uint32_t sym, uint32_t acct) {
    if (d->n_sent == d->cap_sent) {
        d->cap_sent = d->cap_sent ? 2 * d->cap_sent : 64;
        d->sent = realloc(d->sent, d->cap_sent * sizeof *d->sent);
        if (!d->sent) abort();
    }
    d->sent[d->n_sent++] = (sent){id, sym, acct};
}

/* One command from the next CMD_BYTES bytes (zero-padded at the end of the input). */
static int decode(decoder *d, ts_command *c) {
    if (d->left == 0) return 0;
    uint8_t b[CMD_BYTES] = {0};
    size_t k = d->left < CMD_BYTES ? d->left : CMD_BYTES;
    memcpy(b, d->p, k);
    d->p += k;
    d->left -= k;
    memset(c, 0, sizeof *c);
    const uint32_t sym = 1 + b[1] % N_SYMBOLS;
    const int64_t tick = TICK[sym], lot = LOT[sym];
    const unsigned roll = b[0] % 100;
    const int odd = b[11] == 0xff; /* 1 in 256: an invalid field somewhere */
    if (roll < 55 || d->n_sent == 0) {
        c->kind = TS_CMD_NEW_ORDER;
        c->symbol_id = odd && (b[10] & 1) ? 99 : sym;
        c->account_id = 1 + b[2] % 3;
        c->side = 1 + (b[2] >> 2) % 2;
        static const uint8_t types[8] = {1, 1, 1, 1, 1, 2, 3, 4};
        c->order_type = types[(b[2] >> 3) % 8];
        static const uint8_t tifs[8] = {1, 1, 1, 2, 3, 4, 5, 5};
        c->tif = tifs[(b[2] >> 6) | ((b[3] & 1) << 2)];
        if (c->order_type == TS_ORD_MARKET) c->tif = (b[3] & 2) ? TS_TIF_FOK : TS_TIF_IOC;
        if (c->order_type >= TS_ORD_STOP && c->tif >= TS_TIF_IOC && c->tif <= TS_TIF_FOK)
            c->tif = TS_TIF_GTC;
        c->stp_mode = (b[3] >> 2) % 4;
        c->flags = (b[3] >> 4) % 8 == 0 ? TS_FLAG_POST_ONLY : 0;
        int64_t lots = 1 + b[4] % 12;
        c->quantity = lots * lot;
        int64_t px = 1000 + ((int64_t)(b[5] % 33) - 16) * tick;
        if (c->order_type == TS_ORD_LIMIT || c->order_type == TS_ORD_STOP_LIMIT) c->price = px;
        if (c->order_type >= TS_ORD_STOP)
            c->stop_price = 1000 + ((int64_t)(b[6] % 17) - 8) * tick;
        if (c->order_type == TS_ORD_LIMIT && b[7] % 8 == 0) c->display_qty = (1 + b[7] / 64) * lot;
        c->time_ns = d->clock + (int64_t)(b[8] % 64) * 20 - 100;
        c->order_id = d->next_id;
        if (b[9] % 32 == 0 && d->n_sent) c->order_id = d->sent[b[10] % d->n_sent].id; /* stale */
        else remember(d, d->next_id++, c->symbol_id, c->account_id);
        if (odd) {
            switch (b[10] % 11) {
            case 8: c->stp_mode = 4; break;
            case 9: c->stop_price += 1; c->order_type = TS_ORD_STOP; c->price = 0; break;
            case 10: c->display_qty = c->quantity + lot; break;
            case 0: c->side = 3; break;
            case 1: c->order_type = 7; break;
            case 2: c->tif = 9; break;
            case 3: c->quantity += 1; break;
            case 4: c->price += 1; break;
            case 5: c->account_id = 0; break;
            case 6: c->price = 1000 + 600 * tick; break;
            default: c->flags = 4; break;
            }
        }
    } else if (roll < 84) {
        const sent *s = &d->sent[((uint32_t)b[4] << 8 | b[5]) % d->n_sent];
        c->kind = roll < 70 ? TS_CMD_CANCEL : TS_CMD_REPLACE;
        c->order_id = odd ? s->id + 100000 : s->id;
        c->symbol_id = s->symbol_id;
        c->account_id = b[2] % 16 == 0 ? 1u + b[3] % 3u : s->account_id;
        if (c->kind == TS_CMD_REPLACE) {
            const uint32_t rs = s->symbol_id >= 1 && s->symbol_id <= N_SYMBOLS ? s->symbol_id : 1;
            c->price = 1000 + ((int64_t)(b[6] % 33) - 16) * TICK[rs];
            if (b[7] % 16 == 0) c->price = 0; /* a STOP's replace, or an invalid price */
            c->quantity = (int64_t)(b[8] % 14) * LOT[rs];
        }
    } else if (roll < 87) {
        c->kind = TS_CMD_MASS_CANCEL;
        c->account_id = b[2] % 4;
        c->symbol_id = b[3] % 5 == 4 ? 0 : (b[3] % 5 == 3 ? 99 : b[3] % 5);
    } else if (roll < 99) {
        c->kind = TS_CMD_CONTROL;
        static const uint8_t codes[16] = {1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 6, 7, 2, 5, 8};
        c->control = codes[b[2] % 16];
        c->symbol_id = b[3] % 4 == 0 ? 0 : b[3] % 64 == 1 ? 99 : sym;
        if (c->control == TS_CTL_CLOCK_TICK) {
            int64_t step = (int64_t)(b[4] % 64) * 40 - 60;
            c->time_ns = d->clock + step;
            if (step >= 0) d->clock += step;
        }
    } else {
        c->kind = b[2] % 2 ? 0 : 9; /* unknown kinds */
        c->symbol_id = sym;
    }
    return 1;
}

/* ---- checks on the output of one command ---- */

typedef struct model_order {
    int64_t quantity; /* current total, as the events say */
    int64_t filled;
    uint8_t known;
} model_order;

typedef struct checker {
    uint64_t exec_id;
    uint64_t md_seq[N_SYMBOLS + 1][8]; /* per symbol, per md kind */
    model_order *orders;               /* indexed by order id (< max_id) */
    uint64_t max_id;
    uint8_t maybe_crossed[N_SYMBOLS + 1];
    int phase[N_SYMBOLS + 1];
} checker;

static model_order *model(checker *k, uint64_t id) {
    if (id >= k->max_id) return NULL;
    return &k->orders[id];
}

static void check_output(checker *k, const ts_event *ev, uint64_t nev, const ts_md *md,
                         uint64_t nmd) {
    for (uint64_t i = 0; i < nev && !g_failed; i++) {
        const ts_event *v = &ev[i];
        EXPECT(v->exec_id == ++k->exec_id, "exec id %llu, want %llu",
               (unsigned long long)v->exec_id, (unsigned long long)k->exec_id);
        EXPECT(v->_pad0 == 0, "event pad");
        if (v->kind == TS_EV_REJECTED) {
            EXPECT(v->flags == TS_EVF_DONE && v->leaves_qty == 0, "reject shape");
            continue;
        }
        model_order *m = model(k, v->order_id);
        EXPECT(m != NULL, "event for unexpected id %llu", (unsigned long long)v->order_id);
        if (!m) return;
        switch (v->kind) {
        case TS_EV_ACCEPTED:
            EXPECT(!m->known, "order %llu accepted twice", (unsigned long long)v->order_id);
            m->known = 1;
            m->quantity = v->quantity;
            m->filled = 0;
            EXPECT(v->leaves_qty == v->quantity, "accepted leaves");
            break;
        case TS_EV_TRADE: {
            EXPECT(m->known, "trade for an unknown order");
            EXPECT(v->quantity > 0, "empty trade");
            m->filled += v->quantity;
            EXPECT(v->leaves_qty == m->quantity - m->filled,
                   "order %llu: trade leaves %lld, model %lld", (unsigned long long)v->order_id,
                   (long long)v->leaves_qty, (long long)(m->quantity - m->filled));
            EXPECT(!!(v->flags & TS_EVF_DONE) == (v->leaves_qty == 0), "DONE flag on trade");
            if (v->flags & TS_EVF_TAKER) {
                EXPECT(i + 1 < nev, "taker trade without maker");
                if (i + 1 < nev) {
                    const ts_event *w = &ev[i + 1];
                    EXPECT(w->kind == TS_EV_TRADE && (w->flags & TS_EVF_MAKER) &&
                               w->contra_order_id == v->order_id &&
                               v->contra_order_id == w->order_id && w->price == v->price &&
                               w->quantity == v->quantity && w->side != v->side &&
                               w->symbol_id == v->symbol_id && w->account_id != v->account_id,
                           "trade pair at exec %llu", (unsigned long long)v->exec_id);
                }
            } else {
                EXPECT(i > 0 && (v->flags & TS_EVF_MAKER) && (ev[i - 1].flags & TS_EVF_TAKER),
                       "maker trade not after its taker");
            }
            if (v->leaves_qty == 0) m->known = 2; /* done */
            break;
        }
        case TS_EV_CANCELLED:
            EXPECT(m->known == 1, "cancel of an order not live");
            EXPECT(v->quantity == m->quantity - m->filled && v->quantity > 0,
                   "order %llu: cancelled %lld, model leaves %lld",
                   (unsigned long long)v->order_id, (long long)v->quantity,
                   (long long)(m->quantity - m->filled));
            EXPECT(v->flags == TS_EVF_DONE && v->leaves_qty == 0, "cancel shape");
            m->known = 2;
            break;
        case TS_EV_REPLACED:
            EXPECT(m->known == 1, "replace of an order not live");
            m->quantity = v->quantity;
            EXPECT(v->leaves_qty == m->quantity - m->filled && v->leaves_qty > 0,
                   "replace leaves");
            break;
        case TS_EV_TRIGGERED:
            EXPECT(m->known == 1 && v->leaves_qty == m->quantity - m->filled, "trigger leaves");
            break;
        default:
            EXPECT(0, "unknown event kind %u", v->kind);
        }
    }
    for (uint64_t i = 0; i < nmd && !g_failed; i++) {
        const ts_md *r = &md[i];
        EXPECT(r->symbol_id >= 1 && r->symbol_id <= N_SYMBOLS &&
                   ((r->kind >= 1 && r->kind <= 3) || r->kind == TS_MD_STATUS),
               "md symbol/kind");
        if (g_failed) return;
        EXPECT(r->seq == ++k->md_seq[r->symbol_id][r->kind], "md seq gap on symbol %u kind %u",
               r->symbol_id, r->kind);
        EXPECT(r->_pad0 == 0 && r->_pad1 == 0, "md pad");
        if (r->kind == TS_MD_L2_UPDATE)
            EXPECT((r->quantity == 0) == (r->order_count == 0) && r->quantity >= 0, "L2 shape");
        if (r->kind == TS_MD_STATUS)
            EXPECT(r->price >= TS_PHASE_CONTINUOUS && r->price <= TS_PHASE_AUCTION &&
                       r->quantity >= TS_PHASE_CONTINUOUS && r->quantity <= TS_PHASE_AUCTION &&
                       r->price != r->quantity,
                   "STATUS shape");
    }
}

/* The rules leave one path to a crossed CONTINUOUS book: AUCTION -> HALT -> RESUME (or
 * SESSION_OPEN), which reopens without an uncross. A symbol that went AUCTION ->
 * HALTED may stay crossed until a continuous command finds it uncrossed. */
static void check_books(checker *k, ts_engine *e) {
    char err[256];
    if (ts_book_check(e, err, sizeof err) != 0) EXPECT(0, "invariant: %s", err);
    for (uint32_t s = 1; s <= N_SYMBOLS; s++) {
        int ph = ts_engine_phase(e, s);
        if (k->phase[s] == TS_PHASE_AUCTION && ph == TS_PHASE_HALTED) k->maybe_crossed[s] = 1;
        k->phase[s] = ph;
        int crossed = ts_book_crossed(e, s);
        if (ph == TS_PHASE_CONTINUOUS) {
            if (!crossed) k->maybe_crossed[s] = 0;
            EXPECT(!crossed || k->maybe_crossed[s], "symbol %u crossed in CONTINUOUS", s);
        }
    }
}

/* ---- output capture, for comparing runs ---- */

typedef struct capture {
    uint8_t *buf;
    size_t n, cap;
} capture;

static void cap_add(capture *c, const void *p, size_t n) {
    if (n == 0) return;
    if (c->n + n > c->cap) {
        while (c->n + n > c->cap) c->cap = c->cap ? 2 * c->cap : 4096;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf) abort();
    }
    memcpy(c->buf + c->n, p, n);
    c->n += n;
}

static void cap_output(capture *c, ts_engine *e) {
    const ts_event *ev;
    const ts_md *md;
    uint64_t nev = ts_engine_events(e, &ev), nmd = ts_engine_md(e, &md);
    uint64_t hdr[2] = {nev, nmd};
    cap_add(c, hdr, sizeof hdr);
    cap_add(c, ev, nev * sizeof *ev);
    cap_add(c, md, nmd * sizeof *md);
}

static uint8_t *snapshot_of(ts_engine *e, uint64_t *n) {
    *n = ts_engine_snapshot_size(e);
    uint8_t *s = malloc(*n);
    if (!s || ts_engine_snapshot(e, s, *n) != *n) abort();
    return s;
}

/* ---- the target ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g_failed = 0;
    size_t n_max = size / CMD_BYTES + 1;
    ts_command *cmds = malloc(n_max * sizeof *cmds);
    decoder d = {.p = data, .left = size, .next_id = 1};
    size_t n = 0;
    while (n < n_max && decode(&d, &cmds[n])) n++;
    free(d.sent);

    checker k;
    memset(&k, 0, sizeof k);
    k.max_id = d.next_id + 1;
    k.orders = calloc(k.max_id, sizeof *k.orders);
    for (uint32_t s = 1; s <= N_SYMBOLS; s++) k.phase[s] = TS_PHASE_CONTINUOUS;
    if (!cmds || !k.orders) abort();

    /* the cut: where a snapshot is taken and restored */
    size_t cut = n ? (size > 0 ? data[0] : 0) * n / 256 : 0;
    ts_engine *a = new_engine();
    ts_engine *restored = NULL;
    uint8_t *snap = NULL;
    uint64_t snap_n = 0;
    capture whole_ev = {0}, whole_md = {0}, tail_a = {0}, tail_b = {0};
    for (size_t i = 0; i < n && !g_failed; i++) {
        if (i == cut) {
            snap = snapshot_of(a, &snap_n);
            int st = 0;
            restored = ts_engine_restore(snap, snap_n, &st);
            EXPECT(restored && st == TS_ENG_OK, "restore failed with %d at command %zu", st, i);
            if (restored) {
                uint64_t n2;
                uint8_t *again = snapshot_of(restored, &n2);
                EXPECT(n2 == snap_n && memcmp(again, snap, n2) == 0, "restore not exact");
                free(again);
            }
        }
        ts_engine_clear_output(a);
        EXPECT(ts_engine_process(a, &cmds[i], 1) == 1, "process refused command %zu", i);
        const ts_event *ev;
        const ts_md *md;
        uint64_t nev = ts_engine_events(a, &ev), nmd = ts_engine_md(a, &md);
        check_output(&k, ev, nev, md, nmd);
        cap_add(&whole_ev, ev, nev * sizeof *ev);
        cap_add(&whole_md, md, nmd * sizeof *md);
        if (restored) cap_output(&tail_a, a);
        check_books(&k, a);
        if (g_failed) snprintf(g_why + strlen(g_why), sizeof g_why - strlen(g_why),
                               " (command %zu of %zu, kind %u)", i, n, cmds[i].kind);
    }
    /* one batch call: the same output and state as command by command */
    if (!g_failed) {
        ts_engine *b = new_engine();
        EXPECT(ts_engine_process(b, cmds, n) == n, "batch process");
        const ts_event *ev;
        const ts_md *md;
        uint64_t nev = ts_engine_events(b, &ev), nmd = ts_engine_md(b, &md);
        EXPECT(nev * sizeof *ev == whole_ev.n && nmd * sizeof *md == whole_md.n &&
                   (nev == 0 || memcmp(ev, whole_ev.buf, whole_ev.n) == 0) &&
                   (nmd == 0 || memcmp(md, whole_md.buf, whole_md.n) == 0),
               "batch output differs from one-by-one output");
        uint64_t s1, s2;
        uint8_t *x = snapshot_of(a, &s1), *y = snapshot_of(b, &s2);
        EXPECT(s1 == s2 && memcmp(x, y, s1) == 0, "batch engine snapshot differs");
        free(x);
        free(y);
        ts_engine_free(b);
    }
    /* the restored engine continues exactly as the original */
    if (!g_failed && restored) {
        for (size_t i = cut; i < n; i++) {
            ts_engine_clear_output(restored);
            ts_engine_process(restored, &cmds[i], 1);
            cap_output(&tail_b, restored);
        }
        EXPECT(tail_a.n == tail_b.n && (tail_a.n == 0 || memcmp(tail_a.buf, tail_b.buf, tail_a.n) == 0),
               "restored engine output differs after the cut at %zu", cut);
        uint64_t s1, s2;
        uint8_t *x = snapshot_of(a, &s1), *y = snapshot_of(restored, &s2);
        EXPECT(s1 == s2 && memcmp(x, y, s1) == 0, "restored engine final snapshot differs");
        free(x);
        free(y);
    }
    ts_engine_free(a);
    ts_engine_free(restored);
    free(snap);
    free(whole_ev.buf);
    free(whole_md.buf);
    free(tail_a.buf);
    free(tail_b.buf);
    free(k.orders);
    free(cmds);
    if (g_failed) {
        fprintf(stderr, "fuzz_book: %s\n", g_why);
#ifdef TS_LIBFUZZER
        abort();
#endif
        return -1;
    }
    return 0;
}

/* ---- standalone driver ---- */

#ifndef TS_LIBFUZZER

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int replay(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0, k;
    uint8_t chunk[4096];
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (n + k > cap) {
            cap = 2 * (n + k);
            buf = realloc(buf, cap);
            if (!buf) abort();
        }
        memcpy(buf + n, chunk, k);
        n += k;
    }
    fclose(f);
    int rc = LLVMFuzzerTestOneInput(buf, n) != 0;
    free(buf);
    printf("%s: %s\n", path, rc ? "FAIL" : "ok");
    return rc;
}

int main(int argc, char **argv) {
    uint64_t runs = 1000, seed = 1;
    double seconds = 0;
    size_t max_len = 4096;
    int files = 0, failed = 0, passed = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--runs=", 7) == 0) runs = strtoull(argv[i] + 7, NULL, 10);
        else if (strncmp(argv[i], "--seed=", 7) == 0) seed = strtoull(argv[i] + 7, NULL, 10);
        else if (strncmp(argv[i], "--seconds=", 10) == 0) seconds = strtod(argv[i] + 10, NULL);
        else if (strncmp(argv[i], "--max-len=", 10) == 0) max_len = strtoull(argv[i] + 10, NULL, 10);
        else {
            files++;
            if (replay(argv[i])) failed++;
            else passed++;
        }
    }
    if (files) {
        printf("%d passed, %d failed\n", passed, failed);
        return failed != 0;
    }
    uint8_t *buf = malloc(max_len + 1);
    if (!buf) return 2;
    const double t0 = now_s();
    uint64_t state = seed, bytes = 0;
    for (uint64_t r = 0; r < runs; r++) {
        if (seconds > 0 && now_s() - t0 > seconds) break;
        /* lengths spread from a handful of commands to max_len bytes */
        size_t len = (size_t)(splitmix(&state) % (max_len + 1));
        if (r % 4 == 0) len %= 256;
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)splitmix(&state);
        bytes += len;
        if (LLVMFuzzerTestOneInput(buf, len) != 0) {
            char name[96];
            snprintf(name, sizeof name, "fuzz-failure-%llu-%llu.bin", (unsigned long long)seed,
                     (unsigned long long)r);
            FILE *f = fopen(name, "wb");
            if (f) {
                fwrite(buf, 1, len, f);
                fclose(f);
            }
            fprintf(stderr, "fuzz_book: run %llu failed; input saved to %s\n",
                    (unsigned long long)r, name);
            failed++;
            break;
        }
        passed++;
    }
    free(buf);
    printf("fuzz_book: %d inputs, %llu bytes, %.1f s (seed %llu)\n", passed + failed,
           (unsigned long long)bytes, now_s() - t0, (unsigned long long)seed);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

#endif /* TS_LIBFUZZER */
