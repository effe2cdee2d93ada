using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Store;

/// <summary>Statistics of one series over a span of windows, merged exactly from the window aggregates.</summary>
public sealed class SeriesStatistics
{
    internal SeriesStatistics(RunningMoments moments, DdSketch? sketch, int windows, long fromUnixMs, long toUnixMs)
    {
        Moments = moments;
        Sketch = sketch;
        Windows = windows;
        FromUnixMs = fromUnixMs;
        ToUnixMs = toUnixMs;
    }

    /// <summary>Count, sum, extremes, mean, variance and last value.</summary>
    public RunningMoments Moments { get; }

    /// <summary>The merged quantile sketch, or null when sketches are off.</summary>
    public DdSketch? Sketch { get; }

    /// <summary>Windows merged.</summary>
    public int Windows { get; }

    /// <summary>Start of the first window merged, ms since the epoch.</summary>
    public long FromUnixMs { get; }

    /// <summary>End of the last window merged, ms since the epoch.</summary>
    public long ToUnixMs { get; }

    /// <summary>The value at quantile <paramref name="q"/> from the merged sketch, or NaN without one.</summary>
    public double Quantile(double q) => Sketch?.GetQuantile(q) ?? double.NaN;
}
