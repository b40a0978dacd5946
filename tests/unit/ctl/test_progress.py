from __future__ import annotations

import io

from cri.api import engine_pb2 as epb
from cri.ctl.progress import LayerState, Progress, bar, layer_line

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_bar_fills_in_proportion() -> None:
    assert bar(0, 10, 10) == "[>         ]"
    assert bar(5, 10, 10) == "[=====>    ]"
    assert bar(10, 10, 10) == "[==========]"
    assert bar(20, 10, 10) == "[==========]"
    assert bar(3, 0, 4) == "[    ]"


def test_layer_lines() -> None:
    assert layer_line(A, LayerState("exists")) == "aaaaaaaaaaaa: Already exists"
    assert layer_line(A, LayerState("downloading", 500, 1000)) == (
        "aaaaaaaaaaaa: Downloading [===============>              ] 500B/1kB")
    assert layer_line(A, LayerState("downloading", 2000, 0)) == (
        "aaaaaaaaaaaa: Downloading [                              ] 2kB")
    assert layer_line(A, LayerState("unpacked")) == "aaaaaaaaaaaa: Pull complete"


def events() -> list[epb.PullProgress]:
    return [epb.PullProgress(phase="resolved", total=2),
            epb.PullProgress(phase="downloading", layer=A, current=1, total=4),
            epb.PullProgress(phase="downloading", layer=B, current=1, total=4),
            epb.PullProgress(phase="downloading", layer=A, current=4, total=4),
            epb.PullProgress(phase="downloaded", layer=A, current=4, total=4)]


def test_plain_output_has_a_line_per_phase_change_only() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    for e in events():
        progress.update(e)
    assert out.getvalue().splitlines() == [
        "resolved: 2 layers",
        "aaaaaaaaaaaa: Downloading [=======>                      ] 1B/4B",
        "bbbbbbbbbbbb: Downloading [=======>                      ] 1B/4B",
        "aaaaaaaaaaaa: Download complete"]


def test_terminal_output_redraws_one_bar_per_layer_in_place() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True)
    for e in events():
        progress.update(e)
    text = out.getvalue()
    final = text[text.rindex("\x1b[2A"):]  # the last redraw moves up over both bars
    assert final == ("\x1b[2A\x1b[2Kaaaaaaaaaaaa: Download complete\n"
                     "\x1b[2Kbbbbbbbbbbbb: Downloading [=======>                      ] 1B/4B\n")
