using Apache.Arrow;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// A sink that remembers every metric name seen in emitted windows, with its label names and the end of
/// its latest window, for <c>GET /api/v1/metrics</c> (the live page's searchable list). Bounded.
/// </summary>
internal sealed class MetricCatalog : IWindowSink
{
    /// <summary>Most metric names remembered; rows of later ones are counted in <see cref="Omitted"/>.</summary>
    public const int MaxMetrics = 10_000;

    /// <summary>Most label names remembered per metric.</summary>
    public const int MaxLabelNames = 64;

    private readonly Lock _gate = new();
    private readonly Dictionary<string, Entry> _metrics = new(StringComparer.Ordinal);
    private long _omitted;

    private sealed class Entry
    {
        public readonly SortedSet<string> Labels = new(StringComparer.Ordinal);
        public long LastWindowEndUnixMs;
    }

    /// <inheritdoc />
    public string Name => "metric-catalog";

    /// <summary>Window rows of metrics not remembered because the catalog was full.</summary>
    public long Omitted => Interlocked.Read(ref _omitted);

    /// <summary>The metrics known, sorted by name, optionally only those whose name contains <paramref name="search"/>.</summary>
    public IReadOnlyList<(string Name, IReadOnlyList<string> Labels, long LastWindowEndUnixMs)> List(string? search)
    {
        lock (_gate)
        {
            return [.. _metrics
                .Where(m => string.IsNullOrEmpty(search) || m.Key.Contains(search, StringComparison.OrdinalIgnoreCase))
                .OrderBy(m => m.Key, StringComparer.Ordinal)
                .Select(m => (m.Key, (IReadOnlyList<string>)[.. m.Value.Labels], m.Value.LastWindowEndUnixMs))];
        }
    }

    /// <inheritdoc />
    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        RecordBatch record = batch.RecordBatch;
        var metric = (StringArray)record.Column("metric");
        var labels = (MapArray)record.Column("labels");
        var keys = (StringArray)labels.Keys;
        lock (_gate)
        {
            string? previous = null;
            Entry? entry = null;
            for (int row = 0; row < record.Length; row++)
            {
                string name = metric.GetString(row);
                if (!string.Equals(name, previous, StringComparison.Ordinal))
                {
                    previous = name;
                    if (!_metrics.TryGetValue(name, out entry))
                    {
                        if (_metrics.Count >= MaxMetrics)
                        {
                            entry = null;
                            _omitted++;
                            continue;
                        }

                        _metrics[name] = entry = new Entry();
                    }

                    entry.LastWindowEndUnixMs = Math.Max(entry.LastWindowEndUnixMs, batch.WindowEndUnixMs);
                }

                if (entry is null)
                {
                    continue;
                }

                for (int i = labels.ValueOffsets[row]; i < labels.ValueOffsets[row + 1] && entry.Labels.Count < MaxLabelNames; i++)
                {
                    entry.Labels.Add(keys.GetString(i));
                }
            }
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc />
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
