"""The TaskQueue port on Cloud Tasks. The only module that knows Cloud Tasks types."""

from __future__ import annotations

from datetime import datetime

import grpc
from google.api_core.exceptions import AlreadyExists
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from functions.config import Settings
from functions.errors import ConfigError
from functions.payloads import backfill_slice_body, calendar_sync_body, collect_task_body
from functions.ports import BackfillSlice, CollectTask


def tasks_client(settings: Settings) -> tasks_v2.CloudTasksClient:
    if settings.cloud_tasks_emulator_host:
        # The emulator speaks plain gRPC on loopback: no TLS, no credentials to look up.
        channel = grpc.insecure_channel(settings.cloud_tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


class CloudTasksQueue:
    def __init__(
        self,
        client: tasks_v2.CloudTasksClient,
        *,
        queue_path: str,
        collect_url: str,
        service_account_email: str,
        backfill_url: str | None = None,
    ) -> None:
        self._client = client
        self._queue_path = queue_path
        self._collect_url = collect_url
        self._service_account_email = service_account_email
        self._backfill_url = backfill_url

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudTasksQueue:
        return cls(
            tasks_client(settings),
            queue_path=settings.queue_path,
            collect_url=settings.collect_url,
            service_account_email=settings.tasks_service_account,
            backfill_url=settings.backfill_url,
        )

    def enqueue(self, task: CollectTask, *, task_id: str, at: datetime) -> bool:
        return self._create(
            task_id=task_id, url=self._collect_url, body=collect_task_body(task), at=at
        )

    def enqueue_backfill_slice(self, part: BackfillSlice, *, task_id: str) -> bool:
        if self._backfill_url is None:
            raise ConfigError(["BACKFILL_URL is required to fan a backfill out into tasks"])
        return self._create(
            task_id=task_id, url=self._backfill_url, body=backfill_slice_body(part), at=None
        )

    def enqueue_calendar_sync(self, calendar_id: str, *, task_id: str) -> bool:
        if self._backfill_url is None:
            raise ConfigError(["BACKFILL_URL is required to sync a calendar after a notification"])
        return self._create(
            task_id=task_id, url=self._backfill_url, body=calendar_sync_body(calendar_id), at=None
        )

    def _create(self, *, task_id: str, url: str, body: bytes, at: datetime | None) -> bool:
        request = tasks_v2.Task(
            name=f"{self._queue_path}/tasks/{task_id}",
            http_request=tasks_v2.HttpRequest(
                url=url,
                http_method=tasks_v2.HttpMethod.POST,
                headers={"Content-Type": "application/json"},
                body=body,
                # The audience is the target's own URL: each function checks tokens against it.
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=self._service_account_email, audience=url
                ),
            ),
        )
        if at is not None:
            request.schedule_time = at
        try:
            self._client.create_task(parent=self._queue_path, task=request)
        except AlreadyExists:
            return False
        return True
