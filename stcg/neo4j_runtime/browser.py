"""Neo4j Browser set-up for STCG graphs: the style (``docs/browser.grass``) and the post-connect command.

The local server's ``browser.post_connect_cmd`` runs, in Browser 5.24, each ``;``-separated command
(``;`` inside quotes is kept) as ``:<command>`` once Browser connects. ``:style`` takes Browser's
grass either as CSS or as JSON; the JSON form has no ``;`` outside quotes, so the whole style fits
in that one setting and Browser needs nothing from the network.
"""

from __future__ import annotations

import json

# selector -> properties, in the order written to the grass file
STYLE: dict[str, dict[str, str]] = {
    "node": {
        "diameter": "50px",
        "color": "#A5ABB6",
        "border-color": "#9AA1AC",
        "border-width": "2px",
        "text-color-internal": "#FFFFFF",
        "font-size": "10px",
    },
    "relationship": {
        "color": "#A5ABB6",
        "shaft-width": "1px",
        "font-size": "9px",
        "padding": "3px",
        "text-color-external": "#000000",
        "text-color-internal": "#FFFFFF",
        "caption": "<type>",
    },
    "node.Run": {"color": "#C990C0", "border-color": "#B261A5", "diameter": "65px", "caption": "{name}"},
    "node.Example": {
        "color": "#4C8EDA",
        "border-color": "#2870C2",
        "diameter": "95px",
        "font-size": "11px",
        "caption": "{question} ({answer})",
    },
    "node.Token": {"color": "#F79767", "border-color": "#F36924", "diameter": "55px", "caption": "{text}"},
    "node.Region": {
        "color": "#57C7E3",
        "border-color": "#23B3D7",
        "diameter": "40px",
        "text-color-internal": "#000000",
        "caption": "{row},{col}",
    },
    "node.Timestep": {"color": "#8DCC93", "border-color": "#5DB665", "diameter": "55px", "caption": "{token}"},
    "node.Perturbation": {
        "color": "#F16667",
        "border-color": "#EB2728",
        "diameter": "95px",  # the longest kind, saliency_patch_mask, is 86 px wide at 9 px
        "font-size": "9px",
        "caption": "{kind} ({answer})",  # the perturbed answer on a second line
    },
    "node.Explanation": {"color": "#FFD86E", "border-color": "#EDBA39", "diameter": "70px", "caption": "{method}"},
    # a run's statistics (written when it is complete): small, captioned by what they group
    "node.Stats": {"color": "#C990C0", "border-color": "#B261A5", "diameter": "35px", "caption": "{of}"},
    # structure: thin and silent
    "relationship.HAS_EXAMPLE": {"color": "#D5D8DE", "shaft-width": "1px", "caption": ""},
    "relationship.HAS_TOKEN": {"color": "#D5D8DE", "shaft-width": "1px", "caption": ""},
    "relationship.HAS_REGION": {"color": "#D5D8DE", "shaft-width": "1px", "caption": ""},
    "relationship.HAS_STEP": {"color": "#D5D8DE", "shaft-width": "1px", "caption": ""},
    "relationship.HAS_PERTURBATION": {"color": "#D5D8DE", "shaft-width": "1px", "caption": ""},
    "relationship.HAS_EXPLANATION": {"color": "#D5D8DE", "shaft-width": "1px", "caption": ""},
    "relationship.HAS_STATS": {"color": "#D5D8DE", "shaft-width": "1px", "caption": ""},
    # evidence: rank captions (1 = strongest); the exact weights are in the side panel
    "relationship.ATTENDS": {"color": "#F79767", "shaft-width": "2px", "caption": "#{rank}"},
    "relationship.ATTENDS_TOKEN": {"color": "#8DCC93", "shaft-width": "2px", "caption": "attends"},
    "relationship.NEXT": {"color": "#5DB665", "shaft-width": "3px", "caption": "next"},
    "relationship.MOVES": {"color": "#EB2728", "shaft-width": "2px", "caption": "#{rank}"},
    "relationship.MOVES_TOKEN": {"color": "#EB2728", "shaft-width": "1px", "caption": "moves"},
    "relationship.DW": {"color": "#F16667", "shaft-width": "1px", "caption": "#{rank}"},
    # other attribution methods (runs ingested with --attributions): the method and the rank
    "relationship.ATTRIBUTES": {"color": "#EDBA39", "shaft-width": "2px", "caption": "{method} #{rank}"},
    "relationship.RANKS": {"color": "#EDBA39", "shaft-width": "2px", "caption": "#{rank}"},
    "relationship.UNDER": {"color": "#D5D8DE", "shaft-width": "1px", "caption": "under"},
}

QUOTED = ("caption", "defaultCaption")


def grass() -> str:
    """The style as a grass (CSS-like) file, the text of ``docs/browser.grass``."""
    out = []
    for selector, props in STYLE.items():
        out.append(selector + " {")
        for key, value in props.items():
            out.append(f'  {key}: "{value}";' if key in QUOTED else f"  {key}: {value};")
        out.append("}")
    return "\n".join(out) + "\n"


def post_connect_cmd() -> str:
    """The value of ``browser.post_connect_cmd``: auto-connect off, then the STCG style (JSON grass)."""
    return "config autoComplete: false; style " + json.dumps(STYLE, separators=(",", ":"))
