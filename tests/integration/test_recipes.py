"""The scheduler recipes of README's "Running it unattended", checked as far as this machine
allows: the systemd units by ``systemd-analyze verify``, the CronJobs against the Kubernetes
OpenAPI schema (``kubernetes-validate`` ships it), and the README showing each file verbatim.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import click
import kubernetes_validate
import pytest
import yaml
from processes import PROCESS_TIMEOUT, SOURCE_ROOT

from bulkstop.cli import main

CONTRIB: Final = Path(SOURCE_ROOT) / "contrib"
UNITS: Final = ("bulkstop-nightly.service", "bulkstop-nightly.timer")
CRONJOBS: Final = ("cronjob.yaml", "undo-cronjob.yaml")
#: The command the service runs, where the recipe installs it.
INSTALLED: Final = "/usr/local/bin/bulkstop"


def recipe_files() -> list[Path]:
    return [CONTRIB / "systemd" / u for u in UNITS] + [CONTRIB / "kubernetes" / c for c in CRONJOBS]


@pytest.mark.parametrize("path", recipe_files(), ids=lambda p: p.name)
def test_the_readme_shows_the_recipe(path: Path) -> None:
    readme = (Path(SOURCE_ROOT) / "README.md").read_text()
    assert path.read_text().strip() in readme


def verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
class TestSystemd:
    """The service and timer pass ``systemd-analyze verify``; a broken timer does not."""

    def test_units_verify(self, tmp_path: Path) -> None:
        # The service must name an executable that exists: this checkout's bulkstop.
        here = str(Path(sys.executable).parent / "bulkstop")
        for unit in UNITS:
            text = (CONTRIB / "systemd" / unit).read_text().replace(INSTALLED, here)
            (tmp_path / unit).write_text(text)
        result = verify(*(tmp_path / u for u in UNITS))
        assert result.returncode == 0, result.stderr

    def test_a_broken_timer_fails(self, tmp_path: Path) -> None:
        timer = tmp_path / "broken.timer"
        timer.write_text("[Timer]\nOnCalendar=nonsense\n[Install]\nWantedBy=timers.target\n")
        assert verify(timer).returncode != 0


class TestCronJob:
    """The CronJobs validate, strictly, against the Kubernetes OpenAPI schema."""

    @staticmethod
    def check(doc: Any) -> None:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)

    @pytest.mark.parametrize("name", CRONJOBS)
    def test_valid(self, name: str) -> None:
        doc = yaml.safe_load((CONTRIB / "kubernetes" / name).read_text())
        self.check(doc)
        job = doc["spec"]
        assert job["concurrencyPolicy"] == "Forbid"

    def test_the_nightly_job_retries_into_the_same_run(self) -> None:
        doc = yaml.safe_load((CONTRIB / "kubernetes" / "cronjob.yaml").read_text())
        (container,) = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert "--resume-unfinished" in container["args"]
        assert any(a.startswith("--pushgateway=") for a in container["args"])

    def test_a_misspelt_field_is_caught(self) -> None:
        doc = yaml.safe_load((CONTRIB / "kubernetes" / "cronjob.yaml").read_text())
        doc["spec"]["concurrencyPolcy"] = doc["spec"].pop("concurrencyPolicy")
        with pytest.raises(kubernetes_validate.ValidationError):
            self.check(doc)


def recipe_commands() -> list[list[str]]:
    """Every bulkstop command line of the recipes: crontab lines, ExecStart, container args."""
    readme = (Path(SOURCE_ROOT) / "README.md").read_text()
    crontab = readme.split("```crontab\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line)[5:] for line in crontab.splitlines() if line.strip()]
    service = (CONTRIB / "systemd" / UNITS[0]).read_text()
    (exec_start,) = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    commands.append(shlex.split(exec_start.removeprefix("ExecStart=")))
    for name in CRONJOBS:
        doc = yaml.safe_load((CONTRIB / "kubernetes" / name).read_text())
        (container,) = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        commands.append(["bulkstop", *container["args"]])
    return commands


@pytest.mark.parametrize("argv", recipe_commands(), ids=lambda a: " ".join(a[:2]))
def test_the_recipes_commands_parse(argv: list[str]) -> None:
    """Each command line is one bulkstop accepts (options spelt right, values valid)."""
    assert Path(argv[0]).name == "bulkstop"
    with click.Context(main) as ctx:
        command = main.get_command(ctx, argv[1])
        assert command is not None
        parsed = command.make_context(argv[1], argv[2:], parent=ctx)
    assert parsed.params["yes"]
