"""The scene classes of the generated dataset: one painter per class, distractors, and the class registry.

Each painter draws a top-down RGB scene of one RSITMD-like class on a ``Canvas`` (class-typical
ground texture plus objects whose counts, sizes, colours, positions and rotations are random) and
returns the ``Scene`` its captions are made from. Distractor objects of other classes add semantic noise.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from pir.data.synthetic.canvas import (COLOURS, GROUND, Canvas, draw_boat, draw_car, draw_houses, draw_plane,
                                       draw_tank, draw_trees, river_params)
from pir.data.synthetic.captions import Mention, Scene, direction_word, pick, where_word


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


# --------------------------------------------------------------------------- registry

# Order matters: SyntheticConfig.classes takes the first N (pir.data.synthetic.CLASSES), so the first
# 12-16 are visually diverse.
SceneFn = Callable[[Canvas], Scene]
SCENES: dict[str, SceneFn] = {
    "airport": scene_airport, "parking": scene_parking, "storagetanks": scene_storagetanks,
    "residential": scene_residential, "river": scene_river, "beach": scene_beach, "farmland": scene_farmland,
    "playground": scene_playground, "bridge": scene_bridge, "forest": scene_forest, "industrial": scene_industrial,
    "pond": scene_pond, "port": scene_port, "stadium": scene_stadium, "viaduct": scene_viaduct,
    "bareland": scene_bareland, "baseballfield": scene_baseballfield, "meadow": scene_meadow,
    "desert": scene_desert, "intersection": scene_intersection,
}


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
