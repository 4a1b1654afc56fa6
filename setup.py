"""For tools and habits that look for setup.py (`pip install .`, `python setup.py --version`).

Every setting (name, version, dependencies, packages, the `zs3` command) lives in
pyproject.toml; setuptools reads it from there, so the two can never disagree.
"""
from setuptools import setup

setup()
