"""Image input for deep research: which files the model accepts, checked from their bytes."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bot.i18n import N_, Sentence, Text, say

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
MAX_IMAGES: Final = 5
RULE: Final = N_("I can read JPEG, PNG, BMP and WEBP images of up to 10 MB, at most 5 per request")
TOO_LARGE: Final = N_("I left out *{name}*: it is larger than 10 MB ({rule}).")
NOT_AN_IMAGE: Final = N_("I left out *{name}*: it is not an image I can read ({rule}).")
TOO_MANY: Final = N_("I left out *{name}*: {rule}.")


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
    ) -> tuple[list[Attachment], list[Text]]:
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


def left_out(sentence: str, name: str | Sentence) -> Sentence:
    """`sentence` (TOO_LARGE, NOT_AN_IMAGE, TOO_MANY) about the file `name` (as the person
    named it, or a Sentence such as "a file")."""
    return say(sentence, name=name, rule=say(RULE))


def accept_images(attachments: Sequence[Attachment]) -> tuple[list[Image], list[Text]]:
    """The attachments the model can take, and a sentence for each one left out."""
    images: list[Image] = []
    refusals: list[Text] = []
    for attachment in attachments:
        mime = image_type(attachment.data)
        if mime is None:
            refusals.append(left_out(NOT_AN_IMAGE, attachment.name))
        elif len(attachment.data) > MAX_IMAGE_BYTES:
            refusals.append(left_out(TOO_LARGE, attachment.name))
        elif len(images) >= MAX_IMAGES:
            refusals.append(left_out(TOO_MANY, attachment.name))
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
