"""The device plumbing that needs no GPU to check: the one device parser, autocast choices, the
process-group backend for (CUDA available?), which op backend runs where, the autocast path of
iterated learning (CPU autocast), and the CPU path of fusion against a direct computation."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from ltbench import ops
from ltbench.utils import device as D
from ltbench.utils import dist as U


# ---- resolve_device -------------------------------------------------------------------------


def test_resolve_device_on_a_machine_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.resolve_device("auto") == D.resolve_device(None) == D.resolve_device(" CPU ") == torch.device("cpu")
    assert D.resolve_device(torch.device("meta")) == torch.device("meta")  # a test double's device, as given
    for bad in ("cuda", "cuda:0", torch.device("cuda", 1)):
        with pytest.raises(ValueError, match="no CUDA device.*--device cpu"):
            D.resolve_device(bad)
    for bad in ("gpu", "cuda:x", "mps", ""):
        with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
            D.resolve_device(bad)
    with pytest.raises(TypeError):
        D.resolve_device(0)


def test_resolve_device_with_cuda(monkeypatch):
    """auto and an unindexed cuda mean this process's current device (a torchrun rank's own)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert D.resolve_device("auto") == D.resolve_device("cuda") == D.resolve_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert D.resolve_device("cuda:0") == torch.device("cuda", 0) and D.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        D.resolve_device("cuda:2")


