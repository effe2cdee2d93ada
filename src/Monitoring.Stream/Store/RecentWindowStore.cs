using System.Globalization;
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
/// held; the oldest go first. A row it cannot take (non-finite or inconsistent moments, a malformed
/// sketch) is skipped and counted in <see cref="RowsSkipped"/>; the other rows of its batch are kept.
/// </remarks>
public sealed class RecentWindowStore : IWindowSink
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, SeriesEntries> _bySeries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<string, LabelSet>> _byMetric = new(StringComparer.Ordinal);
    // Ordered by window end, not by arrival: shards emit on their own, so a batch of an old window can
    // arrive after one of a newer window, and a FIFO would keep it until the newer one expired.
    private readonly PriorityQueue<string, long> _age = new();
    private readonly TimeSpan _retention;
    private readonly int _maxEntries;
    private readonly TimeProvider _time;
    private long _newestEnd = long.MinValue;
    private int _entries;
    private long _evicted;
    private long _rowsSkipped;
    private string? _lastSkipReason;
    private bool _completed;
    private bool _disposed;

    /// <summary>Creates a store keeping <paramref name="retention"/> of window time (default 15 min), at most <paramref name="maxEntries"/> aggregates (default 2,000,000).</summary>
    public RecentWindowStore(TimeSpan? retention = null, int maxEntries = 2_000_000, TimeProvider? time = null)
        : this(new RecentWindowStoreOptions
        {
            Retention = retention ?? TimeSpan.FromMinutes(15),
            MaxEntries = maxEntries,
            TimeProvider = time ?? TimeProvider.System,
        })
    {
    }

    /// <summary>Creates a store with the given settings, validated and copied: later changes to the object have no effect.</summary>
    public RecentWindowStore(RecentWindowStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _retention = options.Retention;
        _maxEntries = options.MaxEntries;
        _time = options.TimeProvider;
    }

    private sealed record Entry(long Start, long End, RunningMoments Moments, DdSketch? Sketch);

    /// <summary>One series' held windows, oldest first, with the metric and labels it was keyed from.</summary>
    private sealed class SeriesEntries(string metric, LabelSet labels)
    {
        public string Metric { get; } = metric;

        public LabelSet Labels { get; } = labels;

        public List<Entry> Windows { get; } = [];
    }

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

    /// <summary>Rows of received batches that could not be taken (non-finite or inconsistent moments, a malformed sketch) and were skipped; the other rows of their batch were kept.</summary>
    public long RowsSkipped => Interlocked.Read(ref _rowsSkipped);

    /// <summary>Why the last skipped row was skipped (its series and the problem), or null when none was.</summary>
    public string? LastSkipReason => Volatile.Read(ref _lastSkipReason);

    /// <summary>The key of a series in this store: the metric followed by its labels in Prometheus notation.</summary>
    public static string KeyOf(string metric, LabelSet labels)
    {
        ArgumentNullException.ThrowIfNull(metric);
        ArgumentNullException.ThrowIfNull(labels);
        return metric + labels.ToString();
    }

    /// <summary>Takes the rows of a window batch; a row that cannot be taken is skipped and counted in <see cref="RowsSkipped"/>, never the batch.</summary>
    /// <exception cref="InvalidOperationException">The store was completed or disposed.</exception>
    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        ThrowIfClosed();
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

        var rows = new List<(string Key, string Metric, LabelSet Labels, Entry Entry)>(rb.Length);
        for (int r = 0; r < rb.Length; r++)
        {
            string? key = null;
            try
            {
                int first = labels.ValueOffsets[r];
                int end = labels.ValueOffsets[r + 1];
                var pairs = new Label[end - first];
                for (int i = first; i < end; i++)
                {
                    pairs[i - first] = new Label(keys.GetString(i), values.GetString(i));
                }

                string metricName = metric.GetString(r);
                LabelSet labelSet = LabelSet.Create(pairs);
                key = KeyOf(metricName, labelSet);
                long n = count.GetValue(r) ?? throw new InvalidDataException("count is null");
                double s = Finite(sum, r, "sum"), lo = Finite(min, r, "min"), hi = Finite(max, r, "max");
                double mu = Finite(mean, r, "mean"), sq = Finite(m2, r, "m2"), lastValue = Finite(last, r, "last");
                if (n <= 0)
                {
                    throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"count {n} is not positive"));
                }

                // FromParts checks the rest (min <= max, m2 >= 0); the finite checks above keep NaN and
                // infinities from a series whose values overflowed out of every later merge.
                var moments = RunningMoments.FromParts(n, s, lo, hi, mu, sq, lastValue, batch.WindowEndUnixMs - 1);
                DdSketch? sk = sketch.IsNull(r) ? null : DdSketch.Deserialize(sketch.GetBytes(r));
                rows.Add((key, metricName, labelSet, new Entry(batch.WindowStartUnixMs, batch.WindowEndUnixMs, moments, sk)));
            }
            catch (Exception e) when (e is InvalidDataException or FormatException or ArgumentException or OverflowException or IndexOutOfRangeException)
            {
                Interlocked.Increment(ref _rowsSkipped);
                Volatile.Write(ref _lastSkipReason, string.Create(CultureInfo.InvariantCulture,
                    $"row {r} ({key ?? "unreadable series"}) of window {batch.WindowStartUnixMs}, shard {batch.Shard}: {e.Message}"));
            }
        }

        lock (_gate)
        {
            foreach ((string key, string metricName, LabelSet labelSet, Entry entry) in rows)
            {
                if (!_bySeries.TryGetValue(key, out SeriesEntries? series))
                {
                    _bySeries[key] = series = new SeriesEntries(metricName, labelSet);
                    if (!_byMetric.TryGetValue(metricName, out Dictionary<string, LabelSet>? ofMetric))
                    {
                        _byMetric[metricName] = ofMetric = new Dictionary<string, LabelSet>(StringComparer.Ordinal);
                    }

                    ofMetric[key] = labelSet;
                }

                series.Windows.Add(entry);
                _age.Enqueue(key, entry.End);
                _entries++;
            }

            _newestEnd = Math.Max(_newestEnd, batch.WindowEndUnixMs);
            EvictLocked();
        }

        return ValueTask.CompletedTask;
    }

    private static double Finite(DoubleArray column, int row, string name)
    {
        double? value = column.GetValue(row);
        if (value is not { } v || !double.IsFinite(v))
        {
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"{name} is {(value is null ? "null" : value.Value.ToString(CultureInfo.InvariantCulture))}, not a finite number"));
        }

        return v;
    }

    private void ThrowIfClosed()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_completed)
            {
                throw new InvalidOperationException("The recent-window store was completed: no batch can be written after CompleteAsync.");
            }
        }
    }

    private void EvictLocked()
    {
        long cutoff = _newestEnd - (long)_retention.TotalMilliseconds;
        while (_age.TryPeek(out _, out long oldest) && (_entries > _maxEntries || oldest <= cutoff))
        {
            long end = oldest;
            string key = _age.Dequeue();
            SeriesEntries series = _bySeries[key];
            List<Entry> list = series.Windows;
            int i = list.FindIndex(e => e.End == end);
            list.RemoveAt(i);
            if (list.Count == 0)
            {
                _bySeries.Remove(key);
                Dictionary<string, LabelSet> ofMetric = _byMetric[series.Metric];
                ofMetric.Remove(key);
                if (ofMetric.Count == 0)
                {
                    _byMetric.Remove(series.Metric);
                }
            }

            _entries--;
            _evicted++;
        }
    }

    /// <summary>Merges the windows of one series that ended within <paramref name="lookback"/> of the clock.</summary>
    /// <returns>The merged statistics, or null when no window of the series is held in that span.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="metric"/> or <paramref name="labels"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="lookback"/> is negative.</exception>
    public SeriesStatistics? Query(string metric, LabelSet labels, TimeSpan lookback)
    {
        ArgumentNullException.ThrowIfNull(metric);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfLessThan(lookback, TimeSpan.Zero);
        long now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        long from = now - (long)lookback.TotalMilliseconds;
        string key = KeyOf(metric, labels);
        lock (_gate)
        {
            if (!_bySeries.TryGetValue(key, out SeriesEntries? series))
            {
                return null;
            }

            List<Entry> list = series.Windows;

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

    /// <summary>The names of the metrics of which at least one window is held, in ordinal order.</summary>
    public IReadOnlyList<string> GetMetricNames()
    {
        string[] names;
        lock (_gate)
        {
            names = [.. _byMetric.Keys];
        }

        System.Array.Sort(names, StringComparer.Ordinal);
        return names;
    }

    /// <summary>The label sets of the series of <paramref name="metric"/> of which at least one window is held, ordered by their Prometheus notation; empty for a metric not held.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="metric"/> is null.</exception>
    public IReadOnlyList<LabelSet> GetSeries(string metric)
    {
        ArgumentNullException.ThrowIfNull(metric);
        KeyValuePair<string, LabelSet>[] series;
        lock (_gate)
        {
            if (!_byMetric.TryGetValue(metric, out Dictionary<string, LabelSet>? ofMetric))
            {
                return [];
            }

            series = [.. ofMetric];
        }

        // The keys share the metric prefix, so their order is the order of the labels' notation.
        System.Array.Sort(series, static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return System.Array.ConvertAll(series, static s => s.Value);
    }

    /// <summary>Series (metric and label set) of which at least one window is held.</summary>
    public int SeriesCount
    {
        get
        {
            lock (_gate)
            {
                return _bySeries.Count;
            }
        }
    }

    /// <summary>Stops taking batches (later writes throw <see cref="InvalidOperationException"/>); what is held stays queryable.</summary>
    public ValueTask CompleteAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            _completed = true;
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Stops taking batches (later writes throw <see cref="ObjectDisposedException"/>); what is held stays queryable. Safe to call more than once.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            _disposed = true;
        }

        return ValueTask.CompletedTask;
    }
}
