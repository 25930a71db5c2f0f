"""Runs registered models on the Keras backend of this process (test only).

Keras fixes its backend per process, so ``tests/test_backends.py`` starts
this script with ``KERAS_BACKEND`` set to each other backend. Usage::

    KERAS_BACKEND=jax python -m tests.backend_worker jobs.json

``jobs.json`` is a list of ``{"id", "name", "kwargs", "weights", "input",
"output"}``: build ``zoo.create_model(name, **kwargs)``, load the
``.weights.h5`` file saved by the reference backend, predict on the ``.npy``
input and write every output array to the ``.npz`` file. A case that raises
writes its error instead, so one failure does not hide the others.
"""

import json
import os
import sys
import traceback

import numpy as np


def as_arrays(y):
    """Flattens a model's prediction (array, list or dict) to named arrays.

    Args:
        y: what ``Model.predict`` returned.

    Returns:
        A dict of name to ``np.ndarray``.
    """
    if isinstance(y, dict):
        return {str(k): np.asarray(v) for k, v in y.items()}
    if isinstance(y, (list, tuple)):
        return {f"out{i}": np.asarray(v) for i, v in enumerate(y)}
    return {"out": np.asarray(y)}


def run(jobs):
    """Runs every job and writes its ``.npz`` (or ``.err`` text) file.

    Args:
        jobs: the decoded ``jobs.json`` list.
    """
    import zoo

    for job in jobs:
        try:
            model = zoo.create_model(job["name"], **job["kwargs"])
            model.load_weights(job["weights"])
            y = model.predict(np.load(job["input"]), verbose=0)
            np.savez(job["output"], **as_arrays(y))
        except Exception:  # noqa: BLE001 - reported to the test, case by case
            with open(job["output"] + ".err", "w") as f:
                f.write(traceback.format_exc())


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(sys.argv[1]) as f:
        run(json.load(f))
