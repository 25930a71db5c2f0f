import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: heavy tests, run in CI's separate slow step")
    config.addinivalue_line("markers", "train: end-to-end fit() tests, run in CI's separate train step")
    config.addinivalue_line("markers", "backends: runs other Keras backends in subprocesses; CI's backends step")
    # Keras's tensor __array__ predates numpy 2's copy keyword: noise, not news.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation:DeprecationWarning")


import pytest  # noqa: E402

# The dearest tests start first, so that on the two pytest-xdist workers they
# do not finish the run alone: the docs pages (one group, about a minute) and
# `zoo demo heatmap` (a 500 MB VGG16 saved and reloaded).
DEAREST_FIRST = (
    "tests/test_docs.py::test_docs_python_blocks_run",
    "tests/test_cli.py::test_demo_heatmap_reports_and_writes_png",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        return next((i for i, prefix in enumerate(DEAREST_FIRST) if item.nodeid.startswith(prefix)),
                    len(DEAREST_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


def pytest_collection(session):
    # Test-only tiny configs (``test_*``) join the registry before the test
    # modules are imported, so the registry-wide tables parametrise over
    # them. In this hook rather than at import: under pytest-xdist the
    # controller collects nothing and so never imports Keras.
    from tests.tiny_models import register_tiny_models

    register_tiny_models()


@pytest.fixture(scope="session")
def vgg16_reference(tmp_path_factory):
    """keras.applications.VGG16 with random weights and its legacy ``.h5`` files.

    Returns:
        ``(model, top_path, notop_path)``; the files are in keras.applications'
        own published layout (layer_names / weight_names attributes).
    """
    import keras

    from tests.support.helpers import randomize, save_legacy_h5

    folder = tmp_path_factory.mktemp("vgg16")
    ref = randomize(keras.applications.VGG16(weights=None, classifier_activation=None), seed=1)
    top = save_legacy_h5(ref, str(folder / "vgg16_top.h5"))
    base = keras.applications.VGG16(weights=None, include_top=False)
    for layer in base.layers:
        if layer.weights:
            layer.set_weights(ref.get_layer(layer.name).get_weights())
    notop = save_legacy_h5(base, str(folder / "vgg16_notop.h5"))
    return ref, top, notop


@pytest.fixture(scope="session")
def vgg16_notop(tmp_path_factory):
    """A random keras.applications VGG16 without its top, as a legacy ``.h5``
    (the published notop layout): for tests that need a real Keras-layout
    file but not the 500 MB fully-connected head of ``vgg16_reference``.

    Returns:
        ``(model, path)``.
    """
    import keras

    from tests.support.helpers import randomize, save_legacy_h5

    base = randomize(keras.applications.VGG16(weights=None, include_top=False), seed=2)
    return base, save_legacy_h5(base, str(tmp_path_factory.mktemp("vgg16_notop") / "vgg16_notop.h5"))


@pytest.fixture(scope="session")
def tiny_vgg_top(tmp_path_factory):
    """The tiny test-only VGG (classify, logits) with random weights, as a
    keras.applications-layout legacy ``.h5`` with its top (block convs, fc1,
    fc2, predictions): the VGG loaders' Keras paths without VGG16's 500 MB.

    Returns:
        ``(model, path)``.
    """
    import zoo
    from tests.cases import TINY_VGG
    from tests.support.helpers import randomize, save_legacy_h5

    model = randomize(zoo.create_model(TINY_VGG, classifier_activation=None), seed=4)
    return model, save_legacy_h5(model, str(tmp_path_factory.mktemp("tiny_vgg") / "tiny_vgg_top.h5"))


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """A TFDS data folder with the synthetic ``zoo_shapes`` dataset prepared
    once per session (test_data, test_train and test_distributed read it)."""
    from zoo.training import data

    folder = str(tmp_path_factory.mktemp("tfds"))
    data.load("zoo_shapes", "train", folder)
    return folder
