"""Composition of T1: the four cases, both directions, masks flags, balancing, baselines, the stage."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from dualdistill.algorithm import composition as C
from dualdistill.artifacts.current import teacher_records
from dualdistill.artifacts.identity import rollout_hash
from dualdistill.artifacts.ledger import read_metrics
from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.store import JsonlStore, read_jsonl, record_key
from dualdistill.config import CompositionConfig, config_from_dict
from dualdistill.formats import formatting as F
from dualdistill.formats.formatting import FormatError, Segment
from dualdistill.stages import compose as compose_stage

TRANSITIONS = dict(F.DEFAULT_TRANSITIONS)


def problem(pid: str, subset: str = "computation", family: str = "modpow") -> dict:
    return {"id": pid, "problem": f"Problem {pid}: compute 3^5 mod 7.", "answer": "5", "source": "synthetic",
            "subset": subset, "family": family, "meta": {}}


def text_traj(answer: str = "5") -> list[Segment]:
    return [Segment("think", "3^5 = 243 and 243 = 34*7 + 5."), Segment("answer", F.answer_text(answer))]


def agent_traj(answer: str = "5", *, fail_first: bool = False) -> list[Segment]:
    segs = [Segment("think", "Let me compute it.")]
    if fail_first:
        segs += [Segment("code", "print(pow(3, 5, 0))", {"status": "error"}),
                 Segment("executor", "ValueError: pow() 3rd argument cannot be 0", {"status": "error"})]
    segs += [Segment("code", "print(pow(3, 5, 7))", {"status": "ok"}), Segment("executor", answer, {"status": "ok"}),
             Segment("answer", F.answer_text(answer))]
    return segs


def rec(pid: str, role: str, teacher: str, correct: bool, *, sample: int = 0, status: str = "ok",
        subset: str = "computation", segments: list[Segment] | None = None, fail_first: bool = False) -> dict:
    answer = "5" if correct else "4"
    segs = segments if segments is not None else (
        text_traj(answer) if teacher == "text" else agent_traj(answer, fail_first=fail_first))
    return {
        "key": record_key(pid, role, sample, "h"), "problem": problem(pid, subset), "role": role, "teacher": teacher,
        "sample": sample, "status": status, "error": None if status == "ok" else "boom",
        "trajectory": {"problem_id": pid, "role": teacher, "prompt": "p", "segments": [s.to_dict() for s in segs]},
        "correct": correct,
    }


def pair(pid: str, first: str, g1: bool, g2: bool, **kw) -> list[dict]:
    second = "agent" if first == "text" else "text"
    sample = kw.pop("sample", 0)
    return [rec(pid, "first", first, g1, sample=sample, **kw), rec(pid, "second", second, g2, sample=sample, **kw)]


def segs_of(ex: dict) -> list[Segment]:
    return [Segment.from_dict(s) for s in ex["segments"]]


# --- the four cases, both directions ---------------------------------------------------------------
@pytest.mark.parametrize("first,sentence", [("text", F.TEXT_TO_CODE), ("agent", F.CODE_TO_TEXT)])
def test_case_01_fix(first, sentence):
    f, s = pair("p1", first, False, True)
    ex = C.compose_pair(f, s, TRANSITIONS, "wrong_first")
    segs = segs_of(ex)
    y1, y2 = segs_of({"segments": f["trajectory"]["segments"]}), segs_of({"segments": s["trajectory"]["segments"]})
    assert segs == y1[:-1] + [Segment("transition", sentence)] + y2
    F.validate(segs)
    assert sum(sg.kind == "answer" for sg in segs) == 1 and segs[-1].kind == "answer"
    assert F.extract_final_answer(F.render(segs)) == "5"
    assert ex["case"] == "01" and ex["first"] == first and ex["mask_until_first_transition"] is True
    assert ex["prompt"] == F.build_prompt(problem("p1")["problem"], code=True)
    assert ex["source"] == "t1" and ex["problem_id"] == "p1" and ex["subset"] == "computation"
    assert ex["family"] == "modpow" and ex["key"] == record_key("p1", 0, "t1")


@pytest.mark.parametrize("first,sentence", [("text", F.VERIFY_WITH_CODE), ("agent", F.VERIFY_WITH_TEXT)])
def test_case_11_verify(first, sentence):
    f, s = pair("p1", first, True, True)
    ex = C.compose_pair(f, s, TRANSITIONS, "wrong_first")
    segs = segs_of(ex)
    t = [sg for sg in segs if sg.kind == "transition"]
    assert [sg.text for sg in t] == [sentence] and ex["case"] == "11"
    assert ex["mask_until_first_transition"] is False
    F.validate(segs)
    # y2 follows the transition directly, starting with its think block
    i = segs.index(t[0])
    assert segs[i + 1] == segs_of({"segments": s["trajectory"]["segments"]})[0] and segs[i + 1].kind == "think"


@pytest.mark.parametrize("first", ["text", "agent"])
def test_case_10_first_only_and_00_dropped(first):
    f, s = pair("p1", first, True, False)
    ex = C.compose_pair(f, s, TRANSITIONS, "always")
    assert segs_of(ex) == segs_of({"segments": f["trajectory"]["segments"]})
    assert ex["case"] == "10" and ex["mask_until_first_transition"] is False  # no transition to mask up to
    f, s = pair("p1", first, False, False)
    assert C.compose_pair(f, s, TRANSITIONS, "wrong_first") is None


def test_mask_policies():
    flags = {}
    for policy in C.MASK_POLICIES:
        for g1, g2 in ((False, True), (True, True), (True, False)):
            f, s = pair("p", "text", g1, g2)
            flags[policy, f"{int(g1)}{int(g2)}"] = C.compose_pair(f, s, TRANSITIONS, policy)["mask_until_first_transition"]
    assert flags == {("wrong_first", "01"): True, ("wrong_first", "11"): False, ("wrong_first", "10"): False,
                     ("always", "01"): True, ("always", "11"): True, ("always", "10"): False,
                     ("never", "01"): False, ("never", "11"): False, ("never", "10"): False}
    with pytest.raises(C.CompositionError, match="mask_policy"):
        C.compose_pair(*pair("p", "text", True, True), TRANSITIONS, "sometimes")


def test_custom_transitions_and_failed_code_meta_kept():
    custom = {**TRANSITIONS, "fix:code_to_text": "Wait, the code may be incorrect, let's try text reasoning."}
    f, s = pair("p1", "agent", False, True, fail_first=True)
    ex = C.compose_pair(f, s, custom, "never")
    segs = segs_of(ex)
    assert any(sg.kind == "transition" and sg.text == F.CODE_TO_TEXT_MAY for sg in segs)
    codes = [sg for sg in segs if sg.kind == "code"]
    assert [c.meta["status"] for c in codes] == ["error", "ok"]
    # the failing block stays masked when the example is tokenized, even with mask policy "never"
    from dualdistill.training.masking import IGNORE_INDEX, tokenize_with_labels
    from tests.helpers_tiny import train_tokenizer  # a small offline Qwen2-style tokenizer

    tok = train_tokenizer()
    enc = tokenize_with_labels(tok, ex["prompt"], ex["segments"], mask_until_first_transition=ex["mask_until_first_transition"])
    trained = tok.decode([i for i, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE_INDEX])
    assert "pow(3, 5, 0)" not in trained and "pow(3, 5, 7)" in trained and F.CODE_TO_TEXT_MAY in trained


def test_inconsistent_records_raise_with_key():
    f, s = pair("p1", "text", True, True)
    s2 = dict(s, teacher="text")
    with pytest.raises(C.CompositionError, match="both teachers"):
        C.compose_pair(f, s2, TRANSITIONS, "wrong_first")
    with pytest.raises(C.CompositionError, match="expected role 'first'"):
        C.compose_pair(s, f, TRANSITIONS, "wrong_first")
    other = rec("p2", "second", "agent", True)
    with pytest.raises(C.CompositionError, match="different problems"):
        C.compose_pair(f, other, TRANSITIONS, "wrong_first")
    with pytest.raises(C.CompositionError, match="missing key"):
        C.compose_pair(f, s, {"fix:text_to_code": "x"}, "wrong_first")
    # y2 without a final answer: the composed trajectory is invalid
    bad = rec("p1", "second", "agent", True, segments=[Segment("think", "no answer")])
    with pytest.raises(FormatError):
        C.compose_pair(f, bad, TRANSITIONS, "wrong_first")


# --- pairing and drops -----------------------------------------------------------------------------
def test_pairing_and_drop_reasons():
    records = (pair("a", "text", False, True) + pair("b", "agent", True, True) + pair("c", "text", False, False)
               + [rec("d", "first", "text", True)]  # second missing
               + [rec("e", "second", "agent", True)]  # first missing
               + pair("f", "agent", True, True, status="failed")
               + [rec("g", "first", "text", False), rec("g", "second", "agent", True,
                                                        segments=[Segment("think", "no answer")])]
               + pair("a", "text", True, False, sample=1))
    examples, dropped = C.compose_all(records, CompositionConfig())
    assert sorted((ex["problem_id"], ex["sample"], ex["case"]) for ex in examples) == [
        ("a", 0, "01"), ("a", 1, "10"), ("b", 0, "11")]
    reasons = {d["problem_id"]: d["reason"] for d in dropped}
    assert reasons == {"c": "both_wrong", "d": "missing_second", "e": "missing_first", "f": "failed_rollout",
                       "g": "invalid_format"}
    # a later record for the same slot supersedes the earlier one (a retried failure)
    retried = pair("f", "agent", True, True, status="failed") + pair("f", "agent", True, True)
    examples, dropped = C.compose_all(retried, CompositionConfig())
    assert len(examples) == 1 and not dropped


# --- balancing ------------------------------------------------------------------------------------
def many(n_comp: int, n_ins: int) -> list[dict]:
    out = []
    for i in range(n_comp):
        out += pair(f"c{i:02d}", "agent" if i % 2 else "text", i % 3 != 0, True, subset="computation")
    for i in range(n_ins):
        out += pair(f"i{i:02d}", "text", True, i % 2 == 0, subset="insight")
    return out


def test_balance_subset_equal_counts_and_determinism():
    examples, _ = C.compose_all(many(10, 4), CompositionConfig())
    kept, report = C.balance(examples, CompositionConfig(seed=3))
    subsets = [ex["subset"] for ex in kept]
    assert subsets.count("computation") == 4 and subsets.count("insight") == 4
    assert report["before"] == {"computation": 10, "insight": 4} and report["after"] == {"computation": 4, "insight": 4}
    assert report["target_per_group"] == 4 and report["by"] == "subset" and not report["warnings"]
    assert len(report["dropped"]) == 6 and {d["reason"] for d in report["dropped"]} == {"balance"}
    again, _ = C.balance(list(reversed(examples)), CompositionConfig(seed=3))
    assert [ex["key"] for ex in again] == [ex["key"] for ex in kept]
    picks = {tuple(ex["key"] for ex in C.balance(examples, CompositionConfig(seed=s))[0]) for s in range(6)}
    assert len(picks) > 1  # the seed matters
    none, rep = C.balance(examples, CompositionConfig(balance="none"))
    assert len(none) == 14 and rep["dropped"] == []


def test_balance_caps_applied_first():
    examples, _ = C.compose_all(many(10, 4), CompositionConfig())
    cfg = CompositionConfig(balance="none", max_per_case={"01": 1}, max_per_first_teacher={"agent": 2})
    kept, report = C.balance(examples, cfg)
    assert sum(ex["case"] == "01" for ex in kept) <= 1 and sum(ex["first"] == "agent" for ex in kept) <= 2
    n01 = sum(ex["case"] == "01" for ex in examples)
    reasons = [d["reason"] for d in report["dropped"]]
    assert reasons.count("cap_case") == n01 - 1 and "cap_first_teacher" in reasons
    assert len(kept) + len(reasons) == len(examples)
    with pytest.raises(ValueError, match="max_per_first_teacher"):
        C.balance(examples, CompositionConfig(max_per_first_teacher={"robot": 1}))


def test_balance_by_outcome_groups_and_keeps_neutral_whole():
    """agent right, text wrong → agentic; the reverse → reasoning; both right → neutral (not balanced)."""
    records = (pair("a1", "agent", True, False) + pair("a2", "text", False, True) + pair("a3", "text", False, True)
               + pair("r1", "text", True, False) + pair("n1", "agent", True, True) + pair("n2", "text", True, True)
               + pair("n3", "text", True, True))
    examples, _ = C.compose_all(records, CompositionConfig())
    cfg = CompositionConfig(balance_by="outcome", seed=1)
    kept, report = C.balance(examples, cfg)
    groups = {ex["problem_id"]: ex["group"] for ex in kept}
    assert report["before"] == {"agentic": 3, "neutral": 3, "reasoning": 1}
    assert report["after"] == {"agentic": 1, "neutral": 3, "reasoning": 1} and report["target_per_group"] == 1
    assert groups["r1"] == "reasoning" and {groups[p] for p in ("n1", "n2", "n3")} == {"neutral"}
    assert sum(g == "agentic" for g in groups.values()) == 1 and not report["warnings"]
    assert C.balance_group({"case": "10", "first": "agent"}, "outcome") == "agentic"
    assert C.balance_group({"case": "01", "first": "agent"}, "outcome") == "reasoning"


def test_balancing_one_group_is_a_warning(caplog):
    """Unlabelled problems (the paper's DeepMath list) form one subset: nothing can be balanced — said loudly."""
    records = [r | {"problem": {**r["problem"], "subset": None}} for r in many(4, 0)]
    examples, _ = C.compose_all(records, CompositionConfig())
    with caplog.at_level(logging.WARNING):
        kept, report = C.balance(examples, CompositionConfig())
    assert len(kept) == len(examples) and report["target_per_group"] is None
    assert len(report["warnings"]) == 1 and "balances nothing" in caplog.text and "balance_by: outcome" in caplog.text
    _, by_outcome = C.balance(examples, CompositionConfig(balance_by="outcome"))
    assert not by_outcome["warnings"] and by_outcome["target_per_group"] is not None


def test_official_transition_style(tmp_path):
    """Transitions where the official data has them; the stage writes T1 in the official format too."""
    from dualdistill.formats import official

    ex = C.compose_pair(*pair("a", "agent", False, True, fail_first=True), TRANSITIONS, "wrong_first",
                        prompt_style="official", transition_style="official")
    text = official.render(segs_of(ex))
    assert ex["text_format"] == "official" and ex["mask_until_first_transition"]
    assert f"</executor>\n<think>\n{F.CODE_TO_TEXT}\n\n3^5 = 243" in text and text.endswith("</answer>")
    assert ex["prompt"] == F.build_prompt(ex["problem_text"], code=True, style="official")
    ex = C.compose_pair(*pair("b", "text", False, True), TRANSITIONS, "wrong_first", transition_style="official")
    assert official.render(segs_of(ex)).startswith(f"<think>\n3^5 = 243 and 243 = 34*7 + 5.\n\n{F.TEXT_TO_CODE}\n</think>")
    stray = pair("c", "agent", False, True)
    stray[0]["trajectory"]["segments"].insert(1, {"kind": "text", "text": "a stray line"})
    with pytest.raises(FormatError):
        C.compose_pair(*stray, TRANSITIONS, "wrong_first", transition_style="official")
    assert C.compose_pair(*stray, TRANSITIONS, "wrong_first") is not None  # fine in the project's format

    cfg = make_cfg(tmp_path, composition={"transition_style": "official", "balance": "none"},
                   student={"prompt_style": "official"})
    summary = compose_stage.compose_records(cfg, many(3, 2) + stray)
    paths = RunPaths.of(cfg)
    assert summary["dropped"]["invalid_format"] == 1
    assert summary["official_export"] == {"path": str(paths.t1_official), "rows": summary["n_t1"],
                                          "skipped": {"format": 0, "no_problem_text": 0}}
    rows = read_jsonl(paths.t1_official)
    t1 = read_jsonl(paths.t1)
    assert [r["synthetic_data"] for r in rows] == [official.render(segs_of(ex)) for ex in t1]
    assert {r["problem"] for r in rows} == {ex["problem_text"] for ex in t1} and all(r["answer"] == "5" for r in rows)


# --- baselines ------------------------------------------------------------------------------------
def test_baseline_examples(caplog):
    records = (pair("a", "text", True, True) + pair("b", "agent", False, True) + pair("c", "agent", True, False)
               + pair("a", "text", True, True, sample=1) + pair("d", "text", True, True, status="failed"))
    text = C.baseline_examples(records, "text", 10, seed=0)
    assert {(ex["problem_id"], ex["role"], ex["sample"]) for ex in text} == {
        ("a", "first", 0), ("a", "first", 1), ("b", "second", 0)}
    assert all(ex["source"] == "baseline:text_only" and ex["first"] == "text" for ex in text)
    assert all(not any(s["kind"] == "transition" for s in ex["segments"]) for ex in text)
    assert all(ex["prompt"] == F.build_prompt(problem(ex["problem_id"])["problem"], code=True) for ex in text)
    assert "only 3" in caplog.text
    two = C.baseline_examples(records, "text", 2, seed=0, name="txt")
    assert len(two) == 2 and {ex["problem_id"] for ex in two} == {"a", "b"}  # problems spread first
    assert two[0]["source"] == "baseline:txt"
    agent = C.baseline_examples(records, "agent", 5, seed=0)
    assert {(ex["problem_id"], ex["role"]) for ex in agent} == {("a", "second"), ("c", "first")}
    with pytest.raises(ValueError, match="teacher"):
        C.baseline_examples(records, "robot", 1)


def test_composition_stats_table():
    examples, dropped = C.compose_all(many(6, 3) + pair("z", "text", False, False, subset="insight"), CompositionConfig())
    kept, report = C.balance(examples, CompositionConfig())
    df = C.composition_stats(kept, dropped + report["dropped"])
    total = df[df["case"] == "all"].iloc[0]
    assert total["kept"] == len(kept) == 6 and total["both_wrong"] == 1 and total["balance"] == 3
    assert total["total"] == 10
    body = df[df["case"] != "all"]
    assert body["kept"].sum() == 6 and set(body["case"]) <= {"01", "11", "10", "00"}
    assert list(df.columns[:4]) == ["case", "first", "subset", "kept"]


# --- the stage --------------------------------------------------------------------------------------
def make_cfg(tmp_path, **extra):
    data = {"run_name": "t", "output_dir": str(tmp_path / "out"), "baselines": {"text_only": "text", "tool_only": "agent"}}
    data.update(extra)
    return config_from_dict(data)


def test_run_compose_writes_outputs_and_resumes(tmp_path):
    cfg = make_cfg(tmp_path)
    records = many(8, 5) + pair("x", "text", False, False, subset="insight")
    summary = compose_stage.compose_records(cfg, records)
    paths = RunPaths.of(cfg)
    t1 = read_jsonl(paths.t1)
    assert summary["n_t1"] == len(t1) == 10 and summary["subsets"] == {"computation": 5, "insight": 5}
    assert summary["dropped"] == {"balance": 3, "both_wrong": 1}
    assert sum(summary["cases"].values()) == 10 and not summary["skipped"]
    for name in ("stats.csv", "metrics.json", "dropped.jsonl", "config.yaml"):
        assert (paths.t1.parent / name).is_file()
    assert yaml.safe_load((paths.t1.parent / "config.yaml").read_text())["_hash"] == cfg.hash()
    for name, teacher in cfg.baselines.items():
        base = read_jsonl(paths.baseline_data(name))
        assert len(base) == summary["baselines"][name]["n"] <= 10
        assert all(ex["first"] == teacher for ex in base)
    assert summary["baselines"]["text_only"]["requested"] == 10
    for ex in t1:
        F.validate([Segment.from_dict(s) for s in ex["segments"]])
    assert read_metrics(cfg, "02") == json.loads(json.dumps(summary))  # the stage's key figures, on disk

    again = compose_stage.compose_records(cfg, records)
    assert again["skipped"] and again["n_t1"] == 10
    other = compose_stage.compose_records(make_cfg(tmp_path, composition={"balance": "none"}), records)
    assert not other["skipped"] and other["n_t1"] == 13

    # deterministic: a fresh directory gives the same file
    cfg2 = make_cfg(tmp_path / "b")
    compose_stage.compose_records(cfg2, list(reversed(records)))
    compose_stage.compose_records(cfg, records)
    assert RunPaths.of(cfg2).t1.read_text() == paths.t1.read_text()


def test_run_compose_reads_the_rollout_store_and_cli(tmp_path):
    from dualdistill.stages.entry import main

    cfg = make_cfg(tmp_path, composition={"balance": "none"})
    with pytest.raises(FileNotFoundError, match="stage 01 .* has not run for this params file"):
        compose_stage.run(cfg, progress=False)
    assert not RunPaths.of(cfg).t1.parent.exists()  # nothing written
    store = JsonlStore(RunPaths.of(cfg).teacher_rollouts)
    h = rollout_hash(cfg)
    for r in pair("a", "text", True, True, status="failed") + pair("a", "text", True, True) + pair("b", "agent", False, True):
        store.append(dict(r, config_hash=h))
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"run_name": "t", "output_dir": str(tmp_path / "out")}))
    assert main("02", [str(params), "--quiet", "--set", "composition.balance=none",
                       "composition.mask_before_transition=never"]) == 0
    summary = read_metrics(cfg, "02")
    assert summary["n_t1"] == 2 and summary["cases"] == {"01": 1, "11": 1} and summary["masked_before_transition"] == 0


