"""Work spread over forked processes, for the stages that score many independent items on 2 cores."""

import gc
import multiprocessing as mp
from typing import Callable, Iterable, Iterator

_FN: Callable | None = None  # the function forked workers inherit (with its closure: never pickled)


def _call(item):
    return _FN(item)


def forked_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """Yields fn(item) for each of `items`, in order, computed by up to `workers` forked processes.
    The workers inherit the parent's memory, so `fn` may close over big read-only state (a pool of
    300,000 tweets, an encoder): only the items and the results are pickled. The results do not
    depend on the number of workers as long as fn(item) depends on item alone. One worker, fewer
    than two items, or no fork (not Linux): computed here, in this process.
    While the workers run, the parent's objects are frozen out of the collector: a collection in a
    worker would touch, and so copy, every page holding them."""
    global _FN
    items = list(items)
    if workers <= 1 or len(items) < 2 or "fork" not in mp.get_all_start_methods():
        yield from map(fn, items)
        return
    if _FN is not None:
        raise RuntimeError("forked_map: already running (workers would inherit the outer function)")
    _FN = fn
    gc.freeze()
    try:
        with mp.get_context("fork").Pool(min(int(workers), len(items))) as procs:
            yield from procs.imap(_call, items)
    finally:
        gc.unfreeze()
        _FN = None
