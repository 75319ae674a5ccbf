"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

Speaks ``POST /v1/chat/completions`` (first-token ``top_logprobs``), ``GET /v1/models`` (when
``served_models`` is set), ``POST /v1/files`` (multipart upload), ``GET /v1/files/{id}/content``,
``POST /v1/batches`` and ``GET /v1/batches/{id}``. Answers are deterministic per prompt: each
final answer gets a quality from a hash of its text, the judge's logits are (quality of the
answer shown first + ``position_bias``, quality of the second, ``tie_logit``), so swapping the
order changes only the bias term. Faults are switchable and chosen deterministically per
(prompt, attempt), so a retry of a failed prompt can succeed. Whole-endpoint faults (a required
key, an unknown model, one status for every chat call, a context limit, a hang, no batch API)
are settings too; :func:`unused_base_url` gives a URL where nothing listens (connection
refused). Every request is recorded (method, path, query target, headers, body).

Use the ``fake_openai`` fixture (registered for the whole suite in ``judge_assets_tests/conftest.py``).
"""

from __future__ import annotations

import email.parser
import fnmatch
import hashlib
import json
import math
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

FIRST_MARKER = "[Final answer of Assistant A]\n"
SECOND_MARKER = "[Final answer of Assistant B]\n"
NO_LABEL_MARKER = "[[no-label]]"
"""A prompt containing this text gets only non-label first-token candidates."""
FAULTS = ("rate_limit", "server_error", "slow", "malformed", "bad_json", "nan_logprobs", "positive_logprobs")
CONTEXT_MESSAGE = (
    "This model's maximum context length is {limit} tokens. However, you requested {n} tokens "
    "in the messages. Please reduce the length of the messages."
)


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class FakeSettings:
    """Behaviour of the server; change fields between runs (``server.settings.x = ...``).

    ``faults``: fault kinds drawn from (FAULTS) for the requests hit by ``fault_rate``
    (a share of (prompt, attempt) pairs) among the first ``fault_attempts`` attempts of each
    prompt (later attempts always succeed); ``retry_after``: seconds sent with 429s (None = no
    header); ``slow_s``: how long a ``slow`` fault stalls; ``latency_s``: fixed delay of every
    chat completion; ``batch_polls``: retrieves that report ``in_progress`` before a batch
    completes.

    Endpoint faults: ``api_key`` (every request without ``Bearer <api_key>`` gets OpenAI's 401,
    echoing the key masked); ``served_models`` (``GET /v1/models`` lists them and a chat for
    another model gets 404, ``*`` in an id routes like a proxy's wildcard; None = any model, no listing); ``chat_status`` / ``chat_message`` /
    ``chat_code`` (every chat completion answers that error, the message followed by the request
    target, with that error ``code`` and ``type``, e.g. OpenAI's ``insufficient_quota``);
    ``max_prompt_words`` / ``context_status`` (longer prompts get a context-length error);
    ``hang_s`` (every request waits this long, or until the server stops, before answering);
    ``batch_api`` (False: no files/batches routes).

    ``answer_tokens``: for judges other than the A/B/C pairwise one — when the system message
    contains a key, the first-token candidates are that key's tokens, each with the logit
    ``3 * unit(token, user message)`` (deterministic per prompt), e.g. ``{"Reply Y or N": ("Y", "N")}``.

    ``scale_tokens``: a pairwise judge on a scale — when the system message contains a key, the
    candidates are that key's tokens in scale order (e.g. ``("1", …, "8")``, the low end favouring
    the answer shown first) with a rounded-normal distribution (sd ``scale_sd``) around
    ``middle + (quality(second) − quality(first)) · (K − 1) / 2 − scale_position_bias``; an
    answer's quality is the number after ``quality=`` in its text, else the hash quality. So
    ``scale_position_bias > 0`` pulls ratings towards the answer shown first.
    """

    latency_s: float = 0.0
    position_bias: float = 0.0
    tie_logit: float = -1.0
    other_mass: float = 0.05
    faults: tuple[str, ...] = ()
    fault_rate: float = 0.0
    fault_attempts: int = 1_000_000
    retry_after: float | None = 1.0
    slow_s: float = 2.0
    batch_polls: int = 0
    api_key: str | None = None
    served_models: tuple[str, ...] | None = None
    chat_status: int | None = None
    chat_message: str = "internal error"
    chat_code: str | None = None
    max_prompt_words: int | None = None
    context_status: int = 400
    hang_s: float = 0.0
    batch_api: bool = True
    answer_tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    scale_tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    scale_sd: float = 0.8
    scale_position_bias: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    target: str  # the path with its query string, as sent
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float


@dataclass
class _State:
    requests: list[Recorded] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    attempts: Counter = field(default_factory=Counter)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)


def _quality(text: str) -> float:
    """An answer's quality in [0, 1]: the number after ``quality=`` in it, else a hash of the text."""
    match = re.search(r"quality=([0-9.]+)", text)
    return float(match.group(1)) if match else _unit("quality", text)


def judge_logprobs(messages: list[dict], settings: FakeSettings, n: int) -> list[dict]:
    """The first-token ``top_logprobs`` the fake judge returns for these messages."""
    prompt = json.dumps(messages, sort_keys=True)
    if NO_LABEL_MARKER in prompt:
        return [{"token": t, "logprob": math.log(p)} for t, p in (("The", 0.6), ("I", 0.3), ("**", 0.1))][:n]
    user = messages[-1]["content"]
    system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
    scale = next((t for key, t in settings.scale_tokens.items() if key in system), None)
    if scale is not None and FIRST_MARKER in user and SECOND_MARKER in user:
        first = user.split(FIRST_MARKER, 1)[1].split("\n\n[", 1)[0]
        second = user.split(SECOND_MARKER, 1)[1].rsplit("\n\n", 1)[0]
        k = len(scale)
        center = (k - 1) / 2 + (_quality(second) - _quality(first)) * (k - 1) / 2 - settings.scale_position_bias
        logits = {t: -((i - center) ** 2) / (2 * settings.scale_sd**2) for i, t in enumerate(scale)}
        z = sum(math.exp(v) for v in logits.values())
        label_mass = 1.0 - settings.other_mass
        candidates = [(t, label_mass * math.exp(v) / z) for t, v in logits.items()] + [("The", settings.other_mass)]
        candidates = [c for c in candidates if c[1] > 0]
        candidates.sort(key=lambda c: -c[1])
        return [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in candidates[:n]]
    tokens = next((t for key, t in settings.answer_tokens.items() if key in system), None)
    if tokens is not None:
        label_mass = 1.0 - settings.other_mass
        logits = {t: 3 * _unit("answer", t, user) for t in tokens}
        z = sum(math.exp(v) for v in logits.values())
        candidates = [(t, label_mass * math.exp(v) / z) for t, v in logits.items()] + [("The", settings.other_mass)]
        candidates.sort(key=lambda c: -c[1])
        return [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in candidates[:n]]
    if FIRST_MARKER in user and SECOND_MARKER in user:
        first = user.split(FIRST_MARKER, 1)[1].split("\n\n[", 1)[0]
        second = user.split(SECOND_MARKER, 1)[1].rsplit("\n\n", 1)[0]
    else:
        first, second = prompt + "#1", prompt + "#2"
    logits = {
        "A": 3 * _unit("quality", first) + settings.position_bias,
        " B": 3 * _unit("quality", second),
        "C": settings.tie_logit,
    }
    z = sum(math.exp(v) for v in logits.values())
    label_mass = 1.0 - settings.other_mass
    candidates = [(t, label_mass * math.exp(v) / z) for t, v in logits.items()]
    candidates += [("The", settings.other_mass * 0.7), ("\n", settings.other_mass * 0.3)]
    candidates.sort(key=lambda c: -c[1])
    return [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in candidates[:n]]


def completion_body(body: dict, settings: FakeSettings, fault: str | None = None) -> dict:
    """A chat-completion response with one token and its logprobs; the ``nan_logprobs`` /
    ``positive_logprobs`` faults spoil the first candidate's logprob (NaN / +0.7)."""
    top = judge_logprobs(body["messages"], settings, int(body.get("top_logprobs") or 1))
    if fault in ("nan_logprobs", "positive_logprobs"):
        top[0]["logprob"] = math.nan if fault == "nan_logprobs" else 0.7
    best = top[0]
    prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
    return {
        "id": "chatcmpl-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": best["token"]},
                "finish_reason": "length",
                "logprobs": {"content": [dict(best, top_logprobs=top)]},
            }
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # many concurrent clients connect at once

    def handle_error(self, request, client_address) -> None:
        """Stay quiet when a client drops its connection (a breaker cancelling calls in flight)."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """The server. ``start()``/``stop()``; ``base_url`` ends in ``/v1``."""

    def __init__(self, settings: FakeSettings | None = None) -> None:
        self.settings = settings or FakeSettings()
        self._lock = threading.Lock()
        self._state = _State()
        self._httpd: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()  # releases hanging requests

    # ---- inspection -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._state.requests)

    def count(self, route: str | None = None) -> int:
        """Requests received in total, or for one route (``chat``, ``models``, ``files``,
        ``file_content``, ``batches``, ``batch_retrieve``, ``unknown``)."""
        with self._lock:
            return sum(self._state.counts.values()) if route is None else self._state.counts[route]

    def reset_counts(self) -> None:
        with self._lock:
            self._state.requests.clear()
            self._state.counts.clear()

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "FakeOpenAI":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # ---- routing ---------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        s = self.settings
        route = {
            ("POST", "v1/chat/completions"): "chat",
            ("GET", "v1/models"): "models" if s.served_models is not None else None,
            ("POST", "v1/files"): "files" if s.batch_api else None,
            ("POST", "v1/batches"): "batches" if s.batch_api else None,
        }.get((method, "/".join(parts)))
        if route is None and method == "GET" and len(parts) == 4 and parts[:2] == ["v1", "files"] and parts[3] == "content":
            route = "file_content"
        if route is None and s.batch_api and method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "batches"]:
            route = "batch_retrieve"
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self._state.requests.append(Recorded(method, path, handler.path, headers, body, time.monotonic()))
            self._state.counts[route or "unknown"] += 1
        try:
            if s.hang_s:
                self._stopping.wait(s.hang_s)
            sent_key = headers.get("authorization", "").removeprefix("Bearer ")
            if s.api_key is not None and sent_key != s.api_key:
                masked = sent_key[:3] + "*" * max(len(sent_key) - 7, 0) + sent_key[-4:]
                message = f"Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
                self._send(handler, 401, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}})
            elif route == "models":
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in s.served_models]
                self._send(handler, 200, {"object": "list", "data": data})
            elif route == "chat":
                self._chat(handler, json.loads(body))
            elif route == "files":
                self._upload(handler, body)
            elif route == "file_content":
                self._file_content(handler, parts[2])
            elif route == "batches":
                self._create_batch(handler, json.loads(body))
            elif route == "batch_retrieve":
                self._retrieve_batch(handler, parts[2])
            else:
                self._send(handler, 404, {"error": {"message": f"no route {method} {handler.path}"}})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    @staticmethod
    def _send(handler, status: int, payload, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def _fault(self, body: dict) -> str | None:
        """The fault for this (prompt, attempt), counting the attempt."""
        key = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
        with self._lock:
            attempt = self._state.attempts[key]
            self._state.attempts[key] += 1
        s = self.settings
        if not s.faults or attempt >= s.fault_attempts or _unit("fault", key, attempt) >= s.fault_rate:
            return None
        return s.faults[int(_unit("kind", key, attempt) * len(s.faults))]

    def _chat(self, handler, body: dict) -> None:
        s = self.settings
        if s.served_models is not None and not any(fnmatch.fnmatchcase(body["model"], m) for m in s.served_models):
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            return self._send(handler, 404, {"error": {"message": message, "type": "invalid_request_error", "code": "model_not_found"}})
        if s.chat_status is not None:
            error = {"message": f"{s.chat_message} (POST {handler.path})", **({"code": s.chat_code, "type": s.chat_code} if s.chat_code else {})}
            return self._send(handler, s.chat_status, {"error": error})
        words = sum(len(m["content"].split()) for m in body["messages"])
        if s.max_prompt_words is not None and words > s.max_prompt_words:
            message = CONTEXT_MESSAGE.format(limit=s.max_prompt_words, n=words)
            return self._send(handler, s.context_status, {"error": {"message": message, "type": "invalid_request_error"}})
        fault = self._fault(body)
        if self.settings.latency_s:
            time.sleep(self.settings.latency_s)
        if fault == "rate_limit":
            headers = {} if self.settings.retry_after is None else {"Retry-After": str(self.settings.retry_after)}
            return self._send(handler, 429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}, headers)
        if fault == "server_error":
            return self._send(handler, 500, {"error": {"message": "internal error", "type": "server_error"}})
        if fault == "slow":
            time.sleep(self.settings.slow_s)
        response = completion_body(body, self.settings, fault)
        if fault == "malformed":
            response["choices"][0]["logprobs"] = None
        if fault == "bad_json":
            return self._send(handler, 200, None, raw=b'{"id": "chatcmpl-x", "choices": [')
        self._send(handler, 200, response)

    def _upload(self, handler, body: bytes) -> None:
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + handler.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        fields = {part.get_param("name", header="content-disposition"): part for part in message.get_payload()}
        data = fields["file"].get_payload(decode=True)
        with self._lock:
            file_id = f"file-{len(self._state.files) + 1}"
            self._state.files[file_id] = data
        self._send(handler, 200, self._file_object(file_id, data, fields["purpose"].get_payload()))

    @staticmethod
    def _file_object(file_id: str, data: bytes, purpose: str) -> dict:
        return {
            "id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl", "purpose": purpose, "status": "processed",
        }

    def _file_content(self, handler, file_id: str) -> None:
        with self._lock:
            data = self._state.files.get(file_id)
        if data is None:
            return self._send(handler, 404, {"error": {"message": f"no file {file_id}"}})
        self._send(handler, 200, None, raw=data)

    def _create_batch(self, handler, body: dict) -> None:
        with self._lock:
            if body["input_file_id"] not in self._state.files:
                return self._send(handler, 404, {"error": {"message": "no such input file"}})
            batch_id = f"batch-{len(self._state.batches) + 1}"
            batch = {
                "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                "status": "validating", "output_file_id": None, "error_file_id": None,
                "created_at": int(time.time()), "metadata": body.get("metadata"),
                "request_counts": {"total": 0, "completed": 0, "failed": 0}, "polls": 0,
            }
            self._state.batches[batch_id] = batch
        self._send(handler, 200, {k: v for k, v in batch.items() if k != "polls"})

    def _retrieve_batch(self, handler, batch_id: str) -> None:
        with self._lock:
            batch = self._state.batches.get(batch_id)
            if batch is None:
                return self._send(handler, 404, {"error": {"message": f"no batch {batch_id}"}})
            batch["polls"] += 1
            ready = batch["status"] != "completed" and batch["polls"] > self.settings.batch_polls
            if not ready and batch["status"] != "completed":
                batch["status"] = "in_progress"
            lines = self._state.files[batch["input_file_id"]].decode().splitlines() if ready else []
        if ready:
            self._run_batch(batch, lines)
        self._send(handler, 200, {k: v for k, v in batch.items() if k != "polls"})

    def _run_batch(self, batch: dict, lines: list[str]) -> None:
        outputs, errors = [], []
        for n, raw in enumerate(line for line in lines if line.strip()):
            request = json.loads(raw)
            fault = self._fault(request["body"])
            line = {"id": f"batch_req_{n}", "custom_id": request["custom_id"], "error": None}
            if fault in ("rate_limit", "server_error"):
                status = 429 if fault == "rate_limit" else 500
                line["response"] = {"status_code": status, "request_id": f"req_{n}", "body": {"error": {"message": fault}}}
                errors.append(line)
                continue
            body = completion_body(request["body"], self.settings, fault)
            if fault in ("malformed", "bad_json"):
                body["choices"][0]["logprobs"] = None
            line["response"] = {"status_code": 200, "request_id": f"req_{n}", "body": body}
            outputs.append(line)
        with self._lock:
            for kind, rows in (("output_file_id", outputs), ("error_file_id", errors)):
                if rows:
                    file_id = f"file-{len(self._state.files) + 1}"
                    self._state.files[file_id] = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()
                    batch[kind] = file_id
            batch["status"] = "completed"
            batch["completed_at"] = int(time.time())
            batch["request_counts"] = {"total": len(outputs) + len(errors), "completed": len(outputs), "failed": len(errors)}


def unused_base_url() -> str:
    """A loopback base URL where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def fake_openai():
    """A started :class:`FakeOpenAI` with default settings; stopped after the test."""
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground (own process, as in the benchmark); prints the base URL."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every chat completion")
    parser.add_argument("--position-bias", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = FakeOpenAI(FakeSettings(latency_s=args.latency, position_bias=args.position_bias)).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
