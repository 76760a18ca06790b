"""Small random-initialised diffusers UNet2DModel checkpoints and their outputs.

    $(scripts/fixture-env.sh) python/make_unet_fixtures.py

For each case: tests/fixtures/unet/<case>/unet/ (diffusers' save_pretrained, safetensors)
and tests/fixtures/unet/<case>/io.json: a batch of 3 inputs (sample, timesteps, class
labels) and diffusers' output in eval mode. Together the cases cover every supported
config key: multi-head attention, class labels, dropout, learned variance (2C outputs),
flip_sin_to_cos false with freq_shift 1, downsample_padding 0, one attention head,
norm_eps, no middle block, no middle attention, centred input, mid_block_scale_factor,
time_embedding_dim, a non-square sample, attention at 7x7 with attn_norm_num_groups.
"""

import json
import pathlib
import shutil

import torch
import diffusers
from diffusers import UNet2DModel

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "unet"

CASES = {
    "mha_classes": dict(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8, norm_num_groups=8, num_class_embeds=5, dropout=0.1),
    "learned_variance": dict(
        sample_size=8, in_channels=2, out_channels=4, block_out_channels=(16, 16, 32), layers_per_block=1,
        down_block_types=("AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=None, norm_num_groups=8, flip_sin_to_cos=False, freq_shift=1,
        downsample_padding=0, norm_eps=1e-6, mid_block_type=None),
    "no_mid_attention": dict(
        sample_size=(8, 12), in_channels=3, out_channels=3, block_out_channels=(16, 24), layers_per_block=2,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8, add_attention=False, center_input_sample=True, mid_block_scale_factor=2.0,
        time_embedding_dim=48, attention_head_dim=8),
    "digits_like": dict(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(16, 32, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=16, norm_num_groups=8, attn_norm_num_groups=4, num_class_embeds=10,
        mid_block_scale_factor=1.5),
}


def f32(t):
    return [float(v) for v in t.detach().to(torch.float32).flatten().tolist()]


def main():
    for i, (name, cfg) in enumerate(CASES.items()):
        torch.manual_seed(100 + i)
        model = UNet2DModel(**cfg)
        with torch.no_grad():
            for p in model.parameters():  # random everywhere, norms and biases included
                p.copy_(torch.randn_like(p) * (0.5 / max(1, p[0].numel()) ** 0.5))
        model.eval()
        d = OUT / name
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d / "unet", safe_serialization=True)
        h, w = cfg["sample_size"] if isinstance(cfg["sample_size"], tuple) else (cfg["sample_size"],) * 2
        sample = torch.randn(3, cfg["in_channels"], h, w)
        timesteps = torch.tensor([0, 421, 999])
        labels = torch.tensor([0, 3, cfg["num_class_embeds"] - 1]) if cfg.get("num_class_embeds") else None
        with torch.no_grad():
            out = model(sample, timesteps, class_labels=labels).sample
        io = {"generated_by": "python/make_unet_fixtures.py", "diffusers": diffusers.__version__,
              "torch": torch.__version__, "shape": list(sample.shape), "sample": f32(sample),
              "timesteps": timesteps.tolist(), "class_labels": labels.tolist() if labels is not None else None,
              "output_shape": list(out.shape), "output": f32(out),
              "parameters": sum(p.numel() for p in model.parameters()),
              "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()}}
        (d / "io.json").write_text(json.dumps(io, separators=(",", ":")))
        print(name, io["parameters"], "parameters, output max", float(out.abs().max()))


if __name__ == "__main__":
    main()
