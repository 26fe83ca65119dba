"""The SDK's own error: the integration's declarations are wrong (a bug in its code)."""

from __future__ import annotations

from spacedrive.ipc._errors import UsageError

__all__ = ["DeclarationError"]


class DeclarationError(UsageError):
    """A capability or handler declaration is invalid; raised before the integration connects.

    The message names the integration and, where there is one, the method; both are also
    attributes.
    """

    def __init__(self, integration_id: str, message: str, *, method: str | None = None) -> None:
        self.integration_id = integration_id
        self.method = method
        where = f"integration {integration_id!r}"
        if method is not None:
            where += f", method {method!r}"
        super().__init__(f"{where}: {message}")
