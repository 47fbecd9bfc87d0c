"""Scene class names as prompts can use them, the known scene datasets, and RemoteCLIP's prompt templates.

Datasets spell classes as their folders do: ``storagetanks`` (UCM, RSICD), ``StorageTanks`` (AID),
``storage_tank`` (RESISC45), ``AnnualCrop`` (EuroSAT). A text encoder reads "storage tanks"
(docs/evaluation.md, "Zero-shot scene classification"). ``readable_name`` looks a name up by its
letters and digits alone (so every spelling of a class finds the same entry) in a table of the
names that cannot be split mechanically, and otherwise splits snake_case, kebab-case and CamelCase.
"""

from __future__ import annotations

import re
from typing import Sequence

# The class folders of the scene datasets as they are distributed (RSICD: its scene labels, which are
# AID's classes in lower case; RSITMD's labels are covered by the names table, not listed as a dataset).
KNOWN_DATASETS: dict[str, tuple[str, ...]] = {
    "AID": (
        "Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church", "Commercial",
        "DenseResidential", "Desert", "Farmland", "Forest", "Industrial", "Meadow", "MediumResidential",
        "Mountain", "Park", "Parking", "Playground", "Pond", "Port", "RailwayStation", "Resort", "River",
        "School", "SparseResidential", "Square", "Stadium", "StorageTanks", "Viaduct"),
    "RESISC45": (
        "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral", "church",
        "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert", "forest", "freeway",
        "golf_course", "ground_track_field", "harbor", "industrial_area", "intersection", "island", "lake",
        "meadow", "medium_residential", "mobile_home_park", "mountain", "overpass", "palace", "parking_lot",
        "railway", "railway_station", "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship",
        "snowberg", "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace",
        "thermal_power_station", "wetland"),
    "UCM": (
        "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential",
        "forest", "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark",
        "overpass", "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt"),
    "WHU-RS19": (
        "Airport", "Beach", "Bridge", "Commercial", "Desert", "Farmland", "footballField", "Forest", "Industrial",
        "Meadow", "Mountain", "Park", "Parking", "Pond", "Port", "railwayStation", "Residential", "River",
        "Viaduct"),
    "EuroSAT": (
        "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
        "Residential", "River", "SeaLake"),
    "RSICD": (
        "airport", "bareland", "baseballfield", "beach", "bridge", "center", "church", "commercial",
        "denseresidential", "desert", "farmland", "forest", "industrial", "meadow", "mediumresidential",
        "mountain", "park", "parking", "playground", "pond", "port", "railwaystation", "resort", "river",
        "school", "sparseresidential", "square", "stadium", "storagetanks", "viaduct"),
}
# Other spellings of the dataset names (the pipeline's data.dataset, NWPU-RESISC45, UC Merced, ...).
DATASET_ALIASES = {"nwpu": "RESISC45", "nwpuresisc45": "RESISC45", "resisc45": "RESISC45", "aid": "AID",
                   "ucm": "UCM", "ucmerced": "UCM", "ucmercedlanduse": "UCM", "whurs19": "WHU-RS19",
                   "eurosat": "EuroSAT", "rsicd": "RSICD", "rsitmd": "RSITMD"}

# Names written without separators, which no rule can split: key (letters and digits, lower case) -> words.
JOINED_NAMES = {
    "bareland": "bare land", "baseballdiamond": "baseball diamond", "baseballfield": "baseball field",
    "basketballcourt": "basketball court", "denseresidential": "dense residential",
    "footballfield": "football field", "golfcourse": "golf course", "groundtrackfield": "ground track field",
    "mediumresidential": "medium residential", "mobilehomepark": "mobile home park", "parkinglot": "parking lot",
    "railwaystation": "railway station", "sparseresidential": "sparse residential",
    "storagetank": "storage tank", "storagetanks": "storage tanks", "tenniscourt": "tennis court",
}

# RemoteCLIP's zero-shot templates (RemoteCLIP was trained and evaluated with the ITRA codebase; its
# per-dataset class names and templates are in ChenDelong1999/ITRA, itra/data/classname_and_prompt/
# AID.py, UCMerced.py, WHURS19.py, RESISC45.py and EuroSAT.py). AID, UCM and WHU-RS19 share one set, which
# is also the default for any other dataset.
OVERHEAD_TEMPLATES = (
    "a centered satellite photo of a {}.",
    "a centered satellite photo of the {} taken from above.",
    "an overhead view of the {}.",
    "an overhead view of a {}.",
    "an overhead view of {}.",
)
RESISC45_TEMPLATES = tuple(f"{sensor} {product} of {article}{{}}."
                           for article in ("", "a ", "the ")
                           for sensor, product in (("satellite", "imagery"), ("aerial", "imagery"),
                                                   ("satellite", "photo"), ("aerial", "photo"),
                                                   ("satellite", "view"), ("aerial", "view")))
EUROSAT_TEMPLATES = ("a centered satellite photo of {}.", "a centered satellite photo of a {}.",
                     "a centered satellite photo of the {}.")
REMOTECLIP_TEMPLATES: dict[str, tuple[str, ...]] = {"AID": OVERHEAD_TEMPLATES, "UCM": OVERHEAD_TEMPLATES,
                                                    "WHU-RS19": OVERHEAD_TEMPLATES,
                                                    "RESISC45": RESISC45_TEMPLATES, "EuroSAT": EUROSAT_TEMPLATES}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")   # fooBar, HTTPServer
_SEPARATORS = re.compile(r"[\s_\-]+")


def name_key(name: str) -> str:
    """Letters and digits in lower case: ``StorageTanks``, ``storage_tanks`` and ``storagetanks`` agree."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def readable_name(name: str) -> str:
    """``storagetanks`` -> "storage tanks", ``AnnualCrop`` -> "annual crop", ``golf_course`` -> "golf course"."""
    known = JOINED_NAMES.get(name_key(name))
    if known:
        return known
    words = _SEPARATORS.sub(" ", _CAMEL.sub(" ", name)).strip().lower()
    return words or name


def readable_names(names: Sequence[str], where: str = "") -> list[str]:
    """``readable_name`` of each; ValueError (one line) when two classes would read the same."""
    readable = [readable_name(n) for n in names]
    seen: dict[str, str] = {}
    for name, words in zip(names, readable):
        if words in seen:
            raise ValueError(f"{where + ': ' if where else ''}classes {seen[words]!r} and {name!r} both read "
                             f"{words!r}; rename one of them")
        seen[words] = name
    return readable


def recognise_dataset(classes: Sequence[str], name: str = "") -> str:
    """The known dataset ``name`` (e.g. the prepared dataset's ``rsicd``) spells, else the known dataset whose
    classes these are (compared by ``name_key``; RSICD's equal AID's, AID wins), else ``name`` itself."""
    alias = DATASET_ALIASES.get(name_key(name))
    if alias:
        return alias
    keys = {name_key(c) for c in classes}
    return next((dataset for dataset, known in KNOWN_DATASETS.items() if keys == {name_key(c) for c in known}), name)


def default_templates(dataset: str) -> tuple[str, ...]:
    """RemoteCLIP's templates for ``dataset`` (a name ``recognise_dataset`` returns), its AID/UCM set otherwise."""
    return REMOTECLIP_TEMPLATES.get(dataset, OVERHEAD_TEMPLATES)
