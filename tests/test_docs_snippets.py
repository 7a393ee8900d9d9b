"""The documentation's code runs: every ```python block of README.md and
docs/*.md, as a user would paste it.

A block runs unless the line just before its fence is a marker that says why
not: `<!-- snippet: needs-data (what) -->` for data this machine lacks, or
`<!-- snippet: not-run (why) -->`. The blocks of one file run in order in one
namespace (a later block uses what an earlier one made), in a fresh process
whose working directory and data and weights caches are a temporary
directory. The API pages list every public name of each package.
"""

import glob
import os
import re
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(needs-data|not-run)\b(.*?)-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*snippet:")
PYTHON = ("python", "py", "python3")


def markdown_files():
    files = [os.path.join(REPO, "README.md")]
    files += sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
    return [os.path.relpath(f, REPO) for f in files]


def code_blocks(path):
    """`(language, first line number, code, marker or None)` per fenced block.

    A marker is `(kind, reason)`, from the line just before the fence.
    """
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, ticks, language = match.groups()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(ticks)
                                      and lines[i].strip().strip("`") == ""):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        previous = lines[start - 2] if start >= 2 else ""
        marker = MARKER.match(previous)
        marker = (marker.group(1), marker.group(2).strip(" ()")) if marker else None
        if marker is None and ANY_MARKER.search(previous):
            marker = ("malformed", previous.strip())
        blocks.append((language.lower(), start + 1, textwrap.dedent("\n".join(body)), marker))
    return blocks


def runnable_blocks(path):
    return [(line, code) for language, line, code, marker in code_blocks(path)
            if language in PYTHON and marker is None]


def test_every_python_block_runs_or_says_why_not():
    problems, counts = [], {"run": 0, "needs-data": 0, "not-run": 0}
    for path in markdown_files():
        for language, line, _, marker in code_blocks(path):
            if marker is None:
                counts["run"] += language in PYTHON
                continue
            kind, reason = marker
            if kind == "malformed":
                problems.append(f"{path}:{line}: malformed marker {reason!r} "
                                "(`<!-- snippet: needs-data (what) -->` or "
                                "`<!-- snippet: not-run (why) -->`)")
            elif language not in PYTHON:
                problems.append(f"{path}:{line}: a snippet marker before a {language!r} block")
            elif not reason:
                problems.append(f"{path}:{line}: the {kind} marker gives no reason")
            else:
                counts[kind] += 1
    assert not problems, "\n".join(problems)
    assert counts["run"] >= 3, counts  # the README's quick start at least


RUNNER = r"""
import sys, traceback
namespace = {"__name__": "__main__"}
for name, line, code in BLOCKS:
    print(f"--- {name}, block at line {line}", flush=True)
    try:
        exec(compile(code, f"{name} (block at line {line})", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: {name}, block at line {line}", flush=True)
        sys.exit(1)
"""


@pytest.mark.parametrize("path", [p for p in markdown_files() if runnable_blocks(p)])
def test_python_blocks_run(path, tmp_path):
    blocks = [(path, line, code) for line, code in runnable_blocks(path)]
    script = tmp_path / "run_blocks.py"
    script.write_text(f"BLOCKS = {blocks!r}\n{RUNNER}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [REPO, env.get("PYTHONPATH", "")] if p)
    env["METRIX_TF_DATA_DIR"] = str(tmp_path / "data")
    env["METRIX_TF_CACHE"] = str(tmp_path / "cache")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["MPLBACKEND"] = "Agg"
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([sys.executable, str(script)], cwd=work, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-4000:] + "\n" + result.stderr[-6000:])


def _public_names(package):
    """The names `metrix_tf/<package>/__init__.py` imports from its modules
    (constants aside), and for the losses each loss file's `__all__`."""
    folder = os.path.join(REPO, "metrix_tf", package)
    with open(os.path.join(folder, "__init__.py")) as f:
        names = re.findall(rf"^from metrix_tf\.{package}(?:\.\w+)? import (\w+)$", f.read(), re.M)
    if package == "losses":
        for loss_file in glob.glob(os.path.join(folder, "*_loss.py")):
            with open(loss_file) as f:
                exported = re.search(r"^__all__ = \[(.*)\]", f.read(), re.M)
            if exported:
                names += re.findall(r"\"(\w+)\"", exported.group(1))
    return sorted(n for n in set(names) if not n.isupper())


def test_api_pages_list_every_public_name():
    missing = []
    for page in sorted(glob.glob(os.path.join(REPO, "docs", "api", "*.md"))):
        package = os.path.splitext(os.path.basename(page))[0]
        if package == "metrix_tf":
            continue
        with open(page) as f:
            listed = set(re.findall(rf"^::: metrix_tf\.{package}\.(\w+)", f.read(), re.M))
        missing += [f"docs/api/{package}.md: metrix_tf.{package}.{name}"
                    for name in _public_names(package) if name not in listed]
    assert not missing, "no `:::` entry for:\n" + "\n".join(missing)


def test_marker_parsing_on_a_sample(tmp_path, monkeypatch):
    # The parser itself: a marked block, an unmarked one, a reasonless marker.
    sample = textwrap.dedent("""\
        text
        <!-- snippet: needs-data (CUB-200-2011 at /data) -->
        ```python
        load("cub")
        ```

        - a list item:

            ```python
            x = 1
            ```
        <!-- snippet: not-run -->
        ```python
        y = 2
        ```
        ```
        plain
        ```
        """)
    (tmp_path / "sample.md").write_text(sample)
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    blocks = code_blocks("sample.md")
    assert [(b[0], b[1], b[2].strip(), b[3]) for b in blocks] == [
        ("python", 4, 'load("cub")', ("needs-data", "CUB-200-2011 at /data")),
        ("python", 10, "x = 1", None),
        ("python", 14, "y = 2", ("not-run", "")),
        ("", 17, "plain", None),
    ]
    assert runnable_blocks("sample.md") == [(10, "x = 1")]


def _github_anchor(heading):
    # GitHub's heading ids: lower case, punctuation dropped, spaces to "-".
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_resolve():
    # mkdocs checks the links inside docs/; the README is outside it.
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        full = os.path.join(REPO, path)
        if not os.path.exists(full):
            broken.append(f"{target}: no file {path}")
        elif anchor:
            with open(full) as f:
                headings = re.findall(r"^#{1,6} (.+)$", f.read(), re.M)
            if anchor not in {_github_anchor(h) for h in headings}:
                broken.append(f"{target}: no heading #{anchor} in {path}")
    assert not broken, "\n".join(broken)
