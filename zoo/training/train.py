"""Fine-tuning parts for dense (segmentation) models.

* :class:`SegmentationLoss`: sparse cross-entropy from logits, averaged over
  the pixels whose label is not the ignore label (255).
* :class:`SegmentationMeanIoU`: Keras's ``MeanIoU`` on logits with the
  ignore label excluded, plus per-class IoU.
* :func:`poly_schedule`: the poly learning-rate schedule (power 0.9).
* :func:`freeze_batchnorm`: BatchNorm layers in inference mode during
  ``fit`` (moving statistics unchanged).
* :func:`freeze_layers`: ``freeze="backbone"`` trains only the layers the
  dense head adds.
* Mixed precision (``mixed_float16`` on GPU, ``mixed_bfloat16`` on CPU)
  with float32 logits and loss.
* :data:`RECIPES`: the default compile recipe per family, and
  :func:`prepare`, which builds any registered dense model and compiles it.

Keras's ``trainable`` semantics: for a ``BatchNormalization`` layer,
``trainable=False`` makes it run in inference mode (moving mean and variance
are used and never updated) *and* freezes gamma/beta. The flag must be set
before ``compile()``; and ``model.trainable = True`` later sets every
sublayer trainable again, BatchNorm included, so call
:func:`freeze_batchnorm` again (and recompile) after such a change.
"""

import fnmatch

import keras
from keras import ops

from zoo import registry
from zoo.assembler import ZooModel, head_record

IGNORE_LABEL = 255

