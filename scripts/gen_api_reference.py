"""Write ``docs/api.md``, the API reference, from the docstrings of rmtkit's public names.

    .venv/bin/python scripts/gen_api_reference.py           # (re)write docs/api.md
    .venv/bin/python scripts/gen_api_reference.py --check   # exit 1 when docs/api.md is stale

Nothing here lists names by hand. The public namespaces are found from the package itself:
``rmtkit.__all__`` (its lazily loaded names included), every module named there
(``rmtkit.errors``), the submodules ``rmtkit`` exposes lazily (``rmtkit._LAZY_MODULES``: plot,
monitor, collection, adapters, testing) and, recursively, the modules a namespace's ``__all__``
names (``rmtkit.adapters.torch`` ...). A namespace's public names are its ``__all__``. Each
object is documented once, under the first namespace that exports it (``rmtkit`` first); later
namespaces list it as an alias. Per entry: the signature (annotations and defaults as written
in the source where the runtime value has no short literal form), the first paragraph of the
docstring, the fields of a NamedTuple, and the public methods and properties of a class.
Constants are documented by their ``#:`` comment (the Sphinx convention). The command line
section is generated from the argparse parser of ``rmtkit.cli``.

The output is deterministic (no memory addresses, no terminal width, no installed-version
strings) so that ``tests/project/test_api_reference.py`` can compare it with the file. Importing
every namespace needs every optional dependency: ``pip install -e '.[test]'``.
"""

import argparse
import ast
import dataclasses
import functools
import importlib
import inspect
import os
import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "api.md"
COMMAND = ".venv/bin/python scripts/gen_api_reference.py"
WIDTH = 92  # signatures longer than this are written one parameter per line

#: order of the defining modules of the flat ``rmtkit`` namespace (math layer first); modules
#: not listed here (new ones) follow in alphabetical order. Only the order is chosen by hand.
MODULE_ORDER = (
    "rmtkit.core.esd",
    "rmtkit.core.powerlaw",
    "rmtkit.core.metrics",
    "rmtkit.core.mp",
    "rmtkit.core.tpl",
    "rmtkit.core.traps",
    "rmtkit.core.svd",
    "rmtkit.core.distance",
    "rmtkit.errors",
    "rmtkit.collection.load",
    "rmtkit.collection.data",
    "rmtkit.collection.tree",
    "rmtkit.collection.finetune",
    "rmtkit.analysis.options",
    "rmtkit.analysis.select",
    "rmtkit.analysis.analyze",
    "rmtkit.analysis.many",
    "rmtkit.analysis.transform",
    "rmtkit._engine.executor",
    "rmtkit.plot.layer",
    "rmtkit.plot.model",
    "rmtkit.monitor",
    "rmtkit.facade",
)


# ---------------------------------------------------------------------------------------------
# Discovery.


@dataclasses.dataclass
class Entry:
    """One documented public object."""

    path: str  # primary public name, e.g. "rmtkit.fit_pl"
    obj: object
    kind: str  # "function", "class", "exception", "namedtuple", "constant"
    module: str  # defining module
    lineno: int
    doc: str  # full docstring (or #: comment), "" when missing
    aliases: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Namespace:
    name: str
    module: types.ModuleType
    entries: list[Entry]  # documented here
    aliases: list[tuple[str, str]]  # (name here, primary path) documented elsewhere


def _public_names(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        ]
    return list(names)


def _namespace_modules() -> list[types.ModuleType]:
    """Every public namespace, in discovery order (depth first from ``rmtkit``)."""
    import rmtkit

    seen: list[types.ModuleType] = []

    def visit(module: types.ModuleType) -> None:
        if module in seen:
            return
        seen.append(module)
        children = [getattr(module, n) for n in _public_names(module)]
        children = [c for c in children if isinstance(c, types.ModuleType)]
        if module is rmtkit:
            children += [
                importlib.import_module(f"rmtkit.{n}") for n in getattr(rmtkit, "_LAZY_MODULES", ())
            ]
        for child in children:
            visit(child)

    visit(rmtkit)
    return seen


