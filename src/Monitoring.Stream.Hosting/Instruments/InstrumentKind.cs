namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>What the values of an instrument mean, and so how its window statistics read.</summary>
public enum InstrumentKind
{
    /// <summary>Monotonic increments: a window's sum is the increase in it, its count the number of increments.</summary>
    Counter = 0,

    /// <summary>A level that goes up and down: a window's last value is the current level; min, max, mean describe the values set.</summary>
    Gauge = 1,

    /// <summary>Observations of a distribution (latencies, sizes): every window statistic and the quantile sketch.</summary>
    Histogram = 2,

    /// <summary>Increments that may be negative (from a <c>System.Diagnostics.Metrics.UpDownCounter</c>): a window's sum is the net change.</summary>
    UpDownCounter = 3,
}
