"""How a channel says a message was not accepted."""

from __future__ import annotations


class DeliveryError(Exception):
    """A message was not accepted. `permanent`: trying again cannot help (the provider refused
    this message or this recipient for good); otherwise it is tried again later."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
