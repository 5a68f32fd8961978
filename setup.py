"""One build step on top of pyproject.toml: the wheel carries the Hydra config tree.

``conf/`` stays at the top of the repository (the product's layout), and an installed package has no repository
around it: so the wheel gets a copy of it as ``harness/conf``, which :mod:`harness.config.compose` finds when the
package is not a checkout. An editable install reads the repository's ``conf/`` directly and copies nothing.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithConf(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "harness" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(HERE / "conf", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConf})
