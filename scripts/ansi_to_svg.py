#!/usr/bin/env python3
"""Draws a tmux capture with colours (`tmux capture-pane -e -p`) as an SVG:
how docs/dashboard-*.svg were made from `zt-trace demo` in a 200x50 pane
(rsvg-convert turns the SVG into a PNG). Usage: ansi_to_svg.py CAPTURE > OUT.svg"""
import re, sys, html
PAL = ["#000000","#cd3131","#0dbc79","#e5e510","#2472c8","#bc3fbc","#11a8cd","#e5e5e5",
       "#666666","#f14c4c","#23d18b","#f5f543","#3b8eea","#d670d6","#29b8db","#ffffff"]
FG, BG = "#d4d4d4", "#1e1e1e"
def c256(n):
    if n < 16: return PAL[n]
    if n < 232:
        n -= 16; r, g, b = n // 36, (n // 6) % 6, n % 6
        f = lambda v: 0 if v == 0 else 55 + v * 40
        return "#%02x%02x%02x" % (f(r), f(g), f(b))
    v = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (v, v, v)
src = open(sys.argv[1], encoding="utf-8").read().rstrip("\n").split("\n")
CW, LH, FS = 8.43, 17, 14
cols = 200
out = []
for y, line in enumerate(src):
    st = {"fg": None, "bg": None, "bold": False, "rev": False}
    x = 0
    runs = []
    for tok in re.split(r"(\x1b\[[0-9;]*m)", line):
        m = re.fullmatch(r"\x1b\[([0-9;]*)m", tok)
        if m:
            codes = [int(c) if c else 0 for c in m.group(1).split(";")]
            i = 0
            while i < len(codes):
                c = codes[i]
                if c == 0: st = {"fg": None, "bg": None, "bold": False, "rev": False}
                elif c == 1: st["bold"] = True
                elif c == 22: st["bold"] = False
                elif c == 7: st["rev"] = True
                elif c == 27: st["rev"] = False
                elif c == 39: st["fg"] = None
                elif c == 49: st["bg"] = None
                elif 30 <= c <= 37: st["fg"] = PAL[c - 30]
                elif 90 <= c <= 97: st["fg"] = PAL[c - 82]
                elif 40 <= c <= 47: st["bg"] = PAL[c - 40]
                elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
                    st["fg" if c == 38 else "bg"] = c256(codes[i + 2]); i += 2
                i += 1
            continue
        if tok:
            runs.append((x, tok, dict(st)))
            x += len(tok)
    for (x0, text, s) in runs:
        fg, bg = s["fg"] or FG, s["bg"]
        if s["rev"]: fg, bg = (bg or BG), (s["fg"] or FG)
        if bg:
            out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>' % (8 + x0 * CW, 6 + y * LH, len(text) * CW, LH, bg))
        if text.strip():
            out.append('<text x="%.1f" y="%d" fill="%s"%s textLength="%.1f" lengthAdjust="spacingAndGlyphs">%s</text>' % (
                8 + x0 * CW, 6 + y * LH + 13, fg, ' font-weight="bold"' if s["bold"] else "", len(text) * CW, html.escape(text)))
W, H = 16 + cols * CW, 12 + len(src) * LH
print('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="DejaVu Sans Mono, monospace" font-size="%d" xml:space="preserve">' % (W, H, FS))
print('<rect width="100%%" height="100%%" fill="%s"/>' % BG)
print("\n".join(out))
print("</svg>")
