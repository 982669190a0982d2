"""The metalab exception hierarchy.

Every error metalab raises derives from :class:`MetalabError` and from the
builtin exception a caller would naturally catch::

    MetalabError
    ├── ParamError (ValueError)            bad or unserializable parameters
    │   └── ParamSpaceError (ValueError)   a malformed parameter source
    ├── OperationSignatureError (TypeError) operation asks for unknown arguments
    ├── ContextError (TypeError)           context cannot be frozen or fingerprinted
    │   └── FrozenContextError (TypeError, AttributeError) a frozen context was mutated
    ├── ExperimentError (ValueError)       an invalid experiment definition
    ├── CaptureError (ValueError)          unsafe names, unsupported artifact kinds
    │   └── UnsupportedArtifactError (TypeError)
    ├── StoreError (OSError)               store path unusable, files damaged
    │   └── ArtifactIntegrityError (OSError) checksum mismatch on load
    ├── UnsafePickleError (ValueError)     refusing to unpickle without consent
    ├── ResultsError (KeyError, ValueError) unknown column, status or statistic in a query
    ├── ExecutorError (RuntimeError)       cluster start-up / no workers / bounded waits
    └── RunInterrupted (KeyboardInterrupt) Ctrl-C or SIGTERM stopped a sweep

A failing *operation* is never raised: its run is recorded with status
``"failed"`` and the sweep goes on.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "ArtifactIntegrityError",
    "CaptureError",
    "ContextError",
    "ExecutorError",
    "ExperimentError",
    "FrozenContextError",
    "MetalabError",
    "OperationSignatureError",
    "ParamError",
    "ParamSpaceError",
    "ResultsError",
    "RunInterrupted",
    "StoreError",
    "UnsafePickleError",
    "UnsupportedArtifactError",
]


class MetalabError(Exception):
    """Base class of every metalab error."""


class ParamError(MetalabError, ValueError):
    """A parameter value is not JSON-like, or a key is not a string."""


class ParamSpaceError(ParamError):
    """A parameter source (grid, random, manual) is malformed."""


class OperationSignatureError(MetalabError, TypeError):
    """An operation declares an argument metalab cannot supply."""


class ContextError(MetalabError, TypeError):
    """A context cannot be frozen or fingerprinted."""


class FrozenContextError(ContextError, dataclasses.FrozenInstanceError):
    """A frozen context was mutated (item or attribute assignment, deletion, ``update``).

    Also a :class:`dataclasses.FrozenInstanceError` (an ``AttributeError``), which is what
    assigning to a field of a frozen dataclass raises.
    """


class ExperimentError(MetalabError, ValueError):
    """An experiment definition is invalid."""


class CaptureError(MetalabError, ValueError):
    """A capture call was given an unsafe name or bad value."""


class UnsupportedArtifactError(CaptureError, TypeError):
    """No serializer handles the object given to ``capture.artifact``."""


class StoreError(MetalabError, OSError):
    """The store cannot be used: bad path, unwritable, or damaged files.

    ``errno`` and ``filename`` are set as on ``OSError``; the text is the message alone.
    """

    def __str__(self) -> str:
        return str(self.strerror if self.strerror is not None else super().__str__())


class ArtifactIntegrityError(StoreError):
    """An artifact file does not match the checksum recorded when it was written."""


class UnsafePickleError(MetalabError, ValueError):
    """Loading a pickle artifact was refused because it was not explicitly allowed."""


class ResultsError(MetalabError, KeyError, ValueError):
    """A results query names a column that does not exist, or asks for an unknown statistic."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ExecutorError(MetalabError, RuntimeError):
    """The executor could not run the sweep (no workers, start-up failure)."""


class RunInterrupted(MetalabError, KeyboardInterrupt):
    """A sweep was interrupted; completed runs are kept and ``resume=True`` continues it."""

    def __init__(self, message: str, *, store: str | None = None, done: int = 0) -> None:
        super().__init__(message)
        self.store = store
        self.done = done
