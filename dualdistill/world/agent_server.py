"""The synthetic world's agent behind an OpenAI-compatible chat endpoint: a local stand-in for the paper's
agentic teacher (OpenHands driving Claude), for the ``codeact`` backend to talk to.

    python -m dualdistill.world.agent_server --problems outputs/rehearsal/inputs/agent_world.jsonl --port 8001
    # then: PolicyConfig(backend="codeact", base_url="http://127.0.0.1:8001/v1", model="world-agent")

or, started and stopped by the run itself, a policy's ``serve`` section (``params/rehearsal.yaml``)::

    agent: {backend: codeact, model: world-agent,
            serve: {command: ["{python}", -m, dualdistill.world.agent_server, --problems, FILE, --port, "{port}"]}}

``POST /v1/chat/completions`` plays the scripted agent of :mod:`dualdistill.world.teachers` as a chat
model in the CodeAct protocol (``backends/codeact.py``): the first user message is the problem (or a
second teacher's problem: the problem followed by the first attempt), looked up by its text among the
world problems of ``--problems`` (``Problem`` dicts with their generator parameters, as
``dualdistill.pipeline.rehearsal`` writes them); with no observation yet, the reply is the agent's reasoning and
one fenced Python block (``agent_program``: exact code on computation families, a brute force that
cannot finish on insight families), cut at the request's stop strings like a real server (vLLM's
``stop_reason`` names the stop string); after an observation turn (``formatting.CODEACT_OBSERVATION``)
the reply reads the program's output and answers with ``\\boxed{}`` (``agent_answer``: the printed
value, or a guess after an error or a timeout). The code itself is run by the caller's sandbox, as with
a real chat model. Replies are deterministic given the request's ``seed``, the problem and the turn.
``usage.completion_tokens`` counts digits, words and punctuation marks (a chat model's own count). A
problem it does not know is an HTTP 400 naming it. ``GET /v1/models`` lists ``--model``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.world.teachers import DEFAULT_OPTIONS, agent_answer, agent_program

DEFAULT_MODEL = "world-agent"
OBSERVATION_PREFIX = formatting.CODEACT_OBSERVATION.split("{output}")[0]
_TOKEN_RE = re.compile(r"\d|[A-Za-z]+|[^\sA-Za-z\d]")


class UnknownProblem(ValueError):
    """The chat's first user message is not one of the server's world problems."""


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


class WorldAgent:
    """The agent's side of a chat: which problem, which turn, what it writes (see the module docstring)."""

    def __init__(self, problems: list[Problem], *, clever_prob: float | None = None,
                 typo_prob: float | None = None) -> None:
        missing = [p.id for p in problems if p.family is None]
        if missing:
            raise ValueError(f"not world problems (no family): {missing[:3]}")
        self.by_text = {p.problem.strip(): p for p in problems}
        defaults = DEFAULT_OPTIONS["agent"]
        self.clever_prob = defaults["clever_prob"] if clever_prob is None else clever_prob
        self.typo_prob = defaults["typo_prob"] if typo_prob is None else typo_prob
        self.counts = {"program": 0, "answer": 0}

    def problem_of(self, message: str) -> Problem:
        """The world problem a first user message asks: its exact text, or the longest known text it
        starts with (a second teacher sees the problem followed by the first attempt)."""
        text = message.strip()
        if text in self.by_text:
            return self.by_text[text]
        starts = [t for t in self.by_text if text.startswith(t)]
        if not starts:
            raise UnknownProblem(f"unknown problem (not among the server's {len(self.by_text)} world problems): "
                                 f"{text[:120]!r}")
        return self.by_text[max(starts, key=len)]

    def reply(self, messages: list[dict[str, Any]], seed: int | None) -> str:
        """The assistant's next turn for a chat transcript."""
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if not users:
            raise UnknownProblem("the chat has no user message (the problem)")
        problem = self.problem_of(_text(messages[users[0]].get("content")))
        later = messages[users[0] + 1:]
        observations = [_text(m.get("content")) for m in later
                        if m.get("role") in ("user", "tool") and _text(m.get("content")).startswith(OBSERVATION_PREFIX)]
        wrote = any(m.get("role") == "assistant" for m in later)
        tag = f"agent-server|{seed}|{problem.id}|"
        if not wrote:
            self.counts["program"] += 1
            prog = agent_program(problem, random.Random(tag + "program"), clever_prob=self.clever_prob,
                                 typo_prob=self.typo_prob)
            return f"{prog.think}\n\n```python\n{prog.code}\n```\n"
        self.counts["answer"] += 1
        output = observations[-1][len(OBSERVATION_PREFIX):] if observations else None
        segments, _ = agent_answer(problem, output, random.Random(tag + "answer"))
        return "\n\n".join(s.text for s in segments)


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def completion(agent: WorldAgent, body: dict[str, Any], model: str) -> dict[str, Any]:
    """The chat completion object answering ``body`` (stop strings and ``max_tokens`` applied)."""
    text = agent.reply(body.get("messages") or [], body.get("seed"))
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    hits = [(text.find(s), s) for s in stops if s and s in text]
    stop_reason = None
    finish = "stop"
    if hits:
        pos, stop_reason = min(hits)
        text = text[:pos]
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    n = count_tokens(text)
    if limit is not None and n > int(limit):
        matches = list(_TOKEN_RE.finditer(text))
        text = text[: matches[int(limit) - 1].end()] if int(limit) > 0 else ""
        n, finish, stop_reason = count_tokens(text), "length", None
    prompt_tokens = sum(count_tokens(_text(m.get("content"))) for m in body.get("messages") or [])
    return {
        "id": f"chatcmpl-world-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                     "stop_reason": stop_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n},
    }


