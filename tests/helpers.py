"""Test utilities: random weights and checkpoints in the exact upstream formats."""

import h5py
import numpy as np


def randomize(model, seed=0, scale=1.0):
    """Gives every weight a fresh He-scaled normal value (BN variances positive).

    Random but well-conditioned weights make parity tests meaningful: zeros
    or the builders' own initialisers could hide a transposed kernel.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for w in layer.weights:
            shape = tuple(w.shape)
            name = w.path.rsplit("/", 1)[-1]
            if "moving_variance" in name:
                new.append(rng.uniform(0.5, 1.5, shape))
            elif "gamma" in name:
                new.append(rng.uniform(0.5, 1.5, shape))
            elif len(shape) <= 1:
                new.append(rng.normal(0, 0.1, shape))
            else:
                fan_in = np.prod(shape[:-1]) if len(shape) > 2 else shape[0]
                new.append(rng.normal(0, scale * np.sqrt(2.0 / fan_in), shape))
        if new:
            layer.set_weights([a.astype("float32") for a in new])
    return model


def save_legacy_h5(model, path):
    """Writes keras.applications' legacy ``.h5`` layout (layer_names, weight_names)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path
