"""segmentation_models_pytorch (SMP) models in Keras: :func:`from_smp`.

``zoo.from_smp("Unet", "resnet34", classes=5, weights="unet.pth")`` builds the
Keras model equal to ``smp.Unet("resnet34", encoder_weights=None, classes=5)``
and loads that model's ``state_dict()`` (``.pth`` or ``.safetensors``) by a
name table, all or nothing:

* encoder: SMP's ResNet encoders are torchvision ResNets (the zoo's
  ``stride_in_1x1=False`` layout, ``encoder.layer1.0.conv1`` ->
  ``layer1_0_conv1``), dilated as SMP's ``make_dilated`` does
  (``dilation_plan="smp"``); its VGG encoders are torchvision VGG features
  (``encoder.features.0`` -> ``block1_conv1``) read before each pool
  (``pyramid="pre_pool"``);
* decoder: the heads in :mod:`zoo.heads` carry SMP's module paths
  (``decoder.blocks.0.conv1.0`` -> ``decoder_blocks_0_conv1_0``,
  ``segmentation_head.0`` -> ``segmentation_head_0``).

SMP needs H and W divisible by ``2**encoder_depth``; the built model
zero-pads its input bottom/right to that multiple (``pad_to_multiple``) and
crops the logits back, so it runs at any size and equals SMP on the padded
input (no padding at all on divisible sizes).

The model is an ordinary zoo model: ``from_smp`` only chooses the registry
builder's arguments, which :func:`smp_builder_kwargs` returns, so ``zoo
export``/``zoo predict --model resnet34 --mode dense --model-kwargs ...`` build
it again from a converted ``.weights.h5``.
"""

import fnmatch

# SMP class name -> (zoo head, SMP's default encoder_depth, default output stride)
ARCHS = {
    "Unet": ("unet", 5, 32),
    "UnetPlusPlus": ("unetplusplus", 5, 32),
    "FPN": ("fpn", 5, 32),
    "PSPNet": ("pspnet", 3, 32),
    "DeepLabV3Plus": ("deeplabv3plus", 5, 16),
    "Linknet": ("linknet", 5, 32),
    "MAnet": ("manet", 5, 32),
    "UPerNet": ("upernet", 5, 32),
}
ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19")
# Deprecated SMP spellings -> the current argument.
RENAMED = {"decoder_use_batchnorm": "decoder_use_norm", "psp_use_batchnorm": "decoder_use_norm"}
# SMP arguments that do not change the architecture.
IGNORED = ("encoder_weights",)


def _arch(arch):
    for name in ARCHS:
        if name.lower() == str(arch).lower():
            return name
    raise ValueError(f"unknown SMP architecture {arch!r}; from_smp builds {', '.join(ARCHS)}")


def smp_builder_kwargs(arch, encoder_name, classes=1, **smp_kwargs):
    """The zoo registry name and builder arguments of an SMP model.

    Args:
        arch: SMP's class name (``"Unet"``, ``"FPN"``, ``"DeepLabV3Plus"``, ...;
            case-insensitive).
        encoder_name: ``resnet18/34/50/101/152`` or ``vgg16/19``.
        classes: SMP's ``classes``.
        **smp_kwargs: SMP's constructor arguments (``encoder_depth``,
            ``decoder_channels``, ``decoder_attention_type``, ``upsampling``,
            ``encoder_output_stride``, ``in_channels``, ...).

    Returns:
        ``(registry_name, kwargs)`` for :func:`zoo.create_model`.
    """
    arch = _arch(arch)
    head, depth, default_os = ARCHS[arch]
    if encoder_name not in ENCODERS:
        raise ValueError(f"from_smp: encoder {encoder_name!r} is not built; encoders: {', '.join(ENCODERS)}")
    opts = {}
    for key, value in smp_kwargs.items():
        if key in IGNORED:
            continue
        opts[RENAMED.get(key, key)] = value
    if opts.pop("activation", None) is not None:
        raise ValueError("from_smp builds logits (activation=None); apply the activation to the output")
    if opts.pop("aux_params", None) is not None:
        raise ValueError("from_smp: aux_params (SMP's classification head) is not built")
    in_channels = opts.pop("in_channels", 3)
    depth = opts.setdefault("encoder_depth", depth)
    output_stride = opts.pop("encoder_output_stride", default_os)
    if head != "deeplabv3plus":
        output_stride = 32
    kwargs = {"mode": "dense", "head": head, "classes": int(classes), "in_channels": in_channels,
              "pad_to_multiple": 2 ** depth, "head_options": opts}
    if encoder_name.startswith("resnet"):
        kwargs.update(output_stride=output_stride, dilation_plan="smp")
        if encoder_name not in ("resnet18", "resnet34"):  # 18/34: torchvision's layout only
            kwargs["stride_in_1x1"] = False
    else:
        if output_stride != 32:
            raise ValueError(f"SMP's VGG encoders cannot be dilated: {arch} needs "
                             f"encoder_output_stride={output_stride}")
        kwargs.update(pyramid="pre_pool")
        if head == "unet":  # SMP adds a center block on VGG (UnetPlusPlus never runs its own)
            opts["decoder_add_center_block"] = True
    return encoder_name, kwargs


