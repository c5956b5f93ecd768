"""The synthetic world: family answers re-checked independently, splits, scripted teachers.

Teacher tests that run code use the real sandbox (``PythonSandbox``) under the real tool loop
(``dualdistill.rollout.tool_loop``); a brute-force program on an insight family really times out there.
"""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from dualdistill.config import PolicyConfig, SamplingSettings, WorldConfig
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.rollout.policy import BACKENDS, GenerationRequest, build_policy
from dualdistill.world import tokenizer_corpus
from dualdistill.world.families import FAMILIES, family_names, generate_split, get_family, split_of
from dualdistill.world.teachers import ScriptedTeacher, agent_program, printed_integer, text_solution

try:
    from dualdistill.grading.grader import grade
except ImportError:  # grading.py is written in parallel; same rule: the final boxed answer equals gold
    def grade(response: str, gold: str) -> bool:
        return formatting.extract_final_answer(response) == gold


def _problem(family: str, **params: int) -> Problem:
    fam = get_family(family)
    return Problem(id=f"t-{family}", problem=fam.text(params, 0), answer=str(fam.answer(params)),
                   source="world", subset=fam.subset, family=family, meta={**params, "template": 0})


# --- families: answers re-checked by an independent computation ------------------------------
def test_families_cover_every_subset():
    assert len(family_names("computation")) >= 3 and len(family_names("insight")) >= 3
    assert len(family_names("either")) >= 3
    for fam in FAMILIES.values():
        assert len(fam.templates) >= 3, fam.name


@pytest.mark.parametrize("split", ["train", "test"])
def test_computation_answers_match_brute_force(split):
    for p in generate_split(split, n=45, families=family_names("computation")):
        m = p.meta
        if p.family == "modpow":
            x = 1
            for _ in range(m["b"]):
                x = x * m["a"] % m["m"]
            expected = x
        elif p.family == "digit_sum_power":
            n, expected = m["a"] ** m["b"], 0
            while n:
                n, r = divmod(n, 10)
                expected += r
        else:  # digit_count: count over the whole range
            expected = sum(1 for x in range(1, m["N"] + 1) if sum(map(int, str(x))) == m["s"])
        assert p.answer == str(expected), (p.id, p.problem)


def _count(p: dict) -> int:
    """N = 10^(10^E) + r written out (only for tiny E)."""
    return 10 ** (10 ** p["E"]) + p["r"]


def test_insight_closed_forms_match_simulation_on_small_inputs():
    """E = 0 (N = 10 + r) is small enough to simulate: the answers use only N mod 10 and agree."""
    rng = random.Random(0)
    for _ in range(300):
        s, r = rng.randint(0, 9), rng.randint(1, 110)
        seat = s
        for _ in range(_count({"E": 0, "r": r})):
            seat = (seat + 1) % 10
        assert FAMILIES["round_table"].answer({"s": s, "E": 0, "r": r}) == seat
        den = rng.choice([99, 99999])
        a = rng.randint(10, 98) if den == 99 else rng.randint(10001, 99998)
        pos = _count({"E": 0, "r": rng.randint(1, 50)})
        digit = int(Fraction(a, den) * 10**pos) % 10  # long division by exact rationals
        assert FAMILIES["repeating_decimal"].answer({"a": a, "den": den, "E": 0, "r": pos - 10}) == digit
    for k in (4, 9):  # take-away: solve the game by dynamic programming for every pile size
        win = [False] * 160
        for n in range(1, 160):
            win[n] = any(not win[n - t] for t in range(1, min(k, n) + 1))
        for n in range(11, 160):
            if win[n]:
                moves = [t for t in range(1, min(k, n) + 1) if not win[n - t]]
                assert moves == [FAMILIES["take_away"].answer({"k": k, "E": 0, "r": n - 10})]


