"""A picture of the view-group example's map, as an SVG document.

Pure: takes where everyone is and which pairs talk how, returns the text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape

#: The map's side in the picture, in pixels, and the border around it.
PICTURE_SIZE = 900
BORDER = 40
LEGEND_HEIGHT = 30
DIRECT_COLOUR = "#2a9d3a"
RELAYED_COLOUR = "#e07b00"


@dataclass(frozen=True)
class PlayerMark:
    name: str
    x: float
    y: float
    relayOnly: bool = False     # behind a NAT no punch gets through (drawn hollow)
    cheater: bool = False       # drawn red


@dataclass(frozen=True)
class PairLine:
    a: str
    b: str
    direct: bool


def renderMap(side: float, radius: float, players: Iterable[PlayerMark],
              pairs: Iterable[PairLine], title: str = "") -> str:
    """An SVG picture of a C{side} x C{side} map: every player named, its view
    radius, and each P2P pair as a line, solid green when direct, dashed
    orange when relayed."""
    players = list(players)
    pairs = list(pairs)
    scale = PICTURE_SIZE / side
    where = {p.name: (BORDER + p.x * scale, BORDER + p.y * scale) for p in players}
    direct = sum(1 for pair in pairs if pair.direct)
    full = PICTURE_SIZE + 2 * BORDER
    out = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{full}" '
         f'height="{full + LEGEND_HEIGHT}" font-family="sans-serif">'),
        f"<title>{escape(title or 'view groups')}</title>",
        (f'<clipPath id="map"><rect x="{BORDER}" y="{BORDER}" width="{PICTURE_SIZE}" '
         f'height="{PICTURE_SIZE}"/></clipPath>'),
        f'<rect width="{full}" height="{full + LEGEND_HEIGHT}" fill="white"/>',
        (f'<rect x="{BORDER}" y="{BORDER}" width="{PICTURE_SIZE}" height="{PICTURE_SIZE}" '
         'fill="#f7f7f2" stroke="#999"/>'),
        ('<g clip-path="url(#map)" fill="#4a7bd0" fill-opacity="0.04" stroke="#4a7bd0" '
         'stroke-opacity="0.2">'),
    ]
    r = radius * scale
    out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}"/>' for x, y in where.values())
    out.append("</g>")
    out.append('<g stroke-width="1.5">')
    for pair in pairs:
        if pair.a not in where or pair.b not in where:
            continue
        (x1, y1), (x2, y2) = where[pair.a], where[pair.b]
        style = (f'stroke="{DIRECT_COLOUR}"' if pair.direct
                 else f'stroke="{RELAYED_COLOUR}" stroke-dasharray="5,3"')
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {style}>'
                   f"<title>{escape(pair.a)} - {escape(pair.b)}: "
                   f"{'direct' if pair.direct else 'relayed'}</title></line>")
    out.append("</g>")
    out.append('<g font-size="10">')
    for player in players:
        x, y = where[player.name]
        colour = "#c0282d" if player.cheater else "#1d3f7a"
        fill = "white" if player.relayOnly else colour
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" '
                   f'stroke="{colour}"/>')
        out.append(f'<text x="{x + 5:.1f}" y="{y - 4:.1f}">{escape(player.name)}</text>')
    out.append("</g>")
    legend = (f"{len(players)} players, {len(pairs)} pairs: {direct} direct (solid), "
              f"{len(pairs) - direct} relayed (dashed); hollow: relay only; red: the cheater")
    out.append(f'<text x="{BORDER}" y="{full + 10}" font-size="14">{escape(legend)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
