"""Every shell and Python example of README.md and docs/ runs, verbatim, on a first run.

**What runs.** Each fenced block tagged ``sh``, ``bash``, ``shell`` or ``python`` in
README.md and every ``docs/**/*.md`` is one test, named ``file:line`` (the line of its
fence). Other blocks (``console`` and ``text`` for output, ``json``, ``yaml``...) are not
run. A block that cannot run inline (it starts a service that runs until stopped, needs
Docker or another machine) says so on the line before its fence::

    <!-- not run: starts the service, which runs until Ctrl-C -->

and is skipped with that reason; nothing else is skipped, and a marker that is not on the
line before a runnable block fails :func:`test_every_marker_is_on_a_runnable_block`.

**Against what.** Each page gets a new ``sluicegate serve --dev`` on a new data dir, as a
reader's first run: its development key (org ``demo``, sandbox ``prod``), its built-in
external system at ``/dev/echo``, on ``http://localhost:8080`` as the docs say. Where this
machine lets the test make a network namespace (root, ``unshare``, ``nsenter``), the
service and every block run in one with only the loopback interface: port 8080 is free
there, and an example that needs the internet fails instead of depending on it. Elsewhere
they run on the machine's loopback, on port 8080 when it is free; when it is not, the
service listens on another port and ``localhost:8080`` / ``127.0.0.1:8080`` in the blocks
are replaced by it (the only edit the test ever makes to a block).

**As a reader runs them.** A page's blocks run in order, each as a new ``bash`` with
``set -euo pipefail`` or a new Python process, in a work directory that holds a copy of
the repository's ``examples/`` (so ``-f examples/rules.yaml`` works) and the service's
data dir ``.sluicegate`` (so ``--data-dir .sluicegate`` acts on the running service). The
shell variables a block sets are there in the page's next blocks, as in one terminal
(``BASE=...`` then ``curl "$BASE/..."``). The environment has the
development key in ``KEY`` and ``SLUICEGATE_KEY``, ``SLUICEGATE_URL`` (the service),
``SLUICEGATE_ORG=demo``, and the virtualenv's ``bin`` first on ``PATH``, as after
``. .venv/bin/activate``. A block selected alone (``-k``) runs its page's earlier blocks
first. Every process a block leaves behind is killed after it.

**What fails.** A block fails when it exits non-zero, when its output holds an error
answer of the service (``{"status": 4xx or 5xx, "code": ...}``, the JSON error model:
``curl -s`` exits 0 on a 403, and an example that answers one does not work), or a call
that ended ``network_error`` or ``blocked`` (it called a system that is not there, such
as one on the internet: the examples call the development service's ``/dev/echo``).

:func:`test_make_run_then_the_readme_call` checks the first run itself: ``make run``'s
command, then the README's first call and the call the service printed, verbatim:
``success``, offline.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pages import (
    ALL,
    PAGES,
    PORT,
    ROOT,
    Block,
    Page,
    Place,
    Reader,
    Service,
    blocks,
    clean_env,
    port_free,
)

#: An error answer of the service (its JSON error model), which ``curl -s`` exits 0 on.
PROBLEM = re.compile(r'\{\s*"status":\s*[45]\d\d,\s*"code":')
#: A call that could not reach its system: one to the internet, or to a host that is not.
UNREACHED = re.compile(r'"outcome":\s*"(network_error|blocked)"')


@pytest.fixture(scope="module")
def place() -> Iterator[Place]:
    here = Place()
    try:
        yield here
    finally:
        here.close()


@pytest.fixture(scope="module")
def reader(place: Place, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    reading = Reader(place, tmp_path_factory.mktemp("docs"))
    try:
        yield reading
    finally:
        reading.close()


def _report(block: Block, page: Page, done: subprocess.CompletedProcess[str]) -> str:
    assert page.service is not None
    earlier = f"\n(earlier blocks of the page failed: {page.failed})" if page.failed else ""
    return (f"{block.name} exited {done.returncode}{earlier}\n--- block\n{page.text(block)}"
            f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}\n"
            f"--- service\n{page.service.log}")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("block", ALL, ids=[block.name for block in ALL])
def test_example_runs(block: Block, reader: Reader) -> None:
    if block.not_run is not None:
        pytest.skip(f"{block.name} not run: {block.not_run}")
    page = reader.at(block.page)
    mine = [b for b in ALL if b.page == block.page and b.not_run is None]
    position = mine.index(block)
    if page.done > position:  # run again: a new reading of the page
        reader.close()
        page = reader.at(block.page)
    for earlier in mine[page.done : position]:  # selected alone: the page up to it first
        if page.run(earlier).returncode != 0:
            page.failed.append(earlier.name)
    done = page.run(block)
    page.done = position + 1
    if done.returncode != 0:
        page.failed.append(block.name)
    assert 0 == done.returncode, _report(block, page, done)
    assert not PROBLEM.search(done.stdout), "an error answer\n" + _report(block, page, done)
    assert not UNREACHED.search(done.stdout), "a call went nowhere\n" + _report(block, page, done)


def test_every_marker_is_on_a_runnable_block() -> None:
    """A ``not run`` marker is on the line before a sh/bash/shell/python fence, and says why."""
    stray = [f"{page.relative_to(ROOT)}:{line}" for page in PAGES for line in blocks(page)[1]]
    empty = [b.name for b in ALL if b.not_run == ""]

    assert ([], []) == (stray, empty)


def test_the_pages_have_examples_to_run() -> None:
    """The collection finds the README's examples (a parser that finds none would pass)."""
    readme = [b for b in ALL if b.page.name == "README.md"]

    assert {"shell", "python"} <= {b.kind for b in readme if b.not_run is None}


