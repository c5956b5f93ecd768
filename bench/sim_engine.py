"""A simulated continuous-batching inference engine behind an OpenAI-compatible ``/v1/completions``.

    python bench/sim_engine.py --port 8011 --slots 128 --step-ms 3 --median-tokens 200 --sigma 1.0

    with SimServer(SimConfig(slots=64, step_ms=5)) as sim:   # in-process, 127.0.0.1, a free port
        policy_cfg = {"backend": "openai", "api": "completions", "base_url": sim.base_url, "model": "sim"}
        ...; sim.stats(); sim.reset()

Engine: ``slots`` sequences run at once; a request joins the running batch as soon as a slot is
free (at the next step boundary), else waits in a FIFO queue. Every step takes ``step_ms`` and
gives one token to every running sequence, so a sequence of n tokens runs n steps; its response is
sent the moment it finishes. Time is event driven on a wall-clock grid (step k of a busy period ends
at ``epoch + k * step``): no per-step work, so hundreds of slots cost nothing while they run.

Output text is scripted per trajectory (``bench/sim_script.py``): code segments end at the
``</code>`` stop, the last one at ``</answer>``. As vLLM does, the stop string is not in the text,
``finish_reason`` is ``"stop"`` with ``stop_reason`` the stop string (``null`` at EOS), and
``usage.completion_tokens`` counts the stop string's token. ``max_tokens`` cuts the text
(``"length"``). ``/v1/models`` says ``owned_by: vllm``; ``POST /tokenize`` counts tokens the
simulator's way (one per word), which the ``openai`` backend uses for executor text.

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/completions``, ``POST /tokenize``,
``GET /stats`` (``?requests=1`` adds every request record), ``POST /reset`` (clears the records;
a JSON body may change the settings; refused with 409 while requests are in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import statistics
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sim_script import Script, count_tokens, identify  # noqa: E402

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}


@dataclass
class SimConfig:
    """Engine and script settings."""

    slots: int = 128
    step_ms: float = 3.0
    median_tokens: float = 200.0
    sigma: float = 1.0
    max_calls: int = 10
    seed: int = 0
    model: str = "sim"
    max_model_len: int = 131072
    tokenize: bool = True  # serve /tokenize (off: 404, and the openai backend estimates len/4 instead)

    def script(self) -> Script:
        return Script(seed=self.seed, median_tokens=self.median_tokens, sigma=self.sigma, max_calls=self.max_calls)


@dataclass
class _Seq:
    """One request in the engine. Steps are counted within the engine's current busy period."""

    rid: int
    traj: str
    segment: int
    n_tokens: int
    arrival: float
    done: asyncio.Future
    start: float = math.nan  # wall time it began running (a step boundary)
    finish: float = math.nan  # wall time of the step that gave its last token
    done_step: int = 0
    sent: float = math.nan  # when the response left (>= finish; the gap is the simulator's lag)
    finish_reason: str = ""


