"""The ``hf`` backend: transformers ``generate`` on CPU or GPU, batched with left padding.

    policy = HFPolicy(PolicyConfig(backend="hf", model="outputs/smoke/models/S1"))
    [gen] = policy.generate([GenerationRequest(prompt, max_new_tokens=64, stop=["</code>"])])

Requests with the same sampling settings are sorted by prompt length and sent in chunks of
``cfg.max_concurrency``; a request's ``prompt_ids`` (token in, token out), when given, are used as
they are instead of encoding its text. Each row stops on its own: at EOS (``finish_reason="eos"``; the EOS token is
counted in ``n_tokens`` but not returned), at a stop string (``"stop"``: the text is cut before the
first stop string, which is dropped, as in vLLM; ``token_ids`` run up to the token that completes
it), or at its own ``max_new_tokens`` / the model's context (``"length"``). Temperature 0 is greedy;
otherwise sampling with the request's ``top_p`` and ``top_k`` (-1: off) — the same settings every
backend sends — unless ``cfg.extra`` gives other ``generate`` keyword arguments. A ``top_p`` / ``top_k``
of None is the engine's default: what the model's ``generation_config`` sets explicitly, else off
(top_p 1.0, top_k off), as vLLM reads a generation config (:meth:`HFPolicy.default_sampling`). One seed per chunk: the first request's seed, else the policy's.
A chunk that fails (e.g. out of memory) returns ``finish_reason="error"`` for its requests.
"""

from __future__ import annotations

import logging
from typing import Any

