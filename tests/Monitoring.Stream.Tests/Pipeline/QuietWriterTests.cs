using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Pipeline;

public class QuietWriterTests
{
    private const long T0 = 1_800_000_000_000;

    [Fact]
    public async Task SlowProducer_NeverFlushes_EngineFlushesItAndNothingIsLate()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(
            new MetricsPipelineOptions { ShardCount = 2, WindowSize = TimeSpan.FromSeconds(10), AllowedLateness = TimeSpan.FromSeconds(1), TimeProvider = time },
            [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("slow_gauge");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("slow");

        // One point every 100 ms for 30 s, stamped now, and never a Flush: far fewer than a batch.
        for (int i = 0; i < 300; i++)
        {
            Assert.Equal(RejectReason.None, writer.Write(id, i));
            time.Advance(TimeSpan.FromMilliseconds(100));
            await pipeline.DrainAsync();
        }

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(m.Pending <= 2, $"{m.Pending} points still in the writer: the engine's timer should have flushed it");
        Assert.Equal(0, m.Late);
        Assert.True(m.WindowsEmitted >= 2, "windows behind the quiet writer closed");

        writer.Flush();
        await pipeline.StopAsync();
        m = pipeline.GetMetrics();
        Assert.Equal(0, m.Late);
        Assert.Equal(300, m.EmittedPoints);
        Assert.Equal(300, sink.Rows.Sum(r => r.Count));
    }

    [Fact]
    public async Task FullBatchesFewerThanTheLazyWakeCount_NoFlushNoTick_GetMetricsShowsThemAggregated()
    {
        // Full batches wake a shard only a few at a time (ShardBell); a look at the metrics wakes it at once,
        // so a reader of GetMetrics never waits for a flush or a tick to see points it has handed over.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        await using var pipeline = new MetricsPipeline(
            new MetricsPipelineOptions { ShardCount = 1, BatchSize = 16, WindowSize = TimeSpan.FromSeconds(10), TimeProvider = time },
            [new CollectingSink()]);
        SeriesId id = pipeline.Registry.GetOrAdd("lazy_batches");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("lazy");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!pipeline.ShardBells[0].IsParked)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), "the idle shard never went to sleep");
            await Task.Delay(5);
        }

        for (int i = 0; i < 2 * 16; i++)
        {
            Assert.Equal(RejectReason.None, writer.Write(id, i, T0));
        }

        Assert.True(pipeline.ShardBells[0].IsParked, "two full batches woke the shard: the test shows nothing");
        watch.Restart();
        PipelineMetrics m = pipeline.GetMetrics();
        while (m.OpenWindowPoints != 32)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"{m.OpenWindowPoints} of 32 points aggregated, {m.Queued} queued");
            await Task.Delay(5);
            m = pipeline.GetMetrics();
        }

        Assert.Equal(32, m.Accepted);
        Assert.Equal(0, m.Queued);
    }
}
