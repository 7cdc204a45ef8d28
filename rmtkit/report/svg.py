"""Matplotlib figures as compact inline SVG for one HTML page.

Matplotlib's SVG is written for a stand-alone file: every element repeats its full inline style,
coordinates carry six decimals, groups nest for ids nobody references, and element ids
(``patch_1``, ``clip0``...) are unique per file only. A report inlines dozens of figures in one
document, where ids are global and the same dozen styles repeat thousands of times. Here each
figure is rewritten, with what is drawn unchanged:

- text stays text (``svg.fonttype = "none"``), with a sans-serif fallback for viewers without
  DejaVu Sans, so labels are searchable and a figure carries no glyph outlines;
- every ``style="..."`` becomes ``class="sN"``, one rule per distinct style for the whole page
  (:class:`StyleTable`);
- coordinates are rounded to 0.1 pt (about a tenth of a screen pixel at the displayed size);
- ids that are referenced (markers, clip paths) get short page-unique names, all others are
  dropped, groups left without attributes are unwrapped, and links use SVG 2's ``href``.

The output is deterministic: the same figure gives the same bytes (fixed hash salt, no date).
"""

import io
import re
import xml.etree.ElementTree as ET

import matplotlib as mpl

__all__ = ["StyleTable", "figure_svg"]

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
_HREF = f"{{{XLINK_NS}}}href"
#: attributes that hold coordinates (rounded); styles and colours are never touched
_GEOMETRY = ("d", "x", "y", "x1", "x2", "y1", "y2", "width", "height", "transform", "points")
_NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")
_URL_REF = re.compile(r"url\(#([^)]+)\)")
#: generic families appended to matplotlib's font, whose metrics placed the text
_FONT_FALLBACK = "'DejaVu Sans', 'Bitstream Vera Sans', Verdana, Geneva, sans-serif"
#: matplotlib settings of every report figure (text as text, stable ids, light strokes)
RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "rmtkit-report",
    "path.simplify": True,
    "font.size": 8.0,
    "legend.fontsize": 7.0,
}

ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)


class StyleTable:
    """The distinct inline styles of a page's figures, each a CSS class ``.sN``.

    Examples
    --------
    >>> t = StyleTable()
    >>> t.class_of("fill: #fff"), t.class_of("stroke: #000"), t.class_of("fill: #fff")
    ('s0', 's1', 's0')
    >>> t.css()
    'svg .s0{fill: #fff}\\nsvg .s1{stroke: #000}'
    """

    def __init__(self):
        self._classes: dict[str, str] = {}

    def class_of(self, style: str) -> str:
        """The class name of ``style`` (registered on first use)."""
        style = " ".join(style.split())
        if style not in self._classes:
            self._classes[style] = f"s{len(self._classes)}"
        return self._classes[style]

    def css(self) -> str:
        """One CSS rule per style, scoped to SVG content."""
        return "\n".join(f"svg .{name}{{{style}}}" for style, name in self._classes.items())

    def __len__(self) -> int:
        return len(self._classes)


def _round_numbers(text: str, decimals: int) -> str:
    def short(m: re.Match) -> str:
        value = round(float(m.group()), decimals)
        out = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
        return "0" if out in ("", "-0") else out

    return _NUMBER.sub(short, text)


def _compact_path(d: str) -> str:
    """``M 1 2 \\nL 3 4 \\nz`` -> ``M1 2L3 4z`` (SVG path grammar: commands need no spaces)."""
    d = " ".join(d.split())
    return re.sub(r"\s*([MLCQZz])\s*", r"\1", d)


def _referenced_ids(root: ET.Element) -> set[str]:
    """Ids that something points to (``xlink:href="#id"`` or ``url(#id)`` in an attribute)."""
    refs = set()
    for el in root.iter():
        href = el.get(_HREF) or el.get("href")
        if href and href.startswith("#"):
            refs.add(href[1:])
        for value in el.attrib.values():
            refs.update(_URL_REF.findall(value))
    return refs


