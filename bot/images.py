"""Image input for deep research: which files the model accepts, checked from their bytes."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
MAX_IMAGES: Final = 5
RULE: Final = "I can read JPEG, PNG, BMP and WEBP images of up to 10 MB, at most 5 per request"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file someone attached, as downloaded."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Image:
    name: str
    data_url: str


class AttachmentReader(Protocol):
    """Reads the files attached to a chat message (Slack's file objects)."""

    async def attachments(
        self, files: Sequence[Mapping[str, Any]], *, token: str | None = None
    ) -> tuple[list[Attachment], list[str]]:
        """Downloaded attachments, and a sentence for each file that could not be read.
        `token`: the workspace's bot token, when it is not the reader's own."""
        ...


def image_type(data: bytes) -> str | None:
    """The MIME type the bytes really are, whatever the file's name says."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"BM") and len(data) > 14:
        return "image/bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def too_large(name: str) -> str:
    return f"I left out *{name}*: it is larger than 10 MB ({RULE})."


def accept_images(attachments: Sequence[Attachment]) -> tuple[list[Image], list[str]]:
    """The attachments the model can take, and a sentence for each one left out."""
    images: list[Image] = []
    refusals: list[str] = []
    for attachment in attachments:
        mime = image_type(attachment.data)
        if mime is None:
            refusals.append(
                f"I left out *{attachment.name}*: it is not an image I can read ({RULE})."
            )
        elif len(attachment.data) > MAX_IMAGE_BYTES:
            refusals.append(too_large(attachment.name))
        elif len(images) >= MAX_IMAGES:
            refusals.append(f"I left out *{attachment.name}*: {RULE}.")
        else:
            encoded = base64.b64encode(attachment.data).decode("ascii")
            images.append(Image(attachment.name, f"data:{mime};base64,{encoded}"))
    return images, refusals


def user_content(text: str, images: Sequence[Image]) -> str | list[dict[str, Any]]:
    """A user message's content: plain text, or images followed by the text."""
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"image": image.data_url} for image in images]
    parts.append({"text": text or "Research what these images show."})
    return parts
