"""Message body templates for batches: ``{field}`` placeholders filled from a recipient row.

A row's values are data. They are inserted as plain text and never evaluated, so a value such as
``{{ conn.twilio_default.password }}`` reaches the SMS literally. The template itself is parsed with
``string.Formatter`` rules but restricted to bare field names: no attribute access or indexing
(``{user.__class__}``), no conversions, no format specs (``{name:>99999999}``). Write ``{{`` and ``}}``
for literal braces.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

from twilio_messaging.validation import InvalidInput

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateError(InvalidInput):
    """The body template itself is malformed (a problem for the whole batch, not one row)."""

    def __init__(self, rule: str) -> None:
        super().__init__("body_template", rule)


class MissingField(KeyError):
    """A row lacks a value for a placeholder of the template (a problem for that row only)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"body_template needs field '{self.name}', which is missing or empty in this row"


@dataclass(frozen=True)
class BodyTemplate:
    """A parsed template: literal text and field names, in order."""

    source: str
    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, source: str) -> BodyTemplate:
        if not isinstance(source, str) or not source.strip():
            raise TemplateError("must be a non-empty string")
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:  # unbalanced braces
            raise TemplateError(f"{exc} (write '{{{{' and '}}}}' for literal braces)") from None
        for literal, name, spec, conversion in parsed:
            if name is not None:
                if not _FIELD_NAME.match(name):
                    raise TemplateError(
                        f"placeholder '{{{name}}}' must be a plain field name such as '{{first_name}}' "
                        "(no positions, attributes or indexes)"
                    )
                if conversion or spec:
                    raise TemplateError(f"placeholder '{{{name}}}' may not use conversions or format specs")
            parts.append((literal, name))
        return cls(source=source, parts=tuple(parts))

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for _, name in self.parts if name is not None)

    def render(self, row: Mapping[str, object]) -> str:
        """Fill the placeholders from ``row``; raises ``MissingField`` for an absent or empty value."""
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is None:
                continue
            value = row.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise MissingField(name)
            out.append(value if isinstance(value, str) else str(value))
        return "".join(out)
