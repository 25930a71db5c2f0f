"""Forwarding module: the helpers live in ``tests/support/helpers.py``.

Kept only for test files outside the support move that still import
``tests.helpers`` (tests/test_weights_cli.py); import ``tests.support.helpers``.
"""

from tests.support.helpers import *  # noqa: F401,F403
from tests.support.helpers import serve_files, use_manifest  # noqa: F401
