using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Support;

/// <summary>The pipeline settings of the shard aggregation tests: 10 s windows, 5 s lateness, 1 s ticks, a fake clock.</summary>
internal static class WindowScenario
{
    public static MetricsPipelineOptions Options(FakeTimeProvider time, int shards) => new()
    {
        ShardCount = shards,
        WindowSize = TimeSpan.FromSeconds(10),
        AllowedLateness = TimeSpan.FromSeconds(5),
        TickInterval = TimeSpan.FromSeconds(1),
        TimeProvider = time,
    };
}
