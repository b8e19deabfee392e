"""``python launch.py --help``: agentgen's groups, options, sweeps and keys, one line each, written from the
header comments of ``conf/`` and ``sweeps/`` into Hydra's help template (``conf/hydra/help/agentgen.yaml``).

Hydra's own ``--help`` composes the whole config and lists every group of the search path, which takes
seconds; launch.py prints the stored template itself (``print_help``), without Hydra. The template is
generated, not written by hand, so that it stays truthful: ``python -m agentgen.cli_help --write``
regenerates it, and tests/test_cli.py fails when it differs from what the conf files say.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
SWEEPS_DIR = ROOT / "sweeps"
HELP_FILE = CONF_DIR / "hydra" / "help" / "agentgen.yaml"
WIDTH = 118  # characters per line of the help text
HIDDEN_GROUPS = ("hydra",)  # Hydra's own groups: python launch.py --hydra-help
HIDDEN_SWEEPS = ("_common",)  # shared by the sweep files, not a sweep

USAGE = """\
agentgen: RL post-training of LLM agents on text environments (Sokoban, ALFWorld, ScienceWorld, WebShop).

Usage:
  python launch.py                                   the default run: SFT + GRPO on Sokoban, tiny model, CPU
  python launch.py env=alfworld think=false          one job, composed from config groups and keys
  python launch.py -m env=sokoban,sciworld seed=0,1  a sweep: one job per combination
  python launch.py -m +sweeps=gen_tax model=llama3_1_8b_instruct cluster=slurm_8gpu --plan
                                                     dry run of a sweep: jobs, grid, GPU-hours; nothing runs
  python launch.py env=alfworld cluster=slurm        one job submitted to Slurm (prints its job id and dirs)
"""

FLAGS = """\
Flags:
  -m, --multirun                  run every combination of the comma-separated values (a sweep)
  --plan                          print the jobs of a sweep, validated, with GPUs and GPU-hours; run nothing
  --cfg job [--resolve]           print the composed config of these overrides (every key: key=value)
  -sc install=bash                tab completion: eval "$(python launch.py -sc install=bash)"
  --info, --hydra-help            Hydra's search path and its own options
"""


def header_lines(path: Path) -> list[str]:
    """The leading comment block of a yaml file, without ``# @package`` lines and comment markers."""
    lines = []
    for raw in path.read_text().splitlines():
        if not raw.startswith("#"):
            break
        text = raw[1:]
        if text.strip().startswith("@package"):
            continue
        lines.append(text)
    return lines


def sentences(path: Path) -> list[str]:
    """The sentences of a file's header comment (its prose, before any example command)."""
    prose = []
    for text in header_lines(path):
        if text.startswith("   ") or not text.strip():  # an indented example command or an empty line
            if prose:
                break
            continue
        prose.append(text.strip())
    # a sentence ends with a full stop before a capital letter ("Shao et al. 2024" does not end one)
    return [s.rstrip(".:") for s in re.split(r"(?<=\.)\s+(?=[A-Z])", " ".join(prose)) if s]


def summary(path: Path, skip: int = 0) -> str:
    """One line about a config file: its first header sentence (with the next one when that is very short)."""
    parts = sentences(path)[skip:] or [""]
    if len(parts[0]) < 20 and len(parts) > 1:
        return f"{parts[0]}. {parts[1]}"
    return parts[0]


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    cut = text[: width - 3].rsplit(" ", 1)[0]
    return cut.rstrip(",;:(") + "..."


def defaults_comments() -> tuple[dict[str, str], dict[str, str]]:
    """(group -> its default option, group -> the comment beside it) from config.yaml's defaults list."""
    defaults, comments = {}, {}
    in_defaults = False
    for line in (CONF_DIR / "config.yaml").read_text().splitlines():
        if line.startswith("defaults:"):
            in_defaults = True
            continue
        if in_defaults and not line.startswith(" "):
            break
        m = re.match(r"\s*-\s*(?:optional\s+)?(\w+):\s*(\S+)\s*(?:#\s*(.*))?$", line)
        more = re.match(r"^\s+#\s*(.*)$", line)  # a comment continued on the next line
        if in_defaults and m:
            group = m.group(1)
            defaults[group] = m.group(2)
            comments[group] = (m.group(3) or "").strip()
        elif in_defaults and more and comments:
            comments[group] += " " + more.group(1).strip()
    for group, option in defaults.items():  # `scale: ${model}`: the option named by another group's default
        if m := re.fullmatch(r"\$\{(\w+)\}", option):
            defaults[group] = defaults.get(m.group(1), option)
    return defaults, comments


