using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Kafka.Tests.Support;

/// <summary>Pipelines for tests: a fake clock at <see cref="T0"/>, two shards, 10 s windows.</summary>
internal static class TestPipelines
{
    /// <summary>A fixed engine time, ms since the epoch, aligned to 10 s windows.</summary>
    public const long T0 = 1_800_000_000_000;

    public static MetricsPipeline Create(IWindowSink sink, FakeTimeProvider? time = null, int queueBatches = 256, SinkOptions? sinkOptions = null, string instance = "test") =>
        new(
            new MetricsPipelineOptions
            {
                ShardCount = 2,
                ShardQueueBatches = queueBatches,
                TimeProvider = time ?? new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0)),
                Instance = instance,
            },
            [sink],
            sinkOptions);
}
