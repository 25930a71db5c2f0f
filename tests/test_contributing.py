"""CONTRIBUTING's counts, proven: a new head is one file, and a new family is
one file (plus manifest entries and a parity test once it publishes
weights). Each file below is dropped into a folder that extends
``zoo.heads``/``zoo.models``, and nothing else is touched."""

import sys

import numpy as np
import pytest

import zoo
from zoo import heads, models, registry
from zoo.training import train

FAMILY_FILE = '''
"""A toy family: strided conv stages."""

import functools

from keras import layers

from zoo.assembler import Backbone, Classifier, Stages
from zoo.registry import register_model

TOY_CONFIGS = {"toy_net": (8, 16, 32)}


def toy_block(x, filters, name):
    x = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def toy_spec(config):
    def build(x, output_stride):
        stages = []
        for i, width in enumerate(TOY_CONFIGS[config]):
            x = toy_block(x, width, f"stage{i + 1}")
            stages.append((x, 2 ** (i + 1)))
        return Stages(tuple(stages))

    return Backbone(name=config, build=build, output_strides=(8,), classify_input=None,
                    classifier=Classifier("pool_fc", ("fc",), pool="avgpool"))


for _name in TOY_CONFIGS:
    register_model(_name, family="toy", spec=functools.partial(toy_spec, _name),
                   builder_name="ToyNet", summary="A toy family.", module=__name__)
'''

HEAD_FILE = '''
"""A toy head: a 1x1 score on the last level, resized to the input."""

from keras import layers

from zoo.heads import register_head
from zoo.layers import ResizeLike


def toy_head(pyramid, inputs, classes, ctx):
    x = layers.Conv2D(classes, 1, name="toy_score")(pyramid[ctx.last])
    return ResizeLike(name="toy_up")([x, inputs])


register_head("toy_head", toy_head, needs=("last",), layers=("toy_*",))
'''


@pytest.fixture
def plugin_dirs(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "heads").mkdir()
    (tmp_path / "models" / "toy.py").write_text(FAMILY_FILE)
    (tmp_path / "heads" / "toy_head.py").write_text(HEAD_FILE)
    monkeypatch.setattr(models, "__path__", list(models.__path__) + [str(tmp_path / "models")])
    monkeypatch.setattr(heads, "__path__", list(heads.__path__) + [str(tmp_path / "heads")])
    yield tmp_path
    registry.unregister_model("toy_net")
    heads._HEADS.pop("toy_head", None)
    for mod in ("zoo.models.toy", "zoo.heads.toy_head"):
        sys.modules.pop(mod, None)


def test_one_file_family_and_one_file_head(plugin_dirs):
    assert "toy" in registry.discover("zoo.models")
    assert "toy_head" in registry.discover("zoo.heads")
    # The family: registered, its builder generated, every mode built.
    assert "toy_net" in zoo.list_models()
    builder = registry.get_entry("toy_net").builder
    assert builder.__name__ == "ToyNet" and builder.__doc__.startswith("A toy family.")
    x = np.zeros((1, 35, 45, 3), "float32")
    assert zoo.create_model("toy_net", classes=4)(x).shape == (1, 4)
    assert zoo.create_model("toy_net", mode="heatmap", classes=4)(x).shape[-1] == 4
    assert set(zoo.create_model("toy_net", mode="features")(x)) == {"P1", "P2", "P3"}
    # Any head on the new family, and the new head on an existing family.
    for head in ("fcn", "deeplabv3", "toy_head"):
        model = zoo.create_model("toy_net", mode="dense", head=head, classes=4)
        assert model(x).shape == (1, 35, 45, 4) and model.zoo["head"] == head
    model = zoo.create_model("test_resnet", mode="dense", head="toy_head", classes=4)
    assert model(x).shape == (1, 35, 45, 4) and model.zoo["head_layers"] == ["toy_score"]
    # The head record drives fine-tuning with no other wiring.
    model = train.prepare("toy_net", head="toy_head", classes=4, freeze="backbone", total_steps=1)
    assert {v.path.split("/")[0] for v in model.trainable_weights} == {"toy_score"}
