"""The ``openai`` backend against a local fake OpenAI server (http.server in a thread).

The fake server plays a model that always says ``print(42)</code>\\nmore text`` (one token per
character), applies ``stop`` and ``max_tokens`` like vLLM, and misbehaves on request: a prompt
starting with ``[429x1]`` / ``[500x1]`` / ``[garbagex1]`` fails once, ``[garbage]`` /
``[nochoices]`` / ``[hang]`` / ``[400]`` always fail. It counts attempts per prompt and the
requests in flight at once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dualdistill.config import PolicyConfig
from dualdistill.formats import formatting
from dualdistill.rollout.backends.chat_text import infer_stop, reasoning_to_text, split_r1_prompt
from dualdistill.rollout.backends.openai_api import OpenAIPolicy
from dualdistill.rollout.policy import GenerationRequest, build_policy

SCRIPT = "print(42)</code>\nmore text"
SECRET = "sk-test-secret-123"


class FakeServer:
    """An OpenAI-compatible fake with fault modes; see the module docstring."""

    def __init__(self, *, owned_by: str = "fake", delay: float = 0.0, hang: float = 3.0, tokenize: bool = True,
                 stop_reason: bool = True) -> None:
        self.owned_by, self.delay, self.hang, self.tokenize, self.stop_reason = owned_by, delay, hang, tokenize, stop_reason
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.auth: set[str] = set()
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": "fake-model", "owned_by": server.owned_by}]})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                server.auth.add(self.headers.get("authorization", ""))
                with server.lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                    server.bodies.append(body)
                try:
                    server.handle(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)
                finally:
                    with server.lock:
                        server.inflight -= 1

            def _json(self, status: int, data: Any, raw: bytes | None = None, headers: dict[str, str] | None = None) -> None:
                payload = raw if raw is not None else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def handle(self, h: Any, body: dict[str, Any]) -> None:
        if h.path == "/tokenize":
            if not self.tokenize:
                return h._json(404, {"error": "no tokenize"})
            return h._json(200, {"count": len(body["prompt"].split()), "tokens": []})
        if h.path == "/v1/chat/completions":
            key = body["messages"][-1]["content"]
        else:
            key = body["prompt"]
        with self.lock:
            self.calls[key] += 1
            n = self.calls[key]
        mode = re.match(r"\[(\w+)\]", key)
        mode = mode.group(1) if mode else "ok"
        time.sleep(self.delay)
        if mode == "429x1" and n == 1:
            return h._json(429, {"error": {"message": "rate limited"}}, headers={"retry-after": "0"})
        if mode == "500x1" and n == 1:
            return h._json(500, {"error": {"message": "boom"}})
        if mode == "garbage" or (mode == "garbagex1" and n == 1):
            return h._json(200, None, raw=b"this is not json{")
        if mode == "nochoices":
            return h._json(200, {"id": "x", "object": "text_completion"})
        if mode == "400":
            return h._json(400, {"error": {"message": "bad request"}})
        if mode == "hang":
            time.sleep(self.hang)
        if h.path == "/v1/chat/completions":
            return h._json(200, self.chat_answer(body))
        return h._json(200, self.completion(body, SCRIPT))

    def completion(self, body: dict[str, Any], script: str) -> dict[str, Any]:
        text, finish, stop_reason = script, "stop", None
        cut = [(script.find(s), s) for s in body.get("stop") or [] if s in script]
        if cut:
            pos, stop_reason = min(cut)
            text = script[:pos]
        if len(text) > body["max_tokens"]:
            text, finish, stop_reason = text[: body["max_tokens"]], "length", None
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish}
        if self.stop_reason:
            choice["stop_reason"] = stop_reason
        n = len(text) + (len(stop_reason) if stop_reason else 0)
        return {"id": "c", "object": "text_completion", "choices": [choice],
                "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5}}

    def chat_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "The answer is \\boxed{42}"}
        if body.get("continue_final_message"):
            message["content"] = "print(42)"
        else:
            message["reasoning_content"] = "6*7 = 42."
        return {"id": "x", "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Any:
    s = FakeServer()
    yield s
    s.close()


def make_policy(base_url: str, **kw: Any) -> OpenAIPolicy:
    extra = {"backoff_initial": 0.01, "backoff_max": 0.05, **kw.pop("extra", {})}
    cfg = PolicyConfig(backend="openai", base_url=base_url, model="fake-model", api_key_env="DD_TEST_KEY",
                       request_timeout=kw.pop("request_timeout", 0.5), max_retries=kw.pop("max_retries", 2),
                       max_concurrency=kw.pop("max_concurrency", 4), extra=extra, **kw)
    return OpenAIPolicy(cfg)


def req(prompt: str, **kw: Any) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_new_tokens=kw.pop("max_new_tokens", 64), **kw)


def test_completions_map_stop_length_eos(server: FakeServer) -> None:
    with build_policy(make_policy(server.base_url).cfg) as policy:
        assert isinstance(policy, OpenAIPolicy)
        stop, length, eos = policy.generate(
            [req("a", stop=["</code>"]), req("b", max_new_tokens=5), req("c")]
        )
    assert (stop.text, stop.finish_reason, stop.stop, stop.n_tokens) == ("print(42)", "stop", "</code>", 16)
    assert (length.text, length.finish_reason, length.n_tokens) == ("print", "length", 5)
    assert (eos.text, eos.finish_reason, eos.stop) == (SCRIPT, "eos", None)
    sent = {b["prompt"]: b for b in server.bodies}
    assert sent["a"]["stop"] == ["</code>"] and sent["b"]["max_tokens"] == 5 and sent["c"]["temperature"] == 0.6


def test_faults_recover_or_are_reported(server: FakeServer) -> None:
    prompts = ["ok", "[429x1] a", "[500x1] b", "[garbagex1] c", "[garbage] d", "[nochoices] e", "[hang] f", "[400] g"]
    policy = make_policy(server.base_url)
    t0 = time.monotonic()
    gens = dict(zip(prompts, policy.generate([req(p, stop=["</code>"]) for p in prompts]), strict=True))
    elapsed = time.monotonic() - t0
    policy.close()
    for p in prompts[:4]:  # transient faults: retried to success
        assert (gens[p].finish_reason, gens[p].text) == ("stop", "print(42)"), (p, gens[p])
        assert server.calls[p] == (1 if p == "ok" else 2)
    for p, needle in [("[garbage] d", "JSONDecodeError"), ("[nochoices] e", "without choices"), ("[hang] f", "timed out")]:
        g = gens[p]
        assert g.finish_reason == "error" and needle in g.error, (p, g)
        assert server.calls[p] == 3  # max_retries=2 -> 3 attempts
    assert gens["[400] g"].finish_reason == "error" and "400" in gens["[400] g"].error
    assert server.calls["[400] g"] == 1  # a client error is not retried
    assert elapsed < 6, elapsed  # hang: 3 attempts x 0.5 s + backoff, bounded


def test_concurrency_is_bounded_at_the_server() -> None:
    server = FakeServer(delay=0.15)
    try:
        policy = make_policy(server.base_url, max_concurrency=3)
        gens = policy.generate([req(f"p{i}") for i in range(12)])
        policy.close()
    finally:
        server.close()
    assert all(g.finish_reason == "eos" for g in gens)
    assert server.max_inflight == 3  # bounded, and really concurrent


def test_overall_timeout_bounds_a_batch() -> None:
    server = FakeServer(hang=5.0)
    try:
        policy = make_policy(server.base_url, request_timeout=10, extra={"overall_timeout": 0.5})
        t0 = time.monotonic()
        ok, hung = policy.generate([req("fine"), req("[hang] x")])
        elapsed = time.monotonic() - t0
        policy.close()
    finally:
        server.close()
    assert ok.finish_reason == "eos"
    assert hung.finish_reason == "error" and "overall timeout" in hung.error
    assert elapsed < 3, elapsed


def test_stop_is_inferred_without_stop_reason() -> None:
    server = FakeServer(stop_reason=False)
    try:
        policy = make_policy(server.base_url)
        stop, eos = policy.generate([req("Compute.<code>\n", stop=["</code>"]), req("x")])
        policy.close()
    finally:
        server.close()
    assert (stop.finish_reason, stop.stop, stop.extra["stop_inferred"]) == ("stop", "</code>", True)
    assert eos.finish_reason == "eos"
    assert infer_stop("<think>\nx\n</think>\n<code>\nprint(1)", ["</code>"]) == "</code>"
    assert infer_stop("<code>\na\n</code>\n<answer>\nok", ["</code>"]) is None


def test_chat_maps_reasoning_content_to_think(server: FakeServer) -> None:
    problem = "What is 6*7?"
    prompt = formatting.build_prompt(problem, code=True) + formatting.GENERATION_PREFIX
    with make_policy(server.base_url, api="chat") as policy:
        gen, stopped = policy.generate([req(prompt), req(prompt, stop=["</code>", "</answer>"])])
    assert gen.finish_reason == "eos" and gen.extra["reasoning_content"] == "6*7 = 42."
    # the tool loop's stop strings apply to the tags added around the reasoning
    assert (stopped.finish_reason, stopped.stop) == ("stop", "</answer>")
    assert stopped.text == "6*7 = 42.\n</think>\n<answer>\nThe answer is \\boxed{42}\n"
    completion = formatting.GENERATION_PREFIX + gen.text  # the prompt had opened <think>
    assert completion == "<think>\n6*7 = 42.\n</think>\n<answer>\nThe answer is \\boxed{42}\n</answer>\n"
    assert formatting.extract_final_answer(completion) == "42"
    messages = server.bodies[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == problem and formatting.CODE_INSTRUCTION.strip() in messages[0]["content"]


def test_chat_continues_a_partial_turn_on_vllm_only() -> None:
    so_far = "<think>\nLet me compute.\n</think>\n<code>\n"
    prompt = formatting.build_prompt("What is 6*7?", code=True) + so_far
    server = FakeServer(owned_by="vllm")
    try:
        with make_policy(server.base_url, api="chat") as policy:
            [gen] = policy.generate([req(prompt)])
        body = server.bodies[-1]
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert body["messages"][-1] == {"role": "assistant", "content": so_far}
        assert gen.text == "print(42)"
        with make_policy(server.base_url, api="chat", extra={"chat_prefix": "none"}) as policy:
            n_before = len(server.bodies)
            [err] = policy.generate([req(prompt)])
        assert err.finish_reason == "error" and "chat_prefix" in err.error
        assert len(server.bodies) == n_before  # refused before sending
    finally:
        server.close()


def test_count_tokens_tokenize_endpoint_then_estimate(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer()
    try:
        policy = make_policy(server.base_url)
        assert policy.count_tokens("one two three") == 3  # the server's /tokenize
    finally:
        server.close()
    server = FakeServer(tokenize=False)
    try:
        policy = make_policy(server.base_url)
        with caplog.at_level(logging.WARNING):
            assert policy.count_tokens("x" * 10) == 3
            assert policy.count_tokens("x" * 8) == 2
        assert sum("len(text)/4" in r.message for r in caplog.records) == 1  # warned once
    finally:
        server.close()


def test_api_key_is_sent_but_never_reported(server: FakeServer, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DD_TEST_KEY", SECRET)
    with caplog.at_level(logging.DEBUG), make_policy(server.base_url, max_retries=1) as policy:
        gens = policy.generate([req("ok"), req("[garbage] z"), req("[429x1] y")])
    assert f"Bearer {SECRET}" in server.auth
    assert gens[1].finish_reason == "error"
    assert all(SECRET not in (g.error or "") for g in gens)
    assert SECRET not in caplog.text


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="backoff_initail"):
        make_policy("http://127.0.0.1:9/v1", extra={"backoff_initail": 1})
    with pytest.raises(ValueError, match="chat_prefix"):
        make_policy("http://127.0.0.1:9/v1", extra={"chat_prefix": "sglang"})


def test_unreachable_server_is_an_error_not_an_exception() -> None:
    policy = make_policy("http://127.0.0.1:9/v1", max_retries=1)  # nothing listens on port 9
    [gen] = policy.generate([req("x")])
    policy.close()
    assert gen.finish_reason == "error" and "Connection" in gen.error


def test_helpers() -> None:
    prompt = formatting.build_prompt("P?", code=False) + "<think>\nabc"
    system, problem, so_far = split_r1_prompt(prompt)
    assert (system, problem, so_far) == (formatting.SYSTEM_PROMPT, "P?", "<think>\nabc")
    assert split_r1_prompt("plain text") == (None, None, "plain text")
    assert reasoning_to_text("r", "", "length") == "<think>\nr"  # cut inside reasoning: left open
    assert reasoning_to_text("r", "<answer>\nx\n</answer>\n", "stop") == "<think>\nr\n</think>\n<answer>\nx\n</answer>\n"
    assert reasoning_to_text(None, "plain", "stop") == "plain"
