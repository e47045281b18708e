"""Orbax checkpoints of a training run: the state and the loop's position, verified on every restore.

`Checkpointer` (manager.py) saves and restores one run's steps as `CheckpointPolicy` (policy.py) says;
every restore checks the arrays against their `fingerprints` (fingerprints.py) and the target's structure
(structure.py); a step that does not is set aside or skipped with one warning line (quiet.py); files.py has one-call helpers; errors.py the errors they raise.
"""

from jaxdl.checkpoint.errors import CheckpointError, CheckpointMismatchError, CheckpointSaveError, CorruptCheckpointError
from jaxdl.checkpoint.files import latest_step, restore_checkpoint, restore_params, returned_step, save_checkpoint
from jaxdl.checkpoint.fingerprints import checksums, fingerprints
from jaxdl.checkpoint.manager import LOOP, STATE, Checkpointer
from jaxdl.checkpoint.policy import CheckpointPolicy
from jaxdl.checkpoint.structure import abstract_state, describe_mismatch

__all__ = [
    "LOOP", "STATE", "CheckpointError", "CheckpointMismatchError", "CheckpointPolicy", "CheckpointSaveError", "Checkpointer",
    "CorruptCheckpointError", "abstract_state", "checksums", "describe_mismatch", "fingerprints", "latest_step",
    "restore_checkpoint", "restore_params", "returned_step", "save_checkpoint",
]
