using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Acknowledgements back to sources (Checkpoint, AcknowledgedPosition, WaitForAcknowledgedAsync, CloseOpenWindowsAsync)
/// against slow and failing sinks, stops and races, from the docs only.
/// </summary>
public class AcknowledgementBlackBoxTests
{
    private static MetricsPipelineOptions OneSecondWindows(FakeTimeProvider time, int shards) =>
        EventTimeBlackBoxTests.Options(time, shards, windowMs: 1000, latenessMs: 0, idleMs: 60_000);

    /// <summary>Writes one point per series into window <paramref name="w"/> (clock set half a second into it), then checkpoints w.</summary>
    private static int WriteWindow(PointWriter writer, SeriesId[] ids, FakeTimeProvider time, int w, bool flush = true)
    {
        long target = Scenario.T0 + (w * 1000L) + 500;
        long now = EventTimeBlackBoxTests.Now(time);
        if (target > now)
        {
            time.Advance(TimeSpan.FromMilliseconds(target - now));
        }

        for (int i = 0; i < ids.Length; i++)
        {
            Assert.Equal(RejectReason.None, writer.Write(ids[i], i, Scenario.T0 + (w * 1000L) + 100 + i));
        }

        writer.Checkpoint(w);
        if (flush)
        {
            writer.Flush();
        }

        return ids.Length;
    }

    [Fact]
    public async Task AcknowledgedPosition_SlowSinkOnTwoShards_NeverPassesAWindowTheSinkHasNotAcknowledged()
    {
        var time = Scenario.Clock(Scenario.T0);
        var gates = new BlackBoxGates();
        var done = new ConcurrentDictionary<(int Shard, long Start), bool>();
        var slow = new ProbeSink("slow", async call =>
        {
            await gates.For(call.Index);
            done[(call.Batch.Shard, call.Batch.WindowStartUnixMs)] = true;
        });
        var fast = new CollectingSink();
        await using var pipeline = new MetricsPipeline(OneSecondWindows(time, shards: 2), [fast, slow]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 8);
        pipeline.Start();
        try
        {
            using PointWriter writer = pipeline.CreateWriter("partition-0");
            long written = 0;
            for (int w = 0; w < 6; w++)
            {
                written += WriteWindow(writer, ids, time, w);
            }

            await pipeline.DrainAsync().Within("drain");
            var observations = new List<(long Position, HashSet<(int, long)> Done)>();
            void Observe()
            {
                long p = writer.AcknowledgedPosition;
                observations.Add((p, [.. done.Keys]));
            }

            Observe();
            Assert.Equal(-1, writer.AcknowledgedPosition);
            int calls = 0;
            while (true)
            {
                // Windows 0..4 are closed (two shards each, once the fast sink had them); window 5 stays open.
                await Signals.Until(() => slow.Calls > calls || done.Count >= 10, "the next window reaches the slow sink");
                if (slow.Calls == calls)
                {
                    break;
                }

                calls++;
                Observe();
                gates.Open(calls);
                await Signals.Until(() => done.Count >= calls, "the slow sink finishes its write");
                for (int i = 0; i < 20; i++)
                {
                    Observe();
                    await Task.Yield();
                }
            }

            Assert.Equal(10, done.Count);
            await Signals.Until(() => writer.AcknowledgedPosition == 4, "position 4 acknowledged once every closed window is written");
            await writer.WaitForAcknowledgedAsync(4).Within("wait for 4");
            Observe();
            Task<bool> five = WaitFor(writer, 5);
            Task stop = pipeline.StopAsync();
            await Signals.Until(() => slow.Calls > calls, "the stop emits window 5");
            Observe();
            Assert.Equal(4, writer.AcknowledgedPosition);
            Assert.False(five.IsCompleted, "position 5 acknowledged while its window is in the slow sink's hands");
            gates.OpenAll();
            await stop.Within("stop");
            Assert.True(await five.Within("position 5"));
            Assert.Equal(5, writer.AcknowledgedPosition);

            // Every observation: each window up to the acknowledged position was done by the slow sink at that moment.
            var batches = slow.Seen.Select(b => (b.Shard, b.WindowStartUnixMs)).ToHashSet();
            long previous = -1;
            foreach ((long position, HashSet<(int, long)> doneThen) in observations)
            {
                Assert.True(position >= previous, $"acknowledged position went back from {previous} to {position}");
                previous = position;
                foreach ((int shard, long start) in batches.Where(b => b.WindowStartUnixMs < Scenario.T0 + ((position + 1) * 1000)))
                {
                    Assert.True(doneThen.Contains((shard, start)), $"position {position} acknowledged before shard {shard}'s window {start} was written");
                }
            }

            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(written, m.EmittedPoints);
        }
        finally
        {
            // Also on failure: a stop waits for the sink, and the shutdown timeout runs on the fake clock.
            gates.OpenAll();
        }
    }

