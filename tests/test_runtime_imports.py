"""The runtime path imports neither torch nor TensorRT (an edge box installs neither)."""

import subprocess
import sys


def test_runtime_modules_and_cli_do_not_import_torch():
    code = (
        "import sys\n"
        "import isl_rt.cli, isl_rt.pipeline, isl_rt.backends, isl_rt.backends.onnxruntime, isl_rt.bundle, "
        "isl_rt.kernels, isl_rt.io.dicom, isl_rt.io.images, isl_rt.io.phantom, isl_rt.evaluate, isl_rt.demo, "
        "isl_rt.dicom_results, isl_rt.node, isl_rt.ray_engine\n"
        "from typer.testing import CliRunner\n"
        "assert CliRunner().invoke(isl_rt.cli.app, ['info']).exit_code == 0\n"
        "heavy = sorted(m for m in ('torch', 'tensorrt', 'onnx') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"runtime imported {result.stdout.strip()}"


# The runtime path run with every distribution outside the closure of pyproject's runtime
# dependencies made unimportable: what `pip install .` alone gives a user (the README's first
# command). Optional imports (``try: import x``) still fall back as they would there.
_BLOCKED_RUN = r"""
import importlib.abc, importlib.metadata as md, re, sys, tomllib
from pathlib import Path

def requirement_name(text):
    return re.split(r"[\s;<>=!~\[(]", text.strip(), maxsplit=1)[0].lower().replace("_", "-")

deps = tomllib.loads(Path(sys.argv[1]).read_text())["project"]["dependencies"]
closure, todo = set(), [requirement_name(d) for d in deps]
while todo:
    name = todo.pop()
    if name in closure:
        continue
    closure.add(name)
    try:
        requires = md.requires(name) or []
    except md.PackageNotFoundError:  # a requirement whose marker excludes this platform
        continue
    for req in requires:
        if "extra ==" not in req:
            todo.append(requirement_name(req))
blocked = {module for module, dists in md.packages_distributions().items()
           if module not in sys.stdlib_module_names
           and not any(d.lower().replace("_", "-") in closure | {"isl-rt"} for d in dists)}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not a runtime dependency)", name=name)
        return None

sys.meta_path.insert(0, Block())
from typer.testing import CliRunner
import isl_rt.cli, isl_rt.demo, isl_rt.evaluate, isl_rt.pipeline, isl_rt.backends.onnxruntime, isl_rt.io.dicom, isl_rt.io.images, isl_rt.io.phantom
result = CliRunner().invoke(isl_rt.cli.app, ["phantom", sys.argv[2], "--scans", "1", "--seed", "3"])
assert result.exit_code == 0, (result.output, result.exception)
assert CliRunner().invoke(isl_rt.cli.app, ["inspect", sys.argv[2]]).exit_code == 0
# the commands that need the dicom-node extra say so in one sentence
for args in (["listen", "--store", sys.argv[2] + "-node"], ["scan", sys.argv[2], "--out", sys.argv[2] + ".csv", "--dicom-out", sys.argv[2] + "-dicom"]):
    result = CliRunner().invoke(isl_rt.cli.app, args)
    assert result.exit_code == 1 and "pip install 'isl-rt[dicom-node]'" in result.output and result.exception.__class__ is SystemExit, result.output
print("ran without", len(blocked), "blocked modules")
"""


def test_the_runtime_path_needs_only_the_runtime_dependencies(tmp_path):
    """`pip install . && isl-rt demo` (the README's first command) must not need an extra: the
    phantom once imported scipy, which only the test extra brought in."""
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    result = subprocess.run([sys.executable, "-c", _BLOCKED_RUN, str(pyproject), str(tmp_path / "cohort")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
