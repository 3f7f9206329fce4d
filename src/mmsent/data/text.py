"""Tweet text: decoding raw bytes of unknown encoding, and configurable cleaning."""

from __future__ import annotations

import dataclasses
import re
import unicodedata

from mmsent.config import CleaningConfig

# Order matters: utf-8 is strict enough that a false match is very unlikely, gbk next (the lab copy has ~1100 gbk
# files), cp1252 last because it decodes almost any byte string.
ENCODINGS: tuple[str, ...] = ("utf-8", "gbk", "cp1252")

# Above this share of control characters (other than tab/CR/LF/FF) a decoded "text" is binary data that happened to
# decode; real tweets in the lab copy have none at all.
MAX_CONTROL_SHARE = 0.10
_ALLOWED_CONTROLS = frozenset("\t\r\n\f")


class TextDecodeError(ValueError):
    """A text file is not valid utf-8/gbk/cp1252, or decodes only to binary garbage.

    Attributes:
        location: the file (or ``file:line``) the bytes came from.
        reason: what is wrong, in words.
    """

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


def _cp1252_read_as_gbk(gbk_text: str) -> bool:
    """True for Western text whose bytes merely happen to be valid gbk ("Don\x92t" -> "Don抰t").

    Chinese or Japanese text decodes to runs of ideographs or kana; cp1252 bytes misread as gbk give lone ones, each
    between ASCII characters ("搘ow厰"). So: some ideograph or kana, and none of them next to another non-ASCII
    character. gbk's own punctuation and accented Latin letters ("–", "’", "é") do not count.
    """
    found = False
    for i, ch in enumerate(gbk_text):
        if ord(ch) <= 0x7F or unicodedata.category(ch) != "Lo":  # gbk's accented Latin letters and punctuation pass
            continue
        found = True
        neighbours = gbk_text[max(0, i - 1):i] + gbk_text[i + 1:i + 2]
        if any(ord(n) > 0x7F for n in neighbours):
            return False
    return found


def decode_text(raw: bytes, location: str) -> tuple[str, str]:
    """Decodes tweet bytes as utf-8 (a leading BOM is dropped), else gbk, else cp1252.

    Western cp1252 bytes that are also valid gbk are read as cp1252 (see :func:`_cp1252_read_as_gbk`).

    Args:
        raw: the file's bytes.
        location: where the bytes came from, for the error message.

    Returns:
        ``(text, encoding)`` with encoding one of :data:`ENCODINGS`.

    Raises:
        TextDecodeError: if no codec decodes the bytes or the result looks like binary data.
    """
    if b"\x00" in raw:  # NUL is valid in every codec, so no decode failure would catch it
        raise TextDecodeError(location, "contains NUL bytes (a binary file, or UTF-16 text; save it as utf-8)")
    for encoding in ENCODINGS:
        try:
            text = raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "gbk" and _cp1252_read_as_gbk(text):
            try:
                text, encoding = raw.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:  # bytes cp1252 leaves undefined: gbk after all
                pass
        controls = sum(1 for ch in text if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) == "Cc")
        if text and controls / len(text) > MAX_CONTROL_SHARE:
            reason = f"looks like binary data: {controls} of {len(text)} characters are control characters"
            raise TextDecodeError(location, reason)
        return text, encoding
    raise TextDecodeError(location, f"not valid {', '.join(ENCODINGS)} (a binary file?)")


# A retweet marker only at the very start; repeated for "RT @a: RT @b: ...".
_RETWEET = re.compile(r"^(?:\s*RT\s+@\w+:?\s*)+")
# Scheme URLs include truncated ones ("http:…", "http://t.co/N8…"); bare t.co and www. links too.
_URL = re.compile(r"\bhttps?:\S*|\bt\.co/\S*|\bwww\.\S+", re.IGNORECASE)
# Not after a word character, so e-mail addresses survive; a colon right after the handle goes with it.
_MENTION = re.compile(r"(?<![\w@])@\w+(?::(?=\s|$))?")
# Not after '&' or a word character, so HTML entities like "&#39;" and "C#" survive.
_HASHTAG = re.compile(r"(?<![\w&])#(\w+)")
_SPACES = re.compile(r"\s+")

_HASHTAG_MODES = ("strip_symbol", "drop", "keep")


class TextCleaner:
    """Cleans tweet text according to a :class:`~mmsent.config.CleaningConfig`.

    Emoji and case are kept unless asked otherwise: both carry sentiment and cased tokenizers use case.
    """

    # Bump when a rule changes so that cached features keyed on :meth:`fingerprint` are rebuilt.
    VERSION = 1

    def __init__(self, cfg: CleaningConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else CleaningConfig()
        if self.cfg.hashtags not in _HASHTAG_MODES:
            raise ValueError(f"cleaning.hashtags must be one of {', '.join(_HASHTAG_MODES)}, got {self.cfg.hashtags!r}")

    def clean(self, text: str) -> str:
        """Returns the cleaned text."""
        cfg = self.cfg
        if cfg.strip_retweet:
            text = _RETWEET.sub("", text)
        # URLs before mentions and hashtags: a URL may contain '@' or '#'.
        if cfg.strip_urls:
            text = _URL.sub(" ", text)
        if cfg.strip_mentions:
            text = _MENTION.sub(" ", text)
        if cfg.hashtags == "strip_symbol":
            text = _HASHTAG.sub(r"\1", text)
        elif cfg.hashtags == "drop":
            text = _HASHTAG.sub(" ", text)
        if cfg.lowercase:
            text = text.lower()
        if cfg.normalize_whitespace:
            text = _SPACES.sub(" ", text).strip()
        return text

    def __call__(self, text: str) -> str:
        return self.clean(text)

    def fingerprint(self) -> str:
        """A stable string naming the rules and every option, for cache keys."""
        options = ",".join(f"{f.name}={getattr(self.cfg, f.name)}" for f in dataclasses.fields(self.cfg))
        return f"TextCleaner/v{self.VERSION}({options})"

    def __repr__(self) -> str:
        return self.fingerprint()
