"""The tool loop (dualdistill.rollout.tool_loop) with a scripted fake policy (exact chunks) and the hf backend.

The fake policy plays a fixed list of model turns per problem, honouring the stop strings it is
asked for and counting one token per character, so segments, budgets and counts are exact. Code
really runs in the project's sandbox.
"""

from __future__ import annotations

import pytest

from dualdistill.config import SamplingSettings
from dualdistill.formats import formatting
from dualdistill.formats.formatting import CALL_CAP_NOTICE, Segment
from dualdistill.formats.problem import Problem
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy
from dualdistill.rollout.tool_loop import RolloutItem, executor_text, generate_trajectories


class TurnPolicy(Policy):
    """Plays ``turns[problem_id][k]`` at the k-th call for that trajectory; 1 token = 1 character."""

    name = "turns"

    def __init__(self, turns: dict[str, list[str]]) -> None:
        self.turns = turns
        self.calls: list[list[GenerationRequest]] = []
        self.step: dict[tuple[str, int], int] = {}

    def count_tokens(self, text: str) -> int:
        return len(text)

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        self.calls.append(requests)
        out = []
        for req in requests:
            pid = req.context["problem"].id
            k = self.step.get((pid, req.context["sample"]), 0)
            self.step[(pid, req.context["sample"])] = k + 1
            if req.context.get("fail"):
                out.append(Generation("", "error", 0, error="server said no"))
                continue
            text = self.turns[pid][k]
            hits = [(text.find(s), s) for s in req.stop if s in text]
            stop = None
            if hits:
                pos, stop = min(hits)
                text = text[:pos]
            if len(text) + len(stop or "") > req.max_new_tokens:
                out.append(Generation(text[: req.max_new_tokens], "length", req.max_new_tokens))
            elif stop:
                out.append(Generation(text, "stop", len(text) + len(stop), stop=stop))
            else:
                out.append(Generation(text, "eos", len(text)))
        return out


def item(pid: str, **context) -> RolloutItem:
    prob = Problem(id=pid, problem=f"problem {pid}", answer="42", source="test")
    return RolloutItem(problem=prob, prompt=formatting.build_prompt(prob.problem, code=True), role="agent",
                       context=context)


@pytest.fixture(scope="module")
def pool():
    from dualdistill.sandbox.pool import SandboxPool

    p = SandboxPool(2, timeout=3.0, memory_mb=512)
    yield p
    p.close()


def run(policy, items, pool, **kw):
    sampling = {k: kw.pop(k) for k in ("temperature", "max_code_calls", "top_p", "top_k", "max_in_flight") if k in kw}
    settings = SamplingSettings(**{"max_code_calls": 10, "temperature": 0.6, **sampling})
    args = {"budget": 4096, "sandbox_pool": pool, "progress": False}
    args.update(kw)
    return generate_trajectories(policy, items, settings, **args)


CODE_TURN = "Let me compute.\n</think>\n<code>\nx = 6*7\nprint(x)\n</code>\n"
ANSWER_TURN = "<think>\nSo it is 42.\n</think>\n<answer>\nThe answer is \\boxed{42}\n</answer>\n"


def test_code_runs_and_state_persists(pool):
    policy = TurnPolicy({"p": [CODE_TURN, "<code>\nprint(x + 1)\n</code>\n", ANSWER_TURN]})
    [t] = run(policy, [item("p")], pool)
    assert [(s.kind, s.text) for s in t.segments] == [
        ("think", "Let me compute."),
        ("code", "x = 6*7\nprint(x)"), ("executor", "42"),
        ("code", "print(x + 1)"), ("executor", "43"),  # same sandbox: x survived
        ("think", "So it is 42."),
        ("answer", "The answer is \\boxed{42}"),
    ]
    assert [s.meta.get("status") for s in t.segments if s.kind in ("code", "executor")] == ["ok"] * 4
    assert t.finish_reason == "answer" and t.final_answer == "42" and t.format_valid
    assert (t.n_code_calls, t.n_code_errors, t.n_code_timeouts) == (2, 0, 0)
    assert t.completion.startswith(formatting.GENERATION_PREFIX)
    # the policy saw prompt + completion so far, stopping at </code> and </answer>
    second = policy.calls[1][0]
    assert second.prompt.endswith("</code>\n<executor>\n42\n</executor>\n")
    assert second.stop == ["</code>", "</answer>"]
    # budget accounting: generated characters + inserted executor blocks
    inserted = len(executor_text("42\n")) + len(executor_text("43\n"))
    assert t.n_tokens == t.n_generated_tokens + inserted
    assert t.n_generated_tokens == (len(CODE_TURN) - 1) + len("<code>\nprint(x + 1)\n</code>") + (len(ANSWER_TURN) - 1)
    assert t.timings["execution"] > 0 and "generation" in t.timings


