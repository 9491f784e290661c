"""The tiny engine's pipeline: the real diffusers ``QwenImageEditPlusPipeline`` with tiny random
weights built in code, offline (DESIGN §7). Every stage of the real path runs (VLM prompt
encoding with images, VAE encode, transformer denoising, VAE decode); the pictures are noise.

Component sizes follow diffusers' own test of this pipeline. Its tokenizer comes from the hub
there; here a byte-level BPE (256 byte tokens, no merges) plus the Qwen special tokens is built
in code, and the VL config's vocabulary and vision token ids are taken from it."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImageEditPlusPipeline,
    QwenImageTransformer2DModel,
)
from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as pipeline_module
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from qwenedit.engines.vl_processor import ImageOnlyQwenProcessor

SPECIAL_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
VLM_MAX_PIXELS = 56 * 56
"""The VLM sees each input at most this large (the real one: ~384² area): keeps CPU calls fast."""
TINY_INPUT_AREA = 64 * 64
"""Area the pipeline resizes each input to for the VLM and the VAE (the real model: 384² and
1024²). At 1 MP one tiny call takes ~50 s on 2 CPU cores; at 64² it takes well under one."""


def shrink_input_sizes(area: int = TINY_INPUT_AREA) -> None:
    """Sets the pipeline module's ``CONDITION_IMAGE_SIZE`` and ``VAE_IMAGE_SIZE``, which it reads
    at call time. They are module globals: this changes them for the whole process, so it is
    only ever called by the tiny engine, and a process never serves the real model beside it
    (``--engine`` picks one engine per process)."""
    pipeline_module.CONDITION_IMAGE_SIZE = area
    pipeline_module.VAE_IMAGE_SIZE = area


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    end, pad = SPECIAL_TOKENS[:2]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=end, pad_token=pad)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[2:])})
    return tokenizer


def _text_encoder(tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLForConditionalGeneration:
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(tokenizer),
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        hidden_size=16,
        vocab_size=len(tokenizer),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def build_tiny_pipeline(seed: int = 0) -> QwenImageEditPlusPipeline:
    """Deterministic for a given ``seed``: the same weights in every process. Shrinks the
    pipeline's input sizes for the process (``shrink_input_sizes``)."""
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(
        base_dim=4 * 6,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = _text_encoder(tokenizer)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=VLM_MAX_PIXELS)
    pipeline = QwenImageEditPlusPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=ImageOnlyQwenProcessor(tokenizer, image_processor),
        transformer=transformer,
    )
    pipeline.set_progress_bar_config(disable=True)
    shrink_input_sizes()
    return pipeline
