"""Where problems come from and where the paper's data goes: loaders, the benchmark registry, released data.

- ``loaders``: problems from every source kind (the official files, JSON/JSONL, Hugging Face datasets,
  the synthetic world), joins by problem text, near-duplicate removal against the test sets;
- ``benchmarks``: a benchmark is data (dataset, prompt, extractor, paper column, version);
- ``official_data``: the paper's released T1 as training examples, and T1/T2 exported in the
  official format for the official trainer.

Imports ``common``, ``formats``, ``config`` and ``world`` (the synthetic source).
"""
