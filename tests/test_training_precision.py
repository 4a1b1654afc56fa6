"""Mixed precision for training (training/precision.py) and the fp32 attention it relies on.

Whether this CPU has native bf16 differs between CI machines; the tests assert the choice
each kind of machine must make and run bf16 autocast itself, which works (emulated) on any CPU.
"""
import pytest
import torch

from training.precision import training_precision
from zs3_core.backends.auto import cpu_has_native_bf16
from zs3_core.clip import CLIP, ClipConfig
from zs3_core.clip.attention import attention


def test_amp_off_trains_in_fp32_everywhere():
    for device in ("cpu", "cuda"):
        choice = training_precision(False, torch.device(device))
        assert choice.dtype == torch.float32 and not choice.mixed and not choice.needs_grad_scaler


def test_amp_on_a_cpu_uses_bf16_only_where_the_cpu_has_it_natively():
    choice = training_precision(True, torch.device("cpu"))
    assert choice.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert not choice.needs_grad_scaler
    assert choice.reason.startswith("amp: bf16" if cpu_has_native_bf16() else "amp: fp32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda_scales_gradients_only_for_fp16():
    choice = training_precision(True, torch.device("cuda"))
    assert choice.needs_grad_scaler == (choice.dtype == torch.float16)


def test_attention_runs_in_fp32_while_training_under_cpu_autocast_and_in_bf16_for_inference():
    q, k, v = (torch.randn(2, 2, 5, 8) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = attention(q, k, v, causal=False)
        with torch.no_grad():
            inferred = attention(q, k, v, causal=False)
    assert trained.dtype == torch.float32 and inferred.dtype == torch.bfloat16
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(trained, reference, atol=1e-6)


def test_a_bf16_autocast_training_step_matches_fp32_gradients_closely():
    torch.manual_seed(0)
    clip = CLIP(ClipConfig.tiny()).train()
    images, tokens = torch.randn(4, 3, 128, 128), torch.randint(1, 400, (4, 16))

    def gradients(mixed: bool) -> torch.Tensor:
        clip.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            image_features, text_features, scale = clip(images, tokens)
        loss = (scale.float() * image_features.float() @ text_features.float().T).logsumexp(1).mean()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in clip.visual.parameters() if p.grad is not None])

    full, mixed = gradients(False), gradients(True)
    assert torch.isfinite(mixed).all()
    cosine = torch.nn.functional.cosine_similarity(full, mixed, dim=0)
    assert cosine > 0.98, f"bf16 gradients point elsewhere (cosine {cosine:.3f})"
