"""Built-in generated remote-sensing dataset (``data.dataset: synthetic``).

Each image is a top-down RGB scene of one RSITMD-like class, drawn from a
class-typical ground texture plus objects (runways and planes, rows of cars,
round tanks, buildings with shadows, rivers crossed by bridges...) whose
counts, sizes, colours, positions and rotations are random. Distractor objects
of other classes add semantic noise. Each image gets captions from a small
grammar that states what was drawn (counts, colours, objects, relations), so
images of one class are told apart mainly by the details the captions mention;
a share of captions name only the scene, which makes same-class captions
overlap and keeps R@1 below 100.

Drawing is vectorised: every primitive computes its mask on a coordinate grid
of the object's bounding window, so Python loops run over objects, never pixels.
Everything is deterministic from ``seed`` (one numpy Generator per image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from pir.config import SyntheticConfig
from pir.data.prepared import SPLITS, ImageRecord

RGB = tuple[int, int, int]

# Named colours the captions use; drawn colours jitter around these.
COLOURS: dict[str, RGB] = {
    "white": (232, 232, 228), "gray": (125, 125, 128), "red": (185, 55, 45), "blue": (50, 90, 185),
    "green": (70, 140, 60), "yellow": (215, 195, 80), "orange": (220, 125, 45), "brown": (125, 85, 50),
    "dark": (40, 45, 50), "cyan": (70, 170, 180),
}
GROUND = {"grass": (95, 130, 70), "dry": (150, 140, 100), "soil": (135, 105, 75), "sand": (214, 196, 150),
          "asphalt": (95, 95, 98), "concrete": (160, 158, 150), "water": (45, 85, 120)}
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


# --------------------------------------------------------------------------- drawing

class Canvas:
    """A float RGB image with vectorised shape primitives (pixel units, x right, y down)."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size = size
        self.rng = rng
        self.img = np.zeros((size, size, 3), np.float32)

    def _window(self, cx: float, cy: float, radius: float):
        """Bounding window of an object and its pixel-centre coordinates relative to (cx, cy)."""
        s = self.size
        x0, x1 = max(0, int(cx - radius)), min(s, int(math.ceil(cx + radius)) + 1)
        y0, y1 = max(0, int(cy - radius)), min(s, int(math.ceil(cy + radius)) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
        return (slice(y0, y1), slice(x0, x1)), dx, dy

    def _paint(self, window, mask: np.ndarray, colour: RGB | np.ndarray, jitter: float = 8.0) -> None:
        colour = np.asarray(colour, np.float32) + self.rng.normal(0, jitter, 3).astype(np.float32)
        self.img[window][mask] = colour

    def fill(self, colour: RGB, texture: float = 18.0, cells: int = 6) -> None:
        """Whole-image ground colour modulated by smooth noise (fields, soil, water have texture)."""
        noise = smooth_noise(self.rng, self.size, cells)[..., None]
        self.img[:] = np.asarray(colour, np.float32) + texture * noise

    def rect(self, cx, cy, w, h, angle, colour, shadow: float = 0.0) -> None:
        """Rotated rectangle of full width ``w`` and height ``h``; optional shadow offset to the lower right."""
        if shadow > 0:
            self.rect(cx + shadow, cy + shadow, w, h, angle, (30, 30, 32))
        win = self._window(cx, cy, 0.5 * math.hypot(w, h) + 1)
        if win is None:
            return
        window, dx, dy = win
        c, s = math.cos(angle), math.sin(angle)
        u, v = dx * c + dy * s, -dx * s + dy * c
        self._paint(window, (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2), colour)

    def ellipse(self, cx, cy, rx, ry, angle, colour, inner: float = 0.0) -> None:
        """Filled ellipse, or a ring when ``inner`` (fraction of the radii) is > 0."""
        win = self._window(cx, cy, max(rx, ry) + 1)
        if win is None:
            return
        window, dx, dy = win
        c, s = math.cos(angle), math.sin(angle)
        u, v = dx * c + dy * s, -dx * s + dy * c
        r2 = (u / rx) ** 2 + (v / ry) ** 2
        self._paint(window, (r2 <= 1.0) & (r2 >= inner ** 2), colour)

    def band(self, cx, cy, angle, width, colour, amplitude: float = 0.0, waves: float = 0.0, phase: float = 0.0,
             length: float | None = None) -> None:
        """A (possibly meandering) strip through (cx, cy) along ``angle``: roads, rivers, runways."""
        win = self._window(cx, cy, (length or 2 * self.size) / 2 + width)
        if win is None:
            return
        window, dx, dy = win
        c, s = math.cos(angle), math.sin(angle)
        u, v = dx * c + dy * s, -dx * s + dy * c
        centre = amplitude * np.sin(u * (2 * math.pi * waves / self.size) + phase)
        mask = np.abs(v - centre) <= width / 2
        if length is not None:
            mask &= np.abs(u) <= length / 2
        self._paint(window, mask, colour)

    def finish(self) -> np.ndarray:
        """Lighting, sensor noise and clipping to uint8."""
        gain = self.rng.uniform(0.85, 1.12)
        img = self.img * gain + self.rng.normal(0, 4.0, self.img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random grid in [-1, 1]: cheap low-frequency ground texture."""
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, size, endpoint=False, dtype=np.float32)
    i = t.astype(np.int64)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


# --------------------------------------------------------------------------- words

def count_word(n: int, rng: np.random.Generator) -> str:
    """Exact words for small counts (what tells same-class images apart), vaguer ones for large counts."""
    if n == 1:
        return str(rng.choice(["a", "one"]))
    if n <= 4:
        return NUMBER_WORDS[n]
    if n <= 7:
        return str(rng.choice([NUMBER_WORDS[n], "several", "some"], p=[0.5, 0.3, 0.2]))
    return str(rng.choice(["many", "lots of", "a large number of", "dozens of" if n >= 20 else "many"]))


def where_word(cx: float, cy: float, size: int) -> str:
    """Position of a point in the image as RSITMD captions say it."""
    col = ("left", "middle", "right")[min(2, int(3 * cx / size))]
    row = ("top", "middle", "bottom")[min(2, int(3 * cy / size))]
    if row == col == "middle":
        return "in the middle"
    if row == "middle":
        return f"on the {col}"
    if col == "middle":
        return f"at the {row}"
    return f"in the {row} {col} corner"


def direction_word(angle: float) -> str:
    a = (math.degrees(angle) % 180 + 180) % 180
    if a < 22.5 or a >= 157.5:
        return "from left to right"
    if 67.5 <= a < 112.5:
        return "from top to bottom"
    return "diagonally"


@dataclass
class Mention:
    """A group of drawn objects the captions can talk about."""
    singular: tuple[str, ...]   # noun synonyms
    plural: tuple[str, ...]
    count: int
    colour: str = ""            # named colour ("" = none to say)
    where: str = ""             # position phrase

    def phrase(self, rng: np.random.Generator, with_colour: bool = True) -> str:
        nouns = self.singular if self.count == 1 else self.plural
        words = [count_word(self.count, rng)]
        if with_colour and self.colour:
            words.append(self.colour)
        words.append(str(rng.choice(nouns)))
        return " ".join(words)

    def be(self) -> str:
        return "is" if self.count == 1 else "are"


@dataclass
class Scene:
    """What one drawn image shows: slot values the class's caption templates consume."""
    slots: dict[str, object]


# --------------------------------------------------------------------------- objects shared by classes

def draw_houses(cv: Canvas, n: int, roof: str, cx: float, cy: float, spread: float, size: float) -> None:
    rng = cv.rng
    for _ in range(n):
        x, y = cx + rng.uniform(-spread, spread), cy + rng.uniform(-spread, spread)
        w, h = size * rng.uniform(0.8, 1.3), size * rng.uniform(0.6, 1.0)
        cv.rect(x, y, w, h, rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.05), COLOURS[roof], shadow=size * 0.2)


def draw_trees(cv: Canvas, n: int, cx: float, cy: float, spread: float, size: float, colour: RGB = (40, 90, 40)) -> None:
    rng = cv.rng
    for _ in range(n):
        r = size * rng.uniform(0.7, 1.2)
        cv.ellipse(cx + rng.uniform(-spread, spread), cy + rng.uniform(-spread, spread), r, r, 0.0, colour)


def draw_car(cv: Canvas, x: float, y: float, angle: float, colour: str) -> None:
    s = cv.size
    cv.rect(x, y, s * 0.045, s * 0.022, angle, COLOURS[colour])


def draw_plane(cv: Canvas, x: float, y: float, angle: float, span: float, colour: str) -> None:
    rgb = COLOURS[colour]
    cv.rect(x, y, span, span * 0.16, angle, rgb, shadow=span * 0.08)                      # fuselage
    cv.rect(x, y, span * 0.18, span * 0.95, angle, rgb)                                    # wings
    tail_dx, tail_dy = -0.42 * span * math.cos(angle), -0.42 * span * math.sin(angle)
    cv.rect(x + tail_dx, y + tail_dy, span * 0.1, span * 0.4, angle, rgb)                  # tail plane


def draw_boat(cv: Canvas, x: float, y: float, angle: float, length: float, colour: str) -> None:
    cv.rect(x, y, length, length * 0.3, angle, COLOURS[colour], shadow=length * 0.05)
    cv.rect(x - 0.15 * length * math.cos(angle), y - 0.15 * length * math.sin(angle), length * 0.3, length * 0.2,
            angle, COLOURS["white"])


def draw_tank(cv: Canvas, x: float, y: float, r: float, colour: str) -> None:
    cv.ellipse(x + r * 0.25, y + r * 0.25, r, r, 0.0, (35, 35, 38))
    cv.ellipse(x, y, r, r, 0.0, COLOURS[colour])
    cv.ellipse(x, y, r * 0.55, r * 0.55, 0.0, np.asarray(COLOURS[colour]) * 0.85, inner=0.8)


def river_params(rng: np.random.Generator, s: int) -> dict[str, float]:
    angle = float(rng.choice([0.0, math.pi / 2, math.pi / 4, 3 * math.pi / 4]) + rng.normal(0, 0.1))
    return dict(cx=s * rng.uniform(0.35, 0.65), cy=s * rng.uniform(0.35, 0.65), angle=angle,
                amplitude=s * rng.uniform(0.02, 0.12), waves=rng.uniform(0.5, 1.5), phase=rng.uniform(0, 6.28))


def pick(rng: np.random.Generator, options) -> str:
    return str(rng.choice(list(options)))


# --------------------------------------------------------------------------- scene classes

def scene_airport(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["grass"] if rng.random() < 0.6 else GROUND["dry"], texture=12)
    angle = float(rng.choice([0.0, math.pi / 2, math.pi / 4]))
    off = s * rng.uniform(-0.3, 0.3)
    rx, ry = s / 2 - off * math.sin(angle), s / 2 + off * math.cos(angle)
    cv.band(rx, ry, angle, s * 0.11, GROUND["asphalt"])
    cv.band(rx, ry, angle, s * 0.008, COLOURS["white"])
    # terminal parallel to the runway, planes parked along it
    side = 1 if off < 0 else -1
    tx, ty = rx - side * s * 0.3 * math.sin(angle), ry + side * s * 0.3 * math.cos(angle)
    cv.rect(tx, ty, s * 0.6, s * 0.09, angle, COLOURS["white"] if rng.random() < 0.5 else COLOURS["gray"], shadow=2)
    colour = pick(rng, ["white", "gray", "blue"])
    n = int(rng.integers(1, 9))
    for k in range(n):
        along = (k - (n - 1) / 2) * s * 0.1
        px = tx + along * math.cos(angle) + side * s * 0.13 * -math.sin(angle)
        py = ty + along * math.sin(angle) + side * s * 0.13 * math.cos(angle)
        draw_plane(cv, px, py, angle + math.pi / 2, s * 0.1, colour)
    return Scene({"planes": Mention(("plane", "airplane", "aircraft"), ("planes", "airplanes", "aircraft"), n, colour),
                  "runway": direction_word(angle)})


def scene_beach(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    sand = pick(rng, ["yellow", "white"])
    cv.fill(GROUND["sand"] if sand == "yellow" else (225, 222, 210), texture=10)
    side = pick(rng, ["left", "right", "top", "bottom"])
    angle = {"left": math.pi / 2, "right": math.pi / 2, "top": 0.0, "bottom": 0.0}[side]
    edge = s * (0.25 if side in ("left", "top") else 0.75) + rng.normal(0, s * 0.05)
    cx, cy = (edge, s / 2) if side in ("left", "right") else (s / 2, edge)
    shift = -s * 0.35 if side in ("left", "top") else s * 0.35
    sx, sy = (cx + shift, cy) if side in ("left", "right") else (cx, cy + shift)
    sea = pick(rng, ["blue", "cyan"])
    cv.band(sx, sy, angle, s * 0.7 + s * 0.06, (225, 230, 225), amplitude=s * 0.02, waves=2)   # surf line
    cv.band(sx, sy, angle, s * 0.7, np.asarray(COLOURS[sea]) * 0.85, amplitude=s * 0.02, waves=2)
    n = int(rng.integers(0, 9))
    colour = pick(rng, ["red", "orange", "blue", "white"])
    bx, by = (s - cx, cy) if side in ("left", "right") else (cx, s - cy)
    for _ in range(n):
        r = s * 0.025
        cv.ellipse(bx + rng.uniform(-0.2, 0.2) * s, by + rng.uniform(-0.3, 0.3) * s, r, r, 0.0, COLOURS[colour])
    return Scene({"sea": Mention(("sea",), ("seas",), 1, sea, f"on the {side}"), "sand": sand,
                  "umbrellas": Mention(("umbrella", "parasol"), ("umbrellas", "parasols"), n, colour)})


def scene_bridge(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["grass"] if rng.random() < 0.5 else GROUND["soil"], texture=14)
    river = river_params(rng, s)
    water = pick(rng, ["blue", "green", "dark"])
    river["amplitude"] *= 0.3
    cv.band(**river, width=s * 0.3, colour=np.asarray(COLOURS[water]) * 0.8)
    n = int(rng.integers(1, 4))
    colour = pick(rng, ["gray", "white", "red"])
    for k in range(n):
        along = (k - (n - 1) / 2) * s * 0.28 + rng.normal(0, s * 0.03)
        bx = river["cx"] + along * math.cos(river["angle"])
        by = river["cy"] + along * math.sin(river["angle"])
        cv.rect(bx, by, s * 0.07, s * 0.5, river["angle"], COLOURS[colour], shadow=s * 0.02)
        for _ in range(int(rng.integers(0, 3))):
            draw_car(cv, bx + rng.normal(0, 2), by + rng.normal(0, s * 0.1), river["angle"] + math.pi / 2, "white")
    return Scene({"bridges": Mention(("bridge",), ("bridges",), n, colour),
                  "river": Mention(("river",), ("rivers",), 1, water, direction_word(river["angle"]))})


def scene_farmland(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["soil"], texture=8)
    rows, cols = int(rng.integers(1, 4)), int(rng.integers(2, 5))
    palette = list(rng.choice(["green", "yellow", "brown", "dark"], size=2, replace=False))
    crop = {"green": (90, 150, 60), "yellow": (200, 185, 90), "brown": (140, 105, 70), "dark": (50, 95, 45)}
    angle = rng.normal(0, 0.15)
    for r in range(rows):
        for c in range(cols):
            x, y = (c + 0.5) * s / cols, (r + 0.5) * s / rows
            cv.rect(x, y, s / cols - 3, s / rows - 3, angle, crop[palette[int(rng.integers(0, 2))]])
    road = rng.random() < 0.5
    if road:
        cv.band(s * rng.uniform(0.2, 0.8), s / 2, math.pi / 2 + angle, s * 0.04, GROUND["concrete"])
    return Scene({"fields": Mention(("field", "plot"), ("fields", "plots"), rows * cols, ""),
                  "colours": f"{palette[0]} and {palette[1]}", "road": road})


def scene_forest(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    tone = pick(rng, ["dark green", "green", "yellow"])
    base = {"dark green": (35, 75, 40), "green": (60, 120, 50), "yellow": (150, 140, 60)}[tone]
    cv.fill(base, texture=22, cells=12)
    draw_trees(cv, 60, s / 2, s / 2, s / 2, s * 0.04, colour=tuple(int(c * 1.15) for c in base))
    road = rng.random() < 0.5
    angle = rng.uniform(0, math.pi)
    if road:
        cv.band(s / 2, s / 2, angle, s * 0.035, GROUND["soil"], amplitude=s * 0.08, waves=1)
    houses = int(rng.integers(0, 4)) if road else 0
    draw_houses(cv, houses, "red", s / 2, s / 2, s * 0.15, s * 0.08)
    return Scene({"trees": tone, "road": road, "direction": direction_word(angle),
                  "houses": Mention(("house",), ("houses",), houses, "red")})


def scene_industrial(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["concrete"], texture=10)
    roof = pick(rng, ["white", "blue", "gray", "red"])
    n = int(rng.integers(1, 6))
    angle = rng.normal(0, 0.1)
    for k in range(n):
        x = s * (0.25 + 0.5 * ((k % 2) + rng.uniform(-0.15, 0.15)))
        y = s * (0.2 + 0.6 * ((k // 2) / 2 + rng.uniform(-0.05, 0.05)))
        cv.rect(x, y, s * rng.uniform(0.3, 0.42), s * rng.uniform(0.14, 0.2), angle, COLOURS[roof], shadow=s * 0.03)
    trucks = int(rng.integers(0, 6))
    for _ in range(trucks):
        cv.rect(s * rng.uniform(0.1, 0.9), s * rng.uniform(0.1, 0.9), s * 0.07, s * 0.025, angle, COLOURS["white"])
    return Scene({"factories": Mention(("factory", "plant", "warehouse"), ("factories", "plants", "warehouses"), n, roof),
                  "trucks": Mention(("truck",), ("trucks",), trucks, "white")})


def scene_parking(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["asphalt"], texture=6)
    rows = int(rng.integers(1, 5))
    colour = pick(rng, ["white", "red", "blue", "dark"])
    angle = float(rng.choice([0.0, math.pi / 2]))
    c, sn = math.cos(angle), math.sin(angle)
    cars = 0
    for r in range(rows):
        offset = (r - (rows - 1) / 2) * s * 0.2
        cv.band(s / 2 - offset * sn, s / 2 + offset * c, angle, 1.0, COLOURS["white"], length=s * 0.85)
        for k in range(11):
            if rng.random() < 0.75:
                along = (k - 5) * s * 0.075
                car_colour = colour if rng.random() < 0.7 else pick(rng, ["white", "red", "blue", "gray", "yellow"])
                for side in (-1, 1):
                    if rng.random() < 0.7:
                        px = s / 2 + along * c - (offset + side * s * 0.05) * sn
                        py = s / 2 + along * sn + (offset + side * s * 0.05) * c
                        draw_car(cv, px, py, angle + math.pi / 2, car_colour)
                        cars += 1
    trees = rng.random() < 0.4
    if trees:
        draw_trees(cv, 8, s * 0.5, s * 0.05, s * 0.45, s * 0.035)
    return Scene({"rows": Mention(("row",), ("rows",), rows), "cars": Mention(("car",), ("cars",), cars, colour),
                  "trees": trees})


def scene_playground(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["concrete"] if rng.random() < 0.5 else GROUND["grass"], texture=10)
    track = pick(rng, ["red", "blue", "green"])
    angle = float(rng.choice([0.0, math.pi / 2])) + rng.normal(0, 0.1)
    cx, cy = s * rng.uniform(0.4, 0.6), s * rng.uniform(0.4, 0.6)
    cv.ellipse(cx, cy, s * 0.4, s * 0.25, angle, COLOURS[track])
    cv.ellipse(cx, cy, s * 0.31, s * 0.16, angle, (60, 150, 60))
    cv.rect(cx, cy, s * 0.005 + 1, s * 0.3, angle, COLOURS["white"])
    courts = int(rng.integers(0, 4))
    court_colour = pick(rng, ["blue", "green", "red"])
    for k in range(courts):
        cv.rect(s * (0.12 + 0.25 * k), s * 0.9, s * 0.18, s * 0.1, 0.0, COLOURS[court_colour])
    buildings = int(rng.integers(0, 4))
    draw_houses(cv, buildings, "gray", s * 0.5, s * 0.08, s * 0.4, s * 0.12)
    return Scene({"track": track, "courts": Mention(("court",), ("courts",), courts, court_colour),
                  "buildings": Mention(("building",), ("buildings",), buildings, "")})


def scene_pond(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["grass"] if rng.random() < 0.6 else GROUND["dry"], texture=14)
    n = int(rng.integers(1, 4))
    water = pick(rng, ["blue", "green", "dark"])
    xs = []
    for _ in range(n):
        x, y = s * rng.uniform(0.25, 0.75), s * rng.uniform(0.25, 0.75)
        r = s * rng.uniform(0.12, 0.3) / math.sqrt(n)
        cv.ellipse(x, y, r * rng.uniform(1, 1.6), r, rng.uniform(0, math.pi), np.asarray(COLOURS[water]) * 0.8)
        xs.append((x, y))
    trees = rng.random() < 0.5
    if trees:
        draw_trees(cv, 25, s / 2, s / 2, s / 2, s * 0.035)
    cx, cy = np.mean(xs, axis=0)
    return Scene({"ponds": Mention(("pond", "pool of water"), ("ponds",), n, water, where_word(cx, cy, s)),
                  "trees": trees})


def scene_port(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["water"], texture=8)
    land_side = pick(rng, ["left", "top"])
    angle = math.pi / 2 if land_side == "left" else 0.0
    if land_side == "left":
        cv.rect(s * 0.1, s / 2, s * 0.2, s * 1.1, 0.0, GROUND["concrete"])
    else:
        cv.rect(s / 2, s * 0.1, s * 1.1, s * 0.2, 0.0, GROUND["concrete"])
    piers = int(rng.integers(1, 5))
    boats = 0
    colour = pick(rng, ["white", "red", "blue"])
    for k in range(piers):
        pos = s * (k + 0.5) / piers
        px, py = (s * 0.45, pos) if land_side == "left" else (pos, s * 0.45)
        cv.rect(px, py, s * 0.55, s * 0.04, angle + math.pi / 2, COLOURS["gray"])
        for _ in range(int(rng.integers(0, 4))):
            along = s * rng.uniform(0.25, 0.7)
            bx, by = (along, pos + s * 0.06) if land_side == "left" else (pos + s * 0.06, along)
            draw_boat(cv, bx, by, angle + math.pi / 2, s * 0.09, colour)
            boats += 1
    return Scene({"piers": Mention(("pier", "dock"), ("piers", "docks"), piers, ""),
                  "boats": Mention(("boat", "ship"), ("boats", "ships"), max(boats, 0), colour),
                  "land": f"on the {land_side}"})


def scene_residential(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["grass"], texture=10)
    dense = rng.random() < 0.5
    roof = pick(rng, ["red", "gray", "brown", "blue"])
    road_angle = float(rng.choice([0.0, math.pi / 2]))
    cv.band(s / 2, s / 2, road_angle, s * 0.07, GROUND["asphalt"])
    grid = 5 if dense else 3
    count = 0
    for r in range(grid):
        for c in range(grid):
            x, y = (c + 0.5) * s / grid, (r + 0.5) * s / grid
            if abs((y if road_angle == 0 else x) - s / 2) < s * 0.08 or rng.random() < (0.1 if dense else 0.2):
                continue
            draw_houses(cv, 1, roof, x, y, s * 0.02, s / grid * 0.55)
            count += 1
    trees = rng.random() < 0.5
    if trees:
        draw_trees(cv, 10, s / 2, s / 2, s / 2, s * 0.03)
    return Scene({"houses": Mention(("house", "building"), ("houses", "buildings"), count, roof),
                  "density": "dense" if dense else "sparse", "dense": dense, "trees": trees,
                  "road": direction_word(road_angle)})


def scene_river(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["grass"] if rng.random() < 0.5 else GROUND["dry"], texture=14)
    river = river_params(rng, s)
    water = pick(rng, ["blue", "green", "brown"])
    wide = rng.random() < 0.5
    width = s * (0.28 if wide else 0.12)
    cv.band(**river, width=width + s * 0.06, colour=(180, 170, 130))
    cv.band(**river, width=width, colour=np.asarray(COLOURS[water]) * 0.85)
    trees = rng.random() < 0.5
    if trees:
        draw_trees(cv, 25, s / 2, s / 2, s / 2, s * 0.035)
    return Scene({"river": Mention(("river",), ("rivers",), 1, water, direction_word(river["angle"])),
                  "width": "wide" if wide else "narrow", "trees": trees})


def scene_stadium(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["concrete"], texture=8)
    roof = pick(rng, ["white", "gray", "red"])
    cx, cy = s * rng.uniform(0.4, 0.6), s * rng.uniform(0.4, 0.6)
    angle = rng.uniform(0, math.pi)
    cv.ellipse(cx + 3, cy + 3, s * 0.42, s * 0.34, angle, (35, 35, 38))
    cv.ellipse(cx, cy, s * 0.42, s * 0.34, angle, COLOURS[roof])
    cv.ellipse(cx, cy, s * 0.24, s * 0.17, angle, (60, 150, 60))
    cars = int(rng.integers(0, 16))
    for _ in range(cars):
        t = rng.uniform(0, 2 * math.pi)
        draw_car(cv, cx + s * 0.47 * math.cos(t), cy + s * 0.43 * math.sin(t), t, pick(rng, ["white", "red", "blue"]))
    return Scene({"stands": roof, "cars": Mention(("car",), ("cars",), cars, "")})


def scene_storagetanks(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["concrete"] if rng.random() < 0.5 else GROUND["dry"], texture=10)
    n = int(rng.integers(1, 13))
    colour = pick(rng, ["white", "gray", "cyan"])
    large = rng.random() < 0.5
    r = s * (0.09 if large else 0.05)
    cols = int(math.ceil(math.sqrt(n)))
    cx, cy = s * rng.uniform(0.35, 0.65), s * rng.uniform(0.35, 0.65)
    gap = 2.4 * r
    for k in range(n):
        x = cx + (k % cols - (cols - 1) / 2) * gap
        y = cy + (k // cols - (math.ceil(n / cols) - 1) / 2) * gap
        draw_tank(cv, x, y, r, colour)
    return Scene({"tanks": Mention(("storage tank", "tank"), ("storage tanks", "tanks"), n, colour,
                                   where_word(cx, cy, s)), "size": "large" if large else "small"})


def scene_viaduct(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["grass"], texture=12)
    n = int(rng.integers(2, 5))
    loop = rng.random() < 0.5
    if loop:
        cv.ellipse(s / 2, s / 2, s * 0.22, s * 0.22, 0.0, GROUND["concrete"], inner=0.75)
    for k in range(n):
        angle = k * math.pi / n + rng.normal(0, 0.1)
        cv.band(s / 2 + 2, s / 2 + 2, angle, s * 0.07, (40, 40, 42))
        cv.band(s / 2, s / 2, angle, s * 0.07, GROUND["concrete"], amplitude=s * 0.03 * (k % 2), waves=0.5)
    cars = int(rng.integers(0, 10))
    for _ in range(cars):
        t = rng.uniform(-0.45, 0.45) * s
        a = float(rng.integers(0, n)) * math.pi / n
        draw_car(cv, s / 2 + t * math.cos(a), s / 2 + t * math.sin(a), a, "white")
    return Scene({"roads": Mention(("road",), ("roads",), n, ""), "loop": loop,
                  "cars": Mention(("car",), ("cars",), cars, "")})


def scene_bareland(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    tone = pick(rng, ["brown", "yellow", "gray"])
    cv.fill({"brown": GROUND["soil"], "yellow": GROUND["sand"], "gray": (150, 148, 140)}[tone], texture=25, cells=10)
    tracks = int(rng.integers(0, 4))
    for _ in range(tracks):
        cv.band(s * rng.uniform(0.2, 0.8), s * rng.uniform(0.2, 0.8), rng.uniform(0, math.pi), 1.5,
                (190, 180, 160), amplitude=s * 0.05, waves=1)
    shrubs = int(rng.integers(0, 6))
    draw_trees(cv, shrubs, s / 2, s / 2, s * 0.45, s * 0.025, colour=(70, 95, 50))
    return Scene({"tone": tone, "tracks": Mention(("track", "path"), ("tracks", "paths"), tracks, ""),
                  "shrubs": Mention(("shrub", "bush"), ("shrubs", "bushes"), shrubs, "green")})


def scene_baseballfield(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["grass"], texture=10)
    n = int(rng.integers(1, 4))
    for k in range(n):
        x, y = s * (k + 0.5) / n, s * rng.uniform(0.45, 0.6)
        r = s * 0.45 / n + s * 0.08
        cv.ellipse(x, y, r, r, 0.0, (190, 150, 100), inner=0.0)
        cv.ellipse(x, y, r * 0.6, r * 0.6, 0.0, (80, 160, 70))
        cv.rect(x, y, r * 0.35, r * 0.35, math.pi / 4, (190, 150, 100))
    return Scene({"fields": Mention(("baseball field",), ("baseball fields",), n, "")})


def scene_meadow(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    tone = pick(rng, ["green", "yellow"])
    cv.fill((100, 150, 70) if tone == "green" else (170, 165, 90), texture=16, cells=4)
    trees = int(rng.integers(0, 6))
    draw_trees(cv, trees, s / 2, s / 2, s * 0.4, s * 0.05)
    return Scene({"tone": tone, "trees": Mention(("tree",), ("trees",), trees, "")})


def scene_desert(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    tone = pick(rng, ["yellow", "orange", "white"])
    cv.fill({"yellow": (215, 190, 130), "orange": (205, 150, 90), "white": (225, 215, 195)}[tone], texture=10)
    dunes = int(rng.integers(2, 7))
    angle = rng.uniform(0, math.pi)
    for k in range(dunes):
        off = (k - (dunes - 1) / 2) * s / dunes
        cv.band(s / 2 - off * math.sin(angle), s / 2 + off * math.cos(angle), angle, s * 0.03, (160, 130, 90),
                amplitude=s * 0.04, waves=1.5, phase=k)
    return Scene({"tone": tone, "dunes": Mention(("dune",), ("dunes",), dunes, "")})


def scene_intersection(cv: Canvas) -> Scene:
    rng, s = cv.rng, cv.size
    cv.fill(GROUND["grass"] if rng.random() < 0.5 else GROUND["concrete"], texture=10)
    angle = rng.normal(0, 0.2)
    for a in (angle, angle + math.pi / 2):
        cv.band(s / 2, s / 2, a, s * 0.16, GROUND["asphalt"])
        cv.band(s / 2, s / 2, a, 1.0, COLOURS["yellow"])
    cars = int(rng.integers(0, 12))
    colour = pick(rng, ["white", "red", "dark"])
    for _ in range(cars):
        t = rng.uniform(-0.45, 0.45) * s
        a = angle + (math.pi / 2 if rng.random() < 0.5 else 0.0)
        lane = s * 0.04 * (1 if rng.random() < 0.5 else -1)
        draw_car(cv, s / 2 + t * math.cos(a) - lane * math.sin(a), s / 2 + t * math.sin(a) + lane * math.cos(a), a, colour)
    draw_houses(cv, int(rng.integers(0, 5)), "gray", s * 0.2, s * 0.2, s * 0.08, s * 0.12)
    return Scene({"cars": Mention(("car", "vehicle"), ("cars", "vehicles"), cars, colour)})


# --------------------------------------------------------------------------- captions

# Caption templates per class: {name} slots are filled from the scene (Mention -> counted phrase,
# "{name.be}" -> is/are, "{name.where}" -> position); [a|b] picks a synonym. A template is skipped
# when a slot it needs is absent (count 0 / flag False), so captions only state what was drawn.
Templates = tuple[str, ...]

SCENE_WORDS: dict[str, Templates] = {
    "airport": ("airport",), "beach": ("beach",), "bridge": ("bridge",), "farmland": ("farmland", "farm land"),
    "forest": ("forest", "woodland"), "industrial": ("industrial area", "factory area"),
    "parking": ("parking lot", "car park"), "playground": ("playground", "sports field"),
    "pond": ("pond",), "port": ("port", "harbour"), "residential": ("residential area", "neighbourhood"),
    "river": ("river",), "stadium": ("stadium",), "storagetanks": ("storage tank area", "oil depot"),
    "viaduct": ("viaduct", "overpass"), "bareland": ("bare land", "bareland"),
    "baseballfield": ("baseball field",), "meadow": ("meadow", "grassland"), "desert": ("desert",),
    "intersection": ("intersection", "crossroads"),
}

SPECIFIC: dict[str, Templates] = {
    "airport": ("{planes} {planes.be} parked [next to|beside|near] a long terminal",
                "there {planes.be} {planes} [in|at] the airport",
                "a runway runs {runway} [past|beside] {planes}",
                "{planes} {planes.be} [parked|lined up] in front of the terminal building",
                "the airport has a runway running {runway}"),
    "beach": ("the {sea.colour} sea is {sea.where} of the {sand} beach",
              "{umbrellas} {umbrellas.be} on the {sand} sand",
              "[waves|white waves] wash the beach {sea.where}",
              "a {sand} beach with {umbrellas} next to the {sea.colour} sea",
              "the sea {sea.where} meets a {sand} beach"),
    "bridge": ("a {river.colour} river is [crossed|spanned] by {bridges}",
               "a {river.colour} river runs {river.where} under {bridges}",
               "there {bridges.be} {bridges} over the river",
               "{bridges} {bridges.be} built across the river that flows {river.where}",
               "the {river.colour} water is crossed by {bridges}"),
    "farmland": ("the farmland is divided into {fields}",
                 "{colours} fields [lie|are arranged] side by side",
                 "{fields} of {colours} crops",
                 "a road passes through the {colours} farmland{road}",
                 "there {fields.be} {fields} with a road beside them{road}"),
    "forest": ("a [dense|thick] {trees} forest",
               "a [road|path] runs {direction} through the {trees} trees{road}",
               "{houses} {houses.be} hidden among the {trees} trees",
               "the forest is full of {trees} trees",
               "{trees} trees cover the whole area"),
    "industrial": ("{factories} with {factories.colour} roofs stand in the industrial area",
                   "there {factories.be} {factories} [in|at] the factory area",
                   "{trucks} {trucks.be} parked next to {factories}",
                   "{factories} {factories.be} arranged neatly with shadows beside them",
                   "several buildings with {factories.colour} roofs and {trucks}"),
    "parking": ("{cars} {cars.be} parked in {rows} in the parking lot",
                "there {rows.be} {rows} of cars in the car park",
                "{cars} {cars.be} parked [neatly|in order]",
                "a row of green trees is beside a parking lot with {cars}{trees}",
                "the parking lot is full of {cars.colour} cars"),
    "playground": ("a {track} [track|running track] surrounds a green football field",
                   "there is a {track} track with {courts} next to it",
                   "{buildings} {buildings.be} [near|beside] the {track} track",
                   "the playground has a {track} track and a green field",
                   "{courts} {courts.be} beside the playground"),
    "pond": ("{ponds} {ponds.be} {ponds.where}",
             "there {ponds.be} {ponds} surrounded by green trees{trees}",
             "{ponds} {ponds.be} [located|seen] {ponds.where} of the picture",
             "the {ponds.colour} water of the pond is {ponds.where}",
             "{ponds} in the [grassland|green land]"),
    "port": ("{boats} {boats.be} docked [at|beside] {piers}",
             "there {piers.be} {piers} in the harbour",
             "the land is {land} and {boats} {boats.be} in the water",
             "{boats} {boats.be} moored in the port",
             "{piers} {piers.be} stretching into the sea from the land {land}"),
    "residential": ("a {density} residential area with {houses.colour} roofs",
                    "{houses} with {houses.colour} roofs {houses.be} [arranged|lined up] along a road",
                    "there {houses.be} {houses} and some green trees{trees}",
                    "a road runs {road} through the {density} houses",
                    "many {houses.colour} [houses|buildings] are [densely|closely] packed{dense}"),
    "river": ("a {width} {river.colour} river runs {river.where}",
              "the {river.colour} river flows {river.where} with green trees on its banks{trees}",
              "a {width} river [winds|meanders] through the land",
              "there is a {width} {river.colour} river",
              "the banks of the {width} river are covered with sand"),
    "stadium": ("a stadium with {stands} stands around a green field",
                "{cars} {cars.be} parked around the {stands} stadium",
                "the oval stadium has a {stands} roof",
                "a green pitch is surrounded by {stands} stands",
                "there {cars.be} {cars} next to the stadium"),
    "storagetanks": ("{tanks} {tanks.be} {tanks.where}",
                     "there {tanks.be} {tanks} [in|at] the {size} tank area",
                     "{tanks} {tanks.be} [arranged|placed] neatly {tanks.where}",
                     "{size} {tanks.colour} storage tanks [stand|are located] {tanks.where}",
                     "{tanks} of {size} size {tanks.be} in the picture"),
    "viaduct": ("{roads} cross [each other|one another] at the viaduct",
                "a viaduct with {roads} and a loop{loop}",
                "{cars} {cars.be} driving on the viaduct",
                "{roads} [intersect|meet] in the green land",
                "there {roads.be} {roads} crossing over each other"),
    "bareland": ("a {tone} bare land with {tracks}",
                 "{shrubs} {shrubs.be} scattered on the {tone} land",
                 "the {tone} bare ground is crossed by {tracks}",
                 "a piece of {tone} bare land",
                 "there {shrubs.be} {shrubs} on the bare land"),
    "baseballfield": ("there {fields.be} {fields} on the green grass",
                      "{fields} {fields.be} [next to each other|side by side]",
                      "{fields} with brown sand and green lawn",
                      "the green lawn contains {fields}",
                      "{fields} {fields.be} shaped like a fan"),
    "meadow": ("a {tone} meadow with {trees}",
               "{trees} {trees.be} standing on the {tone} grassland",
               "the {tone} grass covers the whole picture",
               "a large piece of {tone} grassland",
               "there {trees.be} {trees} in the {tone} meadow"),
    "desert": ("a {tone} desert with {dunes}",
               "{dunes} {dunes.be} in the {tone} desert",
               "the {tone} sand forms {dunes}",
               "a vast {tone} desert",
               "there {dunes.be} {dunes} in the sand"),
    "intersection": ("{cars} {cars.be} driving through the intersection",
                     "two roads cross each other with {cars}",
                     "there {cars.be} {cars} at the crossroads",
                     "{cars} {cars.be} waiting at the intersection",
                     "a crossroads with {cars} on the roads"),
}

GENERIC: Templates = (
    "this is a {scene}", "a {scene} is shown in the picture", "it is a [large|big|small] {scene}",
    "we can see a {scene} from above", "an aerial view of a {scene}", "the picture shows a {scene}",
    "there is a {scene} here",
)

DISTRACTOR_CLAUSES: Templates = ("and {d} {be} [nearby|next to it|beside it]", "with {d} [around|near] it")

SceneFn = Callable[[Canvas], Scene]
SCENES: dict[str, SceneFn] = {
    "airport": scene_airport, "parking": scene_parking, "storagetanks": scene_storagetanks,
    "residential": scene_residential, "river": scene_river, "beach": scene_beach, "farmland": scene_farmland,
    "playground": scene_playground, "bridge": scene_bridge, "forest": scene_forest, "industrial": scene_industrial,
    "pond": scene_pond, "port": scene_port, "stadium": scene_stadium, "viaduct": scene_viaduct,
    "bareland": scene_bareland, "baseballfield": scene_baseballfield, "meadow": scene_meadow,
    "desert": scene_desert, "intersection": scene_intersection,
}
# Order matters: SyntheticConfig.classes takes the first N, so the first 12-16 are visually diverse.
CLASSES: tuple[str, ...] = tuple(SCENES)


def _synonyms(text: str, rng: np.random.Generator) -> str:
    """Resolve every [a|b|c] group to one choice."""
    out, start = [], 0
    while (open_ := text.find("[", start)) >= 0:
        close = text.index("]", open_)
        out += [text[start:open_], pick(rng, text[open_ + 1:close].split("|"))]
        start = close + 1
    return "".join(out) + text[start:]


def _slot(scene: Scene, key: str, rng: np.random.Generator) -> str | None:
    """Value of one template slot, or None when the scene lacks what the slot would claim."""
    name, _, attr = key.partition(".")
    value = scene.slots.get(name)
    if isinstance(value, Mention):
        if value.count == 0:
            return None
        if attr:
            return {"be": value.be(), "colour": value.colour, "where": value.where}.get(attr) or None
        return value.phrase(rng)
    if value is False or value is None:
        return None
    return "" if value is True else str(value)


def fill_template(template: str, scene: Scene, rng: np.random.Generator) -> str | None:
    """Fill one template from the scene; None when a needed slot is missing."""
    text, parts, start = _synonyms(template, rng), [], 0
    while (open_ := text.find("{", start)) >= 0:
        close = text.index("}", open_)
        value = _slot(scene, text[open_ + 1:close], rng)
        if value is None:
            return None
        parts += [text[start:open_], value]
        start = close + 1
    return " ".join("".join(parts + [text[start:]]).split())


def make_captions(cls: str, scene: Scene, distractors: list[Mention], n: int, generic_rate: float,
                  rng: np.random.Generator) -> tuple[str, ...]:
    """``n`` captions: specific ones state the drawn counts/colours/layout, generic ones only the scene."""
    scene_word = Scene({"scene": "[" + "|".join(SCENE_WORDS[cls]) + "]"})
    specific = [t for t in SPECIFIC[cls]]
    rng.shuffle(specific)
    captions: list[str] = []
    for i in range(n):
        caption = None
        if rng.random() >= generic_rate:
            while specific and caption is None:
                caption = fill_template(specific.pop(), scene, rng)
        if caption is None:
            caption = fill_template(pick(rng, GENERIC), scene_word, rng)
            caption = _synonyms(caption, rng) if caption else SCENE_WORDS[cls][0]
        elif distractors and rng.random() < 0.35:
            d = distractors[int(rng.integers(0, len(distractors)))]
            clause = pick(rng, DISTRACTOR_CLAUSES).replace("{d}", d.phrase(rng, with_colour=False)).replace("{be}", d.be())
            caption = f"{caption} {_synonyms(clause, rng)}"
        captions.append(caption)
    return tuple(captions)


# --------------------------------------------------------------------------- distractors (semantic noise)

def _distractor_tank(cv: Canvas, x: float, y: float) -> Mention:
    draw_tank(cv, x, y, cv.size * 0.04, "white")
    return Mention(("storage tank",), ("storage tanks",), 1)


def _distractor_cars(cv: Canvas, x: float, y: float) -> Mention:
    n = int(cv.rng.integers(2, 5))
    for k in range(n):
        draw_car(cv, x + k * cv.size * 0.05, y, math.pi / 2, pick(cv.rng, ["white", "red", "blue"]))
    return Mention(("car",), ("cars",), n)


def _distractor_house(cv: Canvas, x: float, y: float) -> Mention:
    draw_houses(cv, 1, pick(cv.rng, ["red", "gray"]), x, y, 0, cv.size * 0.1)
    return Mention(("house", "building"), ("houses", "buildings"), 1)


def _distractor_trees(cv: Canvas, x: float, y: float) -> Mention:
    draw_trees(cv, 6, x, y, cv.size * 0.06, cv.size * 0.03)
    return Mention(("tree",), ("trees",), 6)


def _distractor_pond(cv: Canvas, x: float, y: float) -> Mention:
    r = cv.size * 0.06
    cv.ellipse(x, y, r * 1.4, r, cv.rng.uniform(0, math.pi), np.asarray(COLOURS["blue"]) * 0.8)
    return Mention(("small pond",), ("small ponds",), 1)


def _distractor_plane(cv: Canvas, x: float, y: float) -> Mention:
    draw_plane(cv, x, y, cv.rng.uniform(0, 2 * math.pi), cv.size * 0.09, "white")
    return Mention(("plane",), ("planes",), 1)


DISTRACTORS: dict[str, Callable[[Canvas, float, float], Mention]] = {
    "storagetanks": _distractor_tank, "parking": _distractor_cars, "residential": _distractor_house,
    "forest": _distractor_trees, "pond": _distractor_pond, "airport": _distractor_plane,
}


def add_distractors(cv: Canvas, cls: str, rate: float) -> list[Mention]:
    """Poisson(rate) small objects of *other* classes at random places (semantic noise)."""
    kinds = [k for k in DISTRACTORS if k != cls]
    mentions = []
    for _ in range(int(cv.rng.poisson(rate))):
        x, y = cv.size * cv.rng.uniform(0.1, 0.9, 2)
        mentions.append(DISTRACTORS[pick(cv.rng, kinds)](cv, x, y))
    return mentions


# --------------------------------------------------------------------------- dataset

def render_image(cls: str, cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
    """One image of class ``cls`` and its captions."""
    cv = Canvas(cfg.image_size, rng)
    scene = SCENES[cls](cv)
    distractors = add_distractors(cv, cls, cfg.distractor_rate)
    captions = make_captions(cls, scene, distractors, cfg.captions_per_image, cfg.generic_caption_rate, rng)
    return cv.finish(), captions


def split_names(n: int, fractions: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Assign each image a split by a seeded permutation (splits are by image, never by caption)."""
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"synthetic.split must be three non-negative fractions, got {list(fractions)}")
    fractions = np.asarray(fractions, float) / sum(fractions)
    bounds = np.round(np.cumsum(fractions) * n).astype(int)
    names = np.empty(n, dtype=object)
    order = rng.permutation(n)
    names[order[:bounds[0]]] = SPLITS[0]
    names[order[bounds[0]:bounds[1]]] = SPLITS[1]
    names[order[bounds[1]:]] = SPLITS[2]
    return names


def generate(cfg: SyntheticConfig, seed: int, progress: bool = True
             ) -> tuple[list[str], list[ImageRecord], np.ndarray]:
    """Generate the dataset: (classes, records, pixels uint8 [N, S, S, 3]); same seed -> same bytes."""
    if not 2 <= cfg.classes <= len(CLASSES):
        raise ValueError(f"synthetic.classes must be between 2 and {len(CLASSES)}, got {cfg.classes}")
    if cfg.images < cfg.classes or cfg.image_size < 32 or cfg.captions_per_image < 1:
        raise ValueError(f"synthetic: need images >= classes, image_size >= 32 and captions_per_image >= 1 "
                         f"(got {cfg.images}, {cfg.image_size}, {cfg.captions_per_image})")
    classes = list(CLASSES[:cfg.classes])
    top = np.random.default_rng([seed, 0])
    labels = top.permutation(np.arange(cfg.images) % cfg.classes)   # balanced classes, shuffled
    splits = split_names(cfg.images, cfg.split, top)
    pixels = np.empty((cfg.images, cfg.image_size, cfg.image_size, 3), np.uint8)
    records = []
    for i in tqdm(range(cfg.images), desc="generate synthetic", disable=not progress, mininterval=1.0):
        cls = classes[labels[i]]
        # one Generator per image: image i does not depend on how many numbers earlier images drew
        pixels[i], captions = render_image(cls, cfg, np.random.default_rng([seed, 1, i]))
        records.append(ImageRecord(f"{cls}_{i}.png", str(splits[i]), cls, int(labels[i]), captions))
    return classes, records, pixels
