#!/usr/bin/env python3
"""Render a terminal capture with ANSI SGR escapes (`tmux capture-pane -e -p`) to a PNG.

Usage: ansi2png.py INPUT.ans OUTPUT.png [--cols N --rows N]
Needs Pillow and the DejaVu Sans Mono font (Debian: fonts-dejavu-core).
"""
import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = "/usr/share/fonts/truetype/dejavu/"
SIZE = 16
BG = (24, 24, 32)
FG = (220, 220, 220)
# xterm's 16 colours, slightly softened for legibility on a dark background.
BASE16 = [
    (40, 40, 48), (220, 80, 80), (110, 200, 110), (220, 200, 90),
    (100, 140, 230), (200, 110, 200), (90, 200, 210), (210, 210, 210),
    (110, 110, 120), (255, 110, 110), (140, 240, 140), (255, 240, 120),
    (130, 170, 255), (240, 140, 240), (120, 240, 250), (255, 255, 255),
]


def xterm256(n):
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return (v, v, v)


class Style:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = None
        self.bg = None
        self.bold = self.dim = self.underline = self.reverse = False

    def copy(self):
        s = Style()
        s.__dict__.update(self.__dict__)
        return s

    def apply(self, params):
        ps = [int(p) if p else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(ps):
            p = ps[i]
            if p == 0:
                self.reset()
            elif p == 1:
                self.bold = True
            elif p == 2:
                self.dim = True
            elif p == 4:
                self.underline = True
            elif p == 7:
                self.reverse = True
            elif p == 22:
                self.bold = self.dim = False
            elif p == 24:
                self.underline = False
            elif p == 27:
                self.reverse = False
            elif 30 <= p <= 37:
                self.fg = BASE16[p - 30]
            elif 90 <= p <= 97:
                self.fg = BASE16[p - 90 + 8]
            elif 40 <= p <= 47:
                self.bg = BASE16[p - 40]
            elif 100 <= p <= 107:
                self.bg = BASE16[p - 100 + 8]
            elif p == 39:
                self.fg = None
            elif p == 49:
                self.bg = None
            elif p in (38, 48) and i + 1 < len(ps):
                if ps[i + 1] == 5 and i + 2 < len(ps):
                    c = xterm256(ps[i + 2])
                    i += 2
                elif ps[i + 1] == 2 and i + 4 < len(ps):
                    c = tuple(ps[i + 2:i + 5])
                    i += 4
                else:
                    c = None
                if p == 38:
                    self.fg = c
                else:
                    self.bg = c
            i += 1


TOKEN = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b.|([^\x1b])", re.S)


def parse(text, cols, rows):
    grid = [[(" ", Style()) for _ in range(cols)] for _ in range(rows)]
    style = Style()
    for y, line in enumerate(text.split("\n")[:rows]):
        x = 0
        for m in TOKEN.finditer(line):
            if m.group(2) == "m":
                style.apply(m.group(1))
            elif m.group(3) is not None:
                ch = m.group(3)
                if ch == "\r":
                    continue
                if x < cols:
                    grid[y][x] = (ch, style.copy())
                x += 1
    return grid


def blend(a, b, t):
    return tuple(int(a[i] * (1 - t) + b[i] * t) for i in range(3))


def render(grid, out):
    regular = ImageFont.truetype(FONT_DIR + "DejaVuSansMono.ttf", SIZE)
    bold = ImageFont.truetype(FONT_DIR + "DejaVuSansMono-Bold.ttf", SIZE)
    cw = int(round(regular.getlength("M")))
    ascent, descent = regular.getmetrics()
    ch_h = ascent + descent + 2
    rows, cols = len(grid), len(grid[0])
    pad = 12
    img = Image.new("RGB", (cols * cw + 2 * pad, rows * ch_h + 2 * pad), BG)
    d = ImageDraw.Draw(img)
    for y, row in enumerate(grid):
        for x, (ch, s) in enumerate(row):
            fg = s.fg or FG
            bg = s.bg or BG
            if s.reverse:
                fg, bg = bg, fg
            if s.dim:
                fg = blend(fg, bg, 0.45)
            px, py = pad + x * cw, pad + y * ch_h
            if bg != BG:
                d.rectangle([px, py, px + cw - 1, py + ch_h - 1], fill=bg)
            if ch in "─━":
                d.line([px, py + ch_h // 2, px + cw, py + ch_h // 2], fill=fg)
            elif ch == "│":
                d.line([px + cw // 2, py, px + cw // 2, py + ch_h], fill=fg)
            elif ch == "█":
                d.rectangle([px, py + 2, px + cw - 1, py + ch_h - 3], fill=fg)
            elif ch in "┌┐└┘":
                cx, cy = px + cw // 2, py + ch_h // 2
                if ch in "┌┐":
                    d.line([cx, cy, cx, py + ch_h], fill=fg)
                else:
                    d.line([cx, py, cx, cy], fill=fg)
                if ch in "┌└":
                    d.line([cx, cy, px + cw, cy], fill=fg)
                else:
                    d.line([px, cy, cx, cy], fill=fg)
            elif ch != " ":
                d.text((px, py + 1), ch, font=bold if s.bold else regular, fill=fg)
            if s.underline:
                d.line([px, py + ch_h - 2, px + cw, py + ch_h - 2], fill=fg)
    img.save(out)


def main():
    args = sys.argv[1:]
    cols, rows = 120, 40
    if "--cols" in args:
        cols = int(args[args.index("--cols") + 1])
    if "--rows" in args:
        rows = int(args[args.index("--rows") + 1])
    with open(args[0], encoding="utf-8", errors="replace") as f:
        text = f.read()
    render(parse(text, cols, rows), args[1])


if __name__ == "__main__":
    main()
