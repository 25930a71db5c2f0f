"""Forwarding module: the reference lives in ``tests/support/resnet_torch_ref.py``.

Kept only for benchmarks/ (bench_drn, bench_predict, bench_train), which
import ``tests.resnet_torch_ref``; tests import ``tests.support.resnet_torch_ref``.
"""

from tests.support.resnet_torch_ref import *  # noqa: F401,F403
