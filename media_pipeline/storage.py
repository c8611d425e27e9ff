"""How stored media are served: Content-Type and Content-Disposition from the stored name.

Every name the catalogue stores ends in the extension of its sniffed type
(media_pipeline.formats), never the uploader's, so the name alone says what a file is.
Images are served `inline`; anything else (an upload that turned out not to be an image,
kept until replaced) is served as an `attachment` of type application/octet-stream, so a
browser never renders an uploaded HTML or SVG file from our origin or bucket.
"""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse
from django.views.static import serve
from storages.backends.s3 import S3Storage

from media_pipeline.formats import stored_type_of


def content_disposition(name: str) -> str:
    return "inline" if stored_type_of(name).is_image else "attachment"


class MediaS3Storage(S3Storage):
    """S3 media whose objects carry the type and disposition their stored name implies."""

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