@pytest.mark.slow
def test_make_run_then_the_readme_call(place: Place, reader: Reader, tmp_path: Path) -> None:
    """``make run``'s command on a new data dir, then the README's first call and the call
    the service printed, each verbatim: ``success``, offline where the machine allows."""
    reader.close()  # its service may hold port 8080
    if not place.offline and not port_free(PORT):
        pytest.skip("port 8080 is taken and no network namespace can be made")
    venv = Path(sys.executable).parent.parent
    planned = subprocess.run(["make", "-s", "-n", "run", f"VENV={venv}"], cwd=ROOT,
                             capture_output=True, text=True, check=True)  # fmt: skip
    command = next(line for line in planned.stdout.splitlines() if " serve " in line)
    call = next(b for b in ALL if b.page.name == "README.md" and "/v1/calls" in b.text)
    service = Service.start([*place.within, "sh", "-c", command], tmp_path, clean_env())
    try:
        env = {**clean_env(), "SLUICEGATE_KEY": service.token, "SLUICEGATE_ORG": "demo"}
        answers = [
            subprocess.run([*place.within, "bash", "-c", script], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
            for script in (call.text, service.first_call)
        ]  # fmt: skip
    finally:
        service.stop()

    for script, done in zip((call.text, service.first_call), answers, strict=True):
        assert '"outcome":"success"' in done.stdout, (script, done.stdout, done.stderr)


def test_blocks_are_read_as_a_reader_sees_them(tmp_path: Path) -> None:
    """Indented blocks lose their indent, markers skip the next runnable block only, and a
    marker on anything else is reported."""
    page = tmp_path / "page.md"
    page.write_text(
        "Intro.\n\n"
        "- a step:\n\n"
        "  ```sh\n  echo one\n    echo two\n  ```\n\n"
        "<!-- not run: starts a server -->\n\n"
        "```python\nprint(1)\n```\n\n"
        "<!-- not run: output -->\n"
        "```console\n$ echo\n```\n\n"
        "```json\n{\"status\": 403, \"code\": \"FORBIDDEN\"}\n```\n"
    )  # fmt: skip

    found, stray = blocks(page)

    assert [(5, "sh", "echo one\n  echo two\n", None),
            (12, "python", "print(1)\n", "starts a server"),
            (17, "console", "$ echo\n", "output"),
            (21, "json", '{"status": 403, "code": "FORBIDDEN"}\n', None)] == [
        (b.line, b.lang, b.text, b.not_run) for b in found
    ]  # fmt: skip
    assert [16] == stray
    assert PROBLEM.search(found[-1].text)


@pytest.mark.parametrize(("output", "fails"), [
    ('{"status":403,"code":"FORBIDDEN","message":"this key does not belong to that org"}', True),
    ('{"status": 400, "code": "ERR_ENDPOINTCONFIG_102", "message": "..."}', True),
    ('{"outcome":"network_error","joStatusCode":"internalError","attempts":4}', True),
    ('{"outcome": "blocked", "attempts": 0}', True),
    ('{"outcome":"http_error","response":{"status":503,"headers":{}}}', False),
    ('{"status":"ok","checks":{"database":"ok"}}', False),
])  # fmt: skip
def test_what_counts_as_an_example_that_does_not_work(output: str, fails: bool) -> None:
    assert fails == bool(PROBLEM.search(output) or UNREACHED.search(output))
