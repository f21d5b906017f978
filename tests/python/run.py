"""ctest's `python` test: pytest over tests/python, or exit 77 (ctest: skipped) with the reason when
numpy or pytest is not installed (scripts/install-deps.sh installs both)."""
import os
import sys

missing = []
for mod in ("numpy", "pytest"):
    try:
        __import__(mod)
    except ImportError:
        missing.append(mod)
if missing:
    print("SKIPPED: the Python tests need %s for %s (bash scripts/install-deps.sh installs python3-numpy and "
          "python3-pytest)" % (" and ".join(missing), sys.executable))
    sys.exit(77)

import pytest  # noqa: E402

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", os.path.dirname(os.path.abspath(__file__))]))
