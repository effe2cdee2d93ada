using Monitoring.Stream.Model;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>
/// Answers statistics of a metric over a span — for one exact label set, for every series matching a
/// label filter merged into one answer, or grouped by chosen labels — by merging window aggregates:
/// recent windows from a <see cref="RecentWindowIndex"/>, older ones from the Arrow store's files.
/// Raw points are never kept or read.
/// </summary>
/// <remarks>
/// A window belongs to a span when it overlaps it: the span's edges are rounded out to whole windows.
/// The span can reach back as far as the Arrow store keeps files (its retention).
/// </remarks>
public sealed class MetricStatisticsService
{
    private readonly RecentWindowIndex _recent;
    private readonly ArrowStoreReader? _files;
    private readonly TimeProvider _time;

    /// <summary>
    /// Creates the service over the in-memory index and, optionally, an Arrow store folder written by <b>another</b>
    /// engine or an earlier run (every window of its files is read; none of them may also be in <paramref name="recent"/>).
    /// For the store of the same pipeline as the index, use the constructor taking the <see cref="ArrowFileStore"/>.
    /// </summary>
    public MetricStatisticsService(RecentWindowIndex recent, string? arrowStoreDirectory = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(recent);
        _recent = recent;
        _files = string.IsNullOrEmpty(arrowStoreDirectory) ? null : new ArrowStoreReader(arrowStoreDirectory);
        _time = time ?? TimeProvider.System;
    }

    /// <summary>
    /// Creates the service over the in-memory index and the Arrow store of the same pipeline: the windows this engine
    /// wrote come from memory while it holds them and from the files after it let them go; the windows of earlier runs
    /// in the store's folder always come from the files.
    /// </summary>
    public MetricStatisticsService(RecentWindowIndex recent, ArrowFileStore store, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(recent);
        ArgumentNullException.ThrowIfNull(store);
        _recent = recent;
        _files = new ArrowStoreReader(store.Directory, store.OpenedHere);
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Store files that could not be read during queries (deleted by retention meanwhile, or damaged).</summary>
    public long UnreadableFiles => _files?.UnreadableFiles ?? 0;

    /// <summary>Statistics of the one series with exactly <paramref name="labels"/> over the last <paramref name="span"/>.</summary>
    /// <returns>The statistics, or null when no window of the series lies in the span.</returns>
    public MetricStatistics? GetStatistics(string metric, LabelSet labels, TimeSpan span)
    {
        (DateTimeOffset from, DateTimeOffset to) = Last(span);
        return GetStatistics(metric, labels, from, to);
    }

    /// <summary>Statistics of the one series with exactly <paramref name="labels"/> over the windows overlapping [from, to).</summary>
    /// <returns>The statistics, or null when no window of the series lies in the span.</returns>
    public MetricStatistics? GetStatistics(string metric, LabelSet labels, DateTimeOffset from, DateTimeOffset to)
    {
        ArgumentNullException.ThrowIfNull(labels);
        var accumulator = new StatisticsAccumulator();
        Collect(metric, l => l.Equals(labels) ? accumulator : null, from, to);
        return accumulator.ToStatistics(metric);
    }

    /// <summary>Statistics of every series whose labels include all of <paramref name="filter"/>, merged into one answer, over the last <paramref name="span"/>.</summary>
    /// <returns>The statistics, or null when no matching window lies in the span.</returns>
    public MetricStatistics? GetMatching(string metric, LabelSet filter, TimeSpan span)
    {
        (DateTimeOffset from, DateTimeOffset to) = Last(span);
        return GetMatching(metric, filter, from, to);
    }

    /// <summary>Statistics of every series whose labels include all of <paramref name="filter"/>, merged into one answer, over [from, to).</summary>
    /// <returns>The statistics, or null when no matching window lies in the span.</returns>
    public MetricStatistics? GetMatching(string metric, LabelSet filter, DateTimeOffset from, DateTimeOffset to)
    {
        ArgumentNullException.ThrowIfNull(filter);
        var accumulator = new StatisticsAccumulator();
        Collect(metric, l => Includes(l, filter) ? accumulator : null, from, to);
        return accumulator.ToStatistics(metric);
    }

    /// <summary>Statistics of the series matching <paramref name="filter"/>, one answer per combination of the <paramref name="groupBy"/> labels, over the last <paramref name="span"/>.</summary>
    /// <returns>One entry per group that has data, ordered by group.</returns>
    public IReadOnlyList<GroupedStatistics> GetGrouped(string metric, LabelSet filter, IReadOnlyList<string> groupBy, TimeSpan span)
    {
        (DateTimeOffset from, DateTimeOffset to) = Last(span);
        return GetGrouped(metric, filter, groupBy, from, to);
    }

    /// <summary>Statistics of the series matching <paramref name="filter"/>, one answer per combination of the <paramref name="groupBy"/> labels, over [from, to).</summary>
    /// <returns>One entry per group that has data, ordered by group.</returns>
    public IReadOnlyList<GroupedStatistics> GetGrouped(string metric, LabelSet filter, IReadOnlyList<string> groupBy, DateTimeOffset from, DateTimeOffset to)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentNullException.ThrowIfNull(groupBy);
        var groups = new Dictionary<LabelSet, StatisticsAccumulator>();
        // Each series is routed once per query, however many windows and files it spans.
        var routes = new Dictionary<LabelSet, StatisticsAccumulator?>();
        Collect(metric, labels =>
        {
            if (routes.TryGetValue(labels, out StatisticsAccumulator? routed))
            {
                return routed;
            }

            if (!Includes(labels, filter))
            {
                routes[labels] = null;
                return null;
            }

            var picked = new List<Label>(groupBy.Count);
            foreach (string name in groupBy)
            {
                if (labels.GetValue(name) is string value)
                {
                    picked.Add(new Label(name, value));
                }
            }

            LabelSet key = LabelSet.Create([.. picked]);
            if (!groups.TryGetValue(key, out StatisticsAccumulator? accumulator))
            {
                groups[key] = accumulator = new StatisticsAccumulator();
            }

            routes[labels] = accumulator;
            return accumulator;
        }, from, to);

        // A series is routed to its group before its windows are checked against the span, so a group whose
        // series have no window in the span has merged nothing: it is left out, not answered with null statistics.
        return [.. groups
            .Select(g => (g.Key, Statistics: g.Value.ToStatistics(metric)))
            .Where(g => g.Statistics is not null)
            .Select(g => new GroupedStatistics(g.Key, g.Statistics!))
            .OrderBy(g => g.Group.ToString(), StringComparer.Ordinal)];
    }

