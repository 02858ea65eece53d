"""The conformance record (`iotprobe.record/v1`): the typed `Record` (model), its JSON schema
and validation (schema), and its files (files)."""