    private static async Task<bool> WaitFor(PointWriter writer, long position)
    {
        await writer.WaitForAcknowledgedAsync(position);
        return true;
    }

    [Fact]
    public async Task AcknowledgedPosition_SinkThatAlwaysFails_GivenUpWindowsAcknowledged()
    {
        var time = Scenario.Clock(Scenario.T0);
        var failing = new ProbeSink("failing", _ => throw new IOException("disk on fire"));
        var options = new SinkOptions { MaxAttempts = 2, InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(1) };
        await using var pipeline = new MetricsPipeline(
            OneSecondWindows(time, shards: 2),
            [new SinkRegistration(failing, options), new SinkRegistration(new CollectingSink())]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 4);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("partition-0");
        long written = 0;
        for (int w = 0; w < 3; w++)
        {
            written += WriteWindow(writer, ids, time, w);
        }

        // A retry's backoff may run on the engine's clock: nudge it by a millisecond per poll (far below any timeout).
        await Signals.Until(
            () =>
            {
                time.Advance(TimeSpan.FromMilliseconds(1));
                return writer.AcknowledgedPosition == 1;
            },
            "positions of given-up windows acknowledged");
        Task stop = pipeline.StopAsync();
        await Signals.Until(
            () =>
            {
                time.Advance(TimeSpan.FromMilliseconds(1));
                return stop.IsCompleted;
            },
            "stop");
        await stop;
        Assert.Equal(2, writer.AcknowledgedPosition);
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        SinkMetrics s = Assert.Single(m.Sinks, x => x.Name == "failing");
        Assert.Equal(m.WindowsEmitted, s.BatchesFailed);
        Assert.Equal(written, s.PointsFailed);
    }

