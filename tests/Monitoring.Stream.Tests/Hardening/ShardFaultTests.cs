using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>
/// A failure while aggregating one batch is contained: counted as faulted, reported, and the shard goes on.
/// The public API cannot make a shard fail on purpose, so this one test hands the shard, through the
/// internals the test project may see, the corrupt batch two threads on one writer can leave.
/// </summary>
public class ShardFaultTests
{
    [Fact]
    public async Task Shard_CorruptBatch_FaultContainedCountedAndShardGoesOn()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var sink = new ProbeSink("s");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("w");

        // What a writer would have counted for the batch it handed over.
        PointBatch corrupt = pipeline.BatchPool.Get();
        corrupt.Count = corrupt.Points.Length + 1;
        corrupt.Origin = writer.Counters;
        writer.Counters.Offered += corrupt.Count;
        writer.Counters.Accepted += corrupt.Count;
        Assert.True(pipeline.ShardWriters[0].TryWrite(corrupt));

        Scenario.WriteWindows(writer, id, 0, 3);
        await pipeline.DrainAsync().Within("drain past the fault");
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(PipelineState.Running, m.State);
        Assert.Equal(1, m.Faults);
        Assert.Equal(corrupt.Points.Length + 1, m.FaultedPoints);
        Assert.Contains("two threads", m.LastFault);
        Identities.AssertSettled(m);

        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(9, m.EmittedPoints);
        Assert.Equal(9, sink.PointsRead);
    }
}