def test_baseline_shortfall_is_reported(tmp_path, caplog):
    cfg = make_cfg(tmp_path, composition={"balance": "none", "baseline_fill": False})
    records = pair("a", "text", False, True) + pair("b", "text", False, True) + pair("c", "agent", True, True)
    with caplog.at_level(logging.WARNING):
        summary = compose_stage.compose_records(cfg, records)
    assert summary["baselines"]["text_only"] == {"teacher": "text", "n": 1, "requested": 3, "available": 1}
    assert summary["baselines"]["tool_only"]["n"] == 3
    assert "only 1" in caplog.text


def test_baseline_filled_to_the_same_budget(tmp_path):
    """Default: a baseline with fewer correct trajectories repeats them to train on as many examples as T1."""
    cfg = make_cfg(tmp_path, composition={"balance": "none"})
    records = pair("a", "text", False, True) + pair("b", "text", False, True) + pair("c", "agent", True, True)
    summary = compose_stage.compose_records(cfg, records)
    assert summary["baselines"]["text_only"] == {"teacher": "text", "n": 3, "requested": 3, "available": 1}
    examples = read_jsonl(RunPaths.of(cfg).baseline_data("text_only"))
    assert len({e["key"] for e in examples}) == 3 and len({e["problem_id"] for e in examples}) == 1
    assert sum(e["key"].endswith("#rep1") for e in examples) == 1


