using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Pipeline;

public class SourceLifecycleTests
{
    private const long T0 = 1_800_000_000_000;

    [Fact]
    public async Task DisposedWriters_FoldedIntoTheirNameTotals_CountsKept_ObjectsReleased()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(
            new MetricsPipelineOptions { ShardCount = 2, WindowSize = TimeSpan.FromSeconds(10), AllowedLateness = TimeSpan.Zero, TimeProvider = time },
            [sink]);
        pipeline.Start();

        // 200 short-lived writers (threads, partitions that move): each writes, refuses one, disposes.
        for (int w = 0; w < 200; w++)
        {
            using PointWriter writer = pipeline.CreateWriter(w % 2 == 0 ? "even" : "odd");
            writer.Write("m", [new Label("w", (w % 10).ToString(System.Globalization.CultureInfo.InvariantCulture))], 1.0, T0 + w);
            writer.Write("m", [], double.NaN, T0 + w);
        }

        await pipeline.DrainAsync();
        Assert.Equal(200, pipeline.SourceObjects);

        // Past the window: windows close and reach the sink (on its own task), every batch is acknowledged,
        // and the next tick folds the writers. Bounded: the test fails if that does not happen in 10 s.
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (pipeline.SourceObjects > 0)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), $"{pipeline.SourceObjects} writers still held");
            time.Advance(TimeSpan.FromSeconds(1));
            await pipeline.DrainAsync();
            await Task.Delay(5);
        }

        Assert.True(time.GetUtcNow().ToUnixTimeMilliseconds() >= T0 + 10_000, "folded before the window closed");
        PipelineMetrics m = pipeline.GetMetrics();
        SourceMetrics even = m.Sources.Single(s => s.Source == "even");
        SourceMetrics odd = m.Sources.Single(s => s.Source == "odd");
        Assert.Equal((200L, 100L, 100L, 100), (even.Offered, even.Accepted, even.Rejected, even.Writers));
        Assert.Equal((200L, 100L, 100L, 100), (odd.Offered, odd.Accepted, odd.Rejected, odd.Writers));
        Assert.Equal(200, m.RejectedByReason[RejectReason.NotANumber]);
        Assert.Equal(200, m.EmittedPoints);
        Assert.Equal(200, sink.Rows.Sum(r => r.Count));
    }

    [Fact]
    public async Task AfterStop_DrainAndCloseOpenWindows_ReturnAtOnce()
    {
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 2 }, [sink]);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("late-caller");
        writer.Write("m", [], 1.0);
        writer.Flush();
        await pipeline.StopAsync();

        await pipeline.DrainAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await writer.CloseOpenWindowsAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, sink.Rows.Sum(r => r.Count));
    }
}
