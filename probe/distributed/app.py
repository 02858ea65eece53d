"""The Celery application both sides use: broker settings, task names, publishing.

Delivery is at least once: tasks are acknowledged after they ran (`task_acks_late`), a task
whose worker process died is not acknowledged (`task_reject_on_worker_lost`), and a worker
reserves one task per slot (`worker_prefetch_multiplier=1`), so at most its running shards go
down with it. On Redis an unacknowledged message goes back to its queue once it has been out
for the visibility timeout; workers look for such messages every quarter of that timeout (at
most every 10 s). The timeout must be longer than a shard can take, else a shard still being
scanned is handed to a second worker too (harmless, records are written once, but wasted).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from probe.distributed.plan import ShardTask, SweepPlan
from probe.errors import InputError

SHARD_TASK = "iotprobe.shard"
FINALIZE_TASK = "iotprobe.finalize"
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


def broker_label(url: str) -> str:
    """The broker URL with any password masked."""
    return str(maybe_sanitize_url(url))


def check_broker_url(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _SCHEMES:
        raise InputError(f"not a broker URL: {broker_label(url)!r}; use "
                         "redis://HOST:PORT/DB (or amqp://...)", field="--broker")
    return url


def celery_app(broker: str, *,
               visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT) -> Celery:
    app = Celery("iotprobe", broker=check_broker_url(broker), set_as_current=False)
    transport: dict[str, Any] = {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": max(1.0, min(10.0, visibility_timeout / 4)),
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_default_queue="iotprobe",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


def check_broker(app: Celery) -> None:
    """InputError unless the broker answers."""
    with app.connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=2, interval_start=1, interval_step=1,
                                         timeout=5)
        except Exception as exc:
            raise InputError(f"cannot reach the broker {broker_label(app.conf.broker_url)}: "
                             f"{type(exc).__name__}: {exc}", field="--broker") from None


def send_shards(app: Celery, tasks: list[ShardTask]) -> None:
    with app.producer_or_acquire() as producer:
        for task in tasks:
            app.send_task(SHARD_TASK, args=[task.message()], queue=task.shard.queue,
                          producer=producer)


def send_finalize(app: Celery, plan: SweepPlan, queue: str) -> None:
    app.send_task(FINALIZE_TASK, args=[plan.message()], queue=queue)
