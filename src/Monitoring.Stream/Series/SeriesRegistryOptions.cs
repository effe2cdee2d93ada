namespace Monitoring.Stream.Series;

/// <summary>Limits of a <see cref="SeriesRegistry"/>; together they bound its memory.</summary>
public sealed class SeriesRegistryOptions
{
    /// <summary>Distinct label sets per metric before new ones fold into the overflow series (default 100,000).</summary>
    public int MaxSeriesPerMetric { get; set; } = 100_000;

    /// <summary>Distinct metric names before new ones are refused (default 10,000).</summary>
    public int MaxMetrics { get; set; } = 10_000;

    /// <summary>Labels one series may carry (default 32, at most 128).</summary>
    public int MaxLabelsPerSeries { get; set; } = 32;

    /// <summary>Characters in a metric or label name (default 256).</summary>
    public int MaxNameLength { get; set; } = 256;

    /// <summary>Characters in a label value (default 4,096).</summary>
    public int MaxLabelValueLength { get; set; } = 4096;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxSeriesPerMetric, 1, nameof(MaxSeriesPerMetric));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMetrics, 1, nameof(MaxMetrics));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxLabelsPerSeries, 0, nameof(MaxLabelsPerSeries));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxLabelsPerSeries, 128, nameof(MaxLabelsPerSeries));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxNameLength, 1, nameof(MaxNameLength));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxLabelValueLength, 1, nameof(MaxLabelValueLength));
    }
}
