"""``.safetensors`` checkpoints: detection by content, bounded reads, timm /
torchvision ResNet state_dicts against a PyTorch forward, and ``hf://``."""

import json
import struct
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import zoo
from tests.cases import PARITY_SIZE
from tests.support import resnet_torch_ref as tref
from tests.support.helpers import assert_close, assert_untouched, images, snapshot, torch_forward
from zoo import weights as zw
from zoo.weights.readers import safetensors as st_io
from zoo.weights.readers.errors import CheckpointError

H, W = PARITY_SIZE


def _close(a, b):
    assert float(np.abs(np.asarray(b)).max()) > 1e-2  # a meaningful comparison
    assert_close(a, b, rtol=1e-4, atol=0.0, what="ResNet from .safetensors vs torch")


def _state_file(tmp_path, net, name="model.safetensors"):
    # timm's hub files carry BN's num_batches_tracked too; keep them.
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / name
    save_file(state, str(path), metadata={"format": "pt"})
    return str(path)


def _x(seed=0):
    return images(2, H, W, seed)


@pytest.mark.parametrize("config,builder", [
    ("resnet18", zoo.ResNet18),
    pytest.param("resnet50", zoo.ResNet50, marks=pytest.mark.slow),
])
def test_torchvision_state_dict_matches_torch_forward(tmp_path, config, builder):
    net = tref.randomize(tref.build(config), seed=3)
    # A suffix that says nothing: the reader goes by content.
    path = _state_file(tmp_path, net, name="weights.bin")
    kwargs = {} if config == "resnet18" else {"stride_in_1x1": False}
    model = builder(weights=path, input_shape=(H, W, 3), classifier_activation=None, **kwargs)
    x = _x()
    _close(model(x, training=False), torch_forward(net, x))


def test_keras_layout_refuses_torchvision_safetensors(tmp_path):
    path = _state_file(tmp_path, tref.build("resnet50"))  # the layout matters, not the values
    # ResNet50 defaults to the keras layout (stride_in_1x1=True).
    with pytest.raises(CheckpointError, match="torchvision-layout.*stride_in_1x1=False"):
        zoo.ResNet50(weights=path, input_shape=(H, W, 3))


def test_bfloat16_tensors_are_widened_exactly(tmp_path):
    value = torch.tensor([[1.5, -2.0], [0.0078125, 3.0]], dtype=torch.bfloat16)
    path = tmp_path / "bf.safetensors"
    save_file({"a": value, "b": torch.arange(3, dtype=torch.int64)}, str(path))
    out = st_io.read_safetensors(str(path))
    assert out["a"].dtype == np.float32
    np.testing.assert_array_equal(out["a"], value.float().numpy())
    np.testing.assert_array_equal(out["b"], [0, 1, 2])


def _raw(tmp_path, header, data=b"", name="bad.safetensors", length=None):
    text = json.dumps(header).encode()
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return str(path)


def test_header_longer_than_file_is_refused_before_reading(tmp_path):
    path = _raw(tmp_path, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                b"\0" * 4, length=1 << 40)
    # Not even detected as safetensors: the claimed header cannot fit.
    assert not st_io.is_safetensors(path)
    with pytest.raises(CheckpointError, match="bad.safetensors.*header claims"):
        st_io.read_safetensors(path)


def test_offsets_past_the_end_are_refused(tmp_path):
    # A truncated file: the header promises 1 GB of data.
    path = _raw(tmp_path, {"w": {"dtype": "F32", "shape": [1 << 28], "data_offsets": [0, 1 << 30]}},
                b"\0" * 16)
    assert st_io.is_safetensors(path)
    with pytest.raises(CheckpointError, match=r"bad.safetensors: tensor 'w' lies at bytes"):
        zw.read_checkpoint(path)


def test_offsets_disagreeing_with_shape_are_refused(tmp_path):
    path = _raw(tmp_path, {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="needs 12 bytes but its offsets span 8"):
        zw.read_checkpoint(path)


def test_truncated_real_file_loads_nothing(tmp_path):
    net = tref.randomize(tref.build("resnet18"), seed=5)
    path = _state_file(tmp_path, net)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    model = zoo.ResNet18(input_shape=(H, W, 3))
    before = snapshot(model)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        zw.load_weights(model, path, "resnet18")
    assert_untouched(model, before)


def test_wrong_architecture_safetensors_names_the_layer(tmp_path):
    path = _state_file(tmp_path, tref.build("resnet34"))
    model = zoo.ResNet18(input_shape=(H, W, 3))
    with pytest.raises(CheckpointError, match="layer1_2"):
        zw.load_weights(model, path, "resnet18")


def test_timm_tag_loads_from_a_local_file_with_an_unverified_warning(tmp_path, monkeypatch):
    net = tref.randomize(tref.build("resnet18"), seed=8)
    spec = zw.file_spec("resnet18", "a1_in1k", "torch")
    _state_file(tmp_path, net, name=spec["file"])
    monkeypatch.setenv(zw.ENV_DIR, str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.warns(UserWarning, match="resnet18.a1_in1k.safetensors.*not verified"):
        model = zoo.ResNet18(weights="a1_in1k", input_shape=(H, W, 3), classifier_activation=None)
    x = _x(2)
    _close(model(x, training=False), torch_forward(net, x))


def test_timm_tag_needs_the_torchvision_layout():
    with pytest.raises(ValueError, match="stride_in_1x1=False"):
        zoo.ResNet50(weights="a1_in1k", input_shape=(H, W, 3))


# ------------------------------------------------------------------ hf://


def test_hf_uri_parsing():
    assert zw.parse_hf("hf://timm/resnet50.a1_in1k") == ("timm/resnet50.a1_in1k", "model.safetensors")
    assert zw.parse_hf("hf://o/r/sub/w.safetensors") == ("o/r", "sub/w.safetensors")
    with pytest.raises(ValueError, match="hf://owner/repo"):
        zw.parse_hf("hf://timm")


def test_hf_without_huggingface_hub_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(FileNotFoundError) as e:
        zoo.ResNet18(weights="hf://timm/resnet18.a1_in1k", input_shape=(H, W, 3))
    msg = str(e.value)
    assert "pip install 'keras-zoo[hf]'" in msg and "huggingface_hub" in msg
    assert "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors" in msg


def test_hf_offline_error_says_where_to_get_the_file(monkeypatch):
    def offline(repo_id, filename):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=offline))
    with pytest.raises(FileNotFoundError) as e:
        zoo.ResNet18(weights="hf://timm/resnet18.a1_in1k/other.safetensors", input_shape=(H, W, 3))
    msg = str(e.value)
    assert "couldn't connect" in msg and "HF_HUB_OFFLINE" in msg
    assert "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/other.safetensors" in msg


def test_hf_uri_loads_through_huggingface_hub(tmp_path, monkeypatch):
    net = tref.randomize(tref.build("resnet18"), seed=7)
    path = _state_file(tmp_path, net)
    calls = []

    def download(repo_id, filename):
        calls.append((repo_id, filename))
        return path

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=download))
    model = zoo.ResNet18(weights="hf://timm/resnet18.a1_in1k", input_shape=(H, W, 3),
                         classifier_activation=None)
    assert calls and set(calls) == {("timm/resnet18.a1_in1k", "model.safetensors")}
    x = _x(1)
    _close(model(x, training=False), torch_forward(net, x))
