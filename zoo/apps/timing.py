"""The one timing loop: ``zoo demo`` and benchmarks/ both time with :func:`run_times`."""

import time


def run_times(fn, warmup=1, repeat=5):
    """Wall times of repeated ``fn()`` calls, after ``warmup`` untimed ones.

    Args:
        fn: a callable whose return the caller has already made blocking
            (e.g. ends in ``.numpy()``), so that the time includes the work.
        warmup: untimed calls first (tracing, allocation).
        repeat: timed calls.

    Returns:
        A list of ``repeat`` durations in seconds.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times
