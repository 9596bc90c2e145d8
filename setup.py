"""Package list for setuptools (metadata is in pyproject.toml).

The design card fixes the top-level layout (core/, hdl/, golden/, sim/, tb/, synth/, convgen/);
each folder is installed as a sub-package of one ``convgen`` namespace so that generic names
such as ``sim`` never collide with other packages. Every folder with an ``__init__.py`` below
them is found here, so adding a package needs no edit of this file.
"""

import os

from setuptools import setup

TOP = {"convgen": "convgen", "convgen.core": "core", "convgen.hdl": "hdl", "convgen.golden": "golden",
       "convgen.sim": "sim", "convgen.synth": "synth", "convgen.tb": "tb"}

packages = []
for package, folder in TOP.items():
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        if "__init__.py" in files:
            rel = os.path.relpath(root, folder)
            packages.append(package if rel == "." else package + "." + rel.replace(os.sep, "."))

setup(packages=packages, package_dir=TOP)
