#!/usr/bin/python3
"""bench/make_doc16k.py: writes bench/data/doc16k.json, the 16 KiB document of bench/json.sh: an
order history with nested objects, arrays, reals, integers, booleans, nulls and strings that need
escaping or hold non-ASCII text. Deterministic (a fixed seed), compact, reals in shortest form, so
apiary gives back exactly these bytes. Run it only to change the document."""
import json
import os
import random

rng = random.Random(10)
words = ["deliver", "before", "noon", "fragile", "gift", "wrap", "caf\u00e9", "na\u00efve", "\u65e5\u672c",
         "\U0001F41D", "line\nbreak", "tab\there", "quote\"d", "back\\slash"]
orders = []
size = 0
i = 0
while True:
    order = {
        "sku": f"B-{i:04d}",
        "qty": rng.randint(0, 50),
        "price": round(rng.uniform(0.5, 500), 2),
        "discount": rng.choice([None, 0.05, 0.1, 0.125, 0.333]),
        "gift": rng.random() < 0.3,
        "note": " ".join(rng.choice(words) for _ in range(rng.randint(1, 6))),
        "dims": [round(rng.uniform(1, 100), 3) for _ in range(3)],
        "warehouse": {"id": rng.randint(1, 10**9), "geo": [round(rng.uniform(-90, 90), 6),
                                                            round(rng.uniform(-180, 180), 6)]},
    }
    doc = {"id": 67890, "customer": "Grace Hopper", "active": True, "score": 0.1 + 0.2, "orders": orders + [order]}
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    if len(text) > 16384:
        break
    orders.append(order)
    i += 1
doc = {"id": 67890, "customer": "Grace Hopper", "active": True, "score": 0.1 + 0.2, "orders": orders}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "doc16k.json")
with open(out, "wb") as f:
    f.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
