using Monitoring.Stream.Model;

namespace Monitoring.Stream.Kafka.Aggregates;

/// <summary>
/// Merges partial aggregates of one series and window — from several instances or shards, or re-emitted for
/// late data — into one: count, sum, min and max add up exactly, mean and m2 by Chan et al., sketches merge.
/// </summary>
/// <remarks>
/// A partial delivered twice (a replay after a crash, see docs/kafka.md) is merged twice unless the caller drops
/// duplicates first, by message key (instance/shard/window) and the rows' content.
/// </remarks>
public sealed class AggregateMerger
{
    private readonly Dictionary<(string Series, long Start, long End), MergedAggregate> _merged = [];

    /// <summary>The merged aggregates so far.</summary>
    public IReadOnlyCollection<MergedAggregate> Results => _merged.Values;

    /// <summary>Merges one partial aggregate.</summary>
    public void Add(AggregateRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var key = (row.SeriesKey, row.WindowStartUnixMs, row.WindowEndUnixMs);
        if (!_merged.TryGetValue(key, out MergedAggregate? merged))
        {
            merged = new MergedAggregate(row.Metric, [.. row.Labels.OrderBy(l => l.Name, StringComparer.Ordinal)], row.WindowStartUnixMs, row.WindowEndUnixMs);
            _merged.Add(key, merged);
        }

        merged.Add(row);
    }

    /// <summary>Merges every row of <paramref name="rows"/>.</summary>
    public void AddRange(IEnumerable<AggregateRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        foreach (AggregateRow row in rows)
        {
            Add(row);
        }
    }

    /// <summary>The merged aggregate of a series and window, or null.</summary>
    public MergedAggregate? Find(string metric, IEnumerable<Label> labels, long windowStartUnixMs, long windowEndUnixMs) =>
        _merged.GetValueOrDefault((AggregateRow.SeriesKeyOf(metric, labels), windowStartUnixMs, windowEndUnixMs));
}
