"""The documentation stays true: every link resolves, every command shown parses (and the ones this machine can run
do run), and docs/CLI.md lists every option of every command and no option that does not exist."""
from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from asr.cli import build_parser
from tests.helpers import espeak

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def anchors(page: Path) -> set[str]:
    reference = _cli_reference()
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {reference.anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def fenced(page: Path, languages=("bash",)) -> list[str]:
    """The lines of the page's fenced blocks in these languages (comments cut, continuations joined)."""
    lines = []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        if language in languages:
            body = body.replace("\\\n", " ")
            lines += [line.split("  #")[0].strip() for line in body.splitlines() if line.strip()]
    return lines


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_image_resolves(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: link to {target}: no such file"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: link to {target}: no such heading"


def asr_commands() -> list[tuple[str, list[str]]]:
    """(page, argv) of every `asr ...` command in the pages' bash blocks (placeholders `...` left out)."""
    found = []
    for page in PAGES:
        for line in fenced(page):
            for part in re.split(r"\s(?:&&|\||;)\s", line):
                words = shlex.split(part.split(" > ")[0])
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # environment assignments
                    words = words[1:]
                if words[:1] == ["asr"] and "..." not in words:
                    found.append((page.name, words[1:]))
    return found


def test_every_asr_command_in_the_docs_parses():
    commands = asr_commands()
    assert len(commands) > 30
    for page, argv in commands:
        command = next((a for a in argv if not a.startswith("-")), None)
        try:
            build_parser(command).parse_args(argv)
        except SystemExit as exit:
            if exit.code:  # --help and --version exit 0
                pytest.fail(f"{page}: `asr {' '.join(argv)}` does not parse")


def test_the_commands_this_machine_can_run_run(tmp_path):
    """Every documented `asr transcribe` of files in the repository, every `asr lm info`, and the first documented
    `asr eval` of a shipped model, on a small corpus made here, run as shown."""
    runnable = [argv for _, argv in asr_commands()
                if argv[:1] == ["transcribe"] and all((ROOT / a).exists() for a in argv[1:] if not a.startswith("-"))
                or argv[:2] == ["lm", "info"] and all(a == "default" or a.startswith("-") for a in argv[2:])]
    assert ["transcribe", "samples/hello.wav", "samples/weather.flac"] in runnable, "the quick start"
    for argv in runnable:
        result = subprocess.run([sys.executable, "-m", "asr", *argv], cwd=ROOT, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"asr {' '.join(argv)}: {result.stderr[-500:]}"
        assert result.stdout.strip()
    chapter = tmp_path / "corpus" / "1" / "1"
    chapter.mkdir(parents=True)
    espeak("hello world this is a test", chapter / "1-1-0000.wav")
    (chapter / "1-1.trans.txt").write_text("1-1-0000 HELLO WORLD THIS IS A TEST\n")
    argv = next(argv for _, argv in asr_commands() if argv[:1] == ["eval"] and "stream" in argv)
    argv = [str(tmp_path / "corpus") if a.startswith("data/") else str(tmp_path / a) if a.endswith(".jsonl") else a
            for a in argv]
    result = subprocess.run([sys.executable, "-m", "asr", *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and '"wer"' in result.stdout, result.stderr[-500:]


def test_python_module_help_in_the_docs_runs():
    modules = {line.split()[2] for page in PAGES for line in fenced(page) if line.startswith("python -m ")}
    assert "training.dev_suite" in modules
    for module in sorted(modules):
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout, f"python -m {module} --help: {result.stderr}"


def test_cli_reference_lists_every_option_and_no_other():
    reference = _cli_reference()
    page = (ROOT / "docs" / "CLI.md").read_text(encoding="utf-8")
    parsers = {**reference.asr_parsers(), **reference.module_parsers()}
    sections = dict(re.findall(r"^## (.+?)\n\n```\n(.*?)```", page, re.M | re.S))
    assert set(sections) == set(parsers), "regenerate: python docs/cli_reference.py > docs/CLI.md"
    for name, parser in parsers.items():
        shown = set(re.findall(r"^  (?:-\w[^,\n]*, )?(--[\w-]+)", sections[name], re.M))  # option rows
        assert reference.options(parser) == shown, (
            f"docs/CLI.md is out of date for `{name}`: regenerate it with python docs/cli_reference.py > docs/CLI.md")
