"""The house's rules, checked on the source: imports run one way, each concept has one room."""

from __future__ import annotations

import ast
from pathlib import Path

import nas

NAS = Path(nas.__file__).parent
# Lowest first: a subpackage may import itself and those before it, nothing after.
LAYERS = ("errors", "arch", "training", "export", "study", "cli", "tools")
# The ``python -m nas.X`` commands: thin files that call one main and import nothing else.
ENTRY_POINTS = {"search": "cli.search", "replay": "cli.replay", "bench": "tools.bench",
                "fidelity": "tools.fidelity", "export.__main__": "cli.export"}
MAINS = set(ENTRY_POINTS.values())


def module_name(path: Path, root: Path = NAS) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def _type_only(tree: ast.AST) -> set[int]:
    """The ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only)."""
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for stmt in node.body for n in ast.walk(stmt)}


def nas_imports(path: Path, root: Path = NAS, runtime: bool = False) -> set[str]:
    """The nas modules ``path`` imports, at any depth (function-level imports count), each
    without its ``nas.`` prefix (``from nas.arch import plan`` is ``arch.plan``); with
    ``runtime``, not those under ``if TYPE_CHECKING:``."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    skip = _type_only(tree) if runtime else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nas":
            base = node.module.split(".", 1)[1] if "." in node.module else ""
            for a in node.names:
                if a.name == "__version__":
                    continue
                full = f"{base}.{a.name}" if base else a.name
                # ``from nas.arch.spec import ArchSpec`` names a module, not a submodule.
                sub = root / Path(*full.split("."))
                out.add(full if sub.with_suffix(".py").exists() or sub.is_dir() else base)
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("nas.")}
    return out


def graph(root: Path = NAS, runtime: bool = False) -> dict[str, set[str]]:
    return {module_name(p, root): nas_imports(p, root, runtime) for p in root.rglob("*.py")}


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_every_module_lives_in_a_room():
    """Besides the ground floor and the entry points, every module is in a subpackage."""
    top = {module_name(p) for p in NAS.glob("*.py")}
    assert top == {"__init__", "errors"} | {e for e in ENTRY_POINTS if "." not in e}


def test_no_upward_import_between_subpackages():
    upward = [f"{mod} -> {dep}" for mod, deps in graph().items()
              if mod.split(".")[0] in LAYERS for dep in deps
              if mod not in ("export.__main__",) and layer(dep) > layer(mod)]
    assert upward == []


def test_entry_points_are_thin_and_no_main_imports_another():
    g = graph()
    for entry, main in ENTRY_POINTS.items():
        assert g[entry] == {main}, entry
    for main in MAINS:
        assert not g[main] & (MAINS - {main}), main


def test_no_import_cycle():
    """At run time; an annotation may name a module above (``if TYPE_CHECKING:``)."""
    g = graph(runtime=True)

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, " -> ".join(path + (mod,))
        for dep in g.get(mod, ()):
            visit(dep, path + (mod,))

    for mod in g:
        visit(mod, ())


def test_only_the_record_module_reads_or_writes_attributes():
    """Every user and system attribute goes through nas.study.record, so keys have one home."""
    offenders = []
    for path in NAS.rglob("*.py"):
        if module_name(path) == "study.record":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "user_attrs", "set_user_attr", "system_attrs", "set_system_attr"):
                offenders.append(f"{module_name(path)}:{node.lineno}")
    assert offenders == []


def test_the_ground_floor_imports_nothing_heavy():
    """The command-line layer knows every user error from nas.errors alone."""
    tree = ast.parse((NAS / "errors.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]


def test_the_rules_can_fail(tmp_path):
    """The checks above see an upward import and a cycle when there is one."""
    fake = tmp_path / "nas"
    (fake / "arch").mkdir(parents=True)
    (fake / "study").mkdir()
    (fake / "arch" / "a.py").write_text("from nas.study import b\n")
    (fake / "study" / "b.py").write_text("import nas.arch.a\nfrom nas.arch.a import thing\n"
                                         "if TYPE_CHECKING:\n    from nas.arch import c\n")
    (fake / "arch" / "c.py").write_text("")
    assert graph(fake) == {"arch.a": {"study.b"}, "study.b": {"arch.a", "arch.c"}, "arch.c": set()}
    assert graph(fake, runtime=True)["study.b"] == {"arch.a"}
    assert layer("study.b") > layer("arch.a")
