"""Sweeps across many machines on Celery: shards, per-site queues, one shared store.

`iotprobe sweep --distributed` cuts the inventory into shards (at most `--shard-size` devices,
all of one site), writes them into the store's `shards` table and sends one Celery task per
shard to the queue of its site (`site.<NAME>`, or `iotprobe` for devices without a site).
`iotprobe worker` consumes those queues and scans each shard with the normal engine, writing
every record in its own transaction to the shared PostgreSQL store.

Nothing is lost or done twice:

- tasks are acknowledged late (after the shard is scanned), with one task reserved per worker
  slot, so a worker killed mid-shard (kill -9 included) leaves its message unacknowledged and
  the broker hands it to another worker once the visibility timeout has passed;
- a record is written only if the sweep has none for that device yet (records are keyed by
  sweep and device), so a redelivered shard keeps what the killed worker stored and scans only
  the rest;
- a shard is done when all its devices are stored; the worker that finishes the last one sends
  a finalising task that settles the fleet-wide checks (`fleet.unique-keys`) once over the whole
  sweep and marks the sweep finished.

Broker messages never hold a secret: they carry the sweep number, a token that ties them to
the store, the inventory's path, device ids and addresses, the profile references and digest,
and the scan options. Each worker loads the inventory itself (so every worker host needs the
inventory file and the environment variables and files its secrets come from) and refuses a
shard whose devices or profile differ from the sweep's.
"""
