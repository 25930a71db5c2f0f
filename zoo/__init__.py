"""keras-zoo: Keras 3 builders for Inception, fully-convolutional VGG/ResNet
and Dilated Residual Networks, with pretrained-weight loading and dense
outputs for segmentation."""

# Every module that registers Keras-serialisable classes is imported here, so
# that `import zoo` alone lets keras.saving.load_model read any file zoo
# writes (e.g. `zoo finetune`'s checkpoint.keras with its SegmentationLoss,
# and every model's ZooModel with its head record).
from zoo import assembler, heads, layers, preprocessing  # noqa: F401
from zoo import registry as _registry
from zoo.analysis.info import model_info
from zoo.assembler import clone_model
from zoo.apps.evaluate import evaluate
from zoo.apps.predictor import Predictor
from zoo.labels import class_names, decode_predictions
from zoo.registry import create_model, list_models
from zoo.smp import from_smp  # noqa: F401  (segmentation_models_pytorch checkpoints)
from zoo.training import train  # noqa: F401
from zoo.weights import load_weights

# The public builders (zoo.VGG16, zoo.DRN_D_22, ...) are generated from the
# registry's records.
_BUILDERS = _registry.builders()
globals().update(_BUILDERS)

__version__ = "0.1.0"


def custom_objects():
    """The serialisable classes ``import zoo`` registers with Keras.

    ``import zoo`` must come before ``keras.saving.load_model`` on a
    ``.keras`` file of a zoo model; passing this dict as ``custom_objects``
    is the explicit equivalent.

    Returns:
        ``{"zoo>ClassName": class}`` for every registered zoo class.
    """
    import keras

    return {k: v for k, v in keras.saving.get_custom_objects().items() if k.startswith("zoo>")}


__all__ = [
    "list_models", "create_model", "model_info", "load_weights", "clone_model",
    "class_names", "decode_predictions", "Predictor", "evaluate", "custom_objects",
    *sorted(_BUILDERS),
]
