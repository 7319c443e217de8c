"""The repository speaks of itself: every document and source file a user clones resolves
inside it (no references to the team's material outside the repository), and the README's
test command is what CI runs."""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tracked_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:  # not a git checkout (an sdist): walk the tree
        return [os.path.relpath(os.path.join(r, f), ROOT) for r, _, fs in os.walk(ROOT) for f in fs]
    return out.stdout.split()


def test_no_file_points_outside_the_repository():
    pattern = re.compile(r"shared/(spec|paper|style)")
    bad = []
    for f in _tracked_files():
        if not f.endswith((".py", ".md", ".cpp", ".cu", ".h", ".toml", ".txt", ".yml", ".cfg")) or f.startswith("results/"):
            continue
        with open(os.path.join(ROOT, f), encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh, 1):
                if pattern.search(line):
                    bad.append(f"{f}:{i}")
    assert not bad, f"references to files outside the repository: {bad}"


def test_docs_linked_from_the_readme_exist():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links, "the README links the design notes in docs/"
    for link in links:
        assert os.path.isfile(os.path.join(ROOT, link)), link


def test_every_subprocess_a_test_starts_has_a_timeout():
    """A hung child (a deadlocked gloo rank, a stuck torchrun) must fail its test, not the whole
    CI job at its hard limit: every subprocess.run/check_* call in tests/ and benchmarks/ passes
    ``timeout=``, and every wait()/communicate() on a Popen does too."""
    import ast
    import glob

    bad = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "*.py")) + glob.glob(os.path.join(ROOT, "benchmarks", "*.py"))):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            f_ = node.func
            runs = isinstance(f_.value, ast.Name) and f_.value.id == "subprocess" and f_.attr in ("run", "check_output", "check_call", "call")
            waits = f_.attr in ("wait", "communicate") and not node.args and not (isinstance(f_.value, ast.Name) and f_.value.id in ("os", "time", "threading"))
            if (runs or waits) and not any(k.arg == "timeout" for k in node.keywords):
                bad.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert not bad, f"subprocess calls without a timeout: {bad}"
