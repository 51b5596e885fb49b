"""How fast the Messages tab's recipients table answers on a large batch report (default 1,000,000 rows).

    .venv/bin/python -m bench.messages_table                 # 1,000,000 rows, CSV
    .venv/bin/python -m bench.messages_table --rows 200000 --format json

Writes a report in the batch's shape (every 20th row undelivered 30003, every 500th failed 30008), then times,
in this process and against a cold cache folder:

- the baseline: reading the whole report (what a table that loads the file would pay on every request);
- page one in the report's order (what the tab shows first): streamed from the file's start, plus the
  HTML render of the page;
- the index build (SQLite, once per report version; started in the background by the first page);
- sorted and filtered pages with the index cold (the build included) and warm, shallow and deep.

Exits 1 when page one takes 1 s or more.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))

FIELDS = ("row", "to", "outcome", "status", "sid", "error_code", "error_meaning", "reason")
PAGE_ONE_LIMIT_S = 1.0


def record(row: int) -> dict[str, Any]:
    base = {"row": row, "to": f"+1555{row:07d}", "sid": f"SM{row:032x}"}
    if row % 500 == 0:
        return {
            **base,
            "outcome": "failed",
            "status": "failed",
            "error_code": 30008,
            "error_meaning": "Unknown error from the carrier",
            "reason": "Unknown error",
        }
    if row % 20 == 0:
        return {
            **base,
            "outcome": "failed",
            "status": "undelivered",
            "error_code": 30003,
            "error_meaning": "Unreachable destination handset",
            "reason": "Unreachable destination handset",
        }
    return {**base, "outcome": "delivered", "status": "delivered", "error_code": None,
            "error_meaning": None, "reason": None}  # fmt: skip


def write_report(path: Path, rows: int, fmt: str) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        if fmt == "json":
            handle.write("[\n")
            for row in range(1, rows + 1):
                handle.write(("" if row == 1 else ",\n") + json.dumps(record(row), indent=1))
            handle.write("\n]\n")
        else:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(record(row) for row in range(1, rows + 1))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def render(page: Any, summary: dict[str, Any], fmt: str) -> str:
    from twilio_messaging.ui import app as ui_app
    from twilio_messaging.ui import batch_view, report_table, store

    view = batch_view.batch_view("bench", "run", "success", summary)
    run = store.RunRecord("bench", "run", "success", {}, "", "")
    return ui_app.templates.get_template("batch.html").render(
        view=view,
        summary=summary,
        page=page,
        link=lambda **kw: "?",
        params={},
        sortable=report_table.SORTABLE,
        page_sizes=report_table.PAGE_SIZES,
        report_format=fmt,
        **ui_app.run_page_context(run),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    args = parser.parse_args(argv)

    import os

    work = Path(tempfile.mkdtemp(prefix="bench-messages-table-"))
    os.environ["TWILIO_UI_CACHE_DIR"] = str(work / "cache")
    from twilio_messaging.ui import app as _app  # noqa: F401  (imported before any timing)
    from twilio_messaging.ui import report_table
    from twilio_messaging.ui.report_table import Query, ReportIndex, table_page

    try:
        path = work / f"report.{args.format}"
        seconds, _ = timed(lambda: write_report(path, args.rows, args.format))
        size_mb = path.stat().st_size / 1e6
        print(f"report: {args.rows:,} rows, {size_mb:.0f} MB {args.format} (written in {seconds:.1f} s)")
        summary = {"rows": args.rows, "by_status": {}, "by_outcome": {}, "error_codes": {}, "failed": 0}
        key = "bench/run"
        results: list[tuple[str, float]] = []

        baseline, rows = timed(lambda: sum(1 for _ in report_table.iter_report(path, args.format)))
        assert rows == args.rows
        results.append(("baseline: read the whole report", baseline))

        index = ReportIndex(path, args.format, key)
        page_one, page = timed(lambda: table_page(path, args.format, Query(), key=key, total=args.rows))
        assert page.source == "stream" and [r["row"] for r in page.rows] == list(range(1, 51))
        results.append(("page one, streamed (index not built)", page_one))

        # Page one started the build in a child process; a sort now waits for it: the cold case.
        cold_query = Query.parse({"outcome": "failed", "sort": "sid", "order": "desc"})
        cold, page = timed(
            lambda: table_page(path, args.format, cold_query, key=key, total=args.rows, wait=900)
        )
        assert page.source == "index" and {r["outcome"] for r in page.rows} == {"failed"}
        results.append(("filter failed + sort by SID, cold (waits for the build)", cold))
        assert index.ready
        first_render, html = timed(lambda: render(page, summary, args.format))
        rendered, html = timed(lambda: render(page, summary, args.format))
        assert "Rows 1–50" in html
        results.append(("HTML render of a 50-row page (first: compiles the template)", first_render))
        results.append(("HTML render of a 50-row page, again", rendered))
        build_dir = work / "cache-rebuild"
        rebuild, _ = timed(lambda: ReportIndex(path, args.format, key, directory=str(build_dir)).ensure())
        results.append(("index build alone (foreground, from scratch)", rebuild))

        warm_cases = {
            "page one (index warm)": {},
            "filter outcome=failed, page 1": {"outcome": "failed"},
            "filter error_code=30008, sort SID desc": {"error_code": "30008", "sort": "sid", "order": "desc"},
            "sort by status, page 1": {"sort": "status"},
            "sort by error, desc, page 100": {"sort": "error_code", "order": "desc", "page": "100"},
            f"deep page {args.rows // 100:,} (row order)": {"page": str(args.rows // 100)},
            f"sort by SID, deep page {args.rows // 100:,}": {"sort": "sid", "page": str(args.rows // 100)},
        }
        for label, params in warm_cases.items():
            query = Query.parse(params)
            warm, page = timed(lambda q=query: table_page(path, args.format, q, key=key, total=args.rows))
            assert page.rows, label
            results.append((f"{label}, warm", warm))

        print(f"\n{'what':<58} {'seconds':>9} {'vs baseline':>12}")
        for label, value in results:
            print(f"{label:<58} {value:>9.3f} {value / baseline:>11.1%}")
        index_mb = Path(index.file).stat().st_size / 1e6
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\nindex file {index_mb:.0f} MB; peak RSS of this process {peak_mb:.0f} MB")
        if page_one >= PAGE_ONE_LIMIT_S:
            print(f"FAIL: page one took {page_one:.3f} s (limit {PAGE_ONE_LIMIT_S} s)")
            return 1
        print(f"OK: page one in {page_one * 1000:.0f} ms (limit {PAGE_ONE_LIMIT_S * 1000:.0f} ms)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