class Engine:
    """The continuous-batching clock and its records (runs on one asyncio loop)."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.script = cfg.script()
        self.running: list[_Seq] = []
        self.queue: deque[_Seq] = deque()
        self.epoch: float | None = None  # start of the current busy period
        self.records: list[_Seq] = []
        self.busy_steps = 0  # steps of finished busy periods
        self.max_running = 0
        self.max_in_flight = 0
        self.next_rid = 0
        self.t0: float | None = None  # first arrival since the last reset
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def dt(self) -> float:
        return self.cfg.step_ms / 1000.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._clock())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reset(self, **changes: Any) -> None:
        if self.running or self.queue:
            raise RuntimeError("requests are in flight")
        self.cfg = dataclasses.replace(self.cfg, **changes)
        self.script = self.cfg.script()
        self.records, self.busy_steps, self.max_running, self.max_in_flight, self.t0 = [], 0, 0, 0, None

    # --- the clock ----------------------------------------------------------------------------
    def _step_now(self, now: float) -> int:
        assert self.epoch is not None
        return math.floor((now - self.epoch) / self.dt + 1e-9)

    def _admit(self, seq: _Seq, step: int) -> None:
        assert self.epoch is not None
        seq.start = self.epoch + step * self.dt
        seq.done_step = step + seq.n_tokens
        self.running.append(seq)
        self.max_running = max(self.max_running, len(self.running))

    def _advance(self, now: float) -> None:
        """Finish every sequence whose last step ended by ``now``; admit queued ones at that step."""
        while self.running:
            step = min(s.done_step for s in self.running)
            if step > self._step_now(now):
                return
            assert self.epoch is not None
            t = self.epoch + step * self.dt
            for seq in [s for s in self.running if s.done_step == step]:
                self.running.remove(seq)
                seq.finish = t
                if not seq.done.done():
                    seq.done.set_result(None)
            while self.queue and len(self.running) < self.cfg.slots:
                self._admit(self.queue.popleft(), step)
            if not self.running:  # the busy period ends
                self.busy_steps += step
                self.epoch = None

    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            self._advance(loop.time())
            if self.running:
                assert self.epoch is not None
                due = self.epoch + min(s.done_step for s in self.running) * self.dt
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, due - loop.time()))
            else:
                await self._wake.wait()

    async def run(self, traj: str, segment: int, n_tokens: int, finish_reason: str = "stop") -> _Seq:
        """Queue a sequence of ``n_tokens`` tokens; returns once it has finished."""
        now = asyncio.get_running_loop().time()
        self._advance(now)
        if self.t0 is None:
            self.t0 = now
        seq = _Seq(self.next_rid, traj, segment, max(1, n_tokens), now, asyncio.get_running_loop().create_future(),
                   finish_reason=finish_reason)
        self.next_rid += 1
        self.records.append(seq)
        if self.epoch is None:
            self.epoch = now
            self._admit(seq, 0)
        elif len(self.running) < self.cfg.slots and not self.queue:
            self._admit(seq, self._step_now(now) + 1)  # joins at the next step boundary
        else:
            self.queue.append(seq)
        self.max_in_flight = max(self.max_in_flight, len(self.running) + len(self.queue))
        self._wake.set()
        await seq.done
        seq.sent = asyncio.get_running_loop().time()
        return seq

    # --- the record ---------------------------------------------------------------------------
    def stats(self, *, requests: bool = False) -> dict[str, Any]:
        """Totals, queue waits and per-trajectory engine time (see :func:`summarize`)."""
        return summarize(self.records, self.cfg, busy_steps=self.busy_steps + self._open_steps(),
                         max_running=self.max_running, max_in_flight=self.max_in_flight,
                         in_flight=len(self.running) + len(self.queue), t0=self.t0, requests=requests)

    def _open_steps(self) -> int:
        if self.epoch is None:
            return 0
        return max(0, self._step_now(asyncio.get_running_loop().time()))


def _dist(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0, "total": 0.0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    ys = sorted(xs)
    return {"n": len(ys), "total": round(sum(ys), 4), "mean": round(statistics.fmean(ys), 4),
            "p50": round(ys[len(ys) // 2], 4), "p95": round(ys[min(len(ys) - 1, int(0.95 * len(ys)))], 4),
            "max": round(ys[-1], 4)}


def summarize(records: list[_Seq], cfg: SimConfig, *, busy_steps: int, max_running: int, max_in_flight: int,
              in_flight: int, t0: float | None, requests: bool = False) -> dict[str, Any]:
    """The ``/stats`` document. Times are seconds; ``engine_s`` of a trajectory is the sum of its
    segments' running time (tokens x step); ``gap_s`` the time between one of its responses and its
    next request (tools, and waiting for the rest of a round)."""
    dt = cfg.step_ms / 1000.0
    done = [r for r in records if not math.isnan(r.sent)]
    trajs: dict[str, dict[str, Any]] = {}
    for r in sorted(done, key=lambda r: r.arrival):
        t = trajs.setdefault(r.traj, {"requests": 0, "tokens": 0, "engine_s": 0.0, "wait_s": 0.0, "gap_s": 0.0,
                                      "first_arrival": r.arrival, "last_sent": r.sent})
        if t["requests"]:
            t["gap_s"] += max(0.0, r.arrival - t["last_sent"])
        t["requests"] += 1
        t["tokens"] += r.n_tokens
        t["engine_s"] += r.n_tokens * dt
        t["wait_s"] += r.start - r.arrival
        t["last_sent"] = max(t["last_sent"], r.sent)
    base = t0 if t0 is not None else 0.0
    for t in trajs.values():
        t["span_s"] = t["last_sent"] - t["first_arrival"]
        t["first_arrival"] -= base
        t["last_sent"] -= base
        for k in ("engine_s", "wait_s", "gap_s", "span_s", "first_arrival", "last_sent"):
            t[k] = round(t[k], 4)
    tokens = sum(r.n_tokens for r in done)
    span = (max(r.sent for r in done) - base) if done else 0.0
    out: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "requests": len(done),
        "in_flight": in_flight,
        "total_tokens": tokens,
        "busy_slot_steps": tokens,
        "busy_steps": busy_steps,
        "busy_engine_s": round(tokens * dt, 4),
        "busy_period_s": round(busy_steps * dt, 4),
        "span_s": round(span, 4),
        "idle_s": round(max(0.0, span - busy_steps * dt), 4),
        "occupancy": round(tokens / (cfg.slots * busy_steps), 4) if busy_steps else 0.0,
        "occupancy_span": round(tokens * dt / (cfg.slots * span), 4) if span else 0.0,
        "max_running": max_running,
        "max_in_flight": max_in_flight,
        "finish_reasons": {k: sum(r.finish_reason == k for r in done) for k in sorted({r.finish_reason for r in done})},
        "queue_wait_s": _dist([r.start - r.arrival for r in done]),
        "lag_s": _dist([r.sent - r.finish for r in done]),
        "trajectories": trajs,
        "max_trajectory_engine_s": round(max((t["engine_s"] for t in trajs.values()), default=0.0), 4),
    }
    if requests:
        out["request_records"] = [
            {"rid": r.rid, "traj": r.traj, "segment": r.segment, "tokens": r.n_tokens, "arrival": round(r.arrival - base, 5),
             "start": round(r.start - base, 5), "finish": round(r.finish - base, 5), "sent": round(r.sent - base, 5),
             "finish_reason": r.finish_reason}
            for r in done
        ]
    return out


# --- the OpenAI-compatible protocol ----------------------------------------------------------------
class BadRequest(ValueError):
    pass


async def complete(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    """Answer one ``/v1/completions`` body (vLLM's response shape)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be one string")
    if body.get("stream"):
        raise BadRequest("stream is not supported")
    if int(body.get("n") or 1) != 1:
        raise BadRequest("n > 1 is not supported")
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    max_tokens = body.get("max_tokens")
    max_tokens = 16 if max_tokens is None else int(max_tokens)  # the OpenAI API's default
    if max_tokens < 1:
        raise BadRequest("max_tokens must be at least 1")
    traj, index = identify(prompt)
    seg = engine.script.segment(traj, index, code_allowed="</code>" in stops, open_think=prompt.endswith("<think>\n"))
    n_words = len(seg.words)
    if seg.stop in stops:  # ends at the stop string: text without it, its token counted
        full, text, reason, stop_reason = n_words + 1, seg.text(), "stop", seg.stop
    else:  # not asked to stop there: the stop text is written, then EOS
        full, text, reason, stop_reason = n_words + 2, seg.text() + seg.stop, "stop", None
    n = min(full, max_tokens)
    if n < full:  # cut by max_tokens (the stop string is its own token: reaching it counts as the stop)
        text, reason, stop_reason = seg.text(min(n, n_words)) + (seg.stop if n > n_words else ""), "length", None
    await engine.run(traj, index, n, reason)
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason, "stop_reason": stop_reason,
              "prompt_logprobs": None}
    prompt_tokens = count_tokens(prompt)
    return {"id": f"cmpl-{uuid.uuid4().hex[:16]}", "object": "text_completion", "created": int(time.time()),
            "model": body.get("model") or engine.cfg.model, "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}}


class SimServer:
    """The engine behind a minimal asyncio HTTP/1.1 server (keep-alive, JSON bodies)."""

    def __init__(self, cfg: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cfg = cfg or SimConfig()
        self.host, self.port = host, port
        self.engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def serve(self) -> None:
        """Start listening (on the running loop); sets ``port`` when it was 0."""
        self.engine = Engine(self.cfg)
        self.engine.start()
        self._server = await asyncio.start_server(self._connection, self.host, self.port, limit=1 << 24, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self.engine is not None:
            await self.engine.stop()

    # --- in a background thread ------------------------------------------------------------
    def start(self) -> SimServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="sim-engine", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the simulated engine did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    def _call(self, fn: Any) -> Any:
        assert self._loop is not None

        async def wrap() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(30)

    def stats(self, *, requests: bool = False) -> dict[str, Any]:
        """``/stats`` without HTTP (from another thread)."""
        return self._call(lambda: self.engine.stats(requests=requests))

    def reset(self, **changes: Any) -> None:
        """``/reset`` without HTTP; raises RuntimeError while requests are in flight."""
        self._call(lambda: self.engine.reset(**changes))

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP ----------------------------------------------------------------------------------
    async def _route(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        assert self.engine is not None
        path, _, query = target.partition("?")
        try:
            data = json.loads(body) if body else {}
        except json.JSONDecodeError:
            return 400, _error("body is not JSON")
        if method == "GET" and path in ("/v1/models", "/models"):
            return 200, {"object": "list", "data": [{"id": self.engine.cfg.model, "object": "model", "owned_by": "vllm",
                                                      "max_model_len": self.engine.cfg.max_model_len}]}
        if method == "GET" and path == "/health":
            return 200, {}
        if method == "GET" and path == "/stats":
            return 200, self.engine.stats(requests="requests=1" in query)
        if method == "POST" and path in ("/v1/completions", "/completions"):
            try:
                return 200, await complete(self.engine, data)
            except (BadRequest, TypeError, ValueError) as err:
                return 400, _error(str(err))
        if method == "POST" and path in ("/tokenize", "/v1/tokenize") and self.engine.cfg.tokenize:
            text = data.get("prompt")
            if not isinstance(text, str):
                return 400, _error("prompt must be a string")
            n = count_tokens(text)
            return 200, {"count": n, "tokens": list(range(n)), "max_model_len": self.engine.cfg.max_model_len}
        if method == "POST" and path == "/reset":
            fields = {f.name for f in dataclasses.fields(SimConfig)}
            unknown = set(data) - fields
            if unknown:
                return 400, _error(f"unknown settings {sorted(unknown)}")
            try:
                self.engine.reset(**data)
            except RuntimeError as err:
                return 409, _error(str(err))
            return 200, {"config": dataclasses.asdict(self.engine.cfg)}
        return 404, _error(f"no route {method} {path}")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, target, version = line.decode("latin-1").split(maxsplit=2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await _read_chunked(reader)
                else:
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, payload = await self._route(method.upper(), target, body)
                data = json.dumps(payload).encode()
                head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(data)}\r\n\r\n")
                writer.write(head.encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close" or version.strip() == "HTTP/1.0":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass  # a closed connection, a malformed request, or the server shutting down
        finally:
            self._connections.discard(task)
            writer.close()


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "BadRequestError"}}


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readline()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8011)
    defaults = SimConfig()
    for f in dataclasses.fields(SimConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            ap.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=value)
        else:
            ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value)
    args = ap.parse_args(argv)
    cfg = SimConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SimConfig)})

    async def run() -> None:
        server = SimServer(cfg, host=args.host, port=args.port)
        await server.serve()
        print(f"simulated engine on {server.base_url} ({cfg.slots} slots, {cfg.step_ms} ms/step)", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
