import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


def test_code_is_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the `test` extra)")
    result = subprocess.run([ruff, "check", "src", "tests", "benchmarks"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_no_function_in_src_is_longer_than_80_lines():
    import ast

    long = []
    for path in (PROJECT_ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name}")
    assert not long, "split these functions: " + ", ".join(long)


def test_core_does_no_file_io():
    """core/ is pure array code: file reading lives in datasets/ (and the CPU probe in precision.py)."""
    import ast

    io_modules = {"skimage.io", "tifffile", "PIL", "pathlib", "shutil", "tempfile", "os"}
    found = []
    for path in (PROJECT_ROOT / "src" / "nuclei_pipeline" / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            imported = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name} imports {name}" for name in imported if name.split(".")[0] in io_modules
                      or name in io_modules]
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                found.append(f"{path.name}:{node.lineno} calls open()")
    assert not found, found


def _runtime_imports(path: Path) -> list[str]:
    """Modules ``path`` imports when it runs (imports under ``if TYPE_CHECKING:`` left out)."""
    import ast

    tree = ast.parse(path.read_text())
    checking = {id(inner) for node in ast.walk(tree)
                if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
                for inner in ast.walk(node)}
    names = []
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_imports_flow_one_way():
    """core imports nothing of the project above it; pipelines never import each other."""
    package = PROJECT_ROOT / "src" / "nuclei_pipeline"
    wrong = []
    for path in (package / "core").glob("*.py"):
        wrong += [f"core/{path.name} imports {name}" for name in _runtime_imports(path)
                  if name.startswith("nuclei_pipeline.") and not name.startswith("nuclei_pipeline.core")]
    for path in (package / "pipelines").rglob("*.py"):
        own = path.relative_to(package / "pipelines").parts[0]
        wrong += [f"pipelines/{own}/{path.name} imports {name}" for name in _runtime_imports(path)
                  if name.startswith("nuclei_pipeline.pipelines.") and name.split(".")[2] != own]
    assert not wrong, wrong


def test_benchmarks_import_only_names_the_package_has():
    """Benchmarks run by hand, not in the suite: a renamed function must not leave them broken."""
    import ast
    import importlib

    missing = []
    for path in sorted((PROJECT_ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nuclei_pipeline"):
                module = importlib.import_module(node.module)
                missing += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names
                            if not hasattr(module, alias.name)]
    assert not missing, "benchmarks import names that no longer exist: " + ", ".join(missing)
