"""No import circles in metrix_tf: neither between its files nor between its
folders (a folder that imports one that imports it back), as the project's
shared tool counts them (shared/ sits beside the clone, as in CI)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(os.path.dirname(REPO), "shared", "tools", "import_cycles.py")


@pytest.mark.skipif(not os.path.exists(TOOL), reason=f"the import-cycle tool is absent ({TOOL})")
def test_metrix_tf_has_no_import_cycles():
    result = subprocess.run([sys.executable, TOOL, os.path.join(REPO, "metrix_tf")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 between files" in result.stdout and "0 between folders" in result.stdout, result.stdout