    [Fact]
    public async Task AcknowledgedPosition_CheckpointOfOnlyRefusedPoints_Acknowledged()
    {
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(OneSecondWindows(time, shards: 2), [new CollectingSink()]);
        SeriesId id = pipeline.Registry.GetOrAdd("bb_refused_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("partition-0");
        Assert.Equal(RejectReason.NotANumber, writer.Write(id, double.NaN, Scenario.T0));
        Assert.Equal(RejectReason.TimestampTooOld, writer.Write(id, 1, Scenario.T0 - 3_600_001));
        writer.Checkpoint(7);
        writer.Flush();
        time.Advance(TimeSpan.FromSeconds(1));
        await writer.WaitForAcknowledgedAsync(7).Within("a checkpoint of refused points acknowledged");
        Assert.Equal(7, writer.AcknowledgedPosition);
        await pipeline.StopAsync().Within("stop");
        BlackBoxAccounting.AssertStoppedGracefully(pipeline.GetMetrics());
    }

    [Fact]
    public async Task AcknowledgedPosition_CheckpointOfOnlyLatePoints_AcknowledgedWhileOtherWindowsOpen()
    {
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(OneSecondWindows(time, shards: 2), [new CollectingSink()]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 4);
        pipeline.Start();
        using PointWriter live = pipeline.CreateWriter("live");
        for (int w = 0; w < 5; w++)
        {
            WriteWindow(live, ids, time, w);
        }

        // The live source's windows 0-3 are closed before the straggler exists: a new source holds the
        // watermark from its creation (docs/event-time.md), so created earlier it would keep window 0 open.
        await live.WaitForAcknowledgedAsync(3).Within("the live source's first windows closed");
        using PointWriter straggler = pipeline.CreateWriter("straggler");
        Assert.Equal(RejectReason.None, straggler.Write(ids[0], 1, Scenario.T0 + 100));
        straggler.Checkpoint(3);
        straggler.Flush();
        await straggler.WaitForAcknowledgedAsync(3).Within("a checkpoint of late points acknowledged");
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(1, m.Late);
        Assert.True(m.OpenWindowPoints > 0, "no window was open");
        live.Dispose();
        straggler.Dispose();
        await pipeline.StopAsync().Within("stop");
        BlackBoxAccounting.AssertStoppedGracefully(pipeline.GetMetrics());
    }

    [Fact]
    public async Task StopAsync_TwoConcurrentCalls_BothWaitForTheSinkThenCheckpointsReachTheEnd()
    {
        var time = Scenario.Clock(Scenario.T0);
        var gates = new BlackBoxGates();
        var slow = new ProbeSink("slow", call => new ValueTask(gates.For(call.Index)));
        await using var pipeline = new MetricsPipeline(OneSecondWindows(time, shards: 2), [slow]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 6);
        pipeline.Start();
        try
        {
            using PointWriter writer = pipeline.CreateWriter("partition-0");
            long written = 0;
            for (int w = 0; w < 3; w++)
            {
                written += WriteWindow(writer, ids, time, w);
            }

            using var go = new ManualResetEventSlim();
            Task first = Task.Run(() => { go.Wait(); return pipeline.StopAsync(); });
            Task second = Task.Run(() => { go.Wait(); return pipeline.StopAsync(); });
            go.Set();
            await Signals.Until(() => slow.Calls >= 1 && pipeline.State != PipelineState.Running, "the stop began and a window is in the sink's hands");
            Assert.False(first.IsCompleted || second.IsCompleted, "a stop returned while the sink still held a window");
            Assert.True(writer.AcknowledgedPosition < 2, "the last checkpoint was acknowledged before its window was written");
            gates.OpenAll();
            await first.Within("first stop");
            await second.Within("second stop");
            await pipeline.StopAsync().Within("a third stop, after the others");
            Assert.Equal(2, writer.AcknowledgedPosition);
            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(written, m.EmittedPoints);
            Assert.Equal(written, slow.PointsRead);
        }
        finally
        {
            // Also on failure: a stop waits for the sink, and the shutdown timeout runs on the fake clock.
            gates.OpenAll();
        }
    }

    [Fact]
    public async Task CloseOpenWindowsAsync_RacingStopAsync_BothCompleteAndEveryCheckpointAcknowledged()
    {
        for (int run = 0; run < 12; run++)
        {
            var time = Scenario.Clock(Scenario.T0);
            var sink = new CollectingSink();
            await using var pipeline = new MetricsPipeline(OneSecondWindows(time, shards: 2), [sink]);
            SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 6);
            pipeline.Start();
            PointWriter writer = pipeline.CreateWriter("partition-0");
            using PointWriter other = pipeline.CreateWriter("partition-1");
            long written = WriteWindow(writer, ids, time, 0) + WriteWindow(writer, ids, time, 1);
            // Other sources keep writing into the same windows, so a rebalance emission is partial.
            for (int i = 0; i < ids.Length; i++)
            {
                Assert.Equal(RejectReason.None, other.Write(ids[i], 100 + i, Scenario.T0 + 1_200 + i));
                written++;
            }

            other.Flush();
            if (run % 2 == 1)
            {
                // Leave the last checkpoint's points in the writer's buffer: the close or the stop must carry them.
                written += WriteWindow(writer, ids, time, 2, flush: false);
            }

            using var go = new ManualResetEventSlim();
            Task close = Task.Run(async () => { go.Wait(); await writer.CloseOpenWindowsAsync(); });
            Task stop = Task.Run(() => { go.Wait(); return pipeline.StopAsync(); });
            go.Set();
            await close.Within($"run {run}: close of open windows");
            await stop.Within($"run {run}: stop");
            long last = run % 2 == 1 ? 2 : 1;
            await writer.WaitForAcknowledgedAsync(last).Within($"run {run}: last checkpoint acknowledged");
            writer.Dispose();
            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(0, m.Late);
            // Points still in the writer's buffer when the stop wins the race are dropped as PipelineStopped (counted);
            // everything flushed before the race is emitted.
            Assert.Equal(m.Dropped, m.DroppedByReason.GetValueOrDefault(DropReason.PipelineStopped));
            Assert.Equal(written, m.EmittedPoints + m.Dropped);
            Assert.Equal(m.EmittedPoints, sink.Rows.Sum(r => r.Count));
            // Partial emissions of one (series, window) merge to the exact count.
            var merged = sink.Rows.GroupBy(r => (r.Key, r.WindowStartMs)).ToDictionary(g => g.Key, g => g.Sum(r => r.Count));
            Assert.Equal(ids.Length, merged.Count(kv => kv.Key.WindowStartMs == Scenario.T0 && kv.Value == 1));
            Assert.Equal(ids.Length, merged.Count(kv => kv.Key.WindowStartMs == Scenario.T0 + 1000 && kv.Value == 2));
            Assert.All(merged.Where(kv => kv.Key.WindowStartMs == Scenario.T0 + 2000), kv => Assert.Equal(1, kv.Value));
        }
    }

