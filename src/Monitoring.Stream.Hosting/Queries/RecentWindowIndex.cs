using Monitoring.Stream.Model;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>
/// A sink that keeps recent window aggregates in memory, indexed by metric and label set, so that
/// statistics over a label filter or grouped by labels merge them without scanning every series.
/// </summary>
/// <remarks>
/// Bounded by <see cref="RecentWindowIndexOptions.Retention"/> (window time, measured back from the
/// newest window end) and <see cref="RecentWindowIndexOptions.MaxAggregates"/>; the oldest aggregates go
/// first. Windows that left memory, and every window of an earlier run, are answered from the Arrow store by
/// <see cref="MetricStatisticsService"/>.
/// </remarks>
public sealed class RecentWindowIndex : IWindowSink
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Dictionary<LabelSet, SeriesWindows>> _byMetric = new(StringComparer.Ordinal);
    // Ordered by window end, not arrival: shards emit on their own, so a batch of an old window can
    // arrive after a newer one's, and a FIFO would hold it (unused: it is behind the boundary) for longer.
    // One series' windows arrive in order, so the oldest entry overall is the first of its series' queue.
    private readonly PriorityQueue<(string Metric, LabelSet Labels), long> _age = new();
    private readonly long _retentionMs;
    private readonly int _maxAggregates;
    private long _newestEnd = long.MinValue;
    private long _evictedThrough = long.MinValue;
    private long _evicted;

    /// <summary>Creates an empty index.</summary>
    public RecentWindowIndex(RecentWindowIndexOptions? options = null)
    {
        options ??= new RecentWindowIndexOptions();
        if (options.Retention <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Retention, "RecentWindowIndexOptions.Retention must be positive.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxAggregates, 1, "RecentWindowIndexOptions.MaxAggregates");
        _retentionMs = (long)options.Retention.TotalMilliseconds;
        _maxAggregates = options.MaxAggregates;
    }

    /// <inheritdoc />
    public string Name => "recent-window-index";

    /// <summary>Window aggregates held.</summary>
    public int Aggregates
    {
        get
        {
            lock (_gate)
            {
                return _age.Count;
            }
        }
    }

    /// <summary>Window aggregates removed by retention or the aggregate limit.</summary>
    public long Evicted => Interlocked.Read(ref _evicted);

    /// <summary>
    /// Windows ending at or before this time (ms since the epoch) are not answered from memory: the end of the newest
    /// window evicted (the oldest go first), or <see cref="long.MinValue"/> while nothing was.
    /// </summary>
    public long MemoryBoundaryUnixMs
    {
        get
        {
            lock (_gate)
            {
                return BoundaryLocked();
            }
        }
    }

    private long BoundaryLocked() => _evictedThrough;

    /// <inheritdoc />
    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        // The batch's memory is reused once this returns: everything kept is copied out here.
        var rows = new WindowRows(batch.RecordBatch);
        var parsed = new (string Metric, LabelSet Labels, WindowAggregate Aggregate)[rows.Length];
        for (int r = 0; r < rows.Length; r++)
        {
            parsed[r] = (rows.Metric(r), rows.Labels(r), rows.Aggregate(r));
        }

        lock (_gate)
        {
            foreach ((string metric, LabelSet labels, WindowAggregate aggregate) in parsed)
            {
                if (!_byMetric.TryGetValue(metric, out Dictionary<LabelSet, SeriesWindows>? series))
                {
                    _byMetric[metric] = series = [];
                }

                if (!series.TryGetValue(labels, out SeriesWindows? windows))
                {
                    series[labels] = windows = new SeriesWindows();
                }

                EnqueueInEndOrder(windows, aggregate);
                _age.Enqueue((metric, labels), aggregate.EndUnixMs);
                _newestEnd = Math.Max(_newestEnd, aggregate.EndUnixMs);
            }

            EvictLocked();
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Keeps a series' queue in window-end order, which eviction relies on (it takes the front of the queue of the series
    /// the age queue names): a window emitted again after a later one (a Kafka cut's partial window, late points) is put
    /// in its place rather than at the back, where the front would be a newer window than the one named.
    /// </summary>
    private static void EnqueueInEndOrder(SeriesWindows windows, WindowAggregate aggregate)
    {
        if (windows.Count == 0 || windows.LastEnd <= aggregate.EndUnixMs)
        {
            windows.Enqueue(aggregate);
            windows.LastEnd = aggregate.EndUnixMs;
            return;
        }

        // Rare: rebuilt in order (stable, so equal ends keep their arrival order); the last end is unchanged.
        WindowAggregate[] held = [.. windows, aggregate];
        windows.Clear();
        foreach (WindowAggregate w in held.OrderBy(w => w.EndUnixMs))
        {
            windows.Enqueue(w);
        }
    }

    /// <summary>One series' held windows, in end order, and the end of the last.</summary>
    private sealed class SeriesWindows : Queue<WindowAggregate>
    {
        public long LastEnd { get; set; } = long.MinValue;
    }

    private void EvictLocked()
    {
        long cutoff = _newestEnd - _retentionMs;
        while (_age.TryPeek(out _, out long end) && (_age.Count > _maxAggregates || end <= cutoff))
        {
            (string metric, LabelSet labels) = _age.Dequeue();
            Dictionary<LabelSet, SeriesWindows> series = _byMetric[metric];
            SeriesWindows windows = series[labels];
            // A series' queue is kept in end order (EnqueueInEndOrder), so its front is the entry the priority queue named.
            windows.Dequeue();
            if (windows.Count == 0)
            {
                series.Remove(labels);
                if (series.Count == 0)
                {
                    _byMetric.Remove(metric);
                }
            }

            _evictedThrough = Math.Max(_evictedThrough, end);
            _evicted++;
        }
    }

    /// <summary>
    /// Merges every held aggregate of <paramref name="metric"/> whose window overlaps [from, to) and ends
    /// after the memory boundary into the accumulator <paramref name="route"/> gives its series (none: the
    /// series does not match); returns the boundary used.
    /// </summary>
    internal long Collect(string metric, Func<LabelSet, StatisticsAccumulator?> route, long fromUnixMs, long toUnixMs)
    {
        lock (_gate)
        {
            long boundary = BoundaryLocked();
            if (!_byMetric.TryGetValue(metric, out Dictionary<LabelSet, SeriesWindows>? series))
            {
                return boundary;
            }

            foreach ((LabelSet labels, SeriesWindows windows) in series)
            {
                if (route(labels) is not { } accumulator)
                {
                    continue;
                }

                foreach (WindowAggregate w in windows)
                {
                    if (w.EndUnixMs > boundary && w.EndUnixMs > fromUnixMs && w.StartUnixMs < toUnixMs)
                    {
                        accumulator.Add(labels, w);
                    }
                }
            }

            return boundary;
        }
    }

    /// <inheritdoc />
    public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc />
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
