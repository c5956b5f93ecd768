"""The one tool-integrated generation loop, used by teachers, student sampling and evaluation.

This is the project's loop (the default). Official mode (``loop=OfficialLoop``, selected by the
official prompt style) runs the official evaluation loop's state machine on the same runner:
:mod:`dualdistill.rollout.official_loop`, docs/OFFICIAL_MODE.md.

    trajs = generate_trajectories(policy, items, cfg.eval.sampling(), budget=4096, sandbox_pool=pool,
                                  on_finish=record)

Every trajectory advances on its own: generate until ``</code>`` (while tools are on and calls are
left), ``</answer>``, EOS or the remaining budget → run the block → append
``<executor>\\n{output}\\n</executor>\\n`` → generate again. A trajectory goes back to the engine the
moment its code has run, without waiting for any other (no rounds): with an engine that batches
continuously (``Policy.async_native``: in-process vLLM, an OpenAI-compatible server) each trajectory
is one request at a time; a batch policy (hf, scripted, replay) gets, whenever it is free, one
``generate`` call with whatever is ready then (``policy.MicroBatcher``). How it samples is one
:class:`~dualdistill.config.SamplingSettings` (temperature, top_p, top_k, the code-call cap and how
many trajectories are in flight), the same object every config section that samples holds. At most
``max_in_flight`` trajectories are under way (a batch policy with a batch size: at most one batch,
:func:`in_flight_window`); the next starts as one ends, and ``on_finish(index, trajectory)`` is
called as each one ends (so a caller can append its record at once).

Code runs in ``sandbox_pool.run(owner, code)``: a trajectory holds a sandbox only while its code
runs; its state persists across its calls (an evicted state is rebuilt by replaying its completed
cells; see :class:`dualdistill.sandbox.pool.SandboxPool`). Markdown fences around the code are stripped
before it runs (as the official code does). After the ``max_code_calls``-th call, ``call_cap``
decides: ``"notice"`` appends ``formatting.CALL_CAP_NOTICE`` and generation goes on without the code
stop; ``"official"`` lets the model write on and, at its next ``</code>``, appends the official
notice inside an executor block and ``<answer>`` (the official loop's forced answer). A block written
after the cap, or with ``tools=False``, is never executed (status ``not_run``).

Budget: ``n_tokens`` = generated tokens + tokens of the inserted text (executor output, notices), as
in the paper; each request's ``max_new_tokens`` is the budget left. Finish reasons: ``answer``,
``length``, ``error`` (the policy returned an error), ``call_cap`` (ended after the cap without a
closed answer), ``eos``. Executor output that contains a block tag has its ``<`` written as ``&lt;``.

Token in, token out: when the policy has a ``tokenizer`` and returns token ids, the loop keeps the
trajectory's ids — the sampled ones, plus the ids of inserted text encoded on their own — and sends
``prompt_ids`` with every request, so engines that take ids continue from exactly what was sampled
(no re-tokenisation of the whole text at each turn); without ids, text continuation. The ids are
stored with the trajectory only if they decode to its canonical completion
(``meta["token_ids_dropped"]`` says why not). Timings per trajectory: ``generation`` (time waiting
for its generations), ``execution`` (time its code ran, replays included).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dualdistill.common import progress
from dualdistill.config import SamplingSettings, SandboxConfig
from dualdistill.formats import formatting
from dualdistill.formats.formatting import CODE_STOP, GENERATION_PREFIX, Segment
from dualdistill.formats.problem import Problem
from dualdistill.formats.trajectory import Trajectory
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy, request_sender
from dualdistill.sandbox.pool import SandboxPool, make_sandbox_pool
from dualdistill.sandbox.python_sandbox import ExecResult

ANSWER_STOP = "</answer>"
CALL_CAPS = ("notice", "official")
_FENCE_RE = re.compile(r"^\s*```[ \t]*(?:python3?|py|ipython)?[ \t]*\n(?P<code>.*?)\n?```\s*$", re.S)


@dataclass
class RolloutItem:
    """One trajectory to sample: a problem, its full prompt, who answers and which sample it is.

    ``context`` goes to the policy with every request (e.g. ``first_attempt`` for a second teacher).
    """

    problem: Problem
    prompt: str
    role: str
    sample: int = 0
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class _State:
    """A trajectory in flight."""

    index: int
    item: RolloutItem
    seed: int
    completion: str = GENERATION_PREFIX
    n_generated: int = 0
    n_inserted: int = 0
    n_calls: int = 0
    n_errors: int = 0
    n_timeouts: int = 0
    capped: bool = False
    code_status: dict[int, str] = field(default_factory=dict)  # code block index -> status
    pending_code: tuple[int, str] | None = None  # (code block index, code) waiting to run
    prompt_ids: list[int] | None = None
    ids: list[int] | None = None  # completion ids: sampled + inserted
    ids_text: str = ""
    ids_note: str | None = None
    t_gen: float = 0.0
    t_exec: float = 0.0
    steps: int = 0
    finish: str | None = None
    error: str | None = None
    program: str = ""  # official loop: the program its executor replays
    forced: bool = False  # official loop: the answer after the cap was asked for
    statuses: list[str] = field(default_factory=list)  # official loop: each call's status

    @property
    def n_tokens(self) -> int:
        return self.n_generated + self.n_inserted

    @property
    def owner(self) -> str:
        return f"{id(self)}:{self.index}"


def request_seed(seed: int, problem_id: str, role: str, sample: int, step: int) -> int:
    """A stable per-request seed (independent of batch order and of PYTHONHASHSEED)."""
    blob = f"{seed}|{problem_id}|{role}|{sample}|{step}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")


def executor_text(output: str) -> str:
    """The ``<executor>`` block appended after a code call (tags in the output are neutralised)."""
    output = formatting.TAG_RE.sub(r"&lt;\1\2>", output.rstrip("\n"))
    return f"<executor>\n{output}\n</executor>\n"


def strip_fences(code: str) -> str:
    """The code inside a markdown fence (```python ... ```), or the code as written."""
    m = _FENCE_RE.match(code)
    return m.group("code") if m else code


def _has_closed_answer(completion: str) -> bool:
    return any(s.kind == "answer" and not s.meta.get("open") for s in formatting.parse(completion))


class _Loop:
    """The state machine of one ``generate_trajectories`` call (no I/O of its own)."""

    def __init__(self, policy: Policy, settings: SamplingSettings, *, budget: int, pool: SandboxPool | None,
                 tools: bool, call_cap: str) -> None:
        self.policy = policy
        self.budget = budget
        self.max_code_calls = settings.max_code_calls
        self.temperature, self.top_p, self.top_k = settings.temperature, settings.top_p, settings.top_k
        self.pool = pool
        self.tools = tools and settings.max_code_calls > 0
        self.call_cap = call_cap
        self.tokenizer = getattr(policy, "tokenizer", None)

    # --- token ids ----------------------------------------------------------------------------
    def start(self, st: _State) -> None:
        if self.tokenizer is not None:
            st.prompt_ids = list(self.tokenizer.encode(st.item.prompt, add_special_tokens=False))
            st.ids = list(self.tokenizer.encode(st.completion, add_special_tokens=False))
            st.ids_text = st.completion

    def _ids_from_text(self, st: _State) -> None:
        """Extend the ids so they cover ``st.completion`` (inserted, non-generated text)."""
        if st.ids is None:
            return
        if not st.completion.startswith(st.ids_text):
            st.ids, st.ids_note = None, "engine tokens overshoot the inserted text"
            return
        rest = st.completion[len(st.ids_text):]
        if rest:
            st.ids.extend(self.tokenizer.encode(rest, add_special_tokens=False))
            st.ids_text += rest

    def _add_text(self, st: _State, text: str, *, inserted: bool = False) -> None:
        """Append non-sampled text; ``inserted`` text (executor, notice) counts to the budget."""
        st.completion += text
        if inserted:
            st.n_inserted += self.policy.count_tokens(text)
        self._ids_from_text(st)

    # --- one generation -----------------------------------------------------------------------
    def request(self, st: _State) -> GenerationRequest:
        stop = [ANSWER_STOP]
        if self.tools and (not st.capped or self.call_cap == "official"):
            stop.insert(0, CODE_STOP)
        ids = st.prompt_ids + st.ids if st.prompt_ids is not None and st.ids is not None else None
        return self.next_request(st, stop, prompt_ids=ids)

    def next_request(self, st: _State, stop: list[str], *, prompt_ids: list[int] | None = None) -> GenerationRequest:
        """The request that continues ``st``: the text so far, the budget left, these stop strings, the
        sampling settings, the per-step seed and the context non-LLM policies read."""
        context = {"problem": st.item.problem, "completion": st.completion, "sample": st.item.sample,
                   "role": st.item.role, **st.item.context}
        return GenerationRequest(
            prompt=st.item.prompt + st.completion, max_new_tokens=self.budget - st.n_tokens, stop=stop,
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            seed=request_seed(st.seed, st.item.problem.id, st.item.role, st.item.sample, st.steps),
            context=context, prompt_ids=prompt_ids,
        )

    @staticmethod
    def _count(st: _State, gen: Generation, seconds: float) -> bool:
        """Count a generation's step, time and tokens; False (the trajectory ended) if it errored."""
        st.steps += 1
        st.t_gen += seconds
        if gen.finish_reason == "error":
            st.finish, st.error = "error", gen.error or "generation error"
            return False
        st.n_generated += gen.n_tokens
        return True

    def absorb(self, st: _State, gen: Generation, seconds: float) -> None:
        """Apply a generation to a trajectory: finish it, or leave its code pending."""
        if not self._count(st, gen, seconds):
            return
        st.completion += gen.text
        if st.ids is not None:
            if gen.token_ids is None or self.tokenizer is None:
                st.ids, st.ids_note = None, "the engine gave no token ids"
            else:
                st.ids.extend(gen.token_ids)
                st.ids_text += self.tokenizer.decode(gen.token_ids, skip_special_tokens=False)
        if gen.finish_reason == "length":
            st.finish = "length"
            return
        if gen.finish_reason != "stop" or gen.stop not in (CODE_STOP, ANSWER_STOP):
            st.finish = self._end_reason(st)  # eos (or a stop string this loop did not ask for)
            return
        segments = formatting.parse(st.completion)
        kind = gen.stop[2:-1]  # "code" | "answer"
        if not (segments and segments[-1].kind == kind and segments[-1].meta.get("open")):
            self._add_text(st, gen.stop)  # a stray closing tag: kept as written, nothing to run
            if gen.n_tokens == 0 and not gen.text:
                st.finish = self._end_reason(st)  # and no progress: stop here
            elif st.n_tokens >= self.budget:
                st.finish = "length"
            return
        if not st.completion.endswith("\n"):
            self._add_text(st, "\n")  # canonical "<kind>\n...\n</kind>\n"
        self._add_text(st, gen.stop + "\n")
        if kind == "answer":
            st.finish = "answer"
        elif st.n_tokens >= self.budget:
            st.finish = "length"  # no budget left for the executor's answer
        elif self.tools and st.capped:  # official cap: the forced answer
            self._add_text(st, executor_text(formatting.OFFICIAL_CALL_CAP_NOTICE) + "<answer>", inserted=True)
        elif self.tools:
            index = sum(1 for s in segments if s.kind == "code") - 1
            st.pending_code = (index, segments[-1].text)

    def _end_reason(self, st: _State) -> str:
        if _has_closed_answer(st.completion):
            return "answer"
        return "call_cap" if st.capped else "eos"

    # --- code execution -----------------------------------------------------------------------
    def execute(self, st: _State) -> ExecResult:
        """Run the pending code in the trajectory's sandbox state (blocks: called in a worker thread)."""
        t0 = time.perf_counter()
        result = self.pool.run(st.owner, strip_fences(st.pending_code[1]))
        st.t_exec += time.perf_counter() - t0
        return result

    def after_run(self, st: _State, result: ExecResult) -> None:
        """Append what the code printed (counting its tokens may ask a server: a worker thread)."""
        index, _ = st.pending_code
        st.pending_code = None
        st.n_calls += 1
        st.code_status[index] = result.status
        st.n_errors += result.status != "ok"
        st.n_timeouts += result.status == "timeout"
        self._add_text(st, executor_text(result.output), inserted=True)
        if st.n_calls >= self.max_code_calls:
            st.capped = True
            if self.call_cap == "notice":
                self._add_text(st, formatting.CALL_CAP_NOTICE + "\n", inserted=True)
        if st.n_tokens >= self.budget:
            st.finish = "length"

    # --- the record ---------------------------------------------------------------------------
    def trajectory(self, st: _State) -> Trajectory:
        segments = _annotate(formatting.parse(st.completion), st.code_status)
        completion = formatting.render(segments)
        ids, note = st.ids, st.ids_note
        if ids is not None and completion.startswith(st.ids_text):
            # canonical closing text (e.g. the newline after a final tag, or the closing tag of a
            # block cut by the budget) was not sampled: encode it
            ids = ids + list(self.tokenizer.encode(completion[len(st.ids_text):], add_special_tokens=False))
        elif ids is not None:
            ids, note = None, "the sampled text is not a prefix of the canonical completion"
        meta: dict[str, Any] = {"sample": st.item.sample, "seed": st.seed, "steps": st.steps}
        if st.error:
            meta["error"] = st.error
        if note and self.tokenizer is not None:
            meta["token_ids_dropped"] = note
        return Trajectory(
            problem_id=st.item.problem.id, role=st.item.role, prompt=st.item.prompt, segments=segments,
            finish_reason=st.finish or "eos", n_tokens=st.n_tokens, n_generated_tokens=st.n_generated,
            n_code_calls=st.n_calls, n_code_errors=st.n_errors, n_code_timeouts=st.n_timeouts, token_ids=ids,
            timings={"generation": round(st.t_gen, 4), "execution": round(st.t_exec, 4)}, meta=meta,
        )


