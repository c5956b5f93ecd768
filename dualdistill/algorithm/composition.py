"""Steps 2–3 of Algorithm 1 as pure functions: compose teacher pairs into T1, balance it, and the baselines' data.

    examples, dropped = compose_all(records, cfg.composition, prompt_style="r1")   # one example per pair
    t1, report = balance(examples, cfg.composition)                                  # caps, then the balancing rule
    text_only = baseline_examples(records, "text", n=len(t1))                        # one teacher's traces

For every pair (y1 from the first teacher, y2 from the second) with grades (g1, g2):

    (0,1): y1 ⊕ t⁻ ⊕ y2     the first attempt failed, the other strategy fixes it
    (1,1): y1 ⊕ t⁺ ⊕ y2     both right: "also verify with the other strategy"
    (1,0): y1 only
    (0,0): dropped

y1's final answer block is removed before a transition, so a composed trajectory has exactly one
final answer, at its end. t⁻ / t⁺ are the ``fix:*`` / ``verify:*`` sentences of
``cfg.composition.transitions``; the direction follows the first teacher (agent first →
``code_to_text``, text first → ``text_to_code``). Segment meta (a code block's execution status)
is kept, so the loss masks (``dualdistill.training.masking``) can exclude code that failed or never ran.

Where the transition goes (``cfg.composition.transition_style``): ``project`` — a line of its own
between y1 and y2; ``official`` — as in the official data (``official.place_transitions``): a
code→text sentence opens a new think block that continues with y2's reasoning, a text→code sentence
ends y1's think block. Official-style examples have ``text_format: official`` (masks and training
text use ``official.render``); a composed trajectory with a line outside any block (which the
official format check refuses) is dropped as ``invalid_format``.

Balancing, applied after the optional caps ``max_per_case`` and ``max_per_first_teacher`` (each a
seeded random subsample of the capped group). The rule (``cfg.composition.balance``):

- ``subset_equal`` (default): every group is downsampled, seeded, to the size of the smallest; a
  single group means nothing can be balanced: a warning (in the log and in the stage's metrics);
- ``none``: keep everything.

The groups (``cfg.composition.balance_by``; each example's ``group``):

- ``subset``: the problem's subset label, from the data (``DataSource.subset`` or
  ``field_map.subset``; e.g. computation vs insight; unlabelled problems form one group);
- ``outcome``: what the teachers did — agent right and text wrong → ``agentic`` (case 01 with the
  text teacher first, case 10 with the agent first), text right and agent wrong → ``reasoning``
  (the reverse), both right (case 11) → ``neutral``, which is kept whole and not balanced.

The text-only / tool-only baselines get the same budget: correct trajectories of one teacher only
(either role, as sampled, no transition), at most ``len(T1)`` of them.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from typing import Any

import pandas as pd

from dualdistill.common import progress
from dualdistill.common.store import record_key
from dualdistill.config import CompositionConfig
from dualdistill.formats import formatting, official
from dualdistill.formats.formatting import FormatError, Segment
from dualdistill.formats.records import TrainingExample

log = logging.getLogger(__name__)

TEACHERS = ("text", "agent")
CASES = ("01", "11", "10")
MASK_POLICIES = ("wrong_first", "always", "never")
TRANSITION_STYLES = ("project", "official")
OUTCOME_GROUPS = {("01", "text"): "agentic", ("10", "agent"): "agentic", ("01", "agent"): "reasoning",
                  ("10", "text"): "reasoning", ("11", "text"): "neutral", ("11", "agent"): "neutral"}
NEUTRAL = "neutral"
BASELINE_DEFAULT_NAMES = {"text": "text_only", "agent": "tool_only"}
DROP_REASONS = (
    "both_wrong",  # case (0,0)
    "failed_rollout",  # a rollout of the pair has status != ok
    "missing_first",
    "missing_second",
    "invalid_format",  # the composed trajectory breaks formatting.validate
    "cap_case",
    "cap_first_teacher",
    "balance",
)


class CompositionError(ValueError):
    """A teacher record that cannot be composed (wrong role, same teacher twice, ...)."""


def direction(first_teacher: str) -> str:
    """``code_to_text`` when the agentic teacher went first, else ``text_to_code``."""
    if first_teacher not in TEACHERS:
        raise CompositionError(f"teacher must be one of {TEACHERS}, got {first_teacher!r}")
    return "code_to_text" if first_teacher == "agent" else "text_to_code"


def training_prompt(problem_text: str, style: str = "r1") -> str:
    """The student's prompt for every training example: the code-mode prompt."""
    return formatting.build_prompt(problem_text, code=True, style=style)