    private (DateTimeOffset From, DateTimeOffset To) Last(TimeSpan span)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(span, TimeSpan.Zero);
        DateTimeOffset now = _time.GetUtcNow();

        // A span reaching back before year 1 (TimeSpan.MaxValue: "everything kept") starts at the earliest time
        // instead of failing in DateTimeOffset's arithmetic with an error that names neither the span nor the query.
        return (span >= now - DateTimeOffset.MinValue ? DateTimeOffset.MinValue : now - span, now);
    }

    private void Collect(string metric, Func<LabelSet, StatisticsAccumulator?> route, DateTimeOffset from, DateTimeOffset to)
    {
        ArgumentException.ThrowIfNullOrEmpty(metric);
        if (to <= from)
        {
            throw new ArgumentException($"The span is empty: from {from:O} is not before to {to:O}.", nameof(to));
        }

        // Rounded out to whole milliseconds, as windows are: a span within one millisecond is that millisecond, not empty.
        long fromMs = from.ToUnixTimeMilliseconds();
        long toMs = to.ToUnixTimeMilliseconds();
        if (to.UtcTicks % TimeSpan.TicksPerMillisecond != 0)
        {
            toMs++;
        }

        // Memory answers the windows it holds that end after its boundary (the newest end it evicted); the files
        // answer the rest of this engine's windows and every window of earlier runs: no window is counted twice,
        // and a window split by a restart is counted from both sides.
        long boundary = _recent.Collect(metric, route, fromMs, toMs);
        _files?.Collect(metric, route, fromMs, toMs, boundary);
    }

    /// <summary>Whether <paramref name="labels"/> carries every label of <paramref name="filter"/> with the same value.</summary>
    internal static bool Includes(LabelSet labels, LabelSet filter)
    {
        foreach (Label wanted in filter.AsSpan())
        {
            if (!string.Equals(labels.GetValue(wanted.Name), wanted.Value, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }
}
