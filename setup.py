"""Build hook: ship the top-level templates/ and native/ sources inside the wheel as hsmcert/_data/.

Everything else about the package is in pyproject.toml. At run time hsmcert looks for these files next to
the source tree first (a checkout) and in hsmcert/_data/ second (an installed wheel).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"templates": ("*.pyc",), "native": ("build", "*.o", "*.so", "*.a")}


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        data = Path(self.build_lib) / "hsmcert" / "_data"
        for name, ignored in SHIPPED.items():
            source = ROOT / name
            if source.is_dir():
                target = data / name
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target, ignore=shutil.ignore_patterns(*ignored))


setup(cmdclass={"build_py": BuildPyWithData})
