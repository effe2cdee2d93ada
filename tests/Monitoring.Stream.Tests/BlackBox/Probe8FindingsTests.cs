// Probe 8 findings (black box, helper), as regression tests of their fixes (session 8). Setup shared by all (StartRig):
// 2 shards, BatchSize as given, ShardQueueBatches 2, sink queue 1 (Block), a sink whose calls wait on gates; a closer
// writes windows 0..4 so windows 0..3 close, the sink holds one batch and queues another, both shards wait; then
// Wait/DropNewest producers (own and shared writers) write into the open window 4 until every Wait producer has been
// inside a call for 300 ms (waiting for room in a full shard).
//
// F1 StopAsync_WaitWritersAndBufferedBatchesBehindFullShardsOnTwoShards_ReturnsItsTaskWithin5s: StopAsync() did not
//    return its task within 5 s (3 of 4 variants in one run).
// F2 StopAsync_SecondSignalWhileWaitWritersWaitOnAFullShard_...: a second StopAsync(token) with its token cancelled did
//    not force the stop within 15 s.
// F3 StopAsync_GracefulWhile...SharedDisposeRacing_...: with SharedPointWriter.Dispose() on a pool thread right after
//    StopAsync began, a Wait producer's write call stayed blocked 15 s while the sink held its window.
// Cause of all three: a writer disposed during the stop (a thread's `using` ending once its writes were refused, or
// SharedPointWriter.Dispose) waited for room in the full shard while holding the writer's gate; StopAsync's close of
// that writer, under the stop's lock, waited for the gate, and so did the writer's own later calls. Fixed: the
// disposal hands its kept batches over after leaving the gate, and the stop waits for such hand-overs before it closes
// the shard queues; a call to a closed writer whose gate the engine holds is refused as WriterClosed at once. A first
// fix (never wait, drop what does not fit) ended the hangs but dropped a Wait writer's points in 1 to 3 of these runs.
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Hardening;

