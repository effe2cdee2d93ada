using System.Collections.Concurrent;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>A source's acknowledged position never passes a point some sink has not finished with, and reaches the end after a graceful stop.</summary>
public class AcknowledgementTests
{
    private sealed record Emission(long WindowStart, long Sequence, string BatchId, long Points, string? MetadataSequence);

    [Fact]
    public async Task AcknowledgedPosition_HeldBackByABlockedSink_PassesWindowByWindowAsItWrites()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var gates = new Gates();
        var gated = new ProbeSink("gated", call => new ValueTask(gates.For(call.Index).WaitAsync(call.Token)));
        var healthy = new ProbeSink("healthy");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [gated, healthy]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        try
        {
            using PointWriter writer = pipeline.CreateWriter("partition-0");
            Assert.Equal(-1, writer.AcknowledgedPosition);
            for (int w = 0; w < 3; w++)
            {
                Scenario.WriteWindows(writer, id, w, 1);
                writer.Checkpoint((w + 1) * 10);
            }

            // Windows 0 and 1 are closed; the healthy sink wrote both, the gated sink holds window 0.
            ProbeSink.Call first = await gated.NextCallAsync().Within("the gated sink's first write");
            Assert.Equal(Scenario.T0, first.Batch.WindowStartUnixMs);
            await Signals.Until(() => healthy.Calls == 2, "the healthy sink writing windows 0 and 1");
            Assert.Equal(-1, writer.AcknowledgedPosition);

            gates.Open(1);
            await writer.WaitForAcknowledgedAsync(10).Within("position 10 acknowledged");
            ProbeSink.Call second = await gated.NextCallAsync().Within("the gated sink's second write");
            Assert.Equal(Scenario.T0 + 1000, second.Batch.WindowStartUnixMs);
            Assert.Equal(10, writer.AcknowledgedPosition);

            gates.Open(2);
            await writer.WaitForAcknowledgedAsync(20).Within("position 20 acknowledged");
            // Window 2 is still open: its position is not acknowledged.
            await pipeline.DrainAsync().Within("drain");
            Assert.Equal(20, writer.AcknowledgedPosition);

            gates.Open(3);
            await pipeline.StopAsync().Within("stop");
            Assert.Equal(30, writer.AcknowledgedPosition);
            await writer.WaitForAcknowledgedAsync(30).Within("position 30 acknowledged");
            Identities.AssertStopped(pipeline.GetMetrics());
        }
        finally
        {
            gates.OpenAll();
        }
    }

    [Fact]
    public async Task AcknowledgedPosition_SinkGivesUp_StillPassesAndTheLossIsCounted()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var broken = new ProbeSink("broken", _ => throw new IOException("down"));
        var options = new SinkOptions { MaxAttempts = 2, InitialBackoff = TimeSpan.Zero, MaxBackoff = TimeSpan.Zero };
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(broken, options)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("partition-0");
        Scenario.WriteWindows(writer, id, 0, 1);
        writer.Checkpoint(1);
        Scenario.WriteWindows(writer, id, 1, 1);
        writer.Checkpoint(2);

        await writer.WaitForAcknowledgedAsync(1).Within("position 1 acknowledged after the sink gave up");
        Assert.Equal(1, writer.AcknowledgedPosition);
        SinkMetrics s = pipeline.GetMetrics().Sinks[0];
        Assert.Equal(1, s.BatchesFailed);
        Assert.Equal(2, s.Errors);

        await pipeline.StopAsync().Within("stop");
        Assert.Equal(2, writer.AcknowledgedPosition);
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(2, m.Sinks[0].BatchesFailed);
        Assert.Equal(6, m.Sinks[0].PointsFailed);
    }

    [Fact]
    public async Task AcknowledgedPosition_AfterGracefulStop_EveryCheckpointOfEverySourceAcknowledged()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var sink = new ProbeSink("s");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time, shards: 3), [sink]);
        SeriesId[] ids = [.. Enumerable.Range(0, 9).Select(k => pipeline.Registry.GetOrAdd("a_total", [new Label("k", "k" + k)]))];
        pipeline.Start();
        PointWriter flushed = pipeline.CreateWriter("flushed");
        PointWriter buffered = pipeline.CreateWriter("buffered");
        PointWriter refused = pipeline.CreateWriter("refused");
        PointWriter idle = pipeline.CreateWriter("idle");
        for (int i = 0; i < 200; i++)
        {
            long ts = Scenario.T0 + (i * 100L);
            Assert.Equal(RejectReason.None, flushed.Write(ids[i % 9], i, ts));
            Assert.Equal(RejectReason.None, buffered.Write(ids[(i * 5) % 9], i, ts));
            Assert.Equal(RejectReason.NotANumber, refused.Write(ids[i % 9], double.NaN, ts));
            flushed.Checkpoint(i);
            buffered.Checkpoint(i);
            refused.Checkpoint(i);
            if (i % 17 == 0)
            {
                flushed.Flush();
            }
        }

        idle.Checkpoint(5);
        flushed.Flush();
        refused.Flush();
        await pipeline.StopAsync().Within("stop");

        Assert.Equal(199, flushed.AcknowledgedPosition);
        Assert.Equal(199, refused.AcknowledgedPosition);
        Assert.Equal(5, idle.AcknowledgedPosition);
        // Points still in a writer at the stop are dropped when it is disposed: counted, so acknowledged.
        buffered.Dispose();
        Assert.Equal(199, buffered.AcknowledgedPosition);
        await buffered.WaitForAcknowledgedAsync(199).Within("buffered writer's last position");
        flushed.Dispose();
        refused.Dispose();
        idle.Dispose();

        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(200, m.RejectedByReason[RejectReason.NotANumber]);
        Assert.Equal(m.Dropped, m.DroppedByReason[DropReason.PipelineStopped]);
        Assert.Equal(400, m.Accepted + m.Dropped);
        Assert.Equal(m.EmittedPoints, sink.PointsRead);
    }

    [Fact]
    public async Task CloseOpenWindows_EmitsNowAndAcknowledges_LaterPointOfOtherSourceReEmittedWithHigherSequence()
    {
        long c = Scenario.T0 + 100_000;
        var time = Scenario.Clock(c + 5_000);
        var emissions = new ConcurrentQueue<Emission>();
        var sink = new ProbeSink("s", call =>
        {
            WindowBatch b = call.Batch;
            b.RecordBatch.Schema.Metadata.TryGetValue(WindowSchema.SequenceKey, out string? sequence);
            emissions.Enqueue(new Emission(b.WindowStartUnixMs, b.Sequence, b.BatchId, b.Points, sequence));
            return ValueTask.CompletedTask;
        });
        var options = new MetricsPipelineOptions
        {
            ShardCount = 1,
            WindowSize = TimeSpan.FromSeconds(10),
            AllowedLateness = TimeSpan.FromSeconds(5),
            TimeProvider = time,
            Instance = "hardening",
        };
        await using var pipeline = new MetricsPipeline(options, [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using PointWriter leaving = pipeline.CreateWriter("partition-0");
        using PointWriter staying = pipeline.CreateWriter("partition-1");
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(RejectReason.None, leaving.Write(id, 1, c + 1000 + i));
        }

        leaving.Checkpoint(100);
        Assert.Equal(RejectReason.None, staying.Write(id, 1, c + 2000));
        staying.Flush();

        await leaving.CloseOpenWindowsAsync().AsTask().Within("close the leaving source's windows");
        await leaving.WaitForAcknowledgedAsync(100).Within("the leaving source's position acknowledged");
        Emission first = Assert.Single(emissions);
        Assert.Equal(c, first.WindowStart);
        Assert.Equal(4, first.Points);
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(m.Watermarks[0] < c + 10_000, "closing a source's windows must not move the watermark");

        // Another source's later point for the same window is not late: the window opens again.
        Assert.Equal(RejectReason.None, staying.Write(id, 5, c + 3000));
        staying.Flush();
        await pipeline.DrainAsync().Within("drain");
        Assert.Equal(0, pipeline.GetMetrics().Late);

        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(0, m.Late);
        Emission[] all = [.. emissions];
        Assert.Equal(2, all.Length);
        Emission second = all[1];
        Assert.Equal(c, second.WindowStart);
        Assert.Equal(1, second.Points);
        Assert.True(second.Sequence > first.Sequence, $"re-emission sequence {second.Sequence} not above {first.Sequence}");
        Assert.NotEqual(first.BatchId, second.BatchId);
        Assert.All(all, e => Assert.Equal(e.Sequence.ToString(System.Globalization.CultureInfo.InvariantCulture), e.MetadataSequence));
        Assert.Equal(5, m.EmittedPoints);
    }
    [Fact]
    public async Task AcknowledgedPosition_OneShardsWindowHeld_HoldsThePositionOfEveryShard()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // Writes the first two windows it gets (whichever shards they come from) and holds the third.
        var picky = new ProbeSink("picky", call => call.Index == 3 ? new ValueTask(release.Task.WaitAsync(call.Token)) : ValueTask.CompletedTask);
        await using var pipeline = new MetricsPipeline(Scenario.Options(time, shards: 3), [picky]);
        SeriesId[] ids = [.. Enumerable.Range(0, 3).Select(k => pipeline.Registry.GetOrAdd("a_total", [new Label("k", "k" + k)]))];
        Assert.Equal([0, 1, 2], ids.Select(id => id.Value % 3));
        pipeline.Start();
        try
        {
            using PointWriter writer = pipeline.CreateWriter("partition-0");
            for (int w = 0; w < 2; w++)
            {
                foreach (SeriesId id in ids)
                {
                    Assert.Equal(RejectReason.None, writer.Write(id, 1, Scenario.T0 + (w * 1000L) + 10));
                }

                writer.Checkpoint(w);
                writer.Flush();
            }

            // Window 0 of every shard is closed; two are written, one shard's is held.
            ProbeSink.Call held = await picky.NextCallAsync().Within("window 0 of a first shard reaching the sink");
            held = await picky.NextCallAsync().Within("window 0 of a second shard reaching the sink");
            held = await picky.NextCallAsync().Within("window 0 of the third shard reaching the sink");
            Assert.Equal(3, held.Index);
            await pipeline.DrainAsync().Within("drain");
            Assert.Equal(-1, writer.AcknowledgedPosition);

            release.SetResult();
            await writer.WaitForAcknowledgedAsync(0).Within("position 0 acknowledged");
            Assert.Equal(0, writer.AcknowledgedPosition);
            await pipeline.StopAsync().Within("stop");
            Assert.Equal(1, writer.AcknowledgedPosition);
            Identities.AssertStopped(pipeline.GetMetrics());
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [Fact]
    public async Task AcknowledgedPosition_ForcedStop_AbandonedWindowNeverAcknowledged()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(never.Task.WaitAsync(call.Token)));
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [stuck]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("partition-0");
        Scenario.WriteWindows(writer, id, 0, 1);
        writer.Checkpoint(1);
        Scenario.WriteWindows(writer, id, 1, 1);
        writer.Checkpoint(2);
        await stuck.NextCallAsync().Within("the stuck sink's first write");

        using var signal = new CancellationTokenSource();
        signal.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pipeline.StopAsync(signal.Token).Within("forced stop"));
        await Signals.Until(() => pipeline.GetMetrics() is { WindowsEmitted: 2 } m && m.Sinks[0].BatchesAbandoned == 2, "both windows abandoned");
        Assert.Equal(-1, writer.AcknowledgedPosition);
        using var shortWait = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => writer.WaitForAcknowledgedAsync(1, shortWait.Token));
        Identities.AssertStopped(pipeline.GetMetrics());
    }

    [Fact]
    public async Task AcknowledgedPosition_WindowDroppedByDropOldestSink_PassesAndDropCounted()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var slow = new ProbeSink("slow", call => call.Index == 1 ? new ValueTask(release.Task.WaitAsync(call.Token)) : ValueTask.CompletedTask);
        var options = new SinkOptions { QueueCapacity = 1, QueuePolicy = SinkQueuePolicy.DropOldest };
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(slow, options)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        try
        {
            using PointWriter writer = pipeline.CreateWriter("partition-0");
            Scenario.WriteWindows(writer, id, 0, 2);
            writer.Checkpoint(1);
            await slow.NextCallAsync().Within("the slow sink's first write");
            // Windows 1..3 close: window 1 is queued, then dropped for window 2, then window 2 for window 3.
            Scenario.WriteWindows(writer, id, 2, 3);
            writer.Checkpoint(2);
            await pipeline.DrainAsync().Within("drain");
            Assert.Equal(2, pipeline.GetMetrics().Sinks[0].BatchesDropped);
            Assert.Equal(-1, writer.AcknowledgedPosition);

            release.SetResult();
            await writer.WaitForAcknowledgedAsync(1).Within("position 1 acknowledged");
            await pipeline.StopAsync().Within("stop");
            Assert.Equal(2, writer.AcknowledgedPosition);
            PipelineMetrics m = pipeline.GetMetrics();
            Identities.AssertStopped(m);
            Assert.Equal(2, m.Sinks[0].BatchesDropped);
            Assert.Equal(3, m.Sinks[0].BatchesWritten);
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [Fact]
    public async Task AcknowledgedPosition_PointsDroppedOnAFullShard_CountedAndAcknowledged()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(release.Task.WaitAsync(call.Token)));
        MetricsPipelineOptions options = Scenario.Options(time);
        options.ShardQueueBatches = 1;
        await using var pipeline = new MetricsPipeline(options, [new SinkRegistration(stuck, new SinkOptions { QueueCapacity = 1 })]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        try
        {
            // Window 0 in the sink's hands, window 1 queued, window 2 makes the shard wait: it is stalled.
            using PointWriter filler = pipeline.CreateWriter("filler", BackpressureMode.Wait);
            Scenario.WriteWindows(filler, id, 0, 4);
            await Signals.Until(() => pipeline.GetMetrics().Sinks[0].State == SinkState.Stalled, "the shard waiting for the sink");

            // One batch fits in the shard's channel; the next is dropped and counted.
            using PointWriter dropper = pipeline.CreateWriter("partition-0", BackpressureMode.DropNewest);
            Scenario.WriteWindows(dropper, id, 4, 1);
            dropper.Checkpoint(1);
            Scenario.WriteWindows(dropper, id, 5, 1);
            dropper.Checkpoint(2);
            PipelineMetrics m = pipeline.GetMetrics();
            Assert.Equal(3, m.DroppedByReason[DropReason.QueueFull]);
            Assert.Equal(-1, dropper.AcknowledgedPosition);

            release.SetResult();
            await pipeline.StopAsync().Within("stop");
            Assert.Equal(2, dropper.AcknowledgedPosition);
            m = pipeline.GetMetrics();
            Identities.AssertStopped(m);
            Assert.Equal(15, m.EmittedPoints);
            Assert.Equal(3, m.Dropped);
        }
        finally
        {
            release.TrySetResult();
        }
    }
}
