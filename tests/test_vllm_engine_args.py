"""The in-process vLLM backend with a stand-in ``vllm`` module: engine arguments from params reach the
engine (also for the default S1 policy of self-distillation), max_model_len defaults to what prompt +
budget need, sampling settings and prompt ids reach every request, and the tool loop drives it one
request at a time. The real engine is exercised in tests/test_vllm_server.py (inside .venv-vllm)."""

from __future__ import annotations

import asyncio
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from dualdistill.config import PolicyConfig, SamplingSettings, config_from_dict
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.rollout.policy import GenerationRequest
from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories


@dataclass
class FakeOutput:
    text: str
    token_ids: list[int]
    finish_reason: str = "stop"
    stop_reason: Any = "</answer>"


@dataclass
class FakeRequestOutput:
    outputs: list[FakeOutput]


class FakeTokenizer:
    bos_token = formatting.BOS_TOKEN

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) % 1000 for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids)


@dataclass
class FakeEngine:
    args: dict[str, Any]
    requests: list[tuple[Any, Any, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    async def generate(self, prompt, params, request_id):
        self.requests.append((prompt, params, request_id))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            text = "<think>\nok\n</think>\n<answer>\nThe answer is \\boxed{1}\n"
            yield FakeRequestOutput([FakeOutput(text, [1, 2, 3])])
        finally:
            self.in_flight -= 1

    def shutdown(self) -> None:
        self.args["_shut"] = True


@pytest.fixture
def fake_vllm(monkeypatch):
    made: list[FakeEngine] = []
    mod = types.ModuleType("vllm")

    class AsyncEngineArgs:
        def __init__(self, **kw):
            self.kw = kw

    class AsyncLLMEngine:
        @staticmethod
        def from_engine_args(args):
            made.append(FakeEngine(dict(args.kw)))
            return made[-1]

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    def TokensPrompt(prompt_token_ids):  # noqa: N802 - vLLM's name
        return {"prompt_token_ids": prompt_token_ids}

    mod.AsyncEngineArgs, mod.AsyncLLMEngine, mod.SamplingParams, mod.TokensPrompt = (
        AsyncEngineArgs, AsyncLLMEngine, SamplingParams, TokensPrompt)
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return made


def test_engine_arguments_and_sampling_reach_the_engine(fake_vllm, tmp_path):
    from dualdistill.rollout.recorder import build_model_policy
    from dualdistill.stages.self_distillation import student_policy_config

    cfg = config_from_dict({
        "run_name": "v", "output_dir": str(tmp_path), "seed": 3,
        "student": {"model": "org/some-7b", "backend": "vllm", "dtype": "bfloat16",
                    "extra": {"engine": {"gpu_memory_utilization": 0.8, "max_num_seqs": 64}}},
        "self_distill": {"top_p": 0.95, "top_k": 20},
    })
    (tmp_path / "v" / "models" / "S1").mkdir(parents=True)
    pcfg = student_policy_config(cfg)
    assert pcfg.extra == {"engine": {"gpu_memory_utilization": 0.8, "max_num_seqs": 64}}
    policy = build_model_policy(pcfg, seed=3, max_context=5000)
    engine = fake_vllm[-1]
    assert engine.args == {"model": str(tmp_path / "v" / "models" / "S1"), "dtype": "bfloat16", "seed": 3,
                           "gpu_memory_utilization": 0.8, "max_num_seqs": 64, "max_model_len": 5000}
    [gen] = policy.generate([GenerationRequest("hello", 32, stop=["</answer>"], temperature=0.6, seed=7, top_p=0.95,
                                               top_k=20, prompt_ids=[5, 6, 7])])
    prompt, params, _ = engine.requests[-1]
    assert prompt == {"prompt_token_ids": [5, 6, 7]}  # token in
    # the engine has the seed (3); requests carry none unless extra.request_seeds (vLLM's per-row sampler path)
    assert (params.temperature, params.top_p, params.top_k, params.seed, params.max_tokens, params.stop) == \
        (0.6, 0.95, 20, None, 32, ["</answer>"])
    assert gen.finish_reason == "stop" and gen.stop == "</answer>" and gen.token_ids == [1, 2, 3]
    policy.close()
    assert engine.args["_shut"]


def test_per_request_seeds_are_opt_in(fake_vllm):
    from dualdistill.rollout.backends.vllm_local import VLLMPolicy

    policy = VLLMPolicy(PolicyConfig(backend="vllm", model="m", extra={"request_seeds": True}), seed=3)
    policy.generate([GenerationRequest("hello", 8, seed=7), GenerationRequest("hello", 8)])
    assert [p.seed for _, p, _ in fake_vllm[-1].requests] == [7, None]
    assert fake_vllm[-1].args["seed"] == 3 and policy.describe()["request_seeds"] is True
    policy.close()


def test_params_max_model_len_wins_and_unknown_extra_is_an_error(fake_vllm):
    from dualdistill.rollout.backends.vllm_local import VLLMPolicy

    VLLMPolicy(PolicyConfig(backend="vllm", model="m", extra={"engine": {"max_model_len": 2048}}),
               max_context=9000).close()
    assert fake_vllm[-1].args["max_model_len"] == 2048
    with pytest.raises(ValueError, match="unknown key.*llm_kwargs"):
        VLLMPolicy(PolicyConfig(backend="vllm", model="m", extra={"llm_kwargs": {}}))


def test_the_tool_loop_sends_one_request_per_ready_trajectory(fake_vllm):
    from dualdistill.rollout.backends.vllm_local import VLLMPolicy

    policy = VLLMPolicy(PolicyConfig(backend="vllm", model="m"))
    items = [RolloutItem(Problem(f"p{i}", "q", "1", "t"), formatting.build_prompt("q", code=True), "S1", sample=i)
             for i in range(24)]
    trajs = generate_trajectories(policy, items, SamplingSettings(max_code_calls=2, temperature=0.6, max_in_flight=10), budget=256, tools=False, progress=False)
    engine = fake_vllm[-1]
    assert all(t.finish_reason == "answer" for t in trajs) and len(engine.requests) == 24
    assert engine.max_in_flight == 10  # continuous batching: the engine saw the whole window at once
    policy.close()
