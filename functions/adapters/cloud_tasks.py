"""The TaskQueue port on Cloud Tasks. The only module that knows Cloud Tasks types."""

from __future__ import annotations

from datetime import datetime

import grpc
from google.api_core.exceptions import AlreadyExists
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from functions.config import Settings
from functions.http_edge import collect_task_body
from functions.ports import CollectTask


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
    ) -> None:
        self._client = client
        self._queue_path = queue_path
        self._collect_url = collect_url
        self._service_account_email = service_account_email

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudTasksQueue:
        return cls(
            tasks_client(settings),
            queue_path=settings.queue_path,
            collect_url=settings.collect_url,
            service_account_email=settings.tasks_service_account,
        )

    def enqueue(self, task: CollectTask, *, task_id: str, at: datetime) -> bool:
        request = tasks_v2.Task(
            name=f"{self._queue_path}/tasks/{task_id}",
            schedule_time=at,
            http_request=tasks_v2.HttpRequest(
                url=self._collect_url,
                http_method=tasks_v2.HttpMethod.POST,
                headers={"Content-Type": "application/json"},
                body=collect_task_body(task),
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=self._service_account_email,
                    audience=self._collect_url,
                ),
            ),
        )
        try:
            self._client.create_task(parent=self._queue_path, task=request)
        except AlreadyExists:
            return False
        return True
