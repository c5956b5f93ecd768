"""The ``openai`` policy backend: any OpenAI-compatible server (vLLM / SGLang server, DeepSeek API).

    cfg = PolicyConfig(backend="openai", base_url="http://127.0.0.1:8000/v1", model="outputs/smoke/S1")
    with OpenAIPolicy(cfg) as policy:
        gens = policy.generate([GenerationRequest(prompt, max_new_tokens=512, stop=["</code>"])])

``cfg.api``:

- ``completions`` — ``POST /v1/completions`` with the request's text as ``prompt``. A vLLM server
  reports which stop string ended a generation (``stop_reason``); a server that does not (OpenAI,
  DeepSeek) answers ``finish_reason="stop"`` for both EOS and stop strings, so the stop string is
  inferred from an unclosed tag (``<code>`` open at the end → ``</code>``), marked
  ``extra["stop_inferred"]``.
- ``chat`` — ``POST /v1/chat/completions``. The r1 prompt text is split back into system prompt,
  problem (user message) and the completion so far (see :func:`split_r1_prompt`); without r1 tags
  the problem comes from ``request.context["problem"]`` or the whole prompt. A non-empty
  completion so far (the tool loop continuing after ``<executor>``) is sent as a partial assistant
  message: ``extra.chat_prefix = "vllm"`` uses vLLM's ``continue_final_message`` (default when the
  server is vLLM), ``"deepseek"`` DeepSeek's ``prefix: true`` (base_url ``.../beta``), ``"none"``
  cannot continue a partial turn and reports an error for such requests (use ``api: completions``
  or the ``codeact`` wrapper, which sends executor output as a user turn). DeepSeek's
  ``reasoning_content`` (vLLM: ``reasoning``) becomes the think block:
  ``"<think>\\n" + reasoning + "\\n</think>\\n"`` followed by the content as an answer block (kept
  as is when it already has tags); the part the prompt already holds (``<think>\\n``) is cut off,
  and the request's stop strings are applied to the tags added here (``stop_applied_client_side``).

Tokens: ``n_tokens`` is the server's ``usage.completion_tokens`` (EOS and stop-string tokens
included). vLLM returns the sampled ``token_ids`` (requested with ``return_token_ids``); as in the
hf and vllm backends the final EOS id is dropped at ``"eos"``. A prompt that starts with the R1
BOS text is sent to vLLM with ``add_special_tokens: false`` (no second BOS).

Requests run on one background asyncio loop (``AsyncOpenAI``) with at most ``cfg.max_concurrency``
in flight. The tool loop sends one request per trajectory the moment it is ready (``agenerate``;
``async_native``): size ``max_concurrency`` to what the server batches (a local vLLM server: its
``--max-num-seqs``). Sampling is sent as the request sets it (``temperature``, ``seed``,
``top_p`` and, for vLLM, ``top_k``); a ``top_p`` / ``top_k`` of None is left out, so a vLLM server
fills it from the model's ``generation_config`` (as for the official requests). Token in, token
out: with a vLLM server and a request that carries ``prompt_ids``, the prompt is sent as those ids. Each attempt is capped at ``cfg.request_timeout`` seconds (client timeout *and* a hard
``asyncio.wait_for``), and retried with exponential backoff (tenacity; ``Retry-After`` honoured) on
429, 408/409/5xx, timeouts, connection errors and garbage (non-JSON, no ``choices``), up to
``cfg.max_retries`` times. Other 4xx are not retried. An item that keeps failing comes back as
``Generation(finish_reason="error", error=...)``; ``generate`` never raises for an item and never
hangs (every attempt and every backoff is bounded; ``extra.overall_timeout`` caps a whole batch).

The API key is read from the environment variable ``cfg.api_key_env`` (a dummy when unset, for
local servers) and never logged. ``cfg.extra`` keys: ``backoff_initial`` (1.0 s), ``backoff_max``
(30 s), ``overall_timeout`` (None), ``chat_prefix`` (auto), ``return_token_ids`` (auto: on for
vLLM), ``extra_body`` (dict sent with every request, e.g. ``{"top_p": 0.95}``), ``server``
(``auto`` | ``vllm`` | ``other``; auto asks ``/v1/models`` for ``owned_by: vllm``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from dualdistill.formats import formatting
from dualdistill.rollout.backends.chat_text import (
    cut_at_stop,
    infer_stop,
    problem_text,
    reasoning_to_text,
    split_r1_prompt,
    strip_prefill,
)
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy

log = logging.getLogger(__name__)

EXTRA_KEYS = {
    "backoff_initial", "backoff_max", "overall_timeout", "chat_prefix", "return_token_ids", "extra_body", "server",
}
RETRY_STATUS = {408, 409, 425, 429}
DUMMY_KEY = "EMPTY"


class BadResponse(ValueError):
    """A 200 answer that is not a usable completion (non-JSON, no choices, no text)."""


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as err:  # pragma: no cover - openai is a core dependency
        raise ImportError("the openai backend needs the openai client: pip install 'openai>=1.50'") from err
    return openai


class OpenAIPolicy(Policy):
    """Continues prompts through an OpenAI-compatible HTTP server (see the module docstring)."""

    name = "openai"
    async_native = True
    send_seeds = True  # the vllm-server backend leaves seeds to its engine unless asked (extra.request_seeds)

    def __init__(self, cfg: Any, *, tokenizer: Any = None, seed: int | None = None, **kw: Any) -> None:
        unknown = set(cfg.extra) - EXTRA_KEYS
        if unknown:
            raise ValueError(f"policy.extra: unknown key(s) {sorted(unknown)} for the openai backend; known: {sorted(EXTRA_KEYS)}")
        if cfg.extra.get("chat_prefix") not in (None, "vllm", "deepseek", "none"):
            raise ValueError(f"policy.extra.chat_prefix must be vllm, deepseek or none, got {cfg.extra['chat_prefix']!r}")
        if cfg.extra.get("server", "auto") not in ("auto", "vllm", "other"):
            raise ValueError(f"policy.extra.server must be auto, vllm or other, got {cfg.extra['server']!r}")
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.seed = seed
        self.base_url = (cfg.base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
        if not self.base_url:
            raise ValueError("policy.base_url is not set (nor OPENAI_BASE_URL) for the openai backend")
        self.model = cfg.model
        self.backoff_initial = float(cfg.extra.get("backoff_initial", 1.0))
        self.backoff_max = float(cfg.extra.get("backoff_max", 30.0))
        self.overall_timeout = cfg.extra.get("overall_timeout")
        self.extra_body = dict(cfg.extra.get("extra_body") or {})
        self._server = cfg.extra.get("server", "auto")
        self._tokenize_ok: bool | None = None
        self._discovered = False
        self._discover_error: str | None = None
        self._http: Any = None  # one httpx client for /tokenize (connections reused)
        self._warned_estimate = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: dict[asyncio.AbstractEventLoop, tuple[Any, asyncio.Semaphore]] = {}  # per event loop
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "errors": 0}

    # --- plumbing ------------------------------------------------------------------------------
    @property
    def _api_key(self) -> str:
        return os.environ.get(self.cfg.api_key_env) or DUMMY_KEY

    @property
    def root_url(self) -> str:
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="openai-policy", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
        return self._loop

    def _run(self, coro: Awaitable[Any], timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result(timeout)  # type: ignore[arg-type]

    def _get_client(self) -> Any:
        """The client of the running event loop (an HTTP client belongs to one loop): the tool loop's
        own when it awaits :meth:`agenerate`, this policy's background loop for :meth:`generate`."""
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            openai = _import_openai()
            client = openai.AsyncOpenAI(
                api_key=self._api_key, base_url=self.base_url, timeout=self.cfg.request_timeout, max_retries=0
            )
            self._clients[loop] = (client, asyncio.Semaphore(self.cfg.max_concurrency))
        return self._clients[loop][0]

    async def release_loop(self) -> None:
        """Close the running loop's client (the tool loop calls this before its loop ends)."""
        entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].close()

    def _http_get_json(self, url: str) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"}
        r = httpx.get(url, headers=headers, timeout=min(self.cfg.request_timeout, 30.0))
        r.raise_for_status()
        return r.json()

    def _discover(self) -> None:
        """Ask ``/v1/models`` once: the served model (when cfg.model is unset) and whether it is vLLM."""
        if self._server != "auto" and self.model:
            return
        try:
            data = self._http_get_json(f"{self.base_url}/models").get("data") or []
        except Exception as err:  # noqa: BLE001 - discovery is best effort
            if not self.model:
                raise ValueError(f"policy.model is unset and {self.base_url}/models failed: {err}") from None
            self._server = "other" if self._server == "auto" else self._server
            return
        if not self.model:
            if not data:
                raise ValueError(f"policy.model is unset and {self.base_url}/models lists no model")
            self.model = data[0]["id"]
        if self._server == "auto":
            self._server = "vllm" if any(m.get("owned_by") == "vllm" for m in data) else "other"

    @property
    def is_vllm(self) -> bool:
        return self._server == "vllm"

    # --- the interface ---------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        try:
            self._discover()
        except Exception as err:  # noqa: BLE001 - reported per item, never raised
            return [Generation("", "error", 0, error=str(err)) for _ in requests]
        hard = None if self.overall_timeout is None else float(self.overall_timeout) + 5.0
        future = asyncio.run_coroutine_threadsafe(self._generate_all(requests), self._ensure_loop())
        try:
            return future.result(hard)
        except concurrent.futures.TimeoutError:  # a last guard; _generate_all enforces the timeout
            future.cancel()
            return [Generation("", "error", 0, error=f"overall timeout of {self.overall_timeout} s reached")
                    for _ in requests]

    @property
    def remote_count(self) -> bool:  # type: ignore[override]
        """Without a local tokenizer, counting asks the server's /tokenize."""
        return self.tokenizer is None and self._tokenize_ok is not False

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """One request, on the caller's event loop (no thread hop between the tool loop and HTTP)."""
        if not self._discovered:
            await asyncio.get_running_loop().run_in_executor(None, self._discover_or_error)
        if self._discover_error is not None:
            return Generation("", "error", 0, error=self._discover_error)
        self._get_client()
        gen = await self._one(request)
        self.stats["errors"] += gen.finish_reason == "error"
        return gen

    def _discover_or_error(self) -> None:
        try:
            self._discover()
        except Exception as err:  # noqa: BLE001 - reported per item, never raised
            self._discover_error = str(err)
        self._discovered = True

    async def _generate_all(self, requests: list[GenerationRequest]) -> list[Generation]:
        self._get_client()
        tasks = [asyncio.ensure_future(self._one(r)) for r in requests]
        done, pending = await asyncio.wait(tasks, timeout=self.overall_timeout)
        for t in pending:
            t.cancel()
        out = []
        for t in tasks:
            if t in pending:
                out.append(Generation("", "error", 0, error=f"overall timeout of {self.overall_timeout} s reached"))
            elif t.exception() is not None:
                out.append(Generation("", "error", 0, error=f"{type(t.exception()).__name__}: {t.exception()}"))
            else:
                out.append(t.result())
        self.stats["errors"] += sum(g.finish_reason == "error" for g in out)
        return out

    async def _one(self, request: GenerationRequest) -> Generation:
        if request.max_new_tokens <= 0:
            return Generation("", "length", 0)
        if self.cfg.api == "chat":
            try:
                payload = self._chat_payload(request)
            except ValueError as err:
                return Generation("", "error", 0, error=str(err))
            call: Callable[[], Awaitable[Generation]] = partial(self._chat_call, request, payload)
        else:
            call = partial(self._completion_call, request)
        try:
            return await self._with_retries(call)
        except Exception as err:  # noqa: BLE001 - an item's failure is a result, not an exception
            return Generation("", "error", 0, error=_describe(err))

    async def _with_retries(self, call: Callable[[], Awaitable[Generation]]) -> Generation:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        sem = self._clients[asyncio.get_running_loop()][1]
        expo_cap = self.backoff_max

        def wait(state: Any) -> float:
            delay = min(expo_cap, self.backoff_initial * 2 ** (state.attempt_number - 1))
            retry_after = _retry_after(state.outcome.exception())
            return min(expo_cap, max(delay, retry_after or 0.0))

        def before_sleep(state: Any) -> None:
            self.stats["retries"] += 1
            log.debug("openai: attempt %d failed (%s); retrying", state.attempt_number, _describe(state.outcome.exception()))

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.cfg.max_retries + 1), wait=wait, retry=retry_if_exception(_retryable),
            before_sleep=before_sleep, reraise=True,
        ):
            with attempt:
                async with sem:  # held only while a request is in flight, not while backing off
                    self.stats["requests"] += 1
                    return await asyncio.wait_for(call(), timeout=self.cfg.request_timeout)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- completions ---------------------------------------------------------------------------
    def _common(self, request: GenerationRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": request.max_new_tokens,
                                  "temperature": request.temperature}
        if request.top_p is not None:  # None: the server's default (vLLM: the model's generation config)
            kwargs["top_p"] = request.top_p
        if request.stop:
            kwargs["stop"] = list(request.stop)
        seed = request.seed if request.seed is not None else self.seed
        if seed is not None and self.send_seeds:
            kwargs["seed"] = seed
        body = dict(self.extra_body)
        if self.is_vllm and request.top_k is not None:  # other servers (OpenAI, DeepSeek) have no top_k
            body.setdefault("top_k", request.top_k)
        if self.cfg.extra.get("return_token_ids", self.is_vllm):
            body.setdefault("return_token_ids", True)
        return kwargs, body

    async def _completion_call(self, request: GenerationRequest) -> Generation:
        kwargs, body = self._common(request)
        prompt: str | list[int] = request.prompt
        if self.is_vllm and request.prompt_ids is not None:
            prompt = list(request.prompt_ids)  # token in: exactly the ids sampled and inserted so far
        elif self.is_vllm and request.prompt.startswith(formatting.BOS_TOKEN):
            body.setdefault("add_special_tokens", False)  # the prompt already has its BOS
        resp = await self._get_client().completions.create(prompt=prompt, extra_body=body or None, **kwargs)
        choice = _first_choice(resp)
        text = getattr(choice, "text", None)
        if not isinstance(text, str):
            raise BadResponse("completion choice has no text")
        return self._to_generation(request, choice, text, resp, prior=request.prompt)

    def _to_generation(self, request: GenerationRequest, choice: Any, text: str, resp: Any, *, prior: str,
                       extra: dict[str, Any] | None = None) -> Generation:
        raw = getattr(choice, "finish_reason", None)
        extras = dict(getattr(choice, "model_extra", None) or {})
        extra = dict(extra or {})
        stop = None
        if raw == "length":
            finish = "length"
        elif raw == "stop":
            if "stop_reason" in extras:  # vLLM: a string = stop string, None / int = EOS / stop token
                reason = extras["stop_reason"]
                stop = reason if isinstance(reason, str) else None
                if stop is None and extras.get("token_ids"):  # EOS counted, not kept (as hf / vllm)
                    extras["token_ids"] = extras["token_ids"][:-1]
            else:
                stop = infer_stop(prior + text, request.stop)
                extra["stop_inferred"] = True
            finish = "stop" if stop is not None else "eos"
        elif raw in ("abort", "content_filter") or raw is None:
            raise BadResponse(f"finish_reason {raw!r}")
        else:
            finish, extra["finish_reason_raw"] = "eos", raw
        usage = getattr(resp, "usage", None)
        n_tokens = getattr(usage, "completion_tokens", None)
        token_ids = extras.get("token_ids")
        if n_tokens is None:
            n_tokens = len(token_ids) if token_ids else self.count_tokens(text)
            extra["n_tokens_estimated"] = token_ids is None
        return Generation(text, finish, int(n_tokens), token_ids=token_ids, stop=stop, extra=extra)

    # --- chat ----------------------------------------------------------------------------------
    def _chat_payload(self, request: GenerationRequest) -> dict[str, Any]:
        system, problem, so_far = split_r1_prompt(request.prompt)
        if problem is None:
            problem, so_far = problem_text(request) or request.prompt, ""
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": problem})
        body: dict[str, Any] = {}
        continued = False
        mode = self.cfg.extra.get("chat_prefix") or ("vllm" if self.is_vllm else "none")
        if so_far.strip() and so_far.strip() != formatting.GENERATION_PREFIX.strip():
            continued = True
            if mode == "vllm":
                messages.append({"role": "assistant", "content": so_far})
                body = {"continue_final_message": True, "add_generation_prompt": False}
            elif mode == "deepseek":
                messages.append({"role": "assistant", "content": so_far, "prefix": True})
            else:
                raise ValueError(
                    "chat api: this server cannot continue a partial assistant turn (extra.chat_prefix='none'); "
                    "use api: completions, a vLLM server (chat_prefix: vllm), DeepSeek's beta prefix mode "
                    "(chat_prefix: deepseek) or the codeact policy"
                )
        return {"messages": messages, "body": body, "so_far": so_far, "continued": continued}

    async def _chat_call(self, request: GenerationRequest, payload: dict[str, Any]) -> Generation:
        kwargs, body = self._common(request)
        body.update(payload["body"])
        resp = await self._get_client().chat.completions.create(messages=payload["messages"], extra_body=body or None, **kwargs)
        choice, message, reasoning = _chat_message(resp)
        content = getattr(message, "content", None) or ""
        if not content and not reasoning:
            if getattr(choice, "finish_reason", None) != "length":
                raise BadResponse("chat message has neither content nor reasoning")
        text = reasoning_to_text(reasoning, content, "length" if choice.finish_reason == "length" else "stop")
        if not payload["continued"]:  # a continued turn comes back as the continuation only
            text = strip_prefill(text, payload["so_far"])
        extra = {"reasoning_content": reasoning} if reasoning else {}
        gen = self._to_generation(request, choice, text, resp, prior=request.prompt, extra=extra)
        return cut_at_stop(gen, request.stop)

    async def chat_messages(self, messages: list[dict[str, Any]], request: GenerationRequest) -> Generation:
        """One raw chat turn (``text`` = the assistant content; ``extra["reasoning_content"]``)."""
        kwargs, body = self._common(request)
        resp = await self._get_client().chat.completions.create(messages=messages, extra_body=body or None, **kwargs)
        choice, message, reasoning = _chat_message(resp)
        extra = {"reasoning_content": reasoning} if reasoning else {}
        return self._to_generation(request, choice, getattr(message, "content", None) or "", resp, prior="", extra=extra)

    def chat(self, conversations: list[list[dict[str, Any]]], requests: list[GenerationRequest]) -> list[Generation]:
        """Raw chat turns for a batch of conversations (used by the codeact wrapper), with the same
        concurrency bound, retries and error reporting as :meth:`generate`."""
        if len(conversations) != len(requests):
            raise ValueError("chat: one request (limits, stop, seed) per conversation")
        try:
            self._discover()
        except Exception as err:  # noqa: BLE001
            return [Generation("", "error", 0, error=str(err)) for _ in requests]

        async def run_all() -> list[Generation]:
            self._get_client()

            async def one(msgs: list[dict[str, Any]], req: GenerationRequest) -> Generation:
                try:
                    return await self._with_retries(partial(self.chat_messages, msgs, req))
                except Exception as err:  # noqa: BLE001
                    return Generation("", "error", 0, error=_describe(err))

            return list(await asyncio.gather(*(one(m, r) for m, r in zip(conversations, requests, strict=True))))

        return self._run(run_all())

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "base_url": self.base_url, "api": self.cfg.api}
        if self.model:
            out["model"] = self.model
        if self._server != "auto":
            out["server"] = self._server
        return out

    # --- tokens --------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Via the given HF tokenizer, else the server's ``/tokenize`` (vLLM), else ~len/4 (warned once)."""
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        if self._tokenize_ok is not False:
            try:
                import httpx

                if self._http is None:
                    self._http = httpx.Client(timeout=min(self.cfg.request_timeout, 30.0))
                r = self._http.post(
                    f"{self.root_url}/tokenize",
                    json={"model": self.model, "prompt": text, "add_special_tokens": False},
                    headers={"Authorization": f"Bearer {self._api_key}"},
                )
                r.raise_for_status()
                data = r.json()
                count = data.get("count", len(data.get("tokens", [])))
                self._tokenize_ok = True
                return int(count)
            except Exception as err:  # noqa: BLE001 - fall back to an estimate
                if self._tokenize_ok is None:
                    self._tokenize_ok = False
                    log.debug("openai: %s/tokenize unavailable (%s)", self.root_url, _describe(err))
                else:
                    return self._estimate(text)
        return self._estimate(text)

    def _estimate(self, text: str) -> int:
        if not self._warned_estimate:
            self._warned_estimate = True
            log.warning("openai: no tokenizer and no /tokenize endpoint: counting tokens as len(text)/4")
        return math.ceil(len(text) / 4)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if loop in self._clients:
            try:
                asyncio.run_coroutine_threadsafe(self.release_loop(), loop).result(10)
            except Exception:  # noqa: BLE001
                pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()


