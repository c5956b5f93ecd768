"""The simulated continuous-batching engine (``bench/sim_engine.py``) on 127.0.0.1, a free port.

Batching and queueing are checked on the engine's own step counters (wall time only sets how far
apart requests may arrive: a step is 20-30 ms and the bounds allow several steps of slack).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from bench.sim_engine import SimConfig, SimServer
from bench.sim_script import Script, count_tokens, trajectory_key

SYSTEM = "A system text that mentions <think> </think>, <code> </code> and <executor> </executor> tags."


def prompt(problem: str, completion: str = "<think>\n") -> str:
    return f"<｜begin▁of▁sentence｜>{SYSTEM}<｜User｜>{problem}<｜Assistant｜>{completion}"


@pytest.fixture
def sim_factory() -> Iterator[Any]:
    servers: list[SimServer] = []

    def make(**kw: Any) -> SimServer:
        servers.append(SimServer(SimConfig(**kw)).start())
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


def complete(sim: SimServer, problem: str, *, completion: str = "<think>\n", max_tokens: int = 1000,
             stop: tuple[str, ...] = ("</code>", "</answer>")) -> dict[str, Any]:
    body = {"model": "sim", "prompt": prompt(problem, completion), "max_tokens": max_tokens, "stop": list(stop),
            "temperature": 0.6, "seed": 1}
    r = httpx.post(f"{sim.base_url}/completions", json=body, timeout=60)
    r.raise_for_status()
    return r.json()


def concurrently(sim: SimServer, problems: list[str], **kw: Any) -> list[dict[str, Any]]:
    out: list[Any] = [None] * len(problems)
    barrier = threading.Barrier(len(problems))

    def one(i: int) -> None:
        barrier.wait()
        out[i] = complete(sim, problems[i], **kw)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_equal_requests_run_as_one_batch(sim_factory):
    sim = sim_factory(slots=8, step_ms=25, median_tokens=12, sigma=0.0)
    outs = concurrently(sim, [f"p{i}" for i in range(8)])
    assert all(o["usage"]["completion_tokens"] == 12 for o in outs)
    st = sim.stats()
    assert st["max_running"] == 8 and st["total_tokens"] == 96
    assert 12 <= st["busy_steps"] <= 12 + 6  # together ~ the time of one (one at a time: 96 steps)
    assert st["queue_wait_s"]["max"] <= 7 * 0.025  # joined at the next step boundaries, never queued


def test_requests_beyond_the_slots_queue_fifo(sim_factory):
    sim = sim_factory(slots=2, step_ms=20, median_tokens=10, sigma=0.0)
    concurrently(sim, [f"q{i}" for i in range(6)])
    st = sim.stats(requests=True)
    assert st["max_running"] == 2 and st["max_in_flight"] == 6
    assert 30 <= st["busy_steps"] <= 30 + 6  # three waves of 10 steps
    recs = sorted(st["request_records"], key=lambda r: r["rid"])  # rid = arrival order
    queued = [r for r in recs if r["start"] - r["arrival"] > 0.02 + 1e-6]  # waited longer than a step boundary
    assert len(queued) == 4
    finishes = [r["finish"] for r in recs]
    assert all(any(abs(q["start"] - f) < 1e-4 for f in finishes) for q in queued)  # took a slot the moment it freed
    starts = [r["start"] for r in recs]
    assert starts == sorted(starts)  # first come, first served


def test_code_stop_like_vllm(sim_factory):
    sim = sim_factory(slots=4, step_ms=1, median_tokens=30, sigma=0.5, max_calls=3)
    client = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
    models = client.models.list().data
    assert models[0].id == "sim" and models[0].owned_by == "vllm"
    r = client.completions.create(model="sim", prompt=prompt("code please"), max_tokens=1000,
                                  stop=["</code>", "</answer>"])
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and choice.model_extra["stop_reason"] == "</code>"
    assert "</code>" not in choice.text and choice.text.rstrip().endswith(")")
    assert "\n</think>\n<code>\nprint(" in choice.text and choice.text.endswith("\n")
    assert not choice.text.startswith("<think>")  # the prompt already opened the think block
    assert r.usage.completion_tokens == count_tokens(choice.text) + 1  # the stop string's token counts
    tok = httpx.post(sim.base_url.removesuffix("/v1") + "/tokenize",
                     json={"model": "sim", "prompt": "<executor>\n42\n</executor>\n", "add_special_tokens": False})
    assert tok.json()["count"] == 3


def test_max_tokens_cuts_with_length(sim_factory):
    sim = sim_factory(slots=4, step_ms=1, median_tokens=50, sigma=0.0)
    out = complete(sim, "short", max_tokens=5)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length" and choice["stop_reason"] is None
    assert out["usage"]["completion_tokens"] == 5 == count_tokens(choice["text"])
    assert sim.stats()["total_tokens"] == 5


def test_script_is_deterministic_and_walks_the_tool_loop(sim_factory):
    cfg = dict(slots=4, step_ms=1, median_tokens=20, sigma=1.0, max_calls=4, seed=7)
    a, b = sim_factory(**cfg), sim_factory(**cfg)
    first = complete(a, "same problem")["choices"][0]["text"]
    assert complete(a, "same problem")["choices"][0]["text"] == first == complete(b, "same problem")["choices"][0]["text"]
    assert complete(a, "another problem")["choices"][0]["text"] != first
    # a minimal tool loop: the trajectory makes exactly the scripted number of calls, then answers
    calls = Script(seed=7, median_tokens=20, sigma=1.0, max_calls=4).calls(trajectory_key("walk"))
    completion, n_code = "<think>\n", 0
    for _ in range(10):
        choice = complete(a, "walk", completion=completion)["choices"][0]
        completion += choice["text"] + choice["stop_reason"] + "\n"
        if choice["stop_reason"] == "</answer>":
            break
        n_code += 1
        assert choice["text"].startswith("<think>\n") == (n_code > 1)
        completion += f"<executor>\n{n_code}\n</executor>\n"
    assert n_code == calls and "\\boxed{" in completion
    # without the code stop (call cap, tools off) the answer comes at once
    assert complete(a, "walk", stop=("</answer>",))["choices"][0]["stop_reason"] == "</answer>"


def test_stats_add_up_and_reset(sim_factory):
    sim = sim_factory(slots=3, step_ms=2, median_tokens=15, sigma=0.8)
    concurrently(sim, [f"s{i}" for i in range(5)])
    complete(sim, "s0", completion="<think>\na\n</think>\n<code>\nprint(1)\n</code>\n<executor>\n1\n</executor>\n")
    st = httpx.get(sim.base_url.removesuffix("/v1") + "/stats", params={"requests": 1}).json()
    recs = st["request_records"]
    assert st["requests"] == len(recs) == 6 and st["in_flight"] == 0
    assert st["total_tokens"] == st["busy_slot_steps"] == sum(r["tokens"] for r in recs)
    trajs = st["trajectories"]
    assert len(trajs) == 5 and trajs[trajectory_key("s0")]["requests"] == 2
    assert sum(t["tokens"] for t in trajs.values()) == st["total_tokens"]
    assert st["busy_engine_s"] == pytest.approx(sum(t["engine_s"] for t in trajs.values()), abs=1e-3)
    assert st["busy_engine_s"] == pytest.approx(st["total_tokens"] * 0.002)
    assert st["max_trajectory_engine_s"] == max(t["engine_s"] for t in trajs.values())
    assert st["busy_steps"] * 3 >= st["busy_slot_steps"] and 0 < st["occupancy"] <= 1
    assert all(r["arrival"] <= r["start"] <= r["finish"] <= r["sent"] for r in recs)
    assert all(r["finish"] - r["start"] == pytest.approx(r["tokens"] * 0.002, abs=1e-4) for r in recs)
    r = httpx.post(sim.base_url.removesuffix("/v1") + "/reset", json={"step_ms": 30})
    assert r.status_code == 200 and r.json()["config"]["step_ms"] == 30
    assert sim.stats()["requests"] == 0


def test_reset_refused_while_in_flight(sim_factory):
    sim = sim_factory(slots=2, step_ms=30, median_tokens=20, sigma=0.0)
    t = threading.Thread(target=complete, args=(sim, "long"))
    t.start()
    try:
        for _ in range(100):  # until the request has arrived
            if sim.stats()["in_flight"]:
                break
            threading.Event().wait(0.01)
        assert httpx.post(sim.base_url.removesuffix("/v1") + "/reset").status_code == 409
    finally:
        t.join(30)
    assert httpx.post(sim.base_url.removesuffix("/v1") + "/reset").status_code == 200


def test_tokenize_can_be_switched_off(sim_factory):
    sim = sim_factory(slots=1, step_ms=1, tokenize=False)
    root = sim.base_url.removesuffix("/v1")
    assert httpx.post(root + "/tokenize", json={"prompt": "a b c"}).status_code == 404
    assert httpx.post(root + "/reset", json={"tokenize": True}).status_code == 200
    assert httpx.post(root + "/tokenize", json={"prompt": "a b c"}).json()["count"] == 3
    assert httpx.post(root + "/reset", json={"no_such_setting": 1}).status_code == 400
