"""The CLI as a tool: one command table, fast silent listing commands (the
launcher and the index), ``--model-kwargs`` everywhere a model is built."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from zoo import cli
from zoo.cli import index as zindex
from zoo.cli import main
from zoo.cli.common import format_table, parse_model_kwargs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The console script's path (zoo_launcher.main) in a fresh interpreter; it
# reports which heavy modules got imported on stdout's last line.
_PROBE = (
    "import sys, zoo_launcher\n"
    "try:\n"
    "    rc = zoo_launcher.main(sys.argv[1:])\n"
    "except SystemExit as e:\n"
    "    rc = e.code\n"
    "print('IMPORTED', ','.join(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))\n"
    "sys.exit(rc)\n"
)


def _console(*argv):
    """``zoo ARGV`` as the console script runs it: ``(rc, stdout, stderr, heavy modules)``."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    out, _, last = r.stdout.rstrip("\n").rpartition("\n")
    assert last.startswith("IMPORTED"), r.stdout + r.stderr
    return r.returncode, out, r.stderr, [m for m in last[len("IMPORTED "):].split(",") if m]


STALE = "the committed index is stale: run `python -m zoo.cli.index --write` and commit zoo/cli/index.json"


# ------------------------------------------------------------ the fast commands


@pytest.mark.parametrize("argv", [["list"], ["list", "drn_d_*"], ["--help"], ["info", "resnet18"],
                                  ["info", "vgg16", "--json"], ["weights", "list"], ["info", "--help"],
                                  ["distributed", "--help"]], ids=" ".join)
def test_light_commands_import_no_keras_and_are_silent(argv):
    assert zindex.load() is not None, STALE
    rc, out, err, heavy = _console(*argv)
    assert rc == 0, err
    assert err == "", err
    assert heavy == [], f"zoo {' '.join(argv)} imported {heavy}"
    assert out.strip()


def test_help_lists_every_command_of_the_table_in_order():
    rc, out, _, _ = _console("--help")
    listed = [line.split()[0] for line in out.split("COMMAND\n", 1)[1].splitlines()
              if line.startswith("    ") and not line.startswith("     ")]
    assert listed[:len(cli.COMMANDS)] == list(cli.COMMANDS)
    for name in cli.COMMANDS:  # the module docstring's usage names every command
        assert f"    zoo {name}" in cli.__doc__, name


def test_every_command_is_handled_by_its_table_module():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(cli.COMMANDS)
    for name, sp in sub.choices.items():
        funcs = [sp.get_default("func")]
        if name == "weights":
            inner = next(a for a in sp._actions if isinstance(a, argparse._SubParsersAction))
            funcs = [p.get_default("func") for p in inner.choices.values()]
        assert all(f.__module__ == cli.COMMANDS[name] for f in funcs), name


def _published(names):
    """Registry names without conftest's test-only tiny configs (``test_*``)."""
    return [n for n in names if not n.startswith("test_")]


def test_index_and_live_registry_print_the_same(capsys):
    assert zindex.load() is not None, STALE
    rc, fast, _, heavy = _console("info", "resnet18", "--json")  # the text is a function of the JSON
    assert rc == 0 and heavy == []
    assert main(["info", "resnet18", "--json"]) == 0  # this process imported zoo: the live registry answers
    assert capsys.readouterr().out.rstrip("\n") == fast
    rc, fast, _, heavy = _console("list")
    assert rc == 0 and heavy == []
    assert main(["list"]) == 0
    live = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [line.split() for line in fast.splitlines()] == [row for row in live if row[0] in _published([row[0]])]


def test_index_is_fresh_and_its_cheap_facts_match_the_registry():
    from zoo.assembler import min_input_table
    from zoo.registry import get_entry, list_models

    index = zindex.load()
    assert index is not None, STALE
    assert sorted(index["models"]) == _published(list_models())
    for name, record in index["models"].items():
        entry, info = get_entry(name), record["info"]
        assert (info["family"], info["modes"], record["info_mode"]) == (
            entry.family, list(entry.modes), entry.info_mode), name
        assert info["min_input"] == min_input_table(name), name
        assert info["output_stride"] == entry.output_stride, name


def test_a_stale_index_is_not_used(tmp_path):
    with open(zindex.PATH) as f:
        index = json.load(f)
    index["source_hash"] = "0" * 64
    path = tmp_path / "index.json"
    path.write_text(json.dumps(index))
    assert zindex.load(str(path)) is None
    assert zindex.load(str(tmp_path / "missing.json")) is None


@pytest.mark.slow
def test_index_matches_a_rebuild_of_every_model():
    index = zindex.load()
    assert index is not None, STALE
    from zoo.registry import list_models

    assert zindex.build(_published(list_models())) == index


# ------------------------------------------------------------- the table format


def test_tables_have_headers_and_aligned_columns():
    text = format_table(["NAME", "FAMILY", "X"], [("a", "bbbbbbb", "1"), ("cccccc", "d", "22")])
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "FAMILY", "X"]
    starts = [lines[0].index(h) for h in ("FAMILY", "X")]
    for line in lines[1:]:
        assert all(line[s - 1] == " " and line[s] != " " for s in starts), text
    rc, out, _, _ = _console("list")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "FAMILY", "MODES", "WEIGHTS"]
    starts = [lines[0].index(h) for h in ("FAMILY", "MODES", "WEIGHTS")]
    for line in lines[1:]:
        assert all(line[s - 1] == " " and line[s] != " " for s in starts), line
    assert any(line.split()[0] == "resnet18" for line in lines[1:])


