"""The sidecar's published-book store against a plain dict model, through folds and
refresh images (a cut one included)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tradsys.marketdata import l2store
from tradsys.marketdata.framing import L2_CHANNEL, FramePacker, group
from tradsys.marketdata.l2store import L2Store
from tradsys.matching import Phase
from tradsys.wire import MD_DTYPE, MdKind

# prices past 40 bits, now and then, take the fold's other path (three sort keys)
prices = st.one_of(st.integers(95, 105), st.integers(2**40 - 2, 2**40 + 2))
rows = st.lists(
    st.tuples(st.sampled_from([1, 2]), st.integers(1, 2), prices, st.integers(0, 3)),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(rows, st.integers(1, 50))
def test_the_store_equals_a_dict_model(updates: list[tuple[int, int, int, int]], fold: int) -> None:
    store = L2Store([1, 2])
    model: dict[tuple[int, int, int], tuple[int, int]] = {}
    batch = np.zeros(len(updates), MD_DTYPE)
    seqs = {1: 0, 2: 0}
    for r, (sym, side, price, qty) in zip(batch, updates, strict=True):
        seqs[sym] += 1
        count = 1 if qty else 0
        r["kind"], r["symbol_id"], r["seq"], r["side"] = MdKind.L2_UPDATE, sym, seqs[sym], side
        r["price"], r["quantity"], r["order_count"] = price, qty, count
        if qty:
            model[(sym, side, price)] = (qty, count)
        else:
            model.pop((sym, side, price), None)
    old = l2store.FOLD_AT
    l2store.FOLD_AT = fold
    try:
        for a in range(0, len(batch), 7):
            part = batch[a : a + 7]
            if a % 14:  # every other chunk record by record: the quiet-market path
                for rec in part:
                    store.apply_one(int(store.index(rec["symbol_id"])), L2_CHANNEL, rec)
            else:
                store.apply(group(part, store.index(part["symbol_id"])))
    finally:
        l2store.FOLD_AT = old
    for si, sym in enumerate([1, 2]):
        bids, asks = store.book(si)
        want_b = sorted(((p, *v) for (s, sd, p), v in model.items() if s == sym and sd == 1),
                        reverse=True)  # fmt: skip
        want_a = sorted((p, *v) for (s, sd, p), v in model.items() if s == sym and sd == 2)
        assert (bids, asks) == (want_b, want_a)
        assert store.l2_seq[si] == seqs[sym]
        assert bool(store.ready[si]) == (seqs[sym] > 0)


def refresh(sym: int, seq: int, levels: list[tuple[int, int, int]]) -> np.ndarray:
    out = np.zeros(len(levels) + 2, MD_DTYPE)
    out["symbol_id"], out["seq"] = sym, seq
    out["kind"] = MdKind.L2_REFRESH_LEVEL
    out["kind"][0], out["kind"][-1] = MdKind.L2_REFRESH_BEGIN, MdKind.L2_REFRESH_END
    out["quantity"][0] = out["quantity"][-1] = len(levels)
    for r, (side, price, qty) in zip(out[1:-1], levels, strict=True):
        r["side"], r["price"], r["quantity"], r["order_count"] = side, price, qty, 1
    return out


def test_a_refresh_replaces_the_book_and_a_cut_one_leaves_it_unknown() -> None:
    store = L2Store([7])
    image = refresh(7, 40, [(1, 100, 5), (2, 101, 3)])
    store.apply_refresh(image[:2], np.zeros(2, np.int64))  # split across two batches
    assert not store.ready[0]
    store.apply_refresh(image[2:], np.zeros(2, np.int64))
    assert store.ready[0] and store.l2_seq[0] == 40
    assert store.book(0) == ([(100, 5, 1)], [(101, 3, 1)])
    cut = refresh(7, 41, [(1, 99, 1)])[:2]
    store.apply_refresh(cut, np.zeros(2, np.int64))
    upd = np.zeros(1, MD_DTYPE)
    upd["kind"], upd["symbol_id"], upd["seq"], upd["side"], upd["price"] = 1, 7, 42, 1, 98
    upd["quantity"], upd["order_count"] = 1, 1
    store.apply(group(upd, np.zeros(1, np.int64)))
    assert not store.ready[0], "an image cut by a crash is not a book"


def test_frames_group_by_symbol_and_channel_in_seq_order() -> None:
    packer = FramePacker(["A", "B"], max_records=2)
    batch = np.zeros(6, MD_DTYPE)
    batch["kind"] = [1, 2, 1, 1, 3, 1]
    batch["symbol_id"] = [1, 1, 2, 1, 1, 1]
    batch["seq"] = [1, 1, 1, 2, 1, 3]
    sym = batch["symbol_id"].astype(np.int64) - 1
    g = group(batch, sym)
    frames = [(t, np.frombuffer(p, MD_DTYPE)["seq"].tolist()) for t, p in packer.frames(g)]
    assert frames == [
        (b"trade:A\0", [1]),
        (b"bbo:A\0", [1]),
        (b"l2:A\0", [1, 2]),
        (b"l2:A\0", [3]),
        (b"l2:B\0", [1]),
    ]


def test_the_status_comes_from_status_records_and_from_the_refresh_image() -> None:
    store = L2Store([7, 8])
    assert not store.status_known.any()
    image = refresh(7, 40, [(1, 100, 5)])
    image["price"][0], image["order_count"][0] = 3, Phase.AUCTION  # status seq 3
    image["price"][-1] = 1_500  # the breaker's reopening time
    store.apply_refresh(image, np.zeros(len(image), np.int64))
    assert store.servable(0) and store.status(0) == (3, Phase.AUCTION, 1_500)
    assert not store.servable(1)  # its book and status are not known yet
    rec = np.zeros(1, MD_DTYPE)
    rec["kind"], rec["symbol_id"], rec["seq"] = MdKind.STATUS, 7, 4
    rec["price"], rec["quantity"], rec["ask_price"] = Phase.CONTINUOUS, Phase.AUCTION, -1
    store.apply(group(rec, np.zeros(1, np.int64)))
    assert store.status(0) == (4, Phase.CONTINUOUS, -1)
    assert store.l2_seq[0] == 40, "a status record is not an L2 update"
