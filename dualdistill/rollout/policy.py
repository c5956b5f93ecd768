"""The one interface behind every backend: "a policy that continues a prompt" (METHOD §4).

A policy receives a batch of :class:`GenerationRequest` (the full text to continue: prompt plus the
completion so far — and, where the loop has them, the token ids of that text — a token limit, stop
strings, sampling settings) and returns one :class:`Generation` per request. The tool loop
(``dualdistill.rollout.tool_loop``) is written once on top of this interface and sends one request per
trajectory the moment it is ready: policies that serve requests one by one asynchronously (an
engine with continuous batching, an HTTP server) set ``async_native`` and implement
:meth:`Policy.agenerate`; for the others a :class:`MicroBatcher` collects whatever is ready while
the model is busy and sends it as the next batch.

Backends are named in :data:`BACKENDS`; :func:`build_policy` builds one from a
:class:`~dualdistill.config.PolicyConfig`. Every name in :data:`BACKENDS` must resolve. A config with
a ``serve`` section gets its server started first (``server_process.ServerProcess``; the policy's
``base_url`` points at it unless set) and stopped when the policy is closed. :meth:`Policy.describe`
says what a built policy is (backend, model, server), for the run's report.
"""

from __future__ import annotations

import asyncio
import importlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

# name -> "module:factory"; factories take (PolicyConfig, **kwargs) and return a Policy.
BACKENDS: dict[str, str] = {
    "hf": "dualdistill.rollout.backends.hf:HFPolicy",
    "vllm": "dualdistill.rollout.backends.vllm_local:VLLMPolicy",
    "vllm-server": "dualdistill.rollout.backends.vllm_server:VLLMServerPolicy",
    "openai": "dualdistill.rollout.backends.openai_api:OpenAIPolicy",
    "codeact": "dualdistill.rollout.backends.codeact:build_codeact_policy",
    "replay": "dualdistill.rollout.backends.replay:ReplayPolicy",
    "scripted": "dualdistill.world.teachers:build_scripted_policy",
}


@dataclass
class GenerationRequest:
    """One continuation to produce.

    ``prompt`` is the whole text so far (prompt + completion so far); ``prompt_ids``, when set, are
    its token ids as the engine should see them (the sampled ids and the ids of inserted text, not a
    re-tokenisation): engines that take ids continue from them. The stop string, when hit, is *not*
    included in the returned text (as in vLLM and the OpenAI API). Sampling: ``temperature``,
    ``top_p``, ``top_k`` (-1 = off; None = the engine's default, i.e. the model's generation config,
    left unsent to a server) and ``seed``. ``context`` carries
    what non-LLM policies need (``problem``: the Problem record; ``first_attempt``: the first
    teacher's completion; ``completion``: the completion so far; ``sample``: sample index).
    """

    prompt: str
    max_new_tokens: int
    stop: list[str] = field(default_factory=list)
    temperature: float = 0.6
    seed: int | None = None
    context: dict[str, Any] = field(default_factory=dict)
    top_p: float | None = None  # None: the engine's default (the model's generation config)
    top_k: int | None = None  # -1: off; None: the engine's default
    prompt_ids: list[int] | None = None  # the token ids of ``prompt`` (token in, token out), where known


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" (a stop string was hit), "eos", "length", "error"
    n_tokens: int
    token_ids: list[int] | None = None
    stop: str | None = None  # the stop string that was hit
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"reasoning_content": ...}


