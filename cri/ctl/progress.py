"""Pull progress: one bar per layer on a terminal, one plain line per change otherwise."""
from __future__ import annotations

import dataclasses
from typing import TextIO

from cri.api import engine_pb2 as epb
from cri.ctl.render import human_size, short_id

BAR_WIDTH = 30
_LABELS = {"exists": "Already exists", "downloading": "Downloading",
           "downloaded": "Download complete", "unpacking": "Extracting",
           "unpacked": "Pull complete"}


@dataclasses.dataclass(frozen=True)
class LayerState:
    phase: str
    current: int = 0
    total: int = 0


def bar(current: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[=====>     ]` for current/total; an empty bar when the total is unknown."""
    if total <= 0:
        return "[" + " " * width + "]"
    done = min(width, current * width // total)
    arrow = ">" if done < width else ""
    return "[" + "=" * done + arrow + " " * (width - done - len(arrow)) + "]"


def layer_line(layer: str, state: LayerState) -> str:
    label = _LABELS.get(state.phase, state.phase)
    text = f"{short_id(layer)}: {label}"
    if state.phase in ("downloading", "unpacking"):
        amount = f"{human_size(state.current)}/{human_size(state.total)}" if state.total \
            else human_size(state.current)
        text += f" {bar(state.current, state.total)} {amount}"
    return text


class Progress:
    """Renders PullProgress messages to `out`; `tty` selects bars redrawn in place."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._layers: dict[str, LayerState] = {}
        self._drawn = 0  # lines of bars currently on screen

    def update(self, event: epb.PullProgress) -> None:
        if not event.layer:
            if event.phase == "resolved" and not self._tty:
                self._out.write(f"resolved: {event.total} layers\n")
            return
        state = LayerState(event.phase, event.current, event.total)
        previous = self._layers.get(event.layer)
        self._layers[event.layer] = state
        if self._tty:
            self._redraw()
        elif previous is None or previous.phase != state.phase:
            self._out.write(layer_line(event.layer, state) + "\n")  # phases only, no flood
        self._out.flush()

    def _redraw(self) -> None:
        if self._drawn:
            self._out.write(f"\x1b[{self._drawn}A")
        for layer, state in self._layers.items():
            self._out.write("\x1b[2K" + layer_line(layer, state) + "\n")
        self._drawn = len(self._layers)
