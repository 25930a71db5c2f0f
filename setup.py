from setuptools import find_packages, setup

setup(
    name="keras-zoo",
    version="0.1.0",
    description="Keras 3 model zoo: Inception, fully-convolutional VGG/ResNet and "
    "Dilated Residual Networks with pretrained-weight loading and dense outputs.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["zoo", "zoo.*"]),
    package_data={"zoo.weights": ["manifest.json", "README.md"], "zoo.labels": ["*.txt"],
                  "zoo.cli": ["index.json"]},
    include_package_data=True,
    install_requires=[
        "tensorflow-cpu>=2.16; platform_machine!='arm64' and platform_machine!='aarch64'",
        "tensorflow>=2.16; platform_machine=='arm64' or platform_machine=='aarch64'",
        "keras>=3",
        "tensorflow-datasets",
        "h5py",
        "numpy",
        # Small, pure-data reader with no torch dependency: hub ResNets
        # (timm) are published only as model.safetensors.
        "safetensors",
        # Folder datasets read palette PNG masks by index (VOC style), which
        # tf.io decodes to RGB colours.
        "pillow",
    ],
    extras_require={
        # hf://owner/repo[/file] weights.
        "hf": ["huggingface_hub"],
        # converters for `zoo export` (SavedModel and LiteRT need only TensorFlow)
        "export": ["tf2onnx>=1.17", "onnx"],
        # pytest < 9: pytest 9 reads Node.nodeid from _id, so pytest-xdist
        # 3.8's --dist loadgroup (which renames _nodeid) no longer groups, and
        # every xdist_group's module fixtures and docs pages ran on both workers.
        "test": ["pytest>=8,<9", "pytest-xdist", "torch==2.13.0", "jax", "hypothesis", "onnxruntime", "ai-edge-litert",
                 "tf2onnx>=1.17", "onnx",
                 # the SMP parity reference; torchvision 0.28.0 pairs with torch 2.13.0 (CONTRIBUTING.md,
                 # "Running SMP in tests")
                 "segmentation-models-pytorch==0.6.0", "torchvision==0.28.0"],
    },
    # The console script's module is top-level so that it can defer
    # zoo/__init__.py (and Keras) for the commands that need neither; see it.
    py_modules=["zoo_launcher"],
    entry_points={"console_scripts": ["zoo=zoo_launcher:main"]},
)
