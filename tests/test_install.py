"""make install as a packager and a user meet it: staged in a DESTDIR, moved to its PREFIX, run from there,
its man page read with man, its completions loaded by bash, zsh and fish, then make uninstall leaving nothing.

One install (~10 s: a wheel, a venv, pip from the pinned versions) serves every check; no root needed, since
the prefix is a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sigtop import version
from sigtop.tables import TABLES

pytestmark = pytest.mark.install
ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("batch", "record", "stream", "exporter", "replay", "serve", "doctor", "config")


def run(*args: str | Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, check=False, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory):
    """PREFIX after `make install DESTDIR=stage` and moving the staged tree there, as a package would."""
    tmp = tmp_path_factory.mktemp("install")
    prefix, stage = tmp / "prefix", tmp / "stage"
    made = run("make", "-C", ROOT, "install", f"PREFIX={prefix}", f"DESTDIR={stage}", f"BUILD={tmp / 'build'}")
    assert made.returncode == 0, made.stdout + made.stderr
    staged = Path(f"{stage}{prefix}")
    leaks = run("grep", "-rl", str(stage), staged)  # binary files (.pyc) too
    assert leaks.stdout == "", f"installed files name the staging directory:\n{leaks.stdout}"
    shutil.move(staged, prefix)
    yield prefix
    if prefix.exists():  # a failed test_uninstall must not leave a venv behind
        shutil.rmtree(prefix)


def test_launcher_runs_the_installed_sigtop(installed: Path) -> None:
    out = run(installed / "bin" / "sigtop", "--version", cwd="/")
    assert (out.returncode, out.stdout.strip()) == (0, f"sigtop {version()}"), out.stderr
    # Every package of the checkout is in the wheel (a missing one once failed only at its first import).
    packages = sorted(
        "sigtop." + ".".join(p.parent.relative_to(ROOT / "sigtop").parts)
        for p in (ROOT / "sigtop").rglob("__init__.py")
        if p.parent != ROOT / "sigtop"
    )
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\nimport sigtop.bpf"
    out = run(installed / "lib" / "sigtop" / "bin" / "python", "-I", "-c", code, *packages)
    assert out.returncode == 0, out.stderr
    assert list((installed / "lib" / "sigtop" / "lib").glob("python3*/site-packages/sigtop/bpf/sigtop.bpf.c"))


def test_man_page_renders_with_keys_tables_and_exit_statuses(installed: Path) -> None:
    page = installed / "share" / "man" / "man1" / "sigtop.1"
    out = run("man", "--warnings", "-l", page, env={**os.environ, "MANWIDTH": "120", "LC_ALL": "C.UTF-8"})
    assert out.returncode == 0
    assert out.stderr == "", out.stderr  # groff's warnings: a line the generator left unescaped, say
    text = out.stdout
    for heading in ("NAME", "SYNOPSIS", "OPTIONS", "KEYS", "TABLES", "EXIT STATUS", "SEE ALSO"):
        assert f"\n{heading}\n" in text, heading
    for command in COMMANDS:
        assert f"sigtop {command}" in text
    for spec in TABLES.values():  # a table added without a word in man/sigtop.1.include fails here
        assert f"{spec.title} ({spec.key}" in text, spec.title
    for option in ("--signal", "--pid", "--until-exit", "--web.config.file"):
        assert option in text
    assert f"sigtop {version()}" in text


def test_bash_completes_commands_signals_pids_and_files(installed: Path, tmp_path: Path) -> None:
    script = installed / "share" / "bash-completion" / "completions" / "sigtop"
    (tmp_path / "cap.jsonl").write_text("")
    probe = f"""
    source /usr/share/bash-completion/bash_completion
    source {script}
    fn=$(complete -p sigtop | sed 's/.*-F \\([^ ]*\\) .*/\\1/')
    c() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=()
          $fn sigtop "${{COMP_WORDS[-1]}}" "${{COMP_WORDS[-2]}}"; echo "${{COMPREPLY[*]}}"; }}
    c sigtop ''
    c sigtop -s TE
    c sigtop batch --pid {os.getpid()}
    c sigtop replay {tmp_path}/ca
    """
    out = run("bash", "-c", probe)
    assert out.returncode == 0, out.stderr
    commands, signals, pids, files = out.stdout.splitlines()
    assert set(commands.split()) == set(COMMANDS)
    assert "TERM" in signals.split()
    assert str(os.getpid()) in pids.split()
    assert files.split() == [f"{tmp_path}/cap.jsonl"]


def test_zsh_and_fish_load_their_completions(installed: Path) -> None:
    zsh = installed / "share" / "zsh" / "site-functions"
    out = run("zsh", "-fc", f"fpath=({zsh} $fpath); autoload -Uz compinit; compinit -u -D; print $_comps[sigtop]")
    assert (out.returncode, out.stdout.strip()) == (0, "_sigtop"), out.stderr
    text = (zsh / "_sigtop").read_text()
    assert all(name in text for name in ("TERM", "USR1", "RTMIN", "_pids", "_files", *COMMANDS))

    fish = installed / "share" / "fish" / "vendor_completions.d" / "sigtop.fish"
    out = run("fish", "-c", f"source {fish}; complete -C 'sigtop '; complete -C 'sigtop batch -s US'")
    assert out.returncode == 0, out.stderr
    offered = {line.split("\t")[0] for line in out.stdout.splitlines()}
    assert {*COMMANDS, "USR1", "USR2"} <= offered


def test_unit_starts_the_installed_sigtop(installed: Path) -> None:
    unit = (installed / "lib" / "systemd" / "system" / "sigtop-exporter.service").read_text()
    assert f"\nExecStart={installed}/bin/sigtop exporter " in unit
    assert "\nDocumentation=man:sigtop(1)\n" in unit


def test_uninstall_removes_everything_install_put(installed: Path) -> None:
    out = run("make", "-C", ROOT, "uninstall", f"PREFIX={installed}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not installed.exists(), sorted(str(p) for p in installed.rglob("*"))
