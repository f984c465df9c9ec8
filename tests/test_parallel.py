import os

import pytest

from tweetsim.config.parallel import forked_map


def test_forked_map_keeps_the_order_and_runs_in_other_processes():
    big = {"state": list(range(1000))}  # reached through the closure: never pickled
    got = list(forked_map(lambda i: (i, big["state"][i], os.getpid()), range(20), 2))
    assert [(i, v) for i, v, _ in got] == [(i, i) for i in range(20)]
    assert os.getpid() not in {pid for *_, pid in got}


@pytest.mark.parametrize("workers, items", [(1, range(5)), (2, [7]), (0, range(3))])
def test_forked_map_runs_here_with_one_worker_or_one_item(workers, items):
    assert {pid for pid in forked_map(lambda _: os.getpid(), items, workers)} == {os.getpid()}


def test_forked_map_passes_a_workers_error_on():
    def fn(i):
        if i == 3:
            raise ValueError("row 3: bad")
        return i

    with pytest.raises(ValueError, match="row 3: bad"):
        list(forked_map(fn, range(6), 2))
    assert list(forked_map(lambda i: i, range(4), 2)) == [0, 1, 2, 3]  # usable again after an error
