"""Running the whole thing: the notebooks through papermill, sweeps, the notebooks' setup, sharing a run.

- ``papermill_runner``: ``dualdistill run``, notebooks 01 → 06 with one params file, finished stages
  skipped, progress streamed, a failing cell named;
- ``sweep``: ``dualdistill sweep``, stages 04 → 05 for every point of a grid, S1 and its samples reused;
- ``notebook``: the notebooks' first cell (``start``) and their small views;
- ``rehearsal``: the dress rehearsal's stand-in inputs for the paper-scale params on CPU;
- ``sharing``: push a run's models and training sets to the Hugging Face Hub.

The top floor below the command line: imports any room, imported by none but ``cli``.
"""
