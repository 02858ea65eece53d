"""The checks: one module per protocol family, each declaring its checks with `@check` and
listing them in its `CHECKS`; `probe.checks.catalogue` names every module, here and in
`probe.protocols`.

Adding a check means adding a function to a module here and to that module's `CHECKS` (a new
module also goes into the catalogue's list); the engine finds it through `catalogue()` and
never names a check itself. This package imports nothing itself: the protocol packages import
`probe.checks.base`, and the catalogue imports them.
"""
