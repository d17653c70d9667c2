#!/usr/bin/python3
"""bench/make_jsoncomp.py: writes bench/data/jsoncomp.json, a response shaped like HttpArena's json-comp
profile (a list of catalogue items with computed totals), deterministic so runs compare:

  bench/make_jsoncomp.py [COUNT] > bench/data/jsoncomp.json      (COUNT items, default 50)
"""
import json
import random
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
rng = random.Random(25)
categories = ["electronics", "books", "garden", "toys", "kitchen", "sports", "music", "tools"]
words = ["alpha", "bravo", "honey", "comb", "frame", "smoker", "veil", "queen", "drone", "wax", "pollen", "hive"]
items = []
for i in range(1, count + 1):
    price = round(rng.uniform(1, 500), 2)
    quantity = rng.randint(1, 100)
    items.append({
        "id": i,
        "name": " ".join(rng.choice(words) for _ in range(3)).title(),
        "category": rng.choice(categories),
        "price": price,
        "quantity": quantity,
        "active": rng.random() < 0.8,
        "tags": rng.sample(words, 3),
        "rating": {"score": round(rng.uniform(1, 5), 1), "count": rng.randint(0, 5000)},
        "total": round(price * quantity, 2),
    })
json.dump({"items": items, "count": len(items)}, sys.stdout, separators=(",", ":"))
