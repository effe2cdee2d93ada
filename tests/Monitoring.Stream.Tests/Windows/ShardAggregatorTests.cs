using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Windows;

/// <summary>Window behaviour, driven by a fake clock through the public pipeline.</summary>
public class ShardAggregatorTests
{
    private const long T0 = 1_800_000_000_000; // a multiple of 10 s

    private static (MetricsPipeline Pipeline, CollectingSink Sink, FakeTimeProvider Time, PointWriter Writer) Create(long nowMs, int shards = 1)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(nowMs));
        var sink = new CollectingSink();
        var pipeline = new MetricsPipeline(WindowScenario.Options(time, shards), [sink]);
        pipeline.Start();
        return (pipeline, sink, time, pipeline.CreateWriter("test"));
    }

    private static async Task Settle(MetricsPipeline pipeline, PointWriter writer)
    {
        writer.Flush();
        await pipeline.DrainAsync();
    }

    [Fact]
    public async Task Boundaries_StartInclusiveEndExclusive()
    {
        var (pipeline, sink, _, writer) = Create(T0);
        await using (pipeline)
        {
            writer.Write("m", [], 1, T0);
            writer.Write("m", [], 2, T0 + 9_999);
            writer.Write("m", [], 3, T0 + 10_000);
            await Settle(pipeline, writer);
            await pipeline.StopAsync();
        }

        Assert.Equal([(T0, 2L), (T0 + 10_000, 1L)], sink.Rows.OrderBy(r => r.WindowStartMs).Select(r => (r.WindowStartMs, r.Count)));
        Assert.Equal(2, sink.Rows.Single(r => r.WindowStartMs == T0).Last);
    }

    [Fact]
    public async Task Watermark_ClosesWindowOnlyAfterAllowedLateness()
    {
        // The clock is ahead of the data, as in a replay: event time alone moves the watermark.
        var (pipeline, sink, _, writer) = Create(T0 + 60_000);
        await using (pipeline)
        {
            writer.Write("m", [], 1, T0 + 1_000);
            writer.Write("m", [], 1, T0 + 14_999); // watermark T0 + 9,999: window [T0, T0+10s) stays open
            await Settle(pipeline, writer);
            Assert.Empty(sink.Batches);

            writer.Write("m", [], 5, T0 + 9_000); // within lateness: joins the open window
            writer.Write("m", [], 1, T0 + 15_000); // watermark T0 + 10 s: the window closes
            await Settle(pipeline, writer);
            await WaitFor(() => sink.Batches.Count == 1);
            WindowRow first = sink.Rows.Single();
            Assert.Equal(T0, first.WindowStartMs);
            Assert.Equal(2, first.Count);
            Assert.Equal(5, first.Max);

            writer.Write("m", [], 7, T0 + 9_500); // its window has closed: late
            await Settle(pipeline, writer);
            Assert.Equal(1, pipeline.GetMetrics().Late);
            Assert.Equal(1, pipeline.GetMetrics().LateByMetric["m"]);
            await pipeline.StopAsync();
        }

        Assert.Equal(2, sink.Rows.Count);
        Assert.Equal(2, sink.Rows.Single(r => r.WindowStartMs == T0 + 10_000).Count);
    }

    [Fact]
    public async Task IdleShard_ClockTickClosesWindow()
    {
        var (pipeline, sink, time, writer) = Create(T0 + 2_000);
        await using (pipeline)
        {
            writer.Write("m", [], 1, T0 + 2_000);
            await Settle(pipeline, writer);

            // One tick with data, then ticks with none: the clock moves the watermark.
            time.Advance(TimeSpan.FromSeconds(1));
            await pipeline.DrainAsync();
            Assert.Empty(sink.Batches);
            time.Advance(TimeSpan.FromSeconds(13)); // clock T0 + 16 s, minus 5 s lateness > T0 + 10 s
            await pipeline.DrainAsync();
            await WaitFor(() => sink.Batches.Count == 1);
            Assert.Equal(T0, sink.Rows.Single().WindowStartMs);
        }
    }

    [Fact]
    public async Task Stop_FlushesEveryOpenWindowOfEveryShard()
    {
        var (pipeline, sink, _, writer) = Create(T0, shards: 3);
        await using (pipeline)
        {
            for (int i = 0; i < 30; i++)
            {
                writer.Write("m", [new Label("i", i.ToString(System.Globalization.CultureInfo.InvariantCulture))], i, T0 + (i * 100));
            }

            await Settle(pipeline, writer);
            Assert.Empty(sink.Batches);
            await pipeline.StopAsync();
        }

        Assert.Equal(30, sink.Rows.Count);
        Assert.Equal(3, sink.Batches.Select(b => b.Shard).Distinct().Count());
        Assert.Equal(30, pipeline.GetMetrics().EmittedPoints);
    }

    [Fact]
    public async Task NegativeTimestamps_AlignToEpoch()
    {
        var (pipeline, sink, _, writer) = Create(0);
        await using (pipeline)
        {
            writer.Write("m", [], 1, -1);
            writer.Write("m", [], 1, -10_000);
            writer.Write("m", [], 1, -10_001);
            await Settle(pipeline, writer);
            await pipeline.StopAsync();
        }

        Assert.Equal([(-20_000L, 1L), (-10_000L, 2L)], sink.Rows.OrderBy(r => r.WindowStartMs).Select(r => (r.WindowStartMs, r.Count)));
    }

    [Fact]
    public async Task FutureTimestampBeyondSkew_RejectedNotWindowed()
    {
        var (pipeline, sink, _, writer) = Create(T0);
        await using (pipeline)
        {
            Assert.Equal(RejectReason.TimestampOutOfRange, writer.Write("m", [], 1, T0 + (11 * 60_000)));
            Assert.Equal(RejectReason.None, writer.Write("m", [], 1, T0 + (9 * 60_000)));
            await Settle(pipeline, writer);
            await pipeline.StopAsync();
        }

        Assert.Equal(1, pipeline.GetMetrics().RejectedByReason[RejectReason.TimestampOutOfRange]);
        Assert.Single(sink.Rows);
    }

    [Fact]
    public async Task Overflow_PointsBeyondCardinalityLimitLandInOverflowSeries()
    {
        var sink = new CollectingSink();
        var options = new MetricsPipelineOptions { ShardCount = 2, Registry = new() { MaxSeriesPerMetric = 5 } };
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await using (var pipeline = new MetricsPipeline(options, [sink]))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("test"))
            {
                for (int i = 0; i < 8; i++)
                {
                    writer.Write("m", [new Label("user", "u" + i)], 1, now);
                }
            }

            await pipeline.StopAsync();
        }

        WindowRow overflow = sink.Rows.Single(r => r.Labels.GetValue("otel_metric_overflow") == "true");
        Assert.Equal(3, overflow.Count);
        Assert.Equal(6, sink.Rows.Count);
    }

    private static async Task WaitFor(Func<bool> condition)
    {
        // Emission happens on the shard's task after the barrier; give it a bounded moment.
        for (int i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition());
    }
}

public class SketchlessWindowTests
{
    [Fact]
    public async Task SketchesOff_QuantilesAndSketchAreNull_MomentsStillExact()
    {
        var sink = new CollectingSink();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await using (var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 2, Sketches = false }, [sink]))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("test"))
            {
                for (int i = 1; i <= 10; i++)
                {
                    writer.Write("m", [new Label("k", "a")], i, now);
                    writer.Write("m", [new Label("k", "b")], -i, now);
                }
            }

            await pipeline.StopAsync();
        }

        Assert.Equal(2, sink.Rows.Count);
        Assert.All(sink.Rows, r =>
        {
            Assert.All(r.Quantiles, q => Assert.Null(q));
            Assert.Null(r.Sketch);
            Assert.Equal(10, r.Count);
            Assert.Equal(8.25, r.Variance, 12);
        });
        Assert.Equal(55, sink.Rows.Single(r => r.Labels.GetValue("k") == "a").Sum);
    }
}
