"""The ``zoo`` console script: ``zoo.cli.main`` without the cost of ``import zoo``.

``zoo/__init__.py`` imports every family so that ``import zoo`` registers the
Keras-serialisable classes (``keras.saving.load_model`` of a zoo ``.keras``
file needs them), and that imports Keras and TensorFlow: seconds, and absl
noise on stderr. A console script of the form ``zoo.cli:main`` would run that
before the first line of the CLI, so ``zoo list`` or ``zoo --help`` could
never be fast.

This module is top-level (``py_modules`` in setup.py), so importing it runs
no part of the package. :func:`main` creates the ``zoo`` package module from
its import spec *without executing* ``zoo/__init__.py`` (the standard
``importlib.util.module_from_spec`` step, minus ``exec_module``), marks it
deferred and puts it in ``sys.modules``. Submodules (``zoo.cli``,
``zoo.weights``, ...) import normally through the package's ``__path__``.
``zoo.cli.load_package()`` runs the deferred ``zoo/__init__.py`` in that same
module object, so it is then exactly what ``import zoo`` gives; the CLI calls
it before every command except the few that answer from plain files
(``zoo list``, ``zoo info NAME``, ``zoo weights list``, ``--help``). Only
this process is affected: ``import zoo`` elsewhere, and ``python -m zoo``,
run the package as usual.
"""

import importlib.util
import sys

# The attribute that marks a package module whose __init__ has not run yet;
# zoo.cli.load_package() pops it and runs the module.
DEFERRED = "__zoo_deferred_init__"


def defer_package_init(name="zoo"):
    """Puts package ``name`` in ``sys.modules`` without running its ``__init__``.

    Does nothing when the package is already imported or cannot be found
    (the import then fails, or succeeds, the ordinary way).

    Returns:
        True when the package was deferred.
    """
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    module = importlib.util.module_from_spec(spec)
    setattr(module, DEFERRED, True)
    sys.modules[name] = module
    return True


def main(argv=None):
    """Runs ``zoo.cli.main(argv)`` with ``zoo/__init__.py`` deferred.

    Returns:
        The CLI's exit status.
    """
    defer_package_init()
    from zoo.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
