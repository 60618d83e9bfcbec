"""Console forms: the API's own validation (its Pydantic schemas and domain services) turned into messages in
the reader's language, one per field, so a form can show each in red beside its field with the typed values.

A page validates by building the API's input schema from the form, then calls the domain service, both
inside ``submit``; on a ``ValidationError`` or a ``DomainError`` it gets a ``Refused`` and re-renders the form
with its ``FormErrors`` instead of a JSON body. Messages are keyed by the schema's field names, the same names
the API's 422 answers carry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.orm import Session

from siyu.kit.errors import Conflict, DomainError, NotFound
from siyu.web.i18n import N_
from siyu.web.templating import PageContext

#: The field a message belongs to when the error names none (a whole-form rule).
FORM = "__form__"

# Pydantic's error types in words; %(n)s is the limit from the error's context.
_BY_TYPE = {
    "missing": N_("Fill this in."),
    "string_too_long": N_("At most %(n)s characters."),
    "too_long": N_("At most %(n)s items."),
    "greater_than_equal": N_("Enter a number of at least %(n)s."),
    "greater_than": N_("Enter a number above %(n)s."),
    "less_than_equal": N_("Enter a number of at most %(n)s."),
    "less_than": N_("Enter a number below %(n)s."),
    "int_parsing": N_("Enter a whole number."),
    "int_type": N_("Enter a whole number."),
    "int_from_float": N_("Enter a whole number."),
    "enum": N_("Choose one of the options."),
    "literal_error": N_("Choose one of the options."),
    "string_pattern_mismatch": N_("This is not in the expected format."),
}
_LIMITS = {
    "string_too_long": "max_length",
    "too_long": "max_length",
    "greater_than_equal": "ge",
    "greater_than": "gt",
    "less_than_equal": "le",
    "less_than": "lt",
}
_BY_CLASS = {
    Conflict: N_("This is already taken."),
    NotFound: N_("This no longer exists; reload the page."),
}
_FALLBACK = N_("This value is not accepted.")
# Errors of a field's own rule, which only the page knows how to put in words.
_CUSTOM_RULES = frozenset({"value_error", "assertion_error", "string_pattern_mismatch"})


class FormErrors(dict[str, str]):
    """Field name -> the message to show beside that field (``FORM`` for the form as a whole)."""


def _pydantic_message(ctx: PageContext, error: ErrorDetails) -> str:
    kind = error["type"]
    limits = error.get("ctx") or {}
    if kind == "string_too_short":
        n = limits.get("min_length", 1)
        return (
            ctx.gettext("Fill this in.") if n <= 1 else ctx.gettext("At least %(n)s characters.") % {"n": n}
        )
    if kind == "too_short":
        return ctx.gettext("Choose at least %(n)s.") % {"n": limits.get("min_length", 1)}
    if kind in _BY_TYPE:
        n = limits.get(_LIMITS.get(kind, ""), "")
        return (
            ctx.gettext(_BY_TYPE[kind]) % {"n": n}
            if "%(n)s" in _BY_TYPE[kind]
            else ctx.gettext(_BY_TYPE[kind])
        )
    return ctx.gettext(_FALLBACK)


def from_validation(
    ctx: PageContext, exc: ValidationError, messages: Mapping[str, str] | None = None
) -> FormErrors:
    """The first error of each field in words. ``messages`` says what generic words cannot: ``field`` -> text
    for the field's own rule (a custom validator, a pattern), ``field:error_type`` -> text for one kind of
    error (an empty choice, say); the texts are already translated."""
    errors = FormErrors()
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else FORM
        if field in errors:
            continue
        given = messages or {}
        custom = given.get(f"{field}:{error['type']}")
        if custom is None and error["type"] in _CUSTOM_RULES:
            custom = given.get(field)
        errors[field] = custom if custom is not None else _pydantic_message(ctx, error)
    return errors


def from_domain(ctx: PageContext, exc: DomainError, messages: Mapping[str, str] | None = None) -> FormErrors:
    """A domain rule's refusal in words, beside the field it names. ``messages`` (``field`` or
    ``field:ErrorClass`` -> translated text) says what the service's rule on that field means; without one,
    the kind of refusal is said."""
    field = exc.field or FORM
    given = messages or {}
    known = given.get(f"{field}:{type(exc).__name__}", given.get(field))
    if known is None:
        generic = next((text for cls, text in _BY_CLASS.items() if isinstance(exc, cls)), _FALLBACK)
        known = ctx.gettext(generic)
    return FormErrors({field: known})


T = TypeVar("T")


@dataclass(frozen=True)
class Refused:
    """A form refused by the API's schema or a domain rule: the messages per field and the status to answer."""

    errors: FormErrors
    status_code: int


def submit(
    db: Session, ctx: PageContext, action: Callable[[], T], messages: Mapping[str, str] | None = None
) -> T | Refused:
    """Run a form's action (the API's schema built from the form, then the domain service) and return what it
    returns, or the refusal in words (``messages`` as in ``from_validation`` and ``from_domain``). A domain
    refusal is rolled back first, so the page re-renders from what is stored."""
    try:
        return action()
    except ValidationError as exc:
        return Refused(from_validation(ctx, exc, messages), 422)
    except DomainError as exc:
        db.rollback()
        return Refused(from_domain(ctx, exc, messages), exc.status_code)


def yuan_to_fen(raw: str) -> int | None:
    """An amount typed in yuan ("12.5", "1,200", "¥8") as integer fen; None when it is not an amount
    with at most two decimals. An empty field is 0."""
    text = raw.strip().replace(",", "").replace("，", "").lstrip("¥￥")
    if not text:
        return 0
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value != value.quantize(Decimal("0.01")) or abs(value) > Decimal("1e12"):
        return None
    return int(value * 100)


def fen_to_yuan(fen: int | None) -> str:
    """Integer fen as the plain yuan figure a form field shows back ("12.50")."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{cents:02d}"
