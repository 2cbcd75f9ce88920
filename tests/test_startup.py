"""Starting on a fresh data folder: the folder is made whatever the key source, and processes
starting together (web and worker under a process manager) end with one secret key, not two."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each child imports the slow parts first, says it is ready and waits for a byte on stdin before
# loading the settings, so that all of them reach the secret key together and a race can show.
PRINT_KEY = (
    "import os, sys\n"
    "import django, django.apps, django.conf, django.urls, django.utils.log, generation.profiles, hoffdesk_images.env\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read(1)\n"
    "os.environ['DJANGO_SETTINGS_MODULE'] = 'hoffdesk_images.settings'\n"
    "django.setup()\n"
    "from django.conf import settings\n"
    "print(repr(settings.SECRET_KEY))\n"
)


def child_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """This environment without HOFFDESK_ variables or DATABASE_URL, plus the data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOFFDESK_") and k != "DATABASE_URL"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update({"HOFFDESK_DATA_DIR": str(data_dir), **overrides})
    return env


def print_key(data_dir: Path) -> subprocess.Popen[str]:
    """A process that prints the secret key once given the go (a byte on stdin, or stdin closed)."""
    return subprocess.Popen(
        [sys.executable, "-c", PRINT_KEY],
        cwd=ROOT,
        env=child_env(data_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def printed_key(out: str) -> str:
    """What a child printed after its ready line (which the race test has already read)."""
    return out.removeprefix("ready\n").strip()


def test_migrate_with_a_configured_key_makes_the_missing_data_folder(tmp_path) -> None:
    data_dir = tmp_path / "new" / "data"
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT,
        env=child_env(data_dir, HOFFDESK_SECRET_KEY="configured-in-the-environment"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (data_dir / "hoffdesk.sqlite3").is_file()
    assert not (data_dir / "secret_key").exists()  # the configured key is used, none is generated


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(4))
def test_processes_starting_together_share_one_generated_key(tmp_path, round_) -> None:
    data_dir = tmp_path / "data"  # fresh, not existing yet
    children = [print_key(data_dir) for _ in range(8)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:  # the go, to all of them at once
        assert child.stdin is not None
        child.stdin.write("g")
        child.stdin.flush()
    results = [(child.communicate(timeout=120), child.returncode) for child in children]
    for (_out, err), returncode in results:
        assert returncode == 0, err
    keys = {printed_key(out) for (out, _err), _rc in results}
    assert len(keys) == 1, f"{len(keys)} different secret keys: {sorted(keys)}"
    key_file = data_dir / "secret_key"
    assert repr(key_file.read_text(encoding="utf-8").strip()) == keys.pop()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_an_existing_key_file_is_kept(tmp_path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("made-by-an-earlier-start\n", encoding="utf-8")
    out, err = print_key(tmp_path).communicate(timeout=60)
    assert printed_key(out) == repr("made-by-an-earlier-start"), err
    assert key_file.read_text(encoding="utf-8") == "made-by-an-earlier-start\n"


def test_a_key_file_still_being_written_is_read_back_once_written(tmp_path) -> None:
    """The loser of the race: the winner has created the file but not written its key yet."""
    key_file = tmp_path / "secret_key"
    key_file.touch(mode=0o600)
    child = print_key(tmp_path)
    # The winner writes its key a little later, within the loser's wait.
    writer = threading.Timer(1.0, key_file.write_text, args=("written-by-the-winner",), kwargs={"encoding": "utf-8"})
    writer.start()
    try:
        out, err = child.communicate(timeout=60)
    finally:
        writer.join()
    assert child.returncode == 0, err
    assert printed_key(out) == repr("written-by-the-winner")
    assert key_file.read_text(encoding="utf-8") == "written-by-the-winner"


def test_a_key_file_left_empty_is_an_error_naming_it(tmp_path) -> None:
    """An empty key file that stays empty past the wait (a start that died between creating and
    writing it) is reported, naming the file, rather than replaced: replacing it could race with
    a slow winner and end with two keys again. The operator deletes it, as the message says."""
    key_file = tmp_path / "secret_key"
    key_file.touch(mode=0o600)
    started = time.monotonic()
    child = print_key(tmp_path)
    out, err = child.communicate(timeout=60)
    assert child.returncode != 0, out
    assert "ImproperlyConfigured" in err
    assert str(key_file) in err and "delete" in err.lower()
    assert time.monotonic() - started >= 2.0  # it waited for a winner before giving up
    assert key_file.read_text(encoding="utf-8") == ""  # left for the operator
