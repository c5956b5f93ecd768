"""Algorithm 1's decisions as pure functions over records: no files, no models, no engines.

- ``composition``: steps 2–3, teacher pairs into T1 (cases 01/11/10, transitions, masks before the
  switch), the balancing rule, and the text-only / tool-only baselines' data;
- ``selection``: step 6, ḡ per problem, the β1/β2 rules, T2's verification and correction examples
  and the text-teacher solutions they end with.

Imports ``common``, ``formats``, ``config`` and ``grading``; the stages apply these to files.
"""
