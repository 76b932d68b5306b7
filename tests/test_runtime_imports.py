"""The runtime path imports neither torch nor TensorRT (an edge box installs neither)."""

import subprocess
import sys


def test_runtime_modules_and_cli_do_not_import_torch():
    code = (
        "import sys\n"
        "import isl_rt.cli, isl_rt.pipeline, isl_rt.backends, isl_rt.backends.onnxruntime, isl_rt.bundle, "
        "isl_rt.kernels, isl_rt.io.dicom, isl_rt.io.images, isl_rt.io.phantom, isl_rt.evaluate, isl_rt.demo\n"
        "from typer.testing import CliRunner\n"
        "assert CliRunner().invoke(isl_rt.cli.app, ['info']).exit_code == 0\n"
        "heavy = sorted(m for m in ('torch', 'tensorrt', 'onnx') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"runtime imported {result.stdout.strip()}"
