"""keras-zoo: Keras 3 builders for Inception, fully-convolutional VGG/ResNet
and Dilated Residual Networks, with pretrained-weight loading and dense
outputs for segmentation."""

# Every module that registers Keras-serialisable classes is imported here, so
# that `import zoo` alone lets keras.saving.load_model read any file zoo
# writes (e.g. `zoo finetune`'s checkpoint.keras with its SegmentationLoss).
from zoo import heads, layers, preprocessing
from zoo.training import train  # noqa: F401
from zoo.analysis.info import model_info
from zoo.labels import class_names, decode_predictions
from zoo.apps.predictor import Predictor
from zoo.models.drn import (
    DRN_A_18, DRN_A_34, DRN_A_50, DRN_C_26, DRN_C_42, DRN_C_58, DRN_D_22,
    DRN_D_24, DRN_D_38, DRN_D_40, DRN_D_54, DRN_D_56, DRN_D_105, DRN_D_107,
)
from zoo.models.inception import GoogLeNet, InceptionV3
from zoo.models.resnet import (
    DeepLabV3_ResNet50, DeepLabV3_ResNet101, ResNet18, ResNet34, ResNet50, ResNet101, ResNet152,
)
from zoo.models.vgg import FCN8s, FCN16s, FCN32s, VGG16, VGG19
from zoo.registry import create_model, list_models
from zoo.weights import load_weights

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
    "list_models", "create_model", "model_info", "load_weights",
    "class_names", "decode_predictions", "Predictor",
    "VGG16", "VGG19", "FCN32s", "FCN16s", "FCN8s",
    "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152",
    "DeepLabV3_ResNet50", "DeepLabV3_ResNet101", "custom_objects",
    "GoogLeNet", "InceptionV3",
    "DRN_A_18", "DRN_A_34", "DRN_A_50", "DRN_C_26", "DRN_C_42", "DRN_C_58", "DRN_D_22",
    "DRN_D_24", "DRN_D_38", "DRN_D_40", "DRN_D_54", "DRN_D_56", "DRN_D_105", "DRN_D_107",
]
