"""The suite's own promise about temporary disk: the tests that write runs take turns."""

import pytest

from tests.conftest import WRITES_RUNS


@WRITES_RUNS
def test_the_tests_that_write_runs_share_one_worker(request):
    """pytest-xdist groups a test by renaming it ``name@group``; a pytest that ignores the new
    name (9.2 with pytest-xdist 3.8) loses the groups without a word, and two runs' checkpoints
    share the disk again."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run with --dist loadgroup (`make test` is)")
    assert request.node.nodeid.endswith("@writes-runs"), (
        f"--dist loadgroup is ignored by pytest {pytest.__version__}: reinstall with `make install` (pytest<9.2)"
    )
