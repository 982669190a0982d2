"""Seeds: a base seed and replicate count per experiment, one SeedBundle per run.

Every run gets ``SeedBundle(base, (replicate,))``, whose numpy
:class:`~numpy.random.SeedSequence` is ``SeedSequence(base, spawn_key=(replicate,))``:
exactly the ``replicate``-th child of ``SeedSequence(base).spawn(...)``, so replicates
are independent streams.  Runs that share a replicate index share their seeds across
parameter configurations (common random numbers), which makes comparisons between
configurations less noisy.  ``derive(name)`` extends the spawn key with a word taken
from the sha256 of the name, so it is stable across processes and machines.

``int(bundle)`` is a 32-bit integer in ``[0, 2**32)``, the range every library that
takes an integer seed accepts (scikit-learn's ``check_random_state`` and the legacy
``numpy.random.RandomState`` reject anything larger); ``random_state()`` gives a
``RandomState`` seeded from the whole ``SeedSequence`` for APIs that want an object.

Nothing is computed until asked: a run that never calls ``numpy()``, ``rng()``,
``random_state()`` or ``int()`` pays nothing for its seeds.

Generators handed out during a run are remembered (by kind, spawn key and call order),
so ``capture.checkpoint()`` can save their states and ``capture.restore()`` can put
them back, also into generators handed out after the restore: a resumed run draws
exactly the numbers an uninterrupted one draws.
"""

from __future__ import annotations

import hashlib
import random as _random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import SeedError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MAX_RUNS", "GeneratorRegistry", "SeedBundle", "SeedPlan", "seeds"]

#: The most runs one experiment may plan (configurations x replicates): its plan holds
#: every run id in memory (about 200 bytes each), so more would not fit on most machines.
MAX_RUNS = 100_000_000


def _name_word(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


class SeedBundle:
    """All the randomness of one run, derived from a base seed and a spawn key.

    Examples
    --------
    >>> b = SeedBundle(42, (0,))
    >>> int(b) == int(SeedBundle(42, (0,)))
    True
    >>> b.derive("model").spawn_key
    (0, 1891922579)
    """

    __slots__ = ("_int", "_reg", "_seq", "base", "spawn_key")

    def __init__(
        self, base: int, spawn_key: tuple[int, ...] = (), _reg: GeneratorRegistry | None = None
    ) -> None:
        self.base = int(base)
        self.spawn_key = tuple(spawn_key)
        self._seq: np.random.SeedSequence | None = None
        self._int: int | None = None
        self._reg = _reg  # shared with derived bundles; None until tracking is on

    def tracked(self) -> SeedBundle:
        """The same seeds, remembering every generator handed out (one per run)."""
        out = SeedBundle.__new__(SeedBundle)  # no checks: runs once per run
        out.base, out.spawn_key, out._seq, out._int = (
            self.base,
            self.spawn_key,
            self._seq,
            self._int,
        )
        out._reg = GeneratorRegistry()
        return out

    def untouched(self) -> bool:
        """A tracked bundle that handed out no generator and had no state restored (a
        run that never used its generators leaves it so: the next run may reuse it)."""
        reg = self._reg
        return reg is not None and not reg.handed and reg.counts is None and reg.pending is None

    def generator_states(self) -> dict[str, Any] | None:
        """States of the generators handed out so far (None when not tracked)."""
        return None if self._reg is None else self._reg.states()

    def restore_generators(self, states: dict[str, Any]) -> None:
        """Put saved generator states back (see :meth:`GeneratorRegistry.restore`)."""
        if self._reg is not None:
            self._reg.restore(states)

    def _hand_out(self, kind: str, gen: Any) -> Any:
        if self._reg is not None:
            self._reg.add(kind, self.spawn_key, gen)
        return gen

    @property
    def sequence(self) -> np.random.SeedSequence:
        """The numpy ``SeedSequence`` behind this bundle (created on first use)."""
        if self._seq is None:
            import numpy as np

            self._seq = np.random.SeedSequence(self.base, spawn_key=self.spawn_key)
        return self._seq

    def numpy(self) -> np.random.Generator:
        """A fresh ``numpy.random.Generator`` (PCG64) seeded from this bundle.

        Each call starts the same stream; use :meth:`derive` for independent ones.
        """
        import numpy as np

        gen = np.random.Generator(np.random.PCG64(self.sequence))
        return self._hand_out("numpy", gen)  # type: ignore[no-any-return]

    def rng(self) -> _random.Random:
        """A fresh standard-library ``random.Random`` seeded from this bundle."""
        import numpy as np

        # 63 bits from the sequence (not int(self), which has 32): random.Random uses
        # every bit of an int seed, and the stream must not change across versions.
        seed = int(self.sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))
        return self._hand_out("rng", _random.Random(seed))  # type: ignore[no-any-return]

    def random_state(self) -> np.random.RandomState:
        """A fresh legacy ``numpy.random.RandomState`` seeded from this bundle.

        For scikit-learn (``random_state=seeds.random_state()``) and other APIs that take a
        ``RandomState`` but not a ``Generator``.  Its Mersenne Twister is seeded from the
        whole ``SeedSequence`` (not from ``int(self)``), so it is another stream than
        ``RandomState(int(seeds))``; each call starts the same stream.
        """
        import numpy as np

        gen = np.random.RandomState(np.random.MT19937(self.sequence))
        return self._hand_out("random_state", gen)  # type: ignore[no-any-return]

    def derive(self, name: str) -> SeedBundle:
        """A child bundle for one component (``"model"``, ``"data_split"``), stable in ``name``."""
        if not isinstance(name, str):
            raise SeedError(f"derive() takes a string name, got {type(name).__name__}")
        return SeedBundle(self.base, (*self.spawn_key, _name_word(name)), self._reg)

    def __int__(self) -> int:
        """An integer seed in ``[0, 2**32)`` for libraries that want one.

        Accepted by scikit-learn (``random_state=int(seeds)``), ``torch.manual_seed``,
        ``jax.random.key``, ``tf.random.set_seed`` and ``numpy.random.RandomState``; it is
        the ``seed`` column of the run's record.
        """
        if self._int is None:
            import numpy as np

            self._int = int(self.sequence.generate_state(1, np.uint32)[0])
        return self._int

    def __index__(self) -> int:
        return int(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeedBundle):
            return NotImplemented
        return (self.base, self.spawn_key) == (other.base, other.spawn_key)

    def __hash__(self) -> int:
        return hash((self.base, self.spawn_key))

    def __reduce__(self) -> tuple[Any, ...]:
        return (SeedBundle, (self.base, self.spawn_key))

    def __repr__(self) -> str:
        return f"SeedBundle(base={self.base}, spawn_key={self.spawn_key})"