def _rewrite(el: ET.Element, styles: StyleTable, ids: dict[str, str], decimals: int) -> None:
    """Rewrite one element in place (see the module docstring); ``ids`` maps each referenced
    id to its short page-unique name."""
    style = el.attrib.pop("style", None)
    if style is not None:
        if "DejaVu Sans" in style and "sans-serif" not in style:
            style = style.replace("'DejaVu Sans'", _FONT_FALLBACK)
        el.set("class", styles.class_of(style))
    ident = el.attrib.pop("id", None)
    if ident is not None and ident in ids:
        el.set("id", ids[ident])
    href = el.attrib.pop(_HREF, None) or el.attrib.pop("href", None)
    if href is not None:  # SVG 2 `href` (every current browser), no xlink namespace
        el.set("href", "#" + ids[href[1:]] if href.startswith("#") and href[1:] in ids else href)
    for name, value in list(el.attrib.items()):
        if "url(#" in value:
            el.set(name, _URL_REF.sub(lambda m: f"url(#{ids.get(m.group(1), m.group(1))})", value))
        elif name in _GEOMETRY:
            value = _round_numbers(value, decimals)
            el.set(name, _compact_path(value) if name == "d" else " ".join(value.split()))
    if el.text is not None and not el.text.strip():
        el.text = None
    if el.tail is not None and not el.tail.strip():
        el.tail = None


def _drop_redundant_use_class(root: ET.Element) -> None:
    """A ``<use>`` whose class is its target's draws the same without it (the target's own
    style wins over what the ``<use>`` would pass down)."""
    targets = {el.get("id"): el.get("class") for el in root.iter() if el.get("id")}
    for el in root.iter(f"{{{SVG_NS}}}use"):
        href = el.get("href", "")
        if el.get("class") is not None and targets.get(href[1:]) == el.get("class"):
            del el.attrib["class"]


def _unwrap_bare_groups(parent: ET.Element) -> None:
    """Replace every ``<g>`` without attributes by its children (depth first)."""
    children = list(parent)
    new = []
    for child in children:
        _unwrap_bare_groups(child)
        if child.tag == f"{{{SVG_NS}}}g" and not child.attrib and not (child.text or "").strip():
            new.extend(list(child))
        else:
            new.append(child)
    if new != children:
        for child in children:
            parent.remove(child)
        parent.extend(new)


def compact_svg(text: str, styles: StyleTable, prefix: str, *, decimals: int = 1) -> str:
    """Matplotlib's SVG document ``text`` as one compact ``<svg>`` element (module docstring).

    ``prefix`` makes the figure's ids unique in the page; ``styles`` collects its styles;
    coordinates keep ``decimals`` decimals of a point (0.1 pt: a tenth of a screen pixel at
    the size a report shows its figures).
    """
    root = ET.fromstring(text)
    for meta in root.findall(f"{{{SVG_NS}}}metadata"):
        root.remove(meta)
    for defs in root.findall(f"{{{SVG_NS}}}defs"):  # the `*{stroke-linejoin}` sheet: page CSS
        for sheet in defs.findall(f"{{{SVG_NS}}}style"):
            defs.remove(sheet)
        if len(defs) == 0:
            root.remove(defs)
    ids = {old: f"{prefix}{_short_name(i)}" for i, old in enumerate(sorted(_referenced_ids(root)))}
    for el in root.iter():
        _rewrite(el, styles, ids, decimals)
    _drop_redundant_use_class(root)
    _unwrap_bare_groups(root)
    for name in ("width", "height", "version"):  # sized by the page (CSS), drawn by the viewBox
        root.attrib.pop(name, None)
    root.set("class", "fig")
    root.set("role", "img")
    return ET.tostring(root, encoding="unicode", short_empty_elements=True).replace(" />", "/>")


def _short_name(i: int) -> str:
    """0 -> "a", 25 -> "z", 26 -> "ba", ...: short id suffixes."""
    out = ""
    while True:
        out = chr(ord("a") + i % 26) + out
        i //= 26
        if i == 0:
            return out


def figure_svg(fig, styles: StyleTable, prefix: str, *, label: str = "") -> str:
    """Render a matplotlib Figure to compact inline SVG (:func:`compact_svg`).

    ``label`` becomes the figure's accessible name (``aria-label``).
    """
    buf = io.StringIO()
    with mpl.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = compact_svg(buf.getvalue(), styles, prefix)
    if label:
        from html import escape

        svg = svg.replace("<svg ", f'<svg aria-label="{escape(label)}" ', 1)
    return svg
