from __future__ import annotations

import json

import pytest

from cri.ctl.errors import CtlError
from cri.ctl.wsexec import exit_code_of, resize_message
from cri.streaming import exitstatus


def test_resize_message_is_channel_4_json() -> None:
    msg = resize_message(120, 40)
    assert msg[0] == 4
    assert json.loads(msg[1:]) == {"Width": 120, "Height": 40}


@pytest.mark.parametrize("code", [0, 1, 137])
def test_exit_codes_from_the_status_channel(code: int) -> None:
    assert exit_code_of(exitstatus.exit_code(code)) == code


def test_a_command_that_could_not_run_is_an_error() -> None:
    with pytest.raises(CtlError, match="exec failed: no such file"):
        exit_code_of(exitstatus.failure("no such file"))
    with pytest.raises(CtlError, match="unreadable exec status"):
        exit_code_of(b"{not json")
