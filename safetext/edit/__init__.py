"""Edit the text written in a generated image: regenerate it with the localized layers' K/V from a target prompt.

- :func:`edit_text` -> :class:`EditResult` (original, edited, side-by-side, metrics).
- CLI: ``safetext edit PROMPT --from WORD --to WORD`` (:mod:`safetext.edit.cli`).
"""

from safetext.edit.edit import EditError, EditResult, edit_text, side_by_side, target_prompt_for, tensor_to_pil
from safetext.edit.region import RegionError

__all__ = ["EditError", "EditResult", "RegionError", "edit_text", "side_by_side", "target_prompt_for", "tensor_to_pil"]
