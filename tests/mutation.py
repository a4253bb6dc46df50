#!/usr/bin/env python
"""Mutation testing of neurovit's core modules with mutmut 3: the measure of the test suite.

    python tests/mutation.py [MODULE ...] [--max-mutants N] [--jobs J] [--list] [--keep] [--workdir DIR]

For each core module (all of CORE when none is named; a module may be named by path, dotted name or a
unique fragment such as ``transfer``) mutmut mutates that one file and runs, against each mutant, only the
fast tests (``-m "not slow"``) mapped to it in CORE, and only those of them that reach the mutated function
(mutmut's per-function test selection). The repository is never touched: each module gets a scratch copy
(neurovit/, tests/, experiments/, pyproject.toml with a generated ``[tool.mutmut]`` section) in a temporary
folder, where mutmut keeps ``mutants/`` and its cache; the folder is removed afterwards unless --keep or
--workdir is given.

Per module it prints the counts (total, killed, survived, no tests, timeout, suspicious, documented
equivalent, not run), the score ``(killed + timeout) / (total - skipped)`` in % (skipped = documented
equivalents and, with --max-mutants, the mutants not run; a mutant no test reaches counts against the
score; a timeout counts as detected, as in mutmut 2 and Stryker: the suite did not pass, a CI run would
hang; timeouts are still listed with their diff, since a loaded machine can make one) and every surviving
mutant with its diff line; then a table over the modules run. Exit status 1 when a
module scores below --threshold (80 %), 2 on a set-up or mutmut failure.

Known equivalent mutants (a mutation that cannot change behaviour) are listed in
tests/mutation_equivalent.txt as ``NAME | reason | mutated line``; a listed mutant that survives is
labelled equivalent and left out of the score. A listed mutant whose mutated line no longer matches, or
that is now killed, is reported as a stale entry (the numbering of a function's mutants shifts when the
function is edited).

--list only generates the mutants (no test runs, ~2 s a module) and prints how many each module has.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = REPO / "tests" / "mutation_equivalent.txt"
KILLS = "tests/test_mutation_kills.py"  # targeted tests written to kill survivors (fast, all modules)


def kills(stem: str) -> str:
    """A module's own file of kill tests (written once the shared KILLS file grew long)."""
    return f"tests/test_mutation_kills_{stem}.py"


@dataclass(frozen=True)
class Target:
    """A core module and the smallest set of fast tests that exercises it."""

    tests: tuple[str, ...]
    deselect: tuple[str, ...] = ()  # node ids left out of the mutation runs (slow repeats of a covered path)
    note: str = ""


CORE: dict[str, Target] = {
    "neurovit/models/transfer.py": Target(
        ("tests/test_transfer.py", KILLS),
        deselect=("tests/test_transfer.py::test_transfer_identity[small-f64]",
                  "tests/test_transfer.py::test_transfer_identity[small-f32]"),
        note="the vit_small identities (15 s) run the same code as the tiny ones"),
    "neurovit/metrics.py": Target(("tests/test_metrics.py", KILLS, kills("metrics"))),
    "neurovit/inference.py": Target(("tests/test_claims.py", "tests/test_predict.py", KILLS, kills("inference"))),
    "neurovit/data/blocks.py": Target(("tests/test_claims.py", "tests/test_lightning.py", KILLS, kills("blocks"))),
    "neurovit/data/swc.py": Target(("tests/test_swc.py", "tests/test_properties.py", KILLS, kills("swc"))),
    "neurovit/data/render.py": Target(("tests/test_render.py", KILLS, kills("render"))),
    "neurovit/trace.py": Target(("tests/test_trace.py", KILLS, kills("trace"))),
    "neurovit/lit/module.py": Target(("tests/test_claims.py", "tests/test_decoders.py",
                                      "tests/test_unet3d.py", KILLS, kills("module"))),
    "neurovit/data/volumes.py": Target(("tests/test_volumes.py", "tests/test_properties.py", KILLS)),
    "neurovit/data/normalise.py": Target(("tests/test_volumes.py", KILLS)),
    "neurovit/data/prepare.py": Target(("tests/test_prepare.py", KILLS, kills("prepare"), kills("prepare_checks"))),
}

