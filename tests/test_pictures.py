"""Pictures a person can read (issue 20, items 1, 3 and 4): the segmentation
overlay's panels, titles, legend and palette; the heatmap colour bar; the
demo's synthetic scene; the demo's start (cached file or random init), what
it writes, and no Keras ``shuffle`` warning."""

import argparse
import os
import numpy as np
import pytest

from zoo.apps import drawing
from zoo.training import finetune

# zoo_shapes' shape colours (zoo.training.data._draw_shapes: hue x brightness 0.6-1.1)
SHAPE_HUES = ((230, 40, 40), (40, 200, 60), (50, 80, 230))
# How far (Euclidean RGB) every foreground label colour of the first classes
# stays from every shape colour the dataset draws; the background's black
# is 128 away.
PALETTE_MARGIN = 150


def _shape_colours():
    b = np.linspace(0.6, 1.1, 51)
    return np.concatenate([np.clip(np.outer(b, h), 0, 255) for h in SHAPE_HUES])


def _colours_in(region):
    return {tuple(int(v) for v in px) for px in region.reshape(-1, 3)}


def _grid(size=40, n=3, classes=4):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, size, size, 3)).astype("uint8")
    truths = rng.integers(0, classes, (n, size, size))
    truths[:, :3] = 255  # an ignored band
    preds = rng.integers(0, classes, (n, size, size))
    names = ["background", "circle", "square", "triangle"][:classes]
    return images, truths, preds, names


