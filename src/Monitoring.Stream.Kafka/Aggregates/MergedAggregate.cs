using Monitoring.Stream.Model;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Kafka.Aggregates;

/// <summary>The merge of every partial aggregate of one series in one window.</summary>
public sealed class MergedAggregate
{
    private RunningMoments _moments;

    internal MergedAggregate(string metric, IReadOnlyList<Label> labels, long windowStartUnixMs, long windowEndUnixMs)
    {
        Metric = metric;
        Labels = labels;
        WindowStartUnixMs = windowStartUnixMs;
        WindowEndUnixMs = windowEndUnixMs;
    }

    /// <summary>The metric name.</summary>
    public string Metric { get; }

    /// <summary>The labels, sorted by name.</summary>
    public IReadOnlyList<Label> Labels { get; }

    /// <summary>Inclusive window start, ms since the epoch.</summary>
    public long WindowStartUnixMs { get; }

    /// <summary>Exclusive window end, ms since the epoch.</summary>
    public long WindowEndUnixMs { get; }

    /// <summary>Partial aggregates merged in.</summary>
    public int Partials { get; private set; }

    /// <summary>The merged count, sum, min, max, mean and m2 (Chan et al.).</summary>
    public RunningMoments Moments => _moments;

    /// <summary>The merged sketch, or null when a partial had none.</summary>
    public DdSketch? Sketch { get; private set; }

    internal void Add(AggregateRow row)
    {
        // The Arrow rows carry no event time of the last value: a partial's window end stands in for it,
        // so "last" of a merge is the last value of one of the partials, not necessarily the latest.
        _moments.Merge(RunningMoments.FromParts(row.Count, row.Sum, row.Min, row.Max, row.Mean, row.M2, row.Last, row.WindowEndUnixMs));
        if (Partials == 0)
        {
            Sketch = row.Sketch is null ? null : DdSketch.Deserialize(row.Sketch);
        }
        else if (Sketch is not null)
        {
            if (row.Sketch is null)
            {
                Sketch = null;
            }
            else
            {
                Sketch.Merge(DdSketch.Deserialize(row.Sketch));
            }
        }

        Partials++;
    }
}
