"""Benchmark: mutation testing with mutmut over the modules whose defects give silently wrong answers.

For each target (a group of modules and the tests that guard them) this copies the project into a scratch
folder, adds a ``[tool.mutmut]`` section naming what to mutate and which tests to run, and runs
``mutmut run``. mutmut runs, for each mutant, only the selected tests that reach the mutated function.
Survivors judged equivalent (no test could tell them apart from the original) are listed with the reason in
``tools/mutation_equivalent.toml``; the score is killed / (mutants - equivalent survivors).

The tests' shared tiny run (``tests/conftest.py``'s ``tiny_run``) is built once and copied into each mutant's
test session; building it is ~30 s, which would otherwise be paid per mutant.

Usage::

    pip install mutmut==3.8.1
    python tools/mutation.py [--targets serve,cache,data,metrics,fusion] [--max-children 2] [--record]

Writes ``<workdir>/<target>/survivors.md`` (every surviving mutant's diff) and, with ``--record``, a section
in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from results_file import prepend_section

EQUIVALENT_FILE = REPO / "tools" / "mutation_equivalent.toml"
PREBUILT_TINY_RUN = "MMSENT_TEST_PREBUILT_TINY_RUN"  # read by tests/conftest.py


@dataclass(frozen=True)
class Target:
    """Modules to mutate and the tests that guard them."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]


# The browser test (a headless Chromium, ~45 s) and the schema fuzzer (~25 s) are left out of the serve target's
# selection: with them every surviving serve mutant would cost over a minute. Their findings are covered in CI.
TARGETS = {
    "serve": Target(("src/mmsent/serve/*.py",),
                    ("tests/serve/test_api.py", "tests/serve/test_batching.py")),
    "cache": Target(("src/mmsent/features/cache.py",), ("tests/features/test_feature_cache.py",)),
    "data": Target(("src/mmsent/data/*.py",), ("tests/data",)),
    "metrics": Target(("src/mmsent/training/metrics.py",), ("tests/training/test_metrics.py",)),
    "fusion": Target(("src/mmsent/fusion/*.py",), ("tests/fusion",)),
    # Issue "Nothing a user owns is ever overwritten": the modules it touched.
    "config": Target(("src/mmsent/config.py",), ("tests/test_config.py",)),
    "manifest": Target(("src/mmsent/data/manifest.py",), ("tests/data/test_manifest.py", "tests/test_stream.py")),
    "stream": Target(("src/mmsent/stream.py",),
                     ("tests/test_stream.py",
                      "tests/test_cli.py::test_predict_input_never_empties_a_text_file_given_as_out",
                      "tests/test_cli.py::test_predict_out_in_the_dataset_folder_is_refused_before_the_models_load")),
    "run_folder": Target(("src/mmsent/run_folder.py",),
                         ("tests/test_run_folder.py", "tests/test_run_checksums.py")),
    "export": Target(("src/mmsent/export.py",), ("tests/test_export.py",)),
}


def module_prefixes(target: Target) -> list[str]:
    """How mutmut's mutant names of the target's modules begin: ``src/mmsent/data/*.py`` -> ``mmsent.data.``."""
    return [m.removeprefix("src/").removesuffix("*.py").removesuffix(".py").replace("/", ".").rstrip(".") + "."
            for m in target.modules]


def mutmut_section(target: Target) -> str:
    """The ``[tool.mutmut]`` section for one target."""
    return "\n".join([
        "", "[tool.mutmut]", 'source_paths = ["src"]',
        f"only_mutate = {json.dumps(list(target.modules))}",
        f"pytest_add_cli_args_test_selection = {json.dumps(list(target.tests))}",
        'also_copy = ["configs", "scripts"]',  # read by some tests
        # torch's thread pools are not fork-safe: fork workers from a process that has not run the tests
        'process_isolation = "forkserver"', "",
    ])


def prepare(workdir: Path, target: Target) -> None:
    """A scratch copy of the project with the target's mutmut configuration."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for name in ("src", "tests", "configs", "scripts"):
        shutil.copytree(REPO / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    (workdir / "pyproject.toml").write_text(pyproject + mutmut_section(target), encoding="utf-8")


def same_source(workdir: Path, target: Target) -> bool:
    """Whether the target's modules are byte for byte the ones the run in ``workdir`` mutated (so its mutants, and
    their names, are those of the current source)."""
    def read(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for pattern in target.modules for p in root.glob(pattern)}

    return read(REPO) == read(workdir)


def refresh_source(workdir: Path) -> None:
    """Puts the current ``src`` (and the configs and scripts some tests read) into an earlier run's folder, with fresh
    modification times: mutmut then mutates a changed module again and, keying each function's verdicts by a hash
    of its source, re-tests the mutants of the functions that changed (and of their callers); the verdicts of
    unchanged functions stand."""
    for name in ("src", "configs", "scripts"):
        # mutants/src holds mutmut's verdicts (.meta) and is rewritten from src; the copied folders are not
        for folder in (workdir / name, *([workdir / "mutants" / name] if name != "src" else [])):
            shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(REPO / name, workdir / name, copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))


def refresh_tests(workdir: Path) -> None:
    """Puts the current tests into an earlier run's folders and drops mutmut's record of which tests reach which
    function, so that it is collected again with the new tests."""
    for folder in (workdir / "tests", workdir / "mutants" / "tests"):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(REPO / "tests", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)


def build_tiny_run(base: Path) -> Path:
    """The tests' tiny run, built once by the unmutated code."""
    sys.path.insert(0, str(REPO / "tests"))
    from mmsent_runkit import build_tiny_run as build

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    return build(base)