def _segments(rec: dict[str, Any]) -> list[Segment]:
    try:
        return formatting.as_segments(rec["trajectory"])
    except (KeyError, TypeError, ValueError) as err:
        raise CompositionError(f"record {rec.get('key')!r}: malformed trajectory ({err!r})") from None


def _problem(rec: dict[str, Any]) -> dict[str, Any]:
    prob = rec.get("problem")
    if not isinstance(prob, dict) or "id" not in prob or "problem" not in prob:
        raise CompositionError(f"record {rec.get('key')!r}: field 'problem' must be a Problem dict")
    return prob


def _case(g1: bool, g2: bool) -> str:
    return f"{int(bool(g1))}{int(bool(g2))}"


def compose_pair(first_rec: dict[str, Any], second_rec: dict[str, Any], transitions: dict[str, str],
                 mask_policy: str, prompt_style: str = "r1", transition_style: str = "project") -> dict[str, Any] | None:
    """One T1 training example from a pair of teacher records, or None for case (0,0).

    Raises :class:`CompositionError` on inconsistent records and :class:`FormatError` when the
    composed trajectory is not valid (e.g. y2 has no final answer; in the official style, a line
    outside any block)."""
    if mask_policy not in MASK_POLICIES:
        raise CompositionError(f"mask_policy must be one of {MASK_POLICIES}, got {mask_policy!r}")
    if transition_style not in TRANSITION_STYLES:
        raise CompositionError(f"transition_style must be one of {TRANSITION_STYLES}, got {transition_style!r}")
    for rec, role in ((first_rec, "first"), (second_rec, "second")):
        if rec.get("role") != role:
            raise CompositionError(f"record {rec.get('key')!r}: expected role {role!r}, got {rec.get('role')!r}")
        if rec.get("teacher") not in TEACHERS:
            raise CompositionError(f"record {rec.get('key')!r}: field 'teacher' must be text|agent, got {rec.get('teacher')!r}")
    if first_rec["teacher"] == second_rec["teacher"]:
        raise CompositionError(f"records {first_rec.get('key')!r}, {second_rec.get('key')!r}: both teachers are {first_rec['teacher']!r}")
    prob = _problem(first_rec)
    if _problem(second_rec)["id"] != prob["id"]:
        raise CompositionError(f"records {first_rec.get('key')!r}, {second_rec.get('key')!r}: different problems")

    case = _case(first_rec.get("correct"), second_rec.get("correct"))
    if case == "00":
        return None
    y1 = _segments(first_rec)
    if case == "10":
        segments = y1
    else:
        kind = "fix" if case == "01" else "verify"
        tkey = f"{kind}:{direction(first_rec['teacher'])}"
        if tkey not in transitions:
            raise CompositionError(f"transitions: missing key {tkey!r}")
        transition = Segment("transition", transitions[tkey], {"transition": tkey})
        # a transition-like line inside y1 stays plain text: the mask starts at *our* transition
        y1 = [Segment("text", s.text, {**s.meta, "was": "transition"}) if s.kind == "transition" else s for s in y1]
        segments = formatting.strip_final_answer(y1) + [transition] + _segments(second_rec)
    formatting.validate(segments)
    if transition_style == "official":
        segments = official.place_transitions(segments)
        official.validate(segments)
    has_transition = case != "10"
    mask = has_transition and (mask_policy == "always" or (mask_policy == "wrong_first" and case == "01"))
    sample = first_rec.get("sample", 0)
    return TrainingExample.build(
        prob, key=record_key(prob["id"], sample, "t1"), prompt=training_prompt(prob["problem"], prompt_style),
        segments=segments, source="t1", mask_until_first_transition=bool(mask), case=case,
        first=first_rec["teacher"], sample=sample, text_format=transition_style,
    ).to_dict()


