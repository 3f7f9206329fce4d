"""Every code block of the README and of docs/ runs, so a documented command or snippet cannot rot.

The pages run in the order below, their ```bash and ```python blocks in page order, all in one working folder (so a
page may use what an earlier one made, e.g. the README's ``runs/sample``), with the environment's ``mmsent`` first on
PATH, a fresh HOME (so the feature cache starts empty) and the file the pages call ``post.jpg``: a picture from the
bundled sample. Three kinds of line cannot run as they stand inside a test, and are handled as said here:

- ``make ...`` (the README's set-up commands, which CI itself runs, and running the test suite inside itself would
  recurse) is checked with ``make -n``: the target exists and its recipe expands;
- ``mmsent serve ...`` is started in the background, waited for until ``/health`` answers, and kept until the pages
  are done (later blocks talk to it), then stopped.

Any other line that fails fails the test, naming the page and the block's first line.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mmsent.data.sample import sample_dataset_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/data.md", "docs/configuration.md", "docs/runs.md", "docs/models.md", "docs/encoders.md",
         "docs/finetuning.md", "docs/corpus.md", "docs/serving.md", "docs/sharing.md", "docs/reliability.md",
         "docs/development.md"]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
RUNNABLE = {"bash", "python"}


def blocks(page: str) -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of every fenced block of a page."""
    text = (REPO / page).read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in BLOCK.finditer(text)]


def test_every_page_is_run_and_every_code_block_is_runnable():
    assert sorted(PAGES) == sorted(["README.md", *(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))])
    for page in PAGES:
        for language, _, line in blocks(page):
            assert language in RUNNABLE or language in ("text", "yaml", "csv", "json"), f"{page}:{line}: {language!r}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The pages' working folder and environment; the servers they start are stopped at the end."""
    folder = tmp_path_factory.mktemp("docs")
    shutil.copy(sorted((sample_dataset_path() / "data").glob("*.jpg"))[0], folder / "post.jpg")
    env = {**os.environ, "HOME": str(folder / "home"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    servers: list[subprocess.Popen] = []
    yield folder, env, servers
    for server in servers:
        server.terminate()
        server.wait(30)


def _serve(line: str, cwd: Path, env: dict[str, str], servers: list[subprocess.Popen]) -> None:
    words = shlex.split(line.split("#")[0])
    port = words[words.index("--port") + 1] if "--port" in words else "8000"
    server = subprocess.Popen(words, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    servers.append(server)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`{line}` stopped: {server.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
            return
        except OSError:
            time.sleep(1)
    pytest.fail(f"`{line}` did not answer /health within 180 s")


def _run(language: str, code: str, cwd: Path, env: dict[str, str], servers: list[subprocess.Popen]) -> None:
    lines = [ln for ln in code.splitlines() if ln.strip()]
    if language == "bash" and all(ln.startswith("make ") for ln in lines):
        for ln in lines:
            target = ln.split("#")[0].split()
            subprocess.run(["make", "-n", "-C", str(REPO), *target[1:]], check=True, capture_output=True, text=True)
        return
    if language == "bash" and len(lines) == 1 and lines[0].startswith("mmsent serve"):
        _serve(lines[0], cwd, env, servers)
        return
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_code_blocks_run(page, workdir):
    folder, env, servers = workdir
    for language, code, line in blocks(page):
        if language not in RUNNABLE:
            continue
        try:
            _run(language, code, folder, env, servers)
        except (AssertionError, subprocess.SubprocessError) as exc:
            pytest.fail(f"{page}:{line} ({code.splitlines()[0]}): {exc}")
