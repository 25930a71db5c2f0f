"""Model tiers and input sizes, declared once for the whole suite.

Every test file reads its models and sizes from here instead of keeping its
own constants, so "what the default suite builds" is one decision.

Tiers:

- ``LIGHT``: the full-depth models the default suite may build and run:
  the shallowest member of each code path (ResNet basic blocks, DRN-A/C/D,
  the Inception branches). A test that is not about a particular model uses
  ``LIGHT_RESNET`` / ``LIGHT_DRN``.
- ``FAMILY``: one model per family and head, for tables that must cover
  every code path once (Predictor, cross-backend, export). The ones not in
  ``LIGHT`` run under the ``slow`` mark.
- Every other published model is heavy: it shares its code path with a
  ``LIGHT`` sibling (or a tiny config) and is built at full depth only in
  ``slow`` tests (``light_or_slow`` marks a table's cases so).

Sizes:

- ``PARITY_SIZE``: the default suite's parity input, small and non-square
  (every family's reference comparison runs at it).
- ``FULL_SIZE``: the issue's 256x320: full-size parity, ``slow`` only.
- ``CLASSIFY_SIZE``: the training crop, where classify/heatmap need it.
- ``MODE_SIZES``: one input per mode for tables over many models.
- ``min_side``: the smallest legal input per mode, read from the
  assembler's table (nothing is built to look it up).
"""

# ------------------------------------------------------------------ tiers

LIGHT_RESNET = "resnet18"
LIGHT_DRN = "drn_d_22"
LIGHT = ("resnet18", "drn_d_22", "drn_c_26", "drn_a_18", "googlenet")

# One model per family and head: (name, family).
FAMILY = {
    "vgg16": "vgg", "fcn8s": "fcn", "resnet18": "resnet", "resnet50": "resnet (bottleneck)",
    "drn_a_18": "drn-a", "drn_c_26": "drn-c", "drn_d_22": "drn-d", "googlenet": "inception",
    "inception_v3": "inception", "deeplabv3_resnet50": "deeplabv3",
}

# Test-only tiny configs (tests/tiny_models.py, registered from conftest):
# the VGG loaders' name tables and FC reshapes without the 500 MB
# fully-connected head; a DRN-D for the training commands' end-to-end runs,
# whose subject is the command (files, resume, phases), not the network.
TINY_VGG = "test_vgg"
TINY_DRN = "test_drn_d"



def light_or_slow(name, *values, **kwargs):
    """``pytest.param(name, *values)``, marked ``slow`` unless ``name`` is LIGHT."""
    import pytest

    marks = () if name in LIGHT else (pytest.mark.slow,)
    return pytest.param(name, *values, marks=marks, **kwargs)

# ------------------------------------------------------------------ sizes

PARITY_SIZE = (64, 96)
FULL_SIZE = (256, 320)
CLASSIFY_SIZE = (224, 224)
# One input per mode for tables over many models (the cross-backend table):
# odd sides where any size goes, a full training crop (and one more column
# of cells) for heatmaps.
MODE_SIZES = {"classify": (80, 96), "heatmap": (224, 240), "dense": (77, 101), "features": (80, 112)}


def min_side(name, mode, output_stride=None):
    """The smallest input side ``mode`` of ``name`` accepts (nothing built)."""
    from zoo.assembler import min_input_table

    return min_input_table(name, output_stride)[mode]


# ------------------------------------------------------------------ heads

def head_cases(backbones):
    """``(backbone, head, output_stride)`` for every head that runs on each
    backbone: the stride is the head's own requirement (``HeadSpec.
    output_stride``, None = the backbone's default), and a head whose stride
    the backbone cannot reach is left out (nothing is built)."""
    from zoo.assembler import backbone_spec
    from zoo.heads import get_head, list_heads

    for backbone in backbones:
        strides = backbone_spec(backbone).output_strides
        for head in list_heads():
            stride = get_head(head).output_stride
            if stride is None or stride in strides:
                yield backbone, head, stride
