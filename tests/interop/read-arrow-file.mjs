// Reads an Arrow IPC file written by Monitoring.Stream with the apache-arrow JavaScript library,
// and prints what it found as JSON, so a test can compare it with what was written.
import { readFileSync } from 'node:fs';
import { tableFromIPC } from 'apache-arrow';

const table = tableFromIPC(readFileSync(process.argv[2]));
const rows = [];
for (const row of table) {
  const labels = {};
  for (const [k, v] of row.labels) labels[k] = v;
  rows.push({
    window_start_ms: Number(row.window_start),
    window_end_ms: Number(row.window_end),
    metric: row.metric,
    labels,
    count: Number(row.count),
    sum: row.sum,
    min: row.min,
    max: row.max,
    mean: row.mean,
    m2: row.m2,
    variance: row.variance,
    last: row.last,
    p50: row.p50,
    p99: row.p99,
    sketch_bytes: row.sketch === null ? null : row.sketch.length,
  });
}
const fields = table.schema.fields.map((f) => ({ name: f.name, type: String(f.type), nullable: f.nullable }));
const metadata = Object.fromEntries(table.schema.metadata);
process.stdout.write(JSON.stringify({ numRows: table.numRows, fields, metadata, rows }));
