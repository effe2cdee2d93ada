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

    [Fact]
    public Task Record_FromFourThreadsWhileOtherSeriesAreReclaimed_CountsEveryPointOnceAndNoneStale() =>
        // Every reclaim anywhere makes each binding resolve its series again: four threads share one handle
        // while the engine reclaims a series a second, so they race to re-resolve it again and again.
        FourThreadsWhileSeriesAreReclaimed(latency =>
        {
            BoundHistogram busy = latency.Bind("/busy");
            return () => busy.Record(1);
        });

    [Fact]
    public Task RecordWithLabels_FromFourThreadsWhileOtherSeriesAreReclaimed_CountsEveryPointOnceAndNoneStale() =>
        // The labelled call's twin: the series is looked up per call, by the writer, holding its gate.
        FourThreadsWhileSeriesAreReclaimed(latency => () => latency.Record(1, "/busy"));

    /// <summary>
    /// Four threads record through what <paramref name="recorder"/> makes while the engine reclaims a series each
    /// engine second. Engine time runs a second per step, so a writer the scheduler leaves out for a few steps lets
    /// the busy series itself go idle and be reclaimed too: its next points go to a fresh series of the same labels.
    /// No point may arrive with a retired id (stale), and every point is counted once.
    /// </summary>
    private static async Task FourThreadsWhileSeriesAreReclaimed(Func<MetricHistogram, Func<RejectReason>> recorder)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var index = new RecentWindowIndex();
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions
        {
            ShardCount = 2,
            TimeProvider = time,
            Instance = "test",
            WindowSize = TimeSpan.FromSeconds(1),
            SeriesIdleTimeout = TimeSpan.FromSeconds(5),
        }, [index]);
        pipeline.Start();
        using var collector = new MetricsCollector(pipeline, "test");
        MetricHistogram latency = collector.CreateHistogram("latency", ["route"]);
        Func<RejectReason> record = recorder(latency);

        using var stop = new CancellationTokenSource();
        long[] accepted = new long[4];
        Task[] writers = [.. Enumerable.Range(0, 4).Select(w => Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                for (int i = 0; i < 256; i++)
                {
                    if (record() == RejectReason.None)
                    {
                        accepted[w]++;
                    }
                }

                // Four busy threads on a small machine must leave the engine's clock and shards some time.
                Thread.Yield();
            }
        }, TaskCreationOptions.LongRunning))];

        // Until twenty series were reclaimed (a starved engine clock reclaims later; bounded in steps).
        int steps = 0;
        for (; steps < 600 && pipeline.Registry.Reclaimed < 20; steps++)
        {
            latency.Bind("/idle-" + steps).Record(1);
            collector.Flush();
            await pipeline.DrainAsync();
            time.Advance(TimeSpan.FromSeconds(1));
        }

        await stop.CancelAsync();
        await Task.WhenAll(writers);
        long reclaimed = pipeline.Registry.Reclaimed;
        PipelineMetrics mid = pipeline.GetMetrics();
        collector.Flush();
        await pipeline.StopAsync();

        PipelineMetrics m = pipeline.GetMetrics();
        long total = accepted.Sum();
        Assert.True(reclaimed >= 20, $"series were reclaimed while the writers wrote ({reclaimed}; windows {mid.WindowsEmitted}, sources {mid.ActiveSources}, late {mid.Late}, open {mid.OpenWindowPoints}, emitted {mid.EmittedPoints}, queued {mid.Queued})");
        Assert.True(total > 0);
        Assert.True(m.StalePoints == 0, $"{m.StalePoints} stale points, {m.Late} late, {m.Dropped} dropped, {m.SeriesReclaimed} reclaimed");
        // Every series of the metric (the busy one, fresh ids of it, one idle one a step): late and dropped points
        // are counted for the pipeline as a whole. A point still buffered by its thread when its window closed is late.
        MetricStatistics? stats = new MetricStatisticsService(index, time: time).GetMatching("latency", LabelSet.Empty,
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 600_000));
        Assert.Equal(total + steps - m.Dropped - m.Late, stats!.Count);
    }
}
