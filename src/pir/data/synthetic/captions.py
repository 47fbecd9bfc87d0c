"""Captions for the generated dataset: what a drawn image can be said to show, and the grammar that says it.

A scene painter returns a ``Scene`` of slot values (``Mention`` groups of drawn objects, words, flags);
per-class templates are filled from those slots, so captions state only what was drawn (counts,
colours, objects, relations). A share of captions name only the scene, which makes same-class
captions overlap and keeps R@1 below 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def pick(rng: np.random.Generator, options) -> str:
    """One of ``options`` as a str (synonyms here; the scene painters pick colours and sides with it)."""
    return str(rng.choice(list(options)))


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
