"""The one exception type of tpde."""


class TPDEError(ValueError):
    """Bad input to tpde: corrupted or truncated chunk, wrong dtype, missing predecessor...

    ``code`` is a short stable name of the failure ("truncated", "bad_magic",
    "unsupported_version", "checksum", "corrupt", "missing_reference",
    "reference_mismatch", "size_mismatch", "bad_dtype", "invalid_argument",
    "too_large", or a store-level code such as "unknown_step").
    """

    def __init__(self, message: str, code: str = "invalid_argument"):
        super().__init__(message)
        self.code = code

    def __reduce__(self):
        return (type(self), (str(self), self.code))


class StorageError(TPDEError, OSError):
    """The storage under a store failed: unreachable endpoint, missing bucket, permission
    denied, full disk. A `TPDEError` (code "storage") that is also an `OSError`; its
    message is one line naming the store's URL or path and the cause."""

    def __init__(self, message: str, code: str = "storage"):
        super().__init__(message, code)


class StoreIOError(StorageError):
    """A store write that failed (full disk, I/O error...) while saving a step: a
    `StorageError` (so a `TPDEError` and an `OSError`) whose one-line message names the
    step, and the tensor and chunk when a chunk write failed; ``errno`` is the original
    one. ``code`` is "io_error"."""

    def __init__(self, message: str, errno: int | None = None, code: str = "io_error"):
        TPDEError.__init__(self, message, code)
        self.errno = errno

    def __reduce__(self):
        return (type(self), (str(self), self.errno, self.code))

    def __str__(self) -> str:
        return self.args[0] if self.args else ""