def test_insight_answers_of_generated_problems():
    for p in generate_split("train", n=60, families=family_names("insight")):
        m, ans = p.meta, int(p.answer)
        assert m["E"] >= 10 and "10^(10^" in p.problem  # N has >= 10^10 digits: no program builds it
        n_mod = {q: (pow(10, 10 ** m["E"], q) + m["r"]) % q for q in (2, 5, 10)}
        if p.family == "round_table":
            assert ans == (m["s"] + m["r"]) % 10 == (m["s"] + n_mod[10]) % 10
        elif p.family == "repeating_decimal":
            period = len(str(m["den"]))
            assert ans == int(str(m["a"]).zfill(period)[(n_mod[period] - 1) % period])
        else:
            assert 1 <= ans <= m["k"] and (n_mod[m["k"] + 1] - ans) % (m["k"] + 1) == 0


@pytest.mark.parametrize("split", ["train", "test"])
def test_either_answers_match_brute_force(split):
    """The two numbers are read back from the problem text (not from meta) and the answer is found by
    brute force: subtract by counting up, divide by repeated subtraction, list the integers between."""
    import re

    for p in generate_split(split, n=80, families=family_names("either")):
        a, b = (int(x) for x in re.findall(r"\d{10,}", p.problem))
        a, b = max(a, b), min(a, b)
        digits = 10 if p.family == "pair_difference" else 15
        assert len(str(a)) == len(str(b)) == digits and str(a)[:-1] == str(b)[:-1] and str(b).endswith("0")
        if p.family in ("near_difference", "pair_difference"):
            steps, n = 0, b
            while n != a:
                n, steps = n + 1, steps + 1
            expected = steps
        elif p.family == "near_remainder":
            rest = a
            while rest >= b:
                rest -= b
            expected = rest
        else:
            expected = len([n for n in range(b + 1, a)])
        assert p.answer == str(expected), (p.id, p.problem)
        assert int(p.answer) == p.meta["d"] - (p.family == "near_between")


