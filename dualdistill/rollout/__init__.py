"""Sampling trajectories: policies, the tool-integrated loop, and the recorder that keeps what they produce.

- ``policy``: the one interface behind every backend ("a policy that continues a prompt") and the
  registry of backends by name (``build_policy``);
- ``backends/``: hf, vllm, vllm-server, openai, codeact, replay (the synthetic world's scripted
  teachers live in ``world``);
- ``tool_loop``: generate → run the code in the sandbox → append the executor's output → generate,
  one coroutine per trajectory, written once for teachers, student sampling and evaluation;
- ``official_loop``: official mode, the official evaluation loop (``sft/evaluate.py::server_inference``)
  request by request on the same runner, its code run by ``sandbox.official_executor``;
- ``recorder``: sample → grade → record, resumable and crash-safe, for every stage that samples;
- ``server_process``: a local HTTP server as a child process (a policy's ``serve`` section, vLLM).
- ``engine_processes``: an engine's child processes (vLLM's EngineCore), the GPU memory they hold (NVML),
  and waiting for them to exit before the next engine starts.

Imports ``common``, ``formats``, ``config``, ``sandbox`` and ``grading``.
"""
