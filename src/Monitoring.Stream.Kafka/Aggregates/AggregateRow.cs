using Monitoring.Stream.Model;

namespace Monitoring.Stream.Kafka.Aggregates;

/// <summary>One row of an aggregate batch (docs/arrow-schema.md): one series in one window, as partial statistics.</summary>
public sealed record AggregateRow
{
    /// <summary>Inclusive window start, ms since the Unix epoch.</summary>
    public required long WindowStartUnixMs { get; init; }

    /// <summary>Exclusive window end, ms since the Unix epoch.</summary>
    public required long WindowEndUnixMs { get; init; }

    /// <summary>The metric name.</summary>
    public required string Metric { get; init; }

    /// <summary>The series' labels, sorted by name.</summary>
    public required IReadOnlyList<Label> Labels { get; init; }

    /// <summary>Points in the window.</summary>
    public required long Count { get; init; }

    /// <summary>Sum of the values.</summary>
    public required double Sum { get; init; }

    /// <summary>Smallest value.</summary>
    public required double Min { get; init; }

    /// <summary>Largest value.</summary>
    public required double Max { get; init; }

    /// <summary>Arithmetic mean.</summary>
    public required double Mean { get; init; }

    /// <summary>Sum of squared deviations from the mean (merge with Chan et al.).</summary>
    public required double M2 { get; init; }

    /// <summary>Value with the latest event time.</summary>
    public required double Last { get; init; }

    /// <summary>The serialized DDSketch, or null when sketches are off.</summary>
    public byte[]? Sketch { get; init; }

    /// <summary>The engine instance that wrote the row's batch, from the batch metadata.</summary>
    public string? Instance { get; init; }

    /// <summary>The shard that wrote the row's batch, or -1 when the metadata does not say.</summary>
    public int Shard { get; init; } = -1;

    /// <summary>The emission sequence of the row's batch (a window emitted again has a higher one), or -1 when the metadata does not say.</summary>
    public long Sequence { get; init; } = -1;

    /// <summary>Population variance, m2 / count.</summary>
    public double Variance => Count == 0 ? double.NaN : M2 / Count;

    /// <summary>A key naming the series: metric and sorted labels in Prometheus text form.</summary>
    public string SeriesKey => SeriesKeyOf(Metric, Labels);

    /// <summary>Formats a series key the way <see cref="SeriesKey"/> does.</summary>
    public static string SeriesKeyOf(string metric, IEnumerable<Label> labels) =>
        metric + "{" + string.Join(",", labels.OrderBy(l => l.Name, StringComparer.Ordinal).Select(l => l.ToString())) + "}";
}
