"""``python -m zoo``: the ``zoo`` command line.

Python runs ``zoo/__init__.py`` (every family, Keras, TensorFlow) before this
module, so this is slower than the ``zoo`` console script, which defers it
for the commands that need no model (see ``zoo_launcher``).
"""

import sys

from zoo.cli import main

sys.exit(main())
