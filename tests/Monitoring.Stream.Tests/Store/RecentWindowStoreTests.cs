using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Sinks;
using Monitoring.Stream.Tests.Support;

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

    [Fact]
    public async Task GetMetricNamesAndGetSeries_ListWhatIsHeldAndForgetWhatWasEvicted()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + 300_000));
        var store = new RecentWindowStore(TimeSpan.FromMinutes(2), time: time);
        Assert.Empty(store.GetMetricNames());
        Assert.Empty(store.GetSeries("latency"));
        await using (var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 2, TimeProvider = time }, [store]))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("test"))
            {
                for (long ts = T0; ts < T0 + 300_000; ts += 1000)
                {
                    writer.Write("latency", [new Label("route", "/b")], 1, ts);
                    writer.Write("latency", [new Label("route", "/a"), new Label("method", "GET")], 2, ts);
                    writer.Write("errors_total", [], 1, ts);
                    if (ts < T0 + 60_000)
                    {
                        // Only in the first minute: evicted by the two-minute retention.
                        writer.Write("old_metric", [new Label("x", "1")], 1, ts);
                        writer.Write("latency", [new Label("route", "/old")], 1, ts);
                    }
                }
            }

            await pipeline.StopAsync();
        }

        Assert.Equal(["errors_total", "latency"], store.GetMetricNames());
        IReadOnlyList<LabelSet> series = store.GetSeries("latency");
        Assert.Equal(
            [LabelSet.Create(new Label("method", "GET"), new Label("route", "/a")), LabelSet.Create(new Label("route", "/b"))],
            series);
        Assert.Equal([LabelSet.Empty], store.GetSeries("errors_total"));
        Assert.Empty(store.GetSeries("old_metric"));
        Assert.Equal(3, store.SeriesCount);
        Assert.Throws<ArgumentNullException>(() => store.GetSeries(null!));
    }

    [Theory]
    [InlineData("sum", double.NaN)]
    [InlineData("sum", double.PositiveInfinity)]
    [InlineData("mean", double.NegativeInfinity)]
    [InlineData("m2", double.NaN)]
    [InlineData("m2", -1.0)]
    [InlineData("min", double.NaN)]
    [InlineData("max", double.NegativeInfinity)]
    [InlineData("last", double.NaN)]
    public async Task WriteAsync_RowWithBadMoments_SkipsAndCountsThatRowOnly(string column, double value)
    {
        WindowBatch batch = (await WindowBatchFactory.CreateAsync(windows: 1, series: 5))[0];
        WindowBatch damaged = WindowBatchFactory.WithColumn(batch, column, WindowBatchFactory.DoublesWith(batch, column, row: 2, value));

        await AssertOnlyRowSkippedAsync(batch, damaged, row: 2, column);
    }

    [Fact]
    public async Task WriteAsync_RowWithMalformedSketch_SkipsAndCountsThatRowOnly()
    {
        WindowBatch batch = (await WindowBatchFactory.CreateAsync(windows: 1, series: 5))[0];
        WindowBatch damaged = WindowBatchFactory.WithColumn(batch, "sketch", WindowBatchFactory.SketchesWith(batch, row: 4, [1, 0xFF, 0xFF, 0xFF]));

        await AssertOnlyRowSkippedAsync(batch, damaged, row: 4, "ketch");
    }

    private static async Task AssertOnlyRowSkippedAsync(WindowBatch original, WindowBatch damaged, int row, string reason)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(original.WindowEndUnixMs));
        var store = new RecentWindowStore(new RecentWindowStoreOptions { TimeProvider = time });

        await store.WriteAsync(damaged, CancellationToken.None);

        Assert.Equal(1, store.RowsSkipped);
        Assert.Contains(reason, store.LastSkipReason, StringComparison.Ordinal);
        List<WindowRow> rows = CollectingSink.Read(original.RecordBatch, original.Shard);
        Assert.Equal(rows.Count - 1, store.Entries);
        for (int r = 0; r < rows.Count; r++)
        {
            SeriesStatistics? stats = store.Query(rows[r].Metric, rows[r].Labels, TimeSpan.FromMinutes(1));
            if (r == row)
            {
                Assert.Null(stats);
                Assert.Contains(rows[r].Key, store.LastSkipReason, StringComparison.Ordinal);
            }
            else
            {
                Assert.NotNull(stats);
                Assert.Equal(rows[r].Count, stats.Moments.Count);
                Assert.Equal(rows[r].Sum, stats.Moments.Sum, 1e-12);
            }
        }
    }

    [Fact]
    public async Task Query_LookbackMeasuredOnTheOptionsClock()
    {
        WindowBatch batch = (await WindowBatchFactory.CreateAsync(windows: 1, series: 1))[0];
        WindowRow row = CollectingSink.Read(batch.RecordBatch, 0)[0];
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(batch.WindowEndUnixMs + 30_000));
        var store = new RecentWindowStore(new RecentWindowStoreOptions { TimeProvider = time });
        await store.WriteAsync(batch, CancellationToken.None);

        Assert.NotNull(store.Query(row.Metric, row.Labels, TimeSpan.FromMinutes(1)));
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.Null(store.Query(row.Metric, row.Labels, TimeSpan.FromMinutes(1)));
        Assert.NotNull(store.Query(row.Metric, row.Labels, TimeSpan.FromMinutes(2)));
    }

    [Fact]
    public void NullArguments_ThrowArgumentNull()
    {
        var store = new RecentWindowStore(new RecentWindowStoreOptions());

        Assert.Throws<ArgumentNullException>(() => new RecentWindowStore((RecentWindowStoreOptions)null!));
        Assert.Throws<ArgumentNullException>(() => new RecentWindowStore(new RecentWindowStoreOptions { TimeProvider = null! }));
        Assert.Throws<ArgumentNullException>(() => store.Query(null!, LabelSet.Empty, TimeSpan.FromMinutes(1)));
        Assert.Throws<ArgumentNullException>(() => store.Query("m", null!, TimeSpan.FromMinutes(1)));
        Assert.Throws<ArgumentNullException>(() => RecentWindowStore.KeyOf(null!, LabelSet.Empty));
        Assert.Throws<ArgumentOutOfRangeException>(() => store.Query("m", LabelSet.Empty, TimeSpan.FromMinutes(-1)));
    }
}
