"""What every room uses and nothing of the method: crash-safe files, stable hashes, progress, the repository root.

- ``store``: append-only JSONL record stores (torn lines cut, never read), atomic whole-file writes,
  directories built beside their target and moved into place;
- ``hashing``: the one short stable hash of JSON-able values (config, data and model identities);
- ``progress``: a bar where a person watches, periodic lines under the pipeline runner;
- ``failures``: the error of a stage that ended with failed records, and its exit code;
- ``repository``: the repository root, which relative paths of params files and commands resolve from.

Imports nothing of the package: the ground floor.
"""
