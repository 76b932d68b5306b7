"""`isl-rt info` and the extension loader."""

import json

import pytest
from typer.testing import CliRunner

from isl_rt import extensions
from isl_rt.cli import app
from isl_rt.errors import ExtensionError

runner = CliRunner()


def test_native_extension_is_built_and_reports_openmp():
    info = extensions.native().build_info()
    assert "-O3" in info["compiler_flags"]
    assert info["openmp_max_threads"] >= 1


def test_info_json_reports_extensions_and_backends():
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["extensions"]["_native"]["built"] is True
    assert set(report["backends"]) == {"onnxruntime", "openvino", "torch", "tensorrt"}
    assert report["backends"]["onnxruntime"]["available"] is True


def test_info_text_says_native_is_built():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "isl_rt._native: built" in result.output


def test_missing_cuda_extension_raises_a_sentence(monkeypatch):
    monkeypatch.setattr(extensions, "_load", lambda name: (None, "ImportError: not built"))
    with pytest.raises(ExtensionError, match="ISL_RT_CUDA=ON"):
        extensions.cuda()
