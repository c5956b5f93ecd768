"""What a run showed, in two or three sentences per stage, computed from the stage's own metrics, and
which notebook comes next: the last words of notebooks 01–06.

    Markdown(story.after_01(dd.read_metrics(cfg, "01")))
    Markdown(story.after_06(rows, paired))        # stage 05's summary rows and paired rows

Every number in the text comes from the arguments; nothing is written here by hand but the words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dualdistill.report.metrics import FAMILY_PREFIX

BASELINES_LAST = ("S1", "S2")  # the models a result is about; the others are what they are compared with


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _join(parts: Sequence[str]) -> str:
    parts = list(parts)
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def after_01(metrics: dict[str, Any]) -> str:
    """Stage 01: how each teacher did as first teacher on each subset; next, notebook 02."""
    tr = metrics.get("teacher_rollouts") or {}
    if "skipped" in tr:
        return f"No teacher ran: {tr['skipped']}.\n\n**Next:** notebook 02 builds T1 from that data."
    rows = [r for r in tr.get("accuracy_table") or [] if r.get("level") == "subset" and r.get("role") == "first"]
    subsets = list(dict.fromkeys(r["group"] for r in rows))
    said = []
    for subset in subsets:
        acc = {r["teacher"]: r["accuracy"] for r in rows if r["group"] == subset}
        best = max(acc, key=lambda t: acc[t])
        others = ", ".join(f"the {t} teacher {_pct(a)}" for t, a in acc.items() if t != best)
        said.append(f"on {subset} problems the {best} teacher was right {_pct(acc[best])} of the time ({others})")
    text = (f"{tr.get('records', 0)} teacher trajectories on {tr.get('problems', 0)} problems; going first, "
            + ("; ".join(said) if said else f"accuracy {tr.get('accuracy')}") + ". ")
    text += ("Each teacher wins on its home ground, so neither alone is the student to aim for: stage 02 composes "
             "the two answers to each problem into one trajectory that switches or verifies.")
    return text + "\n\n**Next:** notebook 02 (compose T1)."


def after_02(metrics: dict[str, Any]) -> str:
    """Stage 02: T1's cases in words; next, notebook 03."""
    cases = metrics.get("cases") or {}
    words = {"01": "switch after a wrong first attempt (01)", "11": "verify a right one (11)",
             "10": "keep a right first attempt the second teacher got wrong (10)"}
    parts = [f"{cases[c]} {words[c]}" for c in ("01", "11", "10") if c in cases]
    text = (f"T1 holds {metrics.get('n_t1', 0)} examples from {metrics.get('n_pairs', 0)} teacher pairs: "
            f"{_join(parts) if parts else 'no case'}. {metrics.get('masked_before_transition', 0)} of them carry no "
            "loss on the wrong first attempt, so the student learns the switch, not the mistake.")
    return text + "\n\n**Next:** notebook 03 (S0 → S1 on T1, and the one-teacher baselines)."


def after_03(metrics: dict[str, Any]) -> str:
    """Stage 03: the models trained or reused; next, notebook 04."""
    models = metrics.get("models") or {}
    parts = [f"{name} ({'reused' if m.get('skipped') else 'trained now'}, {m.get('steps')} steps, final loss "
             f"{m['final_loss']:.2f})" if isinstance(m.get("final_loss"), int | float) else name
             for name, m in models.items()]
    text = (f"{len(models)} models from S0: {_join(parts) if parts else 'none'}. S1 learned from both teachers; "
            "each baseline from one teacher's trajectories, on as many examples.")
    return text + "\n\n**Next:** notebook 04 (S1 teaches itself with the text teacher's feedback → S2)."


def after_04(summary: dict[str, Any]) -> str:
    """Stage 04: ḡ, what the rules selected and what T2 holds; next, notebook 05."""
    counts = summary.get("counts") or {}
    ex = summary.get("examples") or {}
    gbar = summary.get("gbar_mean")
    text = (f"S1 answered {summary.get('n_problems', 0)} training problems {summary.get('k')} times each (mean ḡ "
            f"{_pct(gbar)}); the {counts.get('solved', 0)} problems it always solved (ḡ = 1) teach nothing. T2 has "
            f"{summary.get('n_examples', 0)} examples (verify {ex.get('verify', 0)}, correct {ex.get('correct', 0)})")
    missing = summary.get("n_no_teacher_solution") or 0
    text += (f"; {missing} selected problems had no text-teacher solution and gave none." if missing else ".")
    return text + "\n\n**Next:** notebook 05 (evaluate S0, the baselines, S1 and S2 on the test problems)."


