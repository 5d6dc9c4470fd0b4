"""Every exception type nas-cntk raises on purpose. The CLI prints any of them on one line and exits 2.

All derive from :class:`NasCntkError`: a problem with the user's input (a description, a space file,
data, settings, a store) or a result that cannot be trusted. Anything else reaching the CLI is a bug.

May import: nothing.
"""


class NasCntkError(Exception):
    """A problem with the user's input or a result that cannot be trusted; the message says which."""


class ArchitectureError(NasCntkError):
    """An architecture description that is malformed; the message names the offending field."""


class DataError(NasCntkError):
    """CIFAR-10 files that are missing, unreadable or corrupt; the message says what to do."""


class KernelError(NasCntkError):
    """A kernel that cannot be computed as asked (images of the wrong shape) or cannot be trusted
    (NaN or Inf entries, a training kernel singular at every ridge)."""


class SpaceError(NasCntkError):
    """A search-space file that is malformed; the message names the file and the key."""


class InvalidCandidate(NasCntkError):
    """A sampled combination of choices that describes no valid network (the trial is pruned)."""


class TrackingError(NasCntkError):
    """The MLflow tracking store cannot be reached or written."""


class TrainingDiverged(NasCntkError):
    """A finite network's training loss became NaN or infinite."""
