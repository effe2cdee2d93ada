using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Support;

/// <summary>The pipeline settings of the series-reclaim and memory tests: 10 s windows, no lateness, 1 s ticks.</summary>
internal static class ReclaimScenario
{
    /// <summary>The settings; <paramref name="producerFlush"/> long keeps points in a writer's buffers until the test flushes.</summary>
    public static MetricsPipelineOptions Options(FakeTimeProvider time, TimeSpan seriesIdle, TimeSpan? producerFlush = null) => new()
    {
        ShardCount = 2,
        WindowSize = TimeSpan.FromSeconds(10),
        AllowedLateness = TimeSpan.Zero,
        TickInterval = TimeSpan.FromSeconds(1),
        SeriesIdleTimeout = seriesIdle,
        ProducerFlushInterval = producerFlush ?? new MetricsPipelineOptions().ProducerFlushInterval,
        TimeProvider = time,
    };

    /// <summary>
    /// Advances the clock a second at a time (each second one tick, then a drain of every shard) until
    /// <paramref name="done"/> holds; fails the test if it does not within <paramref name="maxSeconds"/>.
    /// </summary>
    public static async Task TickUntil(MetricsPipeline pipeline, FakeTimeProvider time, Func<bool> done, int maxSeconds, string what)
    {
        for (int s = 0; !done(); s++)
        {
            Assert.True(s < maxSeconds, $"{what}: not within {maxSeconds} ticks");
            time.Advance(TimeSpan.FromSeconds(1));
            await pipeline.DrainAsync();
        }
    }
}
