"""The service's limits: sizes, pixels, rows, memory in flight and client timeouts."""

from __future__ import annotations

from dataclasses import dataclass

from mmsent.data.text import MAX_TEXT_CHARS


@dataclass
class ServeSettings:
    """Limits of the service."""

    max_upload_bytes: int = 10 * 1024 * 1024  # largest image file accepted
    max_image_pixels: int = 40_000_000  # largest decoded image (w x h; ~7300 x 5500), a decompression-bomb guard
    max_request_pixels: int = 100_000_000  # all images of one request together (a batch of large images)
    max_text_chars: int = MAX_TEXT_CHARS  # longest text accepted: the streamed manifests' limit too
    max_batch: int = 32  # most rows in one /predict/batch request
    max_micro_batch: int = 8  # most rows in one forward pass (concurrent /predict requests, a batch's rows)
    max_batch_bytes: int = 32 * 1024 * 1024  # largest /predict/batch body, all rows together
    # Bodies (counted BODY_COPIES times: read, parsed, decoded) and decoded images (RGB, from their headers) of all
    # requests in flight together; past it a request gets 503 + Retry-After. The model and its forward passes come on
    # top: with 512 MiB the shipped model's server peaked at 1.48 GiB under attack (benchmarks/RESULTS.md).
    memory_budget_bytes: int = 512 * 1024 * 1024
    header_timeout: float = 10.0  # seconds for a request's line and headers (slowloris); the connection is closed
    body_timeout: float = 60.0  # seconds for a whole body (1 byte every few seconds holds memory); 408 past it

    def single_body_limit(self) -> int:
        # base64 inflates by 4/3 (multipart carries the raw bytes), then room for the text and the framing.
        return self.max_upload_bytes * 4 // 3 + self.max_text_chars * 4 + 64 * 1024

    def batch_body_limit(self) -> int:
        return min(self.max_batch * self.single_body_limit(), self.max_batch_bytes)

