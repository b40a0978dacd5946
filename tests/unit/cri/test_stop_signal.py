"""CRI's Signal enum -> the engine's stop signal name."""
from __future__ import annotations

import signal

from cri.api import runtime_pb2 as pb
from cri.server.engine_translate import container_config, stop_signal_enum, stop_signal_name
from engine.runtime.stopsignal import parse


def test_cri_signal_enum_names_every_value() -> None:
    assert stop_signal_name(pb.SIGNAL_RUNTIME_DEFAULT) == ""
    assert stop_signal_name(pb.SIGNAL_SIGUSR1) == "SIGUSR1"
    assert stop_signal_name(pb.SIGNAL_SIGRTMINPLUS3) == "SIGRTMIN+3"
    assert stop_signal_name(pb.SIGNAL_SIGRTMAXMINUS2) == "SIGRTMAX-2"
    for value in pb.Signal.values():
        if value != pb.SIGNAL_RUNTIME_DEFAULT:
            assert 1 <= parse(stop_signal_name(value)) <= signal.SIGRTMAX


def test_container_config_carries_the_stop_signal() -> None:
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"),
                             stop_signal=pb.SIGNAL_SIGQUIT)
    assert container_config(cfg).stop_signal == "SIGQUIT"


def test_status_reports_the_stop_signal_as_the_enum() -> None:
    assert stop_signal_enum("") == pb.SIGNAL_RUNTIME_DEFAULT
    assert stop_signal_enum("QUIT") == pb.SIGNAL_SIGQUIT
    assert stop_signal_enum("6") == pb.SIGNAL_SIGABRT
    assert stop_signal_enum("SIGRTMIN+3") == pb.SIGNAL_SIGRTMINPLUS3
    assert stop_signal_enum("SIGRTMAX-2") == pb.SIGNAL_SIGRTMAXMINUS2
    for value in pb.Signal.values():  # every CRI signal survives the round trip by number
        if value != pb.SIGNAL_RUNTIME_DEFAULT:
            name = stop_signal_name(value)
            assert parse(stop_signal_name(stop_signal_enum(name))) == parse(name)
