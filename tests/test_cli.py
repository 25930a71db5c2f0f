"""The command line, in-process (``zoo.cli.main``) and as ``python -m zoo``
(the console script's fast path: tests/test_cli_fast.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from zoo.cli import main


def test_list_and_info(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "FAMILY", "MODES", "WEIGHTS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["vgg16"][1:3] == ["vgg", "classify,heatmap,dense,features"] and rows["fcn8s"][2] == "dense"
    assert main(["info", "vgg16", "--size", "384", "384"]) == 0
    out = capsys.readouterr().out
    assert "138,357,544" in out and "384x384" in out and "output stride  32" in out
    # VGG's Flatten needs the training crop: counted as its heatmap form; MACs, not FLOPs
    assert "counted in     heatmap mode at 384x384" in out and "MACs" in out and "flops" not in out.lower()


def test_list_pattern_without_a_match_is_a_clean_error(capsys):
    assert main(["list", "nothing_*"]) == 2
    assert "nothing_*" in capsys.readouterr().err


def test_unknown_model_is_a_clean_error(capsys):
    assert main(["info", "vgg17"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_convert_legacy_h5_to_weights_h5(tmp_path, vgg16_notop):
    _, notop = vgg16_notop
    dst = str(tmp_path / "vgg16_features.weights.h5")
    assert main(["convert", notop, dst, "--model", "vgg16", "--mode", "features"]) == 0
    a = zoo.VGG16(weights=notop, mode="features")
    b = zoo.VGG16(weights=dst, mode="features")
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


def _write_png(path, height, width, seed=0):
    import tensorflow as tf

    img = (np.random.default_rng(seed).uniform(0, 255, (height, width, 3))).astype("uint8")
    tf.io.write_file(path, tf.io.encode_png(img))
    return path


@pytest.mark.xdist_group("vgg16_reference")
def test_heatmap_writes_png_with_title_and_colour_bar_and_guesses_no_names(tmp_path, vgg16_reference, capsys):
    import re

    import tensorflow as tf

    from zoo.labels import load_labels

    _, top, _ = vgg16_reference  # keras.applications' layout, with its 1000-class top
    path = _write_png(str(tmp_path / "img.png"), 256, 288)
    out = str(tmp_path / "heat.png")
    assert main(["heatmap", path, "--model", "vgg16", "--weights", top, "--out", out]) == 0
    png = tf.io.decode_png(tf.io.read_file(out)).numpy()
    # the overlay, a title above it and a colour bar with its scale below
    assert png.shape[1] == 288 and png.shape[0] > 256 + 40, png.shape
    # A 1000-class file that is not a published one gets no names: names are
    # never guessed from the class count (issue 19, item 10).
    line = capsys.readouterr().out
    cls = int(re.search(r"top class (\d+) ", line).group(1))
    assert f"top class {cls} (score" in line
    assert load_labels("imagenet")[cls] not in line


def test_heatmap_without_a_label_set_prints_the_index_only(tmp_path, capsys):
    import re

    weights = str(tmp_path / "resnet18_10.weights.h5")
    zoo.create_model("resnet18", weights=None, mode="heatmap", classes=10).save_weights(weights)
    path = _write_png(str(tmp_path / "img.png"), 224, 240)
    out = str(tmp_path / "heat.png")
    argv = ["heatmap", path, "--model", "resnet18", "--weights", weights, "--classes", "10", "--out", out]
    assert main(argv) == 0
    line = capsys.readouterr().out
    # no published label set has 10 classes: the index stands alone
    assert re.match(r"top class \d \(score ", line), line
    assert os.path.getsize(out) > 0


def test_python_dash_m_runs():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "zoo", "list", "vgg*"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[0] == "NAME" and [line.split()[0] for line in lines[1:]] == ["vgg16", "vgg19"]


# An end-to-end demo run (three VGG16 builds and a 500 MB file): CI's train
# step, beside the segmentation demo's phases.
@pytest.mark.train
def test_demo_heatmap_reports_and_writes_png(tmp_path, capsys):
    # 224: the smallest scene (one window); the command, not the speedup
    assert main(["demo", "heatmap", "--heatmap-size", "224", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "exact part" in out and "top-1 agreement" in out and "speed" in out
    assert "[1/4]" in out and "[4/4]" in out  # its phases, as they start
    assert (tmp_path / "heatmap.png").stat().st_size > 0


def test_demo_segment_takes_the_demo_defaults_unless_overridden(monkeypatch, capsys):
    from zoo.training import finetune

    seen = []

    def fake_run(args, **kwargs):
        seen.append(vars(args).copy())
        raise SystemExit(0)  # stop before training: only the arguments matter here

    monkeypatch.setattr(finetune, "run", fake_run)
    for argv in (["demo"], ["demo", "segment", "--epochs", "2", "--size", "32", "--steps-per-epoch", "3"]):
        try:
            main(argv)
        except SystemExit:
            pass
    first, second = seen
    assert (first["epochs"], first["steps_per_epoch"], first["batch_size"], first["size"], first["lr"]) == (
        finetune.DEMO_EPOCHS, finetune.DEMO_STEPS, finetune.DEMO_BATCH, finetune.DEMO_SIZE, finetune.DEMO_LR)
    assert (second["epochs"], second["steps_per_epoch"], second["batch_size"], second["size"]) == (
        2, 3, finetune.DEMO_BATCH, 32)
    assert "zoo demo: fine-tuning" in capsys.readouterr().out
