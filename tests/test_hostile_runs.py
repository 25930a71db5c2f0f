"""Hostile runs of ``zoo finetune`` (issue 19): resume never mixes two runs,
a run deletes only its own files, labels out of range are refused, class
names are never guessed, and damaged run files give one-line errors."""

import argparse
import json
import os
import zipfile

import keras
import numpy as np
import pytest

from tests.support.helpers import write_png
from zoo.training import data, finetune, train


def _args(*argv):
    from zoo.cli.train import add_training_arguments

    p = argparse.ArgumentParser()
    p.add_argument("--data", default="zoo_shapes")
    p.add_argument("--out", required=True)
    add_training_arguments(p)
    args = p.parse_args(list(argv))
    return finetune._fill_defaults(args, epochs=10, batch_size=8, size=256)


def _options(*argv):
    args = _args("--out", "unused", "--model", "test_drn_d", *argv)
    return finetune.run_options(args, 4, ("a", "b", "c", "d"), 5, {"type": "torch"})


def _run_folder(out, options, epoch=1):
    out.mkdir(parents=True, exist_ok=True)
    (out / finetune.STATE).write_text(json.dumps({**options, "epoch": epoch, "logs": {}}))
    (out / finetune.CHECKPOINT).write_bytes(b"checkpoint")
    (out / finetune.LOG).write_text("epoch,loss\n0,1.0\n")
    return out


# ------------------------------------------------ item 4: resume compares the run


@pytest.mark.parametrize("flag, value", [
    ("--lr", "0.5"), ("--size", "128"), ("--optimizer", "adam"), ("--precision", "mixed_bfloat16"),
    ("--freeze", "backbone"), ("--weights", "imagenet"), ("--data", "folder:elsewhere"),
    ("--batch-size", "3"), ("--seed", "7"), ("--scale-range", "1 1.5"),
    ("--model", "test_resnet"), ("--model-kwargs", "head=bilinear"),
])
def test_resume_refuses_any_changed_run_option(tmp_path, flag, value):
    out = _run_folder(tmp_path / "run", _options())
    argv = [flag, *value.split()]
    args = _args("--out", "unused", "--model", "test_drn_d", *argv)
    if flag == "--model-kwargs":
        args.model_kwargs = {"head": "bilinear"}
    changed = finetune.run_options(args, 4, ("a", "b", "c", "d"), 5, {"type": "torch"})
    with pytest.raises(ValueError) as e:
        finetune.open_run(str(out), changed)
    message = str(e.value)
    assert flag in message and "another --out" in message and "--no-resume" in message, message
    # nothing was touched
    assert (out / finetune.CHECKPOINT).read_bytes() == b"checkpoint"
    assert json.loads((out / finetune.STATE).read_text())["epoch"] == 1


def test_resume_refuses_other_classes_or_steps_and_accepts_the_same_run(tmp_path):
    out = _run_folder(tmp_path / "run", _options())
    args = _args("--out", "unused", "--model", "test_drn_d")
    other = finetune.run_options(args, 5, ("a", "b", "c", "d", "e"), 5, {"type": "torch"})
    with pytest.raises(ValueError, match="class count"):
        finetune.open_run(str(out), other)
    steps = finetune.run_options(args, 4, ("a", "b", "c", "d"), 9, {"type": "torch"})
    with pytest.raises(ValueError, match="--steps-per-epoch"):
        finetune.open_run(str(out), steps)
    pre = finetune.run_options(args, 4, ("a", "b", "c", "d"), 5, {"type": "caffe"})
    with pytest.raises(ValueError, match="preprocessing"):
        finetune.open_run(str(out), pre)
    # --epochs is not part of the run: raising it trains further
    more = finetune.run_options(_args("--out", "x", "--model", "test_drn_d", "--epochs", "30"),
                                4, ("a", "b", "c", "d"), 5, {"type": "torch"})
    assert finetune.open_run(str(out), more)["epoch"] == 1


def test_state_without_the_options_is_not_resumed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / finetune.STATE).write_text(json.dumps({"model": "test_drn_d", "classes": 4, "epoch": 1}))
    (out / finetune.CHECKPOINT).write_bytes(b"x")
    with pytest.raises(ValueError, match="not recorded in the run"):
        finetune.open_run(str(out), _options())


