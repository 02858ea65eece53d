"""Network I/O: one module per protocol, each offering collectors that return typed, frozen
observations, cached per device so that every check reads the same facts."""
