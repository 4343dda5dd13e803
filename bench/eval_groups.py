import csv, json
from pathlib import Path
D = Path("/work/shared/data")
import sys
out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/groups"); out.mkdir(exist_ok=True)
m = set((D/"lfw_gender_afifi/male_names.txt").read_text().split())
f = set((D/"lfw_gender_afifi/female_names.txt").read_text().split())
with open(out/"gender.csv","w",newline="") as fh:
    w=csv.writer(fh); w.writerow(["key","group"])
    for n in sorted(m ^ f): w.writerow([n, "male" if n in m else "female"])
race = json.loads((D/"lfw_race_usc/lfw_race_dict.json").read_text())
with open(out/"race_usc.csv","w",newline="") as fh:
    w=csv.writer(fh); w.writerow(["key","group"])
    for n,r in sorted(race.items()):
        if "," not in r: w.writerow([n,r])
with open(D/"lfw_deepface_race_predictions/lfw_deepface_race_per_identity_majority.csv") as fh, open(out/"race_deepface_proxy.csv","w",newline="") as o:
    w=csv.writer(o); w.writerow(["key","group"])
    for row in csv.DictReader(fh): w.writerow([row["person"], row["majority_race"]])
