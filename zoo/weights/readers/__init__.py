"""Checkpoint readers, bounded in memory and time, none needing torch:
Keras ``.weights.h5``, keras.applications legacy ``.h5`` and ``.keras``
archives (:mod:`.h5`), PyTorch ``.pth`` in the zip and legacy formats and the
torch-0.3 pickle (:mod:`.pth`), and ``.safetensors`` (:mod:`.safetensors`).
Each returns ``{name: arrays}``; :mod:`zoo.weights` turns that into a load."""
