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
}
