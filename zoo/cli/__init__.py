"""Command line: ``zoo`` or ``python -m zoo``.

    zoo list [PATTERN]                            models: family, modes, published weights
    zoo info NAME [--size H W] [--mode M] [--output-stride S] [--json]
                                                  params, MACs, output stride, minimum inputs
    zoo convert SRC DST --model NAME [--mode M] [--classes N]
                                                  any supported checkpoint -> .weights.h5
    zoo weights list|fetch|verify [NAME [TAG]]    published weight files
    zoo predict --model NAME [--weights TAG|PATH] IMAGE... --out DIR
                                                  segment, classify or heatmap images
    zoo export --model NAME --format savedmodel|tflite|onnx --out PATH
    zoo heatmap IMAGE [--model vgg16] [--weights imagenet] [--out heat.png]
    zoo evaluate --model NAME [--weights TAG|PATH] --data DATA [--out DIR]
                                                  mIoU / top-1 on a labelled dataset
    zoo finetune --model NAME [--data DATA] --out DIR
    zoo distributed [--strategy mirrored|multiworker|none] --model NAME --out DIR
    zoo demo [segment|heatmap]                    the offline demos

Every command that builds a model (info, convert, predict, export, heatmap,
evaluate, finetune, distributed, demo) takes ``--model-kwargs KEY=VALUE ...``: further
builder arguments, values read as Python literals (a plain string when they
are not one), e.g. ``--model-kwargs output_stride=16 head=deeplabv3``.
``zoo COMMAND --help`` lists each command's options.

Each command lives in the module :data:`COMMANDS` names, which adds its
parser (``add_parsers(subparsers)``) and imports Keras, TensorFlow or the
rest of the package only inside its handlers. User errors are one line on
stderr and exit code 2.
"""

import argparse
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Every command and the module that defines it, in the order ``zoo --help`` lists them.
COMMANDS = {
    "list": "zoo.cli.models",
    "info": "zoo.cli.models",
    "convert": "zoo.cli.models",
    "weights": "zoo.cli.weights",
    "predict": "zoo.cli.apps",
    "export": "zoo.cli.apps",
    "heatmap": "zoo.cli.apps",
    "evaluate": "zoo.cli.evaluate",
    "finetune": "zoo.cli.train",
    "distributed": "zoo.cli.train",
    "demo": "zoo.cli.train",
}

# Commands that answer from plain files (the index, the manifest) and so run
# without ``zoo/__init__.py`` and Keras when the console script deferred them
# (``zoo_launcher``); every other command gets the whole package first.
LIGHT = {("list",), ("info",), ("weights", "list")}


def build_parser():
    """The ``zoo`` argument parser: each :data:`COMMANDS` module adds its
    commands (in the table's order: modules are grouped there)."""
    p = argparse.ArgumentParser(
        prog="zoo", description="keras-zoo command line",
        epilog="Every command that builds a model takes --model-kwargs KEY=VALUE ... ; "
               "zoo COMMAND --help shows a command's options.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module).add_parsers(sub)
    return p


def _user_error(e):
    """The one-line message for an exception caused by the user's input, else None.

    ValueError (CheckpointError is one), missing or unreadable files, and a
    builder refusing an option the model does not take are the user's to
    fix; anything else is a bug and keeps its traceback.
    """
    if isinstance(e, (ValueError, OSError)):
        return str(e) or type(e).__name__
    if isinstance(e, TypeError) and "unexpected keyword argument" in str(e):
        return f"{e} (this model does not take that option)"
    return None


def main(argv=None):
    """Runs the ``zoo`` command line.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 2 for a user error, reported as one line on
        stderr without a traceback (argparse's own usage errors also exit 2).
    """
    from zoo.cli.common import load_package, parse_model_kwargs

    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "model_kwargs"):
            args.model_kwargs = parse_model_kwargs(args.model_kwargs)
        if not {(args.command,), (args.command, getattr(args, "weights_command", None))} & LIGHT:
            load_package()
        result = args.func(args)
    except Exception as e:  # noqa: BLE001 - user errors become one line, the rest re-raise
        message = _user_error(e)
        if message is None:
            raise
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
