using Monitoring.Stream.Model;

namespace Monitoring.Stream.Series;

/// <summary>What a <see cref="SeriesId"/> stands for: the metric, its canonical labels, and whether it is an overflow series.</summary>
public sealed class SeriesDescriptor
{
    internal SeriesDescriptor(SeriesId id, string metric, LabelSet labels, bool isOverflow, int hashCode)
    {
        Id = id;
        Metric = metric;
        Labels = labels;
        IsOverflow = isOverflow;
        HashCode = hashCode;
    }

    /// <summary>The dense identifier.</summary>
    public SeriesId Id { get; }

    /// <summary>The metric name.</summary>
    public string Metric { get; }

    /// <summary>The canonical labels.</summary>
    public LabelSet Labels { get; }

    /// <summary>Whether this series collects the points of label sets beyond the metric's cardinality limit.</summary>
    public bool IsOverflow { get; }

    internal int HashCode { get; }

    /// <inheritdoc />
    public override string ToString() => Metric + Labels.ToString();
}