    [Fact]
    public async Task CloseOpenWindowsAsync_OtherSourceWritesIntoTheEmittedWindow_NotLate_SecondEmissionMergesExactly()
    {
        var time = Scenario.Clock(Scenario.T0);
        var emissions = new ConcurrentQueue<(string BatchId, long Sequence, int Shard, long Start, long Points)>();
        var sink = new ProbeSink("ids", call =>
        {
            WindowBatch b = call.Batch;
            emissions.Enqueue((b.BatchId, b.Sequence, b.Shard, b.WindowStartUnixMs, b.Points));
            return ValueTask.CompletedTask;
        });
        await using var pipeline = new MetricsPipeline(OneSecondWindows(time, shards: 1), [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("bb_rebalance_total");
        pipeline.Start();
        using PointWriter moving = pipeline.CreateWriter("partition-0");
        using PointWriter staying = pipeline.CreateWriter("partition-1");
        time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(RejectReason.None, moving.Write(id, 1, Scenario.T0 + 100));
        moving.Checkpoint(1);
        Assert.Equal(RejectReason.None, staying.Write(id, 2, Scenario.T0 + 200));
        staying.Flush();
        await moving.CloseOpenWindowsAsync().AsTask().Within("close of the moving source's windows");
        await moving.WaitForAcknowledgedAsync(1).Within("the moving source's checkpoint acknowledged after its windows went out");
        Assert.Equal(RejectReason.None, staying.Write(id, 3, Scenario.T0 + 300));
        staying.Flush();
        moving.Dispose();
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(3, m.EmittedPoints);
        var ofWindow = emissions.Where(e => e.Start == Scenario.T0).OrderBy(e => e.Sequence).ToList();
        Assert.Equal(2, ofWindow.Count);
        Assert.True(ofWindow[1].Sequence > ofWindow[0].Sequence, "the second emission does not have a higher sequence");
        Assert.NotEqual(ofWindow[0].BatchId, ofWindow[1].BatchId);
        Assert.Equal(2, ofWindow[0].Points);
        Assert.Equal(1, ofWindow[1].Points);
    }

    [Fact]
    public async Task StopAsync_PointsStillInAWritersBuffer_CheckpointAcknowledgedOrPointsAccounted()
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(OneSecondWindows(time, shards: 2), [sink]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 4);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("partition-0");
        WriteWindow(writer, ids, time, 0);
        WriteWindow(writer, ids, time, 1, flush: false);
        await pipeline.StopAsync().Within("stop");
        // "A graceful StopAsync emits every window, so every checkpoint is acknowledged once the sinks have finished."
        await writer.WaitForAcknowledgedAsync(1).Within("the last checkpoint acknowledged after a graceful stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(8, m.EmittedPoints + m.Dropped);
    }
}