def test_errors_and_timeouts_are_counted(pool):
    turns = ["<code>\n1/0\n</code>", "<code>\nwhile True: pass\n</code>", ANSWER_TURN]
    [t] = run(TurnPolicy({"p": ["</think>\n" + turns[0], *turns[1:]]}), [item("p")], pool)
    codes = [s for s in t.segments if s.kind == "code"]
    execs = [s for s in t.segments if s.kind == "executor"]
    assert [s.meta["status"] for s in codes] == ["error", "timeout"]
    assert [s.meta["status"] for s in execs] == ["error", "timeout"]
    assert "ZeroDivisionError" in execs[0].text
    assert (t.n_code_calls, t.n_code_errors, t.n_code_timeouts) == (2, 2, 1)


def test_call_cap_notice_and_forced_answer(pool):
    turns = ["</think>\n<code>\nprint(1)\n</code>", "<code>\nprint(2)\n</code>",
             "<code>\nprint(3)\n</code>\n<answer>\nThe answer is \\boxed{3}\n</answer>\n"]
    policy = TurnPolicy({"p": turns})
    [t] = run(policy, [item("p")], pool, max_code_calls=2)
    assert [(s.kind, s.text, s.meta.get("status")) for s in t.segments] == [
        ("think", "", None),
        ("code", "print(1)", "ok"), ("executor", "1", "ok"),
        ("code", "print(2)", "ok"), ("executor", "2", "ok"),
        ("notice", CALL_CAP_NOTICE, None),
        ("code", "print(3)", "not_run"),  # written after the cap: never executed
        ("answer", "The answer is \\boxed{3}", None),
    ]
    assert policy.calls[2][0].stop == ["</answer>"]  # no code stop after the cap
    assert t.n_code_calls == 2 and t.finish_reason == "answer"


def test_call_cap_without_answer_finishes_call_cap(pool):
    turns = ["</think>\n<code>\nprint(1)\n</code>", "<think>\nno idea\n</think>\n"]
    [t] = run(TurnPolicy({"p": turns}), [item("p")], pool, max_code_calls=1)
    assert t.finish_reason == "call_cap" and t.segments[3].kind == "notice"


def test_budget_counts_executor_tokens(pool):
    # 1 token per character: the first turn (up to and incl. </code>) is 33 characters, the
    # executor block of a 200-character output pushes the trajectory past a 120-token budget
    turn = "</think>\n<code>\nprint('a' * 200)\n</code>"
    policy = TurnPolicy({"p": [turn, ANSWER_TURN]})
    [t] = run(policy, [item("p")], pool, budget=120)
    assert t.finish_reason == "length"
    assert t.n_generated_tokens == len(turn)
    assert t.n_tokens == len(turn) + len(executor_text("a" * 200))
    assert len(policy.calls) == 1  # no generation after the budget ran out

    # a budget that ends mid-generation: max_new_tokens is what is left after the executor
    policy = TurnPolicy({"p": [turn.replace("200", "2"), ANSWER_TURN]})
    budget = len(turn) - 2 + len(executor_text("aa")) + 10
    [t] = run(policy, [item("p")], pool, budget=budget)
    assert policy.calls[1][0].max_new_tokens == 10
    assert t.finish_reason == "length" and t.n_tokens == budget
    assert t.segments[-1].kind == "think" and t.segments[-1].meta["open"]


def test_tools_off_never_executes():
    turn = "</think>\n<code>\nprint(6*7)\n</code>\n<executor>\n42\n</executor>\n<answer>\n\\boxed{42}\n</answer>\n"
    policy = TurnPolicy({"p": [turn]})
    [t] = run(policy, [item("p")], None, tools=False)
    assert policy.calls[0][0].stop == ["</answer>"]
    code, ex = t.segments[1], t.segments[2]
    assert code.meta["status"] == "not_run" and ex.meta == {"status": "not_run", "written_by_model": True}
    assert t.n_code_calls == 0 and t.n_tokens == t.n_generated_tokens and t.finish_reason == "answer"