def _drop(rec: dict[str, Any] | None, reason: str, **extra: Any) -> dict[str, Any]:
    prob = (rec or {}).get("problem") or {}
    return {"problem_id": prob.get("id"), "sample": (rec or {}).get("sample"), "case": extra.pop("case", None),
            "first": extra.pop("first", None), "subset": prob.get("subset"), "family": prob.get("family"),
            "reason": reason, **extra}


def pair_records(records: list[dict[str, Any]]) -> tuple[list[tuple[dict, dict]], list[dict[str, Any]]]:
    """Pairs (first, second) per (problem id, sample), sorted; and drop entries for incomplete or
    failed pairs. A later record for the same (problem, role, sample) supersedes an earlier one."""
    slots: dict[tuple[str, Any], dict[str, dict]] = defaultdict(dict)
    for rec in records:
        prob = _problem(rec)
        role = rec.get("role")
        if role not in ("first", "second"):
            raise CompositionError(f"record {rec.get('key')!r}: field 'role' must be first|second, got {role!r}")
        slots[(str(prob["id"]), rec.get("sample", 0))][role] = rec
    pairs, dropped = [], []
    for _, slot in sorted(slots.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        first, second = slot.get("first"), slot.get("second")
        teacher = (first or {}).get("teacher")
        if first is None:
            dropped.append(_drop(second, "missing_first"))
        elif any(r is not None and r.get("status", "ok") != "ok" for r in (first, second)):
            bad = [r["role"] for r in (first, second) if r is not None and r.get("status", "ok") != "ok"]
            dropped.append(_drop(first, "failed_rollout", first=teacher, roles=",".join(bad)))
        elif second is None:
            dropped.append(_drop(first, "missing_second", first=teacher))
        else:
            pairs.append((first, second))
    return pairs, dropped


def compose_all(records: list[dict[str, Any]], cfg: CompositionConfig, prompt_style: str = "r1"
                ) -> tuple[list[dict], list[dict]]:
    """All composable examples (before balancing) and the drop entries."""
    pairs, dropped = pair_records(records)
    examples = []
    bar = progress.bar(len(pairs), "compose", enabled=len(pairs) >= 2000)
    for first, second in pairs:
        bar.update(1)
        case = _case(first.get("correct"), second.get("correct"))
        try:
            ex = compose_pair(first, second, cfg.transitions, cfg.mask_before_transition, prompt_style,
                              cfg.transition_style)
        except FormatError as err:
            dropped.append(_drop(first, "invalid_format", case=case, first=first["teacher"], error=str(err)))
            continue
        if ex is None:
            dropped.append(_drop(first, "both_wrong", case=case, first=first["teacher"]))
        else:
            examples.append(ex)
    bar.close()
    return examples, dropped


def _subsample(items: list[dict], n: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(kept, removed): a seeded random subsample of size n, order kept."""
    if len(items) <= n:
        return list(items), []
    keep = set(rng.sample(range(len(items)), n))
    return [x for i, x in enumerate(items) if i in keep], [x for i, x in enumerate(items) if i not in keep]


def _as_drop(ex: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"problem_id": ex["problem_id"], "sample": ex.get("sample"), "case": ex.get("case"), "first": ex.get("first"),
            "subset": ex.get("subset"), "family": ex.get("family"), "reason": reason}


def _capped(examples: list[dict], field: str, caps: dict[str, int], reason: str, rng: random.Random
            ) -> tuple[list[dict], list[dict]]:
    kept_keys, dropped = set(), []
    for value in sorted({str(ex[field]) for ex in examples}):
        group = [ex for ex in examples if str(ex[field]) == value]
        if value in caps:
            group, removed = _subsample(group, caps[value], rng)
            dropped += [_as_drop(ex, reason) for ex in removed]
        kept_keys.update(ex["key"] for ex in group)
    return [ex for ex in examples if ex["key"] in kept_keys], dropped


def balance_group(ex: dict[str, Any], balance_by: str) -> str:
    """The balancing group of a T1 example: its subset label, or its teachers' outcome (module docstring)."""
    if balance_by == "subset":
        return str(ex.get("subset"))
    if balance_by == "outcome":
        try:
            return OUTCOME_GROUPS[(str(ex.get("case")), str(ex.get("first")))]
        except KeyError:
            raise ValueError(f"example {ex.get('key')!r}: no outcome group for case {ex.get('case')!r}, "
                             f"first {ex.get('first')!r}") from None
    raise ValueError(f"composition.balance_by: unknown value {balance_by!r}")


def balance(examples: list[dict[str, Any]], cfg: CompositionConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Caps first (``max_per_case``, then ``max_per_first_teacher``), then the balancing rule over
    the groups of ``cfg.balance_by`` (written to each example's ``group``).

    Returns the kept examples (sorted by key, deterministic for a seed) and a report:
    ``rule``, ``by``, ``before`` / ``after`` counts per group, ``target_per_group``, ``warnings`` and
    ``dropped`` (one entry per removed example with its ``reason``)."""
    bad = [k for k in cfg.max_per_first_teacher if k not in TEACHERS]
    if bad:
        raise ValueError(f"composition.max_per_first_teacher: keys must be text|agent, got {bad}")
    if cfg.balance not in ("subset_equal", "none"):
        raise ValueError(f"composition.balance: unknown rule {cfg.balance!r}")
    rng = random.Random(cfg.seed)
    kept = sorted(({**ex, "group": balance_group(ex, cfg.balance_by)} for ex in examples), key=lambda ex: ex["key"])
    if len({ex["key"] for ex in kept}) != len(kept):
        raise ValueError("balance: example keys are not unique")
    before = Counter(ex["group"] for ex in kept)
    dropped: list[dict[str, Any]] = []
    kept, d = _capped(kept, "case", cfg.max_per_case, "cap_case", rng)
    dropped += d
    kept, d = _capped(kept, "first", cfg.max_per_first_teacher, "cap_first_teacher", rng)
    dropped += d
    target, warnings = None, []
    if cfg.balance == "subset_equal" and kept:
        groups: dict[str, list[dict]] = defaultdict(list)
        for ex in kept:
            if not (cfg.balance_by == "outcome" and ex["group"] == NEUTRAL):
                groups[ex["group"]].append(ex)
        if len(groups) < 2:
            warnings.append(
                f"composition.balance subset_equal balances nothing: T1 has {len(groups)} {cfg.balance_by} group(s) "
                f"({sorted(groups)}); label the problems' subsets (DataSource.subset / field_map.subset) or set "
                "composition.balance_by: outcome")
            log.warning("%s", warnings[-1])
        else:
            target = min(len(g) for g in groups.values())
            removed_keys = set()
            for name in sorted(groups):
                _, removed = _subsample(groups[name], target, rng)
                removed_keys.update(ex["key"] for ex in removed)
                dropped += [_as_drop(ex, "balance") for ex in removed]
            kept = [ex for ex in kept if ex["key"] not in removed_keys]
    report = {
        "rule": cfg.balance,
        "by": cfg.balance_by,
        "before": dict(sorted(before.items())),
        "after": dict(sorted(Counter(ex["group"] for ex in kept).items())),
        "target_per_group": target,
        "warnings": warnings,
        "dropped": dropped,
    }
    return kept, report


def baseline_pool(records: list[dict[str, Any]], teacher: str, name: str) -> list[tuple[dict, list[Segment]]]:
    """Correct, valid, ok trajectories of one teacher (either role)."""
    if teacher not in TEACHERS:
        raise ValueError(f"baseline teacher must be one of {TEACHERS}, got {teacher!r}")
    pool = []
    for rec in records:
        if rec.get("teacher") != teacher or rec.get("status", "ok") != "ok" or not rec.get("correct"):
            continue
        segments = _segments(rec)
        if not formatting.is_valid(segments):
            log.warning("baseline %s: skipping %r (invalid format)", name, rec.get("key"))
            continue
        pool.append((rec, segments))
    return pool


def baseline_examples(records: list[dict[str, Any]], teacher: str, n: int, seed: int = 0, *,
                      name: str | None = None, prompt_style: str = "r1", fill: bool = False) -> list[dict[str, Any]]:
    """Up to ``n`` correct trajectories of one teacher (either role), as sampled, with the T1
    training prompt and ``source="baseline:<name>"`` (default name: text_only / tool_only).
    Problems are spread first: one trajectory per problem before a second one of the same problem
    is taken (seeded order). With ``fill``, fewer than ``n`` distinct trajectories are repeated
    (keys suffixed ``#rep<k>``) so the baseline trains on as many examples as T1 — the same
    budget of optimizer steps and tokens; otherwise a warning says how many are missing."""
    name = name or BASELINE_DEFAULT_NAMES.get(teacher, str(teacher))
    cands = baseline_pool(records, teacher, name)
    cands.sort(key=lambda c: (str(_problem(c[0])["id"]), c[0].get("role", ""), str(c[0].get("sample", 0))))
    rng = random.Random(seed)
    rng.shuffle(cands)
    seen: Counter = Counter()
    ranked = []
    for rec, segs in cands:
        pid = str(_problem(rec)["id"])
        ranked.append((seen[pid], len(ranked), rec, segs))
        seen[pid] += 1
    ranked.sort(key=lambda r: (r[0], r[1]))
    out = []
    for _, _, rec, segs in ranked[: max(n, 0)]:
        prob = _problem(rec)
        out.append(TrainingExample.build(
            prob, key=record_key(prob["id"], rec.get("role"), rec.get("sample", 0), f"baseline:{name}"),
            prompt=training_prompt(prob["problem"], prompt_style), segments=segs, source=f"baseline:{name}",
            first=teacher, sample=rec.get("sample", 0), role=rec.get("role"),
        ).to_dict())
    if len(out) < n and fill and out:
        distinct = list(out)
        for i in range(n - len(distinct)):
            ex = distinct[i % len(distinct)]
            out.append({**ex, "key": f"{ex['key']}#rep{i // len(distinct) + 1}"})
    elif len(out) < n:
        log.warning("baseline %s: only %d correct %s-teacher trajectories for a budget of %d", name, len(out), teacher, n)
    return sorted(out, key=lambda ex: ex["key"])


def composition_stats(examples: list[dict[str, Any]], dropped: list[dict[str, Any]]) -> pd.DataFrame:
    """Counts per (case, first teacher, subset): ``kept`` plus one column per drop reason, and a
    final ``all`` row. Unknown values (e.g. the case of a failed rollout) show as ``-``."""
    rows = [{"case": ex.get("case"), "first": ex.get("first"), "subset": ex.get("subset"), "status": "kept"}
            for ex in examples]
    rows += [{"case": d.get("case"), "first": d.get("first"), "subset": d.get("subset"), "status": d["reason"]}
             for d in dropped]
    cols = ["kept"] + [r for r in DROP_REASONS if any(d["reason"] == r for d in dropped)]
    cols += sorted({d["reason"] for d in dropped} - set(cols))
    if not rows:
        return pd.DataFrame(columns=["case", "first", "subset", *cols, "total"])
    df = pd.DataFrame(rows).fillna("-").astype(str)
    table = df.pivot_table(index=["case", "first", "subset"], columns="status", aggfunc="size", fill_value=0)
    table = table.reindex(columns=cols, fill_value=0)
    table["total"] = table.sum(axis=1)
    table = table.reset_index()
    total = {"case": "all", "first": "all", "subset": "all", **{c: int(table[c].sum()) for c in [*cols, "total"]}}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table.columns.name = None
    return table
