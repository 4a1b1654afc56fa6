"""Reading Dockerfiles the way Docker does (continuations joined, comments dropped, ARG
defaults substituted), for the tests of docker/."""
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILES = ["Dockerfile.jetson", "Dockerfile.x86"]
CACHE_MOUNT, MODELS_MOUNT = "/var/cache/zs3", "/models"


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in (DOCKER / name).read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        current += raw.rstrip().removesuffix("\\") + " " if raw.rstrip().endswith("\\") else raw
        if not raw.rstrip().endswith("\\"):
            lines.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "") for line in lines]


def build_args(name: str) -> dict[str, str]:
    return dict(arg.split("=", 1) for kind, arg in instructions(name) if kind == "ARG" and "=" in arg)


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def pip_installs(name: str) -> list[list[str]]:
    """Every `pip install` command of the image's RUN lines, as argument lists."""
    commands = []
    for kind, args in instructions(name):
        if kind != "RUN":
            continue
        for command in re.split(r"&&|;", expand(args, build_args(name))):
            words = shlex.split(command)
            if "pip" in " ".join(words[:4]) and "install" in words:
                commands.append(words)
    return commands
