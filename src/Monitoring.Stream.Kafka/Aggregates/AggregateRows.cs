using Apache.Arrow;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Kafka.Aggregates;

/// <summary>Reads the rows of aggregate record batches (docs/arrow-schema.md) as typed values.</summary>
public static class AggregateRows
{
    /// <summary>Reads every row of <paramref name="batch"/>; instance and shard come from the batch metadata.</summary>
    public static List<AggregateRow> Read(RecordBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        IReadOnlyDictionary<string, string>? metadata = batch.Schema.Metadata;
        string? instance = metadata is not null && metadata.TryGetValue(WindowSchema.InstanceKey, out string? i) ? i : null;
        int shard = metadata is not null && metadata.TryGetValue(WindowSchema.ShardKey, out string? s) && int.TryParse(s, out int n) ? n : -1;
        long sequence = metadata is not null && metadata.TryGetValue(WindowSchema.SequenceKey, out string? q) && long.TryParse(q, out long m) ? m : -1;
        var start = (TimestampArray)batch.Column("window_start");
        var end = (TimestampArray)batch.Column("window_end");
        var metric = (StringArray)batch.Column("metric");
        var labels = (MapArray)batch.Column("labels");
        var keys = (StringArray)labels.Keys;
        var values = (StringArray)labels.Values;
        var count = (Int64Array)batch.Column("count");
        var sum = (DoubleArray)batch.Column("sum");
        var min = (DoubleArray)batch.Column("min");
        var max = (DoubleArray)batch.Column("max");
        var mean = (DoubleArray)batch.Column("mean");
        var m2 = (DoubleArray)batch.Column("m2");
        var last = (DoubleArray)batch.Column("last");
        var sketch = (BinaryArray)batch.Column("sketch");
        var rows = new List<AggregateRow>(batch.Length);
        for (int r = 0; r < batch.Length; r++)
        {
            var pairs = new Label[labels.ValueOffsets[r + 1] - labels.ValueOffsets[r]];
            for (int p = 0; p < pairs.Length; p++)
            {
                int at = labels.ValueOffsets[r] + p;
                pairs[p] = new Label(keys.GetString(at), values.GetString(at));
            }

            rows.Add(new AggregateRow
            {
                WindowStartUnixMs = start.GetTimestamp(r)!.Value.ToUnixTimeMilliseconds(),
                WindowEndUnixMs = end.GetTimestamp(r)!.Value.ToUnixTimeMilliseconds(),
                Metric = metric.GetString(r),
                Labels = pairs,
                Count = count.GetValue(r)!.Value,
                Sum = sum.GetValue(r)!.Value,
                Min = min.GetValue(r)!.Value,
                Max = max.GetValue(r)!.Value,
                Mean = mean.GetValue(r)!.Value,
                M2 = m2.GetValue(r)!.Value,
                Last = last.GetValue(r)!.Value,
                Sketch = sketch.IsNull(r) ? null : sketch.GetBytes(r).ToArray(),
                Instance = instance,
                Shard = shard,
                Sequence = sequence,
            });
        }

        return rows;
    }
}