@functools.cache
def _module_ast(modname: str) -> tuple[ast.Module, list[str]] | None:
    module = sys.modules.get(modname)
    try:
        source = inspect.getsource(module)
    except (TypeError, OSError):
        return None
    return ast.parse(source), source.splitlines()


def _find_def(modname: str, qualname: str):
    """The AST node defining ``qualname`` (``f``, ``Cls``, ``Cls.method``) in ``modname``."""
    parsed = _module_ast(modname)
    if parsed is None:
        return None
    body = parsed[0].body
    node = None
    for part in qualname.split("."):
        node = None
        for child in body:
            if (
                isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and child.name == part
            ):
                node = child
        if node is None:
            return None
        body = node.body
    return node


def _find_assign(modname: str, name: str):
    parsed = _module_ast(modname)
    if parsed is None:
        return None
    for child in parsed[0].body:
        targets = []
        if isinstance(child, ast.Assign):
            targets = [t for t in child.targets if isinstance(t, ast.Name)]
        elif isinstance(child, ast.AnnAssign) and isinstance(child.target, ast.Name):
            targets = [child.target]
        if any(t.id == name for t in targets):
            return child
    return None


def _constant_home(modname: str, name: str) -> str:
    """The module that assigns the constant ``name`` a namespace exports: the namespace itself,
    the module its ``from ... import name`` names, or (``rmtkit``) the module of its lazy name."""
    if _find_assign(modname, name) is not None:
        return modname
    parsed = _module_ast(modname)
    for node in ast.walk(parsed[0]) if parsed else ():
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and any(a.name == name and a.asname is None for a in node.names)
        ):
            importlib.import_module(node.module)
            return _constant_home(node.module, name)
    lazy = getattr(sys.modules[modname], "_LAZY", {})
    if name in lazy:
        importlib.import_module(lazy[name])
        return _constant_home(lazy[name], name)
    return modname


def _constant_doc(modname: str, name: str) -> tuple[str, int]:
    """The ``#:`` comment of a module-level constant (lines above it, or trailing), where the
    constant is assigned."""
    modname = _constant_home(modname, name)
    node = _find_assign(modname, name)
    if node is None:
        return "", 10**9
    lines = _module_ast(modname)[1]
    doc = []
    i = node.lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        doc.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    trailing = re.search(r"#:\s*(.*)$", lines[node.lineno - 1])
    if not doc and trailing:
        doc = [trailing.group(1).strip()]
    return " ".join(doc), node.lineno


def _definition(obj, modname: str, default: str):
    """The AST node of the definition behind ``obj`` (through decorator wrappers)."""
    try:
        inner = inspect.unwrap(obj)
    except ValueError:
        inner = obj
    names = [getattr(o, attr, None) for o in (obj, inner) for attr in ("__qualname__", "__name__")]
    for name in [*names, default]:
        if name and "<locals>" not in name:
            node = _find_def(modname, name)
            if node is not None:
                return node
    return None


def _is_namedtuple(obj) -> bool:
    return isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")


def own_doc(obj) -> str:
    """The object's own docstring: not inherited, not the automatic NamedTuple one."""
    doc = vars(obj).get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    doc = inspect.cleandoc(doc) if doc else ""
    if _is_namedtuple(obj) and doc == f"{obj.__name__}({', '.join(obj._fields)})":
        return ""
    return doc


def _kind(obj) -> str:
    if _is_namedtuple(obj):
        return "namedtuple"
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return "exception"
    if isinstance(obj, type):
        return "class"
    if callable(obj):
        return "function"
    return "constant"


