"""The checks: `base.py` declares a check (`@check`), `params.py` its typed parameters, and
`catalogue.py` lists every check module's `CHECKS` in order (`catalogue()`). Importing this
package imports nothing else: a check module imports `probe.checks.base` without loading the
whole catalogue.
"""
