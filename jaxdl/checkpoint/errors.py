"""The errors a checkpoint read or write raises: each names the directory and step."""

class CheckpointMismatchError(ValueError):
    """A checkpoint's parameter paths or shapes differ from the state it is restored into."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read back."""


class CheckpointSaveError(CheckpointError):
    """An (asynchronous) checkpoint save failed; the previous checkpoints are intact."""


class CorruptCheckpointError(CheckpointError):
    """No checkpoint under a directory could be read back and verified."""