def _annotate(segments: list[Segment], code_status: dict[int, str]) -> list[Segment]:
    """Execution status on code segments and on the executor segment that follows each run."""
    code_index = -1
    ran_previous = False
    for seg in segments:
        if seg.kind == "code":
            code_index += 1
            status = code_status.get(code_index, "not_run")
            seg.meta["status"] = status
            ran_previous = code_index in code_status
            continue
        if seg.kind == "executor":
            if ran_previous:
                seg.meta["status"] = code_status[code_index]
            else:  # written by the model itself or a notice of the loop, not a run's output
                seg.meta["status"] = "not_run"
                if seg.text == formatting.OFFICIAL_CALL_CAP_NOTICE:
                    seg.meta["cap_notice"] = True
                else:
                    seg.meta["written_by_model"] = True
        ran_previous = False
    return segments


async def _advance(loop: _Loop, st: _State, send: Callable[[GenerationRequest], Coroutine[Any, Any, Generation]],
                   code_threads: ThreadPoolExecutor, count_threads: ThreadPoolExecutor, max_steps: int) -> None:
    """Take one trajectory to its end: generate, run its code, generate again, ..."""
    aio = asyncio.get_running_loop()
    while st.finish is None:
        if st.n_tokens >= loop.budget:
            st.finish = "length"
        elif st.steps >= max_steps:
            st.finish, st.error = "error", "no progress"
        else:
            t0 = time.perf_counter()
            gen = await send(loop.request(st))
            loop.absorb(st, gen, time.perf_counter() - t0)
            if st.pending_code is not None:
                result = await aio.run_in_executor(code_threads, loop.execute, st)
                if loop.policy.remote_count:
                    await aio.run_in_executor(count_threads, loop.after_run, st, result)
                else:
                    loop.after_run(st, result)