# ---------------------------------------------------------------- --model-kwargs


def test_model_kwargs_are_python_literals_with_a_string_fallback():
    got = parse_model_kwargs(["output_stride=16", "stride_in_1x1=False", "head=unet", "name='x y'",
                              "head_options={'skips': []}", "scale=0.5", "dilations=(1, 2)", "tag=a=b"])
    assert got == {"output_stride": 16, "stride_in_1x1": False, "head": "unet", "name": "x y",
                   "head_options": {"skips": []}, "scale": 0.5, "dilations": (1, 2), "tag": "a=b"}
    for bad in (["output_stride"], ["=3"], ["a=1", "a=2"]):
        with pytest.raises(ValueError):
            parse_model_kwargs(bad)


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, says", [
    (["info", "resnet18", "--model-kwargs", "output_stride"], "KEY=VALUE"),
    (["info", "resnet18", "--model-kwargs", "no_such_option=1"], "'no_such_option'"),
    (["convert", "a.pth", "b", "--model", "resnet18", "--model-kwargs", "no_such_option=1"], "'no_such_option'"),
    (["info", "resnet18", "--output-stride", "16", "--model-kwargs", "output_stride=8"], "--output-stride"),
    (["convert", "a.pth", "b", "--model", "resnet18", "--mode", "dense", "--model-kwargs", "mode=features"],
     "--mode"),
    (["info", "resnet18", "--model-kwargs", "input_shape=(64, 64, 3)"], "--size"),
    (["finetune", "--model", "resnet18", "--out", "x", "--model-kwargs", "classes=3"], "dataset"),
    (["demo", "heatmap", "--model-kwargs", "output_stride=16"], "segment"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_model_kwargs_errors_are_one_line_exit_2(capsys, argv, says):
    assert says in _one_line_error(capsys, argv)


def test_model_kwargs_reach_the_builder_in_info(capsys):
    argv = ["info", "resnet18", "--size", "64", "64", "--json", "--model-kwargs", "output_stride=16"]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output_stride"] == 16 and info["input_size"] == [64, 64]
    assert max(f["stride"] for f in info["features"].values()) == 16  # built dilated: no P5
    # the same key from the flag and from --model-kwargs, agreeing, is fine
    assert main(argv + ["--output-stride", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["output_stride"] == 16


def test_model_kwargs_reach_the_builder_in_convert(tmp_path, capsys):
    import zoo

    src = str(tmp_path / "r18.weights.h5")
    zoo.create_model("resnet18", mode="features").save_weights(src)
    dst = str(tmp_path / "r18_grey")
    assert main(["convert", src, dst, "--model", "resnet18", "--mode", "features",
                 "--model-kwargs", "in_channels=1"]) == 0
    grey = zoo.create_model("resnet18", mode="features", in_channels=1, weights=dst + ".weights.h5")
    assert grey.get_layer("conv1").kernel.shape == (7, 7, 1, 64)


def test_distributed_is_a_zoo_command(monkeypatch, tmp_path):
    from zoo.training import distributed

    seen = []
    monkeypatch.setattr(distributed, "run", lambda args: seen.append(args) or 0)
    assert main(["distributed", "--model", "resnet18", "--out", str(tmp_path), "--strategy", "none",
                 "--model-kwargs", "output_stride=16"]) == 0
    (args,) = seen
    assert (args.model, args.strategy, args.model_kwargs) == ("resnet18", "none", {"output_stride": 16})
    seen.clear()
    assert main(["distributed", "--model", "resnet18", "--out", str(tmp_path)]) == 0
    assert seen[0].strategy == "mirrored" and seen[0].model_kwargs == {}


def test_finetune_passes_model_kwargs(monkeypatch, tmp_path):
    from zoo.training import finetune

    seen = []

    def fake_run(args, **kwargs):
        seen.append(args)
        raise SystemExit(0)  # stop before training: only the arguments matter here

    monkeypatch.setattr(finetune, "run", fake_run)
    with pytest.raises(SystemExit):
        main(["finetune", "--model", "resnet18", "--out", str(tmp_path), "--model-kwargs", "output_stride=16",
              "head=deeplabv3"])
    assert seen[0].model_kwargs == {"output_stride": 16, "head": "deeplabv3"}


@pytest.mark.train
def test_finetune_records_model_kwargs_and_resumes_only_with_them(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["finetune", "--model", "resnet18", "--data-dir", str(tmp_path / "tfds"), "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "2", "--size", "32", "--out", out, "--verbose", "0",
            "--model-kwargs", "output_stride=16"]
    assert main(argv) == 0
    state = json.load(open(os.path.join(out, "state.json")))
    assert state["model_kwargs"] == {"output_stride": 16}
    capsys.readouterr()
    argv[argv.index("--epochs") + 1] = "2"
    err = _one_line_error(capsys, argv[:-1] + ["output_stride=8"])
    assert "--model-kwargs" in err and "--no-resume" in err
