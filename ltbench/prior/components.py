"""Architectures of the shipped phantom prior, in the diffusers / transformers formats of a
Stable Diffusion pipeline (so it loads and runs through exactly RoentGen's code path).

Sizes are chosen so the whole prior trains on a 2-core CPU in well under an hour and ships
in a few MB: a x4 VAE (64 px -> 4x16x16 latents), a small cross-attention UNet, a 2-layer
CLIP text encoder and a word-level tokenizer over the words of the class names."""

import torch

from ltbench.data.classes import PAPER_CLASSES

MAX_TOKENS = 16  # BOS + the 14 words of all ten class names + EOS
NO_FINDING = "No Finding"


def class_words(classes=PAPER_CLASSES) -> list[str]:
    words = []
    for c in (*classes, NO_FINDING):
        for w in c.lower().split():
            if w not in words:
                words.append(w)
    return words


def make_tokenizer(classes=PAPER_CLASSES):
    """Word-level ``PreTrainedTokenizerFast``: lower-cased whitespace words of the class names;
    anything else is [UNK]. Called exactly like CLIP's tokenizer by the diffusers pipeline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    vocab = {t: i for i, t in enumerate(specials + class_words(classes))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=MAX_TOKENS,
    )


def make_text_encoder(vocab_size: int, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        projection_dim=64,
    )
    return CLIPTextModel(cfg)


def make_vae(seed: int = 0, sample_size: int = 64, block_out_channels=(16, 32, 32), latent_channels: int = 4, layers_per_block: int = 1):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    levels = len(block_out_channels)  # downsampling x 2 ** (levels - 1)
    return AutoencoderKL(
        in_channels=3,  # RGB like Stable Diffusion's VAE: the gray image is replicated
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(block_out_channels),
        latent_channels=latent_channels,
        norm_num_groups=8,
        layers_per_block=layers_per_block,
        sample_size=sample_size,
    )


def make_unet(seed: int = 0, sample_size: int = 16, in_channels: int = 4):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def make_schedulers():
    """Stable Diffusion's noise schedule: DDPM for training, DDIM for sampling."""
    from diffusers import DDIMScheduler, DDPMScheduler

    kw = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
    return DDPMScheduler(**kw), DDIMScheduler(**kw, set_alpha_to_one=False, steps_offset=1)


def prompt_for(labels, classes=PAPER_CLASSES) -> str:
    """The authors' prompt: the names of the positive labels joined by spaces."""
    names = [c for c, v in zip(classes, labels) if v]
    return " ".join(names) if names else NO_FINDING