def _chat_message(resp: Any) -> tuple[Any, Any, str | None]:
    """(choice, message, reasoning_content) of a chat response; BadResponse when it has no message."""
    choice = _first_choice(resp)
    message = getattr(choice, "message", None)
    if message is None:
        raise BadResponse("chat choice has no message")
    mextra = dict(getattr(message, "model_extra", None) or {})
    return choice, message, mextra.get("reasoning_content") or mextra.get("reasoning")


def _first_choice(resp: Any) -> Any:
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise BadResponse(f"response without choices: {str(resp)[:200]!r}")
    return choices[0]


def _status(err: BaseException) -> int | None:
    return getattr(err, "status_code", None)


def _retryable(err: BaseException) -> bool:
    openai = _import_openai()
    if isinstance(err, openai.APIStatusError):
        status = _status(err) or 0
        return status in RETRY_STATUS or status >= 500
    return isinstance(
        err, (openai.APITimeoutError, openai.APIConnectionError, openai.APIResponseValidationError,
              TimeoutError, asyncio.TimeoutError, ValueError)  # ValueError: JSON decode, BadResponse
    )


def _retry_after(err: BaseException | None) -> float | None:
    response = getattr(err, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "unknown error"
    if isinstance(err, (TimeoutError, asyncio.TimeoutError)):
        return "TimeoutError: request timed out"
    status = _status(err)
    msg = str(err) or type(err).__name__
    return f"{type(err).__name__}{f' (HTTP {status})' if status else ''}: {msg[:300]}"
