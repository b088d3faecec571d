"""Run nytorch 1.1.0's own test suite against nytorch_ext.

The suite ships in nytorch's sdist. This script downloads it at run time into a
temporary folder (nothing of nytorch's is kept in this repository), aliases
``nytorch``, ``nytorch.module``, ``nytorch.mtype`` and ``nytorch.particle_module``
to nytorch_ext's modules, runs the tests unmodified, and fails unless at least
``--min-passed`` of them pass.

    python tools/nytorch_suite.py [--min-passed 175] [--sdist PATH]

The 7 tests of ``test_convert_attar_type.py`` read nytorch's private
``_version_kernel``/``VersionKernel`` and are expected to fail; the behaviour they
check (an attribute cannot change kind) is tested in tests/test_module.py.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tarfile
import tempfile

VERSION = "1.1.0"

ALIASES = '''\
import sys
import nytorch_ext, nytorch_ext.module, nytorch_ext.mtype, nytorch_ext.particle_module
sys.modules["nytorch"] = nytorch_ext
sys.modules["nytorch.module"] = nytorch_ext.module
sys.modules["nytorch.mtype"] = nytorch_ext.mtype
sys.modules["nytorch.particle_module"] = nytorch_ext.particle_module
'''


def download_sdist(folder: str) -> str:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", f"nytorch=={VERSION}", "--no-deps",
                    "--no-binary", ":all:", "-d", folder], check=True)
    found = glob.glob(os.path.join(folder, f"nytorch-{VERSION}.tar.gz"))
    if not found:
        raise SystemExit(f"pip download gave no nytorch-{VERSION}.tar.gz in {folder}")
    return found[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-passed", type=int, default=175)
    parser.add_argument("--sdist", help="a local nytorch-1.1.0.tar.gz instead of downloading it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        sdist = args.sdist or download_sdist(work)
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"nytorch-{VERSION}/tests/")]
            tar.extractall(work, members=members, filter="data")
        run_dir = os.path.join(work, "suite")
        os.makedirs(run_dir)
        os.rename(os.path.join(work, f"nytorch-{VERSION}", "tests"), os.path.join(run_dir, "tests"))
        with open(os.path.join(run_dir, "conftest.py"), "w") as f:
            f.write(ALIASES)
        # Only the aliased nytorch_ext may answer `import nytorch` (an installed
        # nytorch is shadowed by the conftest, which runs before the tests import).
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                              cwd=run_dir, capture_output=True, text=True, timeout=600)
        print(proc.stdout[-6000:])
        print(proc.stderr[-2000:], file=sys.stderr)
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", proc.stdout)) else 0
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", proc.stdout)) else 0
    errors = int(m.group(1)) if (m := re.search(r"(\d+) errors?", proc.stdout)) else 0
    print(f"nytorch {VERSION}'s own suite against nytorch_ext: {passed} passed, {failed} failed, "
          f"{errors} errors (need at least {args.min_passed} passed)")
    return 0 if passed >= args.min_passed else 1


if __name__ == "__main__":
    sys.exit(main())
