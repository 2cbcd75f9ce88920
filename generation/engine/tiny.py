"""Tiny random-weight pipelines for tests and the offline demo.

No machine we develop on can download weights, so each tiny profile is built here from small
configs of the real architectures (same classes, fewer and narrower layers), with a fixed init
seed so every machine builds the same weights, and saved with ``save_pretrained``. The worker
then loads it through the same ``from_pretrained`` path as a real model. Images are coloured
noise; the code path is real.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

INIT_SEED = 20260421
BUILD_MARKER = "hoffdesk-tiny.json"
BUILD_VERSION = 3


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-symbol table, so every byte has a printable vocab entry."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _clip_tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        vocab_file=str(folder / "vocab.json"),
        merges_file=str(folder / "merges.txt"),
        model_max_length=77,
    )


def _t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    pieces += [(c, -3.0) for c in letters] + [("▁" + c, -2.5) for c in letters]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _clip_text_config(projection: bool) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=514,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        projection_dim=32 if projection else 512,
    )


def _vae(
    latent_channels: int, *, quant_conv: bool = True, shift_factor: float | None = None, scaling_factor: float = 0.18215
) -> Any:
    """The real family's VAE, narrowed: the latent channels and scaling of the real one (the
    FLUX and SD3 VAEs have no quant convs and shift their latents)."""
    from diffusers import AutoencoderKL

    # Four blocks, as in the real models, so the VAE factor is 8 and sizes validate the same way.
    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=128,
        use_quant_conv=quant_conv,
        use_post_quant_conv=quant_conv,
        shift_factor=shift_factor,
        scaling_factor=scaling_factor,
    )


def _t5_encoder(d_model: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=80,
            d_model=d_model,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-gelu",
            dense_act_fn="gelu_new",  # type: ignore[call-arg]  # accepted through **kwargs
            is_encoder_decoder=False,
        )
    )


def build_tiny_sd() -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _clip_tokenizer(Path(tmp))
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    return StableDiffusionPipeline(
        vae=_vae(4),
        text_encoder=CLIPTextModel(_clip_text_config(projection=False)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sdxl() -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _clip_tokenizer(Path(tmp) / "a")
        tokenizer_2 = _clip_tokenizer(Path(tmp) / "b")
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 * 8 + 32 (pooled text_encoder_2)
        cross_attention_dim=64,  # both text encoders' hidden states side by side
        norm_num_groups=8,
    )
    return StableDiffusionXLPipeline(
        vae=_vae(4),
        text_encoder=CLIPTextModel(_clip_text_config(projection=False)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(projection=True)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
            steps_offset=1,
        ),
    )


def build_tiny_flux() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _clip_tokenizer(Path(tmp))
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2, as the real model packs its 16
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    text_encoder_2 = _t5_encoder(d_model=32)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_vae(4, quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611),
        text_encoder=CLIPTextModel(_clip_text_config(projection=False)),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=_t5_tokenizer(),
        transformer=transformer,
    )


def build_tiny_sd3() -> Any:
    """SD3 medium's parts, narrowed: two CLIP encoders with projection and a T5, an MMDiT with
    2x2 patches over 16 latent channels, flow-matching Euler with the real shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _clip_tokenizer(Path(tmp) / "a")
        tokenizer_2 = _clip_tokenizer(Path(tmp) / "b")
    transformer = SD3Transformer2DModel(
        sample_size=64,  # 512 px, the tiny profiles' native size
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,  # one joint block, then the last one that only reads the text
        attention_head_dim=16,
        num_attention_heads=2,
        caption_projection_dim=32,  # = heads x head dim, as in the real model
        # The pipeline pads the two CLIPs' hidden states side by side (32 + 32) to the T5's width
        # and joins them to the T5's tokens; the pooled projections (32 + 32) go in side by side.
        joint_attention_dim=64,
        pooled_projection_dim=64,
        # Positions for up to 128x128 patches (2048 px), the largest size sd3-medium accepts, so
        # a demo run at any size sd3-medium allows works on this stand-in.
        pos_embed_max_size=128,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(16, quant_conv=False, shift_factor=0.0609, scaling_factor=1.5305),
        text_encoder=CLIPTextModelWithProjection(_clip_text_config(projection=True)),
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(projection=True)),
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(d_model=64),
        tokenizer_3=_t5_tokenizer(),
    )


BUILDERS = {
    "tiny-sd": build_tiny_sd,
    "tiny-sdxl": build_tiny_sdxl,
    "tiny-flux": build_tiny_flux,
    "tiny-sd3": build_tiny_sd3,
}


def is_built(folder: Path) -> bool:
    marker = folder / BUILD_MARKER
    if not marker.exists():
        return False
    try:
        return bool(json.loads(marker.read_text())["version"] == BUILD_VERSION)
    except (ValueError, KeyError):
        return False


def ensure_tiny(name: str, folder: Path) -> Path:
    """Build the tiny pipeline ``name`` into ``folder`` unless it is already there.

    The build goes to a temporary sibling and is renamed into place, so a crash mid-build
    never leaves a half-written model that later loads. Builders on one machine (two worker
    processes starting together) take turns on a lock file and check again once they hold it,
    so one builds and the others load its result; a finished folder is never removed under
    a process that may be loading it.
    """
    if is_built(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(folder):
            return folder
        torch.manual_seed(INIT_SEED)
        pipe = BUILDERS[name]()
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
        try:
            pipe.save_pretrained(tmp)
            (tmp / BUILD_MARKER).write_text(json.dumps({"version": BUILD_VERSION, "seed": INIT_SEED}))
            if folder.exists():  # an older build version: replaced while we hold the lock
                shutil.rmtree(folder)
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


TINY_UPSCALER = "tiny-esrgan-x4"
UPSCALER_BUILD_VERSION = 1


def ensure_tiny_upscaler(models_dir: Path) -> Path:
    """A tiny random-weight Real-ESRGAN x4 (the real RRDBNet, 8 features, 1 block) in
    ``<models_dir>/upscalers/tiny-esrgan-x4.safetensors``, built once, like the tiny pipelines.

    The growth channels stay at the real 32: spandrel's ESRGAN loader fixes them at 32, so the
    same file loads through spandrel on a GPU host and through the built-in RRDBNet here.
    """
    from safetensors.torch import save_file

    from generation.engine.upscale import RRDBNet, upscalers_dir

    folder = upscalers_dir(models_dir)
    path = folder / f"{TINY_UPSCALER}.safetensors"
    # One metadata key: safetensors writes several in no fixed order, and the bytes must not vary.
    marker = {"hoffdesk_tiny": f"version {UPSCALER_BUILD_VERSION}, seed {INIT_SEED}"}
    if _upscaler_built(path, marker):
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{TINY_UPSCALER}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _upscaler_built(path, marker):
            return path
        torch.manual_seed(INIT_SEED)
        net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=32, scale=4)
        fd, tmp = tempfile.mkstemp(prefix=f".{TINY_UPSCALER}-", suffix=".safetensors", dir=folder)
        try:
            with open(fd, "wb"):
                pass
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp, metadata=marker)
            Path(tmp).rename(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def _upscaler_built(path: Path, marker: dict[str, str]) -> bool:
    if not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return bool(fh.metadata() == marker)
    except Exception:  # a damaged file: build it again
        return False
