"""A run's directory, ``outputs/<run>/``: what each stage writes where, and which records are current.

- ``stage_table``: the six stages (number, CLI verb, module, notebook, output directory);
- ``paths``: :class:`RunPaths` (every path), ``require``/``require_model`` and :class:`MissingStageError`;
- ``identity``: the config hashes that make each artefact current;
- ``current``: the readers of each stage's current records (stages meet only in these files);
- ``ledger``: each stage's ``metrics.json`` and the run's ledger of what ran.

Imports ``common``, ``formats``, ``config`` and ``data``; used by training, reports, stages and the pipeline.
"""