def collect() -> list[Namespace]:
    """All namespaces with their entries; each object documented once."""
    documented: dict[int, Entry] = {}
    constants: dict[tuple[str, str], Entry] = {}
    namespaces = []
    for module in _namespace_modules():
        ns = Namespace(module.__name__, module, [], [])
        for name in _public_names(module):
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType):
                continue
            path = f"{module.__name__}.{name}"
            kind = _kind(obj)
            if kind == "constant":
                key = (module.__name__, name)
                if key in constants:
                    continue
                doc, lineno = _constant_doc(module.__name__, name)
                home = _constant_home(module.__name__, name)
                entry = Entry(path, obj, kind, home, lineno, doc)
                constants[key] = entry
                ns.entries.append(entry)
                continue
            if id(obj) in documented:
                primary = documented[id(obj)]
                primary.aliases.append(path)
                if primary.path.rsplit(".", 1)[0] != module.__name__:
                    ns.aliases.append((name, primary.path))
                continue
            defining = getattr(obj, "__module__", None) or module.__name__
            node = _definition(obj, defining, name)
            lineno = node.lineno if node is not None else 10**9
            entry = Entry(path, obj, kind, defining, lineno, own_doc(obj))
            documented[id(obj)] = entry
            ns.entries.append(entry)
        namespaces.append(ns)
    return namespaces


def _members(cls) -> list[tuple[str, object]]:
    """Public methods and properties defined in ``cls`` itself (``__call__`` included)."""
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property) or inspect.isfunction(value):
            out.append((name, value))
    return out


def all_docstrings() -> dict[str, str]:
    """Public name -> its documentation ("" when missing): modules, objects, class members."""
    out = {}
    for ns in collect():
        out[ns.name] = inspect.cleandoc(ns.module.__doc__ or "")
        for e in ns.entries:
            out[e.path] = e.doc
            if e.kind in ("class", "exception"):
                for name, member in _members(e.obj):
                    out[f"{e.path}.{name}"] = inspect.cleandoc(member.__doc__ or "")
    return out


# ---------------------------------------------------------------------------------------------
# Rendering.


_SIMPLE = (type(None), bool, int, float, str)


def _simple(value) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (tuple, list)):
        return all(_simple(v) for v in value)
    if isinstance(value, dict):
        return all(_simple(k) and _simple(v) for k, v in value.items())
    return False


def _arg_nodes(node) -> dict[str, tuple[ast.AST | None, ast.AST | None]]:
    """Parameter name -> (annotation node, default node) of a function definition."""
    a = node.args
    out = {}
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for arg, default in zip(positional, defaults, strict=True):
        out[arg.arg] = (arg.annotation, default)
    for arg, default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out[arg.arg] = (arg.annotation, default)
    for arg in (a.vararg, a.kwarg):
        if arg is not None:
            out[arg.arg] = (arg.annotation, None)
    return out


def _signature(obj, node, *, drop_first: bool = False) -> tuple[list[str], str] | None:
    """``(parameters, " -> ret")``: names and kinds from ``inspect``, text from the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    nodes = _arg_nodes(node) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else {}
    params = list(sig.parameters.values())
    if drop_first and params:
        params = params[1:]
    parts = []
    star_done = False
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
        ann_node, default_node = nodes.get(p.name, (None, None))
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if ann_node is not None:
            text += f": {ast.unparse(ann_node)}"
        if p.default is not p.empty:
            if _simple(p.default):
                value = repr(p.default)
            elif default_node is not None:
                value = ast.unparse(default_node)
            else:
                value = "..."
            text += f" = {value}" if ann_node is not None else f"={value}"
        parts.append(text)
        if p.kind is p.POSITIONAL_ONLY and (
            i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY
        ):
            parts.append("/")
    ret = ""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        source_names = [n for n in nodes if n != "self"]
        runtime_names = [p.name for p in sig.parameters.values() if p.name != "self"]
        if source_names == runtime_names or drop_first:
            if node.returns is not None:
                ret = f" -> {ast.unparse(node.returns)}"
        elif sig.return_annotation is not sig.empty:  # e.g. hypothesis' @composite drops `draw`
            ret = " -> " + _strip_modules(inspect.formatannotation(sig.return_annotation))
    return parts, ret


def _strip_modules(text: str) -> str:
    """``hypothesis.strategies.SearchStrategy[a.b.C]`` -> ``SearchStrategy[C]``."""
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)


def _format_call(name: str, obj, node, *, drop_first: bool = False, prefix: str = "") -> str:
    result = _signature(obj, node, drop_first=drop_first)
    if result is None:
        return f"{prefix}{name}(...)"
    parts, ret = result
    text = f"{prefix}{name}(" + ", ".join(parts) + ")" + ret
    if len(text) <= WIDTH:
        return text
    body = "".join(f"    {p},\n" for p in parts)
    return f"{prefix}{name}(\n{body}){ret}"


_ROLE = re.compile(r":[a-zA-Z]+(?::[a-zA-Z]+)?:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def to_markdown(text: str) -> str:
    """RST inline markup to plain markdown code spans, no links."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    text = _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)
    return text


