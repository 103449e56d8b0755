"""The shape the code keeps: no function in core/, dashboard/ or bench/ longer than about a screen."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 60  # a page's top-level layout is a script, not a function, so it is not counted


def long_functions(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    out = []
    for folder in ("core", "dashboard", "bench"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_function_is_longer_than_sixty_lines():
    assert long_functions() == []


def test_the_check_finds_a_long_function(tmp_path):
    (tmp_path / "core").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "core" / "long.py").write_text(f"def too_long():\n{body}\n", encoding="utf-8")
    (tmp_path / "core" / "short.py").write_text("def fine():\n    return 1\n", encoding="utf-8")
    assert long_functions(tmp_path) == [f"core/long.py:1 too_long ({MAX_LINES + 1} lines)"]
