"""Importing foreign checkpoints as parents: timm ViT state dicts (vit-elastic) and diffusers
UNet2DModel (unet-blocks). Each test builds the foreign network itself and checks that the
imported parent computes what it computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spaces
from spaces import CheckpointError, InvalidConfigError
from spaces.conformance import check_networks, check_space


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    return tmp_path


# -- a timm VisionTransformer, written from timm's module layout (vision_transformer.py) -----
class _TimmAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _TimmLayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(dim))

    def forward(self, x):
        return x * self.gamma


class _TimmBlock(nn.Module):
    def __init__(self, dim, heads, ratio, ls):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _TimmAttention(dim, heads)
        self.ls1 = _TimmLayerScale(dim) if ls else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim)
        self.ls2 = _TimmLayerScale(dim) if ls else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _TimmViT(nn.Module):
    def __init__(self, img=8, patch=2, cin=1, classes=10, dim=32, depth=3, heads=4, ratio=2, pool="token", ls=False,
                 fc_norm=None):
        super().__init__()
        self.pool = self.global_pool = pool
        self.use_fc_norm = pool == "avg" if fc_norm is None else fc_norm
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(cin, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, dim) * 0.1)
        self.blocks = nn.Sequential(*[_TimmBlock(dim, heads, ratio, ls) for _ in range(depth)])
        if self.use_fc_norm:
            self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        x = self.blocks(x)
        if not self.use_fc_norm:
            x = self.norm(x)
        x = x[:, 0] if self.pool == "token" else x[:, 1:].mean(1)
        return self.head(self.fc_norm(x) if self.use_fc_norm else x)


def _timm_vit(**kw) -> _TimmViT:
    torch.manual_seed(0)
    net = _TimmViT(**kw).eval()
    with torch.no_grad():  # LayerNorm affine parameters away from their 1/0 init: slicing must keep them
        for m in net.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net


@pytest.mark.parametrize("kw", [{}, {"pool": "avg", "ls": True, "cin": 3, "img": 12, "patch": 4, "heads": 2},
                                {"pool": "avg", "fc_norm": False}])
def test_timm_vit_imports_with_the_same_logits(cache, tmp_path, kw):
    ref = _timm_vit(**kw)
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    p = spaces.import_parent("vit-elastic", "timm-test", path, format="timm", num_heads=ref.blocks[0].attn.num_heads,
                             global_pool=kw.get("pool"))
    x = torch.randn(4, kw.get("cin", 1), kw.get("img", 8), kw.get("img", 8))
    with torch.no_grad():
        assert torch.allclose(p.module(x), ref(x), atol=1e-5)
    space = spaces.get_space("vit-elastic", parent="timm-test")
    assert "s1.attn" not in space._choices and space.config["image_size"] == kw.get("img", 8)
    with torch.no_grad():  # the model object: heads and pooling read from it
        q = spaces.import_parent("vit-elastic", "timm-obj", ref, format="timm")
        assert torch.allclose(q.module(x), ref(x), atol=1e-5)
    with torch.no_grad():  # the largest subnet is the imported network
        assert torch.allclose(space.materialize(space.largest())(x), ref(x), atol=1e-5)


def test_imported_vit_parent_is_a_conforming_vit_elastic_parent(cache):
    ref = _timm_vit()
    p = spaces.import_parent("vit-elastic", "timm-test", ref.state_dict(), format="timm", num_heads=4)
    space = spaces.get_space("vit-elastic", parent="timm-test")
    check_space(space, n=12)
    check_networks(space, p.module)
    m = space.evaluate(space.largest(), ["top1", "loss", "params", "mmacs"])
    assert 0 <= m["top1"] <= 100 and m["params"] == sum(t.numel() for t in ref.parameters())
    assert "timm-test" in spaces.list_parents()
    assert space.config_options()["parent"].values[-1] == "timm-test"
    small = space.from_params({k: v[0] for k, v in space._choices.items()})
    net = space.materialize(small)
    assert set(net.state_dict()) <= set(ref.state_dict())  # timm's names: a subnet loads back into timm's layout
    assert net.state_dict()["blocks.0.attn.qkv.weight"].shape == (3 * 8, 8)


def test_timm_import_bad_input(cache):
    ref = _timm_vit()
    sd = ref.state_dict()
    with pytest.raises(CheckpointError, match="num_heads: got 5"):
        spaces.import_parent("vit-elastic", "t", sd, format="timm", num_heads=5)
    with pytest.raises(InvalidConfigError, match="format: got 'diffusers'; valid: timm"):
        spaces.import_parent("vit-elastic", "t", sd, format="diffusers", num_heads=4)
    with pytest.raises(InvalidConfigError, match="name"):
        spaces.import_parent("vit-elastic", "vit-small", sd, format="timm", num_heads=4)
    bad = dict(sd)
    bad["blocks.1.mlp.fc1.weight"] = bad["blocks.1.mlp.fc1.weight"][:, :16]
    with pytest.raises(CheckpointError, match=r"'blocks.1.mlp.fc1.weight' has shape \(64, 16\)"):
        spaces.import_parent("vit-elastic", "t", bad, format="timm", num_heads=4)
    bad = {k: v for k, v in sd.items() if k != "blocks.2.norm2.bias"}
    with pytest.raises(CheckpointError, match="missing 1 tensor.*blocks.2.norm2.bias"):
        spaces.import_parent("vit-elastic", "t", bad, format="timm", num_heads=4)
    bad = {**sd, "blocks.0.attn.proj.bias": torch.full_like(sd["blocks.0.attn.proj.bias"], float("nan"))}
    with pytest.raises(CheckpointError, match="'blocks.0.attn.proj.bias' holds NaN"):
        spaces.import_parent("vit-elastic", "t", bad, format="timm", num_heads=4)
    with pytest.raises(CheckpointError, match="not a timm VisionTransformer"):
        spaces.import_parent("vit-elastic", "t", {"conv.weight": torch.zeros(1)}, format="timm", num_heads=4)
    with pytest.raises(CheckpointError, match="is not a file"):
        spaces.import_parent("vit-elastic", "t", cache / "nope.pth", format="timm", num_heads=4)
    with pytest.raises(CheckpointError, match="num_heads: missing"):
        spaces.import_parent("vit-elastic", "t", sd, format="timm")
    with pytest.raises(InvalidConfigError, match="option heads: got 4; valid: options of the timm importer: "
                                                 "num_heads, global_pool"):
        spaces.import_parent("vit-elastic", "t", sd, format="timm", heads=4)
    with pytest.raises(CheckpointError, match="global_pool: got 'max'"):
        spaces.import_parent("vit-elastic", "t", sd, format="timm", num_heads=4, global_pool="max")
    bad = {**sd, "pos_embed": sd["pos_embed"][:, :16]}
    with pytest.raises(CheckpointError, match="no_embed_class"):
        spaces.import_parent("vit-elastic", "t", bad, format="timm", num_heads=4)
    bad = {k: v for k, v in sd.items() if not k.startswith("head.")}
    with pytest.raises(CheckpointError, match="without a classifier head"):
        spaces.import_parent("vit-elastic", "t", bad, format="timm", num_heads=4)
    assert "t" not in spaces.list_parents()  # nothing half-written
    spaces.import_parent("vit-elastic", "t", sd, format="timm", num_heads=4)
    with pytest.raises(InvalidConfigError, match="overwrite"):
        spaces.import_parent("vit-elastic", "t", sd, format="timm", num_heads=4)
    spaces.import_parent("vit-elastic", "t", sd, format="timm", num_heads=2, overwrite=True)
    assert spaces.get_space("vit-elastic", parent="t").parent_config.stages[0].heads == 2
    with pytest.raises(InvalidConfigError, match="space.image_size: got 16; valid: 8"):
        spaces.get_space("vit-elastic", parent="t", image_size=16)
    with pytest.raises(InvalidConfigError, match="space.seed: got 1; valid: 0"):
        spaces.get_space("vit-elastic", parent="t", seed=1)


# -- diffusers UNet2DModel ------------------------------------------------------------------
def _tiny_unet2d(**kw):
    diffusers = pytest.importorskip("diffusers", reason="the diffusers importer is tested with diffusers installed")
    torch.manual_seed(0)
    cfg = dict(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32, 32), layers_per_block=2,
               down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
               up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8)
    net = diffusers.UNet2DModel(**{**cfg, **kw}).eval()
    with torch.no_grad():  # diffusers zero-initialises nothing we rely on, but make every tensor matter
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return net


@pytest.mark.parametrize("kw", [{}, {"in_channels": 3, "out_channels": 3, "sample_size": 8,
                                     "block_out_channels": (16, 24), "down_block_types": ("AttnDownBlock2D", "DownBlock2D"),
                                     "up_block_types": ("UpBlock2D", "AttnUpBlock2D"), "attention_head_dim": None,
                                     "downsample_padding": 0, "layers_per_block": 1, "flip_sin_to_cos": False,
                                     "freq_shift": 1}])
def test_diffusers_unet_imports_with_the_same_output(cache, tmp_path, kw):
    ref = _tiny_unet2d(**kw)
    ref.save_pretrained(tmp_path / "unet")
    p = spaces.import_parent("unet-blocks", "unet2d", tmp_path / "unet", format="diffusers")
    c, side = ref.config.in_channels, ref.config.sample_size
    x, t = torch.randn(3, c, side, side), torch.tensor([0.0, 10.0, 999.0])
    with torch.no_grad():
        assert torch.allclose(p.module(x, t), ref(x, t).sample, atol=1e-5)
    space = spaces.get_space("unet-blocks", parent="unet2d")
    assert not any(k.endswith(".width") for k in space._choices)
    assert space.config["image_size"] == side
    with torch.no_grad():
        assert torch.allclose(space.materialize(space.largest())(x, t), ref(x, t).sample, atol=1e-5)


def test_imported_diffusers_parent_is_a_conforming_unet_blocks_parent(cache):
    ref = _tiny_unet2d()
    p = spaces.import_parent("unet-blocks", "unet2d", ref, format="diffusers")
    space = spaces.get_space("unet-blocks", parent="unet2d")
    # widths change inside diffusers' first down and up ResNet blocks: those stay; attention always goes
    assert "d2.r0" not in space._choices and "d2.r1" in space._choices and "u3.r0" in space._choices
    assert "u1.r0" not in space._choices and "u2.r0" in space._choices and "d2.a0" in space._choices
    check_space(space, n=12)
    check_networks(space, p.module, atol=1e-4)
    full = space.evaluate(space.largest(), ["output_mse", "denoise_loss", "params", "mmacs"])
    assert full["output_mse"] == 0 and full["params"] == sum(t.numel() for t in ref.parameters())
    base = space.baseline("bk-base")
    removed = set(space.subnet(base).removed)
    assert {"d1.r1", "d2.r1", "d2.a1", "u3.r1", "u3.a1", "u1.r1"} <= removed
    m = space.evaluate(base, ["output_mse", "params", "mmacs"])
    assert m["output_mse"] > 0 and m["params"] < full["params"] and m["mmacs"] < full["mmacs"]
    # the dense subnet's state dict is diffusers': it loads into UNet2DModel's names
    assert set(space.materialize(base).state_dict()) < set(ref.state_dict())
    with pytest.raises(spaces.InvalidArchitectureError, match="every ResNet block of stage d1"):
        space.from_params({**space.largest().params_dict(), "d1.r0": 0, "d1.r1": 0})


def test_diffusers_stage_with_one_resnet_keeps_it(cache):
    ref = _tiny_unet2d(layers_per_block=1)
    spaces.import_parent("unet-blocks", "one", ref, format="diffusers")
    space = spaces.get_space("unet-blocks", parent="one")
    assert "d1.r0" not in space._choices and "d2.a0" in space._choices  # each down stage has one ResNet block


def test_diffusers_import_bad_input(cache, tmp_path):
    with pytest.raises(CheckpointError, match="is not a directory"):
        spaces.import_parent("unet-blocks", "u", tmp_path / "missing", format="diffusers")
    ref = _tiny_unet2d(time_embedding_type="fourier")
    with pytest.raises(CheckpointError, match="time_embedding_type is 'fourier'; unet-blocks imports 'positional'"):
        spaces.import_parent("unet-blocks", "u", ref, format="diffusers")
    ref = _tiny_unet2d()
    ref.save_pretrained(tmp_path / "unet")
    from safetensors.torch import load_file, save_file

    sd = load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    sd["mid_block.resnets.1.conv1.weight"] = sd["mid_block.resnets.1.conv1.weight"][:, :16].contiguous()
    save_file(sd, tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match=r"'mid_block.resnets.1.conv1.weight' has shape \(32, 16, 3, 3\)"):
        spaces.import_parent("unet-blocks", "u", tmp_path / "unet", format="diffusers")
    assert "u" not in spaces.list_parents()


def test_cli_imports_a_timm_checkpoint(cache, tmp_path, capsys):
    from nas.cli import main

    torch.save(_timm_vit().state_dict(), tmp_path / "vit.pth")
    assert main(["parents", "import", "from-cli", "--space", "vit-elastic", "--from", str(tmp_path / "vit.pth"),
                 "--format", "timm", "--option", "num_heads=4"]) == 0
    assert "search it with parent=from-cli" in capsys.readouterr().out
    assert main(["parents", "list"]) == 0
    assert "from-cli [space vit-elastic]: imported from timm" in capsys.readouterr().out
    assert main(["parents", "import", "from-cli", "--space", "vit-elastic", "--from", str(tmp_path / "vit.pth"),
                 "--format", "timm", "--option", "num_heads=4"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["parents", "import", "x", "--space", "vit-elastic", "--from", str(tmp_path / "vit.pth"),
                 "--format", "timm"]) == 2
    assert "num_heads" in capsys.readouterr().err