def first_paragraph(doc: str) -> str:
    doc = inspect.cleandoc(doc or "")
    for para in doc.split("\n\n"):
        para = para.strip()
        if para and not para.startswith(".. "):
            para = " ".join(line.strip() for line in para.splitlines())
            para = re.sub(r"::$", ":", para)
            return to_markdown(para)
    return ""


def prose_paragraphs(doc: str) -> list[str]:
    """Every paragraph of a docstring that is prose (no literal blocks, no directives)."""
    out = []
    for para in inspect.cleandoc(doc or "").split("\n\n"):
        if para.strip() not in ("", "::") and not para[0].isspace() and not para.startswith(".. "):
            para = " ".join(line.strip() for line in para.splitlines())
            out.append(to_markdown(re.sub(r"::$", ":", para)))
    return out


def _code(text: str) -> list[str]:
    return ["```python", text, "```", ""]


def _short(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _render_entry(e: Entry, level: str) -> list[str]:
    name = _short(e.path)
    lines = [f"{level} `{e.path}`", ""]
    node = _definition(e.obj, e.module, name) if e.kind != "constant" else None
    if e.kind == "constant":
        value = repr(e.obj) if _simple(e.obj) else type(e.obj).__name__
        lines += _code(f"{name} = {value}" if _simple(e.obj) else f"{name}: {value}")
    elif e.kind == "function":
        lines += _code(_format_call(name, e.obj, node))
    elif e.kind == "namedtuple":
        lines += _code(f"class {name}(NamedTuple): " + ", ".join(e.obj._fields))
    else:
        bases = ", ".join(ast.unparse(b) for b in node.bases) if node is not None else ""
        head = f"class {name}({bases})" if bases else f"class {name}"
        init = vars(e.obj).get("__init__")
        if e.kind == "class" and inspect.isfunction(init):
            head += "\n" + _format_call(name, e.obj, _find_def(e.module, f"{name}.__init__"))
        lines += _code(head)
    para = first_paragraph(e.doc)
    if para:
        lines += [para, ""]
    if e.aliases:
        lines += ["Also exported as " + ", ".join(f"`{a}`" for a in e.aliases) + ".", ""]
    if e.kind in ("class", "exception"):
        for member_name, member in _members(e.obj):
            lines += _render_member(e, member_name, member, level + "#")
    return lines


def _render_member(e: Entry, name: str, member, level: str) -> list[str]:
    cls = _short(e.path)
    if isinstance(member, property):
        head = f"{cls}.{name}  # property"
        doc = member.__doc__
    else:
        node = _find_def(e.module, f"{cls}.{name}")
        call = "" if name == "__call__" else name
        owner = f"{cls[0].lower()}{cls[1:]}" if name == "__call__" else f"{cls}."
        head = _format_call(call, member, node, drop_first=True, prefix=owner)
        doc = member.__doc__
    lines = [f"{level} `{cls}.{name}`", ""] + _code(head)
    para = first_paragraph(doc or "")
    if para:
        lines += [para, ""]
    return lines


def _group_key(modname: str) -> tuple:
    if modname in MODULE_ORDER:
        return (0, MODULE_ORDER.index(modname), modname)
    return (1, 0, modname)


def _render_namespace(ns: Namespace) -> list[str]:
    lines = [f"## `{ns.name}`", ""]
    para = first_paragraph(ns.module.__doc__ or "")
    if para:
        lines += [para, ""]
    groups: dict[str, list[Entry]] = {}
    for e in ns.entries:
        groups.setdefault(e.module, []).append(e)
    single = len(groups) == 1 and ns.name in groups
    for modname in sorted(groups, key=_group_key):
        entries = sorted(groups[modname], key=lambda e: (e.lineno, e.path))
        if not single:
            lines += [f"### `{modname}`", ""]
            module = sys.modules.get(modname)
            para = first_paragraph(module.__doc__ or "") if module is not None else ""
            if para and modname != ns.name:
                lines += [para, ""]
        for e in entries:
            lines += _render_entry(e, "####")
    if ns.aliases:
        names = ", ".join(f"`{n}`" for n, _ in ns.aliases)
        lines += [f"Also exported here (documented above): {names}.", ""]
    return lines


def _option_row(action: argparse.Action) -> str:
    if action.option_strings:
        flags = ", ".join(action.option_strings)
    else:
        flags = action.metavar or action.dest
    arg = ""
    if action.option_strings and action.nargs != 0:
        if action.choices is not None:
            arg = "{" + ",".join(str(c) for c in action.choices) + "}"
        else:
            arg = action.metavar or action.dest.upper()
        if action.nargs == "+":
            arg = f"{arg} [{arg} ...]"
    elif not action.option_strings and action.nargs in ("?", "+"):
        flags = {"?": f"[{flags}]", "+": f"{flags} [{flags} ...]"}[action.nargs]
    help_text = (action.help or "").replace("|", "\\|")
    if (
        action.option_strings
        and action.default not in (None, False, argparse.SUPPRESS)
        and action.nargs != 0
        and "default" not in help_text
    ):
        help_text = f"{help_text} (default {action.default})".strip()
    return f"| `{flags}` | {f'`{arg}`' if arg else ''} | {help_text} |"


def _render_cli() -> list[str]:
    from rmtkit import cli

    parser = cli._parser()
    lines = ["## Command line: `rmtkit`", ""]
    for para in prose_paragraphs(cli.__doc__ or ""):
        lines += [para, ""]
    lines += ["`rmtkit COMMAND --help` prints the same options.", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        lines += [f"### `rmtkit {name}`", ""]
        if helps.get(name):
            lines += [helps[name][0].upper() + helps[name][1:] + ".", ""]
        lines += ["| argument | value | meaning |", "|---|---|---|"]
        lines += [_option_row(a) for a in p._actions if not isinstance(a, argparse._HelpAction)]
        lines.append("")
    return lines


def render() -> str:
    """The full text of docs/api.md."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    namespaces = collect()
    lines = [
        "# rmtkit API reference",
        "",
        f"Generated from the docstrings by `{COMMAND}`; do not edit by hand.",
        "Each entry gives the signature as written in the source and the first paragraph of "
        "its docstring; `help(rmtkit.NAME)` shows the whole docstring (parameters, formulas, "
        "references, examples). Every name of the `rmtkit` section is importable as "
        "`rmtkit.NAME` (the sub-headings name the module that defines it).",
        "",
        "Sections: " + ", ".join(f"`{ns.name}`" for ns in namespaces) + ", command line.",
        "",
    ]
    for ns in namespaces:
        lines += _render_namespace(ns)
    lines += _render_cli()
    text = "\n".join(lines).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 (writing nothing) when docs/api.md is not up to date",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
