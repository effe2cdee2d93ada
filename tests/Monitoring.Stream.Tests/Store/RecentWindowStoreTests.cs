using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Tests.Store;

public class RecentWindowStoreTests
{
    private const long T0 = 1_800_000_000_000;

    [Fact]
    public async Task Query_LastMinute_MergesExactlyTheWindowsInIt()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + 120_000));
        var store = new RecentWindowStore(time: time);
        var whole = new RunningMoments();
        var lastMinute = new RunningMoments();
        var lastMinuteSketch = new DdSketch();
        var random = new Random(5);
        await using (var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 2, TimeProvider = time }, [store]))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("test"))
            {
                for (long ts = T0; ts < T0 + 120_000; ts += 7)
                {
                    double v = random.NextDouble() * 100;
                    writer.Write("latency", [new Label("route", "/a")], v, ts);
                    writer.Write("latency", [new Label("route", "/b")], v * 2, ts);
                    whole.Add(v, ts);
                    if (ts >= T0 + 60_000)
                    {
                        lastMinute.Add(v, ts);
                        lastMinuteSketch.Add(v);
                    }
                }
            }

            await pipeline.StopAsync();
        }

        SeriesStatistics? stats = store.Query("latency", LabelSet.Create(new Label("route", "/a")), TimeSpan.FromMinutes(1));

        Assert.NotNull(stats);
        Assert.Equal(6, stats.Windows);
        Assert.Equal(T0 + 60_000, stats.FromUnixMs);
        Assert.Equal(lastMinute.Count, stats.Moments.Count);
        Assert.Equal(lastMinute.Mean, stats.Moments.Mean, 1e-9);
        Assert.Equal(lastMinute.SampleVariance, stats.Moments.SampleVariance, 1e-6);
        Assert.Equal(lastMinute.Max, stats.Moments.Max);
        Assert.Equal(lastMinute.Last, stats.Moments.Last);
        Assert.Equal(lastMinuteSketch.GetQuantile(0.99), stats.Quantile(0.99));
        Assert.Equal(whole.Count, store.Query("latency", LabelSet.Create(new Label("route", "/a")), TimeSpan.FromMinutes(5))!.Moments.Count);
        Assert.Null(store.Query("latency", LabelSet.Create(new Label("route", "/c")), TimeSpan.FromMinutes(5)));
    }

    [Fact]
    public async Task Retention_OldWindowsAndEntryLimit_Evicted()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + 600_000));
        var store = new RecentWindowStore(TimeSpan.FromMinutes(2), maxEntries: 1_000, time: time);
        await using (var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1, TimeProvider = time }, [store]))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("test"))
            {
                for (long ts = T0; ts < T0 + 600_000; ts += 1000)
                {
                    writer.Write("m", [], 1, ts);
                }
            }

            await pipeline.StopAsync();
        }

        // 60 windows emitted; two minutes of window time is 12 of them.
        Assert.Equal(12, store.Entries);
        Assert.Equal(48, store.Evicted);
        Assert.Equal(12, store.Query("m", LabelSet.Empty, TimeSpan.FromHours(1))!.Windows);
    }
}
