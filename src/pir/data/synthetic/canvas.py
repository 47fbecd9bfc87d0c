"""Drawing for the generated dataset: the Canvas, its ground texture, colour tables and object primitives.

Drawing is vectorised: every primitive computes its mask on a coordinate grid
of the object's bounding window, so Python loops run over objects, never pixels.
All randomness comes from the canvas's numpy Generator (one per image).
"""

from __future__ import annotations

import math

import numpy as np

RGB = tuple[int, int, int]

# Named colours the captions use; drawn colours jitter around these.
COLOURS: dict[str, RGB] = {
    "white": (232, 232, 228), "gray": (125, 125, 128), "red": (185, 55, 45), "blue": (50, 90, 185),
    "green": (70, 140, 60), "yellow": (215, 195, 80), "orange": (220, 125, 45), "brown": (125, 85, 50),
    "dark": (40, 45, 50), "cyan": (70, 170, 180),
}
GROUND = {"grass": (95, 130, 70), "dry": (150, 140, 100), "soil": (135, 105, 75), "sand": (214, 196, 150),
          "asphalt": (95, 95, 98), "concrete": (160, 158, 150), "water": (45, 85, 120)}


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