# --- splits -------------------------------------------------------------------------------------
def test_splits_are_disjoint_deterministic_and_labelled():
    world = WorldConfig()
    splits = {s: generate_split(s, world=world) for s in ("train", "test", "stage0")}
    assert [len(splits[s]) for s in ("train", "test", "stage0")] == [world.n_train, world.n_test, world.n_stage0]
    texts = {s: {p.problem for p in ps} for s, ps in splits.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["stage0"]
    assert not texts["test"] & texts["stage0"]
    for s, ps in splits.items():
        assert len(texts[s]) == len(ps)
        assert len({p.id for p in ps}) == len(ps)
        for p in ps[:30]:
            assert split_of(p.family, {k: v for k, v in p.meta.items() if k not in ("template", "seed")}) == s
            assert p.subset == FAMILIES[p.family].subset and p.source == "world"
    assert [p.to_dict() for p in generate_split("test", world=world)] == [p.to_dict() for p in splits["test"]]
    other = generate_split("test", world=WorldConfig(seed=1))
    assert {p.problem for p in other} != texts["test"]
    assert not {p.problem for p in other} & texts["train"]  # disjoint across seeds too


def test_generate_split_counts_prefixes_and_errors():
    ps = generate_split("train", n=19)
    counts = {f: sum(p.family == f for p in ps) for f in FAMILIES}
    assert len(FAMILIES) == 10 and sorted(counts.values()) == [1] + [2] * 9
    big = generate_split("train", n=60)
    for f in FAMILIES:  # the i-th problem of a family does not depend on n
        small_f = [p.problem for p in ps if p.family == f]
        assert small_f == [p.problem for p in big if p.family == f][: len(small_f)]
    only = generate_split("test", n=4, families=["take_away"])
    assert {p.family for p in only} == {"take_away"}
    assert generate_split("test", n=0) == []
    with pytest.raises(ValueError, match="unknown world family 'nope'"):
        generate_split("train", n=3, families=["nope"])
    with pytest.raises(ValueError, match="unknown split"):
        generate_split("dev", n=3)
    with pytest.raises(ValueError, match="ran out of distinct test problems"):
        generate_split("test", n=1000, families=["digit_count"])


def test_a_family_that_runs_out_is_filled_by_the_others(caplog):
    """digit_count holds ~720 parameter tuples in stage0: a large split takes them all, the other
    families share the remainder, the total is exact and the problems stay distinct."""
    names = ["digit_count", "modpow"]
    with caplog.at_level("WARNING", logger="dualdistill.world.families"):
        ps = generate_split("stage0", n=2000, families=names)
    counts = {f: sum(p.family == f for p in ps) for f in names}
    assert len(ps) == 2000 and len({p.problem for p in ps}) == 2000
    assert 500 < counts["digit_count"] < 1000 and counts["modpow"] == 2000 - counts["digit_count"]
    assert "digit_count ran out of distinct problems" in caplog.text
    again = generate_split("stage0", n=2000, families=names)
    assert [p.id for p in again] == [p.id for p in ps]
    # the i-th problem of a family still does not depend on n
    small = generate_split("stage0", n=100, families=names)
    assert [p.problem for p in small if p.family == "modpow"] == \
        [p.problem for p in ps if p.family == "modpow"][:50]


def test_problem_text_is_short_and_names_its_numbers():
    for p in generate_split("test", n=60):
        assert len(p.problem) < 330
        for key in ("a", "b", "m", "N", "s", "k", "E", "r"):
            if key in p.meta:
                assert str(p.meta[key]) in p.problem, (key, p.problem)
        if "E" in p.meta:
            assert f"10^(10^{p.meta['E']}) + {p.meta['r']}" in p.problem
        if p.subset == "either":
            assert str(p.meta["P"] * 10 + p.meta["d"]) in p.problem and str(p.meta["P"] * 10) in p.problem


# --- teachers without code execution ----------------------------------------------------------
def test_text_teacher_output_is_valid_and_fails_mostly_on_computation():
    ps = generate_split("test", n=180)
    right = {"computation": [], "insight": [], "either": []}
    for i, p in enumerate(ps):
        segs, info = text_solution(p, random.Random(i))
        text = formatting.render(segs)
        assert formatting.parse(text, strict=True) == segs
        formatting.validate(segs)
        ok = grade(text, p.answer)
        assert ok == (str(info["answer"]) == p.answer)
        if info["slips"] == 0:
            assert ok, (p.id, text)  # without a slip the method is sound
        right[p.subset].append(ok)
    acc = {k: sum(v) / len(v) for k, v in right.items()}
    assert acc["insight"] >= 0.85 and acc["either"] >= 0.85 and acc["computation"] <= 0.5, acc


def test_text_slip_propagates_through_the_arithmetic():
    p = _problem("modpow", a=7, b=85, m=613)
    seen_wrong = False
    for seed in range(60):
        segs, info = text_solution(p, random.Random(seed), slip_rate=0.03)
        if info["slips"] and info["answer"] != 402:
            seen_wrong = True
            assert f"= {info['answer']}." in segs[0].text  # the trace ends on its own (wrong) result
    assert seen_wrong


def test_scripted_registry_and_options():
    assert BACKENDS["scripted"] == "dualdistill.world.teachers:build_scripted_policy"
    for kind in ("text", "agent"):
        pol = build_policy(PolicyConfig(backend="scripted", model=kind), seed=3)
        assert isinstance(pol, ScriptedTeacher) and pol.kind == kind and pol.seed == 3
    with pytest.raises(ValueError, match="'text' or 'agent'"):
        build_policy(PolicyConfig(backend="scripted", model="oracle"))
    with pytest.raises(ValueError, match="unknown option"):
        build_policy(PolicyConfig(backend="scripted", model="text", extra={"clever_prob": 0.5}))


def _req(problem: Problem, completion: str = "", **kw) -> GenerationRequest:
    prompt = formatting.build_prompt(problem.problem, code=True)
    ctx = {"problem": problem, "completion": completion, "sample": 0, **kw.pop("context", {})}
    return GenerationRequest(prompt=prompt + completion, max_new_tokens=kw.pop("max_new_tokens", 512),
                             stop=kw.pop("stop", ["</code>", "</answer>"]), seed=kw.pop("seed", 1), context=ctx)


def test_agent_chunks_stop_at_code_and_continue_from_prefill():
    p = _problem("modpow", a=7, b=85, m=613)
    agent = ScriptedTeacher("agent", typo_prob=0.0)
    gen = agent.generate([_req(p)])[0]
    assert gen.finish_reason == "stop" and gen.stop == "</code>"
    assert gen.text.startswith("<think>\n") and gen.text.endswith("print(pow(7, 85, 613))\n")
    assert "</code>" not in gen.text
    pre = agent.generate([_req(p, formatting.GENERATION_PREFIX)])[0]
    assert formatting.GENERATION_PREFIX + pre.text == gen.text  # continues a prefilled "<think>\n"
    done = formatting.GENERATION_PREFIX + pre.text + "</code>\n<executor>\n402\n</executor>\n"
    final = agent.generate([_req(p, done)])[0]
    assert final.finish_reason == "stop" and final.stop == "</answer>"
    full = done + final.text + "</answer>\n"
    segs = formatting.parse(full, strict=True)
    formatting.validate(segs)
    assert grade(full, "402") and segs[-2].text == "The code printed 402."
    # no code stop (tools off): the agent cannot run code and answers directly
    nocode = agent.generate([_req(p, stop=["</answer>"])])[0]
    assert "<code>" not in nocode.text and "estimate" in nocode.text


def test_policy_token_limits_errors_and_determinism():
    p = generate_split("test", n=6)[0]
    text = ScriptedTeacher("text")
    full = text.generate([_req(p, stop=[])])[0]
    assert full.finish_reason == "eos" and full.n_tokens == text.count_tokens(full.text)
    cut = text.generate([_req(p, stop=[], max_new_tokens=10)])[0]
    assert cut.finish_reason == "length" and cut.n_tokens == 10 and full.text.startswith(cut.text)
    assert text.generate([_req(p)])[0].text == text.generate([_req(p)])[0].text
    foreign = Problem(id="amc/1", problem="What is 1+1?", answer="2", source="amc")
    bad = text.generate([_req(foreign), _req(p)])
    assert bad[0].finish_reason == "error" and "not from the synthetic world" in bad[0].error
    assert bad[1].finish_reason != "error"
    # seeds decide the slips: over many samples a computation problem gets different traces
    comp = _problem("digit_sum_power", a=37, b=11)
    outs = {text.generate([_req(comp, seed=s, stop=[])])[0].text for s in range(20)}
    assert len(outs) > 1


def test_agent_programs_per_family_are_short():
    for p in generate_split("test", n=60):
        prog = agent_program(p, random.Random(0), clever_prob=0.5)
        assert len(prog.code) < 220 and prog.code.count("\n") <= 4
        assert prog.kind in (("brute", "clever") if p.subset == "insight" else ("exact", "typo"))


def test_printed_integer():
    assert printed_integer("512\n") == 512 and printed_integer("-3") == -3
    assert printed_integer("Traceback ...\nMemoryError") is None and printed_integer("") is None


def test_tokenizer_corpus_covers_tags_digits_and_prompts():
    corpus = tokenizer_corpus(per_family=3)
    blob = "\n".join(corpus)
    for needle in ("<think>", "</code>", "<executor>", "\\boxed{", formatting.SYSTEM_PROMPT[:40],
                   formatting.TEXT_TO_CODE, *"0123456789"):
        assert needle in blob
    test_texts = {p.problem for p in generate_split("test")}
    assert not test_texts & set(corpus)


def test_the_demo_worlds_tokenizer_corpus_does_not_move_when_a_family_is_added():
    """The tiny student's tokenizer (its token ids, and so which initial embedding each token gets)
    is trained on this corpus: a family's own texts (pair_difference's assert failure) appear only in a
    world with that family, and the demo world's corpus is the one its measured runs were built from
    (``corpus_hash`` in outputs/demo/models/tiny_base/tiny_build.json). A different corpus is a
    different student: docs/EMBEDDED_WORLD.md measures how much that moves the demo's S0."""
    from dualdistill.common.hashing import stable_hash
    from dualdistill.config import load_config
    from tests.conftest import REPO

    demo = load_config(REPO / "params/demo.yaml").world
    corpus = tokenizer_corpus(demo)
    assert "pair_difference" not in demo.families
    assert not any("AssertionError" in text for text in corpus)
    assert any("AssertionError" in text for text in tokenizer_corpus(WorldConfig(families=["pair_difference"])))
    assert stable_hash(corpus, 16) == "4d9df709f9a444e6", "the demo's tiny tokenizer changed: rerun make demo and update the docs"


# --- teachers under the real tool loop and sandbox -------------------------------------------
@pytest.fixture(scope="module")
def pool():
    from dualdistill.sandbox.pool import SandboxPool

    with SandboxPool(4, timeout=3.0, memory_mb=1024) as p:
        yield p


def _rollout(policy, problems, pool, *, sample=0, context=None):
    from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories

    items = [RolloutItem(problem=p, prompt=formatting.build_prompt(p.problem, code=True), role="first",
                         sample=sample, context=dict(context or {})) for p in problems]
    return generate_trajectories(policy, items, SamplingSettings(max_code_calls=4, temperature=0.6), budget=1024, sandbox_pool=pool, progress=False)


def test_agent_code_really_runs_in_the_sandbox(pool):
    agent = ScriptedTeacher("agent", typo_prob=0.0)
    probs = [_problem("modpow", a=7, b=85, m=613), _problem("digit_sum_power", a=37, b=11),
             _problem("digit_count", N=4700, s=17), _problem("near_difference", P=31415926535897, d=7),
             _problem("near_remainder", P=27182818284590, d=4), _problem("near_between", P=14142135623730, d=9)]
    for traj, p in zip(_rollout(agent, probs, pool), probs, strict=True):
        assert traj.finish_reason == "answer" and traj.n_code_calls == 1 and traj.n_code_errors == 0
        formatting.validate(traj.segments)
        assert formatting.parse(traj.completion, strict=True) == traj.segments
        code, execu = (s for s in traj.segments if s.kind in ("code", "executor"))
        assert code.meta["status"] == "ok" and execu.text.strip() == p.answer
        assert grade(traj.completion, p.answer)


def test_pair_program_checks_what_it_copied(pool):
    """pair_difference: the agent copies both 10-digit numbers exactly (no typos by default) and asserts
    that they agree except in the last digit, so a program with a mis-copied prefix raises (a visible
    failure) where the program without the assert prints a wrong number; a wrong last digit stays silent."""
    from dualdistill.sandbox.python_sandbox import PythonSandbox
    from dualdistill.world.teachers import pair_program

    p = _problem("pair_difference", P=271828182, d=7)
    assert p.problem == "What is 2718281827 - 2718281820?" and p.answer == "7"
    agent = ScriptedTeacher("agent")
    (traj,) = _rollout(agent, [p], pool)
    code, execu = (s for s in traj.segments if s.kind in ("code", "executor"))
    assert code.text.strip() == "a = 2718281827\nb = 2718281820\nassert a // 10 == b // 10\nprint(a - b)"
    assert execu.text.strip() == "7" and grade(traj.completion, "7")
    progs = [agent_program(q, random.Random(i)) for i, q in enumerate(generate_split("train", n=200,
                                                                                   families=["pair_difference"]))]
    assert {prog.kind for prog in progs} == {"exact"} and all("assert a // 10 == b // 10" in x.code for x in progs)
    unchecked = agent_program(p, random.Random(0), pair_check=0.0)
    assert "assert" not in unchecked.code and unchecked.code.endswith("print(a - b)")
    assert agent_program(p, random.Random(0), pair_typo=1.0).kind == "typo"
    with PythonSandbox(timeout=3.0, memory_mb=1024) as sb:
        prefix_slip = sb.run(pair_program(2718281827, 2718821820, check=True))
        assert prefix_slip.status == "error" and "AssertionError" in prefix_slip.output
        assert sb.run(pair_program(2718281827, 2718821820, check=False)).output.strip() == str(2718281827 - 2718821820)
        assert sb.run(pair_program(2718281821, 2718281820, check=True)).output.strip() == "1"  # last digit: silent


def test_insight_programs_time_out_brute_force_and_closed_form_alike(pool):
    """N = 10^(10^E) + r: the simulation and the closed formula both write N out and time out."""
    probs = [_problem("round_table", s=3, E=12, r=6235), _problem("take_away", k=9, E=10, r=1516)]
    for clever in (0.0, 1.0):
        for traj, p in zip(_rollout(ScriptedTeacher("agent", clever_prob=clever), probs, pool), probs, strict=True):
            assert traj.n_code_timeouts == 1 and traj.timings["execution"] >= 2.9, (p.family, clever)
            assert [s.meta["status"] for s in traj.segments if s.kind == "code"] == ["timeout"]
            assert "did not finish in time" in traj.segments[-2].text
            formatting.validate(traj.segments)
            assert formatting.parse(traj.completion, strict=True) == traj.segments


def test_second_teacher_solves_with_its_own_strategy(pool):
    p = _problem("digit_count", N=4700, s=17)
    first = ScriptedTeacher("text").generate([_req(p, stop=[])])[0].text
    (traj,) = _rollout(ScriptedTeacher("agent", typo_prob=0.0), [p], pool, context={"first_attempt": first})
    assert traj.n_code_calls == 1 and grade(traj.completion, p.answer)
    (text_second,) = _rollout(ScriptedTeacher("text"), [_problem("take_away", k=4, E=11, r=9012)], pool,
                              context={"first_attempt": "<think>\nI simulate it.\n</think>\n"})
    assert text_second.n_code_calls == 0 and grade(text_second.completion, "2")


def test_brute_force_programs_are_right_on_small_inputs(pool):
    """The insight families' programs are correct: they fail only because N is huge (E = 0: N = 10 + r)."""
    from dualdistill.sandbox.python_sandbox import PythonSandbox

    cases = [_problem("round_table", s=3, E=0, r=1234), _problem("repeating_decimal", a=31415, den=99999, E=0, r=1237),
             _problem("repeating_decimal", a=17, den=99, E=0, r=2000), _problem("take_away", k=4, E=0, r=1237),
             _problem("take_away", k=9, E=0, r=2003)]
    with PythonSandbox(timeout=3.0, memory_mb=1024) as sb:
        for p in cases:
            for clever in (0.0, 1.0):
                prog = agent_program(p, random.Random(0), clever_prob=clever)
                result = sb.run(prog.code)
                assert result.status == "ok" and result.output.strip() == p.answer, (p.family, prog.kind)


def test_world_and_corpus_do_not_depend_on_the_hash_seed():
    """Same problems and tokenizer corpus in every process (the tiny-model cache key relies on it)."""
    import os
    import subprocess
    import sys

    code = ("from dualdistill.world import generate_split, tokenizer_corpus\n"
            "from dualdistill.common.hashing import stable_hash\n"
            "print(stable_hash(tokenizer_corpus(per_family=3)), stable_hash([p.problem for p in generate_split('test')]))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1


def test_count_with_digit_sum_matches_brute_force_for_any_n():
    from dualdistill.world.families import count_with_digit_sum

    rng = random.Random(1)
    for n in [1, 9, 10, 99, 100, 4700, 9999, *(rng.randint(1, 20000) for _ in range(30))]:
        for s in (1, 5, 13, 27):
            assert count_with_digit_sum(n, s) == sum(1 for x in range(1, n + 1) if sum(map(int, str(x))) == s), (n, s)