class AgentHTTPServer(ThreadingHTTPServer):
    """A thread per connection; a listen backlog that takes a teacher's whole window of requests at once
    (http.server's default of 5 refuses connections under 16 concurrent requests)."""

    daemon_threads = True
    request_queue_size = 256


def make_handler(agent: WorldAgent, model: str) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model",
                                                             "owned_by": "dualdistill-world"}]})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as err:
                return self._error(400, f"request body is not JSON: {err}")
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._error(404, f"no route {self.path} (this server speaks /v1/chat/completions)")
            if body.get("model") not in (None, model):
                return self._error(404, f"model {body.get('model')!r} is not served here (serving {model!r})")
            try:
                with lock:
                    payload = completion(agent, body, model)
            except UnknownProblem as err:
                return self._error(400, str(err))
            self._send(200, payload)

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"agent-server: {self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

    return Handler


def load_problems(path: str | Path) -> list[Problem]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--problems {path}: no such file (dualdistill.pipeline.rehearsal prepare writes it)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Problem.from_dict(r) for r in rows]


def serve(problems: list[Problem], *, host: str = "127.0.0.1", port: int = 0, model: str = DEFAULT_MODEL,
          **options: float | None) -> AgentHTTPServer:
    """A running server (in a daemon thread) for tests; ``server.shutdown()`` ends it."""
    httpd = AgentHTTPServer((host, port), make_handler(WorldAgent(problems, **options), model))
    threading.Thread(target=httpd.serve_forever, name="agent-server", daemon=True).start()
    return httpd


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", required=True, help="JSONL of world problems (Problem dicts with family and meta)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the served model name")
    ap.add_argument("--clever-prob", type=float, default=None, help="share of closed-form programs on insight problems")
    ap.add_argument("--typo-prob", type=float, default=None, help="share of mistyped operands on computation problems")
    args = ap.parse_args(argv)
    problems = load_problems(args.problems)
    agent = WorldAgent(problems, clever_prob=args.clever_prob, typo_prob=args.typo_prob)
    httpd = AgentHTTPServer((args.host, args.port), make_handler(agent, args.model))
    print(f"agent-server: {len(problems)} world problems, model {args.model!r} at http://{args.host}:{args.port}/v1",
          file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