async def _run_all(loop: _Loop, states: list[_State], *, window: int, max_steps: int, bar: Any,
                   on_finish: Callable[[int, Trajectory], None] | None,
                   halt: Callable[[], str | None] | None = None) -> list[Trajectory | None]:
    results: list[Trajectory | None] = [None] * len(states)
    size = loop.pool.size if loop.pool is not None else 1
    code_threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="tool-loop-code")  # one per sandbox
    count_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tool-loop-count")
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tool-loop-model")
    aux = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tool-loop-records")
    send = request_sender(loop.policy, model_thread)
    gate = asyncio.Semaphore(window)
    aio = asyncio.get_running_loop()

    async def one(st: _State) -> None:
        async with gate:
            reason = halt() if halt is not None else None
            if reason is not None:  # not started: ends at once as an error with the reason
                st.finish, st.error = "error", reason
            try:
                await _advance(loop, st, send, code_threads, count_threads, max_steps)
            finally:
                if loop.pool is not None and st.n_calls:
                    await aio.run_in_executor(aux, loop.pool.release, st.owner)
            results[st.index] = traj = loop.trajectory(st)
            bar.update(1)
            if on_finish is not None:  # shielded: a trajectory that ended is recorded even if the run fails
                await asyncio.shield(aio.run_in_executor(aux, on_finish, st.index, traj))

    try:
        async with asyncio.TaskGroup() as group:
            for st in states:
                group.create_task(one(st))
    except BaseExceptionGroup as err:  # the first failure, as a plain exception for the caller
        raise err.exceptions[0] from None
    finally:
        await loop.policy.release_loop()
        for ex in (code_threads, count_threads, model_thread):
            ex.shutdown(wait=False, cancel_futures=True)
        aux.shutdown(wait=True)  # every ended trajectory's on_finish runs to its end
    return results


