"""The per-recipient report of a batch as a paged, sortable, filterable table, at any size.

The report (``report.csv`` or ``report.json``, one row per input row, in row order) may hold a million
rows on object storage, so it is never loaded whole:

- page one in the report's own order, without filters, is streamed from the start of the file;
- every other page, sort and filter is answered from an index: a SQLite copy of the columns the table
  shows, built once per report version in a local cache folder (in the background when the tab is first
  opened), written to a temporary file and renamed, so readers never see half an index.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol

from twilio_messaging import contract, settings
from twilio_messaging.errors import error_code

CACHE_ENV = settings.UI_CACHE_DIR_ENV
COLUMNS = contract.REPORT_COLUMNS
SORTABLE = ("row", "outcome", "status", "error_code", "sid")
FILTERS = ("outcome", "status", "error_code")
PAGE_SIZES = (25, 50, 100, 500)
DEFAULT_PAGE_SIZE = 50
INSERT_BATCH = 20_000
INDEX_VERSION = "1"  # bump when the schema changes; old files are simply not found again
CACHE_MAX_AGE = 7 * 24 * 3600.0  # an index nobody opened for a week is deleted by the next build
# Query-string numbers are clamped to this: a page past the end shows the last page, and no number a
# person can type overflows SQLite's 64-bit integers (a 500 before).
MAX_NUMBER = 10**12


class ReadablePath(Protocol):
    """What the table needs of a path: Airflow's ObjectStoragePath and pathlib.Path both fit."""

    def open(self, mode: str) -> IO[Any]: ...

    def stat(self) -> Any: ...