def _first_key(rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    first = next(r for r in rows if r["subset"] == "all")
    return first["benchmark"], str(first["budget"])


def _s2_minus_s1(rows: Sequence[dict[str, Any]], paired: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The paired accuracy row S2 − S1 over all problems of the first benchmark and budget."""
    bench, budget = _first_key(rows)
    return next((r for r in paired if (r["model"], r["against"]) == ("S2", "S1") and r["benchmark"] == bench
                 and str(r["budget"]) == budget and r["subset"] == "all"
                 and r.get("metric", "accuracy") == "accuracy" and r.get("delta") is not None), None)


def result_sentences(rows: Sequence[dict[str, Any]], paired: Sequence[dict[str, Any]]) -> str:
    """Who wins where on the first benchmark and budget, and S2 − S1 ± SE: the run's result in words."""
    if not rows:
        return "No evaluation yet."
    bench, budget = _first_key(rows)
    mine = [r for r in rows if r["benchmark"] == bench and str(r["budget"]) == budget]
    subsets = [s for s in dict.fromkeys(r["subset"] for r in mine) if s != "all" and not s.startswith(FAMILY_PREFIX)]
    acc = {(r["model"], r["subset"]): r for r in mine}
    said = []
    for subset in subsets or ["all"]:
        base = {m: r["accuracy"] for (m, s), r in acc.items() if s == subset and m not in BASELINES_LAST}
        s1 = acc.get(("S1", subset))
        if not base or s1 is None:
            continue
        top = max(base.values())
        leaders = [m for m, a in base.items() if a == top]
        lead = (f"no other model leads (all at {_pct(top)})" if len(leaders) == len(base) > 1
                else f"{_join(leaders)} {'leads' if len(leaders) == 1 else 'lead'} the other models ({_pct(top)})")
        se = s1.get("accuracy_se")
        said.append(f"on {subset}, {lead} and S1 gets {_pct(s1['accuracy'])}"
                    + (f" ± {100 * se:.0f}" if se is not None else ""))
    n = next((r["n_problems"] for r in mine if r["subset"] == "all"), 0)
    text = f"On {bench} (budget {budget}, {n} problems): " + ("; ".join(said) or "no S1 to compare") + "."
    d = _s2_minus_s1(rows, paired)
    if d is not None:
        delta, se = 100 * d["delta"], 100 * (d["se"] or 0)
        verdict = ("no difference" if delta == 0 else "within noise (less than two standard errors)"
                   if abs(delta) < 2 * se else "more than two standard errors " + ("up" if delta > 0 else "down"))
        text += f" S2 − S1 = {delta:+.1f} ± {se:.1f} points over the same {d['n_problems']} problems: {verdict}."
    return text


def after_05(rows: Sequence[dict[str, Any]], paired: Sequence[dict[str, Any]]) -> str:
    """Stage 05: the result in words; next, notebook 06."""
    return result_sentences(rows, paired) + "\n\n**Next:** notebook 06 (the figures and tables of the run)."


def after_06(rows: Sequence[dict[str, Any]], paired: Sequence[dict[str, Any]]) -> str:
    """Stage 06: the result, how much a rerun varies (the paired SE), and where to go next."""
    text = result_sentences(rows, paired)
    d = _s2_minus_s1(rows, paired) if rows else None
    if d is not None:
        text += (" A rerun samples differently, so its numbers (and the README's) may differ "
                 f"from these by about the paired standard error, ±{100 * (d['se'] or 0):.1f} points for S2 − S1 here;"
                 " a different student (another tokenizer, other data) moves them further (docs/EMBEDDED_WORLD.md).")
    return text + ("\n\n**Next:** the method in docs/METHOD.md; what β1/β2 do to S2, measured: "
                   "`dualdistill sweep PARAMS --grid ...` (notebook 04's explorer); the paper's scale: "
                   "docs/PAPER_SCALE.md.")


AFTER = {"01": after_01, "02": after_02, "03": after_03, "04": after_04, "05": after_05, "06": after_06}


def story_after(stage: str, *data: Any) -> str:
    """The closing words of notebook ``stage`` (``after_<stage>`` of the data it is given)."""
    return AFTER[stage](*data)
