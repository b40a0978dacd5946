"""One load-generator process: `concurrency` RPCs in flight on one channel, for `seconds`.

Closed loop (each slot sends its next request when the previous answer arrives), on a
grpc.aio channel over the unix socket. Prints one JSON object: the latencies (ms) of the
RPCs that completed after the warm-up, and any error codes.

    .venv/bin/python -m bench.cri.load --endpoint unix:///... --rpc ContainerStatus \
        --concurrency 16 --seconds 10 [--ids ID,ID,...]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc

from cri.api import runtime_pb2 as pb
from cri.api import runtime_pb2_grpc as pb_grpc

RPCS = ("ListContainers", "ContainerStatus", "ListPodSandbox", "Version")


def _request(rpc: str, ids: list[str], i: int) -> object:
    if rpc == "ContainerStatus":
        return pb.ContainerStatusRequest(container_id=ids[i % len(ids)])
    if rpc == "ListContainers":
        return pb.ListContainersRequest()
    if rpc == "ListPodSandbox":
        return pb.ListPodSandboxRequest()
    return pb.VersionRequest()


async def run(*, endpoint: str, rpc: str, ids: list[str], concurrency: int, seconds: float,
              warmup_s: float) -> dict[str, object]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(
            endpoint, options=[("grpc.max_receive_message_length", 16 << 20)]) as channel:
        stub = pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        call = getattr(stub, rpc)
        await call(_request(rpc, ids, 0), timeout=30)  # connected before the clock starts
        start = time.perf_counter()
        measure_from, stop_at = start + warmup_s, start + warmup_s + seconds

        async def slot(k: int) -> None:
            i = k
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    await call(_request(rpc, ids, i), timeout=30)
                except grpc.aio.AioRpcError as err:
                    errors[err.code().name] = errors.get(err.code().name, 0) + 1
                    continue
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    latencies.append((t1 - t0) * 1000.0)
                i += concurrency

        await asyncio.gather(*(slot(k) for k in range(concurrency)))
    return {"rpc": rpc, "seconds": seconds, "latencies_ms": latencies, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.cri.load")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--rpc", choices=RPCS, required=True)
    ap.add_argument("--ids", default="", help="container IDs (comma-separated)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ns = ap.parse_args(argv)
    ids = [i for i in ns.ids.split(",") if i]
    if ns.rpc == "ContainerStatus" and not ids:
        ap.error("ContainerStatus needs --ids")
    result = asyncio.run(run(endpoint=ns.endpoint, rpc=ns.rpc, ids=ids,
                             concurrency=ns.concurrency, seconds=ns.seconds,
                             warmup_s=ns.warmup))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
