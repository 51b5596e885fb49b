"""num_segments: GSM-7 (160 / 153) and UCS-2 (70 / 67), over HTTP and on the counting function itself."""

from __future__ import annotations

import pytest

from sandbox.segments import count_segments, encoding

CASES = [
    ("a" * 160, 1),
    ("a" * 161, 2),
    ("a" * 306, 2),
    ("a" * 307, 3),
    ("a" * 1600, 11),
    ("€" * 80, 1),  # extension characters take two septets
    ("€" * 81, 2),  # 76 escapes fit in 153 septets; an escape is never split
    ("ж" * 70, 1),
    ("ж" * 71, 2),
    ("ж" * 1600, 24),
    ("😀" * 35, 1),  # an emoji is a surrogate pair: two UCS-2 units
    ("😀" * 36, 2),
    ("a" * 159 + "😀", 3),  # one emoji turns the whole body into UCS-2: 161 units
]


@pytest.mark.parametrize(("body", "segments"), CASES, ids=[f"{len(b)}x{b[0]!r}" for b, _ in CASES])
def test_num_segments_over_http(api, body, segments):
    assert api.send(Body=body)["num_segments"] == str(segments)


@pytest.mark.parametrize(("body", "segments"), CASES, ids=[f"{len(b)}x{b[0]!r}" for b, _ in CASES])
def test_count_segments(body, segments):
    assert count_segments(body) == segments


def test_encoding_detection():
    assert encoding("Hello @ £ € [x]") == "GSM-7"
    assert encoding("Grüße") == "GSM-7"
    assert encoding("ç") == "UCS-2"  # only the capital Ç is in the GSM-7 basic set
