"""Errors raised by the checkpoint readers."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, unsafe or does not fit the model."""
