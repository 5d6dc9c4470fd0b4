"""The one exception type users see: the CLI prints its message on one line and exits with 2."""


class NasCntkError(Exception):
    """A problem with the user's input (description, data, settings) or a result that cannot be trusted."""


class ArchitectureError(NasCntkError):
    """An architecture description that is malformed; the message names the offending field."""


class DataError(NasCntkError):
    """CIFAR-10 files that are missing, unreadable or corrupt; the message says what to do."""


class KernelError(NasCntkError):
    """A kernel that cannot be trusted (NaN or Inf entries)."""