def test_read_teacher_records_through_rollouts_counts_failures(tmp_path):
    cfg = make_cfg(tmp_path, composition={"balance": "none"})
    store = JsonlStore(RunPaths.of(cfg).teacher_rollouts)
    h = rollout_hash(cfg)
    rows = (pair("a", "text", False, True) + pair("b", "agent", True, True, status="failed")
            + [rec("c", "first", "text", True), rec("c", "second", "agent", True, status="failed")]
            + pair("d", "text", True, True))  # d: another config's records
    for r in rows:
        store.append(dict(r, config_hash="other" if r["problem"]["id"] == "d" else h))
    records = teacher_records(cfg, with_failed=True)
    assert {r["problem"]["id"] for r in records} == {"a", "b", "c"}
    summary = compose_stage.run(cfg, progress=False)
    assert summary["n_t1"] == 1 and summary["dropped"] == {"failed_rollout": 2}


# --- notebook 02 ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_notebook_02_runs_and_writes_its_metrics(tmp_path):
    """Notebook 02 on a hand-made run (rollout records + a tiny student tokenizer)."""
    from dualdistill.pipeline.papermill_runner import REPO, execute_notebook
    from dualdistill.training.tiny_model import train_tokenizer as tiny_train

    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"run_name": "nb", "output_dir": str(tmp_path / "out"), "student": {"model": "tiny"},
                                      "baselines": {"text_only": "text", "tool_only": "agent"}}))
    cfg = config_from_dict(yaml.safe_load(params.read_text()))
    store = JsonlStore(RunPaths.of(cfg).teacher_rollouts)
    records = many(6, 4) + pair("z", "agent", False, True, subset="insight", fail_first=True)
    for r in records:
        store.append(r)
    corpus = [F.render(segs_of({"segments": r["trajectory"]["segments"]})) for r in records] + [F.SYSTEM_PROMPT]
    tiny_train(corpus, 400).save_pretrained(RunPaths.of(cfg).tiny_base)

    out_nb = tmp_path / "02.ipynb"
    execute_notebook(REPO / "notebooks" / "02_compose_trajectories.ipynb", out_nb,
                     {"params": str(params), "overrides": {}}, progress=False)
    written = read_metrics(cfg, "02")
    expected = compose_stage.run(cfg, progress=False)  # the notebook's outputs are up to date: nothing is redone
    assert expected["skipped"]
    assert written["n_t1"] == expected["n_t1"] == 10 and written["subsets"] == {"computation": 5, "insight": 5}
    assert written["cases"] == expected["cases"] and sum(written["cases"].values()) == 10
    assert written["dropped"] == expected["dropped"]
    assert written["baselines"] == expected["baselines"]
    nb_text = out_nb.read_text()
    assert "trained" in nb_text and "case 01 · first teacher" in nb_text


def test_transition_line_inside_y1_does_not_move_the_mask():
    y1 = [Segment("think", "Try text."), Segment("transition", F.CODE_TO_TEXT), Segment("think", "Hmm."),
          Segment("answer", F.answer_text("4"))]
    f = rec("p", "first", "text", False, segments=y1)
    s = rec("p", "second", "agent", True)
    segs = segs_of(C.compose_pair(f, s, TRANSITIONS, "wrong_first"))
    assert [sg.kind for sg in segs].count("transition") == 1 and segs[1].kind == "text"
    assert next(sg for sg in segs if sg.kind == "transition").text == F.TEXT_TO_CODE
