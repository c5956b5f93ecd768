"""Policy backends behind :class:`dualdistill.policy.Policy`, chosen by name in ``policy.BACKENDS``.

- ``hf`` (:mod:`.hf`): transformers ``generate``, batched, CPU or GPU;
- ``vllm`` (:mod:`.vllm_local`): in-process ``vllm.LLM``;
- ``openai`` (:mod:`.openai_api`): any OpenAI-compatible server;
- ``codeact`` (:mod:`.codeact`): a chat model driven as a CodeAct agent;
- ``replay`` (:mod:`.replay`): recorded text traces (e.g. DeepMath-103K's ``r1_solution_*``);
- ``scripted``: the synthetic world's teachers (``dualdistill.world.teachers``).

Modules are imported only when their backend is built, so heavy optional dependencies (vllm,
openai) are needed only by the runs that use them.
"""