# Default fine-tuning recipe per family: SGD + momentum with the poly
# schedule, as the upstream segmentation code trains them (FCN's "at-once"
# normalised-loss learning rate; DRN's segment.py; torchvision's
# segmentation reference). Families not listed use DEFAULT_RECIPE.
RECIPES = {
    "fcn": {"optimizer": "sgd", "learning_rate": 1e-4, "momentum": 0.99, "weight_decay": 5e-4},
    "vgg": {"optimizer": "sgd", "learning_rate": 1e-3, "momentum": 0.9, "weight_decay": 5e-4},
    "resnet": {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
    "drn": {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
    "inception": {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 4e-5},
}
DEFAULT_RECIPE = {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
POLY_POWER = 0.9


# ------------------------------------------------------- loss, metric


@keras.saving.register_keras_serializable(package="zoo")
class SegmentationLoss(keras.losses.Loss):
    """Sparse softmax cross-entropy from logits that skips an ignore label.

    The loss is the mean over the batch's non-ignored pixels (0 when every
    pixel is ignored), computed in float32 whatever the logits' dtype.

    Args:
        ignore_label: label value excluded from the loss (255).
        name: loss name.
    """

    def __init__(self, ignore_label=IGNORE_LABEL, name="segmentation_loss", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.ignore_label = int(ignore_label)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(logits.shape):
            labels = ops.squeeze(labels, -1)
        valid = ops.not_equal(labels, self.ignore_label)
        ce = ops.sparse_categorical_crossentropy(ops.where(valid, labels, 0), logits, from_logits=True)
        validf = ops.cast(valid, "float32")
        # Per-pixel values whose mean (Keras's "sum_over_batch_size", which
        # also divides by the replica count under tf.distribute) is the mean
        # over the valid pixels.
        total = ops.cast(ops.size(validf), "float32")
        return ce * validf * (total / ops.maximum(ops.sum(validf), 1.0))

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("reduction", None)
        return {**cfg, "ignore_label": self.ignore_label}


@keras.saving.register_keras_serializable(package="zoo")
class SegmentationMeanIoU(keras.metrics.MeanIoU):
    """Mean IoU of argmax(logits) over ``num_classes``, skipping the ignore label.

    Keras's ``MeanIoU`` (a confusion matrix accumulated over batches; classes
    absent from both prediction and truth do not count in the mean) with
    segmentation defaults.

    Labels outside ``[0, num_classes)`` that are not the ignore label are
    never dropped silently: they are counted (``out_of_range``), ``result()``
    turns NaN as soon as one is seen, and :meth:`per_class` raises, naming
    how many pixels and the class range. (Keras's MeanIoU alone leaves them
    out of the confusion matrix without a word.)
    """

    def __init__(self, num_classes, name="miou", ignore_class=IGNORE_LABEL, sparse_y_pred=False, **kwargs):
        super().__init__(num_classes=num_classes, name=name, ignore_class=ignore_class,
                         sparse_y_pred=sparse_y_pred, **kwargs)
        self.out_of_range = self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                              name="out_of_range")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        if not self.sparse_y_pred and len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, -1)
        bad = ops.logical_or(y_true < 0, y_true >= self.num_classes)
        if self.ignore_class is not None:
            bad = ops.logical_and(bad, ops.not_equal(y_true, self.ignore_class))
        self.out_of_range.assign_add(ops.sum(ops.cast(bad, "float32")))
        return super().update_state(y_true, y_pred, sample_weight)

    def result(self):
        miou = super().result()
        return ops.where(self.out_of_range > 0, ops.cast(float("nan"), miou.dtype), miou)

    def reset_state(self):
        super().reset_state()
        self.out_of_range.assign(0.0)

    def check_labels(self):
        """Raises ValueError if any label outside ``[0, num_classes)`` (not
        the ignore label) was seen."""
        bad = int(ops.convert_to_numpy(self.out_of_range))
        if bad:
            raise ValueError(
                f"{bad} labelled pixels have class ids outside 0..{self.num_classes - 1} "
                f"(and are not the ignore label {self.ignore_class}); the data does not match "
                f"the model's {self.num_classes} classes")

    def per_class(self):
        """IoU of every class as a numpy array (NaN for a class never seen).

        Raises:
            ValueError: labels outside ``[0, num_classes)`` were seen.
        """
        import numpy as np

        self.check_labels()
        cm = np.asarray(ops.convert_to_numpy(self.total_cm), "float64")
        inter = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / union, np.nan)

    def labelled_pixels(self):
        """How many pixels counted (not the ignore label)."""
        return float(ops.convert_to_numpy(ops.sum(self.total_cm)))


def poly_schedule(learning_rate, total_steps, power=POLY_POWER, end_learning_rate=0.0):
    """``lr * (1 - step / total_steps) ** power``: Keras's ``PolynomialDecay``."""
    return keras.optimizers.schedules.PolynomialDecay(
        learning_rate, decay_steps=max(int(total_steps), 1), end_learning_rate=end_learning_rate,
        power=power,
    )


# ----------------------------------------------------------- freezing


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers") and isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def freeze_batchnorm(model):
    """Puts every BatchNormalization layer in inference mode for training.

    Sets ``trainable=False`` on them (by type, so any family is covered):
    in Keras 3 such a layer normalises with its moving statistics and never
    updates them, even under ``fit`` / ``training=True``; gamma and beta are
    frozen too. Call before ``compile()``.

    Returns:
        The number of layers frozen.
    """
    n = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            n += 1
    return n


def head_layer_names(model, model_name=None):
    """The weighted layers the built head owns, from the model's head record.

    Args:
        model: a model the zoo built (``model.zoo``, which survives ``.keras``
            saving): in dense mode its head, in classify/heatmap mode its
            classifier.
        model_name: unused; kept for callers that pass it.

    Returns:
        A set of layer names of ``model``.

    Raises:
        ValueError: the model has no head record.
    """
    del model_name
    record = head_record(model)
    if record is None:
        raise ValueError(f"model {model.name!r} has no zoo head record (model.zoo); "
                         "build it with zoo.create_model or a zoo builder")
    return set(record["head_layers"])


def freeze_layers(model, freeze, model_name=None):
    """Layer-wise freezing.

    Args:
        model: a dense model.
        freeze: None (train all), ``"backbone"`` (train only the dense
            head's layers, :func:`head_layer_names`), or a list of
            shell-style layer-name patterns to freeze.
        model_name: unused (the head comes from the model's record).

    Returns:
        The names of the frozen layers that hold weights.
    """
    if freeze is None:
        return []
    if freeze == "backbone":
        head = head_layer_names(model)
        if not any(layer.weights for layer in model.layers if layer.name in head):
            raise ValueError(f"{model.name}: found no head layers to keep trainable")
        chosen = [layer for layer in model.layers if layer.name not in head]
    elif isinstance(freeze, str):
        raise ValueError(f"unknown freeze {freeze!r}; valid choices: None, 'backbone', or a list of patterns")
    else:
        chosen = [layer for layer in model.layers
                  if any(fnmatch.fnmatchcase(layer.name, p) for p in freeze)]
    for layer in chosen:
        layer.trainable = False
    return [layer.name for layer in chosen if layer.weights]


# ---------------------------------------------------- mixed precision


def default_mixed_policy():
    """``mixed_float16`` where a GPU is visible, else ``mixed_bfloat16``."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def resolve_precision(precision):
    """``None``/``"float32"`` -> ``"float32"``; ``"mixed"`` -> the device's mixed policy."""
    if precision in (None, "float32"):
        return "float32"
    if precision == "mixed":
        return default_mixed_policy()
    if precision in ("mixed_float16", "mixed_bfloat16", "bfloat16", "float16"):
        return precision
    raise ValueError(
        f"unknown precision {precision!r}; valid choices: float32, mixed, mixed_float16, mixed_bfloat16"
    )


def build_dense(model_name, precision="float32", **builder_kwargs):
    """Builds a registered model in dense mode under a dtype policy.

    Under a mixed policy the model gets a final float32 ``Activation``
    (``logits_float32``) so the logits, the loss and the metric are float32
    whatever the family's last layer computes in.

    Returns:
        A flat functional ``keras.Model``.
    """
    policy = resolve_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = registry.create_model(model_name, mode="dense", **builder_kwargs)
        if policy != "float32":
            out = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(model.outputs[0])
            model = ZooModel(model.inputs, out, name=model.name, zoo=model.zoo)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


# --------------------------------------------------------------- prepare


def recipe_for(model_name, **overrides):
    """The family's default compile recipe with ``overrides`` (None values ignored)."""
    family = registry.get_entry(model_name).family
    recipe = dict(RECIPES.get(family, DEFAULT_RECIPE))
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    return recipe


def make_optimizer(recipe, total_steps):
    """An optimizer from a recipe, with the poly schedule over ``total_steps``."""
    lr = poly_schedule(recipe["learning_rate"], total_steps, recipe.get("power", POLY_POWER))
    kind = recipe["optimizer"]
    wd = recipe.get("weight_decay") or None
    if kind == "sgd":
        return keras.optimizers.SGD(lr, momentum=recipe.get("momentum", 0.9), weight_decay=wd)
    if kind == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    if kind == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=wd or 1e-4)
    raise ValueError(f"unknown optimizer {kind!r}; valid choices: sgd, adam, adamw")