def test_batched_steps_and_few_sandboxes(pool):
    """Six trajectories with 1-3 code calls each: one generate call per step with every active
    trajectory; a pool of two sandboxes serves them all, each keeping its own state."""
    turns = {}
    for i in range(6):
        calls = 1 + i % 3
        steps = [f"</think>\n<code>\nv = {i}\nprint(v)\n</code>"]
        steps += ["<code>\nv += 10\nprint(v)\n</code>"] * (calls - 1)
        turns[f"p{i}"] = steps + [ANSWER_TURN]
    policy = TurnPolicy(turns)
    trajs = run(policy, [item(f"p{i}") for i in range(6)], pool)
    assert [t.problem_id for t in trajs] == [f"p{i}" for i in range(6)]
    for i, t in enumerate(trajs):
        outs = [s.text for s in t.segments if s.kind == "executor"]
        assert outs == [str(i + 10 * k) for k in range(1 + i % 3)]
        assert t.finish_reason == "answer"
    assert len(policy.calls[0]) == 6  # the first step batches everything
    assert sum(len(c) for c in policy.calls) == sum(len(v) for v in turns.values())


def test_a_batch_policy_has_at_most_one_batch_in_flight(pool):
    """A batch policy with a batch size (hf) gets at most one batch of trajectories under way, whatever
    max_in_flight says; without a batch size the window is max_in_flight."""
    from dualdistill.rollout.tool_loop import in_flight_window

    class Batched(TurnPolicy):
        max_batch = 4

    turns = {f"p{i}": [f"</think>\n<code>\nprint({i})\n</code>", ANSWER_TURN] for i in range(10)}
    policy = Batched(turns)
    trajs = run(policy, [item(f"p{i}") for i in range(10)], pool, max_in_flight=256)
    assert [t.finish_reason for t in trajs] == ["answer"] * 10
    assert max(len(c) for c in policy.calls) == 4
    seen: dict[str, int] = {}  # each trajectory takes two calls: code, then its answer (it ends)
    under_way = []
    for call in policy.calls:
        for req in call:
            seen[req.context["problem"].id] = seen.get(req.context["problem"].id, 0) + 1
        under_way.append(sum(1 for n in seen.values() if n == 1) + sum(1 for r in call if seen[r.context["problem"].id] == 2))
    assert max(under_way) == 4  # a fifth starts only when one of the first four has ended
    assert in_flight_window(policy, 256) == 4 and in_flight_window(policy, 2) == 2
    assert in_flight_window(TurnPolicy(turns), 256) == 256


def test_one_sandbox_serves_trajectories_in_turn():
    """Regression: all trajectories wait for the only sandbox while its holder finishes; the freed
    sandbox must go to the next one (not a stall)."""
    from dualdistill.sandbox.pool import SandboxPool

    turns = {f"p{i}": [f"</think>\n<code>\nprint({i})\n</code>", ANSWER_TURN] for i in range(3)}
    with SandboxPool(1, timeout=3.0, memory_mb=512) as one:
        trajs = run(TurnPolicy(turns), [item(f"p{i}") for i in range(3)], one)
    assert [[s.text for s in t.segments if s.kind == "executor"] for t in trajs] == [["0"], ["1"], ["2"]]


def test_generation_error_and_tag_neutralising(pool):
    turns = {"bad": ["x"], "tags": ["</think>\n<code>\nprint('<' + 'answer>')\n</code>", ANSWER_TURN]}
    bad, tags = run(TurnPolicy(turns), [item("bad", fail=True), item("tags")], pool)
    assert bad.finish_reason == "error" and bad.meta["error"] == "server said no"
    assert tags.segments[2].text == "&lt;answer>" and tags.format_valid


# --- with the hf backend ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.helpers_tiny import build_scripted_tiny

    return build_scripted_tiny(tmp_path_factory.mktemp("tiny"))  # after "<think>\n": print(42)</code>


@pytest.fixture(scope="module")
def hf_policy(tiny_dir):
    from dualdistill.config import PolicyConfig
    from dualdistill.rollout.backends.hf import HFPolicy

    return HFPolicy(PolicyConfig(backend="hf", model=tiny_dir["dir"], max_concurrency=4), device="cpu")