def test_autocast_choices(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert D.autocast_dtype("auto", cpu) is None and D.autocast_dtype("fp32", cuda) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert D.autocast_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert D.autocast_dtype("auto", cuda) is None  # pre-Ampere: float32, not float16 behind the user's back
    assert D.autocast_dtype("bf16", cpu) == torch.bfloat16 and D.autocast_dtype("fp16", cuda) == torch.float16
    with pytest.raises(ValueError, match="gradient scaler"):
        D.autocast_dtype("fp16", cuda, allow_fp16=False)
    with pytest.raises(ValueError, match="precision must be"):
        D.autocast_dtype("half", cpu)
    assert D.loader_kwargs(cuda) == {"pin_memory": True} and D.loader_kwargs(cpu) == {"pin_memory": False}
    assert D.channels_last(cuda) and not D.channels_last(cpu)


# ---- the process group ----------------------------------------------------------------------


def test_process_group_backend_for_cuda_or_not(monkeypatch):
    monkeypatch.delenv("LTBENCH_DIST_BACKEND", raising=False)
    assert U.process_group_backend(True) == "cpu:gloo,cuda:nccl"
    assert U.process_group_backend(False) == "gloo"
    monkeypatch.setenv("LTBENCH_DIST_BACKEND", "gloo")
    assert U.process_group_backend(True) == "gloo"


def test_init_distributed_joins_the_two_backend_group_with_cuda(monkeypatch):
    """What a GPU rank does, recorded: its own device first, then one group for both."""
    import torch.distributed as dist

    calls = []
    monkeypatch.delenv("LTBENCH_DIST_BACKEND", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    assert U.init_distributed()
    assert calls == [("set_device", 1), ("init", "cpu:gloo,cuda:nccl")]
    calls.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert U.init_distributed() and calls == [("init", "gloo")]


def test_collectives_stage_cpu_tensors_through_the_gpu_in_an_nccl_only_group(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(dist, "get_backend", lambda *a: "nccl")
    assert U._collective_device(torch.zeros(2)) == torch.device("cuda", 3)
    monkeypatch.setattr(dist, "get_backend", lambda *a: "cpu:gloo,cuda:nccl")
    assert U._collective_device(torch.zeros(2)) == torch.device("cpu")


# ---- which op backend runs where ------------------------------------------------------------


def test_backend_for_each_device():
    built = ops.extension_available()
    assert ops.backend_for("cpu") == ("fused-cpu" if built else "reference")
    assert ops.backend_for("meta") == "reference"
    has_cuda_kernels = built and torch._C._dispatch_has_kernel_for_dispatch_key("ltbench::mask_fuse", "CUDA")
    assert ops.backend_for("cuda:0") == ("fused-cuda" if has_cuda_kernels else "reference")


def test_ops_dispatch_by_the_input_device(monkeypatch):
    """A device without kernels gets the references (a CPU-only build never sends CUDA tensors
    to a dispatcher entry it lacks)."""
    from ltbench.ops import method_ops

    g = torch.Generator().manual_seed(0)
    zt, zh = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    ms, mg, mr = (torch.rand(2, 4, 4, generator=g) < 0.5 for _ in range(3))
    calls = []
    real = method_ops.mask_fuse_reference
    monkeypatch.setattr(method_ops, "mask_fuse_reference", lambda *a: calls.append(1) or real(*a))
    out = ops.mask_fuse(zt, zh, ms, mg, mr)
    assert calls == ([] if ops.backend_for("cpu") == "fused-cpu" else [1])
    monkeypatch.setattr(method_ops, "_FUSED_CPU", False)
    assert torch.equal(ops.mask_fuse(zt, zh, ms, mg, mr), out) and calls[-1:] == [1]
    meta = ops.mask_fuse(*(t.to("meta") for t in (zt, zh, ms, mg, mr)))
    assert meta.device.type == "meta" and len(calls) == 2 + (ops.backend_for("cpu") != "fused-cpu")


# ---- iterated learning under autocast (the CUDA default, run on the CPU) -------------------


def test_il_under_bf16_autocast_keeps_the_draw_and_the_loss_in_float32(tmp_path, monkeypatch):
    import ltbench.method.il as il

    seen = []
    real_sample, real_bce = il.ops.channel_sample, il.ops.imitation_bce
    monkeypatch.setattr(il.ops, "channel_sample", lambda l, u: seen.append(("sample", l.dtype, u.dtype, torch.is_autocast_enabled("cpu"))) or real_sample(l, u))
    monkeypatch.setattr(il.ops, "imitation_bce", lambda l, k: seen.append(("bce", l.dtype, k.dtype, torch.is_autocast_enabled("cpu"))) or real_bce(l, k))
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(48, 4, 8, 8, generator=g), (torch.rand(48, 3, generator=g) < 0.3).float()
    cfg = il.ILConfig(sparse_channels=8, generations=2, ngf=4, max_depth=2, batch_size=24, bn_recalibration=24)
    model = il.train_il(TensorDataset(z, y, torch.arange(48)), None, cfg, str(tmp_path), progress=False, device="cpu", precision="bf16")
    assert seen and all(dt == torch.float32 and not on for _, dt, _, on in seen)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    log = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    assert all(np.isfinite(e["interaction"]["loss"]) for e in log) and np.isfinite(log[0]["imitation"]["loss"])
    meta = json.load(open(tmp_path / "config.json"))
    assert meta["device"] == "cpu" and meta["autocast"] == "bfloat16" and meta["ops_backend"] == ops.backend_for("cpu")
    with pytest.raises(ValueError, match="gradient scaler"):
        il.train_il(TensorDataset(z, y, torch.arange(48)), None, cfg, str(tmp_path / "fp16"), progress=False, device="cpu", precision="fp16")


# ---- the CPU path of fusion, against the computation written out ---------------------------


def test_fuse_batch_on_the_cpu_is_the_formula_step_by_step():
    """device="cpu" (and the model's own device, None) compute exactly: S, the masks of Eq. 6,
    M^R from each sample's generator drawn on the CPU, the select of Eq. 7-12, D."""
    from ltbench.method.fusion import fuse_batch
    from ltbench.method.il import ILConfig, ILModel
    from ltbench.utils.dist import sample_generator

    torch.manual_seed(0)
    model = ILModel((4, 8, 8), 3, ILConfig(sparse_channels=8, ngf=4, max_depth=2)).eval()
    g = torch.Generator().manual_seed(1)
    zt, zh = torch.randn(5, 4, 8, 8, generator=g), torch.randn(5, 4, 8, 8, generator=g)
    ct, ch = torch.rand(5, 8, 8, generator=g), torch.rand(5, 8, 8, generator=g)
    p = torch.rand(5, generator=g)
    gens = lambda: [sample_generator(7, 2, i) for i in range(5)]  # noqa: E731
    with torch.no_grad():
        u = torch.stack([torch.rand(8, 8, generator=x) for x in gens()])
        expected = model.decoder(ops.mask_fuse_reference(model.sparse(zt), model.sparse(zh), ct > 0.4, ch < 0.3, u < p[:, None, None]))
    for device in ("cpu", None, torch.device("cpu")):
        assert torch.equal(fuse_batch(model, zt, zh, ct, ch, 0.4, 0.3, p, gens(), device=device), expected)
