"""The prefetching batch loader: same batches in the same order as building them inline."""

import numpy as np
import pytest

from pipeline.data.loader import PrefetchLoader


def _make(idx: np.ndarray) -> list[int]:
    return [int(i) for i in idx]


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_batches_come_in_order_whatever_the_thread_count(threads):
    order = np.random.default_rng(0).permutation(23)
    loader = PrefetchLoader(_make, order, batch_size=4, threads=threads)
    got = list(loader)
    assert [i for batch in got for i in batch] == [int(i) for i in order[:20]] + [
        int(i) for i in order[20:]
    ]
    assert len(got) == len(loader) == 6
    assert loader.wait_seconds >= 0


def test_a_last_batch_of_one_is_dropped():
    loader = PrefetchLoader(_make, np.arange(9), batch_size=4, threads=1)
    assert [len(b) for b in loader] == [4, 4]


def test_errors_in_a_worker_reach_the_training_loop():
    def broken(idx: np.ndarray) -> None:
        raise ValueError(f"cannot build batch {idx[0]}")

    with pytest.raises(ValueError, match="cannot build batch 0"):
        list(PrefetchLoader(broken, np.arange(8), batch_size=4, threads=1))