def plain_keys() -> list[tuple[str, str, str]]:
    """(key, default, comment) of config.yaml's own top-level keys."""
    keys = []
    for line in (CONF_DIR / "config.yaml").read_text().splitlines():
        m = re.match(r"^(\w+):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        if m and m.group(1) not in ("defaults", "hydra"):
            keys.append((m.group(1), m.group(2), (m.group(3) or "").strip()))
    return keys


def groups() -> list[str]:
    order = list(defaults_comments()[0])
    found = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in HIDDEN_GROUPS)
    return [g for g in order if g in found] + [g for g in found if g not in order]


def generate() -> str:
    """The help text, from the conf and sweep files as they are now."""
    defaults, comments = defaults_comments()
    out = [USAGE, "Config groups (group=option; * marks the default; a group not in the defaults: +group=option):"]
    for group in groups():
        note = comments.get(group) or ""
        if group not in defaults:
            note = f"not in the defaults: +{group}=<name>"
        out.append(_shorten(f"  {group}" + (f": {note}" if note else ""), WIDTH))
        options = sorted((CONF_DIR / group).glob("*.yaml"))
        firsts = {p: summary(p) for p in options}
        # options that open with the same sentence are told apart by the next one
        lines = {p: summary(p, skip=1) if list(firsts.values()).count(s) > 1 else s for p, s in firsts.items()}
        width = max(len(p.stem) for p in options) + 2
        for p in options:
            mark = "*" if defaults.get(group) == p.stem else " "
            out.append(_shorten(f"    {p.stem:<{width}}{mark} {lines[p]}", WIDTH))
    sweeps = [p for p in sorted(SWEEPS_DIR.glob("*.yaml")) if p.stem not in HIDDEN_SWEEPS]
    out += ["", "Sweeps (python launch.py -m +sweeps=<name> ...; each file in sweeps/ starts with its exact commands):"]
    width = max(len(p.stem) for p in sweeps) + 2
    out += [_shorten(f"    {p.stem:<{width}}  {summary(p)}", WIDTH) for p in sweeps]
    out += ["", "Keys (key=value; any key of the composed config can be set the same way, e.g. trainer.steps=20):"]
    keys = plain_keys() + [("init_from", "null", "start from another job's output dir (its final checkpoint)")]
    width = max(len(k) for k, _, _ in keys) + 2
    for key, default, note in keys:
        out.append(_shorten(f"    {key:<{width}}{note} (default: {default})", WIDTH))
    out += ["", FLAGS.rstrip("\n")]
    return "\n".join(out) + "\n"


def template_yaml(text: str) -> str:
    """``text`` as the hydra/help config: ``$`` doubled for string.Template, ``${`` escaped for OmegaConf."""
    body = text.replace("$", "$$").replace("$${", "\\$${")
    indented = "\n".join(("  " + ln) if ln else "" for ln in body.splitlines())
    return (
        "# Generated by `python -m agentgen.cli_help --write` from the header comments of conf/ and sweeps/:\n"
        "# do not edit (tests/test_cli.py checks it is current). launch.py prints it for --help.\n"
        f"template: |\n{indented}\n"
    )


def stored_help() -> str:
    """The help text as Hydra would print it from the stored template."""
    import string

    from omegaconf import OmegaConf

    return string.Template(OmegaConf.load(HELP_FILE).template).substitute()


def print_help() -> None:
    sys.stdout.write(stored_help())


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        HELP_FILE.parent.mkdir(parents=True, exist_ok=True)
        HELP_FILE.write_text(template_yaml(generate()))
        print(f"wrote {HELP_FILE.relative_to(ROOT)}")
    else:
        sys.stdout.write(generate())