def _get_state(kind: str, gen: Any) -> Any:
    """A JSON-able state of one generator."""
    if kind == "numpy":
        return gen.bit_generator.state
    if kind == "random_state":
        st = gen.get_state(legacy=False)
        return {**st, "state": {**st["state"], "key": st["state"]["key"].tolist()}}
    version, internal, gauss = gen.getstate()
    return [version, list(internal), gauss]


def _set_state(kind: str, gen: Any, state: Any) -> None:
    if kind == "numpy":
        gen.bit_generator.state = state
    elif kind == "random_state":
        import numpy as np

        inner = {**state["state"], "key": np.asarray(state["state"]["key"], dtype=np.uint32)}
        gen.set_state({**state, "state": inner})
    else:
        gen.setstate((state[0], tuple(state[1]), state[2]))


class GeneratorRegistry:
    """The generators one run's seeds handed out, keyed by kind, spawn key and call order.

    Each ``numpy()`` call starts the same stream, so the n-th call of a kind on a bundle
    identifies a generator across processes: a resumed run that asks in the same order
    gets its generators back in the states they were saved in.
    """

    __slots__ = ("counts", "handed", "pending")

    def __init__(self) -> None:
        # Filled on first use: most runs never ask for a generator.
        self.handed: list[tuple[str, Any]] = []
        self.counts: dict[tuple[str, tuple[int, ...]], int] | None = None
        self.pending: dict[str, Any] | None = None

    def add(self, kind: str, spawn_key: tuple[int, ...], gen: Any) -> None:
        """Remember a generator just handed out; give it a restored state if one waits."""
        if self.counts is None:
            self.counts = {}
        n = self.counts.get((kind, spawn_key), 0)
        self.counts[(kind, spawn_key)] = n + 1
        key = f"{kind}:{'.'.join(map(str, spawn_key))}:{n}"
        self.handed.append((key, gen))
        state = self.pending.pop(key, None) if self.pending else None
        if state is not None:
            _set_state(kind, gen, state)

    def states(self) -> dict[str, Any]:
        """``{key: state}`` of every generator handed out (JSON-able)."""
        return {key: _get_state(key.split(":", 1)[0], gen) for key, gen in self.handed}

    def restore(self, states: dict[str, Any]) -> None:
        """Set saved states: now for generators already handed out, else when they are."""
        pending = dict(states)
        for key, gen in self.handed:
            if key in pending:
                _set_state(key.split(":", 1)[0], gen, pending.pop(key))
        self.pending = pending


@dataclass(frozen=True)
class SeedPlan:
    """How many replicates each parameter configuration gets, from which base seed."""

    base: int = 0
    replicates: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.base, bool) or not isinstance(self.base, int) or self.base < 0:
            raise SeedError(
                f"seeds(base=...) must be a non-negative int, got {self.base!r}; "
                "e.g. metalab.seeds(base=42, replicates=3)"
            )
        if (
            isinstance(self.replicates, bool)
            or not isinstance(self.replicates, int)
            or self.replicates < 1
        ):
            raise SeedError(f"seeds(replicates=...) must be an int >= 1, got {self.replicates!r}")
        if self.replicates > MAX_RUNS:
            raise SeedError(
                f"seeds(replicates={self.replicates:,}) is more than the limit of "
                f"{MAX_RUNS:,} runs per experiment; use fewer replicates (a few to a few "
                "hundred is typical)"
            )

    def bundle(self, replicate: int) -> SeedBundle:
        """The seed bundle of one replicate."""
        return SeedBundle(self.base, (replicate,))

    def seed_int(self, replicate: int) -> int:
        """``int()`` of the bundle of one replicate (stored in run records)."""
        return int(self.bundle(replicate))


def seeds(base: int = 0, replicates: int = 1) -> SeedPlan:
    """Seed plan for an experiment: ``replicates`` independent runs per configuration.

    Examples
    --------
    >>> seeds(base=42, replicates=3)
    SeedPlan(base=42, replicates=3)
    """
    return SeedPlan(base=base, replicates=replicates)