@dataclass(frozen=True)
class Query:
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE
    sort: str = "row"
    descending: bool = False
    filters: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        """From the page's query string; anything unknown falls back to the default."""

        def number(name: str, default: int) -> int:
            text = str(params.get(name) or "").strip()
            if not text.isdigit() or len(text) > 30:
                return default
            return min(max(1, int(text)), MAX_NUMBER)

        size = number("size", DEFAULT_PAGE_SIZE)
        sort = params.get("sort") or "row"
        filters = tuple((name, params[name]) for name in FILTERS if params.get(name))
        return cls(
            page=number("page", 1),
            size=size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE,
            sort=sort if sort in SORTABLE else "row",
            descending=params.get("order") == "desc",
            filters=filters,
        )

    @property
    def streamable(self) -> bool:
        """The report's own order and no filter: answerable by reading the file's first rows."""
        return self.sort == "row" and not self.descending and not self.filters

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    def within(self, total: int | None) -> Query:
        """This query, or its last page when it asks for a page past the end of ``total`` rows."""
        if total is None or self.offset < total or self.page == 1:
            return self
        return dataclasses.replace(self, page=max(1, -(-total // self.size)))


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int | None  # rows matching the filters; None when not known yet
    query: Query
    source: str  # "stream" or "index"
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    building: bool = False  # a sort or filter was asked for while the index is still being built

    @property
    def pages(self) -> int | None:
        if self.total is None:
            return None
        return max(1, -(-self.total // self.query.size))


# ---- reading the report ---------------------------------------------------------------------------


def _normalise(record: Mapping[str, Any]) -> dict[str, Any]:
    row = {name: record.get(name) for name in COLUMNS}
    value = row["row"]
    if value in (None, ""):
        row["row"] = None
    else:
        try:
            row["row"] = int(value)
        except (TypeError, ValueError):
            row["row"] = None
    row["error_code"] = error_code(row["error_code"])
    for name in COLUMNS:
        if row[name] == "":
            row[name] = None
    return row


_SEPARATORS = re.compile(r"[\s,]*")


def _iter_json_array(handle: IO[str], chunk_size: int = 1 << 16) -> Iterator[Any]:
    """The items of a top-level JSON array, decoded one by one from a stream (never the whole file)."""
    decoder = json.JSONDecoder()
    buffer = handle.read(chunk_size).lstrip()
    if not buffer.startswith("["):
        raise ValueError("the JSON report is not a list")
    pos, eof = 1, False
    while True:
        pos = _SEPARATORS.match(buffer, pos).end()  # type: ignore[union-attr]
        if buffer.startswith("]", pos):
            return
        try:
            item, pos = decoder.raw_decode(buffer, pos)
        except json.JSONDecodeError:
            if eof:
                if not buffer[pos:].strip():
                    return
                raise
            more = handle.read(chunk_size)
            eof = not more
            buffer, pos = buffer[pos:] + more, 0
            continue
        yield item


def iter_report(path: ReadablePath, fmt: str) -> Iterator[dict[str, Any]]:
    """Every row of the report, in file order, streamed."""
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        records: Iterable[Mapping[str, Any]] = (
            _iter_json_array(text) if fmt == "json" else csv.DictReader(text)
        )
        for record in records:
            yield _normalise(record)


def _number(value: str) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def iter_tuples(path: ReadablePath, fmt: str) -> Iterator[tuple[Any, ...]]:
    """Rows as tuples in ``COLUMNS`` order: the index build's fast path (plain csv.reader for CSV)."""
    if fmt == "json":
        for record in iter_report(path, fmt):
            yield tuple(record[c] for c in COLUMNS)
        return
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader, [])
        at = [header.index(c) if c in header else None for c in COLUMNS]
        row_at, code_at = at[0], at[5]
        for values in reader:
            out: list[Any] = [(values[i] or None) if i is not None and i < len(values) else None for i in at]
            out[0] = _number(values[row_at]) if row_at is not None else None
            out[5] = error_code(values[code_at]) if code_at is not None and code_at < len(values) else None
            yield tuple(out)


def report_version(path: ReadablePath) -> str:
    """Changes whenever the report file does (size and modification time, or the store's ETag)."""
    info = path.stat()
    if isinstance(info, Mapping):
        parts = [info.get(k) for k in ("size", "ETag", "etag", "mtime", "LastModified", "created")]
    else:
        parts = [getattr(info, "st_size", None), getattr(info, "st_mtime_ns", None)]
    return "|".join(str(part) for part in parts)


# ---- the index -----------------------------------------------------------------------------------


def cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "twilio-messages-ui")


class ReportIndex:
    """The SQLite copy of one report version. ``ensure()`` builds it at most once per version."""

    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _guard = threading.Lock()

    def __init__(self, path: ReadablePath, fmt: str, key: str, directory: str | None = None) -> None:
        self.path, self.fmt, self.key = path, fmt, key
        digest = hashlib.sha256(f"{INDEX_VERSION}|{key}|{report_version(path)}".encode()).hexdigest()[:24]
        self.directory = directory or cache_dir()
        self.file = os.path.join(self.directory, f"report-{digest}.sqlite")

    @property
    def ready(self) -> bool:
        return os.path.exists(self.file)

    def _thread_lock(self) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(self.file, threading.Lock())

    def ensure(self) -> None:
        """Build the index unless it exists; other threads and processes wait for the one that builds."""
        if self.ready:
            return
        os.makedirs(self.directory, exist_ok=True)
        with self._thread_lock(), open(self.file + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another api-server worker may be building it right now
            if not self.ready:
                self._build()

    def building(self) -> bool:
        """True while some process holds the build lock."""
        try:
            with open(self.file + ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    def ensure_in_background(self) -> None:
        """Build in a child process: a million rows take seconds of CPU the api-server must not lose."""
        if self.ready or self.building():
            return
        os.makedirs(self.directory, exist_ok=True)
        plugins = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")])),
        }
        location = str(self.path) if hasattr(self.path, "protocol") else os.fspath(self.path)  # type: ignore[call-overload]
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twilio_messaging.ui.report_table",
                location,
                self.fmt,
                self.key,
                self.directory,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        threading.Thread(target=child.wait, name="twilio-report-index", daemon=True).start()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.ready

    def _build(self) -> None:
        tmp = f"{self.file}.{os.getpid()}.{threading.get_ident()}.tmp"
        db = sqlite3.connect(tmp)
        try:
            db.executescript(
                """
                PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY;
                PRAGMA cache_size = -131072;
                CREATE TABLE report (row INTEGER, "to" TEXT, outcome TEXT, status TEXT, sid TEXT,
                                     error_code INTEGER, error_meaning TEXT, reason TEXT);
                """
            )
            rows = iter_tuples(self.path, self.fmt)
            while batch := list(islice(rows, INSERT_BATCH)):
                db.executemany("INSERT INTO report VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
            for column in SORTABLE:
                # (column, row): each sort, and each filter in row order, walks one index.
                db.execute(f"CREATE INDEX by_{column} ON report ({_quote(column)}, row)")
            db.execute('CREATE TABLE facets ("column" TEXT, value TEXT, count INTEGER)')
            for column in FILTERS:
                db.execute(
                    f"INSERT INTO facets SELECT ?, {_quote(column)}, COUNT(*) FROM report "
                    f"WHERE {_quote(column)} IS NOT NULL GROUP BY {_quote(column)}",
                    [column],
                )
            db.commit()
        except BaseException:
            db.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        db.close()
        os.replace(tmp, self.file)
        prune_cache(self.directory)

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{self.file}?mode=ro", uri=True, check_same_thread=False)
        db.row_factory = sqlite3.Row
        return db

    def page(self, query: Query) -> Page:
        self.ensure()
        with contextlib.suppress(OSError):
            os.utime(self.file)  # in use: kept by prune_cache
        where, args = _where(query.filters)
        order = "DESC" if query.descending else "ASC"
        with contextlib.closing(self.connect()) as db:
            total = db.execute(f"SELECT COUNT(*) FROM report {where}", args).fetchone()[0]
            query = query.within(total)
            rows = db.execute(
                f"SELECT * FROM report {where} ORDER BY {_quote(query.sort)} {order}, row {order} "
                "LIMIT ? OFFSET ?",
                [*args, query.size, query.offset],
            ).fetchall()
            facets = self._facets(db)
        return Page([dict(row) for row in rows], total, query, "index", facets)

    @staticmethod
    def _facets(db: sqlite3.Connection) -> dict[str, list[tuple[str, int]]]:
        """The values each filter can take, with their counts (for the filter menus), most frequent first."""
        facets: dict[str, list[tuple[str, int]]] = {column: [] for column in FILTERS}
        for column, value, count in db.execute(
            'SELECT "column", value, count FROM facets ORDER BY count DESC, value'
        ):
            facets[column].append((str(value), count))
        return facets


def prune_cache(directory: str, max_age: float = CACHE_MAX_AGE, now: float | None = None) -> list[str]:
    """Delete index files (and leftovers of interrupted builds) not used for ``max_age`` seconds."""
    removed = []
    cutoff = (time.time() if now is None else now) - max_age
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if not entry.name.startswith("report-"):
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def _quote(column: str) -> str:
    if column not in COLUMNS:
        raise ValueError(f"unknown column {column!r}")
    return f'"{column}"'


def _where(filters: Iterable[tuple[str, str]]) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for name, value in filters:
        if name not in FILTERS:
            continue
        if name == "error_code":
            code = value.strip()
            # A code that is no integer (or none SQLite can hold) matches no row: an empty page, not an error.
            args.append(int(code) if code.isdigit() and len(code) <= 12 else -1)
        else:
            args.append(value)
        clauses.append(f"{_quote(name)} = ?")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def stream_page(path: ReadablePath, fmt: str, query: Query, total: int | None) -> Page:
    """A page in the report's own order, read from the start of the file (fast for the first pages)."""
    query = query.within(total)
    rows = list(islice(iter_report(path, fmt), query.offset, query.offset + query.size))
    return Page(rows, total, query, "stream")


def table_page(
    path: ReadablePath,
    fmt: str,
    query: Query,
    *,
    key: str,
    total: int | None,
    stream_limit: int = 5_000,
    wait: float = 5.0,
) -> Page:
    """The page for ``query``: streamed when that is cheap, else from the index.

    The first request starts the index build in the background. A sort or filter asked for before the
    index is ready waits up to ``wait`` seconds for it, then gets page one with ``building`` set (the
    page says so and reloads itself), instead of holding the request for the whole build. That page is in
    report order and its ``query`` says so (``sort="row"``): a page is either fully sorted or not at all.
    Which of the two a request gets depends on time: the child process imports Airflow before it builds,
    which on a loaded machine takes longer than ``wait`` even for a small report.
    """
    query = query.within(total)
    index = ReportIndex(path, fmt, key)
    if index.ready:
        return index.page(query)
    index.ensure_in_background()  # sorting and filtering will be instant by the time someone asks
    if query.streamable and query.offset < stream_limit:
        return stream_page(path, fmt, query, total)
    if index.wait_ready(wait):
        return index.page(query)
    page = stream_page(path, fmt, Query(size=query.size), total)
    page.building = True
    return page


def _main(argv: list[str]) -> int:
    """``python -m twilio_messaging.ui.report_table PATH FORMAT KEY DIRECTORY``: build one index."""
    location, fmt, key, directory = argv
    path: ReadablePath
    if "://" in location:
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(location)
    else:
        path = Path(location)
    ReportIndex(path, fmt, key, directory).ensure()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
