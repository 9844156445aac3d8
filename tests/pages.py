"""The pages of the docs, the examples on them, and a reader that runs them as a person would.

:func:`blocks` reads a page's fenced blocks (and its ``<!-- not run: REASON -->`` markers).
A :class:`Reader` reads one page at a time: a new ``sluicegate serve --dev`` on a new data
dir in a new work directory for each page (:class:`Page`), its blocks run in order, the
shell variables of one block kept for the next, in the :class:`Place` where processes run:
a network namespace with only loopback when this machine allows it, else the machine's
own network. ``tests/test_docs_examples.py`` says what is checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"sh": "shell", "bash": "shell", "shell": "shell", "python": "python"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"<!--\s*not run:\s*(?P<reason>.*?)\s*-->")
PORT = 8080
BLOCK_SECONDS = 120
#: Run before a shell block: the variables the page's earlier blocks left.
PROLOGUE = 'set -euo pipefail\n. "$SG_STATE"\n'
#: Run after it: keep its variables for the next block (not bash's own, not read-only ones).
EPILOGUE = r"""
for __sg_n in $(compgen -v); do
  case $__sg_n in
    __sg_*|BASH*|FUNCNAME|PIPESTATUS|_|RANDOM|SRANDOM|SECONDS|LINENO|EPOCH*|HISTCMD|GROUPS\
    |DIRSTACK|PWD|OLDPWD|SHLVL|OPTIND|OPTERR|COMP_WORDBREAKS|PPID|UID|EUID|SHELLOPTS|IFS)
      continue ;;
  esac
  __sg_d=$(declare -p "$__sg_n" 2>/dev/null) || continue
  __sg_f=${__sg_d#declare -}
  [[ ${__sg_f%% *} == *r* ]] || printf '%s\n' "$__sg_d"
done > "$SG_STATE"
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """One fenced block of a page: its language, text, and why it is not run, if it is not."""

    page: Path
    line: int
    lang: str
    text: str
    not_run: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str | None:
        return RUNNABLE.get(self.lang)


def blocks(page: Path) -> tuple[list[Block], list[int]]:
    """The fenced blocks of ``page``, and the lines of markers on no runnable block's fence."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    markers = {n for n, line in enumerate(lines, 1) if MARKER.search(line)}
    used: set[int] = set()
    at = 0  # index of the line being read
    while at < len(lines):
        opened = FENCE.match(lines[at])
        if opened is None:
            at += 1
            continue
        fence_line, indent, fence = at + 1, opened["indent"], opened["fence"]
        body: list[str] = []
        at += 1
        while at < len(lines) and not lines[at].strip().startswith(fence):
            body.append(lines[at].removeprefix(indent))
            at += 1
        at += 1  # past the closing fence
        before = next((n for n in range(fence_line - 1, 0, -1) if lines[n - 1].strip()), 0)
        found_marker = MARKER.search(lines[before - 1]) if before in markers else None
        reason = found_marker["reason"] if found_marker is not None else None
        if reason is not None and opened["lang"] in RUNNABLE:
            used.add(before)
        found.append(Block(page=page, line=fence_line, lang=opened["lang"],
                           text="\n".join(body) + "\n", not_run=reason))  # fmt: skip
    return found, sorted(markers - used)


ALL = [block for page in PAGES for block in blocks(page)[0] if block.kind is not None]


class Place:
    """Where processes run: a network namespace of their own (``within`` prefixes each
    command), or this machine's network (``within`` is empty)."""

    def __init__(self) -> None:
        self.within: list[str] = []
        self._holder: subprocess.Popen[str] | None = None
        if os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter", "ip")):
            self._enter()

    def _enter(self) -> None:
        """A process that holds a namespace with loopback up, for others to enter."""
        holder = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", "ip link set lo up && echo up && exec sleep 86400"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert holder.stdout is not None
        if holder.stdout.readline().strip() == "up":
            self._holder = holder
            self.within = ["nsenter", "-t", str(holder.pid), "-n"]
        else:
            holder.kill()
            holder.wait()
            holder.stdout.close()

    @property
    def offline(self) -> bool:
        return self._holder is not None

    def port(self) -> int:
        """8080 when it is free here; else one the kernel picks."""
        if self.offline or port_free(PORT):
            return PORT
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
            return port

    def close(self) -> None:
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
            assert self._holder.stdout is not None
            self._holder.stdout.close()


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Service:
    """``sluicegate serve --dev`` (or ``make run``'s command) running, and what it printed."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)

    @classmethod
    def start(cls, command: Sequence[str], cwd: Path, env: dict[str, str]) -> Service:
        process = subprocess.Popen(command, cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)  # fmt: skip
        service = cls(process)
        service._reader.start()
        if not service.ready.wait(60) or process.poll() is not None:
            service.stop()
            raise AssertionError("the service did not start:\n" + service.log)
        return service

    def _read(self) -> None:  # always, so that a full pipe never blocks the service
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "serving on http" in line:
                self.ready.set()
        self.ready.set()

    @property
    def log(self) -> str:
        return "".join(self.lines[-60:])

    @property
    def token(self) -> str:
        found = re.search(r"\b(sg_[\w-]+)", "".join(self.lines))
        assert found, "the service printed no development key:\n" + self.log
        return found[1]

    @property
    def first_call(self) -> str:
        found = next((line.strip() for line in self.lines if line.strip().startswith("curl ")),
                     None)  # fmt: skip
        assert found, "the service printed no first call:\n" + self.log
        return found

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C would; SIGKILL if it has not exited in 20 s."""
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def _signal_group(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
        os.killpg(process.pid, sig)


@dataclass
class Page:
    """One page being read: its service, work directory, and the blocks run so far."""

    path: Path
    place: Place
    home: Path
    port: int = PORT
    service: Service | None = None
    done: int = 0  # blocks of the page run so far, in order
    failed: list[str] = field(default_factory=list)

    @property
    def work(self) -> Path:
        return self.home / "work"

    @property
    def state(self) -> Path:
        return self.home / "state.sh"

    def open(self) -> None:
        shutil.copytree(ROOT / "examples", self.work / "examples")
        self.state.write_text("")
        self.port = self.place.port()
        command = [*self.place.within, sys.executable, "-m", "sluicegate.cli", "serve", "--dev",
                   "--host", "127.0.0.1", "--port", str(self.port),
                   "--data-dir", str(self.work / ".sluicegate")]  # fmt: skip
        self.service = Service.start(command, self.work, clean_env())

    def env(self) -> dict[str, str]:
        assert self.service is not None
        token = self.service.token
        return {**clean_env(), "KEY": token, "SLUICEGATE_KEY": token,
                "SLUICEGATE_URL": f"http://localhost:{self.port}", "SLUICEGATE_ORG": "demo",
                "SG_STATE": str(self.state)}  # fmt: skip

    def text(self, block: Block) -> str:
        """The block as it runs: verbatim, unless port 8080 was taken here."""
        if self.port == PORT:
            return block.text
        return re.sub(r"\b(localhost|127\.0\.0\.1):8080\b", rf"\1:{self.port}", block.text)

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        text = self.text(block)
        if block.kind == "python":
            script = self.home / f"example_{block.line}.py"
            script.write_text(text)
            command = [sys.executable, str(script)]
        else:
            script = self.home / f"example_{block.line}.sh"
            script.write_text(PROLOGUE + text + EPILOGUE)
            command = ["bash", str(script)]
        process = subprocess.Popen([*self.place.within, *command], cwd=self.work,
                                   env=self.env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)  # fmt: skip
        try:
            out, err = process.communicate(timeout=BLOCK_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            out, err = process.communicate()
            err += f"\n(killed after {BLOCK_SECONDS} s)"
        finally:
            _signal_group(process, signal.SIGKILL)  # whatever it started and left running
        return subprocess.CompletedProcess(command, process.returncode, out, err)

    def close(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None


def clean_env() -> dict[str, str]:
    """This process's environment, less any SLUICEGATE_ setting, the venv's bin first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class Reader:
    """Reads the pages one at a time: a page's service stops when the next page starts."""

    def __init__(self, place: Place, home: Path) -> None:
        self.place = place
        self.home = home
        self.page: Page | None = None

    def at(self, path: Path) -> Page:
        if self.page is None or self.page.path != path:
            self.close()
            home = Path(tempfile.mkdtemp(prefix="page-", dir=self.home))
            self.page = Page(path=path, place=self.place, home=home)
            self.page.open()
        return self.page

    def close(self) -> None:
        if self.page is not None:
            self.page.close()
            self.page = None
