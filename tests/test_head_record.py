"""The model knows its head: ``train.prepare(name, head=H, freeze="backbone")``
trains exactly the head's layers, for every head on resnet18, vgg16 and
drn_d_22, and the loader, export and freeze all read the same record."""

import keras
import numpy as np
import pytest

import zoo
from tests.cases import head_cases
from tests.support.helpers import backbone_layers
from zoo.training import train

SIZE = 40  # every head's minimum on these backbones at their output strides


def _cases():
    for name, head, stride in head_cases(("resnet18", "vgg16", "drn_d_22")):
        yield pytest.param(name, head, stride, id=f"{name}-{head}")


# A train step per head and backbone: CI's train step runs these.
@pytest.mark.train
@pytest.mark.parametrize("name,head,stride", list(_cases()))
def test_prepare_freeze_backbone_trains_only_the_head(name, head, stride):
    kwargs = {"output_stride": stride} if stride else {}
    keras.utils.set_random_seed(0)
    model = train.prepare(name, head=head, classes=3, freeze="backbone", total_steps=2,
                          optimizer="sgd", learning_rate=0.1, freeze_bn=False, **kwargs)
    head_layers = set(model.zoo["head_layers"])
    assert model.zoo["head"] == head and head_layers
    # Independent of the record: the head is what the features model lacks.
    assert head_layers == {l.name for l in model.layers if l.weights} - backbone_layers(name, stride)
    trainable = {v.path.split("/")[0] for v in model.trainable_weights}
    assert trainable and trainable <= head_layers, sorted(trainable - head_layers)[:5]
    weighted = [l for l in model.layers if l.weights]
    before = {l.name: [w.numpy().copy() for w in l.weights] for l in weighted}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 3, size=(2, SIZE, SIZE)).astype("int32")
    # One eager step: which weights a step moves does not depend on tracing
    # it, and tracing 41 train steps cost five times the steps themselves
    # (test_train's fits run the compiled step).
    model.run_eagerly = True
    model.train_on_batch(x, y)
    for layer in weighted:
        changed = any(not np.array_equal(a, w.numpy())
                      for a, w in zip(before[layer.name], layer.weights))
        if layer.name not in head_layers:
            assert not changed, f"backbone layer {layer.name} changed"
    assert any(not np.array_equal(before[n][0], model.get_layer(n).weights[0].numpy())
               for n in head_layers if model.get_layer(n).trainable_weights), "no head layer trained"


def test_record_survives_keras_saving_and_freeze_reads_it(tmp_path):
    model = zoo.ResNet18(mode="dense", head="deeplabv3", classes=3)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.zoo == model.zoo and loaded.zoo["head"] == "deeplabv3"
    frozen = set(train.freeze_layers(loaded, "backbone"))
    assert frozen and not frozen & set(loaded.zoo["head_layers"])
    assert all(not loaded.get_layer(n).trainable for n in frozen)


def test_clone_model_keeps_the_record_and_keras_clone_does_not():
    model = zoo.create_model("test_resnet", mode="dense", head="fpn", classes=3)
    plain = keras.models.clone_model(model)
    assert not plain.zoo  # what zoo.clone_model is for
    with pytest.raises(ValueError, match="no zoo head record"):
        train.freeze_layers(plain, "backbone")
    twin = zoo.clone_model(model)
    assert twin.zoo == model.zoo and twin.zoo is not model.zoo
    frozen = set(train.freeze_layers(twin, "backbone"))
    assert frozen and not frozen & set(twin.zoo["head_layers"])

    def rename(layer):
        config = layer.get_config()
        config["name"] = "copy_" + config["name"]
        return layer.__class__.from_config(config)

    with pytest.raises(ValueError, match="has no layer .* of its head record"):
        zoo.clone_model(model, clone_function=rename)


def test_a_plain_keras_model_has_no_head_record():
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)])
    with pytest.raises(ValueError, match="no zoo head record"):
        train.freeze_layers(plain, "backbone")


def test_mixed_precision_keeps_the_record():
    model = train.build_dense("resnet18", precision="mixed_bfloat16", classes=3)
    assert model.zoo["head"] == "fcn" and "classifier_4" in model.zoo["head_layers"]


def test_export_writes_the_record_beside_the_artifact(tmp_path):
    import json

    from zoo.apps.export import export_model, record_path, with_preprocessing

    model = zoo.create_model("test_drn_d", mode="dense", classes=3)
    spec = {"type": "torch", "mean": [0.5] * 3, "std": [0.25] * 3}
    wrapped = with_preprocessing(model, spec)
    path = str(tmp_path / "sm")
    export_model(wrapped, path, "savedmodel")
    record = json.load(open(record_path(path, "savedmodel")))
    assert record["head"] == "drnseg" and record["head_layers"] == model.zoo["head_layers"]
    assert record["preprocessing"] == spec and record["format"] == "savedmodel"


def test_builders_pass_skip_mismatch_to_the_loader(tmp_path):
    from zoo.weights.readers.errors import CheckpointError

    src = zoo.create_model("test_resnet", classes=5)
    path = str(tmp_path / "five.weights.h5")
    src.save_weights(path)
    with pytest.raises(CheckpointError, match="class count differs.*skip_mismatch=True"):
        zoo.create_model("test_resnet", weights=path, classes=3)
    with pytest.warns(UserWarning, match="keep their initial values"):
        model = zoo.create_model("test_resnet", weights=path, classes=3, skip_mismatch=True)
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0],
                                  src.get_layer("conv1").get_weights()[0])
