"""Adaptive search: parameter sources that learn from the runs so far (Optuna underneath).

``metalab.optimize`` (:mod:`~metalab.search.source`) is the public entry.  The modules:

* ``space``: metalab's distributions as Optuna's, and back;
* ``study``: the in-memory Optuna study (sampler, pruner) and the replay of the store;
* ``ledger``: the durable list of trials asked so far (``<store>/search/trials.jsonl``);
* ``driver``: the ask -> run -> tell loop over the sweep's partition tasks;
* ``summary``: ``best`` and ``trials`` over records (used by ``Results``) and ``show``.

This ``__init__`` imports nothing: reading code (``results``) uses ``summary`` without
loading the driver, which imports ``sweep``.
"""
