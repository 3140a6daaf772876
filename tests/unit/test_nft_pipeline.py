"""The commit runners of agent/linux/nft/pipeline.py: order, thread, errors."""
import threading
import time

import pytest

from agent.linux.nft.pipeline import Inline, Pipeline


def _fail(exc):
    raise exc


@pytest.mark.parametrize("runner", [Inline, Pipeline])
def test_callables_run_once_each_in_submission_order(runner):
    seen, threads = [], set()
    run = runner()
    for i in range(200):
        run.submit(lambda i=i: (seen.append(i), threads.add(threading.get_ident())))
    run.finish()
    assert seen == list(range(200))
    # Inline runs on the caller's thread; Pipeline on exactly one other thread
    caller = threading.get_ident()
    assert threads == {caller} if runner is Inline else (len(threads) == 1 and caller not in threads)


def test_an_error_skips_what_follows_and_is_raised_by_finish():
    seen = []
    run = Pipeline()
    run.submit(lambda: seen.append(1))
    run.submit(lambda: _fail(OSError("piece 2 failed")))
    run.submit(lambda: seen.append(3))  # ordered after piece 2: must not run
    with pytest.raises(OSError, match="piece 2 failed"):
        run.finish()
    assert seen == [1]


def test_submit_after_an_error_raises_it_at_once():
    run = Pipeline()
    run.submit(lambda: _fail(ValueError("bad piece")))
    deadline = time.monotonic() + 5
    while run._error is None and time.monotonic() < deadline:  # the worker records it
        time.sleep(0.001)
    ran = []
    with pytest.raises(ValueError, match="bad piece"):
        run.submit(lambda: ran.append(1))
    with pytest.raises(ValueError, match="bad piece"):
        run.finish()
    assert ran == []
