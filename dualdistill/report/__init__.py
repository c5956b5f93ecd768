"""What a person reads and looks at: metrics, tables, figures and the notebooks' views.

- ``metrics``: metric rows of sample records (strict and official-comparable accuracy, tool use,
  tokens, ...) and paired differences with their standard errors;
- ``tables``: the results tables in the paper's layout, the paired-difference and sweep tables;
  ``paper_results``: the paper's own numbers, as data;
- ``figures``: every figure of a run (``plot_*``), one colour per model, and the one rule that writes
  them (PNG + SVG);
- ``views``: HTML views of trajectories (answers by grade, no-loss segments greyed) and key figures;
  ``mask_views``: loss masks, coloured;
- ``explorer``: notebook 04's β1/β2 explorer;
- ``story``: the closing sentences of each notebook, computed from the stage's metrics.

Imports everything below it up to ``training`` (masks); never the stages or the pipeline.
"""
