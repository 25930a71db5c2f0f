"""Tiny test-only model configs, registered from conftest.py (as timm's
``test_*`` models and keras-hub's tiny ``init_kwargs`` are).

Each is a real family's spec with one block per stage and narrow widths, so
the registry-wide tables (every mode, every head, the ``.keras`` round trip,
every backend) run the families' code paths in seconds. Published models are
built at full depth elsewhere (``test_registry``'s slow table, the parity
tests).
"""

import functools

# name: (family module, builder, spec kwargs). The family's config table gets
# the name as a key (the spec reads its blocks there).
TINY = {
    "test_resnet": ("resnet", "TestResNet",
                    {"config": ("basic", (1, 1, 1, 1)), "widths": (8, 16, 24, 32)}),
    "test_resnet_bottleneck": ("resnet", "TestResNetBottleneck",
                               {"config": ("bottleneck", (1, 1, 1, 1)), "widths": (8, 8, 16, 16)}),
    "test_drn_a": ("drn", "TestDRN_A", {"config": ("A", "basic", (1, 1, 1, 1)),
                                        "channels": (8, 16, 24, 32)}),
    "test_drn_c": ("drn", "TestDRN_C", {"config": ("C", "basic", (1, 1, 1, 1, 1, 1, 1, 1)),
                                        "channels": (8, 8, 16, 16, 24, 24, 32, 32)}),
    "test_drn_d": ("drn", "TestDRN_D", {"config": ("D", "bottleneck", (1, 1, 1, 1, 1, 1, 1, 1)),
                                        "channels": (8, 8, 8, 8, 16, 16, 32, 32)}),
    "test_vgg": ("vgg", "TestVGG", {"config": (1, 1, 1, 1, 1), "widths": (8, 8, 16, 16, 16),
                                    "hidden": (16, 16)}),
}
TINY_NAMES = tuple(sorted(TINY))


def register_tiny_models():
    """Adds the :data:`TINY` configs to their family tables and the registry
    (idempotent)."""
    from zoo import registry
    from zoo.models import drn, resnet, vgg

    tables = {"resnet": resnet.RESNET_CONFIGS, "drn": drn.DRN_CONFIGS, "vgg": vgg.VGG_CONFIGS}
    specs = {"resnet": resnet.resnet_spec, "drn": drn.drn_spec, "vgg": vgg.vgg_spec}
    registry.list_models()  # the published families first
    for name, (family, builder, kwargs) in TINY.items():
        if name in registry._REGISTRY:
            continue
        kwargs = dict(kwargs)
        tables[family][name] = kwargs.pop("config")
        registry.register_model(
            name, family=family, builder_name=builder, module="tests.tiny_models",
            spec=functools.partial(specs[family], name, **kwargs),
            summary=f"Test-only tiny {family} config.")