# ------------------------------------------------ item 12: only delete our own files


def test_foreign_non_empty_out_is_refused_and_untouched(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for resume in (True, False):
        with pytest.raises(ValueError, match="not a zoo run folder.*another --out"):
            finetune.open_run(str(out), _options(), resume=resume)
    assert os.listdir(out) == ["notes.txt"]


@pytest.mark.parametrize("resume", [True, False])
def test_run_files_without_state_are_refused_not_deleted(tmp_path, resume):
    out = tmp_path / "run"
    out.mkdir()
    (out / finetune.CHECKPOINT).write_bytes(b"trained")
    (out / finetune.WEIGHTS).write_bytes(b"trained")
    (out / finetune.LOG).write_text("my own log\n")
    with pytest.raises(ValueError, match=r"no state\.json.*move them"):
        finetune.open_run(str(out), _options(), resume=resume)
    assert sorted(os.listdir(out)) == sorted([finetune.CHECKPOINT, finetune.WEIGHTS, finetune.LOG])
    assert (out / finetune.CHECKPOINT).read_bytes() == b"trained"


def test_another_jobs_temporary_files_are_never_removed(tmp_path):
    out = _run_folder(tmp_path / "run", _options())
    other = out / ".tmp-99999-checkpoint.keras"
    other.write_bytes(b"in flight")
    finetune.open_run(str(out), _options())
    finetune._replace_atomically(str(out / "x.txt"), lambda tmp: open(tmp, "w").write("x"))
    assert other.read_bytes() == b"in flight"
    # starting over removes only the run's own files
    (out / "user.txt").write_text("mine")
    finetune.open_run(str(out), _options(), resume=False)
    assert sorted(os.listdir(out)) == sorted([other.name, "user.txt", "x.txt"])


def test_run_stopped_before_its_first_checkpoint_starts_over(tmp_path):
    out = _run_folder(tmp_path / "run", _options(), epoch=0)
    os.remove(out / finetune.CHECKPOINT)
    assert finetune.open_run(str(out), _options()) is None
    assert not (out / finetune.LOG).exists()


def test_state_naming_a_missing_checkpoint_is_refused(tmp_path):
    out = _run_folder(tmp_path / "run", _options())
    os.remove(out / finetune.CHECKPOINT)
    with pytest.raises(ValueError, match="checkpoint.keras is missing"):
        finetune.open_run(str(out), _options())


# ------------------------------------------------ damaged run files


def test_truncated_state_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from zoo.cli import main

    out = _run_folder(tmp_path / "run", _options())
    (out / finetune.STATE).write_text('{"model": "test_drn_d", "epo')
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data loaded before the check"))
    assert main(["finetune", "--model", "test_drn_d", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "state.json is not valid JSON" in err and "--no-resume" in err, err
    (out / finetune.STATE).write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not valid JSON"):
        finetune.read_state(str(out))


def test_unreadable_log_is_moved_aside_not_blocking(tmp_path):
    out = _run_folder(tmp_path / "run", _options())
    (out / finetune.LOG).write_bytes(b"epoch,loss\n\xff\xfe\x80garbage\n")
    aside = finetune.check_log(str(out))
    assert aside == str(out / "log.csv.unreadable")
    assert not (out / finetune.LOG).exists()
    assert (out / "log.csv.unreadable").read_bytes().endswith(b"garbage\n")
    # Keras's CSVLogger can then append to a fresh log
    logger = keras.callbacks.CSVLogger(str(out / finetune.LOG), append=True)
    logger.on_train_begin()
    logger.on_epoch_end(1, {"loss": 0.5})
    logger.on_train_end()
    assert (out / finetune.LOG).read_text().startswith("epoch,loss")
    (out / finetune.LOG).write_text("epoch,loss\n0,1\n")
    assert finetune.check_log(str(out)) is None


# ------------------------------------------------ item 15: the zip-bomb guard


def test_resume_reads_the_checkpoint_through_the_zip_bomb_guard(tmp_path, monkeypatch):
    path = tmp_path / finetune.CHECKPOINT
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\0" * (20 << 20))  # 20 MiB from ~20 KB
    monkeypatch.setattr(keras.models, "load_model", lambda *a, **k: pytest.fail("unguarded load"))
    with pytest.raises(ValueError, match="zip bomb"):
        finetune.load_checkpoint(str(path))
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a Keras .keras archive"):
        finetune.load_checkpoint(str(path))


# ------------------------------------------------ backend


def test_jax_backend_is_refused_at_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data loaded before the check"))
    with pytest.raises(ValueError, match="KERAS_BACKEND=tensorflow"):
        finetune.run(_args("--out", str(tmp_path / "run"), "--model", "test_drn_d"))


# ------------------------------------------------ item 5: labels out of range


def test_metric_never_drops_out_of_range_labels():
    m = train.SegmentationMeanIoU(3)
    y = np.array([[[0], [5]], [[1], [255]]], "int32")[None, ..., 0][..., None]  # (1, 2, 2, 1)
    logits = np.zeros((1, 2, 2, 3), "float32")
    m.update_state(y, logits)
    assert np.isnan(float(m.result()))
    with pytest.raises(ValueError, match=r"1 labelled pixels have class ids outside 0\.\.2"):
        m.per_class()
    m.reset_state()
    m.update_state(np.zeros((1, 2, 2, 1), "int32"), logits)
    assert float(m.result()) == pytest.approx(1.0)


def _folder(root, masks, stem="im", size=(8, 6)):
    for i, mask in enumerate(masks):
        write_png(str(root / "images" / f"{stem}{i}.png"), np.full(size + (3,), 30 * i, "uint8"))
        write_png(str(root / "masks" / f"{stem}{i}.png"), np.asarray(mask, "uint8"))
    return root


def test_folder_class_count_covers_both_splits(tmp_path):
    root = tmp_path / "d"
    _folder(root / "train", [np.zeros((8, 6)), np.ones((8, 6))])
    _folder(root / "val", [np.full((8, 6), 2)])
    tfds = str(tmp_path / "tfds")
    train_src = data.load(f"folder:{root}", "train", tfds)
    val_src = data.load(f"folder:{root}", "validation", tfds)
    assert train_src.num_classes == val_src.num_classes == 3
    (root / "classes.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"mask im0\.png has class id 2 but classes.txt names 2 .*validati"):
        data.load(f"folder:{root}", "train", str(tmp_path / "tfds2"))


def test_all_ignore_data_is_a_clear_message(tmp_path):
    root = _folder(tmp_path / "d", [np.full((8, 6), 255)])
    with pytest.raises(ValueError, match="every mask pixel of the train split is the ignore label 255"):
        data.load(f"folder:{root}", "train", str(tmp_path / "tfds"))
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    ds = [(np.zeros((1, 4, 4, 3), "float32"), np.full((1, 4, 4, 1), 255, "uint8"))]
    with pytest.raises(ValueError, match="no labelled pixels"):
        finetune.evaluate(model, ds, 2)
    ds = [(np.zeros((1, 4, 4, 3), "float32"), np.full((1, 4, 4, 1), 7, "uint8"))]
    with pytest.raises(ValueError, match="outside 0..1"):
        finetune.evaluate(model, ds, 2)


def test_two_images_with_one_stem_are_refused(tmp_path):
    root = _folder(tmp_path / "d", [np.zeros((8, 6))])
    write_png(str(root / "images" / "im0.jpg"), np.zeros((8, 6, 3), "uint8"))
    with pytest.raises(ValueError, match=r"im0\.jpg and im0\.png share the stem 'im0'"):
        data.folder_pairs(str(root))
    with pytest.raises(ValueError, match="share the stem"):
        data.load(f"folder:{root}", "train", str(tmp_path / "tfds"))


# ------------------------------------------------ item 10 + the checkpoint's record


def test_class_names_are_never_guessed_from_the_count(tmp_path):
    from zoo.labels import label_set_for_weights, names_for_weights

    fine_tune = tmp_path / "my_drn.pth"
    fine_tune.write_bytes(b"x")
    assert label_set_for_weights("drn_d_22", str(fine_tune), 19) is None
    assert names_for_weights("drn_d_22", str(fine_tune), 19) == [f"class_{i}" for i in range(19)]
    # the file's own manifest entry still names it
    assert label_set_for_weights("drn_d_22", str(tmp_path / "drn_d_22_cityscapes.pth"), 19) == "cityscapes"
    assert label_set_for_weights("drn_d_22", "cityscapes", 19) == "cityscapes"


def test_finetuned_checkpoint_carries_names_and_preprocessing(tmp_path):
    from zoo.cli.apps import build_app_model
    from zoo.labels import checkpoint_record
    from zoo.registry import create_model

    model = create_model("test_drn_d", mode="dense", classes=4)
    pre = {"type": "torch", "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    finetune.record_run(model, ["sky", "road", "car", "tree"], pre)
    path = str(tmp_path / finetune.CHECKPOINT)
    model.save(path)
    record = checkpoint_record(path)
    assert record["class_names"] == ["sky", "road", "car", "tree"] and record["preprocessing"] == pre
    app, names = build_app_model("test_drn_d", path, "dense", 4)
    assert names == ["sky", "road", "car", "tree"]
    layer = next(la for la in app.layers if type(la).__name__ == "Preprocess")
    assert layer.spec["mean"] == pre["mean"] and layer.spec["std"] == pre["std"], layer.spec

    # fine-tuning that checkpoint further keeps its preprocessing
    assert finetune.weights_preprocessing("test_drn_d", path) == pre


def test_predict_legend_uses_the_runs_names(tmp_path, monkeypatch):
    from zoo.cli import main, render
    from zoo.registry import create_model

    model = create_model("test_drn_d", mode="dense", classes=4)
    finetune.record_run(model, ["sky", "road", "car", "tree"],
                        {"type": "torch", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    path = str(tmp_path / finetune.CHECKPOINT)
    model.save(path)
    img = tmp_path / "in" / "x.png"
    write_png(str(img), np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype="uint8"))
    drawn = []
    legend = render.legend
    monkeypatch.setattr(render, "legend", lambda entries, width: (drawn.extend(entries), legend(entries, width))[1])
    # no --classes: the class count, names and preprocessing come from the checkpoint's record
    assert main(["predict", "--model", "test_drn_d", "--mode", "dense", "--weights", path, str(img),
                 "--out", str(tmp_path / "out")]) == 0
    texts = [text for _, text in drawn]
    assert texts and all(t.split()[1] in ("sky", "road", "car", "tree") for t in texts), texts


# ------------------------------------------------ end to end (fit)


@pytest.mark.train
def test_finetune_cli_refuses_a_changed_run_and_survives_a_bad_log(tmp_path, shapes_dir, capsys):
    from zoo.cli import main

    out = tmp_path / "run"
    argv = ["finetune", "--model", "test_drn_d", "--data", "zoo_shapes", "--data-dir", shapes_dir,
            "--batch-size", "2", "--size", "32", "--steps-per-epoch", "1", "--optimizer", "adam",
            "--out", str(out), "--verbose", "0"]
    assert main(argv + ["--epochs", "1", "--lr", "1e-3"]) == 0
    capsys.readouterr()
    log = (out / finetune.LOG).read_bytes()
    assert main(argv + ["--epochs", "2", "--lr", "1e-2"]) == 2
    err = capsys.readouterr().err
    assert "--lr: 0.001 in the run, 0.01 now" in err and "another --out" in err, err
    assert (out / finetune.LOG).read_bytes() == log
    assert json.loads((out / finetune.STATE).read_text())["epoch"] == 1
    (out / finetune.LOG).write_bytes(b"\xff\xfe\x00broken")
    assert main(argv + ["--epochs", "2", "--lr", "1e-3"]) == 0
    assert "resuming test_drn_d" in capsys.readouterr().out
    assert json.loads((out / finetune.STATE).read_text())["epoch"] == 2
    assert (out / "log.csv.unreadable").is_file()
    from zoo.labels import checkpoint_record

    record = checkpoint_record(str(out / finetune.CHECKPOINT))
    assert record["class_names"] == ["background", "circle", "square", "triangle"]
    assert record["preprocessing"] == json.loads((out / finetune.STATE).read_text())["preprocessing"]


@pytest.mark.backends
def test_finetune_under_jax_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "zoo", "finetune", "--model", "drn_d_22", "--out",
                        str(tmp_path / "run")], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "KERAS_BACKEND=tensorflow" in last, r.stderr[-3000:]
    assert not (tmp_path / "run" / finetune.STATE).exists()
