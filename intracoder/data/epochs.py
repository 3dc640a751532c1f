"""The shuffled face order of each epoch, kept for the last few epochs, per dataset."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class EpochOrders:
    """``order(key, n)``: the permutation of range(n) drawn from default_rng([*seed, *key]),
    computed once and kept for the ``keep`` most recent keys.

    A dataset holds one of these instead of an lru_cache on a method: that cache lives on
    the class, keys on ``self``, and so kept every dataset (and its decoded faces) alive for
    as long as the process ran, one more each time train was called. This one holds no
    reference back to its owner and goes when the dataset goes. Locked, as the prefetcher's
    threads draw from it at once."""

    def __init__(self, seed: tuple[int, ...], keep: int = 8):
        self.seed = tuple(seed)
        self.keep = keep
        self._orders: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """Pickled (to a worker process) as its seed only: the cache and lock stay here."""
        return {"seed": self.seed, "keep": self.keep}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["seed"], state["keep"])

    def order(self, key: tuple[int, ...], n: int) -> np.ndarray:
        with self._lock:
            found = self._orders.get(key)
            if found is not None:
                self._orders.move_to_end(key)
                return found
        order = np.random.default_rng([*self.seed, *key]).permutation(n)
        with self._lock:
            self._orders[key] = order
            while len(self._orders) > self.keep:
                self._orders.popitem(last=False)
        return order