def test_overlay_has_large_panels_titles_and_a_legend_in_the_palette():
    images, truths, preds, names = _grid()
    pic = finetune.overlay_grid(images, truths, preds, names)
    factor = 4  # 40 px crops -> 160 px panels
    panel, gap = 40 * factor, 4
    assert pic.shape[1] == 3 * panel + 2 * gap, pic.shape
    # the title strip: ink (dark pixels) above each of the three columns
    title_h = next(y for y in range(pic.shape[0]) if (pic[y, :panel] != 255).all(-1).sum() > panel // 2)
    assert title_h >= 10
    for col in range(3):
        strip = pic[:title_h, col * (panel + gap):col * (panel + gap) + panel]
        assert (strip.max(-1) < 100).sum() > 20, f"no title over column {col}"
    # the truth panel of row 0: solid palette colours, upscaled with nearest
    truth = pic[title_h:title_h + panel, panel + gap:2 * panel + gap]
    colours = drawing.segment_palette(4)
    expect = drawing.upscale(drawing.colour_labels(truths[0], colours), factor)
    np.testing.assert_array_equal(truth, expect)
    # the legend under the rows: every class's palette colour, and the hatching
    legend = pic[title_h + 3 * panel + 3 * gap:]
    found = _colours_in(legend)
    for i in range(4):
        assert tuple(int(c) for c in colours[i]) in found, (i, colours[i])
    assert set(drawing.IGNORE_COLOURS) <= found


def test_palette_stands_out_from_the_shapes_colours():
    shapes = _shape_colours()
    colours = drawing.segment_palette(4)[:4].astype("float64")
    dist = np.sqrt(((shapes[None] - colours[:, None]) ** 2).sum(-1)).min(1)
    assert dist[1:].min() >= PALETTE_MARGIN, dist
    assert dist[0] >= 120, dist  # black background vs the darkest shape colour
    # and the classes from each other
    pair = np.sqrt(((colours[None] - colours[:, None]) ** 2).sum(-1))
    assert pair[~np.eye(4, dtype=bool)].min() >= 150, pair


def test_heatmap_figure_has_a_title_and_a_colour_bar_with_its_scale():
    image = np.full((64, 80, 3), 128, "uint8")
    scores = np.linspace(-2, 5, 6 * 7).reshape(6, 7)
    pic = drawing.heatmap_figure(image, scores, "class 3 tabby", "logit")
    assert min(pic.shape[:2]) >= drawing.MIN_PANEL
    low, high = (tuple(drawing.colorize(np.array([[v]]), 0, 1)[0, 0]) for v in (0.0, 1.0))
    rows = [y for y in range(pic.shape[0]) if {low, high} <= _colours_in(pic[y])]
    assert rows, "no row holds both ends of the colour ramp"
    bar = pic[rows[len(rows) // 2]]
    # the ramp: many colours, from blue at its left end to red at its right
    assert len(_colours_in(bar)) > 50
    xs = {c: [x for x in range(len(bar)) if tuple(bar[x]) == c] for c in (low, high)}
    assert max(xs[low]) < min(xs[high])


def test_predict_heatmap_captions_each_map_with_its_own_scale(tmp_path):
    from zoo.cli import apps

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (48, 64, 3)).astype("uint8")
    scores = rng.random((3, 4, 5)).astype("float32")
    scores[..., 2] *= 10
    args = argparse.Namespace(top_maps=2, out=str(tmp_path))
    written, top = apps._heatmap_outputs(args, "img", image, scores, ["a", "b", "c", "d", "e"])
    assert [t[0] for t in top][0] == 2
    import tensorflow as tf

    pic = tf.io.decode_png(tf.io.read_file(written[0])).numpy()
    low = tuple(drawing.colorize(np.array([[0.0]]), 0, 1)[0, 0])  # the ramp's blue end
    # two panels side by side, each with its own colour bar
    rows = [y for y in range(pic.shape[0]) if low in _colours_in(pic[y])]
    assert rows
    starts = [x for x in range(1, pic.shape[1]) if tuple(pic[rows[0], x]) == low
              and tuple(pic[rows[0], x - 1]) != low]
    assert len(starts) == 2, starts


def test_demo_heatmap_scene_is_a_picture_not_noise():
    from zoo.apps.fc_conv_check import demo_image, scene_image

    img = scene_image(224)
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    top, bottom = img[:40].reshape(-1, 3).mean(0), img[-40:].reshape(-1, 3).mean(0)
    assert top[2] > top[0] + 40, top  # blue sky above
    assert bottom[1] > bottom[0] + 40 and bottom[1] > bottom[2] + 40, bottom  # green field below
    # large smooth regions: neighbouring pixels mostly close (noise would not be)
    step = np.abs(np.diff(img.astype("int32"), axis=1)).max(-1)
    assert np.median(step) < 12
    assert demo_image(224).shape == (1, 224, 224, 3)


# ------------------------------------------------------------- the demo


def _demo_args(*argv):
    from zoo.cli.train import add_demo_arguments

    return add_demo_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def _fake_run(seen):
    def run(args, **kwargs):
        seen.append((vars(args).copy(), kwargs))
        return {"per_class": np.array([0.9, 0.7, 0.6, 0.5]), "miou_before": 0.1, "miou": 0.68,
                "class_names": ["background", "circle", "square", "triangle"], "overlay": "o.png",
                "seconds": 9.0, "timings": {"train": 5.0}}

    return run


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """Weights search folders with nothing in them (and the package folder
    checked to hold no file of the demo's model)."""
    from zoo import weights as zw

    monkeypatch.setenv("KERAS_ZOO_WEIGHTS", str(tmp_path / "zoo_weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    os.makedirs(tmp_path / "zoo_weights")
    model = finetune.demo_model()
    for tag in zw.available_tags(model):
        assert not os.path.isfile(os.path.join(zw.package_weights_dir(), zw.file_spec(model, tag)["file"]))
    return tmp_path / "zoo_weights"


def test_demo_starts_from_random_init_when_nothing_is_cached(empty_cache, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(finetune, "run", _fake_run(seen))
    assert finetune.cached_start(finetune.demo_model()) is None
    assert finetune.demo(_demo_args("--out", str(empty_cache.parent / "out"))) == 0
    args, kwargs = seen[-1]
    assert args["weights"] is None
    assert kwargs["weights_only"] and kwargs["before"] and not kwargs["checkpoint_every_epoch"]
    out = capsys.readouterr().out
    assert "from random init" in out, out


def test_demo_starts_from_a_cached_pretrained_file(empty_cache, monkeypatch, capsys):
    from zoo import weights as zw

    model = finetune.demo_model()
    tag = "imagenet" if "imagenet" in zw.available_tags(model) else zw.available_tags(model)[0]
    fake = empty_cache / zw.file_spec(model, tag)["file"]
    fake.write_bytes(b"not read by this test: run() is faked")
    seen = []
    monkeypatch.setattr(finetune, "run", _fake_run(seen))
    assert finetune.cached_start(model) == (tag, str(fake))
    assert finetune.demo(_demo_args("--out", str(empty_cache.parent / "out"))) == 0
    assert seen[-1][0]["weights"] == tag
    out = capsys.readouterr().out
    assert f"from {fake}" in out and "from random init" not in out, out


# The demo's own run (a tiny model: weights only, no shuffle warning, "from
# random init") is tests/test_train.py::test_demo_small_run_times_its_phases.


@pytest.mark.train
def test_demo_model_weights_file_is_under_100_mb(tmp_path):
    # what the demo writes for its real model, compiled as the demo compiles
    # it and with Adam's slots built (Keras's save_weights would store them:
    # 191 MB): the weights file is the bulk of the folder
    from zoo.training import train

    model = train.prepare(finetune.demo_model(), classes=4, optimizer="adam", learning_rate=1e-3)
    model.optimizer.build(model.trainable_variables)
    path = str(tmp_path / finetune.WEIGHTS)
    finetune.save_model_weights(model, path)
    assert os.path.getsize(path) < 100 * 10 ** 6 - 10 ** 6, os.path.getsize(path)  # 1 MB for the rest
    again = train.build_dense(finetune.demo_model(), classes=4)
    again.load_weights(path)
    np.testing.assert_array_equal(again.weights[0].numpy(), model.weights[0].numpy())


def test_folder_dataset_is_prepared_in_the_zoo_cache_not_as_a_download(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from zoo.training import data

    root = tmp_path / "pairs"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, "uint8")).save(root / "images" / f"{i}.png")
        Image.fromarray(np.full((8, 8), i, "uint8")).save(root / "masks" / f"{i}.png")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    src = data.load(f"folder:{root}", "train")
    assert src.num_classes == 2
    cache = tmp_path / "keras_home" / "zoo_datasets"
    assert data.folder_cache_dir() == str(cache) and any(cache.iterdir())
    out = capsys.readouterr().out
    assert "nothing is downloaded" in out and "Downloading" not in out, out
