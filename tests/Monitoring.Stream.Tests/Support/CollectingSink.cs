using Apache.Arrow;
using Monitoring.Stream.Model;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Tests.Support;

/// <summary>One row of an emitted window, read back from the Arrow batch.</summary>
internal sealed record WindowRow(
    long WindowStartMs, long WindowEndMs, int Shard, string Metric, LabelSet Labels, long Count, double Sum, double Min, double Max,
    double Mean, double M2, double Variance, double StdDev, double Last, double?[] Quantiles, DdSketch? Sketch)
{
    public string Key => Metric + Labels;
}

/// <summary>A sink that keeps every row it receives, read through the Arrow columns as a consumer would.</summary>
internal sealed class CollectingSink : IWindowSink
{
    private readonly Lock _gate = new();
    private readonly List<WindowRow> _rows = [];
    private readonly List<WindowBatchInfo> _batches = [];

    public string Name => "collect";

    public IReadOnlyList<WindowRow> Rows
    {
        get
        {
            lock (_gate)
            {
                return [.. _rows];
            }
        }
    }

    public IReadOnlyList<WindowBatchInfo> Batches
    {
        get
        {
            lock (_gate)
            {
                return [.. _batches];
            }
        }
    }

    public bool Completed { get; private set; }

    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        List<WindowRow> rows = Read(batch.RecordBatch, batch.Shard);
        lock (_gate)
        {
            _rows.AddRange(rows);
            _batches.Add(new WindowBatchInfo(batch.WindowStartUnixMs, batch.WindowEndUnixMs, batch.Shard, batch.Points, batch.Instance));
        }

        return ValueTask.CompletedTask;
    }

    public static List<WindowRow> Read(RecordBatch rb, int shard)
    {
        var start = (TimestampArray)rb.Column("window_start");
        var end = (TimestampArray)rb.Column("window_end");
        var metric = (StringArray)rb.Column("metric");
        var labels = (MapArray)rb.Column("labels");
        var keys = (StringArray)labels.Keys;
        var values = (StringArray)labels.Values;
        var sketch = (BinaryArray)rb.Column("sketch");
        double D(string column, int row) => ((DoubleArray)rb.Column(column)).GetValue(row)!.Value;
        var rows = new List<WindowRow>(rb.Length);
        for (int r = 0; r < rb.Length; r++)
        {
            var pairs = new List<Label>();
            for (int i = labels.ValueOffsets[r]; i < labels.ValueOffsets[r + 1]; i++)
            {
                pairs.Add(new Label(keys.GetString(i), values.GetString(i)));
            }

            double?[] quantiles = [.. new[] { "p50", "p90", "p95", "p99" }.Select(c => ((DoubleArray)rb.Column(c)).GetValue(r))];
            rows.Add(new WindowRow(
                start.GetTimestamp(r)!.Value.ToUnixTimeMilliseconds(), end.GetTimestamp(r)!.Value.ToUnixTimeMilliseconds(), shard,
                metric.GetString(r), LabelSet.Create([.. pairs]), ((Int64Array)rb.Column("count")).GetValue(r)!.Value,
                D("sum", r), D("min", r), D("max", r), D("mean", r), D("m2", r), D("variance", r), D("stddev", r), D("last", r),
                quantiles, sketch.IsNull(r) ? null : DdSketch.Deserialize(sketch.GetBytes(r))));
        }

        return rows;
    }

    public ValueTask CompleteAsync(CancellationToken cancellationToken)
    {
        Completed = true;
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

internal sealed record WindowBatchInfo(long StartMs, long EndMs, int Shard, long Points, string Instance);
