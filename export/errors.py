"""Errors of the export side that the command line reports as one line (the loaders' CheckpointError is in
export/checkpoints.py)."""


class ParityError(RuntimeError):
    """An exported graph (or a precision variant) disagrees with its reference beyond tolerance, or either gives
    NaN / infinity (names the graph and the output)."""


class NonFiniteWeightError(ValueError):
    """A weight of the model to export holds NaN or infinity (names the tensor)."""
