"""An upload handler that stores at most MEDIA_MAX_UPLOAD_BYTES of a file.

Django spools every uploaded file to a temporary file in full before any form can refuse
it: a 200 MB file posted to the cover form filled 200 MB of the web server's disk before
"a cover may be at most 64 MiB". Here the bytes past the limit are counted, not stored; the
file still reports its real size (Django sets it from the count), so the form refuses it
with its own message. Its stored bytes are cut short and never used: nothing accepts a
file over the limit.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler


class CappedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        # `start`: the bytes of this file received before this chunk.
        room = settings.MEDIA_MAX_UPLOAD_BYTES + 1 - start
        if room > 0:
            self.file.write(raw_data[:room])
