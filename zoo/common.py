"""Argument handling shared by every family's builder, and the one timing loop
(``zoo demo`` and benchmarks/ both time with :func:`run_times`)."""

import time

from zoo.registry import MODES

DEFAULT = "default"


def check_choice(value, choices, what):
    """Raises a ValueError listing ``choices`` when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(
            f"unknown {what} {value!r}; valid choices: {', '.join(map(str, choices))}"
        )
    return value


def resolve_mode(mode, input_shape, classifier_activation, classify_size=224, modes=MODES):
    """Checks ``mode`` and fills the defaults every builder shares.

    Args:
        mode: one of ``modes``.
        input_shape: user value or None.
        classifier_activation: user value, or ``"default"``.
        classify_size: side of the training crop; classify mode defaults to it.
        modes: the modes this family accepts.

    Returns:
        ``(input_shape, classifier_activation)``. Classify mode defaults to the
        training crop (its Flatten or pooling needs a fixed size); the others
        accept any size. Dense and features modes never apply an activation.
    """
    check_choice(mode, modes, "mode")
    if input_shape is None:
        if mode == "classify":
            input_shape = (classify_size, classify_size, 3)
        else:
            input_shape = (None, None, 3)
    if classifier_activation == DEFAULT:
        classifier_activation = "softmax" if mode in ("classify", "heatmap") else None
    if mode in ("dense", "features"):
        classifier_activation = None
    return tuple(input_shape), classifier_activation


def check_min_size(input_shape, min_size, mode):
    """Refuses static input sizes below ``min_size`` with a clear message."""
    for side in input_shape[:2]:
        if side is not None and side < min_size:
            raise ValueError(
                f"{mode} mode needs inputs of at least {min_size}x{min_size}; "
                f"got input_shape={tuple(input_shape)}"
            )


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
