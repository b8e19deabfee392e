"""The CI rules of tests/conftest.py, proven on inner pytest sessions run with the project's own conftest and
pytest settings: under CI (any of 1/true/yes, any case) a missing service fails its test and any skipped test
fails the run, listed by name; a test marked allow_skip with a reason may skip; outside CI skips stay skips."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

INNER = """
import pytest
from conftest import require

def test_runs():
    assert True

def test_needs_a_missing_service():
    require("vllm", available=False, detail="switched off for this check")
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytester dir holding copies of the project's conftest.py and pyproject.toml (markers, --strict-markers);
    returns a runner taking the value of $CI (None: unset)."""
    shutil.copy(TESTS / "conftest.py", pytester.path / "conftest.py")
    shutil.copy(ROOT / "pyproject.toml", pytester.path / "pyproject.toml")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]))

    def run(ci: str | None, *args: str):
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)

    return run


@pytest.mark.parametrize("ci", ["true", "1", "YES", "True"])
def test_under_ci_a_missing_service_fails_its_test(inner, pytester, ci):
    pytester.makepyfile(test_inner=INNER)
    result = inner(ci)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*needs vllm*switched off for this check*a missing service is a failure in CI*"])


@pytest.mark.parametrize("ci", [None, "", "false", "0", "no"])
def test_outside_ci_a_missing_service_skips(inner, pytester, ci):
    pytester.makepyfile(test_inner=INNER)
    result = inner(ci)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK


def test_under_ci_any_skipped_test_fails_the_run_and_is_listed(inner, pytester):
    pytester.makepyfile(
        test_skips="""
        import pytest

        def test_runs():
            pass

        def test_skips_itself():
            pytest.skip("no reason that CI accepts")

        @pytest.mark.skipif(True, reason="a skipif marker")
        def test_skipif():
            pass
        """,
        test_module_skip="""
        import pytest
        pytest.importorskip("a_module_that_is_not_installed")
        """,
    )
    result = inner("true")
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*skipped tests fail the run under CI*",
        "SKIPPED test_skips.py::test_skips_itself: no reason that CI accepts",
        "SKIPPED test_skips.py::test_skipif: a skipif marker",
    ])
    result.stdout.fnmatch_lines(["SKIPPED test_module_skip.py: *a_module_that_is_not_installed*"])


def test_under_ci_a_skip_with_a_reasoned_allow_skip_marker_passes(inner, pytester):
    pytester.makepyfile(
        test_allowed="""
        import pytest

        @pytest.mark.allow_skip(reason="checks a GPU-only path; CI has no GPU")
        def test_gpu_only():
            pytest.skip("no GPU")

        def test_runs():
            pass
        """
    )
    result = inner("true")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK
    assert "skipped tests fail the run under CI" not in result.stdout.str()


def test_outside_ci_skips_do_not_fail_the_run(inner, pytester):
    pytester.makepyfile(test_skips="import pytest\n\ndef test_skips():\n    pytest.skip('local')\n")
    result = inner(None)
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.OK


def test_allow_skip_without_a_reason_is_a_usage_error(inner, pytester):
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.allow_skip
        def test_unexplained():
            pytest.skip("why?")
        """
    )
    result = inner(None)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_bad.py::test_unexplained: @pytest.mark.allow_skip needs a reason*"])


def test_require_names_the_valid_services():
    from conftest import require

    with pytest.raises(ValueError, match="unknown service 'javaa'; valid services: chromium, java, slurm, tmux, vllm"):
        require("javaa")
