"""The kill-switch file: what the admin channel writes and every gateway applies at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradsys.cores.kill_switches import (
    KillSwitches,
    KillSwitchFileError,
    read_kill_switches,
    write_kill_switches,
)


def test_switching_on_and_off_keeps_the_others() -> None:
    ks = KillSwitches().switched(3, True).switched(1, True).switched(None, True)
    assert ks == KillSwitches(True, (1, 3))
    assert ks.describe() == "every account; account(s) 1, 3"
    ks = ks.switched(3, False).switched(None, False).switched(3, False)  # twice: still off
    assert ks == KillSwitches(False, (1,))
    assert KillSwitches().describe() == "none"


def test_the_file_round_trips_and_a_missing_one_is_all_off(tmp_path: Path) -> None:
    path = tmp_path / "kill_switches.json"
    assert read_kill_switches(path) == KillSwitches()
    write_kill_switches(path, KillSwitches(True, (2,)))
    assert read_kill_switches(path) == KillSwitches(True, (2,))
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("text", ["{", '{"accounts": ["x"]}', '{"kill": true}'])
def test_a_file_that_is_not_kill_switches_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "kill_switches.json"
    path.write_text(text)
    with pytest.raises(KillSwitchFileError, match=f"{path} does not hold kill switches"):
        read_kill_switches(path)
