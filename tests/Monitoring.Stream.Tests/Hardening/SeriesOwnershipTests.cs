using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>Bound handles belong to their pipeline; every refused write is counted with its reason and leaves nothing pending.</summary>
public class SeriesOwnershipTests
{
    private const long Ts = Scenario.T0 + 10_100;

    private static MetricsPipeline Create(ProbeSink sink) =>
        new(Scenario.Options(Scenario.Clock(Scenario.T0 + 30_000), shards: 2), [sink]);

    private static async Task AssertRefusedAndNothingArrives(MetricsPipeline pipeline, ProbeSink sink, RejectReason reason, long refused)
    {
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(refused, m.RejectedByReason[reason]);
        Assert.Equal(refused, m.Rejected);
        Assert.Equal(refused, m.Offered);
        Assert.Equal(0, m.Pending);
        Assert.Equal(0, m.Accepted);
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(0, m.WindowsEmitted);
        Assert.Equal(0, sink.Calls);
    }

    [Fact]
    public async Task Write_IdOfAnotherPipeline_RefusedAsUnknownSeries()
    {
        var sink = new ProbeSink("s");
        await using MetricsPipeline pipeline = Create(sink);
        await using MetricsPipeline other = Create(new ProbeSink("other"));
        // Same index in both registries: the id would land on an unrelated series if only the index counted.
        SeriesId mine = pipeline.Registry.GetOrAdd("mine_total");
        SeriesId foreign = other.Registry.GetOrAdd("theirs_total");
        SeriesId foreignOutOfRange = default;
        for (int k = 0; k < 5; k++)
        {
            foreignOutOfRange = other.Registry.GetOrAdd("theirs_total", [new Label("k", "k" + k)]);
        }

        Assert.Equal(mine.Value, foreign.Value);
        Assert.False(pipeline.Registry.Owns(foreign));
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("w");

        Assert.Equal(RejectReason.UnknownSeries, writer.Write(foreign, 1.0, Ts));
        Assert.Equal(RejectReason.UnknownSeries, writer.Write(foreign, 1.0));
        Assert.Equal(RejectReason.UnknownSeries, writer.Write(foreignOutOfRange, 1.0, Ts));
        writer.Flush();
        await pipeline.DrainAsync().Within("drain");

        await AssertRefusedAndNothingArrives(pipeline, sink, RejectReason.UnknownSeries, 3);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(-1)]
    [InlineData(int.MaxValue)]
    [InlineData(int.MinValue)]
    public async Task Write_HandMadeOrOutOfRangeId_RefusedAsUnknownSeries(int value)
    {
        var sink = new ProbeSink("s");
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Registry.GetOrAdd("a_total");
        pipeline.Registry.GetOrAdd("b_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("w");

        Assert.Equal(RejectReason.UnknownSeries, writer.Write(new SeriesId(value), 1.0, Ts));
        Assert.Equal(RejectReason.UnknownSeries, writer.Write(default, 1.0, Ts));
        writer.Flush();
        await pipeline.DrainAsync().Within("drain");

        await AssertRefusedAndNothingArrives(pipeline, sink, RejectReason.UnknownSeries, 2);
    }

    [Fact]
    public async Task Write_AfterDispose_RefusedAsWriterClosedNothingPending()
    {
        var sink = new ProbeSink("s");
        await using MetricsPipeline pipeline = Create(sink);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        PointWriter writer = pipeline.CreateWriter("w");
        Assert.Equal(RejectReason.None, writer.Write(id, 1.0, Ts));
        writer.Dispose();

        Assert.Equal(RejectReason.WriterClosed, writer.Write(id, 1.0, Ts));
        Assert.Equal(RejectReason.WriterClosed, writer.Write(id, 1.0));
        Assert.Equal(RejectReason.WriterClosed, writer.Write("a_total", [], 1.0, Ts));
        Assert.Equal(RejectReason.WriterClosed, writer.Write("a_total", [], 1.0));
        writer.Flush();
        writer.Dispose();
        await pipeline.DrainAsync().Within("drain");

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(5, m.Offered);
        Assert.Equal(1, m.Accepted);
        Assert.Equal(4, m.RejectedByReason[RejectReason.WriterClosed]);
        Identities.AssertSettled(m);
        await pipeline.StopAsync().Within("stop");
        Identities.AssertStopped(pipeline.GetMetrics());
        Assert.Equal(1, sink.PointsRead);
    }

    [Fact]
    public async Task Write_AfterStop_RefusedAsWriterClosed_BufferedPointsAggregatedByTheStop()
    {
        var sink = new ProbeSink("s");
        await using MetricsPipeline pipeline = Create(sink);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        PointWriter flushed = pipeline.CreateWriter("flushed");
        PointWriter buffered = pipeline.CreateWriter("buffered");
        Assert.Equal(RejectReason.None, flushed.Write(id, 1.0, Ts));
        flushed.Flush();
        Assert.Equal(RejectReason.None, buffered.Write(id, 1.0, Ts));
        Assert.Equal(RejectReason.None, buffered.Write(id, 1.0, Ts));

        await pipeline.StopAsync().Within("stop");

        Assert.Equal(RejectReason.WriterClosed, flushed.Write(id, 1.0, Ts));
        Assert.Equal(RejectReason.WriterClosed, buffered.Write(id, 1.0, Ts));
        Assert.Equal(RejectReason.WriterClosed, buffered.Write("a_total", [], 1.0, Ts));
        using PointWriter late = pipeline.CreateWriter("created-after-stop");
        Assert.Equal(RejectReason.WriterClosed, late.Write(id, 1.0, Ts));
        using SharedPointWriter shared = pipeline.CreateSharedWriter("shared-after-stop");
        Assert.Equal(RejectReason.WriterClosed, shared.Write(id, 1.0, Ts));
        // The two points buffered before the stop were handed to the shards by the graceful stop itself.
        Assert.Equal(0, pipeline.GetMetrics().Pending);
        buffered.Dispose();
        flushed.Dispose();
        late.Flush();
        shared.Flush();

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(8, m.Offered);
        Assert.Equal(3, m.Accepted);
        Assert.Equal(5, m.RejectedByReason[RejectReason.WriterClosed]);
        Assert.Equal(0, m.Dropped);
        Assert.Equal(0, m.Pending);
        Identities.AssertStopped(m);
        Assert.Equal(3, sink.PointsRead);
    }

    [Fact]
    public async Task SharedWriter_AfterDispose_RefusedAsWriterClosedFromAnyThread()
    {
        var sink = new ProbeSink("s");
        await using MetricsPipeline pipeline = Create(sink);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        SharedPointWriter shared = pipeline.CreateSharedWriter("app");
        Assert.Equal(RejectReason.None, shared.Write(id, 1.0, Ts));
        shared.Dispose();

        Assert.Equal(RejectReason.WriterClosed, shared.Write(id, 1.0, Ts));
        RejectReason fromNewThread = await Task.Factory.StartNew(
            () => shared.Write(id, 1.0, Ts), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Within("write from a new thread");
        Assert.Equal(RejectReason.WriterClosed, fromNewThread);
        await pipeline.DrainAsync().Within("drain");

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(3, m.Offered);
        Assert.Equal(2, m.RejectedByReason[RejectReason.WriterClosed]);
        Identities.AssertSettled(m);
        await pipeline.StopAsync().Within("stop");
        Identities.AssertStopped(pipeline.GetMetrics());
        Assert.Equal(1, sink.PointsRead);
    }
}