def mutmut(workdir: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Runs one mutmut command in ``workdir``; its standard output (or the log file's path)."""
    cmd = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(cmd, cwd=workdir, env=env, check=True, capture_output=True, text=True).stdout
    with log.open("w") as out:
        subprocess.run(cmd, cwd=workdir, env=env, check=True, stdout=out, stderr=subprocess.STDOUT)
    return str(log)


def equivalent_mutants() -> dict[str, str]:
    """Mutant name -> why it is equivalent, from tools/mutation_equivalent.toml."""
    if not EQUIVALENT_FILE.exists():
        return {}
    return {name: entry["why"] for name, entry in tomllib.loads(EQUIVALENT_FILE.read_text("utf-8")).items()}


def survivors_of(workdir: Path, env: dict[str, str], verdicts: tuple[str, ...] = ("survived",)) -> list[str]:
    """Names of the mutants of the run in ``workdir`` with one of ``verdicts`` (mutmut's words: ``survived``,
    ``no tests``)."""
    results = mutmut(workdir, "results", env=env)
    return [line.split(":")[0].strip() for line in results.splitlines()
            if line.strip().rpartition(": ")[2] in verdicts]


def run_target(name: str, target: Target, workdir: Path, tiny_run: Path, max_children: int,
               rerun_survivors: bool = False, resume: bool = False) -> dict:
    """Mutation-tests one target; its counts and surviving mutants.

    With ``rerun_survivors`` (a finished earlier run in ``workdir``, made from the same source), only that run's
    survivors not listed as equivalent are tested again, with the current tests; its kills stand.
    With ``resume`` (an earlier run, interrupted or of an older source), the mutants it has not tested yet and
    those of functions changed since are run with the current source and tests; its other verdicts stand.
    """
    env = {**os.environ, PREBUILT_TINY_RUN: str(tiny_run), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    if (rerun_survivors or resume) and not (workdir / "mutants").is_dir():
        raise SystemExit(f"{workdir}: no earlier run to go on from; run without --rerun-survivors or --resume")
    if rerun_survivors and not same_source(workdir, target):
        raise SystemExit(f"{workdir}: the run mutated an older source; --resume it first")
    if resume:
        refresh_source(workdir)
        refresh_tests(workdir)
        mutmut(workdir, "run", "--max-children", str(max_children), env=env, log=workdir / "mutmut-resume.log")
    elif rerun_survivors:
        known = equivalent_mutants()  # judged unkillable, with the reason: not worth another pass
        # "no tests" too: tests added since may reach a function no test reached then
        earlier = [m for m in survivors_of(workdir, env, ("survived", "no tests")) if m not in known]
        refresh_tests(workdir)
        if earlier:
            mutmut(workdir, "run", "--max-children", str(max_children), *earlier, env=env,
                   log=workdir / "mutmut-rerun.log")
    else:
        prepare(workdir, target)
        mutmut(workdir, "run", "--max-children", str(max_children), env=env, log=workdir / "mutmut-run.log")
    seconds = time.perf_counter() - t0
    earlier = earlier_runs(workdir) if rerun_survivors or resume else []  # a full run starts from a fresh copy
    kind = "survivors" if rerun_survivors else "resumed" if resume else "full"
    return collect(name, workdir, env, runs=[*earlier, {"kind": kind, "seconds": seconds}])


def earlier_runs(workdir: Path) -> list[dict]:
    """The runs recorded in ``workdir/result.json``; for a full run that ended without writing it, its duration
    from mutmut's log (last write) and the prepared project (first write)."""
    recorded = workdir / "result.json"
    if recorded.exists():
        return json.loads(recorded.read_text())["runs"]
    log = workdir / "mutmut-run.log"
    if log.exists():
        return [{"kind": "full", "seconds": log.stat().st_mtime - (workdir / "pyproject.toml").stat().st_mtime}]
    return []


def collect(name: str, workdir: Path, env: dict[str, str], runs: list[dict]) -> dict:
    """The target's counts and survivors as mutmut has them now (with each survivor's diff in survivors.md)."""
    mutmut(workdir, "export-cicd-stats", env=env)
    stats = json.loads((workdir / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = survivors_of(workdir, env)
    diffs = {mutant: mutmut(workdir, "show", mutant, env=env) for mutant in survivors}
    known = equivalent_mutants()
    lines = [f"# Surviving mutants of target {name}", ""]
    for mutant, diff in diffs.items():
        lines += [f"## {mutant}" + (" (equivalent)" if mutant in known else ""), "", "```diff", diff.strip(), "```", ""]
    (workdir / "survivors.md").write_text("\n".join(lines), encoding="utf-8")
    equivalent = sorted(m for m in survivors if m in known)
    result = {"name": name, "stats": stats, "runs": runs, "survivors": survivors, "equivalent": equivalent}
    (workdir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def run_times(runs: list[dict]) -> list[str]:
    """``full 12 min``, ``survivors 3 min``: what each run of a target took."""
    return [f"{run['kind']} {run['seconds'] / 60:.0f} min" for run in runs]


def summary(results: list[dict], max_children: int) -> str:
    """The Markdown section for RESULTS.md."""
    known = equivalent_mutants()
    lines = [
        (f"## Mutation testing ({date.today()}, {platform.node() or 'this machine'}, "
         f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores)"), "",
        (f"Command: `python tools/mutation.py` (mutmut 3.8.1, {max_children} workers), then `--rerun-survivors` "
         "and `--summarize --record`. Score = killed / "
         "(mutants - survivors judged equivalent in `tools/mutation_equivalent.toml`); a mutant no test reaches "
         "counts as not killed, a timeout as killed (the mutant made a test hang), and so does a mutant not run yet. With --rerun-survivors, an earlier "
         "full run's survivors were tested again with tests added since; its kills stand. A \"resumed\" run went on "
         "from an earlier one with the current source and tests: mutmut tested the mutants not run yet and those of "
         "every function whose source changed (and of its callers); the other verdicts stand."), "",
        "| target | modules | mutants | killed | timeout | no test | survived | not run yet | equivalent | score | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    totals = {"total": 0, "killed": 0, "equivalent": 0}
    for r in results:
        s = r["stats"]
        killed = s["killed"] + s["timeout"]
        relevant = s["total"] - len(r["equivalent"]) - s["skipped"]
        totals["total"] += relevant
        totals["killed"] += killed
        totals["equivalent"] += len(r["equivalent"])
        modules = ", ".join(f"`{m.removeprefix('src/mmsent/')}`" for m in TARGETS[r["name"]].modules)
        not_run = s["total"] - sum(s[k] for k in ("killed", "timeout", "no_tests", "survived", "skipped",
                                                   "suspicious", "segfault", "check_was_interrupted_by_user"))
        lines.append(f"| {r['name']} | {modules} | {s['total']} | {s['killed']} | {s['timeout']} | {s['no_tests']} "
                     f"| {s['survived']} | {not_run} | {len(r['equivalent'])} | {killed / relevant:.1%} "
                     f"| {' + '.join(run_times(r['runs']))} |")
    lines += ["", (f"All targets: {totals['killed']} of {totals['total']} non-equivalent mutants killed "
                   f"({totals['killed'] / totals['total']:.1%}); {totals['equivalent']} survivors judged equivalent."),
              ""]
    still = [m for r in results for m in r["survivors"] if m not in known]
    if still:
        lines += [f"Surviving non-equivalent mutants ({len(still)}): " + ", ".join(f"`{m}`" for m in still), ""]
    prefixes = tuple(prefix for r in results for prefix in module_prefixes(TARGETS[r["name"]]))
    survivors = {m for r in results for m in r["survivors"]}
    stale = [m for m in known if m.startswith(prefixes) and m not in survivors]
    if stale:
        lines += ["Listed as equivalent but not surviving this run (killed, or renumbered by an edit): "
                  + ", ".join(f"`{m}`" for m in stale), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mmsent-mutation"))
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--record", action="store_true", help="prepend the summary to benchmarks/RESULTS.md")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="test only the survivors of each target's earlier run in --workdir, with the current tests")
    parser.add_argument("--resume", action="store_true",
                        help="go on with each target's earlier run in --workdir, with the current source and tests: test "
                             "the mutants it has not and those of functions changed since")
    parser.add_argument("--summarize", action="store_true",
                        help="run nothing: summarize each target's runs so far in --workdir")
    args = parser.parse_args()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise SystemExit(f"--targets: unknown {unknown}; choose from {', '.join(TARGETS)}")
    results = []
    if args.summarize:
        results = [collect(name, args.workdir / name, dict(os.environ), earlier_runs(args.workdir / name))
                   for name in names]
    else:
        tiny_run = build_tiny_run(args.workdir / "tiny-run")
        for name in names:
            result = run_target(name, TARGETS[name], args.workdir / name, tiny_run, args.max_children,
                                args.rerun_survivors, args.resume)
            print(f"{name}: {result['stats']}; survivors in {args.workdir / name}/survivors.md", flush=True)
            results.append(result)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    text = summary(results, args.max_children)
    print(text)
    if args.record:
        prepend_section(REPO / "benchmarks" / "RESULTS.md", text)


if __name__ == "__main__":
    main()
