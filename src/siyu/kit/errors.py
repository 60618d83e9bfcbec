"""Domain errors that the API turns into HTTP answers with a clear message."""

from __future__ import annotations


class DomainError(Exception):
    """Base of errors that carry a message meant for the user."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    """A row that does not exist, or belongs to another organization (indistinguishable on purpose)."""

    status_code = 404


class Invalid(DomainError):
    """Input that passed schema validation but breaks a rule; answered as 422 naming the field."""

    status_code = 422


class Conflict(DomainError):
    """A request that collides with stored state (duplicate name, identifier owned elsewhere)."""

    status_code = 409


class Forbidden(DomainError):
    """The caller is known but their role does not allow this."""

    status_code = 403


class TooManyRequests(DomainError):
    """The caller did this too often in the current window; try again later."""

    status_code = 429
