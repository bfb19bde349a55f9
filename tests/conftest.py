"""Fixtures shared by every test directory.

* ``isolated_openstack_env``: the machine's OpenStack configuration kept out of the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def isolated_openstack_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``OS_*`` variable of the machine, an empty ``clouds.yaml`` as the only configuration
    (and secure file), and ``tmp_path`` as the working directory; returns that ``clouds.yaml``.

    Both files are named so that openstacksdk never falls back to ``~/.config/openstack``; a
    test may write its own clouds into the returned file.
    """
    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds: {}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(path))
    monkeypatch.chdir(tmp_path)
    return path
