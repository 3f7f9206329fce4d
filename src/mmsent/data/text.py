"""Tweet text: decoding raw bytes of unknown encoding, and configurable cleaning."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from pathlib import Path
from typing import NamedTuple

from mmsent.config import CleaningConfig
from mmsent.data.files import FileRefusedError, FileTooLargeError, read_regular_file

# Order matters: utf-8 is strict enough that a false match is very unlikely, gbk next (the lab copy has ~1100 gbk
# files), cp1252 last because it decodes almost any byte string.
ENCODINGS: tuple[str, ...] = ("utf-8", "gbk", "cp1252")

# Above this share of control characters (other than tab/CR/LF/FF) a decoded "text" is binary data that happened to
# decode; real tweets in the lab copy have none at all.
MAX_CONTROL_SHARE = 0.10
_ALLOWED_CONTROLS = frozenset("\t\r\n\f")

# The longest text predicted, in characters: the server's limit (ServeSettings.max_text_chars) and the streamed
# manifests' alike. Tweets are at most 280; far longer "texts" are mistakes that cost minutes of tokenizing.
MAX_TEXT_CHARS = 5_000
# utf-8 takes at most 4 bytes per character (gbk 2, cp1252 1), plus a 3-byte BOM: a larger file is over the limit
_MAX_BYTES_PER_CHAR = 4

# Characters that show nothing: controls (Cc), format characters (Cf: zero-width spaces and joiners, bidi marks,
# embeddings and isolates, the BOM, the soft hyphen), separators (Zs, Zl, Zp), and the blank or default-ignorable
# characters of other categories (grapheme joiner, variation selectors, Hangul fillers, the blank braille pattern).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_INVISIBLE_OTHERS = frozenset(map(chr, [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F,
                                        0x2800, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]))


class TextError(ValueError):
    """A text that cannot be used: unreadable, not a regular file, over the length limit, empty.

    Attributes:
        location: the file (or ``file:line``, or a field name) the text came from.
        reason: what is wrong, in words.
        fix: what to do about it.
    """

    def __init__(self, location: str, reason: str, fix: str) -> None:
        super().__init__(f"{location}: {reason}; {fix}")
        self.location = location
        self.reason = reason
        self.fix = fix


class TextDecodeError(TextError):
    """A text file is not valid utf-8/gbk/cp1252, or decodes only to binary garbage."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(location, reason, "save it as utf-8 text")


class TextProblem(NamedTuple):
    """Why a text is refused: ``kind`` (empty, too_long, nul, not_unicode), ``reason`` and ``fix`` in words."""

    kind: str
    reason: str
    fix: str


def is_invisible(ch: str) -> bool:
    """True for a character that shows nothing: whitespace, control, zero-width, bidi mark, variation selector."""
    return ch.isspace() or ch in _INVISIBLE_OTHERS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES


def text_problem(text: str, limit: int = MAX_TEXT_CHARS) -> TextProblem | None:
    """Why ``text`` cannot be predicted, or None: the one rule for the server's and the streamed manifests' texts.

    Refused: over ``limit`` characters, a NUL character, a lone surrogate (not encodable text), or nothing visible
    (empty, or only whitespace, control, zero-width or bidi characters). A model given those would still answer.
    """
    if len(text) > limit:  # first: it bounds the work of the checks below
        return TextProblem("too_long", *_too_long(len(text), "characters", limit))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's "\ud800" escapes decode to lone surrogates
        return TextProblem("not_unicode", f"not valid Unicode (a lone surrogate at position {exc.start})",
                           "write it as valid UTF-8")
    if "\x00" in text:  # as decode_text refuses a file holding one: binary data, never a tweet
        return TextProblem("nul", "contains NUL characters (binary data?)", "remove the NUL characters")
    if not text.strip():
        return TextProblem("empty", "empty", "write the post's text")
    if all(map(is_invisible, text)):  # stops at the first visible character
        return TextProblem("empty", "empty: only invisible characters (zero-width, bidi or control)",
                           "write the post's text")
    return None


def check_text(text: str, location: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` if :func:`text_problem` finds nothing wrong with it, else TextError naming ``location``."""
    problem = text_problem(text, limit)
    if problem is not None:
        raise TextError(location, problem.reason, problem.fix)
    return text


def check_length(text: str, location: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` if it has at most ``limit`` characters, else TextError naming ``location``."""
    if len(text) > limit:
        raise TextError(location, *_too_long(len(text), "characters", limit))
    return text


def _too_long(size: int, unit: str, limit: int) -> tuple[str, str]:
    """The reason and the fix for a text of ``size`` ``unit`` (characters, or a file's bytes) over ``limit``."""
    over = "" if unit == "characters" else " characters"
    return f"{size:,} {unit}, over the limit of {limit:,}{over}", f"shorten it to {limit:,} characters at most"


def read_text_file(path: str | Path, location: str, limit: int = MAX_TEXT_CHARS) -> tuple[str, str]:
    """Reads and decodes (:func:`decode_text`) a text file of at most ``limit`` characters.

    A FIFO, device or folder is refused without being opened, and a file too large to hold ``limit`` characters
    without being read. Emptiness is left to the caller (the lab format keeps empty texts; prediction refuses them).

    Raises:
        FileNotFoundError: if the file does not exist.
        TextError: if it is not a regular file, is over the limit or cannot be decoded (TextDecodeError).
        OSError: if it cannot be read.
    """
    try:
        raw = read_regular_file(path, max_bytes=limit * _MAX_BYTES_PER_CHAR + 3)
    except FileTooLargeError as exc:
        raise TextError(location, *_too_long(exc.size, "bytes", limit)) from None
    except FileRefusedError as exc:
        raise TextError(location, exc.reason, "replace it with a regular file") from None
    text, encoding = decode_text(raw, location)
    return check_length(text, location, limit), encoding


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
