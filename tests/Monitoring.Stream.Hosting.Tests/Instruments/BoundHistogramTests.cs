using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Tests.Instruments;

public class BoundHistogramTests
{
    private const long T0 = 1_800_000_000_000;

    [Fact]
    public async Task Record_AfterTheEngineReclaimedTheIdleSeries_RebindsAndNothingIsStale()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var index = new RecentWindowIndex();
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions
        {
            ShardCount = 1,
            TimeProvider = time,
            Instance = "test",
            SeriesIdleTimeout = TimeSpan.FromSeconds(5),
        }, [index]);
        pipeline.Start();
        using var collector = new MetricsCollector(pipeline, "test");
        MetricHistogram latency = collector.CreateHistogram("latency", ["route"]);
        BoundHistogram idle = latency.Bind("/idle");
        BoundHistogram busy = latency.Bind("/busy");

        idle.Record(1);
        // Event time and the engine clock move together, one second per step; the clock's ticks scan for idle series.
        for (int step = 0; step < 60; step++)
        {
            busy.Record(1);
            collector.Flush();
            await pipeline.DrainAsync();
            time.Advance(TimeSpan.FromSeconds(1));
        }

        await pipeline.DrainAsync();
        long reclaimed = pipeline.Registry.Reclaimed;
        idle.Record(2);
        collector.Flush();
        await pipeline.StopAsync();

        Assert.True(reclaimed > 0, "the idle series was reclaimed by the engine");
        Assert.Equal(0, pipeline.GetMetrics().StalePoints);
        MetricStatistics? stats = new MetricStatisticsService(index, time: time).GetStatistics("latency", LabelSet.Create(new Label("route", "/idle")),
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 300_000));
        Assert.Equal(2, stats!.Count);
        Assert.Equal(3, stats.Sum);
    }
}
