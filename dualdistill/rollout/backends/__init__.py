"""Policy backends behind :class:`dualdistill.rollout.policy.Policy`, chosen by name in ``policy.BACKENDS``.

- ``hf`` (:mod:`.hf`): transformers ``generate``, batched, CPU or GPU;
- ``vllm`` (:mod:`.vllm_local`): vLLM's engine in this process (GPU), one request per trajectory;
- ``vllm-server`` (:mod:`.vllm_server`): a vLLM server process per model, started and stopped by the run;
- ``openai`` (:mod:`.openai_api`): any OpenAI-compatible server (vLLM, SGLang, DeepSeek's API, ...);
- ``codeact`` (:mod:`.codeact`): a chat model driven as a CodeAct agent (:mod:`.chat_text` turns chat
  turns into the trajectory format);
- ``replay`` (:mod:`.replay`): recorded text traces (e.g. DeepMath-103K's ``r1_solution_*``);
- ``scripted``: the synthetic world's teachers (``dualdistill.world.teachers``).

Modules are imported only when their backend is built, so heavy optional dependencies (vllm,
openai) are needed only by the runs that use them. ``tests/test_package_layout.py`` checks that
every name of ``policy.BACKENDS`` is listed here.
"""
