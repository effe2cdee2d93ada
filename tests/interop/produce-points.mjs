// Produces points in the wire format of docs/wire-format.md (version 1) with kafkajs and @msgpack/msgpack,
// written from that document alone. The values are exact functions of (series, i), so a test can compute
// the exact statistics on its side.
//   node produce-points.mjs <brokers> <topic> <series> <pointsPerSeries> <baseTsMs> [pointsPerMessage]
import { Kafka, logLevel } from "kafkajs";
import { encode } from "@msgpack/msgpack";

const [brokers, topic, seriesArg, perSeriesArg, baseArg, perMessageArg] = process.argv.slice(2);
const seriesCount = Number(seriesArg);
const perSeries = Number(perSeriesArg);
const baseTs = Number(baseArg);
const perMessage = Number(perMessageArg ?? 1000);
const groups = 16;

export function value(s, i) { return ((i * 7919 + s * 104729) % 10007) / 16 - 100; }
export function timestamp(i) { return baseTs + ((i * 37) % 20000); }

function encodeBatch(points) {
  const strings = [], stringIndex = new Map();
  const series = [], seriesIndex = new Map();
  const intern = (s) => {
    if (!stringIndex.has(s)) { stringIndex.set(s, strings.length); strings.push(s); }
    return stringIndex.get(s);
  };
  let base = Infinity;
  for (const p of points) base = Math.min(base, p.ts);
  const flat = [];
  for (const p of points) {
    const key = p.metric + "\u0000" + JSON.stringify(p.labels);
    if (!seriesIndex.has(key)) {
      const entry = [intern(p.metric)];
      for (const [name, v] of Object.entries(p.labels)) entry.push(intern(name), intern(v));
      seriesIndex.set(key, series.length);
      series.push(entry);
    }
    flat.push(seriesIndex.get(key), p.ts - base, p.value);
  }
  return encode([1, base, strings, series, flat]);
}

const kafka = new Kafka({ clientId: "interop-producer", brokers: brokers.split(","), logLevel: logLevel.NOTHING });
// Not idempotent here: kafkajs 2.2.4's InitProducerId asks for broker 0 (the mock cluster's brokers are
// 1..3) and fails; against a real cluster use { idempotent: true, maxInFlightRequests: 1 }.
const producer = kafka.producer({ allowAutoTopicCreation: true });
await producer.connect();
let messages = 0, points = 0;
// A series always goes to one group, and a group's messages carry one key: a series stays in one partition.
for (let g = 0; g < groups; g++) {
  let batch = [];
  const flush = async () => {
    if (batch.length === 0) return;
    await producer.send({ topic, messages: [{ key: "group-" + g, value: Buffer.from(encodeBatch(batch)) }] });
    messages++; points += batch.length; batch = [];
  };
  for (let i = 0; i < perSeries; i++) {
    for (let s = g; s < seriesCount; s += groups) {
      batch.push({ metric: "interop_latency_seconds", labels: { series: "s" + s, group: "g" + g }, value: value(s, i), ts: timestamp(i) });
      if (batch.length >= perMessage) await flush();
    }
  }
  await flush();
}
await producer.disconnect();
console.log(JSON.stringify({ messages, points }));
