"""Known label errors of LFW (as in lfw_dev): pairs filed as different people that show one person.

Found by viewing, by eye, the closest "impostor" pairs of the calibration (bench/calibrate_similarity.py)
and the closest "false" matches of the 1:N test (bench/identify_models.py); see docs/similarity.md.
A 1:N or impostor-pair count that includes them counts the dataset's mistakes as the model's.
"""

from __future__ import annotations

import numpy as np

from .datasets import person_of

# Pairs that LFW files as "different people" but that show the same person, found by viewing the closest
# impostor pairs by eye (see docs/similarity.md). Each entry: (A, B, why), where A and B are an identity
# ("Name") or one image ("Name/Name_0001.jpg"); every pair with one side matching A and the other matching B
# is dropped from the impostor set (it is not counted as genuine either).
SAME_PERSON: list[tuple[str, str, str]] = [
    # the same photograph filed under two names
    ("Bart_Hendricks", "Ricky_Ray", "same photo under two names"),
    ("Emmy_Rossum", "Eva_Amurri", "same photo under two names"),
    ("Gabrielle_Rose", "Martha_Bowen", "same photo under two names"),
    # one person under two spellings of the name
    ("Noer_Moeis", "Noer_Muis", "one person, two spellings"),
    ("Nan_Wang", "Wang_Nan", "one person, name order"),
    ("Mireya_Elisa_Moscoso_Rodriguez", "Mireya_Moscoso", "one person, full and short name"),
    # the image's largest face (the one the pipeline embeds) is another person, who is in lfw_dev
    ("Aldo_Paredes/Aldo_Paredes_0002.jpg", "Sebastian_Saja", "largest face is Sebastian Saja"),
    ("Alejandro_Avila/Alejandro_Avila_0003.jpg", "Philip_Zalewski", "largest face is Philip Zalewski"),
    ("Julio_Rossi/Julio_Rossi_0001.jpg", "Christian_Gimenez", "largest face is Christian Gimenez"),
    ("Barbara_Boxer/Barbara_Boxer_0001.jpg", "Gray_Davis", "largest face is Gray Davis"),
    ("Colin_Powell/Colin_Powell_0046.jpg", "Joe_Lieberman", "largest face is Joe Lieberman"),
    ("Colin_Farrell/Colin_Farrell_0003.jpg", "Michael_Clarke_Duncan", "largest face is Michael Clarke Duncan"),
    ("Steve_McManaman/Steve_McManaman_0001.jpg", "David_Beckham", "largest face is David Beckham"),
    ("George_W_Bush/George_W_Bush_0477.jpg", "Chok_Tong_Goh", "largest face is Goh Chok Tong"),
    ("Vecdi_Gonul/Vecdi_Gonul_0001.jpg", "George_Robertson", "largest face is George Robertson"),
    ("Hugh_Grant/Hugh_Grant_0008.jpg", "Sandra_Bullock", "largest face is Sandra Bullock"),
    # ... with BlazeFace's boxes (all ~90 px on LFW's crops, so "largest" can pick the other face)
    ("James_Meeks/James_Meeks_0001.jpg", "Jesse_Jackson", "largest BlazeFace box is Jesse Jackson's"),
    ("Luiz_Inacio_Lula_da_Silva/Luiz_Inacio_Lula_da_Silva_0004.jpg", "Jose_Genoino",
     "largest BlazeFace box is Jose Genoino's"),
    # ... with YuNet's boxes (faceledger-sface-v1's detector), checked by eye
    ("George_W_Bush/George_W_Bush_0108.jpg", "Colin_Powell", "largest YuNet box is Colin Powell's"),
    # ... found with faceledger-sface-v2 (dlib's points align these faces; v1's YuNet points did not, so they
    # were not close there)
    ("Colin_Powell/Colin_Powell_0048.jpg", "George_W_Bush",
     "largest YuNet box is George W. Bush's (Powell, beside him, is not found)"),
    ("Winona_Ryder/Winona_Ryder_0015.jpg", "Mark_Geragos", "largest YuNet box is Mark Geragos'"),
    # mislabelled photo (by eye)
    ("Carlos_Ruckauf/Carlos_Ruckauf_0001.jpg", "Eduardo_Duhalde", "the photo shows Eduardo Duhalde"),
    ("Anja_Paerson/Anja_Paerson_0001.jpg", "Janica_Kostelic", "probably Janica Kostelic (same face, "
     "Croatian sponsor's headband)"),
]


def _matches(key: str, rel: str) -> bool:
    return rel == key if "/" in key else person_of(rel) == key


def is_excluded(a: str, b: str) -> bool:
    return any((_matches(x, a) and _matches(y, b)) or (_matches(x, b) and _matches(y, a)) for x, y, _ in SAME_PERSON)


def excluded_index_pairs(rels: list[str]) -> np.ndarray:
    """(i, j) with i < j for every excluded pair among rels, as an int array of shape (k, 2)."""
    out = set()
    for x, y, _ in SAME_PERSON:
        A = [i for i, r in enumerate(rels) if _matches(x, r)]
        B = [j for j, r in enumerate(rels) if _matches(y, r)]
        out.update((min(i, j), max(i, j)) for i in A for j in B if i != j)
    return np.array(sorted(out), dtype=np.int64).reshape(-1, 2)


def same_person_mask(probes: list[str], gallery: list[str]) -> np.ndarray:
    """(len(probes), len(gallery)) bool: True where the two images are known to show one person although
    LFW files them under different names."""
    out = np.zeros((len(probes), len(gallery)), dtype=bool)
    for x, y, _ in SAME_PERSON:
        for a, b in ((x, y), (y, x)):
            rows = [i for i, r in enumerate(probes) if _matches(a, r)]
            cols = [j for j, r in enumerate(gallery) if _matches(b, r)]
            for i in rows:
                out[i, cols] = True
    return out
