using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Support;

/// <summary>The pipeline settings of the series-reclaim and memory tests: 10 s windows, no lateness, 1 s ticks.</summary>
internal static class ReclaimScenario
{
    public static MetricsPipelineOptions Options(FakeTimeProvider time, TimeSpan seriesIdle) => new()
    {
        ShardCount = 2,
        WindowSize = TimeSpan.FromSeconds(10),
        AllowedLateness = TimeSpan.Zero,
        TickInterval = TimeSpan.FromSeconds(1),
        SeriesIdleTimeout = seriesIdle,
        TimeProvider = time,
    };
}
