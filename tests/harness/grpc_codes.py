"""The status codes a batch of gRPC futures ended with, counted."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import grpc


def status_counts(futures: Iterable[Any]) -> dict[grpc.StatusCode, int]:
    """Waits for each future; OK for an answer, the error's code otherwise."""
    codes: Counter[grpc.StatusCode] = Counter()
    for f in futures:
        try:
            f.result()
            codes[grpc.StatusCode.OK] += 1
        except grpc.RpcError as err:
            codes[err.code()] += 1  # type: ignore[attr-defined]
    return dict(codes)
