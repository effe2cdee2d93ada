using System.Diagnostics;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Pipeline;

/// <summary><see cref="MetricsPipeline.ShardQueueFill"/>: the fullest shard queue's fill, without a snapshot.</summary>
public class MetricsPipelineShardQueueFillTests
{
    private const int BatchSize = 4;
    private const int QueueBatches = 4;

    private static MetricsPipelineOptions Options() => new()
    {
        ShardCount = 2,
        BatchSize = BatchSize,
        ShardQueueBatches = QueueBatches,
        WindowSize = TimeSpan.FromSeconds(10),
        AllowedLateness = TimeSpan.FromHours(1),
    };

    /// <summary>The fill that a snapshot's depths give: the fullest queue over the capacity.</summary>
    private static double FromSnapshot(MetricsPipeline pipeline)
    {
        PipelineMetrics m = pipeline.GetMetrics();
        return m.ShardQueueDepth.Max() / (double)m.ShardQueueCapacity;
    }

    [Fact]
    public async Task ShardQueueFill_BatchesQueuedBeforeStart_FullestQueueOverCapacityAsSnapshotSays()
    {
        await using var pipeline = new MetricsPipeline(Options(), []);
        Assert.Equal(0, pipeline.ShardQueueFill);
        Assert.True(pipeline.Registry.TryGetOrAdd("queue_fill_test", [new("k", "v")], out SeriesId id) == RejectReason.None);
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        using PointWriter writer = pipeline.CreateWriter("test", BackpressureMode.DropNewest);

        // Not started: nothing takes the batches, so each batch the writer hands over stays in its shard's queue.
        // Written until the queue is full and the writer drops.
        var seen = new List<double>();
        for (int batch = 0; batch < 2 * QueueBatches; batch++)
        {
            for (int i = 0; i < BatchSize; i++)
            {
                _ = writer.Write(id, i, now + i);
            }

            writer.Flush();
            double fill = pipeline.ShardQueueFill;
            Assert.Equal(FromSnapshot(pipeline), fill);
            Assert.True(seen.Count == 0 || fill >= seen[^1], $"the fill went down with nothing taking batches: {string.Join(", ", seen)}, {fill}");
            seen.Add(fill);
        }

        Assert.True(seen[0] > 0 && seen[0] < 1, $"first fill {seen[0]}");
        Assert.Equal(1.0, seen[^1]);
        Assert.Equal(QueueBatches, pipeline.GetMetrics().ShardQueueDepth.Max());

        // Started: the shard takes them all, and the fill goes back to 0 (a bounded wait that fails the test).
        pipeline.Start();
        var clock = Stopwatch.StartNew();
        while (pipeline.ShardQueueFill > 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the queue did not drain: fill {pipeline.ShardQueueFill}");
            await Task.Delay(10);
        }

        Assert.Equal(0, FromSnapshot(pipeline));
    }

    [Fact]
    public async Task ShardQueueFill_Polled_AllocatesNothing()
    {
        await using var pipeline = new MetricsPipeline(Options(), []);
        double sum = 0;
        long bytes = AllocationProbe.MeasuredBytes(() =>
        {
            for (int i = 0; i < 1_000; i++)
            {
                sum += pipeline.ShardQueueFill;
            }
        });

        Assert.True(bytes < 1_000, $"{bytes} B for 1,000 reads");
        Assert.Equal(0, sum);
    }
}
