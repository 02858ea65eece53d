"""The protocols the probe judges, one package each: ports, wire format, collectors, checks."""
