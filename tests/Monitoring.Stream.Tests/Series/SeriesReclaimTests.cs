using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Series;

public class SeriesReclaimTests
{
    private const long T0 = 1_800_000_000_000;

    private static (MetricsPipeline Pipeline, CollectingSink Sink, FakeTimeProvider Time) Create(TimeSpan seriesIdle)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new CollectingSink();
        var pipeline = new MetricsPipeline(ReclaimScenario.Options(time, seriesIdle), [sink]);
        pipeline.Start();
        return (pipeline, sink, time);
    }

    /// <summary>Each window brings 50 new label values and never sees the old ones again (pods that come and go).</summary>
    private static async Task Churn(MetricsPipeline pipeline, FakeTimeProvider time, PointWriter writer, int fromWindow, int toWindow)
    {
        for (int w = fromWindow; w < toWindow; w++)
        {
            long now = time.GetUtcNow().ToUnixTimeMilliseconds();
            for (int i = 0; i < 50; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write("churn_seconds", [new Label("pod", $"pod-{w}-{i}")], i, now + i));
            }

            writer.Flush();
            await pipeline.DrainAsync();
            for (int s = 0; s < 10; s++)
            {
                time.Advance(TimeSpan.FromSeconds(1));
                await pipeline.DrainAsync();
            }
        }
    }

    [Fact]
    public async Task Churn_ManyWindowsOfNewSeries_IdsAndStateStayBounded_EveryPointAccounted()
    {
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(30));
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("churn");
            await Churn(pipeline, time, writer, 0, 40);
            int idsAfterWarmUp = pipeline.Registry.Count;
            long heldAfterWarmUp = pipeline.GetMetrics().HeldStateBytes;

            await Churn(pipeline, time, writer, 40, 200);
            PipelineMetrics m = pipeline.GetMetrics();

            // 10,000 series came and went; the indexes in use level off at what the idle timeout and the
            // quarantine keep (about 50 per window for 30 s + 30 s + a scan interval), not at 10,000.
            Assert.True(pipeline.Registry.Count <= idsAfterWarmUp + 100, $"ids grew from {idsAfterWarmUp} to {pipeline.Registry.Count}");
            Assert.True(pipeline.Registry.Count < 1_000, $"{pipeline.Registry.Count} indexes for at most ~400 live series");
            Assert.True(m.SeriesReclaimed > 9_000, $"only {m.SeriesReclaimed} reclaimed");
            Assert.True(m.SeriesActive < 600, $"{m.SeriesActive} live series");
            Assert.True(m.HeldStateBytes <= heldAfterWarmUp * 2, $"held state grew from {heldAfterWarmUp} to {m.HeldStateBytes} bytes");
        }

        // Every point of every series, reclaimed or not, reached the sink under its own labels.
        PipelineMetrics done = pipeline.GetMetrics();
        Assert.Equal(10_000, done.Accepted);
        Assert.Equal(done.Accepted, done.EmittedPoints + done.Late + done.StalePoints);
        Assert.Equal(0, done.StalePoints);
        Assert.Equal(10_000, sink.Rows.Select(r => r.Labels.ToString()).Distinct().Count());
        Assert.All(sink.Rows, r => Assert.Equal(1, r.Count));
    }

    [Fact]
    public async Task BoundHandle_HeldPastReclaim_RefusedAsStaleAndCounted_NewLookupGetsFreshSeries()
    {
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(30));
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("app");
            SeriesId held = pipeline.Registry.GetOrAdd("queue_depth", new Label("queue", "orders"));
            writer.Write(held, 5, T0);
            await Churn(pipeline, time, writer, 0, 12); // 120 s: the queue series is idle past its timeout

            Assert.Equal(RejectReason.None, writer.Write(held, 7, time.GetUtcNow().ToUnixTimeMilliseconds()));
            writer.Flush();
            await pipeline.DrainAsync();
            Assert.Equal(1, pipeline.GetMetrics().StalePoints);

            SeriesId fresh = pipeline.Registry.GetOrAdd("queue_depth", new Label("queue", "orders"));
            Assert.NotEqual(held, fresh);
            writer.Write(fresh, 9, time.GetUtcNow().ToUnixTimeMilliseconds());
            writer.Flush();
            await pipeline.StopAsync();
        }

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late + m.StalePoints + m.OpenWindowPoints);
        double[] values = [.. sink.Rows.Where(r => r.Metric == "queue_depth").OrderBy(r => r.WindowStartMs).Select(r => r.Sum)];
        Assert.Equal([5.0, 9.0], values);
    }

    [Fact]
    public async Task InfiniteIdleTimeout_NothingReclaimed()
    {
        var (pipeline, _, time) = Create(Timeout.InfiniteTimeSpan);
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("churn");
            await Churn(pipeline, time, writer, 0, 20);
            Assert.Equal(1_000, pipeline.Registry.Count);
            Assert.Equal(0, pipeline.GetMetrics().SeriesReclaimed);
        }
    }
}
