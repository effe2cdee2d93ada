using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Tests.Queries;

public sealed class RecentWindowIndexTests
{
    private const long T0 = 1_800_000_000_000;

    [Fact]
    public async Task Eviction_AfterAnOlderWindowIsEmittedAgain_EvictsTheOldestWindowsAndTheNewestIsStillAnswered()
    {
        // Found in the session-13 review: the index evicted the front of a series' queue, assuming its windows arrive
        // in end order; a window emitted again after a later one (here a cut of the open windows, as the Kafka source
        // makes) broke that, the newer window was evicted in the older one's place, and, being after the memory
        // boundary, was answered by neither memory nor the files.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + 12_000));
        var index = new RecentWindowIndex(new RecentWindowIndexOptions { MaxAggregates = 1 });
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1, TimeProvider = time, Instance = "t" }, [(IWindowSink)index]);
        pipeline.Start();
        SeriesId id = pipeline.Registry.GetOrAdd("m", new Label("k", "v"));
        using (PointWriter writer = pipeline.CreateWriter("s", BackpressureMode.Wait))
        {
            Assert.Equal(RejectReason.None, writer.Write(id, 1, T0 + 1_000));   // window A [T0, T0 + 10 s)
            Assert.Equal(RejectReason.None, writer.Write(id, 2, T0 + 11_000));  // window B [T0 + 10 s, T0 + 20 s)
            await writer.CloseOpenWindowsAsync();                                 // emits A, then B
            Assert.Equal(RejectReason.None, writer.Write(id, 3, T0 + 2_000));   // A again (not late: the watermark is T0 + 6 s)
            await writer.CloseOpenWindowsAsync();                                 // emits A' (end T0 + 10 s) after B (end T0 + 20 s)
        }

        for (int i = 0; i < 500 && index.Evicted < 2; i++)
        {
            await Task.Delay(10);
        }

        // One aggregate kept: B, the newest; A and A' evicted, the boundary at their end.
        Assert.Equal(2, index.Evicted);
        Assert.Equal(T0 + 10_000, index.MemoryBoundaryUnixMs);
        MetricStatistics? stats = new MetricStatisticsService(index, time: time).GetStatistics("m", LabelSet.Create(new Label("k", "v")),
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 20_000));
        Assert.NotNull(stats);
        Assert.Equal((1L, 2.0, 2.0), (stats.Count, stats.Min, stats.Max));
    }
}
