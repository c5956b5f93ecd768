"""The binary grader G of Algorithm 1, and the official code's score beside it.

- ``grader``: ``grade(response, gold)``: extract the final answer of the answer part, then compare
  values (exact fast paths, math-verify with time limits); never a substring search;
- ``official_score``: the verdict of the official ``compute_score`` (substring matches included), kept
  beside the strict grade in every sample record, for comparison with the paper's numbers;
- ``helper_process``: helper processes with a hard deadline, for math-verify off the main thread.

Imports ``common`` and ``formats``.
"""
