"""Every exception and warning metalab raises at a user, as one tree.

Each error derives from :class:`MetalabError` *and* from the builtin a caller would
naturally catch, so ``except ValueError`` (or ``TypeError``, ``KeyError``, ``OSError``)
keeps working; the builtin is shown in brackets::

    MetalabError (Exception)
    ├── ParamError (ValueError)              a parameter value is not JSON-like
    │   └── ParamSpaceError                  a malformed grid, random or manual source
    ├── OperationSignatureError (TypeError)  @operation got a bad function or argument
    ├── ContextError (TypeError)             a context cannot be frozen or fingerprinted
    │   └── FrozenContextError (AttributeError)  a frozen context was mutated
    ├── ExperimentError (ValueError)         an invalid experiment or run() option
    │   ├── SeedError (TypeError)            bad seeds(...) or SeedBundle.derive(name)
    │   └── FrozenExperimentError (AttributeError)  an Experiment was mutated
    ├── CaptureError (ValueError)            an unsafe name or bad value in a capture call
    │   └── CaptureTypeError (TypeError)     a metric that is not a number, ...
    │       └── UnsupportedArtifactError     no format can save the object
    ├── UnsafePickleError (ValueError)       loading a pickle artifact without consent
    ├── ResultsError (KeyError, IndexError, ValueError)  unknown column, run, statistic
    ├── StoreError (OSError)                 store path unusable, files damaged
    │   └── ArtifactIntegrityError           an artifact fails its recorded checksum
    ├── ExecutorError (RuntimeError)         no workers, cluster start-up, bounded waits
    │   └── ExecutorConfigError (ValueError) an executor given an invalid option
    └── CLIError (ValueError)                a mistake on the ``metalab`` command line

    RunInterrupted (KeyboardInterrupt)       Ctrl-C or SIGTERM stopped a sweep

    MetalabWarning (UserWarning)
    ├── SourceChangedWarning                 an operation changed but its version did not
    ├── DamagedFileWarning                   a store file was unreadable and quarantined
    └── OtherDefinitionsWarning              load_results left out runs of older definitions

``RunInterrupted`` is deliberately *not* a ``MetalabError`` (nor an ``Exception``): a
user's ``except Exception:`` must never swallow Ctrl-C.  Catch it by name, or as
``KeyboardInterrupt``.

A failing *operation* is never raised: its run is recorded with status ``"failed"``
(its error type and message in the record) and the sweep goes on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ArtifactIntegrityError",
    "CLIError",
    "CaptureError",
    "CaptureTypeError",
    "ContextError",
    "DamagedFileWarning",
    "ExecutorConfigError",
    "ExecutorError",
    "ExperimentError",
    "FrozenContextError",
    "FrozenExperimentError",
    "MetalabError",
    "MetalabWarning",
    "OperationSignatureError",
    "OtherDefinitionsWarning",
    "ParamError",
    "ParamSpaceError",
    "ResultsError",
    "RunInterrupted",
    "SeedError",
    "SourceChangedWarning",
    "StoreError",
    "UnsafePickleError",
    "UnsupportedArtifactError",
]


class MetalabError(Exception):
    """Base class of every metalab error (but not of :class:`RunInterrupted`)."""


# --- definition: parameters, operations, contexts, experiments, seeds ------------------
class ParamError(MetalabError, ValueError):
    """A parameter value is not JSON-like, or a key is not a string."""


class ParamSpaceError(ParamError):
    """A parameter source (grid, random, manual) is malformed."""


class OperationSignatureError(MetalabError, TypeError):
    """``@operation`` was given something other than a function, or a function
    declaring an argument metalab cannot supply."""


class ContextError(MetalabError, TypeError):
    """A context cannot be frozen or fingerprinted."""


class FrozenContextError(ContextError, dataclasses.FrozenInstanceError):
    """A frozen context was mutated (item or attribute assignment, deletion, ``update``).

    Also a :class:`dataclasses.FrozenInstanceError` (an ``AttributeError``), which is what
    assigning to a field of a frozen dataclass raises.
    """


class ExperimentError(MetalabError, ValueError):
    """An experiment definition, or an option of :func:`metalab.run`, is invalid."""


class SeedError(ExperimentError, TypeError):
    """``seeds(base=..., replicates=...)`` or ``SeedBundle.derive(name)`` got a bad value."""


class FrozenExperimentError(ExperimentError, dataclasses.FrozenInstanceError):
    """An :class:`~metalab.Experiment` was changed after it was made.

    Its run ids are computed from what it was created with; make a new one instead.
    Also a :class:`dataclasses.FrozenInstanceError` (an ``AttributeError``).
    """

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        #: The attribute that was assigned or deleted.
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        # ``name`` is AttributeError's C slot, not in ``__dict__``: pickle it explicitly
        # (tblib, used by distributed, rebuilds exceptions from ``__dict__`` otherwise).
        return (type(self), (self.name,))

    def __str__(self) -> str:
        return (
            f"an Experiment cannot be changed (attribute {self.name!r}): its run ids are "
            "computed from what it was created with; make a new metalab.Experiment(...)"
        )


# --- recording: capture, artifacts -----------------------------------------------------
class CaptureError(MetalabError, ValueError):
    """A capture call was given an unsafe name or a bad value."""


class CaptureTypeError(CaptureError, TypeError):
    """A capture call was given a value of the wrong type: a metric that is not a number,
    a step that is not an int, or an operation returned something other than a dict."""


class UnsupportedArtifactError(CaptureTypeError):
    """No format can save the object given to ``capture.artifact`` (or ``format=`` is
    unknown)."""


class UnsafePickleError(MetalabError, ValueError):
    """Loading a pickle artifact was refused because it was not explicitly allowed."""


# --- reading: results and the store ----------------------------------------------------
class ResultsError(MetalabError, KeyError, IndexError, ValueError):
    """A lookup in results failed: an unknown column, run, artifact, metric or statistic,
    a run index out of range, or a malformed query.

    Attributes
    ----------
    name
        What was looked up, when the error is about one name (else ``None``).
    choices
        The valid names, when they are known (else empty).
    """

    def __init__(
        self, message: str = "", *, name: str | None = None, choices: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.name = name
        self.choices = list(choices)

    def __str__(self) -> str:
        # KeyError would show the repr of the message (quotes, escaped newlines).
        return str(self.args[0]) if self.args else ""


class StoreError(MetalabError, OSError):
    """The store cannot be used: bad path, unwritable, or damaged files.

    Constructed like ``OSError(errno, message, path)``; ``errno`` and ``filename`` are set
    as on ``OSError`` and :attr:`path` names the file or folder.  The text is the message
    alone.
    """

    @property
    def path(self) -> str | None:
        """The file or folder the error is about (``OSError.filename``)."""
        return None if self.filename is None else str(self.filename)

    def __str__(self) -> str:
        return str(self.strerror if self.strerror is not None else super().__str__())


class ArtifactIntegrityError(StoreError):
    """An artifact file does not match the checksum recorded when it was written.

    Attributes
    ----------
    run_id
        The run whose artifact is damaged.
    name
        The artifact name.
    path
        The damaged file.
    """

    def __init__(self, *args: Any, run_id: str = "", name: str = "") -> None:
        super().__init__(*args)
        self.run_id = run_id
        self.name = name


# --- execution --------------------------------------------------------------------------
class ExecutorError(MetalabError, RuntimeError):
    """The executor could not run the sweep (no workers, start-up failure, lost partitions)."""


class ExecutorConfigError(ExecutorError, ValueError):
    """An executor was given an invalid option (e.g. ``max_workers=0``)."""


class CLIError(MetalabError, ValueError):
    """A user mistake on the command line; ``metalab`` prints it as one line, exit status 2."""


class RunInterrupted(KeyboardInterrupt):
    """A sweep was stopped by Ctrl-C or SIGTERM; completed runs are kept.

    A ``KeyboardInterrupt``, not an ``Exception``: ``except Exception`` does not swallow
    it.  Left uncaught in a script, it prints one paragraph with the resume command and
    the script exits with status 130, like ``metalab run``.

    Attributes
    ----------
    experiment
        Name of the interrupted experiment.
    store
        The store folder holding the completed runs.
    done
        Runs completed in this sweep before the interrupt.
    resume
        The call or command that continues the sweep.
    """

    def __init__(
        self,
        message: str = "",
        *,
        experiment: str = "",
        store: str | None = None,
        done: int = 0,
        resume: str = "",
    ) -> None:
        super().__init__(message)
        self.experiment = experiment
        self.store = store
        self.done = done
        self.resume = resume

    def __str__(self) -> str:
        if self.args and self.args[0]:
            return str(self.args[0])
        text = f"sweep of {self.experiment!r} interrupted; completed runs are kept in {self.store}"
        return f"{text}. Resume with: {self.resume}" if self.resume else text


# --- warnings ---------------------------------------------------------------------------
class MetalabWarning(UserWarning):
    """Base class of the warnings metalab issues."""


class SourceChangedWarning(MetalabWarning):
    """An operation's source code changed but its ``version=`` did not.

    Existing records were made by the old code; ``resume=True`` keeps them as they are.
    """


class DamagedFileWarning(MetalabWarning):
    """A store file could not be read and was moved to the quarantine folder."""


class OtherDefinitionsWarning(MetalabWarning):
    """``load_results(path)`` shows the store's current definition and left out runs of others.

    A store holds runs of several definitions when the experiment's or the operation's
    ``version=``, or the context, changed between sweeps.  ``load_results(path,
    definitions="all")`` returns them all, with the columns ``experiment_version``,
    ``operation_version`` and ``context_fingerprint``.

    Attributes: ``hidden`` (runs left out), ``definitions`` (how many other definitions)
    and ``current`` (the current definition, described).
    """

    hidden: int = 0
    definitions: int = 0
    current: str = ""
