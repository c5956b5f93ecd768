"""The formats every stage reads and writes: trajectory text, the official format, and the records.

- ``formatting``: a trajectory as typed segments, ``render``/``parse`` of the tag format, every prompt,
  tag and transition sentence (the one owner of that text);
- ``official``: the official code's trajectory text, parsed losslessly into segments and rendered back;
- ``problem``: the problem record (id, text, gold answer, subset, family);
- ``trajectory``: one sampled response (segments, finish reason, counts, token ids, timings);
- ``records``: the records passed between stages (teacher rollouts, training examples, samples).

Imports only ``common``; everything above reads and writes through it.
"""