class Policy(ABC):
    """Continues prompts. Implementations: hf, vllm, openai, codeact, replay, scripted."""

    name: str = "policy"
    async_native: bool = False  # True: agenerate serves one request at a time (continuous batching)
    remote_count: bool = False  # True: count_tokens may wait on a server (the tool loop calls it in a thread)
    served: Any = None  # the ServerProcess started for this policy (PolicyConfig.serve), if any

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """One generation, awaited on its own (async_native policies); never raises for the item."""
        raise NotImplementedError(f"policy {self.name!r} has no per-request interface; use a MicroBatcher")

    async def release_loop(self) -> None:
        """Free what this policy holds on the running event loop (called before that loop ends)."""
        return None

    @abstractmethod
    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One generation per request, in order. Must not raise for a single bad item: return a
        Generation with finish_reason "error" instead."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in this policy's tokenizer (executor output counts to the budget)."""

    def close(self) -> None:
        """Release engines, servers, threads (default: nothing to release)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What this policy is, for reports: its backend name and what it was built on."""
        out: dict[str, Any] = {"backend": self.name}
        cfg = getattr(self, "cfg", None)
        if getattr(cfg, "model", None):
            out["model"] = cfg.model
        if getattr(self, "served", None) is not None:
            out["served"] = self.served.describe()
        return out

    def add_close_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` after this policy's own :meth:`close` (even when that raises), once."""
        inner = self.close
        done = False

        def close() -> None:
            nonlocal done
            try:
                inner()
            finally:
                if not done:
                    done = True
                    hook()

        self.close = close  # type: ignore[method-assign]

    def __enter__(self) -> Policy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MicroBatcher:
    """A batch policy's asynchronous face: requests that arrive while the model is busy wait, and go
    together in the next ``policy.generate`` call (run in ``executor``) the moment the model is free;
    requests arriving in the same event-loop turn start together."""

    def __init__(self, policy: Policy, executor: Executor) -> None:
        self.policy, self.executor = policy, executor
        self.max_batch = getattr(policy, "max_batch", None)  # e.g. the hf backend's batch size
        self.waiting: list[tuple[GenerationRequest, asyncio.Future[Generation]]] = []
        self.busy = False
        self.batches: list[int] = []  # sizes of the batches sent

    async def __call__(self, request: GenerationRequest) -> Generation:
        future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        self.waiting.append((request, future))
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().call_soon(self._start)
        return await future

    def _start(self) -> None:
        cut = self.max_batch or len(self.waiting)
        batch, self.waiting = self.waiting[:cut], self.waiting[cut:]
        if not batch:
            self.busy = False
            return
        self.batches.append(len(batch))
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(self.executor, self.policy.generate, [r for r, _ in batch])
        task.add_done_callback(lambda t: self._done(batch, t))

    def _done(self, batch: list[tuple[GenerationRequest, asyncio.Future[Generation]]], task: asyncio.Future) -> None:
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        gens = None if error is not None else task.result()
        if error is None and len(gens) != len(batch):
            error = RuntimeError(f"policy {self.policy.name!r} returned {len(gens)} generations for {len(batch)} requests")
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(gens[i])
        self._start()  # whatever arrived meanwhile goes next


def request_sender(policy: Policy, executor: Executor) -> Callable[[GenerationRequest], Awaitable[Generation]]:
    """How the tool loop sends one request: the policy's own ``agenerate``, or a :class:`MicroBatcher`."""
    return policy.agenerate if policy.async_native else MicroBatcher(policy, executor)


def _resolve(name: str) -> Callable[..., Policy]:
    if name not in BACKENDS:
        raise ValueError(f"unknown policy backend {name!r}; known: {sorted(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def build_policy(cfg: Any, **kwargs: Any) -> Policy:
    """Build the policy named by ``cfg.backend`` (a PolicyConfig); kwargs go to the factory. With
    ``cfg.serve`` its server is started first and stopped when the policy is closed."""
    factory = _resolve(cfg.backend)
    serve = getattr(cfg, "serve", None)
    if serve is None:
        return factory(cfg, **kwargs)
    from dualdistill.rollout.server_process import ServerProcess

    server = ServerProcess(serve.command, host=serve.host, port=serve.port, ready_path=serve.ready_path,
                           env=serve.env, startup_timeout=serve.startup_timeout)
    server.label = f"the {cfg.backend} policy's server (serve.command)"
    server.start()
    try:
        base_url = cfg.base_url.format(port=server.port, host=server.host) if cfg.base_url else server.base_url
        policy = factory(cfg.model_copy(update={"base_url": base_url}), **kwargs)
    except BaseException:
        server.stop()
        raise
    policy.served = server  # type: ignore[attr-defined]
    policy.add_close_hook(server.stop)
    return policy
