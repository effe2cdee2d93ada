using Apache.Arrow;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>A sink beside the remote-write sink that keeps every row the engine emitted, for the expected values.</summary>
internal sealed class RowCollectingSink : IWindowSink
{
    private readonly Lock _gate = new();
    private readonly List<CollectedRow> _rows = [];

    public string Name => "collect";

    public IReadOnlyList<CollectedRow> Rows
    {
        get
        {
            lock (_gate)
            {
                return [.. _rows];
            }
        }
    }

    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        RecordBatch rb = batch.RecordBatch;
        var metric = (StringArray)rb.Column("metric");
        var labels = (MapArray)rb.Column("labels");
        var keys = (StringArray)labels.Keys;
        var values = (StringArray)labels.Values;
        double D(string column, int row) => ((DoubleArray)rb.Column(column)).GetValue(row)!.Value;
        var rows = new List<CollectedRow>();
        for (int r = 0; r < rb.Length; r++)
        {
            var pairs = new List<KeyValuePair<string, string>>();
            for (int i = labels.ValueOffsets[r]; i < labels.ValueOffsets[r + 1]; i++)
            {
                pairs.Add(new(keys.GetString(i), values.GetString(i)));
            }

            double?[] quantiles = [.. new[] { "p50", "p90", "p95", "p99" }.Select(c => ((DoubleArray)rb.Column(c)).GetValue(r))];
            rows.Add(new CollectedRow(batch.WindowEndUnixMs, metric.GetString(r), pairs, ((Int64Array)rb.Column("count")).GetValue(r)!.Value,
                D("sum", r), D("min", r), D("max", r), D("mean", r), D("stddev", r), D("last", r), quantiles, batch.Instance));
        }

        lock (_gate)
        {
            _rows.AddRange(rows);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
