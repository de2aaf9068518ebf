"""Sphinx configuration for the API reference (built in CI with warnings as errors:
tox -e docs)."""

import tiga_cffi

project = "tiga_cffi"
release = version = tiga_cffi.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "description"
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