from dualdistill.formats.formatting import EOS_TOKEN
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class _RowStops:
    """Per-row stopping: a stop string in the generated tail, or the row's own token limit."""

    def __init__(self, prompt_len: int, stops: list[list[str]], limits: list[int], tokenizer: Any) -> None:
        self.prompt_len = prompt_len
        self.stops = stops
        self.limits = limits
        self.tokenizer = tokenizer
        self.tail = max((len(s) for row in stops for s in row), default=0) + 2

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        n_new = input_ids.shape[1] - self.prompt_len
        done = []
        for i, row in enumerate(input_ids):
            if n_new >= self.limits[i]:
                done.append(True)
                continue
            if not self.stops[i]:
                done.append(False)
                continue
            start = max(self.prompt_len, input_ids.shape[1] - self.tail)
            text = self.tokenizer.decode(row[start:].tolist(), skip_special_tokens=False)
            done.append(any(s in text for s in self.stops[i]))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _stopping_criteria(rows: _RowStops) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Criteria(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return rows(input_ids, scores)

    return StoppingCriteriaList([_Criteria()])


class HFPolicy(Policy):
    """A causal LM continued with ``model.generate`` (see the module docstring)."""

    name = "hf"

    def __init__(self, cfg: Any, *, model: Any = None, tokenizer: Any = None, device: str = "auto",
                 seed: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.seed = seed
        self.device = _resolve_device(device)
        if model is None and not cfg.model:
            raise ValueError("hf policy: cfg.model (a model directory or hub id) is required")
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(cfg.model or model.name_or_path)
        if model is None:
            dtype: Any = _DTYPES.get(cfg.dtype)
            if dtype is None:  # "auto": the checkpoint's dtype on GPU, float32 on CPU
                dtype = "auto" if self.device.startswith("cuda") else torch.float32
            model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        eos: set[int] = set()
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        eos.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        if EOS_TOKEN in tokenizer.get_vocab():
            eos.add(tokenizer.convert_tokens_to_ids(EOS_TOKEN))
        if not eos:
            raise ValueError("hf policy: neither the model nor the tokenizer defines an EOS token")
        self.eos_ids = eos
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.generate_kwargs = dict(cfg.extra)

    def default_sampling(self) -> tuple[float, int]:
        """(top_p, top_k) where a request leaves them to the engine: the values the model's
        ``generation_config`` sets (not transformers' class defaults, e.g. its top_k of 50), else off."""
        config = getattr(self.model, "generation_config", None)
        given = config.to_diff_dict() if config is not None else {}
        top_p, top_k = given.get("top_p"), given.get("top_k")
        return (1.0 if top_p is None else float(top_p)), (-1 if top_k is None else int(top_k))

    @property
    def max_batch(self) -> int:
        """Rows per ``generate`` call: what the tool loop's micro-batcher sends at most at once."""
        return self.cfg.max_concurrency

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def close(self) -> None:
        import torch

        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple[float, float, int], list[tuple[int, list[int], int]]] = {}
        for i, req in enumerate(requests):
            ids = req.prompt_ids if req.prompt_ids is not None else self.tokenizer.encode(req.prompt, add_special_tokens=False)
            room = req.max_new_tokens
            if self.max_positions:
                room = min(room, self.max_positions - len(ids))
                if len(ids) >= self.max_positions:
                    out[i] = Generation("", "error", 0, error=f"prompt of {len(ids)} tokens does not fit "
                                        f"the model's context of {self.max_positions}")
                    continue
            if room <= 0:
                out[i] = Generation("", "length", 0, token_ids=[])
                continue
            top_p, top_k = self.default_sampling()
            top_p = top_p if req.top_p is None else float(req.top_p)
            top_k = top_k if req.top_k is None else int(req.top_k)
            groups.setdefault((float(req.temperature), top_p, top_k), []).append((i, ids, room))
        size = self.cfg.max_concurrency
        for sampling, rows in groups.items():
            rows.sort(key=lambda r: len(r[1]))
            for start in range(0, len(rows), size):
                chunk = rows[start : start + size]
                try:
                    gens = self._generate_chunk([requests[i] for i, _, _ in chunk], chunk, *sampling)
                except Exception as err:  # a failing chunk must not take the whole call down
                    log.warning("hf generate failed for %d requests: %r", len(chunk), err)
                    gens = [Generation("", "error", 0, error=f"{type(err).__name__}: {err}") for _ in chunk]
                for (i, _, _), gen in zip(chunk, gens, strict=True):
                    out[i] = gen
        return [g for g in out if g is not None]

    def _generate_chunk(self, reqs: list[GenerationRequest], rows: list[tuple[int, list[int], int]],
                        temperature: float, top_p: float, top_k: int) -> list[Generation]:
        import torch

        width = max(len(ids) for _, ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (_, ids, _) in enumerate(rows):
            input_ids[r, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            mask[r, width - len(ids):] = 1
        limits = [room for _, _, room in rows]
        stops = [list(req.stop) for req in reqs]
        seed = next((q.seed for q in reqs if q.seed is not None), self.seed)
        if seed is not None:
            torch.manual_seed(seed)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_k": max(top_k, 0), "top_p": top_p}
        sampling.update(self.generate_kwargs)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max(limits),
                stopping_criteria=_stopping_criteria(_RowStops(width, stops, limits, self.tokenizer)),
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids),
                **sampling,
            )
        new = output[:, width:].tolist()
        return [self._finish(row[:limit], stop) for row, limit, stop in zip(new, limits, stops, strict=True)]

    def _finish(self, ids: list[int], stops: list[str]) -> Generation:
        """Cut one row at its first stop string, EOS or limit."""
        eos_at = next((k for k, t in enumerate(ids) if t in self.eos_ids), None)
        body = ids if eos_at is None else ids[:eos_at]
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        hits = [(text.find(s), s) for s in stops if s and s in text]
        if hits:
            pos, stop = min(hits)
            end = pos + len(stop)
            lo, hi = 1, len(body)  # fewest tokens whose text covers the stop string
            while lo < hi:
                mid = (lo + hi) // 2
                if len(self.tokenizer.decode(body[:mid], skip_special_tokens=False)) >= end:
                    hi = mid
                else:
                    lo = mid + 1
            return Generation(text[:pos], "stop", lo, token_ids=body[:lo], stop=stop)
        if eos_at is not None:
            return Generation(text, "eos", len(body) + 1, token_ids=body)
        return Generation(text, "length", len(body), token_ids=body)