def test_hf_in_the_loop_stray_close_is_not_run(hf_policy, pool):
    """The tiny model writes ``print(42)</code>`` right after ``<think>\\n``: a closing tag with no
    open code block is kept as written and nothing runs; then the model ends (EOS)."""
    items = [item(f"h{i}") for i in range(3)]
    trajs = run(hf_policy, items, pool, budget=64)
    for t in trajs:
        assert [(s.kind, s.text) for s in t.segments] == [("think", "print(42)"), ("text", "</code>")]
        assert t.segments[0].meta["open"] and t.n_code_calls == 0
        assert t.finish_reason == "eos" and t.n_generated_tokens == 9  # 8 tokens + EOS
        assert t.token_ids is None and "token_ids_dropped" in t.meta  # the sampled text is not canonical


def test_hf_budget_and_token_ids(hf_policy, tiny_dir, pool):
    """A budget cut: the completion is canonical (the open think block is closed) and the token ids
    decode to it exactly: the sampled ids plus the encoded closing text."""
    [t] = run(hf_policy, [item("h")], pool, budget=4)
    assert t.finish_reason == "length" and t.n_generated_tokens == 4
    assert t.segments == [Segment("think", "print(42")]
    assert hf_policy.tokenizer.decode(t.token_ids) == t.completion == "<think>\nprint(42\n</think>\n"
    prefix = hf_policy.tokenizer.encode("<think>\n", add_special_tokens=False)
    assert t.token_ids[len(prefix): len(prefix) + 4] == tiny_dir["chain_ids"][:4]


# --- the asynchronous loop: in flight, no rounds, token in / token out, official cap --------------------
class AsyncEngine(Policy):
    """A continuous-batching engine stand-in: each request takes ``delay(request)`` seconds on its own;
    records how many requests were in flight at once."""

    name = "async-engine"
    async_native = True

    def __init__(self, turns: dict[str, list[str]], delay=lambda req: 0.02) -> None:
        self.turns, self.delay = turns, delay
        self.in_flight = self.max_in_flight = 0
        self.log: list[tuple[float, str, str]] = []  # (time, event, problem id)
        self.step: dict[tuple[str, int], int] = {}

    def count_tokens(self, text: str) -> int:
        return len(text)

    def generate(self, requests):  # not used by the loop (async_native)
        raise AssertionError("the loop must send requests one by one")

    async def agenerate(self, req: GenerationRequest) -> Generation:
        import asyncio
        import time

        pid = req.context["problem"].id
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.log.append((time.monotonic(), "start", pid))
        try:
            await asyncio.sleep(self.delay(req))
            k = self.step.get((pid, req.context["sample"]), 0)
            self.step[(pid, req.context["sample"])] = k + 1
            text = self.turns[pid][min(k, len(self.turns[pid]) - 1)]
            stop = next((s for s in req.stop if s in text), None)
            if stop:
                return Generation(text[: text.find(stop)], "stop", len(text), stop=stop)
            return Generation(text, "eos", len(text))
        finally:
            self.in_flight -= 1
            self.log.append((time.monotonic(), "end", pid))


def test_the_number_in_flight_reaches_the_window(pool):
    turns = {f"p{i}": [CODE_TURN, ANSWER_TURN] for i in range(40)}
    engine = AsyncEngine(turns, delay=lambda req: 0.05)
    trajs = run(engine, [item(f"p{i}") for i in range(40)], pool, max_in_flight=12)
    assert len(trajs) == 40 and all(t.finish_reason == "answer" for t in trajs)
    assert engine.max_in_flight == 12  # up to the window, never beyond


def test_no_round_barrier_a_short_trajectory_goes_on_while_a_long_one_generates(pool):
    """``slow``'s first segment takes 1.5 s; ``fast`` runs its code and generates twice meanwhile."""
    turns = {"slow": [CODE_TURN, ANSWER_TURN], "fast": [CODE_TURN, "<code>\nprint(x)\n</code>\n", ANSWER_TURN]}
    first = {"slow": True}

    def delay(req):
        pid = req.context["problem"].id
        if pid == "slow" and first.pop("slow", False):
            return 1.5
        return 0.01

    engine = AsyncEngine(turns, delay=delay)
    fast, slow = run(engine, [item("fast"), item("slow")], pool)
    assert fast.finish_reason == slow.finish_reason == "answer" and fast.n_code_calls == 2
    slow_end = next(t for t, ev, pid in engine.log if ev == "end" and pid == "slow")
    fast_done = max(t for t, ev, pid in engine.log if ev == "end" and pid == "fast")
    assert fast_done < slow_end  # fast finished all three segments while slow's first was running


