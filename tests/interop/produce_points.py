#!/usr/bin/python3
"""Produces points in the wire format of docs/wire-format.md (version 1) with Debian's python3-msgpack and
python3-confluent-kafka, written from that document alone. The values are exact functions of (series, i), so a
test can compute the exact statistics on its side.

    python3 produce_points.py <brokers> <topic> <series> <points_per_series> <base_ts_ms> [points_per_message]
"""
import json
import sys

import msgpack
from confluent_kafka import Producer

GROUPS = 16


def encode_batch(points):
    """One message: each string and each series stated once, points as flat (series, delta, value) triples."""
    strings, string_index, series, series_index, flat = [], {}, [], {}, []

    def intern(s):
        if s not in string_index:
            string_index[s] = len(strings)
            strings.append(s)
        return string_index[s]

    base = min(p["ts"] for p in points)
    for p in points:
        key = (p["metric"], tuple(sorted(p["labels"].items())))
        if key not in series_index:
            entry = [intern(p["metric"])]
            for name, value in sorted(p["labels"].items()):
                entry += [intern(name), intern(value)]
            series_index[key] = len(series)
            series.append(entry)
        flat += [series_index[key], p["ts"] - base, float(p["value"])]
    return msgpack.packb([1, base, strings, series, flat], use_bin_type=True)


def value(s, i):
    return ((i * 7919 + s * 104729) % 10007) / 16 - 100


def main():
    brokers, topic, series_count, per_series, base_ts = sys.argv[1:6]
    series_count, per_series, base_ts = int(series_count), int(per_series), int(base_ts)
    per_message = int(sys.argv[6]) if len(sys.argv) > 6 else 1000
    failures = []

    def on_delivery(error, message):
        if error is not None:
            failures.append(str(error))

    # Idempotent: librdkafka retries without duplicates or reordering.
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
    messages = points = 0
    # A series always goes to one group, and a group's messages carry one key: a series stays in one partition.
    for g in range(GROUPS):
        batch = []

        def flush():
            nonlocal batch, messages, points
            if batch:
                while True:
                    try:
                        producer.produce(topic, key=("group-%d" % g).encode(), value=encode_batch(batch), on_delivery=on_delivery)
                        break
                    except BufferError:  # librdkafka's queue is full: serve deliveries, then retry
                        producer.poll(0.1)
                producer.poll(0)
                messages += 1
                points += len(batch)
                batch = []

        for i in range(per_series):
            for s in range(g, series_count, GROUPS):
                batch.append({"metric": "interop_latency_seconds", "labels": {"series": "s%d" % s, "group": "g%d" % g},
                              "value": value(s, i), "ts": base_ts + (i * 37) % 20000})
                if len(batch) >= per_message:
                    flush()
        flush()

    remaining = producer.flush(60)
    if remaining or failures:
        print("undelivered: %d, failed: %s" % (remaining, failures[:3]), file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"messages": messages, "points": points}))


if __name__ == "__main__":
    main()