# what the scratch copy holds besides the package (tests/ and pyproject.toml mutmut copies itself)
ALSO_COPY = ("experiments/", "README.md")
PYTEST_ARGS = ("-p", "no:napari", "-p", "no:cacheprovider", "-m", "not slow")
# torch/BLAS single-threaded: mutmut forks a worker per mutant (fork-safety) and --jobs sets the parallelism
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}

STATUS = {1: "killed", 3: "killed", 37: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          34: "skipped", None: "not run", 2: "not run", 36: "timeout", -24: "timeout", 24: "timeout",
          152: "timeout", 255: "timeout"}  # anything else (35, segfaults, signals): suspicious


def status_of(exit_code: int | None) -> str:
    return STATUS.get(exit_code, "suspicious")


# --------------------------------------------------------------------------------------------- equivalents
@dataclass(frozen=True)
class Equivalent:
    name: str
    reason: str
    mutated: str | None  # the mutated line as the diff shows it (stripped); None = not checked


def load_equivalents(path: Path) -> dict[str, Equivalent]:
    """``NAME | reason | mutated line`` per line; ``#`` starts a comment line."""
    out: dict[str, Equivalent] = {}
    if not path.is_file():
        return out
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ", 2)]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise SystemExit(f"{path}:{n}: expected 'NAME | reason | mutated line', got {raw!r}")
        out[parts[0]] = Equivalent(parts[0], parts[1], parts[2] if len(parts) == 3 and parts[2] else None)
    return out


# ------------------------------------------------------------------------------------------------ modules
def resolve_modules(names: list[str]) -> list[str]:
    if not names:
        return list(CORE)
    chosen: list[str] = []
    for name in names:
        key = name.replace(".", "/").removesuffix("/py")
        hits = [m for m in CORE if m == name or m.removesuffix(".py") == key or key in m.removesuffix(".py")]
        if len(hits) != 1:
            known = ", ".join(CORE)
            raise SystemExit(f"{name!r} names {'no' if not hits else 'more than one'} core module ({known})")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def existing_tests(target: Target) -> list[str]:
    """The target's test files that exist (the mapping may name KILLS before it is written)."""
    return [t for t in target.tests if (REPO / t.split("::")[0]).exists()]


def mutmut_section(module: str, target: Target) -> str:
    pytest_args = [*PYTEST_ARGS]
    for node in target.deselect:
        pytest_args += ["--deselect", node]
    items = {
        "source_paths": ["neurovit"],
        "only_mutate": [module],
        "also_copy": list(ALSO_COPY),
        "pytest_add_cli_args": pytest_args,
        "pytest_add_cli_args_test_selection": existing_tests(target),
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in items.items()]
    # workers fork from a server that only collected the tests, not from the process that ran them: zarr's
    # I/O thread (and torch's pools) left by the stats run deadlocked forked workers (prepare.py stalled)
    lines += ["use_git_change_detection = false", "use_setproctitle = false", 'process_isolation = "forkserver"', ""]
    return "\n".join(lines)


