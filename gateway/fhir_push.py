"""Delivery to a system that takes FHIR: POST the result bundle to its base URL.

The stored canonical bundle is a FHIR transaction Bundle; it is posted as it
is to the destination's base URL. The outbox id travels as
``Bundle.identifier`` (``urn:labgate:outbox`` / ``LG<id>``), stable across
retries, so the receiver can recognise a repeat (delivery is at-least-once).
2xx is delivered; 4xx is a rejection and 5xx, a timeout or a refused
connection an error — all retried with backoff, then dead-lettered, like MLLP.
"""
from __future__ import annotations

import os

import aiohttp
import orjson

from .config import Config, Destination
from .delivery import SENDERS, SendFailed
from .http_api import FHIR_JSON

OUTBOX_SYSTEM = "urn:labgate:outbox"


class FhirPushSender:
    def __init__(self, dest: Destination, config: Config, _pool=None):
        self._url = dest.base_url.rstrip("/")
        self._token_env = dest.token_env
        self._timeout = aiohttp.ClientTimeout(total=dest.ack_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        token = os.environ.get(self._token_env) if self._token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def send(self, outbox_id: int, bundle_json: str) -> str:
        bundle = orjson.loads(bundle_json)
        bundle["identifier"] = {"system": OUTBOX_SYSTEM, "value": f"LG{outbox_id}"}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self._url, data=orjson.dumps(bundle),
                                          headers=self._headers()) as resp:
                body = await resp.read()
        except TimeoutError:
            raise SendFailed("timeout", f"no answer from {self._url} within the timeout") from None
        except aiohttp.ClientError as e:
            raise SendFailed("error", f"{type(e).__name__}: {e}"[:500]) from None
        if 200 <= resp.status < 300:
            return f"HTTP {resp.status}"
        outcome = "rejected" if 400 <= resp.status < 500 else "error"
        raise SendFailed(outcome, f"HTTP {resp.status}: {_outcome_text(body)}"[:500])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _outcome_text(body: bytes) -> str:
    """The readable part of an OperationOutcome, if the answer is one."""
    try:
        doc = orjson.loads(body)
        return "; ".join(i.get("diagnostics") or i.get("details", {}).get("text", "")
                         for i in doc.get("issue", []))[:400] or "no details"
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return "no OperationOutcome"


SENDERS["fhir"] = FhirPushSender
