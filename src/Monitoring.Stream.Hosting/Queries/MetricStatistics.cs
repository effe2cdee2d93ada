using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>
/// Statistics of a metric over a span, merged exactly from window aggregates: moments by Chan et al.'s
/// merge, quantiles from the merged DDSketch (within its relative accuracy of the exact value).
/// </summary>
public sealed class MetricStatistics
{
    private readonly RunningMoments _moments;

    internal MetricStatistics(string metric, RunningMoments moments, DdSketch? sketch, int series, int windows, long fromUnixMs, long toUnixMs)
    {
        Metric = metric;
        _moments = moments;
        Sketch = sketch;
        Series = series;
        Windows = windows;
        FromUnixMs = fromUnixMs;
        ToUnixMs = toUnixMs;
    }

    /// <summary>The metric.</summary>
    public string Metric { get; }

    /// <summary>Values merged.</summary>
    public long Count => _moments.Count;

    /// <summary>Sum of the values.</summary>
    public double Sum => _moments.Sum;

    /// <summary>Smallest value (exact).</summary>
    public double Min => _moments.Min;

    /// <summary>Largest value (exact).</summary>
    public double Max => _moments.Max;

    /// <summary>Arithmetic mean.</summary>
    public double Mean => _moments.Mean;

    /// <summary>Population variance, M2 / n.</summary>
    public double PopulationVariance => _moments.PopulationVariance;

    /// <summary>Sample variance, M2 / (n - 1); NaN below two values.</summary>
    public double SampleVariance => _moments.SampleVariance;

    /// <summary>Population standard deviation.</summary>
    public double PopulationStdDev => _moments.PopulationStdDev;

    /// <summary>Sample standard deviation; NaN below two values.</summary>
    public double SampleStdDev => _moments.SampleStdDev;

    /// <summary>The value of the latest window's last point (for a gauge: its current level).</summary>
    public double Last => _moments.Last;

    /// <summary>Median from the merged sketch; NaN without sketches.</summary>
    public double Median => Quantile(0.5);

    /// <summary>90th percentile from the merged sketch; NaN without sketches.</summary>
    public double P90 => Quantile(0.9);

    /// <summary>95th percentile from the merged sketch; NaN without sketches.</summary>
    public double P95 => Quantile(0.95);

    /// <summary>99th percentile from the merged sketch; NaN without sketches.</summary>
    public double P99 => Quantile(0.99);

    /// <summary>Series merged into this answer.</summary>
    public int Series { get; }

    /// <summary>Window aggregates merged.</summary>
    public int Windows { get; }

    /// <summary>Start of the earliest window merged, ms since the epoch.</summary>
    public long FromUnixMs { get; }

    /// <summary>End of the latest window merged, ms since the epoch.</summary>
    public long ToUnixMs { get; }

    /// <summary>The merged sketch, or null when the engine keeps none.</summary>
    public DdSketch? Sketch { get; }

    /// <summary>The merged moments.</summary>
    public RunningMoments Moments => _moments;

    /// <summary>The value at quantile <paramref name="q"/> in [0, 1], within the sketch's relative accuracy; NaN without sketches.</summary>
    public double Quantile(double q)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(q, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(q, 1);
        return Sketch?.GetQuantile(q) ?? double.NaN;
    }
}