def compile_model(model, num_classes, recipe, total_steps, ignore_label=IGNORE_LABEL, jit_compile=False,
                  steps_per_execution=1):
    """Compiles with :class:`SegmentationLoss`, :class:`SegmentationMeanIoU`
    and the recipe's optimizer. Loss scaling is automatic for ``mixed_float16``."""
    model.compile(
        optimizer=make_optimizer(recipe, total_steps),
        loss=SegmentationLoss(ignore_label),
        metrics=[SegmentationMeanIoU(num_classes, ignore_class=ignore_label)],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def prepare(model_name, weights=None, classes=21, input_shape=None, freeze_bn=True, freeze=None,
            precision="float32", total_steps=1000, optimizer=None, learning_rate=None,
            ignore_label=IGNORE_LABEL, strategy=None, jit_compile=False, **builder_kwargs):
    """Builds a registered dense model and compiles it for fine-tuning.

    Args:
        model_name: any registry name with a ``"dense"`` mode.
        weights: None, a published tag or a file path (the classifier is
            dropped with a warning when ``classes`` differs).
        classes: output classes.
        input_shape: default ``(None, None, 3)``.
        freeze_bn: keep BatchNorm layers in inference mode (:func:`freeze_batchnorm`).
        freeze: None, ``"backbone"`` or name patterns (:func:`freeze_layers`).
        precision: ``"float32"``, ``"mixed"`` (float16 on GPU, bfloat16 on
            CPU), ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        total_steps: length of the poly schedule (epochs * steps per epoch).
        optimizer, learning_rate: override the family recipe (:data:`RECIPES`).
        ignore_label: label excluded from loss and metric.
        strategy: a ``tf.distribute`` strategy to build and compile under.
        jit_compile: XLA-compile the train step.
        **builder_kwargs: further builder arguments (e.g. ``output_stride``).

    Returns:
        The compiled ``keras.Model``.
    """
    entry = registry.get_entry(model_name)
    if "dense" not in entry.modes:
        dense = [n for n in registry.list_models() if "dense" in registry.get_entry(n).modes]
        raise ValueError(f"{model_name} has no dense mode; dense models: {', '.join(dense)}")
    scope = strategy.scope() if strategy is not None else _null_scope()
    with scope:
        model = build_dense(model_name, precision, weights=weights, classes=classes,
                            input_shape=input_shape, **builder_kwargs)
        if freeze_bn:
            freeze_batchnorm(model)
        freeze_layers(model, freeze, model_name)
        recipe = recipe_for(model_name, optimizer=optimizer, learning_rate=learning_rate)
        compile_model(model, classes, recipe, total_steps, ignore_label, jit_compile)
    return model


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def dense_models():
    """Registry names that have a dense mode."""
    return [n for n in registry.list_models() if "dense" in registry.get_entry(n).modes]


def set_schedule_steps(model, total_steps):
    """Updates the poly schedule's length of a compiled (or reloaded) model,
    e.g. when a resumed run asks for more epochs."""
    sched = getattr(model.optimizer, "_learning_rate", None)
    if isinstance(sched, keras.optimizers.schedules.PolynomialDecay):
        sched.decay_steps = max(int(total_steps), 1)
