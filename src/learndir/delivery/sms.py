"""SMS through a Twilio-compatible gateway: a form-encoded
`POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with To, From and Body, HTTP basic auth.

2xx: accepted (the answer's `sid` is kept as the provider's id). 4xx other than 429: this
message is refused for good (the gateway's error is kept). 5xx, 429 and network errors: tried
again later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from learndir.delivery.errors import DeliveryError
from learndir.settings import Settings

SMS_TIMEOUT_SECONDS = 10.0
NOT_CONFIGURED = "SMS is not configured (set LEARNDIR_SMS_URL)"


@dataclass(frozen=True)
class SmsConfig:
    url: str
    account_sid: str
    auth_token: str
    sender: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SmsConfig | None:
        """None without LEARNDIR_SMS_URL."""
        if not settings.sms_url:
            return None
        return cls(
            url=settings.sms_url.rstrip("/"),
            account_sid=settings.sms_account_sid or "",
            auth_token=settings.sms_auth_token.get_secret_value()
            if settings.sms_auth_token
            else "",
            sender=settings.sms_from or "",
        )

    @property
    def endpoint(self) -> str:
        return f"{self.url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"


def _gateway_error(response: httpx.Response) -> str:
    """The gateway's own words (Twilio: {"code": .., "message": ..}), shortened."""
    detail = response.text[:300]
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        code = f" (code {body['code']})" if body.get("code") is not None else ""
        detail = f"{body['message']}{code}"
    return f"SMS gateway answered {response.status_code}: {detail}"


class SmsGateway:
    """One HTTP client (its connections are pooled and shared by the sender threads)."""

    def __init__(self, config: SmsConfig) -> None:
        self.config = config
        self._client = httpx.Client(
            auth=(config.account_sid, config.auth_token), timeout=SMS_TIMEOUT_SECONDS
        )

    def send(self, to: str, body: str) -> str:
        """Returns the gateway's message sid."""
        try:
            response = self._client.post(
                self.config.endpoint, data={"To": to, "From": self.config.sender, "Body": body}
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS gateway unreachable: {type(exc).__name__}: {exc}") from None
        if response.is_success:
            try:
                answer: Any = response.json()
            except ValueError:
                answer = None
            sid = answer.get("sid") if isinstance(answer, dict) else None
            return str(sid or f"HTTP {response.status_code}")[:255]
        status = response.status_code
        permanent = 400 <= status < 500 and status != 429
        raise DeliveryError(_gateway_error(response), permanent=permanent)

    def close(self) -> None:
        self._client.close()
