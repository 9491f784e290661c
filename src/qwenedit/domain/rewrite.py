"""Prompt extension rules (``prompt_extend``): the instruction we give a vision-language model
and how we read its answer. Pure: the models live behind ``extend.PromptExtender``."""

from __future__ import annotations

import json
import re

MAX_REWRITE_CHARS = 2000

REWRITE_INSTRUCTION = """You rewrite instructions for an image-editing model.
You are given the user's edit instruction and the picture(s) it refers to, in order
(Picture 1, Picture 2, Picture 3).
Rewrite the instruction so the editing model can follow it exactly:
- Keep the user's intent. Do not add changes the user did not ask for.
- Be direct and specific: say what to change, where it is in the picture, and what must stay
  the same.
- Keep any text the user wants written in the image exactly as given, inside its quotes.
- When there are several pictures, name which picture each part of the instruction refers to
  (for example "the woman in Picture 1", "the background of Picture 2").
- Write in the user's language. One paragraph, at most 200 words.
Answer with JSON only, exactly in this form: {"Rewritten": "..."}"""

_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_rewrite(answer: str, original: str) -> str | None:
    """The rewritten prompt from a model's answer, or ``None`` when the answer is unusable (not
    JSON, no ``Rewritten`` string, empty, too long, or dropping text the user quoted)."""
    match = _OBJECT.search(answer.strip())
    if match is None:
        return None
    try:
        parsed = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    rewritten = parsed.get("Rewritten", parsed.get("rewritten"))
    if not isinstance(rewritten, str):
        return None
    rewritten = " ".join(rewritten.split())
    if not rewritten or len(rewritten) > MAX_REWRITE_CHARS:
        return None
    if any(quoted not in rewritten for quoted in quoted_texts(original)):
        return None
    return rewritten


def quoted_texts(prompt: str) -> list[str]:
    """Text the user put in double quotes (to be rendered verbatim): ASCII, typographic or CJK
    corner brackets. Single quotes are left out: they double as apostrophes."""
    found: list[str] = []
    for pattern in (r'"([^"]+)"', r"“([^”]+)”", r"「([^」]+)」"):
        found.extend(re.findall(pattern, prompt))
    return found
