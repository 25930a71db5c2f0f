"""What every command module shares: the deferred package and ``--model-kwargs``.

This module imports the standard library only: the command modules import it
while the parser is built, and ``zoo --help`` must stay instant.
"""

import ast
import inspect
import sys

# The mark zoo_launcher.defer_package_init puts on the ``zoo`` module it
# created without running zoo/__init__.py (zoo_launcher.DEFERRED).
DEFERRED = "__zoo_deferred_init__"


def package_deferred():
    """True while ``zoo/__init__.py`` has not run in this process (the console
    script's launcher, ``zoo_launcher``, defers it)."""
    package = sys.modules.get("zoo")
    return package is not None and bool(getattr(package, DEFERRED, False))


def load_package():
    """Runs the deferred ``zoo/__init__.py``, so ``zoo`` is what ``import zoo``
    gives (every family and serialisable class registered). A no-op when the
    package was imported the ordinary way."""
    package = sys.modules.get("zoo")
    if package is not None and package.__dict__.pop(DEFERRED, False):
        package.__spec__.loader.exec_module(package)
    return sys.modules["zoo"]


def format_table(header, rows):
    """Left-aligned columns under a header, two spaces apart; the last column unpadded."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------- --model-kwargs


def add_model_kwargs(parser):
    """Adds ``--model-kwargs KEY=VALUE ...`` (repeatable) to a command that builds a model."""
    parser.add_argument(
        "--model-kwargs", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="further builder arguments, values as Python literals with a plain-string "
             "fallback: output_stride=16 stride_in_1x1=False head=unet \"head_options={'skips': []}\"",
    )


def parse_model_kwargs(items):
    """``["output_stride=16", "head=unet"]`` -> ``{"output_stride": 16, "head": "unet"}``.

    Each value is read with :func:`ast.literal_eval`; one that is not a
    literal stays the raw string (as timm's train.py does), so ``head=unet``
    needs no quotes.

    Raises:
        ValueError: an item without ``=`` or with an empty key, or a key given twice.
    """
    kwargs = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            hint = "" if sep else " (positional arguments go before --model-kwargs)"
            raise ValueError(f"--model-kwargs takes KEY=VALUE items; got {item!r}{hint}")
        if key in kwargs:
            raise ValueError(f"--model-kwargs gives {key!r} twice")
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            kwargs[key] = raw
    return kwargs


def merge_model_kwargs(model_kwargs, flags=None, fixed=None):
    """The builder arguments of a command: ``--model-kwargs`` plus its own flags.

    Args:
        model_kwargs: the parsed ``--model-kwargs`` dict.
        flags: ``{key: (flag, value)}`` of the command's flags that are
            builder arguments; a value of None means the flag was not given.
        fixed: ``{key: what}`` of builder arguments the command always sets
            itself (``what`` says how, e.g. ``"--size"``).

    Returns:
        A new dict.

    Raises:
        ValueError: ``--model-kwargs`` names a fixed key, or gives a flag's
            key a different value than the flag.
    """
    kwargs = dict(model_kwargs or {})
    for key, what in (fixed or {}).items():
        if key in kwargs:
            raise ValueError(f"--model-kwargs cannot set {key!r}: this command sets it from {what}")
    for key, (flag, value) in (flags or {}).items():
        if value is None:
            continue
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"{flag} {value} and --model-kwargs {key}={kwargs[key]!r} disagree; give one")
        kwargs[key] = value
    return kwargs


def check_builder_options(model_name, kwargs):
    """Refuses an option the model's builder does not take, naming it.

    Reads the builder's signature (the registry keeps it truthful); a builder
    taking ``**kwargs`` is left to raise its own TypeError.

    Raises:
        ValueError: unknown model, or an option the builder does not take.
    """
    if not kwargs:
        return
    load_package()
    from zoo.registry import get_entry

    builder = getattr(get_entry(model_name), "builder", None)
    if builder is None:
        return
    params = inspect.signature(builder).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ValueError(
            f"{model_name} does not take option {unknown[0]!r} (--model-kwargs); its options: "
            f"{', '.join(params)}"
        )
