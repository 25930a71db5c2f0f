"""Checkpoint readers: Keras ``.weights.h5``, keras.applications legacy ``.h5``
and PyTorch ``.pth`` (read without torch)."""
