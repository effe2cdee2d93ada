// Reads aggregate messages (one Arrow IPC stream each, docs/kafka.md) with kafkajs and apache-arrow and
// prints, per series and window, the merged count, sum, min and max.
//   node read-aggregates.mjs <brokers> <topic> <messages>
import { Kafka, logLevel } from "kafkajs";
import { tableFromIPC } from "apache-arrow";

const [brokers, topic, countArg] = process.argv.slice(2);
const expected = Number(countArg);
const kafka = new Kafka({ clientId: "interop-reader", brokers: brokers.split(","), logLevel: logLevel.NOTHING });
const consumer = kafka.consumer({ groupId: "interop-reader-" + process.pid });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const merged = {};
let read = 0;
const timer = setTimeout(() => { console.error(`read ${read} of ${expected} messages`); process.exit(3); }, 50000);
await new Promise((resolve) => {
  consumer.run({
    eachMessage: async ({ message }) => {
      const table = tableFromIPC(message.value);
      for (const row of table) {
        const labels = {};
        for (const [k, v] of row.labels) labels[k] = v;
        const keys = Object.keys(labels).sort();
        const key = row.metric + "{" + keys.map((k) => `${k}="${labels[k]}"`).join(",") + "}@" + Number(row.window_start);
        const m = merged[key] ?? (merged[key] = { count: 0, sum: 0, min: Infinity, max: -Infinity });
        m.count += Number(row.count); m.sum += row.sum; m.min = Math.min(m.min, row.min); m.max = Math.max(m.max, row.max);
      }
      if (++read === expected) resolve();
    },
  });
});
clearTimeout(timer);
await consumer.disconnect();
console.log(JSON.stringify(merged));