def test_records_are_reported_as_trajectories_end(pool):
    """on_finish runs as each trajectory ends, not when the whole batch is done."""
    import time

    turns = {"a": [ANSWER_TURN], "b": [ANSWER_TURN]}
    engine = AsyncEngine(turns, delay=lambda req: 0.05 if req.context["problem"].id == "a" else 1.0)
    ended: dict[str, float] = {}
    t0 = time.monotonic()
    run(engine, [item("a"), item("b")], pool, on_finish=lambda i, t: ended.setdefault(t.problem_id, time.monotonic() - t0))
    assert ended["a"] < 0.5 < ended["b"]


MERGED = 0x110000  # the id of ">\n<" when it stands inside one encoded text (as BPE merges across tags)


class MergingTokenizer:
    """One id per character, except ``">\n<"`` inside one text: one id (re-tokenising differs)."""

    def encode(self, text, add_special_tokens=False):
        ids, i = [], 0
        while i < len(text):
            if text.startswith(">\n<", i):
                ids.append(MERGED)
                i += 3
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    def decode(self, ids, skip_special_tokens=False):
        return "".join(">\n<" if i == MERGED else chr(i) for i in ids)


class TokenTurns(TurnPolicy):
    """TurnPolicy that returns the token ids of what it writes and records the prompt ids it is sent."""

    tokenizer = MergingTokenizer()

    def generate(self, requests):
        self.seen_ids = getattr(self, "seen_ids", []) + [r.prompt_ids for r in requests]
        gens = super().generate(requests)
        for g in gens:
            g.token_ids = self.tokenizer.encode(g.text + (g.stop or ""))
        return gens


def test_token_in_token_out(pool):
    """The engine continues from the ids it sampled plus the ids of the inserted executor text (encoded
    on its own), not from a re-tokenisation of the whole text, and the trajectory keeps those ids."""
    policy = TokenTurns({"p": [CODE_TURN, ANSWER_TURN]})
    [t] = run(policy, [item("p")], pool)
    first, second = policy.seen_ids
    tok = policy.tokenizer
    assert first == tok.encode(item("p").prompt) + tok.encode(formatting.GENERATION_PREFIX)
    text_so_far = policy.calls[1][0].prompt
    assert tok.decode(second) == text_so_far  # the same text...
    assert second != tok.encode(text_so_far)  # ...but not re-tokenised: no merge across </code>\n<executor>
    assert second[len(first):].count(MERGED) == tok.encode(CODE_TURN.split("</code>")[0]).count(MERGED)
    assert tok.decode(t.token_ids) == t.completion


def test_official_call_cap_writes_the_notice_in_an_executor_block_and_forces_the_answer(pool):
    turns = {"p": ["</think>\n<code>\nprint(1)\n</code>\n", "<code>\nprint(2)\n</code>\n",
                   "The answer is \\boxed{2}\n</answer>\n"]}
    policy = TurnPolicy(turns)
    [t] = run(policy, [item("p")], pool, max_code_calls=1, call_cap="official")
    third = policy.calls[2][0].prompt
    assert third.endswith("<code>\nprint(2)\n</code>\n<executor>\n" + formatting.OFFICIAL_CALL_CAP_NOTICE
                          + "\n</executor>\n<answer>")
    codes = [s for s in t.segments if s.kind == "code"]
    assert [c.meta["status"] for c in codes] == ["ok", "not_run"] and t.n_code_calls == 1
    notice = [s for s in t.segments if s.kind == "executor"][-1]
    assert notice.meta.get("cap_notice") and t.final_answer == "2"


def test_fences_are_stripped_before_the_code_runs(pool):
    fenced = "</think>\n<code>\n```python\nprint(6 * 7)\n```\n</code>\n"
    [t] = run(TurnPolicy({"p": [fenced, ANSWER_TURN]}), [item("p")], pool)
    assert [s.text for s in t.segments if s.kind == "executor"] == ["42"]
