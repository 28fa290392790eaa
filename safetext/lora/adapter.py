"""The LoRA adapter on a denoiser: inject it on exact modules, export it, save it in diffusers format.

:func:`inject_lora` wraps exactly the Linears of a :class:`~safetext.lora.targets.LoraTargets` with a peft
LoRA adapter (``target_modules`` are full module names, so peft does no pattern matching) and checks,
module by module, that nothing else was touched. :func:`save_lora_weights` writes the adapter the way
diffusers' own training scripts do (``get_peft_model_state_dict`` -> ``convert_state_dict_to_diffusers``
-> the pipeline class's ``save_lora_weights`` with the adapter config as metadata, so ``lora_alpha``
survives), and the pipeline's own ``load_lora_weights`` reads it back.

K/V patch hooks and LoRA: after injection, ``attn2.to_k`` is peft's wrapper around the original Linear
(now ``attn2.to_k.base_layer``). A forward hook registered on ``to_k`` AFTER injection (or after
``pipe.load_lora_weights``) sees the LoRA delta; a hook registered before it sits on the inner
``base_layer`` and misses the delta. Register K/V hooks after loading LoRA weights.

    >>> from safetext.lora import inject_lora, resolve_lora_targets, save_lora_weights
    >>> targets = resolve_lora_targets(pipe.unet, "all-cross-attention")  # doctest: +SKIP
    >>> inject_lora(pipe.unet, targets, rank=8, alpha=8)  # doctest: +SKIP
    >>> save_lora_weights(pipe, "out/lora")  # doctest: +SKIP
    >>> fresh.load_lora_weights("out/lora")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from safetext.errors import PatchError, UnsupportedArchitectureError
from safetext.lora.targets import LoraTargets, lora_module_names

logger = logging.getLogger("safetext.lora")

#: Adapter name used when safetext injects a LoRA for training.
DEFAULT_ADAPTER_NAME = "safetext_lora"

#: File the pipeline's ``save_lora_weights`` writes (diffusers' default name for safetensors).
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"

#: Accepted ``init_lora_weights`` values (peft: True = Kaiming A / zero B; "gaussian"; False = random B too).
INIT_CHOICES: tuple[Any, ...] = (True, False, "gaussian")


def existing_adapters(denoiser: nn.Module) -> list[str]:
    """Names of the peft adapters already on ``denoiser`` (empty for a clean model)."""
    config = getattr(denoiser, "peft_config", None)
    return sorted(config) if isinstance(config, dict) else []


def lora_config(targets: LoraTargets, rank: int, alpha: float, init_lora_weights: bool | str = "gaussian") -> Any:
    """peft ``LoraConfig`` whose ``target_modules`` are exactly ``targets.module_names``.

    Args:
        targets: the resolved targets.
        rank: LoRA rank ``r`` (>= 1).
        alpha: ``lora_alpha``; the update is scaled by ``alpha / rank``.
        init_lora_weights: peft initialisation: ``"gaussian"`` (diffusers' training scripts), ``True``
            (Kaiming A, zero B) or ``False`` (random A and B: a non-zero delta from the start, for tests).
    """
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if alpha <= 0:
        raise ValueError(f"LoRA alpha must be > 0, got {alpha}")
    if init_lora_weights not in INIT_CHOICES:
        raise ValueError(f"init_lora_weights must be one of {INIT_CHOICES}, got {init_lora_weights!r}")
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=list(targets.module_names),
        init_lora_weights=init_lora_weights,
    )


def inject_lora(
    denoiser: nn.Module,
    targets: LoraTargets,
    rank: int,
    alpha: float,
    init_lora_weights: bool | str = "gaussian",
    adapter_name: str = DEFAULT_ADAPTER_NAME,
    seed: int = 0,
) -> tuple[str, ...]:
    """Add a LoRA adapter on exactly ``targets.module_names`` of ``denoiser`` and make it active.

    The initial LoRA weights are drawn from ``seed`` in a forked RNG (the caller's RNG is untouched).
    Only the LoRA parameters are left trainable.

    Args:
        denoiser: a diffusers model with peft support (``add_adapter``), e.g. ``pipe.unet``.
        targets: from :func:`~safetext.lora.targets.resolve_lora_targets` on the same denoiser.
        rank, alpha, init_lora_weights: see :func:`lora_config`.
        adapter_name: name of the new adapter.
        seed: seed of the initial LoRA weights.

    Returns:
        The names of the modules now holding ``lora_A`` for this adapter (peft's ``targeted_module_names``),
        sorted; always equal to ``targets.module_names`` as a set.

    Raises:
        UnsupportedArchitectureError: the denoiser has no ``add_adapter`` (not a diffusers model).
        PatchError: the adapter name is taken, or peft wrapped other modules than the targets (the
            adapter is removed again before raising).
    """
    if not hasattr(denoiser, "add_adapter"):
        raise UnsupportedArchitectureError(
            f"{type(denoiser).__name__} has no add_adapter (diffusers PeftAdapterMixin); LoRA needs a diffusers denoiser"
        )
    if adapter_name in existing_adapters(denoiser):
        raise PatchError(f"{type(denoiser).__name__} already has an adapter named {adapter_name!r}; choose another name")
    config = lora_config(targets, rank, alpha, init_lora_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        denoiser.add_adapter(config, adapter_name=adapter_name)
    touched = lora_module_names(denoiser, adapter_name)
    expected = set(targets.module_names)
    if touched != expected:
        remove_lora(denoiser, adapter_name)
        raise PatchError(
            f"LoRA injection touched {sorted(touched - expected)} beyond the targets and missed "
            f"{sorted(expected - touched)}; the adapter was removed"
        )
    logger.info("LoRA rank %d alpha %s on %d Linears (%s)", rank, alpha, len(touched), targets.selector)
    return tuple(sorted(touched))


def remove_lora(denoiser: nn.Module, adapter_name: str) -> None:
    """Remove adapter ``adapter_name``; when it was the only one, restore the plain Linears entirely."""
    others = [name for name in existing_adapters(denoiser) if name != adapter_name]
    if others:
        denoiser.delete_adapters(adapter_name)
    else:
        denoiser.unload_lora()


def lora_parameters(denoiser: nn.Module, adapter_name: str = DEFAULT_ADAPTER_NAME) -> dict[str, nn.Parameter]:
    """The LoRA parameters of one adapter by full parameter name, sorted by name (a stable optimizer order)."""
    marker = f".{adapter_name}."
    found = {
        name: param
        for name, param in denoiser.named_parameters()
        if ("lora_A" in name or "lora_B" in name) and marker in name
    }
    return dict(sorted(found.items()))


def diffusers_lora_state_dict(denoiser: nn.Module, adapter_name: str = DEFAULT_ADAPTER_NAME) -> dict[str, torch.Tensor]:
    """The adapter's weights in diffusers' LoRA key format (``...to_k.lora.down.weight``), on the CPU."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(denoiser, adapter_name=adapter_name)
    return {k: v.detach().to("cpu").contiguous() for k, v in convert_state_dict_to_diffusers(state).items()}


def save_lora_weights(pipe: Any, out_dir: str | Path, adapter_name: str = DEFAULT_ADAPTER_NAME) -> Path:
    """Save the denoiser's adapter with the pipeline class's own ``save_lora_weights``.

    The adapter's ``LoraConfig`` goes into the safetensors metadata, so ``load_lora_weights`` rebuilds the
    same ``lora_alpha`` and exact ``target_modules``.

    Args:
        pipe: the pipeline whose ``unet`` carries the adapter; its class must have a diffusers LoRA loader
            mixin (``StableDiffusionLoraLoaderMixin``).
        out_dir: directory to write ``pytorch_lora_weights.safetensors`` into.
        adapter_name: the adapter to save.

    Returns:
        The path of the written weight file.
    """
    saver = getattr(type(pipe), "save_lora_weights", None)
    if saver is None or not hasattr(pipe, "load_lora_weights"):
        raise UnsupportedArchitectureError(
            f"{type(pipe).__name__} has no save_lora_weights/load_lora_weights; add a diffusers LoRA loader mixin "
            "(e.g. StableDiffusionLoraLoaderMixin) to the pipeline class"
        )
    denoiser = pipe.unet
    if adapter_name not in existing_adapters(denoiser):
        raise PatchError(f"{type(denoiser).__name__} has no adapter {adapter_name!r}; adapters: {existing_adapters(denoiser)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metadata = denoiser.peft_config[adapter_name].to_dict()
    # peft keeps target_modules as a set; sort it so the same adapter always writes the same bytes
    metadata["target_modules"] = sorted(metadata["target_modules"])
    saver(
        save_directory=str(out),
        unet_lora_layers=diffusers_lora_state_dict(denoiser, adapter_name),
        unet_lora_adapter_metadata=metadata,
        weight_name=LORA_WEIGHT_NAME,
        safe_serialization=True,
    )
    return out / LORA_WEIGHT_NAME