def _in_own_thread(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on a fresh event loop in a thread of its own (so the loop also works where an
    event loop is already running, e.g. in a notebook) and return its result or raise its error."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(make())
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            out["error"] = err

    thread = threading.Thread(target=target, name="tool-loop", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def generate_trajectories(
    policy: Policy,
    items: list[RolloutItem],
    settings: SamplingSettings,
    *,
    budget: int,
    seed: int = 0,
    tools: bool = True,
    sandbox_pool: SandboxPool | None = None,
    call_cap: str = "notice",
    on_finish: Callable[[int, Trajectory], None] | None = None,
    halt: Callable[[], str | None] | None = None,
    progress: bool = True,
    desc: str = "",
    loop: type[_Loop] | None = None,
) -> list[Trajectory]:
    """Sample one trajectory per item with the tool loop (see the module docstring), as ``settings``
    say, within ``budget`` tokens each; returns them in item order. With ``tools=True`` and no pool a
    default one is made for this call and closed after. ``halt``, asked before each trajectory starts,
    returns a reason to start no more: the rest then end at once as errors carrying that reason.
    ``loop``: another state machine on the same runner (the official loop,
    :class:`dualdistill.rollout.official_loop.OfficialLoop`)."""
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    if call_cap not in CALL_CAPS:
        raise ValueError(f"call_cap must be one of {CALL_CAPS}, got {call_cap!r}")
    if not items:
        return []
    own_pool = None
    if tools and settings.max_code_calls > 0 and sandbox_pool is None:
        sandbox_pool = own_pool = make_sandbox_pool(SandboxConfig())
    machine = (loop or _Loop)(policy, settings, budget=budget, pool=sandbox_pool, tools=tools, call_cap=call_cap)
    states = [_State(index=i, item=it, seed=seed) for i, it in enumerate(items)]
    for st in states:
        machine.start(st)
    bar = _progress_bar(len(states), desc, progress)
    window = in_flight_window(policy, settings.max_in_flight)
    try:
        results = _in_own_thread(lambda: _run_all(machine, states, window=window, bar=bar, on_finish=on_finish,
                                                  halt=halt, max_steps=budget + settings.max_code_calls + 2))
    finally:
        bar.close()
        if own_pool is not None:
            own_pool.close()
    return [t for t in results if t is not None]


def in_flight_window(policy: Policy, max_in_flight: int) -> int:
    """Trajectories under way at once: ``max_in_flight``, or for a batch policy with a batch size (hf)
    at most one batch. More would only queue behind the model, and every ``generate`` call would then
    be full of rows at different points of their trajectories, each call as long as its longest row;
    with one batch in flight a call holds what is ready (``bench/hf_sampling.py``, the demo's S1 on CPU:
    1,200 trajectories in 141 s with a window of 64 = the batch size, 182 s with 256)."""
    batch = None if policy.async_native else getattr(policy, "max_batch", None)
    return min(max_in_flight, batch) if batch else max_in_flight


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    return progress.bar(total, desc or "trajectories", enabled=enabled, unit="trajectories", leave=False)
