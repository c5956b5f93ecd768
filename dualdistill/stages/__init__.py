"""The six stages of Algorithm 1, one module each: ``run(cfg, *, progress=True) -> dict`` and a command line.

- ``teacher_rollouts`` (01), ``compose`` (02), ``teacher_distillation`` (03), ``self_distillation``
  (04), ``evaluation`` (05), ``analysis`` (06); ``entry``: the one shape they share (the ``@stage``
  decorator: start and finish lines, ``metrics.json``; the ``PARAMS [--set K=V]`` command line).

The table of stages (number, verb, notebook, output directory) is ``dualdistill.artifacts.stage_table``.
Stages meet only in files (``dualdistill.artifacts.current``): no stage imports another. They import
every room below them; only the pipeline and the command line sit above.
"""