using static Monitoring.Stream.Tests.BlackBox.Probe8StopBlackBoxTests;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 8 (black box, README.md "Stopping" and docs/event-time.md): stops that begin while Wait writers wait on a full
/// shard behind a sink that holds its windows. A graceful stop may drop nothing a Wait writer was told it accepted,
/// also when writers are disposed, a drain and the shared writer's disposal race it; a forced stop counts everything it
/// abandons; every caller's return value matches the counters. And a Wait writer held back longer than
/// SourceIdleTimeout: its next in-order points are not late.
/// </summary>
public class Probe8FindingsTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(64)]
    public async Task StopAsync_GracefulWhileWaitWritersWaitOnAFullShardWithDisposeDrainAndSharedDisposeRacing_NothingAcceptedByAWaitWriterDropped(int batchSize)
    {
        StopRig rig = await StartRig(batchSize);
        MetricsPipeline pipeline = rig.Pipeline;
        try
        {
            using var snapshotsDone = new CancellationTokenSource();
            Task<int> snapshots = Probe8Ledger.SnapshotLoop(pipeline, snapshotsDone.Token);
            Task drain = Task.Run(() => pipeline.DrainAsync());
            rig.Stopping.Set();
            // On its own thread: StopAsync itself may hold its caller while the shards are full (see probe8 findings, F1).
            Task stop = Task.Factory.StartNew(() => pipeline.StopAsync(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
            Task sharedDisposed = Task.Run(rig.SharedWait.Dispose);

            // docs/event-time.md: a call under way when the stop comes is waited for and its points stay buffered, also a
            // batch it was waiting to hand to a full shard: every producer's waiting call returns while the sink still
            // holds its window.
            await UntilAllClosed(rig, stop);
            Assert.False(stop.IsCompleted, "the stop ended while the sink held a window (the scenario proves nothing then)");
            rig.Sink.Gates.OpenAll();
            await stop.Within("the graceful stop once the sink goes on");
            await drain.Within("DrainAsync racing the stop");
            await sharedDisposed.Within("the shared writer's disposal racing the stop");
            foreach (Thread t in rig.Threads)
            {
                Assert.True(t.Join(Signals.Bound), $"producer {t.Name} did not end");
            }

            await snapshotsDone.CancelAsync();
            Assert.True(await snapshots.Within("the snapshot loop") > 0);
            rig.SharedDrop.Dispose();

            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            AssertCallersMatchCounters(rig, m);
            Assert.Equal(0, m.Late);
            foreach (IGrouping<string, StopProducer> source in rig.Producers.Where(p => p.Mode == BackpressureMode.Wait).GroupBy(p => p.Source))
            {
                long dropped = m.Sources.Where(x => x.Source == source.Key).Sum(x => x.Dropped);
                Assert.True(dropped == 0, $"{source.Key} (Wait) dropped {dropped} in a graceful stop ({string.Join(", ", m.DroppedByReason.Where(d => d.Value > 0))})");
            }

            var exact = rig.Producers.Where(p => p.Mode == BackpressureMode.Wait).Select(p => p.Metric).Append("p8_stop_closer").ToHashSet();
            List<string> problems = Probe8Ledger.Compare(
                [.. rig.Producers.Select(p => p.Ledger), rig.Closer],
                rig.Sink.Rows,
                key => exact.Contains(key[..key.IndexOf('{', StringComparison.Ordinal)]));
            Assert.True(problems.Count == 0, string.Join("\n", problems.Take(20)));
        }
        finally
        {
            rig.Sink.Gates.OpenAll();
            await EventTimeBlackBoxTests.StopBounded(pipeline);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    public async Task StopAsync_SecondSignalWhileWaitWritersWaitOnAFullShard_ForcedStopCountsWhatItAbandonsAndEveryCallerMatchesTheCounters(int batchSize)
    {
        StopRig rig = await StartRig(batchSize);
        MetricsPipeline pipeline = rig.Pipeline;
        try
        {
            using var snapshotsDone = new CancellationTokenSource();
            Task<int> snapshots = Probe8Ledger.SnapshotLoop(pipeline, snapshotsDone.Token);
            Task drain = Task.Run(() => pipeline.DrainAsync());
            rig.Stopping.Set();
            // On its own thread: StopAsync itself may hold its caller while the shards are full (see probe8 findings, F1).
            Task stop = Task.Factory.StartNew(() => pipeline.StopAsync(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
            await UntilAllClosed(rig, stop);
            Assert.False(stop.IsCompleted, "the stop ended while the sink held a window");
            using var signal = new CancellationTokenSource();
            Task second = Task.Factory.StartNew(() => pipeline.StopAsync(signal.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
            await signal.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second.Within("the second signal forcing the stop"));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stop.Within("the first caller learning the stop was forced"));
            Task drained = await Task.WhenAny(drain, Task.Delay(Signals.Bound));
            Assert.True(ReferenceEquals(drained, drain), "DrainAsync did not end after the forced stop");
            foreach (Thread t in rig.Threads)
            {
                Assert.True(t.Join(Signals.Bound), $"producer {t.Name} did not end");
            }

            await snapshotsDone.CancelAsync();
            Assert.True(await snapshots.Within("the snapshot loop") > 0);
            rig.SharedWait.Dispose();
            rig.SharedDrop.Dispose();

            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertIdentities(m);
            Assert.Equal(PipelineState.Stopped, m.State);
            Assert.Equal(0, m.Pending);
            AssertCallersMatchCounters(rig, m);
            SinkMetrics s = Assert.Single(m.Sinks);
            Assert.Equal(m.WindowsEmitted, s.BatchesWritten + s.BatchesFailed + s.BatchesDropped + s.BatchesAbandoned);
            Assert.Equal(m.EmittedPoints, s.PointsWritten + s.PointsFailed + s.PointsDropped + s.PointsAbandoned);
            Assert.True(s.BatchesAbandoned >= 2, $"the held window and the queued one: {s.BatchesAbandoned} abandoned");
            Assert.Equal(0, s.BatchesWritten);
            Assert.Empty(rig.Sink.Rows);

            // What a stopped engine still shows as queued or open is nowhere any more: a forced stop must count it.
            Assert.True(m.Queued == 0 && m.OpenWindowPoints == 0, $"after the forced stop: queued {m.Queued}, open {m.OpenWindowPoints}, emitted {m.EmittedPoints}, abandoned {s.PointsAbandoned}, dropped {m.Dropped} ({string.Join(", ", m.DroppedByReason.Where(d => d.Value > 0))})");
        }
        finally
        {
            rig.Sink.Gates.OpenAll();
            await EventTimeBlackBoxTests.StopBounded(pipeline);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task StopAsync_WaitWritersAndBufferedBatchesBehindFullShardsOnTwoShards_ReturnsItsTaskWithin5s(int variant)
    {
        StopRig rig = await StartRig(64, variant);
        Task? stop = null;
        var st = new Thread(() => stop = rig.Pipeline.StopAsync()) { IsBackground = true };
        st.Start();
        bool joined = st.Join(TimeSpan.FromSeconds(5));
        string state = string.Join(", ", rig.Producers.Select(p => $"{p.Source}#{p.Index} incall {p.InCall.TotalMilliseconds:F0} closed {p.SawClosed}")) + $" closer alive {rig.Threads[0].IsAlive}";
        rig.Sink.Gates.OpenAll();
        Assert.True(st.Join(TimeSpan.FromSeconds(15)), "never");
        await stop!;
        Assert.True(joined, $"variant {variant}: StopAsync did not return a task within 5 s: {state}");
    }

}
