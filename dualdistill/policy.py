"""The one interface behind every backend: "a policy that continues a prompt" (METHOD §4).

A policy receives a batch of :class:`GenerationRequest` (the full text to continue: prompt plus the
completion so far, a token limit, stop strings) and returns one :class:`Generation` per request.
The tool loop (``dualdistill.tool_loop``) is written once on top of this interface.

Backends register themselves by name with :func:`register`; :func:`build_policy` builds one from a
:class:`~dualdistill.config.PolicyConfig`. Every name in :data:`BACKENDS` must resolve.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# name -> "module:factory"; factories take (PolicyConfig, **kwargs) and return a Policy.
BACKENDS: dict[str, str] = {
    "hf": "dualdistill.backends.hf:HFPolicy",
    "vllm": "dualdistill.backends.vllm_local:VLLMPolicy",
    "openai": "dualdistill.backends.openai_api:OpenAIPolicy",
    "codeact": "dualdistill.backends.codeact:build_codeact_policy",
    "replay": "dualdistill.backends.replay:ReplayPolicy",
    "scripted": "dualdistill.world.teachers:build_scripted_policy",
}


@dataclass
class GenerationRequest:
    """One continuation to produce.

    ``prompt`` is the whole text so far (prompt + completion so far). The stop string, when hit,
    is *not* included in the returned text (as in vLLM and the OpenAI API). ``context`` carries
    what non-LLM policies need (``problem``: the Problem record; ``first_attempt``: the first
    teacher's completion; ``completion``: the completion so far; ``sample``: sample index).
    """

    prompt: str
    max_new_tokens: int
    stop: list[str] = field(default_factory=list)
    temperature: float = 0.6
    seed: int | None = None
    context: dict[str, Any] = field(default_factory=dict)


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
    """Continues prompts. Implementations: hf, vllm, openai, replay, scripted."""

    name: str = "policy"

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

    def __enter__(self) -> Policy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resolve(name: str) -> Callable[..., Policy]:
    if name not in BACKENDS:
        raise ValueError(f"unknown policy backend {name!r}; known: {sorted(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def build_policy(cfg: Any, **kwargs: Any) -> Policy:
    """Build the policy named by ``cfg.backend`` (a PolicyConfig); kwargs go to the factory."""
    return _resolve(cfg.backend)(cfg, **kwargs)
