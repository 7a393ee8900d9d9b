"""A griffe extension for the API pages: doctest examples render as code.

Keras-style docstrings put an `Example:` section's `>>>` lines flush with
the text, where Markdown reads them as nested block quotes. This wraps each
run of `>>>` / `...` lines and their output (up to a blank line) in a
```pycon fence before the docstring is parsed. Docstrings in the code are
unchanged.
"""

import re

import griffe

PROMPT = re.compile(r"^(\s*)>>> ")


def fence_doctests(text):
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = PROMPT.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match.group(1)
        out.append(indent + "```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(indent + "```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        stack = [pkg]
        while stack:
            obj = stack.pop()
            if obj.is_alias:
                continue
            if obj.docstring is not None and ">>> " in obj.docstring.value:
                obj.docstring.value = fence_doctests(obj.docstring.value)
            stack.extend(obj.members.values())
