"""Loading recipient rows (CSV, JSON or a list from the run conf) and opt-out lists.

A recipient row is a flat mapping: ``to`` (the destination number or channel address) plus any fields the
body template uses. Numbers are normalised before they are compared, so ``+1 (555) 010-0001`` and
``+15550100001`` are the same recipient for dedupe and opt-out.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from twilio_messaging.settings import DATA_DIRS_ENV
from twilio_messaging.validation import InvalidInput

TO_FIELD = "to"
_SEPARATORS = re.compile(r"[\s\-.()/]")
_CHANNEL = re.compile(r"^([A-Za-z]+):(.*)$")


class RecipientsError(InvalidInput):
    """The recipients or opt-out source as a whole cannot be used (names the param and the rule)."""


def normalise_number(raw: object) -> str:
    """Canonical form of a number for comparison: separators removed, ``00`` → ``+``, channel kept.

    ``"whatsapp: +44 20-7946 0000"`` → ``"whatsapp:+442079460000"``. The result is not validated here.
    """
    text = "" if raw is None else str(raw).strip()
    channel = ""
    match = _CHANNEL.match(text)
    if match and not match.group(1).isdigit():
        channel, text = match.group(1).lower() + ":", match.group(2)
    text = _SEPARATORS.sub("", text)
    if text.startswith("00"):
        text = "+" + text[2:]
    return channel + text


def bare_number(address: str) -> str:
    """The number behind a channel address, so opting out of SMS also covers ``whatsapp:`` etc."""
    return address.split(":", 1)[1] if ":" in address else address


def resolve_path(
    path: str | Path,
    base_dirs: Iterable[Path],
    allowed_dirs: Iterable[Path] | None = None,
    field: str = "recipients_path",
) -> Path:
    """An absolute path as is; a relative one from the first base directory where it exists.

    With ``allowed_dirs``, the file must lie inside one of them: a conf must not be able to make a worker
    read (and echo in an error) any file it can reach, such as ``/etc/passwd`` or ``../../secrets.json``.
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        found = candidate
    else:
        bases = list(base_dirs)
        existing = next((base / candidate for base in bases if (base / candidate).exists()), None)
        found = existing or ((bases[0] / candidate) if bases else candidate)
    if allowed_dirs is not None:
        allowed = list(allowed_dirs)
        real = found.resolve()
        if not any(real.is_relative_to(folder) for folder in allowed):
            folders = ", ".join(str(folder) for folder in allowed)
            raise RecipientsError(
                field, f"must be a file inside {folders} (set {DATA_DIRS_ENV} to allow other folders)"
            )
    return found


def _flat_row(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise RecipientsError(
            where, f"each recipient must be an object with a '{TO_FIELD}' field, got {raw!r:.60}"
        )
    return {str(key).strip(): value for key, value in raw.items()}


def rows_from_list(items: Any, field: str = "recipients") -> list[dict[str, Any]]:
    """Rows from a JSON value: a list of objects, or ``{"recipients": [...]}``."""
    if isinstance(items, Mapping) and isinstance(items.get("recipients"), list):
        items = items["recipients"]
    if not isinstance(items, list):
        raise RecipientsError(field, 'must be a list of objects such as {"to": "+15551234567", ...}')
    return [_flat_row(item, field) for item in items]


def iter_rows(path: str | Path, field: str = "recipients_path") -> Iterator[dict[str, Any]]:
    """Rows one at a time from a ``.csv`` (header line, UTF-8) or ``.jsonl`` file (one object per line);
    a ``.json`` file (a list of objects) is parsed whole. Errors name ``field`` and the rule."""
    source = Path(path)
    if not source.is_file():
        raise RecipientsError(field, f"no such file: {source}")
    suffix = source.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecipientsError(field, f"{source} is not valid UTF-8 JSON ({exc})") from None
        yield from rows_from_list(data, field)
        return
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_rows(source, field)
        return
    if suffix != ".csv":
        raise RecipientsError(field, f"{source} must end in .csv, .json or .jsonl")
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            if TO_FIELD not in header:
                raise RecipientsError(field, f"{source} has no '{TO_FIELD}' column (header: {header})")
            reader.fieldnames = header
            # Extra cells beyond the header land under the key None: they carry no field name, drop them.
            for row in reader:
                yield {k: v for k, v in row.items() if k is not None}
    except UnicodeDecodeError as exc:
        raise RecipientsError(field, f"{source} is not UTF-8 ({exc})") from None


def _jsonl_rows(source: Path, field: str) -> Iterator[dict[str, Any]]:
    try:
        with source.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RecipientsError(
                        field, f"{source} line {number} is not valid JSON ({exc})"
                    ) from None
                yield _flat_row(item, field)
    except UnicodeDecodeError as exc:
        raise RecipientsError(field, f"{source} is not UTF-8 ({exc})") from None


def load_opt_out(
    path: str | Path | None, numbers: Iterable[Any] = (), field: str = "opt_out_path"
) -> set[str]:
    """Normalised opted-out numbers from a file (one per line, or the first CSV cell; ``#`` comments,
    header lines without digits are ignored; or a ``.json`` list) and/or a list of numbers."""
    out = {normalise_number(number) for number in numbers if str(number or "").strip()}
    if path:
        source = Path(path)
        if not source.is_file():
            raise RecipientsError(field, f"no such file: {source}")
        text = source.read_text(encoding="utf-8-sig")
        if source.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RecipientsError(field, f"{source} is not valid JSON ({exc})") from None
            if not isinstance(data, list):
                raise RecipientsError(field, f"{source} must hold a JSON list of numbers")
            entries = [str(item) for item in data]
        else:
            entries = [line.split(",", 1)[0] for line in text.splitlines()]
        for entry in entries:
            entry = entry.split("#", 1)[0].strip().strip('"')
            if entry and any(ch.isdigit() for ch in entry):
                out.add(normalise_number(entry))
    return {bare_number(number) for number in out} | out
