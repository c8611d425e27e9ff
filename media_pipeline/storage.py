"""How stored media are served: Content-Type and Content-Disposition from the stored name.

Every name the catalogue stores ends in the extension of its sniffed type
(media_pipeline.formats), never the uploader's, so the name alone says what a file is.
Images are served `inline`; anything else (an upload that turned out not to be an image,
kept until replaced) is served as an `attachment` of type application/octet-stream, so a
browser never renders an uploaded HTML or SVG file from our origin or bucket.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse
from django.views.static import serve
from storages.backends.s3 import S3Storage

from media_pipeline.formats import stored_type_of
from workers.errors import ApplicationError
from workers.service_health import ServiceHealth, error_kind


def content_disposition(name: str) -> str:
    return "inline" if stored_type_of(name).is_image else "attachment"


class MediaS3Storage(S3Storage):
    """S3 media whose objects carry the type and disposition their stored name implies.

    Its calls are bounded (MEDIA_S3_CONNECT_TIMEOUT, MEDIA_S3_READ_TIMEOUT, MEDIA_S3_ATTEMPTS):
    with botocore's defaults (60 s to connect, 60 s per read, three attempts) an S3 that
    accepts connections and never answers held a cover upload's request three minutes, far
    past any load balancer's patience, and then told the person the cover was stored."""

    client_config: Config  # set by S3Storage from its options (untyped there)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.client_config = self.client_config.merge(
            Config(
                connect_timeout=settings.MEDIA_S3_CONNECT_TIMEOUT,
                # Per socket read, not per transfer: S3 sends a large object's bytes
                # steadily, so this only ends a call that has stopped answering.
                read_timeout=settings.MEDIA_S3_READ_TIMEOUT,
                retries={"mode": "standard", "total_max_attempts": settings.MEDIA_S3_ATTEMPTS},
            )
        )

    @cached_property
    def probe_client(self) -> Any:
        """A client for one quick question (no retry, a short read timeout), created once:
        creating a boto3 client costs tens of milliseconds."""
        return self._create_session().client(
            "s3",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            config=self.client_config.merge(
                Config(
                    read_timeout=settings.MEDIA_S3_CONNECT_TIMEOUT,
                    retries={"mode": "standard", "total_max_attempts": 1},
                )
            ),
        )

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        state.pop("probe_client", None)  # a client is not picklable; made again when needed
        return state

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        # django-storages' documented per-object hook. Setting ContentType here also stops
        # it from taking the type the uploader's browser sent with the file.
        params: dict[str, Any] = super().get_object_parameters(name)
        params["ContentType"] = stored_type_of(name).content_type
        params["ContentDisposition"] = content_disposition(name)
        return params


def serve_media(request: HttpRequest, path: str, document_root: str) -> HttpResponse | FileResponse:
    """Local media in development, with the same headers as on S3."""
    response = serve(request, path, document_root=document_root)
    response["Content-Type"] = stored_type_of(path).content_type
    response["Content-Disposition"] = content_disposition(path)
    return response


# What media storage raises when it cannot be reached or cannot store a file.
MEDIA_STORAGE_ERRORS: tuple[type[BaseException], ...] = (BotoCoreError, ClientError, OSError)


class MediaStorageUnavailable(ApplicationError):
    """Media storage cannot be reached; nothing was changed."""


class MediaStorageHealth(ServiceHealth):
    """What this process knows of the S3 media bucket: a cover upload asks before it
    changes anything, so with S3 down or hanging the person is told at once and the course
    keeps its cover, instead of a request that waits on S3 and a cover whose original was
    never stored."""

    errors = MEDIA_STORAGE_ERRORS

    def probe(self) -> None:
        storage = default_storage
        if isinstance(storage, MediaS3Storage):
            storage.probe_client.head_bucket(Bucket=storage.bucket_name)

    def refusal(self, error: str | None) -> ApplicationError:
        return MediaStorageUnavailable(
            f"Media storage is unreachable ({error_kind(error)}), so the cover was not "
            "changed and nothing was queued. Try again once it is back."
        )


media_storage_health = MediaStorageHealth()


def media_storage_check() -> None:
    """Raise MediaStorageUnavailable if the media bucket is known or found unreachable.
    Local files need no check."""
    if isinstance(default_storage, MediaS3Storage):
        media_storage_health.ensure_available()