def smp_cli_args(arch, encoder_name, classes=1, **smp_kwargs):
    """The ``zoo export``/``zoo predict`` arguments that build the same model
    from the registry: ``--model NAME --mode dense --model-kwargs ...``."""
    name, kwargs = smp_builder_kwargs(arch, encoder_name, classes, **smp_kwargs)
    items = [f"{k}={v}" if isinstance(v, str) else f"{k}={v!r}"
             for k, v in kwargs.items() if k not in ("mode", "classes")]
    return (f"--model {name} --mode dense --classes {kwargs['classes']} --model-kwargs "
            + " ".join(f'"{item}"' for item in items))


def smp_torch_name(encoder_name):
    """The name rule from an SMP ``state_dict`` module path to a layer name.

    Args:
        encoder_name: the encoder (picks the encoder's table).

    Returns:
        ``fn(path) -> layer name``.
    """
    table = {}
    if encoder_name.startswith("vgg"):
        from zoo.models.vgg import torchvision_names

        table = {f"encoder.{k}": v for k, v in torchvision_names(encoder_name).items()}

    def name(path):
        if path in table:
            return table[path]
        if path.startswith("encoder."):
            path = path[len("encoder."):]
        return path.replace(".", "_")

    return name


def _check_names(model, path, rule):
    """Compares the file's modules with the model's weighted layers; raises
    naming the first mismatch either way (before anything is written)."""
    from zoo.weights import CheckpointError, read_checkpoint

    _, contents = read_checkpoint(path)
    modules = {}
    for key in contents:
        module, _, param = str(key).rpartition(".")
        if param != "num_batches_tracked" and rule(module) is not None:
            modules.setdefault(rule(module), module)
    have = [l.name for l in model.layers if l.weights]
    missing = [n for n in have if n not in modules]
    extra = [m for n, m in modules.items() if n not in set(have)]
    if missing or extra:
        what = (f"the file has no {missing[0]!r} (first missing of {len(missing)})" if missing
                else f"the model has no layer for the file's {extra[0]!r} (first of {len(extra)})")
        raise CheckpointError(
            f"{path} does not hold this SMP model's state_dict: {what}. Check arch, encoder_name "
            f"and the constructor arguments. No weights were changed.")


def from_smp(arch, encoder_name, classes=1, weights=None, **smp_kwargs):
    """The Keras model of ``smp.<arch>(encoder_name, encoder_weights=None, classes=classes, **smp_kwargs)``.

    Args:
        arch: SMP's class name (``"Unet"``, ``"UnetPlusPlus"``, ``"FPN"``,
            ``"PSPNet"``, ``"DeepLabV3Plus"``, ``"Linknet"``, ``"MAnet"``,
            ``"UPerNet"``; case-insensitive).
        encoder_name: ``resnet18/34/50/101/152`` or ``vgg16/19``.
        classes: output channels.
        weights: None (random initial weights) or the path of that model's
            ``state_dict()`` (``.pth``, ``.pt``, ``.safetensors``).
        **smp_kwargs: SMP's constructor arguments that shape the model.

    Returns:
        A zoo model (``mode="dense"``): NHWC float input, logits at the
        input's size.

    Raises:
        ValueError: an architecture, encoder or argument that is not built.
        zoo.weights.CheckpointError: a file that is not this model's
            state_dict, naming the first mismatched layer; nothing is loaded.
    """
    from zoo.registry import create_model
    from zoo.weights import load_weights
    from zoo.weights.convert import WeightMap

    name, kwargs = smp_builder_kwargs(arch, encoder_name, classes, **smp_kwargs)
    model = create_model(name, **kwargs)
    if weights is None:
        return model
    rule = smp_torch_name(encoder_name)
    # Weights SMP keeps but never runs: the skipless last Unet block's
    # attention, the deleted classifier of a VGG encoder.
    depth = kwargs["head_options"]["encoder_depth"]
    unused = ["encoder.classifier.*", "encoder.fc", "encoder.fc.*"]
    if kwargs["head"] == "unet":
        unused += [f"decoder.blocks.{depth - 1}.attention1.*"]
    if kwargs["head"] == "unetplusplus":
        unused += ["decoder.center.*", f"decoder.blocks.x_0_{depth - 1}.attention1.*"]
    # SMP keeps the encoder stages past encoder_depth (never run).
    if encoder_name.startswith("resnet"):
        unused += [f"encoder.layer{k}.*" for k in range(depth, 5)]
        unused += [f"encoder.layer{k}" for k in range(depth, 5)]
    else:
        from zoo.models.vgg import torchvision_names

        unused += [f"encoder.{path}" for path, layer in torchvision_names(encoder_name).items()
                   if layer.startswith("block") and int(layer[5]) - 1 > depth]

    def file_rule(path):
        return None if any(fnmatch.fnmatch(path, p) for p in unused) else rule(path)

    _check_names(model, weights, file_rule)
    return load_weights(model, weights, name, WeightMap(torch=file_rule))
