using Apache.Arrow;
using Monitoring.Stream.Model;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Store;

/// <summary>
/// Keeps the aggregates of recent windows in memory and answers "statistics of metric M with labels L
/// over the last T" by merging them (Chan for the moments, bin addition for the sketches).
/// </summary>
/// <remarks>
/// Reads back what the pipeline emitted — the Arrow columns and the serialized sketch — so it answers
/// from exactly what every other sink received. Bounded by age and by the number of window aggregates
/// held; the oldest go first.
/// </remarks>
public sealed class RecentWindowStore : IWindowSink
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, List<Entry>> _bySeries = new(StringComparer.Ordinal);
    private readonly Queue<(long End, string Key)> _age = new();
    private readonly TimeSpan _retention;
    private readonly int _maxEntries;
    private readonly TimeProvider _time;
    private long _newestEnd = long.MinValue;
    private int _entries;
    private long _evicted;

    /// <summary>Creates a store keeping <paramref name="retention"/> of window time (default 15 min), at most <paramref name="maxEntries"/> aggregates (default 2,000,000).</summary>
    public RecentWindowStore(TimeSpan? retention = null, int maxEntries = 2_000_000, TimeProvider? time = null)
    {
        _retention = retention ?? TimeSpan.FromMinutes(15);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxEntries, 1);
        _maxEntries = maxEntries;
        _time = time ?? TimeProvider.System;
    }

    private sealed record Entry(long Start, long End, RunningMoments Moments, DdSketch? Sketch);

    /// <inheritdoc />
    public string Name => "recent-windows";

    /// <summary>Window aggregates held.</summary>
    public int Entries
    {
        get
        {
            lock (_gate)
            {
                return _entries;
            }
        }
    }

    /// <summary>Window aggregates removed by retention.</summary>
    public long Evicted => Interlocked.Read(ref _evicted);

    /// <summary>The key of a series in this store: the metric followed by its labels in Prometheus notation.</summary>
    public static string KeyOf(string metric, LabelSet labels) => metric + labels.ToString();

    /// <inheritdoc />
    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        RecordBatch rb = batch.RecordBatch;
        var metric = (StringArray)rb.Column("metric");
        var labels = (MapArray)rb.Column("labels");
        var keys = (StringArray)labels.Keys;
        var values = (StringArray)labels.Values;
        var count = (Int64Array)rb.Column("count");
        var sum = (DoubleArray)rb.Column("sum");
        var min = (DoubleArray)rb.Column("min");
        var max = (DoubleArray)rb.Column("max");
        var mean = (DoubleArray)rb.Column("mean");
        var m2 = (DoubleArray)rb.Column("m2");
        var last = (DoubleArray)rb.Column("last");
        var sketch = (BinaryArray)rb.Column("sketch");

        var rows = new (string Key, Entry Entry)[rb.Length];
        for (int r = 0; r < rb.Length; r++)
        {
            int first = labels.ValueOffsets[r];
            int end = labels.ValueOffsets[r + 1];
            var pairs = new Label[end - first];
            for (int i = first; i < end; i++)
            {
                pairs[i - first] = new Label(keys.GetString(i), values.GetString(i));
            }

            var moments = RunningMoments.FromParts(count.GetValue(r)!.Value, sum.GetValue(r)!.Value, min.GetValue(r)!.Value,
                max.GetValue(r)!.Value, mean.GetValue(r)!.Value, m2.GetValue(r)!.Value, last.GetValue(r)!.Value, batch.WindowEndUnixMs - 1);
            DdSketch? s = sketch.IsNull(r) ? null : DdSketch.Deserialize(sketch.GetBytes(r));
            rows[r] = (KeyOf(metric.GetString(r), LabelSet.Create(pairs)), new Entry(batch.WindowStartUnixMs, batch.WindowEndUnixMs, moments, s));
        }

        lock (_gate)
        {
            foreach ((string key, Entry entry) in rows)
            {
                if (!_bySeries.TryGetValue(key, out List<Entry>? list))
                {
                    _bySeries[key] = list = [];
                }

                list.Add(entry);
                _age.Enqueue((entry.End, key));
                _entries++;
            }

            _newestEnd = Math.Max(_newestEnd, batch.WindowEndUnixMs);
            EvictLocked();
        }

        return ValueTask.CompletedTask;
    }

    private void EvictLocked()
    {
        long cutoff = _newestEnd - (long)_retention.TotalMilliseconds;
        while (_age.Count > 0 && (_entries > _maxEntries || _age.Peek().End <= cutoff))
        {
            (long end, string key) = _age.Dequeue();
            List<Entry> list = _bySeries[key];
            int i = list.FindIndex(e => e.End == end);
            list.RemoveAt(i);
            if (list.Count == 0)
            {
                _bySeries.Remove(key);
            }

            _entries--;
            _evicted++;
        }
    }

    /// <summary>Merges the windows of one series that ended within <paramref name="lookback"/> of the clock.</summary>
    /// <returns>The merged statistics, or null when no window of the series is held in that span.</returns>
    public SeriesStatistics? Query(string metric, LabelSet labels, TimeSpan lookback)
    {
        long now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        long from = now - (long)lookback.TotalMilliseconds;
        string key = KeyOf(metric, labels);
        lock (_gate)
        {
            if (!_bySeries.TryGetValue(key, out List<Entry>? list))
            {
                return null;
            }

            var moments = new RunningMoments();
            DdSketch? sketch = null;
            int windows = 0;
            long first = long.MaxValue, lastEnd = long.MinValue;
            foreach (Entry e in list)
            {
                if (e.End <= from)
                {
                    continue;
                }

                moments.Merge(e.Moments);
                if (e.Sketch is not null)
                {
                    sketch ??= new DdSketch(e.Sketch.RelativeAccuracy, e.Sketch.MaxBinsPerSign);
                    sketch.Merge(e.Sketch);
                }

                windows++;
                first = Math.Min(first, e.Start);
                lastEnd = Math.Max(lastEnd, e.End);
            }

            return windows == 0 ? null : new SeriesStatistics(moments, sketch, windows, first, lastEnd);
        }
    }

    /// <inheritdoc />
    public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc />
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
