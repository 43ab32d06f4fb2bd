# The metadata lives in pyproject.toml; this file keeps `python setup.py ...`
# and tools that look for setup.py working, as with the original project.
from setuptools import setup

setup()
