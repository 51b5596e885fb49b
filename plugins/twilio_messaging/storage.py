"""Where the project keeps run data that must outlive a task: one object-storage base, laid out per run.

    <TWILIO_STORAGE>/<dag_id>/<run_id>/...

The base is an Airflow ``ObjectStoragePath`` URL: ``file://`` (the default, under ``$AIRFLOW_HOME``) on one
machine, ``s3://…`` or ``gs://…`` (install the matching Airflow provider) when tasks run on several hosts.
Every write is atomic, so a task killed half-way never leaves a partial file that a retry would trust.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from airflow.sdk import ObjectStoragePath

from twilio_messaging.settings import storage_url

# Run ids hold ':' and '+' (manual__2026-12-02T00:00:00+00:00); keep them readable but safe in any store.
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]")


def storage_base(environ: Mapping[str, str] | None = None) -> ObjectStoragePath:
    """The configured base (``$TWILIO_STORAGE``, see ``settings``), else ``file://$AIRFLOW_HOME/twilio_messaging``."""
    return ObjectStoragePath(storage_url(environ))


def safe_name(value: str) -> str:
    """A path segment for an id: unsafe characters become ``_``; never empty, never ``.``/``..``."""
    name = _UNSAFE.sub("_", value)
    return name if name.strip(".") else f"_{name}"


def run_path(dag_id: str, run_id: str, base: ObjectStoragePath | None = None) -> ObjectStoragePath:
    """The folder of one DAG run."""
    return (base or storage_base()) / safe_name(dag_id) / safe_name(run_id)


def is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in ("file", "local", "")


def write_bytes_atomic(path: ObjectStoragePath, data: bytes) -> ObjectStoragePath:
    """Write ``data`` so readers see the old file or the whole new one, never a part.

    Locally: a temporary sibling, fsync, then rename (atomic on POSIX). On object stores a single PUT is
    already all-or-nothing, so the object is written directly.
    """
    if not is_local(path):
        path.write_bytes(data)
        return path
    with open_atomic(path, text=False) as handle:
        handle.write(data)
    return path


# A lone surrogate (legal in a JSON conf, not in UTF-8) is written as its \udXXX escape instead of
# crashing the write; JSON readers turn the escape back into the same string.
TEXT_ERRORS = "backslashreplace"


@contextmanager
def open_atomic(path: ObjectStoragePath, text: bool = True) -> Iterator[IO[Any]]:
    """A file handle for a streamed write that appears whole at the end, or not at all.

    Locally: a temporary sibling, fsync, then rename. On object stores the upload is committed only when the
    handle closes; an error discards it, and a killed process never commits it.
    """
    if not is_local(path):
        raw = path.open("wb")
        try:
            handle: IO[Any] = (
                io.TextIOWrapper(raw, encoding="utf-8", errors=TEXT_ERRORS, newline="") if text else raw
            )
            yield handle
            handle.flush()
        except BaseException:
            discard = getattr(raw, "discard", None)
            if callable(discard):
                discard()  # fsspec's buffered files: abort the upload instead of committing a part
            raise
        raw.close()
        return
    local = path.path
    directory = os.path.dirname(local)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(local)}.{uuid.uuid4().hex}.tmp")
    try:
        with (
            open(tmp, "w", encoding="utf-8", errors=TEXT_ERRORS, newline="") if text else open(tmp, "wb")
        ) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, local)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: ObjectStoragePath, value: Any) -> ObjectStoragePath:
    return write_bytes_atomic(path, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def read_json(path: ObjectStoragePath, default: Any = None) -> Any:
    """The JSON value at ``path``, or ``default`` when there is no such file."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default