def without_mutmut_section(toml_text: str) -> str:
    """The pyproject text less any [tool.mutmut] table (ours replaces it)."""
    out, skipping = [], False
    for line in toml_text.splitlines():
        if re.match(r"\s*\[", line):
            skipping = line.strip() == "[tool.mutmut]"
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def make_workdir(work: Path, module: str, target: Target) -> None:
    """The scratch copy mutmut runs in: package, tests, configs and a pyproject with our [tool.mutmut]."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for d in ("neurovit", "tests", *[p.rstrip("/") for p in ALSO_COPY]):
        src = REPO / d
        if src.is_dir():
            shutil.copytree(src, work / d, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, work / d)
    pyproject = without_mutmut_section((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    (work / "pyproject.toml").write_text(pyproject + mutmut_section(module, target), encoding="utf-8")
    shared = REPO.parent / "shared"  # tests/conftest.py looks for ../shared beside the checkout
    if shared.is_dir() and not (work / "shared").exists():
        (work / "shared").symlink_to(shared)


@contextlib.contextmanager
def chdir(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def generate_mutant_names(work: Path, module: str) -> list[str]:
    """All mutant names of `module`, in source order (mutmut's generator, without running anything)."""
    from mutmut import configuration
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    with chdir(work):
        configuration.reset_config()
        try:
            mutated = mutate_file_contents(module, Path(module).read_text(encoding="utf-8"))
        finally:
            configuration.reset_config()
    return [get_mutant_name(Path(module), n) for n in mutated.mutant_names]


def sample(names: list[str], n: int | None) -> list[str]:
    """At most n names spread evenly over the module (deterministic)."""
    if n is None or n >= len(names):
        return names
    step = len(names) / n
    return [names[int(i * step)] for i in range(n)]


def mutmut_command() -> list[str]:
    exe = Path(sys.executable).parent / "mutmut"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mutmut")
    if not found:
        raise SystemExit("mutmut is not installed: .venv/bin/pip install 'mutmut>=3.8,<4'")
    return [found]


# ---------------------------------------------------------------------------------------------- the diffs
def function_starts(source: str) -> dict[tuple[str | None, str], tuple[int, int]]:
    """(class, function) → (first line incl. decorators, last line) of each top-level function and method."""
    spans: dict[tuple[str | None, str], tuple[int, int]] = {}
    tree = ast.parse(source)
    for node in tree.body:
        fns = [(None, node)] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else []
        if isinstance(node, ast.ClassDef):
            fns = [(node.name, f) for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for cls, f in fns:
            start = min([f.lineno] + [d.lineno for d in f.decorator_list])
            spans[(cls, f.name)] = (start, f.end_lineno or f.lineno)
    return spans


@dataclass
class Change:
    line: int | None
    old: str
    new: str


def diff_of(name: str, module: str, source_lines: list[str], spans) -> Change:
    """The first changed line of a mutant (mutmut's own diff), located in the original source."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    diff = get_diff_for_mutant(name, path=module).splitlines()
    old = [ln[1:] for ln in diff if ln.startswith("-") and not ln.startswith("---")]
    new = [ln[1:] for ln in diff if ln.startswith("+") and not ln.startswith("+++")]
    old_s = " ⏎ ".join(s.strip() for s in old)
    new_s = " ⏎ ".join(s.strip() for s in new)
    func, cls = orig_function_and_class_names_from_key(name)
    lineno = None
    if (cls, func) in spans and old:
        lo, hi = spans[(cls, func)]
        for i in range(lo - 1, min(hi, len(source_lines))):
            if source_lines[i].strip() == old[0].strip():
                lineno = i + 1
                break
    return Change(lineno, old_s, new_s)


# ------------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    module: str
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[tuple[str, str, Change]] = field(default_factory=list)  # (name, status, change)
    equivalent: list[tuple[str, Change, str]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def skipped(self) -> int:
        return self.counts.get("equivalent", 0) + self.counts.get("not run", 0) + self.counts.get("skipped", 0)

    @property
    def score(self) -> float | None:
        tested = self.total - self.skipped
        detected = self.counts.get("killed", 0) + self.counts.get("timeout", 0)
        return None if tested <= 0 else 100.0 * detected / tested


def collect(work: Path, module: str, chosen: set[str], equivalents: dict[str, Equivalent]) -> Result:
    meta = json.loads((work / "mutants" / (module + ".meta")).read_text(encoding="utf-8"))
    source_lines = (work / module).read_text(encoding="utf-8").splitlines()
    spans = function_starts("\n".join(source_lines))
    res = Result(module)
    counts: dict[str, int] = {}
    with chdir(work):
        for name, code in sorted(meta["exit_code_by_key"].items(), key=lambda kv: natural_key(kv[0])):
            status = status_of(code) if name in chosen else "not run"
            eq = equivalents.get(name)
            if status in ("survived", "no tests", "timeout", "suspicious") or eq:
                change = diff_of(name, module, source_lines, spans)
                if eq and eq.mutated is not None and eq.mutated != change.new:
                    res.stale.append(f"{name}: listed as equivalent for {eq.mutated!r}, but it now mutates "
                                     f"to {change.new!r} (renumbered?) — not subtracted")
                    eq = None
                if eq and status == "killed":
                    res.stale.append(f"{name}: listed as equivalent, but a test kills it — drop the entry")
                    eq = None
                if eq and status == "survived":
                    status = "equivalent"
                    res.equivalent.append((name, change, eq.reason))
                elif status in ("survived", "no tests", "timeout", "suspicious"):
                    res.survivors.append((name, status, change))
            counts[status] = counts.get(status, 0) + 1
    dotted = module.removesuffix(".py").replace("/", ".")
    for name in sorted(equivalents):
        if name.rsplit(".", 1)[0] == dotted and name not in meta["exit_code_by_key"]:
            res.stale.append(f"{name}: listed as equivalent, but {module} has no such mutant — drop the entry")
    res.counts = counts
    return res


def natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def run_module(module: str, args, equivalents: dict[str, Equivalent], base: Path) -> Result:
    target = CORE[module]
    work = base / module.removesuffix(".py").replace("/", ".")
    print(f"\n=== {module}   tests: {' '.join(existing_tests(target))}" + (f"   (deselected: {len(target.deselect)})"
                                                                if target.deselect else ""), flush=True)
    t0 = time.monotonic()
    make_workdir(work, module, target)
    names = generate_mutant_names(work, module)
    chosen = sample(names, args.max_mutants)
    print(f"    {len(names)} mutants" + (f", running {len(chosen)} (--max-mutants)" if len(chosen) < len(names)
                                         else "") + f"; work dir {work}", flush=True)
    cmd = [*mutmut_command(), "run", "--max-children", str(args.jobs)]
    if len(chosen) < len(names):
        cmd += chosen
    env = {**os.environ, **THREAD_ENV, "WANDB_MODE": "disabled", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    log = work / "mutmut-run.log"
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if args.verbose:
                sys.stdout.write(line)
                sys.stdout.flush()
        rc = proc.wait()
    seconds = time.monotonic() - t0
    meta = work / "mutants" / (module + ".meta")
    if rc != 0 or not meta.is_file():
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-40:])
        res = Result(module, seconds, error=f"mutmut exited {rc}; the last lines of {log}:\n{tail}")
        print(res.error)
        return res
    res = collect(work, module, set(chosen), equivalents)
    res.seconds = seconds
    report_module(res)
    return res


def fmt_score(s: float | None) -> str:
    return "  n/a" if s is None else f"{s:5.1f}"


def report_module(res: Result) -> None:
    c = res.counts
    print(f"    total {res.total}  killed {c.get('killed', 0)}  survived {c.get('survived', 0)}  "
          f"no tests {c.get('no tests', 0)}  timeout {c.get('timeout', 0)}  suspicious {c.get('suspicious', 0)}  "
          f"equivalent {c.get('equivalent', 0)}  not run {c.get('not run', 0)}")
    print(f"    score {fmt_score(res.score)} % = (killed + timeout) / (total - skipped)   [{res.seconds:.0f} s]")
    short = Path(res.module).name
    if res.survivors:
        print(f"    surviving mutants ({len(res.survivors)}):")
        for name, status, ch in res.survivors:
            where = f"{short}:{ch.line}" if ch.line else short
            print(f"      {name}  [{status}]  {where}")
            print(f"          - {ch.old}")
            print(f"          + {ch.new}")
        print(f"    (kill each with a test, or document an equivalent one in {EQUIVALENTS.relative_to(REPO)} as "
              "'NAME | reason | the + line')")
    if res.equivalent:
        print(f"    documented equivalent ({len(res.equivalent)}):")
        for name, ch, reason in res.equivalent:
            print(f"      {name}  {short}:{ch.line}  + {ch.new}   — {reason}")
    for s in res.stale:
        print(f"    STALE equivalent entry: {s}")


def final_table(results: list[Result], threshold: float) -> bool:
    print("\n" + "=" * 110)
    head = (f"{'module':32s} {'total':>6s} {'killed':>6s} {'surv':>5s} {'notest':>6s} {'tmout':>5s} "
            f"{'susp':>5s} {'equiv':>5s} {'notrun':>6s} {'score%':>7s} {'time':>7s}")
    print(head)
    ok = True
    for r in results:
        if r.error:
            print(f"{r.module:32s} ERROR (see above)")
            ok = False
            continue
        c = r.counts
        below = r.score is not None and r.score < threshold
        ok &= not below
        print(f"{r.module:32s} {r.total:6d} {c.get('killed', 0):6d} {c.get('survived', 0):5d} "
              f"{c.get('no tests', 0):6d} {c.get('timeout', 0):5d} {c.get('suspicious', 0):5d} "
              f"{c.get('equivalent', 0):5d} {c.get('not run', 0):6d} {fmt_score(r.score):>7s} "
              f"{r.seconds:6.0f}s" + ("  < threshold" if below else ""))
    print(f"threshold {threshold:.0f} %: {'met' if ok else 'NOT met'}")
    return ok


def list_modules(modules: list[str], base: Path) -> None:
    print(f"{'module':32s} {'mutants':>7s}  tests (fast)")
    total = 0
    for module in modules:
        work = base / "list"
        if not work.exists():
            work.mkdir(parents=True)
            shutil.copytree(REPO / "neurovit", work / "neurovit",
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            (work / "pyproject.toml").write_text('[tool.mutmut]\nsource_paths = ["neurovit"]\n')
        n = len(generate_mutant_names(work, module))
        total += n
        print(f"{module:32s} {n:7d}  {' '.join(CORE[module].tests)}", flush=True)
    print(f"{'all':32s} {total:7d}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="*", help="core modules (path, dotted name or unique fragment); default all")
    p.add_argument("--max-mutants", type=int, default=None,
                   help="run at most N mutants a module, spread evenly (the others count as not run)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutmut workers (default: cores)")
    p.add_argument("--threshold", type=float, default=80.0, help="minimum score in %% (default 80)")
    p.add_argument("--list", action="store_true", help="only count each module's mutants (runs no test)")
    p.add_argument("--workdir", type=Path, help="keep the scratch copies (and mutmut's mutants/) here")
    p.add_argument("--keep", action="store_true", help="keep the temporary scratch copies")
    p.add_argument("--equivalents", type=Path, default=EQUIVALENTS, help="known equivalent mutants file")
    p.add_argument("-v", "--verbose", action="store_true", help="show mutmut's own output")
    args = p.parse_args(argv)
    if args.max_mutants is not None and args.max_mutants < 1:
        p.error("--max-mutants must be >= 1")

    modules = resolve_modules(args.modules)
    mutmut_command()
    base = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="neurovit-mutation-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        if args.list:
            list_modules(modules, base)
            return 0
        equivalents = load_equivalents(args.equivalents)
        results = []
        for module in modules:
            results.append(run_module(module, args, equivalents, base))
        ok = final_table(results, args.threshold)
        if any(r.error for r in results):
            return 2
        return 0 if ok else 1
    finally:
        if args.workdir or args.keep:
            print(f"(scratch copies kept in {base})")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
