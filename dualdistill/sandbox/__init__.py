"""Where model-written code runs: isolated, limited, persistent Python workers (the tool loop's executor).

- ``python_sandbox``: :class:`PythonSandbox`, one worker process in its own namespaces with time,
  memory and process limits; ``run`` returns an ``ExecResult`` and never raises for the code's own
  failures (its docstring lists what it isolates and what it does not);
- ``pool``: :class:`SandboxPool`, a few sandboxes shared by many trajectories, each with a namespace
  of its own, and ``make_sandbox_pool`` from the config's ``sandbox`` section;
- ``official_executor``: the official executor's rule (replayed program in a fresh interpreter per
  call, stderr-only errors, its timeout text) over ``PythonSandbox.run_script``, for official mode;
- ``worker_process``: the parent's side of one worker (pipes, output capture, the isolation probe);
- ``worker_main``: the code that runs inside a worker.

Imports ``common``, ``formats`` and ``config``.
"""
